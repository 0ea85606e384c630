//! Decode-step attention with queries on the lanes of a register (AVX-512).
//!
//! Why: in a decoding step every row of a group reads the same prefix, and the query heads of
//! one KV head read the same keys, so a group of 16 rows has 48 queries (SmolLM2) against each
//! prefix key. Putting 16 of those queries on the 16 lanes of a register turns the scores into
//! an outer product: one key element broadcast from memory times the queries' elements, one FMA
//! for 16 scores, with no horizontal sums. The weighted values are the same outer product the
//! other way round (a score broadcast times a value vector). The rows' own tokens (a few dozen
//! keys read by 3 queries each) stay with plain dot products.
//!
//! The arithmetic is the f32 arithmetic of the tensor-op path (`forward.rs`) up to summation
//! order and the exponential, which here is a polynomial (Cephes expf: relative error ~1e-7).

// AVX-512 intrinsics over raw KV pointers; every block says why it is sound.
#![allow(unsafe_code)]

use rayon::prelude::*;

use super::attention::{dot, View};

/// Queries per tile (the lanes of a register).
const LANES: usize = 16;

/// A group of consecutive rows and the prefix they share (None: no prefix yet).
pub(crate) struct Group<'a> {
    pub first_row: usize,
    pub rows: usize,
    pub prefix: Option<(View<'a>, View<'a>, usize)>,
}

/// Everything one step's attention reads.
pub(crate) struct Inputs<'a> {
    /// Queries [r, heads, 1, hd] (decoding) or [1, heads, s, hd] ([`causal`]).
    pub q: View<'a>,
    /// The rows' own keys and values [r, nkv, own_len, hd] (decoding), or the sequence's
    /// [1, nkv, past + s, hd] ([`causal`]).
    pub k: View<'a>,
    pub v: View<'a>,
    pub own_len: usize,
    pub heads: usize,
    pub nkv: usize,
    pub hd: usize,
    pub scale: f32,
}

/// Whether this path handles the shape on this CPU.
pub(crate) fn supported(hd: usize) -> bool {
    super::kernel::has_avx512() && matches!(hd, 32 | 64 | 128)
}

/// One task: queries `first..first + count` (ordered row by row, then head by head) of a
/// group's KV head `kv_head`.
struct Unit {
    group: usize,
    kv_head: usize,
    first: usize,
    count: usize,
}

/// y [r, heads·hd]. Needs [`supported`].
pub(crate) fn attend(inp: &Inputs<'_>, groups: &[Group<'_>], rows: usize) -> Vec<f32> {
    let per_kv = inp.heads / inp.nkv;
    let mut units = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for kv_head in 0..inp.nkv {
            let queries = g.rows * per_kv;
            for first in (0..queries).step_by(LANES) {
                units.push(Unit {
                    group: gi,
                    kv_head,
                    first,
                    count: LANES.min(queries - first),
                });
            }
        }
    }
    let outs: Vec<Vec<f32>> = units
        .par_iter()
        .map(|u| unit(inp, &groups[u.group], u, per_kv))
        .collect();
    let (hd, width) = (inp.hd, inp.heads * inp.hd);
    let mut y = vec![0f32; rows * width];
    for (u, out) in units.iter().zip(&outs) {
        let g = &groups[u.group];
        for (i, yq) in out.chunks_exact(hd).enumerate() {
            let qi = u.first + i;
            let row = g.first_row + qi / per_kv;
            let head = u.kv_head * per_kv + qi % per_kv;
            y[row * width + head * hd..][..hd].copy_from_slice(yq);
        }
    }
    y
}

