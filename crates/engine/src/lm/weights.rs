//! The decoder's weights and how they are assembled from a file format's named tensors.

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result as CResult, Tensor};

use super::config::{Arch, Config};
use super::kernel::BlockMatrix;
use crate::EngineError;

/// A weight matrix W [out, in] as the forward pass uses it.
#[derive(Debug)]
pub(crate) enum Matrix {
    /// GGUF blocks through candle's quantized kernels (least memory; on CPU each row of
    /// activations costs a full pass over the weights, so it does not speed up with batching).
    Quantized(QMatMul),
    /// f32, stored transposed [in, out] and contiguous: `x.matmul(wt)` is one blocked gemm,
    /// several times faster on CPU than the quantized kernels once a few rows share it.
    Dense(Tensor),
    /// f32 as stored, [out, in]: a tied LM head shares the embedding table's memory instead of
    /// holding a transposed copy (gemm reads the transposed view without packing it).
    DenseRows(Tensor),
    /// GGUF blocks read by our CPU kernel (see [`BlockMatrix`]): the memory of the quantized
    /// file, the arithmetic of the f32 matrix.
    Blocks(BlockMatrix),
}

impl Matrix {
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Matrix::Quantized(q) => q.forward(x),
            Matrix::Dense(wt) => x.matmul(wt),
            Matrix::DenseRows(w) => x.matmul(&w.t()?),
            Matrix::Blocks(b) => block_matmul(b, x),
        }
    }

    /// From an f32 [out, in] matrix.
    pub fn dense(w: &Tensor) -> CResult<Matrix> {
        Ok(Matrix::Dense(w.t()?.contiguous()?))
    }

    /// How this matrix is held and multiplied, e.g. "Q4_1 blocks (AVX2 kernel)".
    pub fn describe(&self) -> String {
        match self {
            Matrix::Dense(_) | Matrix::DenseRows(_) => "f32 gemm".into(),
            Matrix::Quantized(QMatMul::QTensor(t)) => {
                format!("{:?} (candle quantized kernels)", t.dtype())
            }
            // GGUF F32/F16 tensors: candle holds them as plain tensors.
            Matrix::Quantized(_) => "f32 gemm".into(),
            Matrix::Blocks(b) => format!(
                "{} blocks ({} kernel)",
                b.type_name(),
                super::kernel::isa().unwrap_or("no")
            ),
        }
    }

    fn out_dim(&self) -> CResult<usize> {
        match self {
            Matrix::Quantized(q) => match q {
                QMatMul::QTensor(t) => t.shape().dims2().map(|(o, _)| o),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2().map(|(o, _)| o),
            },
            Matrix::Dense(wt) => wt.dims2().map(|(_, o)| o),
            Matrix::DenseRows(w) => w.dims2().map(|(o, _)| o),
            Matrix::Blocks(b) => Ok(b.rows()),
        }
    }
}

/// x [rows, k] × the blocks' Wᵀ through the CPU kernel.
fn block_matmul(b: &BlockMatrix, x: &Tensor) -> CResult<Tensor> {
    let (rows, k) = x.dims2()?;
    if k != b.cols() {
        candle_core::bail!("matmul: input has {k} columns, the weights {}", b.cols());
    }
    let xs = x
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Tensor::from_vec(b.matmul(&xs, rows), (rows, b.rows()), x.device())
}

