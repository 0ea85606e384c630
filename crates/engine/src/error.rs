//! Engine errors: each names the file or setting at fault, so the explorer can show it and go on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("{path}: tokenizer does not match the model: {message}")]
    TokenizerMismatch { path: PathBuf, message: String },
    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArch {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    #[error("prefix of {tokens} tokens (+{max_new} new) exceeds the model's context of {context} tokens")]
    ContextOverflow {
        tokens: usize,
        max_new: usize,
        context: usize,
    },
    #[error("--device {requested}: {message}")]
    Device { requested: String, message: String },
    #[error("installing {what}: {message}")]
    Install { what: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Other(e.to_string())
    }
}
