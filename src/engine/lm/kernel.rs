//! f32 activations × GGUF block-quantized weights (Q4_0, Q4_1, Q8_0) on CPU, read straight
//! from the blocks (AVX-512).
//!
//! Why: decoding a few dozen rows is bound by reading the weights. As f32 (what candle's gemm
//! needs) a 135M model streams 540 MB per step; as Q4_1 blocks 90 MB. Each block is expanded
//! to f32 in registers once and used for every row, so the arithmetic is the f32 arithmetic of
//! the dequantized matrix (w = d·q + m exactly as the file defines it), only the summation
//! order differs from a gemm.
//!
//! Layout: weights W [n, k] (n outputs); per block of 32 inputs a scale `d` and a minimum `m`
//! (Q4_0: m = -8d) in f32, and the quants as the file stores them (Q4: 16 bytes, element i in
//! the low nibble of byte i and element i+16 in its high nibble; Q8: 32 signed bytes).

use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

/// Inputs per block.
const BLOCK: usize = 32;
/// Rows of activations processed together (one accumulator register each).
const TILE: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quants {
    /// 4-bit, with scale and minimum (Q4_0 and Q4_1).
    Nibbles,
    /// 8-bit signed, with scale (Q8_0).
    Bytes,
}

/// A weight matrix held as its quantized blocks, multiplied without expanding it.
#[derive(Debug)]
pub(crate) struct BlockMatrix {
    /// The file's type: Q4_0, Q4_1 or Q8_0.
    dtype: GgmlDType,
    /// Output features (rows of W).
    n: usize,
    /// Inputs (a multiple of 32).
    k: usize,
    /// Per row, its blocks' quants back to back.
    qs: Vec<u8>,
    /// [n, k/32] scales.
    d: Vec<f32>,
    /// [n, k/32] minimums (empty for Q8_0).
    m: Vec<f32>,
}

