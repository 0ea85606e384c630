//! Loading a Hugging Face-style directory: `config.json` + `*.safetensors` (f32/bf16/f16,
//! computed in f32), bos/eos from `config.json`, `generation_config.json`, `tokenizer.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::config::{Arch, Config};
use super::weights::{build, Matrix, Part, TensorSource, Weights};
use super::ModelInfo;
use crate::EngineError;

pub(crate) fn load(
    dir: &Path,
    device: &Device,
) -> Result<(Config, Weights, ModelInfo), EngineError> {
    let config_path = dir.join("config.json");
    let err = |path: &Path, message: String| EngineError::Model {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| err(&config_path, format!("cannot read the model's config: {e}")))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| err(&config_path, format!("not valid JSON: {e}")))?;
    let model_type = json["model_type"]
        .as_str()
        .map(str::to_string)
        .or_else(|| json["architectures"][0].as_str().map(str::to_string));
    let model_type =
        model_type.ok_or_else(|| err(&config_path, "no `model_type` or `architectures`".into()))?;
    let arch = Arch::parse(&model_type).ok_or_else(|| EngineError::UnsupportedArch {
        path: config_path.clone(),
        arch: model_type.clone(),
        supported: Arch::SUPPORTED.into(),
    })?;
    let num = |key: &str| json[key].as_u64().map(|v| v as usize);
    let need = |key: &str| num(key).ok_or_else(|| err(&config_path, format!("missing `{key}`")));
    let hidden = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    let vocab_size = need("vocab_size")?;
    let cfg = Config {
        arch,
        n_layers: need("num_hidden_layers")?,
        hidden,
        n_heads,
        n_kv_heads: num("num_key_value_heads").unwrap_or(n_heads),
        head_dim: num("head_dim").unwrap_or(hidden.checked_div(n_heads).unwrap_or(0)),
        ffn: need("intermediate_size")?,
        vocab_size,
        max_context: need("max_position_embeddings")?,
        rope_theta: json["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
        rms_eps: json["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        rope_interleaved: false,
    };
    cfg.check().map_err(|m| err(&config_path, m))?;
    // Rotary scaling changes every position's angles; refuse rather than run it wrong.
    let scaling = &json["rope_scaling"];
    if !scaling.is_null() {
        let kind = scaling["rope_type"]
            .as_str()
            .or(scaling["type"].as_str())
            .unwrap_or("unknown");
        if kind != "default" {
            return Err(err(
                &config_path,
                format!("`rope_scaling` of type `{kind}` is not implemented yet"),
            ));
        }
    }

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot list the model directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err(
            dir,
            "no *.safetensors weights in the model directory".into(),
        ));
    }
    let mut tensors = HashMap::new();
    for file in &files {
        let loaded = candle_core::safetensors::load(file, device).map_err(|e| {
            err(
                file,
                format!("cannot read weights (truncated or damaged?): {e}"),
            )
        })?;
        for (name, t) in loaded {
            tensors.insert(name, (t, file.clone()));
        }
    }

    let generation = std::fs::read_to_string(dir.join("generation_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let mut eos: Vec<u32> = Vec::new();
    for v in [&json["eos_token_id"]]
        .into_iter()
        .chain(generation.as_ref().map(|g| &g["eos_token_id"]))
    {
        for id in ids(v) {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    if let Some(id) = added_token(dir, "<|im_end|>") {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let info = ModelInfo {
        name: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        arch: arch.name().into(),
        vocab_size,
        max_context: cfg.max_context,
        bos_token_id: ids(&json["bos_token_id"]).first().copied(),
        eos_token_ids: eos,
    };
    let mut src = HfSource {
        dir: dir.to_path_buf(),
        tensors,
    };
    let weights = build(&mut src, &cfg, true)?;
    Ok((cfg, weights, info))
}

/// A token id given as a number or a list of numbers.
fn ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// The id of an added (special) token in `tokenizer.json`, if the directory has one.
fn added_token(dir: &Path, content: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    json["added_tokens"]
        .as_array()?
        .iter()
        .find(|t| t["content"].as_str() == Some(content))
        .and_then(|t| t["id"].as_u64())
        .map(|id| id as u32)
}

struct HfSource {
    dir: PathBuf,
    tensors: HashMap<String, (Tensor, PathBuf)>,
}

impl HfSource {
    fn model_err(&self, name: &str, e: candle_core::Error) -> EngineError {
        EngineError::Model {
            path: self.dir.clone(),
            message: format!("tensor `{name}`: {e}"),
        }
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, EngineError> {
        let (t, file) = self.tensors.get(name).ok_or_else(|| EngineError::Model {
            path: self.dir.clone(),
            message: format!("missing tensor `{name}` in the *.safetensors files"),
        })?;
        let err = |message: String| EngineError::Model {
            path: file.clone(),
            message,
        };
        if t.dims() != shape {
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, config.json needs {shape:?}",
                t.dims()
            )));
        }
        t.to_dtype(DType::F32)
            .map_err(|e| err(format!("tensor `{name}`: {e}")))
    }
}

impl TensorSource for HfSource {
    fn name(&self, part: Part, layer: usize) -> String {
        let local = match part {
            Part::Embed => return "model.embed_tokens.weight".into(),
            Part::Norm => return "model.norm.weight".into(),
            Part::Output => return "lm_head.weight".into(),
            Part::AttnNorm => "input_layernorm.weight",
            Part::Q => "self_attn.q_proj.weight",
            Part::K => "self_attn.k_proj.weight",
            Part::V => "self_attn.v_proj.weight",
            Part::O => "self_attn.o_proj.weight",
            Part::QBias => "self_attn.q_proj.bias",
            Part::KBias => "self_attn.k_proj.bias",
            Part::VBias => "self_attn.v_proj.bias",
            Part::QNorm => "self_attn.q_norm.weight",
            Part::KNorm => "self_attn.k_norm.weight",
            Part::FfnNorm => "post_attention_layernorm.weight",
            Part::Gate => "mlp.gate_proj.weight",
            Part::Up => "mlp.up_proj.weight",
            Part::Down => "mlp.down_proj.weight",
        };
        format!("model.layers.{layer}.{local}")
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        _dense: bool,
    ) -> Result<Matrix, EngineError> {
        // Already f32: always dense.
        let w = self.get(name, &[rows, cols])?;
        Matrix::dense(&w).map_err(|e| self.model_err(name, e))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, EngineError> {
        self.get(name, &[len])
    }

    fn embedding(
        &mut self,
        name: &str,
        cfg: &Config,
        _dense: bool,
    ) -> Result<(Tensor, Matrix), EngineError> {
        let t = self.get(name, &[cfg.vocab_size, cfg.hidden])?;
        // The head shares the table's memory (no transposed copy).
        Ok((t.clone(), Matrix::DenseRows(t)))
    }
}
