//! f32 activations × GGUF block-quantized weights (Q4_0, Q4_1, Q8_0) on CPU, read straight
//! from the blocks (AVX-512, or AVX2 with FMA where AVX-512F is missing).
//!
//! Why: decoding a few dozen rows is bound by reading the weights. As f32 (what candle's gemm
//! needs) a 135M model streams 540 MB per step; as Q4_1 blocks 90 MB. Each block is expanded
//! to f32 in registers once and used for every row, so the arithmetic is the f32 arithmetic of
//! the dequantized matrix (w = d·q + m exactly as the file defines it), only the summation
//! order differs from a gemm.
//!
//! Layout: weights W [n, k] (n outputs) are regrouped at load time into panels of 16 output
//! rows. Per panel and block of 32 inputs: the 16 rows' scales `d` and minimums `m` (Q4_0:
//! m = -8d) as f32 vectors, and the quants interleaved so that one 16-byte load holds one input
//! position for all 16 rows (Q4: byte r of load i holds row r's element i in its low nibble and
//! element i+16 in its high one, as the file pairs them; Q8: one signed byte per row). Expanded,
//! that is one register of 16 weights (one per output), which is multiplied by each activation
//! row's input broadcast from memory: a register-blocked outer product with 16 rows' sums in
//! 16 accumulators, no horizontal sums and no transposes. Dequantizing costs 3.5 (Q4) or 4 (Q8)
//! instructions per 16 weights against 16 FMAs for a tile of 16 rows.
//!
//! AVX2 (`mod avx2`, for CPUs with AVX2 and FMA but no AVX-512F) reads the same layout: a
//! register holds 8 lanes, so a panel's 16 outputs are two halves, each its own pass over the
//! panel's blocks (8 of the 16 bytes of each load), and a tile of 16 rows goes by 8 rows a pass
//! (8 accumulators, leaving registers for the weights, scale, minimum and broadcast among the 16
//! ymm registers). Each output's sum is accumulated in the same order as with AVX-512.

// The block kernels are is unsafe by nature (intrinsics, raw output pointers shared by
// tasks); every block says why it is sound.
#![allow(unsafe_code)]

use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

/// Inputs per block.
const BLOCK: usize = 32;
/// Output rows per panel (the lanes of a register).
const PANEL: usize = 16;
/// Activation rows per tile, at most (one accumulator register each).
const TILE: usize = 16;
/// Activation rows multiplied per pass over the weights: their packed inputs stay in L2.
const ROWS_PER_PASS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quants {
    /// 4-bit, with scale and minimum (Q4_0 and Q4_1).
    Nibbles,
    /// 8-bit signed, with scale (Q8_0).
    Bytes,
}

impl Quants {
    /// Bytes of quants per block and row.
    fn block_bytes(self) -> usize {
        match self {
            Quants::Nibbles => 16,
            Quants::Bytes => 32,
        }
    }
}

/// One block of one row of W as the file gives it: scale, minimum (0 for Q8_0) and quants.
#[derive(Clone, Copy)]
struct RowBlock<'a> {
    d: f32,
    m: f32,
    qs: &'a [u8],
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
    /// [panels][blocks][block bytes × 16]: quants interleaved across a panel's rows.
    qs: Vec<u8>,
    /// [panels][blocks][16] scales (zero for the padding rows of the last panel).
    d: Vec<f32>,
    /// [panels][blocks][16] minimums (empty for Q8_0).
    m: Vec<f32>,
}

/// Whether this CPU runs the kernel (AVX-512F, or AVX2 and FMA).
pub(crate) fn available() -> bool {
    has_avx512() || has_avx2()
}

/// Whether this CPU has AVX-512F (the kernel's first choice, and what the query-tiled
/// attention in `attention_tiles.rs` needs).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX2 and FMA (the kernel's path where AVX-512F is missing).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The instruction sets the kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// AVX-512F: 16 lanes, a panel row per register.
    Avx512,
    /// AVX2 and FMA: 8 lanes, a panel row in two halves.
    Avx2,
}

impl Isa {
    /// The best one this CPU has (None: the kernel does not run).
    fn detect() -> Option<Isa> {
        if has_avx512() {
            Some(Isa::Avx512)
        } else if has_avx2() {
            Some(Isa::Avx2)
        } else {
            None
        }
    }

