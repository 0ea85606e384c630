//! Tokenizers from `tokenizer.json` or from GGUF metadata, wrapped so the engine sees token ids,
//! exact byte offsets into the encoded text (prefixes are cut at byte offsets) and errors that
//! name the file.

mod bytes;
mod gguf;

use std::ops::Range;
use std::path::{Path, PathBuf};

use tokenizers::{DecoderWrapper, Tokenizer};

use super::EngineError;

pub use bytes::{bytes_to_token, token_to_bytes};

/// Tokens that end an assistant turn in the families we support. They are added to the stop
/// set when the vocabulary has them as special tokens, because a file's single `eos` id is often
/// the pre-training end marker rather than the chat turn's end.
const TURN_END_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "<|end_of_text|>",
];

/// How much larger than the tokenizer a model's embedding table may be: checkpoints pad their
/// vocabulary (Qwen2.5: 151 665 tokens, 151 936 rows), so a small surplus is not a mismatch.
fn padding_allowance(model_vocab: usize) -> usize {
    (model_vocab / 64).max(128)
}

pub struct TextTokenizer {
    pub bos_token_id: Option<u32>,
    /// Ids that end the model's output (end of text, end of turn).
    pub eos_token_ids: Vec<u32>,
    /// The Jinja chat template the GGUF file carries (`tokenizer.chat_template`), if any.
    pub chat_template: Option<String>,
    inner: Tokenizer,
    source: PathBuf,
    /// Token strings are GPT-2 byte-level strings, so each token's bytes are known exactly.
    byte_level: bool,
    /// Ids, added tokens included.
    vocab_size: usize,
}

fn model_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Model {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl TextTokenizer {
    /// A `tokenizer.json` file. Bos/eos ids come from `config.json` / `generation_config.json`
    /// beside it when present, else from the well-known turn-end tokens.
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        if !path.is_file() {
            return Err(model_err(path, "tokenizer file not found"));
        }
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| model_err(path, format!("not a readable tokenizer.json: {e}")))?;
        // A file may ask for fixed padding or truncation (embedders' files do); a language
        // model's prompt must be neither padded nor silently cut.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| model_err(path, format!("cannot turn truncation off: {e}")))?;
        let (bos, eos) = ids_from_configs(path.parent().unwrap_or(Path::new(".")));
        Ok(Self::assemble(inner, path, bos, eos, None))
    }

    /// Built from a GGUF file's `tokenizer.ggml.*` metadata (byte-level BPE only).
    pub fn from_gguf(path: &Path) -> Result<Self, EngineError> {
        let g = gguf::load(path)?;
        Ok(Self::assemble(
            g.tokenizer,
            path,
            g.bos_token_id,
            g.eos_token_ids,
            g.chat_template,
        ))
    }

    /// An already built `tokenizers` tokenizer (tests build tiny ones in code).
    pub fn from_tokenizer(
        inner: Tokenizer,
        source: &Path,
        bos: Option<u32>,
        eos: Vec<u32>,
    ) -> Self {
        Self::assemble(inner, source, bos, eos, None)
    }

    fn assemble(
        inner: Tokenizer,
        source: &Path,
        bos_token_id: Option<u32>,
        mut eos_token_ids: Vec<u32>,
        chat_template: Option<String>,
    ) -> Self {
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let added = inner.get_added_vocabulary();
        for name in TURN_END_TOKENS {
            if let Some(id) = inner.token_to_id(name) {
                if added.is_special_token(name) && !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        // Counted once: `get_vocab_size(true)` builds the whole vocabulary map on every call,
        // and `decode` checks ids against it once per token of every rollout.
        let vocab_size = inner.get_vocab_size(true);
        Self {
            bos_token_id,
            eos_token_ids,
            chat_template,
            inner,
            source: source.to_path_buf(),
            byte_level,
            vocab_size,
        }
    }

    /// The text of one token (special tokens included), e.g. `<|im_end|>`.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The file the tokenizer was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of ids, added tokens included (the largest id + 1 for the files we read).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token string (e.g. `<|im_end|>`), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` (no special tokens added; special-token strings in `text` such as
    /// `<|im_start|>` map to their ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| model_err(&self.source, format!("encoding failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids with the byte range of `text` each one covers. Ranges always lie on char
    /// boundaries (so `&text[range]` is safe) and never move backwards. In order they tile the
    /// text, except where tokens share the bytes of one multi-byte char: tokens that split a
    /// char all get that char's range (the same range repeated, as `tokenizers` reports it),
    /// and a token that straddles two chars overlaps its neighbour. Byte-level tokenizers get
    /// ranges computed from each token's exact bytes; others get the tokenizer's own offsets,
    /// clipped so they never move backwards.
    pub fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, Range<usize>)>, EngineError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| model_err(&self.source, format!("encoding failed: {e}")))?;
        let ids = enc.get_ids();
        if self.byte_level {
            if let Some(ranges) = self.byte_ranges(ids, text) {
                return Ok(ids
                    .iter()
                    .zip(ranges)
                    .map(|(&id, r)| {
                        (
                            id,
                            floor_boundary(text, r.start)..ceil_boundary(text, r.end),
                        )
                    })
                    .collect());
            }
        }
        // `Tokenizer::encode` reports byte offsets into the original text; tokens that share a
        // char get overlapping ranges, which we clip so positions only move forward.
        let mut start_so_far = 0;
        Ok(ids
            .iter()
            .zip(enc.get_offsets())
            .map(|(&id, &(start, end))| {
                let start = floor_boundary(text, start.max(start_so_far).min(text.len()));
                let end = ceil_boundary(text, end.max(start).min(text.len()));
                start_so_far = start;
                (id, start..end)
            })
            .collect())
    }

    /// Token ids with the exact bytes each one stands for: for byte-level tokenizers the ranges
    /// tile the text strictly, and a range may start or end inside a multi-byte char (so slice
    /// the text only at ends that are char boundaries). Other tokenizers fall back to
    /// [`Self::encode_with_offsets`].
    pub fn encode_with_byte_spans(
        &self,
        text: &str,
    ) -> Result<Vec<(u32, Range<usize>)>, EngineError> {
        if self.byte_level {
            let ids = self.encode(text)?;
            if let Some(ranges) = self.byte_ranges(&ids, text) {
                return Ok(ids.into_iter().zip(ranges).collect());
            }
        }
        self.encode_with_offsets(text)
    }

    /// Exact ranges from each token's bytes; `None` when they do not spell `text` exactly.
    fn byte_ranges(&self, ids: &[u32], text: &str) -> Option<Vec<Range<usize>>> {
        let mut pos = 0;
        let mut ranges = Vec::with_capacity(ids.len());
        for &id in ids {
            let bytes = self.token_bytes(id)?;
            let end = pos + bytes.len();
            if text.as_bytes().get(pos..end)? != bytes.as_slice() {
                return None;
            }
            ranges.push(pos..end);
            pos = end;
        }
        (pos == text.len()).then_some(ranges)
    }

    /// The raw bytes one token stands for (byte-level tokenizers; added tokens are their own
    /// text). `None` for an unknown id or a tokenizer that is not byte-level. Lets a sampler
    /// decode a stream of ids without splitting a multi-byte char.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if let Some(added) = self.inner.get_added_vocabulary().simple_id_to_token(id) {
            return Some(added.into_bytes());
        }
        if !self.byte_level {
            return None;
        }
        token_to_bytes(&self.inner.id_to_token(id)?)
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        let vocab = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(model_err(
                &self.source,
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| model_err(&self.source, format!("decoding failed: {e}")))
    }

    /// Checks that this tokenizer belongs to a model whose embedding table has `model_vocab`
    /// rows (`model_path` names the model in the error).
    pub fn check_model(&self, model_vocab: usize, model_path: &Path) -> Result<(), EngineError> {
        let ours = self.vocab_size();
        let mismatch = |message: String| EngineError::TokenizerMismatch {
            path: model_path.to_path_buf(),
            message,
        };
        if ours > model_vocab {
            return Err(mismatch(format!(
                "the tokenizer {} has {ours} tokens but the model only {model_vocab}",
                self.source.display()
            )));
        }
        let allowance = padding_allowance(model_vocab);
        if model_vocab - ours > allowance {
            return Err(mismatch(format!(
                "the tokenizer {} has {ours} tokens but the model {model_vocab} (more than {allowance} rows of padding)",
                self.source.display()
            )));
        }
        if let Some(bad) = self
            .eos_token_ids
            .iter()
            .find(|&&id| id as usize >= model_vocab)
        {
            return Err(mismatch(format!(
                "end-of-text id {bad} of {} is outside the model's vocabulary of {model_vocab}",
                self.source.display()
            )));
        }
        Ok(())
    }
}

