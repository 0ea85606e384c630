//! Loading a GGUF file (llama.cpp's format): metadata → [`Config`], tensors → [`Weights`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Tensor};

use super::config::{Arch, Config};
use super::kernel::{self, BlockMatrix};
use super::weights::{build, dense_layer_bytes, Matrix, Part, TensorSource, Weights};
use super::{LoadOptions, ModelInfo};
use crate::EngineError;

pub(crate) fn load(
    path: &Path,
    device: &Device,
    opts: &LoadOptions,
) -> Result<(Config, Weights, ModelInfo), EngineError> {
    let err = |message: String| EngineError::Model {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let content =
        Content::read(&mut reader).map_err(|e| err(format!("not a readable GGUF file: {e}")))?;
    let md = &content.metadata;
    let arch_name = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| err("GGUF metadata has no `general.architecture`".into()))?;
    let arch = Arch::parse(&arch_name).ok_or_else(|| EngineError::UnsupportedArch {
        path: path.to_path_buf(),
        arch: arch_name.clone(),
        supported: Arch::SUPPORTED.into(),
    })?;
    let get = |key: &str| md.get(&format!("{arch_name}.{key}"));
    let need = |key: &str| -> Result<usize, EngineError> {
        get(key)
            .and_then(as_usize)
            .ok_or_else(|| err(format!("GGUF metadata lacks `{arch_name}.{key}`")))
    };
    let n_heads = need("attention.head_count")?;
    let hidden = need("embedding_length")?;
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| err("missing tensor `token_embd.weight`".into()))?;
    let vocab_size = embd.shape.dims().first().copied().unwrap_or(0);
    let head_dim = match get("attention.key_length").and_then(as_usize) {
        Some(d) => d,
        None => hidden.checked_div(n_heads).unwrap_or(0),
    };
    let cfg = Config {
        arch,
        n_layers: need("block_count")?,
        hidden,
        n_heads,
        n_kv_heads: get("attention.head_count_kv")
            .and_then(as_usize)
            .unwrap_or(n_heads),
        head_dim,
        ffn: need("feed_forward_length")?,
        vocab_size,
        max_context: need("context_length")?,
        rope_theta: get("rope.freq_base").and_then(as_f64).unwrap_or(10_000.0) as f32,
        rms_eps: get("attention.layer_norm_rms_epsilon")
            .and_then(as_f64)
            .unwrap_or(1e-5),
        // llama.cpp: LLAMA uses the "normal" (interleaved) rope, Qwen families NEOX.
        rope_interleaved: arch == Arch::Llama,
    };
    cfg.check().map_err(err)?;
    // Rotary scaling (Llama 3 `rope_freqs`, YaRN, linear) changes every position's angles;
    // running such a model with plain rope would silently give wrong text.
    let scaling = get("rope.scaling.type")
        .and_then(|v| v.to_string().ok())
        .filter(|t| t.as_str() != "none")
        .cloned()
        .or_else(|| {
            content
                .tensor_infos
                .contains_key("rope_freqs.weight")
                .then(|| "rope_freqs (llama3)".to_string())
        });
    if let Some(kind) = scaling {
        return Err(err(format!(
            "uses rotary scaling `{kind}`, which this engine does not implement yet"
        )));
    }

    let info = ModelInfo {
        name: md
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| file_stem(path)),
        arch: arch.name().into(),
        vocab_size,
        max_context: cfg.max_context,
        bos_token_id: md
            .get("tokenizer.ggml.bos_token_id")
            .and_then(as_usize)
            .map(|v| v as u32),
        eos_token_ids: eos_ids(md),
    };
    let mut src = GgufSource {
        path: path.to_path_buf(),
        content: &content,
        reader: &mut reader,
        device: device.clone(),
        blocks: opts.block_kernel && device.is_cpu() && kernel::available(),
    };
    // Quantized kernels are the right choice on GPU. On CPU our block kernel takes the types
    // it reads (see `matrix`); for the rest f32 gemm is much faster than candle's quantized
    // kernels for batched rows and prefill, so small models are expanded when they fit the
    // budget.
    let dense = device.is_cpu() && dense_layer_bytes(&cfg) <= opts.dense_cpu_limit;
    let weights = build(&mut src, &cfg, dense)?;
    Ok((cfg, weights, info))
}

/// `tokenizer.ggml.eos_token_id`, plus the ChatML end tokens `<|im_end|>` and `<|endoftext|>`
/// when the vocabulary has them and the declared eos is another: a turn ends at the first, and
/// Qwen2.5 declares `<|im_end|>` yet may write `<|endoftext|>` (its own generation config stops
/// at both, as llama.cpp does), after which it would go on past the end of the answer.
fn eos_ids(md: &HashMap<String, Value>) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(id) = md.get("tokenizer.ggml.eos_token_id").and_then(as_usize) {
        ids.push(id as u32);
    }
    if let Some(Value::Array(tokens)) = md.get("tokenizer.ggml.tokens") {
        for end in ["<|im_end|>", "<|endoftext|>"] {
            let found = tokens
                .iter()
                .position(|t| matches!(t, Value::String(s) if s == end));
            if let Some(id) = found {
                if !ids.contains(&(id as u32)) {
                    ids.push(id as u32);
                }
            }
        }
    }
    ids
}

pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn as_usize(v: &Value) -> Option<usize> {
    match *v {
        Value::U8(x) => Some(x as usize),
        Value::U16(x) => Some(x as usize),
        Value::U32(x) => Some(x as usize),
        Value::U64(x) => usize::try_from(x).ok(),
        Value::I8(x) => usize::try_from(x).ok(),
        Value::I16(x) => usize::try_from(x).ok(),
        Value::I32(x) => usize::try_from(x).ok(),
        Value::I64(x) => usize::try_from(x).ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x as f64),
        Value::F64(x) => Some(x),
        _ => as_usize(v).map(|x| x as f64),
    }
}

struct GgufSource<'a> {
    path: PathBuf,
    content: &'a Content,
    reader: &'a mut BufReader<File>,
    device: Device,
    /// Supported block types go to our CPU kernel.
    blocks: bool,
}

impl GgufSource<'_> {
    fn err(&self, message: String) -> EngineError {
        EngineError::Model {
            path: self.path.clone(),
            message,
        }
    }

    fn read(&mut self, name: &str, shape: &[usize]) -> Result<QTensor, EngineError> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| self.err(format!("missing tensor `{name}`")))?;
        if info.shape.dims() != shape {
            return Err(self.err(format!(
                "tensor `{name}` has shape {:?}, the model's settings need {shape:?}",
                info.shape.dims()
            )));
        }
        info.read(self.reader, self.content.tensor_data_offset, &self.device)
            .map_err(|e| self.err(format!("tensor `{name}`: {e} (file truncated or damaged?)")))
    }
}

impl TensorSource for GgufSource<'_> {
    fn name(&self, part: Part, layer: usize) -> String {
        let global = match part {
            Part::Embed => Some("token_embd.weight"),
            Part::Norm => Some("output_norm.weight"),
            Part::Output => Some("output.weight"),
            _ => None,
        };
        if let Some(g) = global {
            return g.to_string();
        }
        let local = match part {
            Part::AttnNorm => "attn_norm.weight",
            Part::Q => "attn_q.weight",
            Part::K => "attn_k.weight",
            Part::V => "attn_v.weight",
            Part::O => "attn_output.weight",
            Part::QBias => "attn_q.bias",
            Part::KBias => "attn_k.bias",
            Part::VBias => "attn_v.bias",
            Part::QNorm => "attn_q_norm.weight",
            Part::KNorm => "attn_k_norm.weight",
            Part::FfnNorm => "ffn_norm.weight",
            Part::Gate => "ffn_gate.weight",
            Part::Up => "ffn_up.weight",
            _ => "ffn_down.weight",
        };
        format!("blk.{layer}.{local}")
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        dense: bool,
    ) -> Result<Matrix, EngineError> {
        let t = self.read(name, &[rows, cols])?;
        if self.blocks {
            // Faster than f32 gemm at every row count (see `kernel.rs`), at a sixth of the
            // memory: no f32 copy is kept.
            if let Some(b) = BlockMatrix::from_qtensor(&t) {
                return Ok(Matrix::Blocks(b));
            }
        }
        let m = if dense {
            t.dequantize(&self.device).and_then(|w| Matrix::dense(&w))
        } else {
            QMatMul::from_qtensor(t).map(Matrix::Quantized)
        };
        m.map_err(|e| self.err(format!("tensor `{name}`: {e}")))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, EngineError> {
        let t = self.read(name, &[len])?;
        t.dequantize(&self.device)
            .map_err(|e| self.err(format!("tensor `{name}`: {e}")))
    }

    fn embedding(
        &mut self,
        name: &str,
        cfg: &Config,
        dense: bool,
    ) -> Result<(Tensor, Matrix), EngineError> {
        let t = Arc::new(self.read(name, &[cfg.vocab_size, cfg.hidden])?);
        let table = t
            .dequantize(&self.device)
            .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
        if self.blocks {
            if let Some(b) = BlockMatrix::from_qtensor(&t) {
                return Ok((table, Matrix::Blocks(b)));
            }
        }
        if dense {
            // The f32 table is already in memory: as the head it costs nothing more, and f32
            // gemm beats the quantized kernel once several rows decode together.
            return Ok((table.clone(), Matrix::DenseRows(table)));
        }
        // Tied models otherwise reuse the quantized table as the LM head.
        let head = QMatMul::from_arc(t)
            .map(Matrix::Quantized)
            .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
        Ok((table, head))
    }
}