    /// Whether this CPU has it.
    #[cfg(test)]
    fn present(self) -> bool {
        match self {
            Isa::Avx512 => has_avx512(),
            Isa::Avx2 => has_avx2(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
        }
    }
}

/// The instruction set the kernel runs with here, e.g. "AVX-512" (None: it does not run).
pub(crate) fn isa() -> Option<&'static str> {
    Isa::detect().map(Isa::name)
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
        let blocks = k / BLOCK;
        let size = match t.dtype() {
            GgmlDType::Q4_0 => 18,
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return None,
        };
        if raw.len() != n * blocks * size {
            return None;
        }
        let f16_at = |b: &[u8], at: usize| f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]));
        let dtype = t.dtype();
        Some(Self::pack(dtype, n, k, |j, b| {
            let block = &raw[(j * blocks + b) * size..(j * blocks + b + 1) * size];
            let d = f16_at(block, 0);
            match dtype {
                GgmlDType::Q4_0 => RowBlock {
                    d,
                    m: -8.0 * d,
                    qs: &block[2..18],
                },
                GgmlDType::Q4_1 => RowBlock {
                    d,
                    m: f16_at(block, 2),
                    qs: &block[4..20],
                },
                _ => RowBlock {
                    d,
                    m: 0.0,
                    qs: &block[2..34],
                },
            }
        }))
    }

    /// Regroups W, given block by block (`block(j, b)`: row j, block b), into panels.
    fn pack<'a>(
        dtype: GgmlDType,
        n: usize,
        k: usize,
        block: impl Fn(usize, usize) -> RowBlock<'a>,
    ) -> BlockMatrix {
        let quants = quants_of(dtype);
        let (blocks, panels, bb) = (k / BLOCK, n.div_ceil(PANEL), quants.block_bytes());
        let mut qs = vec![0u8; panels * blocks * bb * PANEL];
        let mut d = vec![0f32; panels * blocks * PANEL];
        let mut m = match quants {
            Quants::Nibbles => vec![0f32; panels * blocks * PANEL],
            Quants::Bytes => Vec::new(),
        };
        for j in 0..n {
            let (p, r) = (j / PANEL, j % PANEL);
            for b in 0..blocks {
                let at = (p * blocks + b) * PANEL + r;
                let rb = block(j, b);
                d[at] = rb.d;
                if let Some(slot) = m.get_mut(at) {
                    *slot = rb.m;
                }
                let base = (p * blocks + b) * bb * PANEL;
                for (i, &q) in rb.qs.iter().enumerate() {
                    qs[base + i * PANEL + r] = q;
                }
            }
        }
        BlockMatrix {
            dtype,
            n,
            k,
            qs,
            d,
            m,
        }
    }

    /// Where row j, block b sits: its slot in the scales/minimums and its first quant byte
    /// (the row's quants follow at a stride of 16, one per input position).
    fn slot(&self, j: usize, b: usize) -> (usize, usize) {
        let (p, r, blocks) = (j / PANEL, j % PANEL, self.k / BLOCK);
        let at = (p * blocks + b) * PANEL + r;
        (
            at,
            (p * blocks + b) * self.quants().block_bytes() * PANEL + r,
        )
    }

    /// Row j, block b's scale and minimum (0 for Q8_0).
    fn scale_min(&self, j: usize, b: usize) -> (f32, f32) {
        let at = self.slot(j, b).0;
        (self.d[at], self.m.get(at).copied().unwrap_or(0.0))
    }

    /// Row j, block b's quants as the file stored them (16 or 32 bytes), gathered out of the
    /// panel (for `concat` and the tests only).
    fn row_quants(&self, j: usize, b: usize) -> Vec<u8> {
        let first = self.slot(j, b).1;
        (0..self.quants().block_bytes())
            .map(|i| self.qs[first + i * PANEL])
            .collect()
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
        quants_of(self.dtype)
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
        let n = parts.iter().map(|p| p.n).sum();
        // Each output row's part and its row there.
        let owner: Vec<(usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (0..p.n).map(move |j| (i, j)))
            .collect();
        let blocks = first.k / BLOCK;
        let quants: Vec<Vec<u8>> = owner
            .iter()
            .flat_map(|&(i, j)| (0..blocks).map(move |b| parts[i].row_quants(j, b)))
            .collect();
        Some(Self::pack(first.dtype, n, first.k, |j, b| {
            let (i, jj) = owner[j];
            let (d, m) = parts[i].scale_min(jj, b);
            RowBlock {
                d,
                m,
                qs: &quants[j * blocks + b],
            }
        }))
    }

    /// The f32 matrix W [n, k] (row-major) these blocks stand for (the tests' reference).
    #[cfg(test)]
    pub fn dequantize(&self) -> Vec<f32> {
        let blocks = self.k / BLOCK;
        let mut w = Vec::with_capacity(self.n * self.k);
        for j in 0..self.n {
            for b in 0..blocks {
                let (d, m) = self.scale_min(j, b);
                let q = self.row_quants(j, b);
                match self.quants() {
                    Quants::Nibbles => {
                        w.extend(q.iter().map(|&v| d * (v & 0x0F) as f32 + m));
                        w.extend(q.iter().map(|&v| d * (v >> 4) as f32 + m));
                    }
                    Quants::Bytes => w.extend(q.iter().map(|&v| d * (v as i8) as f32)),
                }
            }
        }
        w
    }

    /// y = x Wᵀ for x [rows, k] (row-major); y is [rows, n]. Needs [`available`].
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let isa = Isa::detect().expect("the block kernel needs AVX-512F or AVX2 with FMA");
        self.matmul_with(isa, x, rows)
    }

    /// `matmul` with the given instruction set, which this CPU must have.
    fn matmul_with(&self, isa: Isa, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "x must be [rows, k]");
        let mut y = vec![0f32; rows * self.n];
        if rows == 0 || self.n == 0 {
            return y;
        }
        let panels = self.n.div_ceil(PANEL);
        // A few tasks per core balance the cores without paying a wake-up per small task.
        let threads = rayon::current_num_threads().max(1);
        let chunk = panels.div_ceil(4 * threads).max(1);
        let out = OutPtr(y.as_mut_ptr());
        for first_row in (0..rows).step_by(ROWS_PER_PASS) {
            let pass = ROWS_PER_PASS.min(rows - first_row);
            let tiles = pack_tiles(
                &x[first_row * self.k..(first_row + pass) * self.k],
                pass,
                self.k,
            );
            (0..panels.div_ceil(chunk)).into_par_iter().for_each(|c| {
                let out = &out;
                for p in c * chunk..((c + 1) * chunk).min(panels) {
                    // This panel's weights stay in L1 while every tile of rows passes by.
                    for tile in &tiles {
                        // SAFETY: tasks own disjoint panels, so disjoint columns of y; the
                        // offset stays inside y (row < rows, column < n); the CPU has `isa`
                        // (detected by `matmul`, or by the tests that pass it).
                        unsafe {
                            let at = out.0.add((first_row + tile.start) * self.n + p * PANEL);
                            self.panel_tile(isa, p, tile, at);
                        }
                    }
                }
            });
        }
        y
    }

    /// Panel p against one tile of rows, written to `y` (row i of the tile at y + i·n).
    ///
    /// # Safety
    /// `y` must be valid for writes of the tile's rows × the panel's columns at stride n, and
    /// this CPU must have `isa`.
    unsafe fn panel_tile(&self, isa: Isa, p: usize, tile: &Tile, y: *mut f32) {
        #[cfg(target_arch = "x86_64")]
        {
            let blocks = self.k / BLOCK;
            let bb = self.quants().block_bytes();
            let qs = self.qs.as_ptr().add(p * blocks * bb * PANEL);
            let d = self.d.as_ptr().add(p * blocks * PANEL);
            let lanes = PANEL.min(self.n - p * PANEL);
            let out = Out {
                y,
                stride: self.n,
                lanes,
            };
            let x = tile.x.as_ptr();
            macro_rules! dispatch {
                ($kernel:ident $(, $extra:expr)?) => {
                    if isa == Isa::Avx512 {
                        match tile.rows {
                            16 => avx512::$kernel::<16>(qs, d, $($extra,)? blocks, x, out),
                            8 => avx512::$kernel::<8>(qs, d, $($extra,)? blocks, x, out),
                            4 => avx512::$kernel::<4>(qs, d, $($extra,)? blocks, x, out),
                            2 => avx512::$kernel::<2>(qs, d, $($extra,)? blocks, x, out),
                            _ => avx512::$kernel::<1>(qs, d, $($extra,)? blocks, x, out),
                        }
                    } else {
                        match tile.rows {
                            16 => avx2::$kernel::<16, 8>(qs, d, $($extra,)? blocks, x, out),
                            8 => avx2::$kernel::<8, 8>(qs, d, $($extra,)? blocks, x, out),
                            4 => avx2::$kernel::<4, 4>(qs, d, $($extra,)? blocks, x, out),
                            2 => avx2::$kernel::<2, 2>(qs, d, $($extra,)? blocks, x, out),
                            _ => avx2::$kernel::<1, 1>(qs, d, $($extra,)? blocks, x, out),
                        }
                    }
                };
            }
            // SAFETY: the caller guarantees that the CPU has `isa` (AVX-512F, or AVX2 and FMA);
            // the pointers address this panel's blocks and the tile's packed rows.
            match self.quants() {
                Quants::Nibbles => {
                    let m = self.m.as_ptr().add(p * blocks * PANEL);
                    dispatch!(nibbles, m)
                }
                Quants::Bytes => dispatch!(bytes),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (isa, p, tile, y);
            unreachable!("the block kernel is only used where available() holds");
        }
    }
}