/// Whether this CPU runs the kernel (AVX-512F).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl BlockMatrix {
    /// The blocks of a [n, k] GGUF tensor of a supported type (Q4_0, Q4_1, Q8_0); None for
    /// other types.
    pub fn from_qtensor(t: &QTensor) -> Option<BlockMatrix> {
        let (n, k) = t.shape().dims2().ok()?;
        if k % BLOCK != 0 {
            return None;
        }
        let raw = t.data().ok()?;
        let blocks = n * k / BLOCK;
        let size = match t.dtype() {
            GgmlDType::Q4_0 => 18,
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return None,
        };
        if raw.len() != blocks * size {
            return None;
        }
        let f16_at = |b: &[u8], at: usize| f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]));
        let mut d = Vec::with_capacity(blocks);
        let mut m = Vec::new();
        let mut qs = Vec::with_capacity(blocks * (size - 2));
        for block in raw.chunks_exact(size) {
            let scale = f16_at(block, 0);
            d.push(scale);
            match t.dtype() {
                GgmlDType::Q4_0 => {
                    m.push(-8.0 * scale);
                    qs.extend_from_slice(&block[2..18]);
                }
                GgmlDType::Q4_1 => {
                    m.push(f16_at(block, 2));
                    qs.extend_from_slice(&block[4..20]);
                }
                _ => qs.extend_from_slice(&block[2..34]),
            }
        }
        Some(BlockMatrix {
            dtype: t.dtype(),
            n,
            k,
            qs,
            d,
            m,
        })
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    /// The file's block type, e.g. "Q4_1".
    pub fn type_name(&self) -> String {
        format!("{:?}", self.dtype)
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    /// How the quants are stored: only the three supported types get here.
    fn quants(&self) -> Quants {
        match self.dtype {
            GgmlDType::Q8_0 => Quants::Bytes,
            _ => Quants::Nibbles,
        }
    }

    /// Bytes of quants per row of W.
    fn row_bytes(&self) -> usize {
        match self.quants() {
            Quants::Nibbles => self.k / 2,
            Quants::Bytes => self.k,
        }
    }

    /// Stack matrices of the same type and width along the outputs (fused projections).
    pub fn concat(parts: &[&BlockMatrix]) -> Option<BlockMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.dtype != first.dtype || p.k != first.k)
        {
            return None;
        }
        Some(BlockMatrix {
            dtype: first.dtype,
            n: parts.iter().map(|p| p.n).sum(),
            k: first.k,
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            m: parts.iter().flat_map(|p| p.m.iter().copied()).collect(),
        })
    }

    /// The f32 matrix W [n, k] (row-major) these blocks stand for (the tests' reference).
    #[cfg(test)]
    pub fn dequantize(&self) -> Vec<f32> {
        let blocks = self.k / BLOCK;
        let mut w = Vec::with_capacity(self.n * self.k);
        for j in 0..self.n {
            let row = &self.qs[j * self.row_bytes()..(j + 1) * self.row_bytes()];
            for b in 0..blocks {
                let d = self.d[j * blocks + b];
                match self.quants() {
                    Quants::Nibbles => {
                        let m = self.m[j * blocks + b];
                        let q = &row[b * 16..b * 16 + 16];
                        w.extend(q.iter().map(|&v| d * (v & 0x0F) as f32 + m));
                        w.extend(q.iter().map(|&v| d * (v >> 4) as f32 + m));
                    }
                    Quants::Bytes => {
                        let q = &row[b * 32..b * 32 + 32];
                        w.extend(q.iter().map(|&v| d * (v as i8) as f32));
                    }
                }
            }
        }
        w
    }

    /// y = x Wᵀ for x [rows, k] (row-major); y is [rows, n]. Needs [`available`].
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "x must be [rows, k]");
        if rows == 0 || self.n == 0 {
            return Vec::new();
        }
        let tiles = pack_tiles(x, rows, self.k);
        // Outputs transposed ([n, rows]) so each task writes one contiguous chunk; a few
        // tasks per core balance the cores without paying a wake-up per small task.
        let threads = rayon::current_num_threads().max(1);
        let chunk = self.n.div_ceil(4 * threads).max(MIN_CHUNK);
        let mut yt = vec![0f32; self.n * rows];
        yt.par_chunks_mut(chunk * rows)
            .enumerate()
            .for_each(|(c, out)| {
                let first = c * chunk;
                let count = out.len() / rows;
                // Every tile of rows against this chunk's weights (which stay in cache).
                for tile in &tiles {
                    for j in first..first + count {
                        let mut acc = [0f32; TILE];
                        self.dot_tile(j, tile, &mut acc);
                        let o = (j - first) * rows + tile.start;
                        out[o..o + tile.rows].copy_from_slice(&acc[..tile.rows]);
                    }
                }
            });
        let mut y = vec![0f32; rows * self.n];
        for (j, col) in yt.chunks_exact(rows).enumerate() {
            for (r, v) in col.iter().enumerate() {
                y[r * self.n + j] = *v;
            }
        }
        y
    }

    /// Row j of W against one tile of rows; results in `out[..tile.rows]`.
    fn dot_tile(&self, j: usize, tile: &Tile, out: &mut [f32; TILE]) {
        #[cfg(target_arch = "x86_64")]
        {
            let blocks = self.k / BLOCK;
            let qs = &self.qs[j * self.row_bytes()..(j + 1) * self.row_bytes()];
            let d = &self.d[j * blocks..(j + 1) * blocks];
            let m = if self.m.is_empty() {
                &self.m[..]
            } else {
                &self.m[j * blocks..(j + 1) * blocks]
            };
            // SAFETY: `matmul` is only called where `available()` (AVX-512F) holds; the
            // slices are sized by k and the tile by `pack_tiles`.
            unsafe {
                match (self.quants(), tile.rows) {
                    (Quants::Nibbles, 16) => avx512::nibbles::<16>(qs, d, m, &tile.x, out),
                    (Quants::Nibbles, 8) => avx512::nibbles::<8>(qs, d, m, &tile.x, out),
                    (Quants::Nibbles, 4) => avx512::nibbles::<4>(qs, d, m, &tile.x, out),
                    (Quants::Nibbles, _) => avx512::nibbles::<1>(qs, d, m, &tile.x, out),
                    (Quants::Bytes, 16) => avx512::bytes::<16>(qs, d, &tile.x, out),
                    (Quants::Bytes, 8) => avx512::bytes::<8>(qs, d, &tile.x, out),
                    (Quants::Bytes, 4) => avx512::bytes::<4>(qs, d, &tile.x, out),
                    (Quants::Bytes, _) => avx512::bytes::<1>(qs, d, &tile.x, out),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (j, tile, out);
            unreachable!("the block kernel is only used where available() holds");
        }
    }
}

/// Fewest output features per task.
const MIN_CHUNK: usize = 16;

/// Rows of x laid out block by block: for each block of 32 inputs, the tile's rows one after
/// another ([k/32][rows][32]), so the kernel reads x at fixed offsets from one pointer.
struct Tile {
    /// First row of x in the tile.
    start: usize,
    /// 16, 8, 4 or 1.
    rows: usize,
    x: Vec<f32>,
}

/// x [rows, k] cut into tiles of 16, 8, 4 and 1 rows, each packed block by block.
fn pack_tiles(x: &[f32], rows: usize, k: usize) -> Vec<Tile> {
    let blocks = k / BLOCK;
    let mut tiles = Vec::new();
    let mut start = 0;
    while start < rows {
        let size = match rows - start {
            n if n >= 16 => 16,
            n if n >= 8 => 8,
            n if n >= 4 => 4,
            _ => 1,
        };
        let mut packed = Vec::with_capacity(size * k);
        for b in 0..blocks {
            for r in start..start + size {
                packed.extend_from_slice(&x[r * k + b * BLOCK..r * k + (b + 1) * BLOCK]);
            }
        }
        tiles.push(Tile {
            start,
            rows: size,
            x: packed,
        });
        start += size;
    }
    tiles
}

/// IEEE half → f32 (the block scales).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1F) as u32;
    let frac = (bits & 0x3FF) as u32;
    let value = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: f × 2^-24.
            let v = f as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, 0) => sign | 0x7F80_0000,
        (0x1F, f) => sign | 0x7F80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(value)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BLOCK, TILE};

    /// A Q4 row of W (16 bytes of quants, scale and minimum per block) against R rows packed
    /// block by block (see `pack_tiles`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn nibbles<const R: usize>(
        qs: &[u8],
        d: &[f32],
        m: &[f32],
        x: &[f32],
        out: &mut [f32; TILE],
    ) {
        let blocks = d.len();
        debug_assert!(
            qs.len() >= blocks * 16 && m.len() >= blocks && x.len() >= R * blocks * BLOCK
        );
        let mut acc = [_mm512_setzero_ps(); R];
        let low = _mm_set1_epi8(0x0F);
        for b in 0..blocks {
            let raw = _mm_loadu_si128(qs.as_ptr().add(b * 16) as *const __m128i);
            let lo = _mm_and_si128(raw, low);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
            let scale = _mm512_set1_ps(*d.get_unchecked(b));
            let min = _mm512_set1_ps(*m.get_unchecked(b));
            // w = d·q + m, the block's weights in f32.
            let w_lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), scale, min);
            let w_hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), scale, min);
            let xb = x.as_ptr().add(b * R * BLOCK);
            for (i, a) in acc.iter_mut().enumerate() {
                let p = xb.add(i * BLOCK);
                *a = _mm512_fmadd_ps(w_lo, _mm512_loadu_ps(p), *a);
                *a = _mm512_fmadd_ps(w_hi, _mm512_loadu_ps(p.add(16)), *a);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            out[i] = _mm512_reduce_add_ps(*a);
        }
    }

    /// A Q8 row of W (32 signed bytes and a scale per block) against R packed rows.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn bytes<const R: usize>(qs: &[u8], d: &[f32], x: &[f32], out: &mut [f32; TILE]) {
        let blocks = d.len();
        debug_assert!(qs.len() >= blocks * 32 && x.len() >= R * blocks * BLOCK);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let q0 = _mm_loadu_si128(qs.as_ptr().add(b * 32) as *const __m128i);
            let q1 = _mm_loadu_si128(qs.as_ptr().add(b * 32 + 16) as *const __m128i);
            let scale = _mm512_set1_ps(*d.get_unchecked(b));
            let w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), scale);
            let w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), scale);
            let xb = x.as_ptr().add(b * R * BLOCK);
            for (i, a) in acc.iter_mut().enumerate() {
                let p = xb.add(i * BLOCK);
                *a = _mm512_fmadd_ps(w0, _mm512_loadu_ps(p), *a);
                *a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(p.add(16)), *a);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            out[i] = _mm512_reduce_add_ps(*a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn reference(w: &[f32], n: usize, k: usize, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let mut s = 0f64;
                for i in 0..k {
                    s += w[j * k + i] as f64 * x[r * k + i] as f64;
                }
                y[r * n + j] = s as f32;
            }
        }
        y
    }

    fn quantized(dtype: GgmlDType, n: usize, k: usize) -> (QTensor, Vec<f32>) {
        let w = Tensor::randn(0f32, 0.5, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (q, deq)
    }

    #[test]
    fn blocks_dequantize_exactly_as_candle_does() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (q, deq) = quantized(dtype, 7, 96);
            let b = BlockMatrix::from_qtensor(&q).unwrap();
            assert_eq!((b.rows(), b.cols()), (7, 96));
            assert_eq!(b.dequantize(), deq, "{dtype:?}");
        }
    }

    #[test]
    fn unsupported_types_are_refused() {
        let w = Tensor::randn(0f32, 1.0, (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(BlockMatrix::from_qtensor(&q).is_none());
    }

    #[test]
    fn the_kernel_matches_the_dequantized_product_for_every_tile_size() {
        if !available() {
            eprintln!("note: no AVX-512F on this CPU; the kernel is not used here");
            return;
        }
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            // n not a multiple of the chunk, rows covering every tile remainder.
            let (n, k) = (150, 128);
            let (q, deq) = quantized(dtype, n, k);
            let b = BlockMatrix::from_qtensor(&q).unwrap();
            for rows in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33] {
                let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let got = b.matmul(&x, rows);
                let want = reference(&deq, n, k, &x, rows);
                assert_eq!(got.len(), want.len());
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{dtype:?} rows={rows} at {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn concatenated_blocks_give_both_outputs() {
        let (qa, da) = quantized(GgmlDType::Q4_1, 5, 64);
        let (qb, db) = quantized(GgmlDType::Q4_1, 3, 64);
        let a = BlockMatrix::from_qtensor(&qa).unwrap();
        let b = BlockMatrix::from_qtensor(&qb).unwrap();
        let ab = BlockMatrix::concat(&[&a, &b]).unwrap();
        assert_eq!(ab.rows(), 8);
        let mut both = da.clone();
        both.extend(db);
        assert_eq!(ab.dequantize(), both);
        let (q8, _) = quantized(GgmlDType::Q8_0, 2, 64);
        let c = BlockMatrix::from_qtensor(&q8).unwrap();
        assert!(BlockMatrix::concat(&[&a, &c]).is_none(), "mixed types");
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7C00).is_infinite());
    }
}