/// The attention outputs [count, hd] of one unit's queries.
fn unit(inp: &Inputs<'_>, g: &Group<'_>, u: &Unit, per_kv: usize) -> Vec<f32> {
    let hd = inp.hd;
    let row_head = |i: usize| {
        let qi = u.first + i;
        (g.first_row + qi / per_kv, u.kv_head * per_kv + qi % per_kv)
    };
    let queries: Vec<&[f32]> = (0..u.count)
        .map(|i| {
            let (row, head) = row_head(i);
            inp.q.vec(row, head, 0, hd)
        })
        .collect();
    // Scores over the rows' own tokens (plain dot products).
    let mut own: Vec<Vec<f32>> = (0..u.count)
        .map(|i| {
            let row = row_head(i).0;
            (0..inp.own_len)
                .map(|t| dot(queries[i], inp.k.vec(row, u.kv_head, t, hd)) * inp.scale)
                .collect()
        })
        .collect();
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut total = [0f32; LANES];
    // Prefix scores [past][lanes], then their exponentials.
    let past = g.prefix.map_or(0, |(_, _, p)| p);
    let mut scores = vec![0f32; past * LANES];
    if let Some((pk, _, _)) = g.prefix {
        let qt = lanes_of(queries.iter().copied(), hd, inp.scale);
        // SAFETY: `supported` checked AVX-512F; `pk` holds `past` positions of `hd` floats
        // for this KV head at its position stride.
        unsafe {
            avx512::scores(&qt, pk.ptr(0, u.kv_head), pk.pos, past, hd, &mut scores);
            avx512::lane_max(&scores, &mut max);
        }
    }
    for (i, s) in own.iter().enumerate() {
        max[i] = s.iter().copied().fold(max[i], f32::max);
    }
    if past > 0 {
        // SAFETY: as above.
        unsafe { avx512::exp_sub(&mut scores, &max, &mut total) };
    }
    for (i, s) in own.iter_mut().enumerate() {
        for x in s.iter_mut() {
            *x = (*x - max[i]).exp();
            total[i] += *x;
        }
    }
    let mut y = vec![0f32; u.count * hd];
    if let Some((_, pv, _)) = g.prefix {
        // SAFETY: as above, for the values.
        unsafe {
            avx512::weighted_values(
                &scores,
                pv.ptr(0, u.kv_head),
                pv.pos,
                past,
                hd,
                &mut y,
                u.count,
            )
        };
    }
    for (i, yq) in y.chunks_exact_mut(hd).enumerate() {
        let row = row_head(i).0;
        for (t, &w) in own[i].iter().enumerate() {
            for (o, x) in yq.iter_mut().zip(inp.v.vec(row, u.kv_head, t, hd)) {
                *o += w * x;
            }
        }
    }
    normalise(&mut y, hd, &total);
    y
}

/// Up to 16 queries of `hd` floats, scaled, laid out [hd][lanes] (query i on lane i; missing
/// lanes zero).
fn lanes_of<'a>(queries: impl Iterator<Item = &'a [f32]>, hd: usize, scale: f32) -> Vec<f32> {
    let mut qt = vec![0f32; hd * LANES];
    for (lane, q) in queries.take(LANES).enumerate() {
        for (d, &x) in q.iter().enumerate() {
            qt[d * LANES + lane] = x * scale;
        }
    }
    qt
}