fn quants_of(dtype: GgmlDType) -> Quants {
    match dtype {
        GgmlDType::Q8_0 => Quants::Bytes,
        _ => Quants::Nibbles,
    }
}

/// Products per second of this kernel for x [m, k] × a random Q4_1 W [n, k]ᵀ, timed for at
/// least `min_time` after a warm-up: (repeats, FLOP/s). None where the kernel does not run
/// (neither AVX-512F nor AVX2 with FMA) or k is not a multiple of 32.
pub(crate) fn measure_q4_1(
    (m, k, n): (usize, usize, usize),
    min_time: std::time::Duration,
) -> Option<(usize, f64)> {
    use candle_core::{Device, Tensor};
    if !available() || k % BLOCK != 0 {
        return None;
    }
    let w = Tensor::randn(0f32, 0.5, (n, k), &Device::Cpu).ok()?;
    let b = BlockMatrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).ok()?)?;
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    std::hint::black_box(b.matmul(&x, m));
    let started = std::time::Instant::now();
    let mut repeats = 0usize;
    while repeats == 0 || started.elapsed() < min_time {
        std::hint::black_box(b.matmul(&x, m));
        repeats += 1;
    }
    let flops = 2.0 * (m * k * n) as f64 * repeats as f64;
    Some((repeats, flops / started.elapsed().as_secs_f64()))
}

