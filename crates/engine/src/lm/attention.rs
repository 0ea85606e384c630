//! Decode-step attention on CPU in one pass: every row's query against its group's shared
//! prefix and its own new tokens, one softmax, the weighted values. The same arithmetic as
//! the tensor-op path in `forward.rs` (which stays for GPUs), but without the ~15 small candle
//! operations per group and layer (copies, transposes, concatenations) whose fixed costs
//! dominated a decoding step of a few dozen rows.

use candle_core::{Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::attention_tiles as tiles;

/// A group's shared prefix for one layer: K and V [1, nkv, past, hd] (possibly a narrowed view).
pub(crate) struct SharedKv<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub past: usize,
    pub rows: usize,
}

/// An f32 CPU tensor's values; None for other devices and dtypes.
fn cpu_f32(storage: &Storage) -> Option<&[f32]> {
    match storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>().ok(),
        _ => None,
    }
}

/// The view of an f32 CPU tensor with a contiguous last dimension; None otherwise.
fn view<'a>(s: &'a Storage, l: &Layout) -> Option<View<'a>> {
    cpu_f32(s).and_then(|d| View::new(d, l))
}

/// Strided view of a [b, nkv, positions, hd] tensor whose last dimension is contiguous.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    start: usize,
    batch: usize,
    head: usize,
    /// Floats from one position to the next.
    pub pos: usize,
}

impl<'a> View<'a> {
    fn new(data: &'a [f32], layout: &Layout) -> Option<View<'a>> {
        let s = layout.stride();
        if s.len() != 4 || s[3] != 1 {
            return None;
        }
        Some(View {
            data,
            start: layout.start_offset(),
            batch: s[0],
            head: s[1],
            pos: s[2],
        })
    }

    pub fn vec(&self, b: usize, h: usize, p: usize, hd: usize) -> &'a [f32] {
        let at = self.start + b * self.batch + h * self.head + p * self.pos;
        &self.data[at..at + hd]
    }

    /// Where (b, h)'s first position starts (the tiled path walks the positions itself).
    pub fn ptr(&self, b: usize, h: usize) -> *const f32 {
        self.data[self.start + b * self.batch + h * self.head..].as_ptr()
    }
}