/// Divides each query's weighted values (`y`, [queries][hd]) by its softmax total.
fn normalise(y: &mut [f32], hd: usize, total: &[f32; LANES]) {
    for (yq, t) in y.chunks_exact_mut(hd).zip(total) {
        let inv = 1.0 / t;
        yq.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Causal attention of `s` new tokens after `past` cached positions (a prefill chunk):
/// queries `q` [1, heads, s, hd], keys and values `k`, `v` [1, nkv, past + s, hd]. Token i sees
/// positions 0..=past + i. Returns y [s, heads·hd]. Needs [`supported`].
pub(crate) fn causal(inp: &Inputs<'_>, past: usize, s: usize) -> Vec<f32> {
    let (hd, heads) = (inp.hd, inp.heads);
    let per_kv = heads / inp.nkv;
    // (head, first token of the tile, tokens in it).
    let units: Vec<(usize, usize, usize)> = (0..heads)
        .flat_map(|h| (0..s).step_by(LANES).map(move |i| (h, i, LANES.min(s - i))))
        .collect();
    let outs: Vec<Vec<f32>> = units
        .par_iter()
        .map(|&(h, first, count)| {
            let g = h / per_kv;
            let queries = (first..first + count).map(|i| inp.q.vec(0, h, i, hd));
            let qt = lanes_of(queries, hd, inp.scale);
            // Keys up to the tile's last token; later keys are masked lane by lane.
            let keys = past + first + count;
            let mut scores = vec![0f32; keys * LANES];
            let mut max = [f32::NEG_INFINITY; LANES];
            let mut total = [0f32; LANES];
            let mut y = vec![0f32; count * hd];
            // SAFETY: `supported` checked AVX-512F; k and v hold `keys` positions of `hd`
            // floats for KV head g at their position strides.
            unsafe {
                avx512::scores(&qt, inp.k.ptr(0, g), inp.k.pos, keys, hd, &mut scores);
                // Lane l (token first + l) sees keys up to past + first + l.
                for p in past + first + 1..keys {
                    for lane in 0..p - past - first {
                        scores[p * LANES + lane] = f32::NEG_INFINITY;
                    }
                }
                avx512::lane_max(&scores, &mut max);
                avx512::exp_sub(&mut scores, &max, &mut total);
                avx512::weighted_values(
                    &scores,
                    inp.v.ptr(0, g),
                    inp.v.pos,
                    keys,
                    hd,
                    &mut y,
                    count,
                );
            }
            normalise(&mut y, hd, &total);
            y
        })
        .collect();
    let width = heads * hd;
    let mut y = vec![0f32; s * width];
    for (&(h, first, _), out) in units.iter().zip(&outs) {
        for (lane, yq) in out.chunks_exact(hd).enumerate() {
            y[(first + lane) * width + h * hd..][..hd].copy_from_slice(yq);
        }
    }
    y
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// Positions scored together (independent accumulators hide the FMA latency).
    const POSITIONS: usize = 8;

    /// scores[p][lane] = Σ_d qt[d][lane] · k[p][d] for p < past; k at `stride` floats per
    /// position.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(
        qt: &[f32],
        k: *const f32,
        stride: usize,
        past: usize,
        hd: usize,
        out: &mut [f32],
    ) {
        debug_assert!(qt.len() >= hd * LANES && out.len() >= past * LANES);
        let q = qt.as_ptr();
        let mut p = 0;
        while p + POSITIONS <= past {
            let mut acc = [_mm512_setzero_ps(); POSITIONS];
            let keys: [*const f32; POSITIONS] = std::array::from_fn(|j| k.add((p + j) * stride));
            for d in 0..hd {
                let qd = _mm512_loadu_ps(q.add(d * LANES));
                for (a, key) in acc.iter_mut().zip(&keys) {
                    *a = _mm512_fmadd_ps(qd, _mm512_set1_ps(*key.add(d)), *a);
                }
            }
            for (j, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add((p + j) * LANES), *a);
            }
            p += POSITIONS;
        }
        for p in p..past {
            let key = k.add(p * stride);
            let mut a = _mm512_setzero_ps();
            for d in 0..hd {
                a = _mm512_fmadd_ps(
                    _mm512_loadu_ps(q.add(d * LANES)),
                    _mm512_set1_ps(*key.add(d)),
                    a,
                );
            }
            _mm512_storeu_ps(out.as_mut_ptr().add(p * LANES), a);
        }
    }

    /// max[lane] = the largest of scores[·][lane] (and of its value on entry).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn lane_max(scores: &[f32], max: &mut [f32; LANES]) {
        let mut m = _mm512_loadu_ps(max.as_ptr());
        for s in scores.chunks_exact(LANES) {
            m = _mm512_max_ps(m, _mm512_loadu_ps(s.as_ptr()));
        }
        _mm512_storeu_ps(max.as_mut_ptr(), m);
    }

    /// scores[p][lane] = exp(scores[p][lane] - max[lane]); total[lane] += their sum.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_sub(scores: &mut [f32], max: &[f32; LANES], total: &mut [f32; LANES]) {
        let m = _mm512_loadu_ps(max.as_ptr());
        let mut sum = _mm512_loadu_ps(total.as_ptr());
        for s in scores.chunks_exact_mut(LANES) {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(s.as_ptr()), m));
            _mm512_storeu_ps(s.as_mut_ptr(), e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_storeu_ps(total.as_mut_ptr(), sum);
    }

    /// e^x for x ≤ 0 (Cephes expf: x = n·ln2 + r, a degree-6 polynomial in r, scaled by 2^n).
    #[target_feature(enable = "avx512f")]
    unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let r2 = _mm512_mul_ps(r, r);
        let p = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(p, n)
    }

    #[cfg(test)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_for_test(x: __m512) -> __m512 {
        exp(x)
    }

    /// y[i][·] = Σ_p scores[p][i] · v[p][·] for the first `count` lanes; v at `stride` floats
    /// per position.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weighted_values(
        scores: &[f32],
        v: *const f32,
        stride: usize,
        past: usize,
        hd: usize,
        y: &mut [f32],
        count: usize,
    ) {
        match hd {
            32 => weighted::<2, 8>(scores, v, stride, past, y, count),
            64 => weighted::<4, 4>(scores, v, stride, past, y, count),
            _ => weighted::<8, 2>(scores, v, stride, past, y, count),
        }
    }

    /// CH registers per value vector (hd = 16·CH), Q queries at a time (CH·Q accumulators).
    #[target_feature(enable = "avx512f")]
    unsafe fn weighted<const CH: usize, const Q: usize>(
        scores: &[f32],
        v: *const f32,
        stride: usize,
        past: usize,
        y: &mut [f32],
        count: usize,
    ) {
        let hd = CH * 16;
        debug_assert!(scores.len() >= past * LANES && y.len() >= count * hd);
        for first in (0..count).step_by(Q) {
            let mut acc = [[_mm512_setzero_ps(); CH]; Q];
            for p in 0..past {
                let vp = v.add(p * stride);
                let vals: [__m512; CH] = std::array::from_fn(|c| _mm512_loadu_ps(vp.add(c * 16)));
                let s = scores.as_ptr().add(p * LANES + first);
                for (j, a) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*s.add(j));
                    for (ac, val) in a.iter_mut().zip(&vals) {
                        *ac = _mm512_fmadd_ps(w, *val, *ac);
                    }
                }
            }
            for (j, a) in acc.iter().enumerate().take(count - first) {
                for (c, ac) in a.iter().enumerate() {
                    _mm512_storeu_ps(y.as_mut_ptr().add((first + j) * hd + c * 16), *ac);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    //! Never called: `supported` is false off x86_64.
    use super::LANES;

    pub unsafe fn scores(_: &[f32], _: *const f32, _: usize, _: usize, _: usize, _: &mut [f32]) {
        unreachable!()
    }
    pub unsafe fn lane_max(_: &[f32], _: &mut [f32; LANES]) {
        unreachable!()
    }
    pub unsafe fn exp_sub(_: &mut [f32], _: &[f32; LANES], _: &mut [f32; LANES]) {
        unreachable!()
    }
    pub unsafe fn weighted_values(
        _: &[f32],
        _: *const f32,
        _: usize,
        _: usize,
        _: usize,
        _: &mut [f32],
        _: usize,
    ) {
        unreachable!()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "needs AVX-512F; run with `cargo test --release -- --ignored` on a CPU that has it"]
    fn the_polynomial_exponential_is_within_a_few_ulp_of_libm() {
        if !super::super::kernel::has_avx512() {
            crate::lm::testing::missing("AVX-512F (the tiled attention runs only with it)");
            return;
        }
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (0..4000).map(|i| -(i as f32) * 0.025).collect();
        for chunk in xs.chunks_exact(16) {
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F checked above.
            unsafe {
                let e = super::avx512::exp_for_test(_mm512_loadu_ps(chunk.as_ptr()));
                _mm512_storeu_ps(out.as_mut_ptr(), e);
            }
            for (x, got) in chunk.iter().zip(out) {
                let want = (*x as f64).exp();
                let err = ((got as f64) - want).abs();
                assert!(err <= 4e-7 * want + 1e-38, "exp({x}) = {got}, libm {want}");
            }
        }
    }
}