/// The char boundary at or before byte `i` of `text` (`i <= text.len()`).
fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The char boundary at or after byte `i` of `text` (`i <= text.len()`).
fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Bos / eos ids from the `config.json` and `generation_config.json` beside a tokenizer.json
/// (the generation config wins; it lists the chat turn's end too).
fn ids_from_configs(dir: &Path) -> (Option<u32>, Vec<u32>) {
    let mut bos = None;
    let mut eos = Vec::new();
    for name in ["config.json", "generation_config.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(id) = json.get("bos_token_id").and_then(|v| v.as_u64()) {
            bos = u32::try_from(id).ok();
        }
        let ids: Vec<u32> = match json.get("eos_token_id") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect(),
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        for id in ids {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    (bos, eos)
}

/// Incremental decoding (candle's TokenOutputStream idea): decode a small window of recent
/// tokens and append the new characters once they form complete UTF-8 (byte-level tokens can
/// split a character).
#[derive(Clone, Debug, Default)]
pub struct TokenStream {
    /// The text decoded so far.
    pub text: String,
    prev: usize,
    current: usize,
}

impl TokenStream {
    pub fn push(&mut self, tok: &TextTokenizer, tokens: &[u32]) -> Result<(), EngineError> {
        let before = tok.decode(&tokens[self.prev..self.current])?;
        let now = tok.decode(&tokens[self.prev..])?;
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && now.is_char_boundary(before.len())
        {
            self.text.push_str(&now[before.len()..]);
            self.prev = self.current;
            self.current = tokens.len();
        }
        Ok(())
    }

    /// Append whatever is still held back (an incomplete character at the very end).
    pub fn flush(&mut self, tok: &TextTokenizer, tokens: &[u32]) -> Result<(), EngineError> {
        if self.current < tokens.len() {
            let before = tok.decode(&tokens[self.prev..self.current])?;
            let now = tok.decode(&tokens[self.prev..])?;
            if now.len() > before.len() && now.is_char_boundary(before.len()) {
                self.text.push_str(&now[before.len()..]);
            }
            self.current = tokens.len();
        }
        Ok(())
    }
}