/// y's base pointer, shared by the tasks that write its disjoint columns.
struct OutPtr(*mut f32);
// SAFETY: every task writes only its own panels' columns (see `BlockMatrix::matmul`).
unsafe impl Sync for OutPtr {}

/// Where a tile's results go: row i at y + i·stride, the first `lanes` (≤ 16) columns.
#[derive(Clone, Copy)]
struct Out {
    y: *mut f32,
    stride: usize,
    lanes: usize,
}

/// Rows of x transposed for broadcasting: for each input position, the tile's rows one after
/// another ([k][rows]), so the inputs one weight register meets lie in one cache line.
struct Tile {
    /// First row of x in the tile.
    start: usize,
    /// 16, 8, 4, 2 or 1.
    rows: usize,
    x: Vec<f32>,
}

/// x [rows, k] cut into tiles of 16, 8, 4, 2 and 1 rows, each packed [k][tile rows].
fn pack_tiles(x: &[f32], rows: usize, k: usize) -> Vec<Tile> {
    let mut tiles = Vec::new();
    let mut start = 0;
    while start < rows {
        let size = [TILE, 8, 4, 2, 1]
            .into_iter()
            .find(|&s| s <= rows - start)
            .unwrap_or(1);
        let mut packed = vec![0f32; size * k];
        for r in 0..size {
            for (i, v) in x[(start + r) * k..(start + r + 1) * k].iter().enumerate() {
                packed[i * size + r] = *v;
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
    half::f16::from_bits(bits).to_f32()
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Out, BLOCK, PANEL};

    /// R accumulators (16 outputs each) to y; a partial last panel stores only its lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn store<const R: usize>(acc: &[__m512; R], out: Out) {
        if out.lanes == PANEL {
            for (i, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.y.add(i * out.stride), *a);
            }
        } else {
            let mask: __mmask16 = ((1u32 << out.lanes) - 1) as __mmask16;
            for (i, a) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(out.y.add(i * out.stride), mask, *a);
            }
        }
    }

    /// A Q4 panel (per block: 16 loads of 16 bytes, scales and minimums as vectors) against
    /// R rows packed [k][R].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn nibbles<const R: usize>(
        qs: *const u8,
        d: *const f32,
        m: *const f32,
        blocks: usize,
        x: *const f32,
        out: Out,
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        let low = _mm512_set1_epi32(0x0F);
        for b in 0..blocks {
            let scale = _mm512_loadu_ps(d.add(b * PANEL));
            let min = _mm512_loadu_ps(m.add(b * PANEL));
            let qb = qs.add(b * 16 * PANEL);
            let xb = x.add(b * BLOCK * R);
            for i in 0..16 {
                let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(qb.add(i * PANEL) as *const __m128i));
                // w = d·q + m for input i (low nibbles) and i + 16 (high nibbles), 16 outputs.
                let w_lo =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(q, low)), scale, min);
                let w_hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)), scale, min);
                let x_lo = xb.add(i * R);
                let x_hi = xb.add((i + 16) * R);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(w_lo, _mm512_set1_ps(*x_lo.add(r)), *a);
                    *a = _mm512_fmadd_ps(w_hi, _mm512_set1_ps(*x_hi.add(r)), *a);
                }
            }
        }
        store(&acc, out);
    }

    /// A Q8 panel (per block: 32 loads of 16 signed bytes, scales as a vector) against R rows.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn bytes<const R: usize>(
        qs: *const u8,
        d: *const f32,
        blocks: usize,
        x: *const f32,
        out: Out,
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let scale = _mm512_loadu_ps(d.add(b * PANEL));
            let qb = qs.add(b * BLOCK * PANEL);
            let xb = x.add(b * BLOCK * R);
            for i in 0..BLOCK {
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(qb.add(i * PANEL) as *const __m128i));
                let w = _mm512_mul_ps(_mm512_cvtepi32_ps(q), scale);
                let xi = xb.add(i * R);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(w, _mm512_set1_ps(*xi.add(r)), *a);
                }
            }
        }
        store(&acc, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The kernel with 8-lane registers: each half of a panel (outputs 0–7, 8–15) is its own
    //! pass over the panel's blocks, and a tile of S rows goes by R rows a pass (R ≤ 8
    //! accumulators). Per output the sum runs in the same order as in `avx512`.
    use std::arch::x86_64::*;

    use super::{Out, BLOCK, PANEL};

    /// Lanes of a register.
    const HALF: usize = 8;

    /// R accumulators (8 outputs each) to y (row i at y + i·stride), the first `lanes` (≤ 8).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store<const R: usize>(acc: &[__m256; R], y: *mut f32, stride: usize, lanes: usize) {
        if lanes == HALF {
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(y.add(i * stride), *a);
            }
        } else {
            let mut tmp = [0f32; HALF];
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(tmp.as_mut_ptr(), *a);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), y.add(i * stride), lanes);
            }
        }
    }

    /// A Q4 panel against S rows packed [k][S] (see `avx512::nibbles`), R rows a pass.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn nibbles<const S: usize, const R: usize>(
        qs: *const u8,
        d: *const f32,
        m: *const f32,
        blocks: usize,
        x: *const f32,
        out: Out,
    ) {
        debug_assert!(R <= HALF && S.is_multiple_of(R));
        for h in [0, HALF] {
            // This half's outputs (none: the last panel ends in the first half).
            let lanes = out.lanes.saturating_sub(h).min(HALF);
            if lanes == 0 {
                break;
            }
            for r0 in (0..S).step_by(R) {
                // h and r0 stay inside the panel's 16 lanes and the tile's S rows.
                nibbles_pass::<S, R>(
                    qs.add(h),
                    d.add(h),
                    m.add(h),
                    blocks,
                    x.add(r0),
                    out.y.add(r0 * out.stride + h),
                    out.stride,
                    lanes,
                );
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn nibbles_pass<const S: usize, const R: usize>(
        qs: *const u8,
        d: *const f32,
        m: *const f32,
        blocks: usize,
        x: *const f32,
        y: *mut f32,
        stride: usize,
        lanes: usize,
    ) {
        let mut acc = [_mm256_setzero_ps(); R];
        let low = _mm256_set1_epi32(0x0F);
        for b in 0..blocks {
            let scale = _mm256_loadu_ps(d.add(b * PANEL));
            let min = _mm256_loadu_ps(m.add(b * PANEL));
            let qb = qs.add(b * 16 * PANEL);
            let xb = x.add(b * BLOCK * S);
            for i in 0..16 {
                // 8 of the 16 bytes: this half's outputs.
                let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qb.add(i * PANEL) as *const __m128i));
                let w_lo =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, low)), scale, min);
                let w_hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), scale, min);
                let x_lo = xb.add(i * S);
                let x_hi = xb.add((i + 16) * S);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w_lo, _mm256_set1_ps(*x_lo.add(r)), *a);
                    *a = _mm256_fmadd_ps(w_hi, _mm256_set1_ps(*x_hi.add(r)), *a);
                }
            }
        }
        store(&acc, y, stride, lanes);
    }

    /// A Q8 panel against S rows packed [k][S] (see `avx512::bytes`), R rows a pass.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn bytes<const S: usize, const R: usize>(
        qs: *const u8,
        d: *const f32,
        blocks: usize,
        x: *const f32,
        out: Out,
    ) {
        debug_assert!(R <= HALF && S.is_multiple_of(R));
        for h in [0, HALF] {
            let lanes = out.lanes.saturating_sub(h).min(HALF);
            if lanes == 0 {
                break;
            }
            for r0 in (0..S).step_by(R) {
                bytes_pass::<S, R>(
                    qs.add(h),
                    d.add(h),
                    blocks,
                    x.add(r0),
                    out.y.add(r0 * out.stride + h),
                    out.stride,
                    lanes,
                );
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn bytes_pass<const S: usize, const R: usize>(
        qs: *const u8,
        d: *const f32,
        blocks: usize,
        x: *const f32,
        y: *mut f32,
        stride: usize,
        lanes: usize,
    ) {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let scale = _mm256_loadu_ps(d.add(b * PANEL));
            let qb = qs.add(b * BLOCK * PANEL);
            let xb = x.add(b * BLOCK * S);
            for i in 0..BLOCK {
                let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(qb.add(i * PANEL) as *const __m128i));
                let w = _mm256_mul_ps(_mm256_cvtepi32_ps(q), scale);
                let xi = xb.add(i * S);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_set1_ps(*xi.add(r)), *a);
                }
            }
        }
        store(&acc, y, stride, lanes);
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

    /// `product(b, x, rows)` against the dequantized reference, for each block type, a last
    /// panel of 6, 8 (one AVX2 half) and 11 outputs, and rows covering every tile size and
    /// remainder.
    fn check_against_reference(
        what: &str,
        product: impl Fn(&BlockMatrix, &[f32], usize) -> Vec<f32>,
    ) {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for (n, k) in [(150, 128), (40, 64), (27, 96)] {
                let (q, deq) = quantized(dtype, n, k);
                let b = BlockMatrix::from_qtensor(&q).unwrap();
                // Past 64 rows the product runs in several passes over the weights.
                for rows in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 64, 65, 130] {
                    let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    let got = product(&b, &x, rows);
                    let want = reference(&deq, n, k, &x, rows);
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{what} {dtype:?} n={n} rows={rows} at {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernel_matches_the_dequantized_product_for_every_tile_size() {
        let Some(isa) = isa() else {
            crate::lm::testing::missing(
                "AVX-512F or AVX2+FMA (the block kernel runs only with them)",
            );
            return;
        };
        check_against_reference(isa, |b, x, rows| b.matmul(x, rows));
    }

    #[test]
    fn each_instruction_set_this_cpu_has_matches_the_dequantized_product() {
        let mut ran = 0;
        for isa in [Isa::Avx512, Isa::Avx2] {
            if isa.present() {
                check_against_reference(isa.name(), |b, x, rows| b.matmul_with(isa, x, rows));
                ran += 1;
            }
        }
        if ran == 0 {
            crate::lm::testing::missing(
                "AVX-512F or AVX2+FMA (the block kernel runs only with them)",
            );
        }
    }

    #[test]
    fn both_instruction_sets_give_the_same_sums() {
        // Same order of the f32 sums per output: bit for bit equal where both run.
        if !(Isa::Avx512.present() && Isa::Avx2.present()) {
            return;
        }
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (q, _) = quantized(dtype, 45, 160);
            let b = BlockMatrix::from_qtensor(&q).unwrap();
            for rows in [1, 3, 16, 21] {
                let x: Vec<f32> = (0..rows * 160)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                assert_eq!(
                    b.matmul_with(Isa::Avx512, &x, rows),
                    b.matmul_with(Isa::Avx2, &x, rows)
                );
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
