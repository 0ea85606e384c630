//! Our own count of a returned text's tokens, for replies whose `usage` is not per choice
//! ([`super::usage`]). Exact when this machine has the served model's tokenizer; otherwise an
//! estimate, and the run's record says so and how it was made.

use std::path::Path;
use std::sync::Arc;

use crate::install;
use crate::tokenizer::TextTokenizer;

/// UTF-8 bytes per token assumed by the estimate (the usual figure for BPE vocabularies on
/// English text; code and other scripts have fewer bytes per token, so it undercounts them).
const BYTES_PER_TOKEN: u64 = 4;

/// How the client counts the tokens of a returned text.
#[derive(Clone)]
pub enum TokenCounter {
    /// The served model's tokenizer, read from `source`.
    Tokenizer {
        tokenizer: Arc<TextTokenizer>,
        source: String,
    },
    /// No tokenizer of the served model here: ⌈UTF-8 bytes / 4⌉.
    Estimate { model: String },
}

impl TokenCounter {
    /// The tokenizer for `served_model`: the `[engine] tokenizer` setting when given (an error
    /// names it when it cannot be read), else an installed known model whose name or file stem
    /// is the served name (what `anchorscope serve` calls it), else the estimate.
    pub fn find(setting: Option<&str>, served_model: &str) -> Result<Self, String> {
        if let Some(setting) = setting.map(str::trim).filter(|s| !s.is_empty()) {
            return Self::from_setting(setting);
        }
        let wanted = served_model.to_ascii_lowercase();
        for model in &install::MODELS {
            let stem = Path::new(model.file)
                .file_stem()
                .map(|s| s.to_string_lossy().to_ascii_lowercase());
            if wanted != model.name && stem.as_deref() != Some(wanted.as_str()) {
                continue;
            }
            let path = install::model_path(model);
            if let Ok(tokenizer) = TextTokenizer::from_gguf(&path) {
                return Ok(Self::Tokenizer {
                    tokenizer: Arc::new(tokenizer),
                    source: format!("installed model {} ({})", model.name, path.display()),
                });
            }
        }
        Ok(Self::Estimate {
            model: served_model.to_string(),
        })
    }

    /// `[engine] tokenizer`: a `tokenizer.json`, a GGUF file, a model directory holding a
    /// `tokenizer.json`, or the name of an installed known model.
    fn from_setting(setting: &str) -> Result<Self, String> {
        let failed = |e: &dyn std::fmt::Display| format!("[engine] tokenizer = {setting:?}: {e}");
        let path = match install::find_model(setting) {
            Some(model) => install::model_path(model),
            None => Path::new(setting).to_path_buf(),
        };
        let tokenizer = if path.is_dir() {
            TextTokenizer::from_file(&path.join("tokenizer.json"))
        } else if path.extension().is_some_and(|e| e == "gguf") {
            TextTokenizer::from_gguf(&path)
        } else if path.exists() {
            TextTokenizer::from_file(&path)
        } else {
            return Err(failed(
                &"no such file (give a tokenizer.json, a GGUF file, a model directory or an \
                  installed model's name)",
            ));
        }
        .map_err(|e| failed(&e))?;
        Ok(Self::Tokenizer {
            tokenizer: Arc::new(tokenizer),
            source: path.display().to_string(),
        })
    }

    /// The tokens of `text`. A text the tokenizer cannot encode is estimated instead (a count
    /// is bookkeeping: it must never stop a rollout from being stored).
    pub fn count(&self, text: &str) -> u64 {
        match self {
            Self::Tokenizer { tokenizer, .. } => tokenizer
                .encode(text)
                .map_or_else(|_| estimate(text), |ids| ids.len() as u64),
            Self::Estimate { .. } => estimate(text),
        }
    }

    /// Whether counts are the served model's own (not an estimate).
    pub fn is_exact(&self) -> bool {
        matches!(self, Self::Tokenizer { .. })
    }

    /// How counts are made, for the run's record.
    pub fn describe(&self) -> String {
        match self {
            Self::Tokenizer { source, .. } => format!("counted with the tokenizer of {source}"),
            Self::Estimate { model } => format!(
                "ESTIMATED as ceil(UTF-8 bytes / {BYTES_PER_TOKEN}): no tokenizer of {model:?} \
                 on this machine (set [engine] tokenizer for exact counts)"
            ),
        }
    }
}

fn estimate(text: &str) -> u64 {
    (text.len() as u64).div_ceil(BYTES_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_rounds_bytes_up_and_says_it_is_one() {
        let c = TokenCounter::Estimate { model: "m".into() };
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("abcd"), 1);
        assert_eq!(c.count("abcde"), 2);
        assert_eq!(c.count("é"), 1);
        assert!(!c.is_exact());
        assert!(c.describe().contains("ESTIMATED") && c.describe().contains("\"m\""));
    }

    #[test]
    fn an_unknown_model_without_a_setting_is_estimated() {
        let c = TokenCounter::find(None, "deepseek-ai/DeepSeek-V3.1").unwrap();
        assert!(!c.is_exact());
    }

    #[test]
    fn a_tokenizer_setting_that_cannot_be_read_is_an_error_naming_it() {
        let e = TokenCounter::find(Some("/nonexistent/tokenizer.json"), "m")
            .err()
            .expect("an error");
        assert!(
            e.contains("[engine] tokenizer") && e.contains("/nonexistent"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("tokenizer.json");
        std::fs::write(&bad, "{").unwrap();
        let e = TokenCounter::find(bad.to_str(), "m")
            .err()
            .expect("an error");
        assert!(e.contains("[engine] tokenizer"), "{e}");
    }

    #[test]
    fn a_gguf_setting_counts_with_its_tokenizer() {
        use crate::lm::testing::{write_tiny_gguf, TinySpec};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(
            &path,
            &TinySpec::new(crate::lm::Arch::Llama, 3).with_byte_level_tokenizer(),
        )
        .unwrap();
        let c = TokenCounter::find(path.to_str(), "anything").unwrap();
        assert!(c.is_exact());
        let tokenizer = TextTokenizer::from_gguf(&path).unwrap();
        let text = "hello world, hello";
        assert_eq!(c.count(text), tokenizer.encode(text).unwrap().len() as u64);
        assert!(c.describe().contains("tiny.gguf"));
    }
}
