//! Sentence embeddings (all-MiniLM-L6-v2 through candle's BERT, mean pooling, L2-normalised),
//! used to tell whether a resampled sentence says the same thing as the original.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::EngineError;

pub struct SentenceEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    /// Where the weights came from (named in errors).
    weights: PathBuf,
}

fn model_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Model {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `dir/name`, or an error naming it when it is missing.
fn required(dir: &Path, name: &str) -> Result<PathBuf, EngineError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(model_err(
            &path,
            "missing (the embedder needs config.json, tokenizer.json and model.safetensors)",
        ))
    }
}

impl SentenceEmbedder {
    /// A directory with config.json, tokenizer.json and model.safetensors.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EngineError> {
        let config_path = required(dir, "config.json")?;
        let tokenizer_path = required(dir, "tokenizer.json")?;
        let weights = required(dir, "model.safetensors")?;

        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| model_err(&config_path, format!("cannot read: {e}")))?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| model_err(&config_path, format!("not a BERT config: {e}")))?;

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            model_err(
                &tokenizer_path,
                format!("not a readable tokenizer.json: {e}"),
            )
        })?;
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            return Err(EngineError::TokenizerMismatch {
                path: tokenizer_path,
                message: format!(
                    "{} tokens but config.json's vocab_size is {}",
                    tokenizer.get_vocab_size(true),
                    config.vocab_size
                ),
            });
        }
        // Batches are padded to their longest text; the attention mask keeps padding out of both
        // attention and the mean, so a text embeds the same alone or in a batch.
        let pad_id = config.pad_token_id as u32;
        let pad_token = tokenizer
            .id_to_token(pad_id)
            .unwrap_or_else(|| "[PAD]".into());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        // Texts longer than the position table would index past it: keep the tokenizer's own
        // limit if it has one, else cut at the table size.
        let max_len = tokenizer
            .get_truncation()
            .map(|t| t.max_length)
            .unwrap_or(usize::MAX)
            .min(config.max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| model_err(&tokenizer_path, format!("truncation: {e}")))?;

        let vb = crate::mmap::safetensors_vars(&[weights.as_path()], DType::F32, device)
            .map_err(|e| model_err(&weights, format!("cannot read the weights: {e}")))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| model_err(&weights, format!("weights do not fit config.json: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            weights,
        })
    }

    /// L2-normalised embeddings, one per text (mean of the token vectors under the mask).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let err =
            |e: candle_core::Error| model_err(&self.weights, format!("embedding failed: {e}"));
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| model_err(&self.weights, format!("tokenizing failed: {e}")))?;
        let n = encodings.len();
        let len = encodings[0].get_ids().len();
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device).map_err(err)?;
        let types =
            Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device).map_err(err)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &self.device)
            .map_err(err)?;

        let pooled = (|| -> candle_core::Result<Tensor> {
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, hidden)
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, hidden)
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norms)
        })()
        .map_err(err)?;
        pooled.to_vec2::<f32>().map_err(err)
    }

    /// Cosine similarity of two texts.
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32, EngineError> {
        let v = self.embed(&[a, b])?;
        Ok(cosine(&v[0], &v[1]))
    }
}

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