/// Dot product with independent partial sums (so it vectorises).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// y [r, heads·hd] for queries `q` [r, heads, 1, hd] (rotated, contiguous), the rows' own keys
/// and values `rk`, `rv` [r, nkv, T, hd], and per group of consecutive rows its shared prefix.
/// None when a tensor is not an f32 CPU tensor with a contiguous last dimension (the caller
/// then takes the tensor-op path).
pub(crate) fn decode_attention(
    q: &Tensor,
    rk: &Tensor,
    rv: &Tensor,
    groups: &[SharedKv<'_>],
    scale: f32,
) -> Result<Option<Tensor>> {
    let (r, heads, _, hd) = q.dims4()?;
    let (_, nkv, own_len, _) = rk.dims4()?;
    if nkv == 0 || heads % nkv != 0 || groups.iter().map(|g| g.rows).sum::<usize>() != r {
        return Ok(None);
    }
    let per_kv = heads / nkv;
    // Which group (and so which prefix) each row continues.
    let mut group_of = Vec::with_capacity(r);
    for (gi, g) in groups.iter().enumerate() {
        group_of.extend(std::iter::repeat_n(gi, g.rows));
    }
    // Read guards on every tensor's storage for the whole computation.
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = rk.storage_and_layout();
    let (vs, vl) = rv.storage_and_layout();
    let shared: Vec<_> = groups
        .iter()
        .map(|g| (g.k.storage_and_layout(), g.v.storage_and_layout(), g.past))
        .collect();
    let (Some(qv), Some(kv), Some(vv)) = (view(&qs, ql), view(&ks, kl), view(&vs, vl)) else {
        return Ok(None);
    };
    let mut prefix = Vec::with_capacity(groups.len());
    for ((ps, pl), (vs2, vl2), past) in &shared {
        if *past == 0 {
            prefix.push(None);
            continue;
        }
        match (view(ps, pl), view(vs2, vl2)) {
            (Some(pk), Some(pv)) => prefix.push(Some((pk, pv, *past))),
            _ => return Ok(None),
        }
    }
    if tiles::supported(hd) {
        let mut first_row = 0;
        let tiled: Vec<tiles::Group<'_>> = groups
            .iter()
            .zip(&prefix)
            .map(|(g, p)| {
                let group = tiles::Group {
                    first_row,
                    rows: g.rows,
                    prefix: *p,
                };
                first_row += g.rows;
                group
            })
            .collect();
        let inputs = tiles::Inputs {
            q: qv,
            k: kv,
            v: vv,
            own_len,
            heads,
            nkv,
            hd,
            scale,
        };
        let y = tiles::attend(&inputs, &tiled, r);
        drop(tiled);
        drop((qs, ks, vs, shared));
        return Ok(Some(Tensor::from_vec(y, (r, heads * hd), q.device())?));
    }
    let mut y = vec![0f32; r * heads * hd];
    y.par_chunks_mut(heads * hd)
        .enumerate()
        .for_each(|(row, yr)| {
            let shared = prefix[group_of[row]];
            let past = shared.map_or(0, |(_, _, p)| p);
            let mut scores = vec![0f32; past + own_len];
            for h in 0..heads {
                let g = h / per_kv;
                let qh = qv.vec(row, h, 0, hd);
                if let Some((pk, _, _)) = shared {
                    for (p, s) in scores[..past].iter_mut().enumerate() {
                        *s = dot(qh, pk.vec(0, g, p, hd)) * scale;
                    }
                }
                for (j, s) in scores[past..].iter_mut().enumerate() {
                    *s = dot(qh, kv.vec(row, g, j, hd)) * scale;
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    total += *s;
                }
                let out = &mut yr[h * hd..(h + 1) * hd];
                out.iter_mut().for_each(|o| *o = 0.0);
                let mut add = |w: f32, v: &[f32]| {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o += w * x;
                    }
                };
                if let Some((_, pv, _)) = shared {
                    for (p, &w) in scores[..past].iter().enumerate() {
                        add(w / total, pv.vec(0, g, p, hd));
                    }
                }
                for (j, &w) in scores[past..].iter().enumerate() {
                    add(w / total, vv.vec(row, g, j, hd));
                }
            }
        });
    drop((qs, ks, vs, shared));
    Ok(Some(Tensor::from_vec(y, (r, heads * hd), q.device())?))
}

/// Causal attention of a prefill chunk on CPU: queries `q` [1, heads, s, hd] (rotated), keys
/// and values `k`, `v` [1, nkv, past + s, hd]; y [s, heads·hd]. None where the query-tiled
/// path does not apply (not an f32 CPU tensor, a head size it does not take, no AVX-512): the
/// caller then takes the tensor-op path.
pub(crate) fn prefill_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    past: usize,
    scale: f32,
) -> Result<Option<Tensor>> {
    let (_, heads, s, hd) = q.dims4()?;
    let (_, nkv, total, _) = k.dims4()?;
    if !tiles::supported(hd) || nkv == 0 || heads % nkv != 0 || total != past + s {
        return Ok(None);
    }
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Some(qv), Some(kv), Some(vv)) = (view(&qs, ql), view(&ks, kl), view(&vs, vl)) else {
        return Ok(None);
    };
    let inputs = tiles::Inputs {
        q: qv,
        k: kv,
        v: vv,
        own_len: 0,
        heads,
        nkv,
        hd,
        scale,
    };
    let y = tiles::causal(&inputs, past, s);
    drop((qs, ks, vs));
    Ok(Some(Tensor::from_vec(y, (s, heads * hd), q.device())?))
}