/// A projection `y = x Wᵀ (+ b)` of 2-D activations [rows, in].
#[derive(Debug)]
pub(crate) struct Linear {
    pub w: Matrix,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = self.w.forward(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Projections of the same input, e.g. q/k/v or gate/up. Dense ones are held as one matrix
/// [in, sum of outs]: in decoding each gemm call is small, so one call instead of three saves
/// the per-call cost (thread wake-up, packing) and gives the threads wider work.
#[derive(Debug)]
pub(crate) struct Projections {
    fused: Option<Linear>,
    parts: Vec<Linear>,
    sizes: Vec<usize>,
}

impl Projections {
    /// The matrices as held (one when fused).
    pub fn matrices(&self) -> Vec<&Matrix> {
        match &self.fused {
            Some(f) => vec![&f.w],
            None => self.parts.iter().map(|p| &p.w).collect(),
        }
    }

    /// Fuses the parts when they are all dense; otherwise keeps them apart.
    pub fn new(parts: Vec<Linear>) -> CResult<Self> {
        let sizes = parts
            .iter()
            .map(|p| p.w.out_dim())
            .collect::<CResult<Vec<_>>>()?;
        if parts.len() < 2 {
            return Ok(Self {
                fused: None,
                parts,
                sizes,
            });
        }
        let blocks: Vec<&BlockMatrix> = parts
            .iter()
            .filter_map(|p| match &p.w {
                Matrix::Blocks(b) => Some(b),
                _ => None,
            })
            .collect();
        let fused_blocks = if blocks.len() == parts.len() {
            BlockMatrix::concat(&blocks)
        } else {
            None
        };
        let dense: Vec<&Tensor> = parts
            .iter()
            .filter_map(|p| match &p.w {
                Matrix::Dense(wt) => Some(wt),
                _ => None,
            })
            .collect();
        let all_dense = dense.len() == parts.len();
        let device = match parts.iter().find_map(|p| p.b.as_ref()) {
            Some(b) => b.device().clone(),
            None => candle_core::Device::Cpu,
        };
        let b = if parts.iter().any(|p| p.b.is_some()) {
            let mut bs = Vec::with_capacity(parts.len());
            for (p, &n) in parts.iter().zip(&sizes) {
                bs.push(match &p.b {
                    Some(b) => b.clone(),
                    None => Tensor::zeros(n, candle_core::DType::F32, &device)?,
                });
            }
            Some(Tensor::cat(&bs, 0)?)
        } else {
            None
        };
        let fused_dense = if all_dense {
            Some(Tensor::cat(&dense, 1)?.contiguous()?)
        } else {
            None
        };
        let w = match (fused_blocks, fused_dense) {
            (Some(f), _) => Matrix::Blocks(f),
            (None, Some(wt)) => Matrix::Dense(wt),
            // Nothing to fuse (mixed kinds, or candle's quantized kernels).
            (None, None) => {
                return Ok(Self {
                    fused: None,
                    parts,
                    sizes,
                })
            }
        };
        Ok(Self {
            fused: Some(Linear { w, b }),
            parts: Vec::new(),
            sizes,
        })
    }

    /// Each projection of `x` [rows, in], in the order given to [`Projections::new`].
    pub fn forward(&self, x: &Tensor) -> CResult<Vec<Tensor>> {
        match &self.fused {
            Some(f) => {
                let y = f.forward(x)?;
                let mut out = Vec::with_capacity(self.sizes.len());
                let mut start = 0;
                for &n in &self.sizes {
                    out.push(y.narrow(1, start, n)?);
                    start += n;
                }
                Ok(out)
            }
            None => self.parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Layer {
    pub attn_norm: Tensor,
    /// q, k, v.
    pub qkv: Projections,
    pub o: Linear,
    /// Qwen3 normalises each query/key head before the rotary embedding.
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub ffn_norm: Tensor,
    /// gate, up.
    pub gate_up: Projections,
    pub down: Linear,
}

#[derive(Debug)]
pub(crate) struct Weights {
    /// [vocab, hidden] f32: looked up by row, so kept dequantized.
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub output: Linear,
}

/// Which tensor of the model; each format maps it to its own name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part {
    Embed,
    Norm,
    Output,
    AttnNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
}

/// Named tensors of one model file (GGUF) or directory (safetensors).
pub(crate) trait TensorSource {
    fn name(&self, part: Part, layer: usize) -> String;
    fn contains(&self, name: &str) -> bool;
    /// A [rows, cols] weight matrix, shape checked; `dense` asks for f32 (see [`Matrix`]).
    fn matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        dense: bool,
    ) -> Result<Matrix, EngineError>;
    /// A vector of `len` values as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, EngineError>;
    /// The embedding table as f32 [vocab, hidden], and as an output projection for models
    /// that tie it to the LM head.
    /// `dense`: the tied head may share the f32 table (see [`Matrix::DenseRows`]).
    fn embedding(
        &mut self,
        name: &str,
        cfg: &Config,
        dense: bool,
    ) -> Result<(Tensor, Matrix), EngineError>;
}

/// Bytes the per-layer matrices take as f32.
pub(crate) fn dense_layer_bytes(cfg: &Config) -> usize {
    let (h, hd) = (cfg.hidden, cfg.head_dim);
    let per_layer = 2 * h * cfg.n_heads * hd + 2 * h * cfg.n_kv_heads * hd + 3 * h * cfg.ffn;
    cfg.n_layers * per_layer * 4
}

/// `dense`: hold the layer matrices as f32 (the caller's memory/speed choice).
pub(crate) fn build(
    src: &mut dyn TensorSource,
    cfg: &Config,
    dense: bool,
) -> Result<Weights, EngineError> {
    let (h, hd) = (cfg.hidden, cfg.head_dim);
    let (q_out, kv_out) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let (embed, tied) = src.embedding(&src.name(Part::Embed, 0), cfg, dense)?;
    let norm = src.vector(&src.name(Part::Norm, 0), h)?;
    let out_name = src.name(Part::Output, 0);
    let output = if src.contains(&out_name) {
        src.matrix(&out_name, cfg.vocab_size, h, false)?
    } else {
        tied
    };
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let n = |p: Part| src.name(p, i);
        let (qn, kn, vn, on) = (n(Part::Q), n(Part::K), n(Part::V), n(Part::O));
        let (qb, kb, vb) = (n(Part::QBias), n(Part::KBias), n(Part::VBias));
        let (qnn, knn) = (n(Part::QNorm), n(Part::KNorm));
        let (an, fnn) = (n(Part::AttnNorm), n(Part::FfnNorm));
        let (gn, un, dn) = (n(Part::Gate), n(Part::Up), n(Part::Down));
        // Qwen2 always has q/k/v biases; accept them on any family that ships them.
        let mut bias = |name: &str, len: usize| -> Result<Option<Tensor>, EngineError> {
            if cfg.arch == Arch::Qwen2 || src.contains(name) {
                src.vector(name, len).map(Some)
            } else {
                Ok(None)
            }
        };
        let (q_b, k_b, v_b) = (bias(&qb, q_out)?, bias(&kb, kv_out)?, bias(&vb, kv_out)?);
        let (q_norm, k_norm) = if cfg.arch == Arch::Qwen3 {
            (Some(src.vector(&qnn, hd)?), Some(src.vector(&knn, hd)?))
        } else {
            (None, None)
        };
        let fuse = |parts: Vec<Linear>| {
            Projections::new(parts).map_err(|e| EngineError::Other(format!("layer {i}: {e}")))
        };
        let qkv = fuse(vec![
            Linear {
                w: src.matrix(&qn, q_out, h, dense)?,
                b: q_b,
            },
            Linear {
                w: src.matrix(&kn, kv_out, h, dense)?,
                b: k_b,
            },
            Linear {
                w: src.matrix(&vn, kv_out, h, dense)?,
                b: v_b,
            },
        ])?;
        let gate_up = fuse(vec![
            Linear {
                w: src.matrix(&gn, cfg.ffn, h, dense)?,
                b: None,
            },
            Linear {
                w: src.matrix(&un, cfg.ffn, h, dense)?,
                b: None,
            },
        ])?;
        layers.push(Layer {
            attn_norm: src.vector(&an, h)?,
            qkv,
            o: Linear {
                w: src.matrix(&on, h, q_out, dense)?,
                b: None,
            },
            q_norm,
            k_norm,
            ffn_norm: src.vector(&fnn, h)?,
            gate_up,
            down: Linear {
                w: src.matrix(&dn, h, cfg.ffn, dense)?,
                b: None,
            },
        });
    }
    Ok(Weights {
        embed,
        layers,
        norm,
        output: Linear { w: output, b: None },
    })
}
