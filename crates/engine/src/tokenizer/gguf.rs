//! Building a `tokenizers` tokenizer from a GGUF file's `tokenizer.ggml.*` metadata (what
//! llama.cpp stores instead of a `tokenizer.json`). Only the metadata is read, never the tensors.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::EngineError;

/// GGUF token types (llama.cpp `llama_token_type`): control tokens are the chat markers.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama 3's split regex (also `smaug-bpe`): digits in groups of up to three.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: like Llama 3's but every digit alone.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families we can rebuild, named after the `tokenizer.ggml.pre` values that
/// llama.cpp maps to the same regexes.
const SUPPORTED_PRE: &str = "gpt-2, smollm/starcoder/refact/codeshell, llama-bpe/llama3/smaug-bpe/falcon3, qwen2/deepseek-r1-qwen/megrez";

/// What a GGUF's metadata tells us besides the tokenizer itself.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub chat_template: Option<String>,
}

fn err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Model {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the header and metadata of a GGUF file.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, Value>, EngineError> {
    let file = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| err(path, format!("not a readable GGUF file: {e}")))?;
    Ok(content.metadata)
}

fn string_list(
    meta: &HashMap<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Vec<String>, EngineError> {
    let values = meta
        .get(key)
        .ok_or_else(|| err(path, format!("GGUF metadata has no `{key}`")))?
        .to_vec()
        .map_err(|_| err(path, format!("`{key}` is not an array")))?;
    values
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(path, format!("`{key}` is not an array of strings")))
}

fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(*x as i64),
        Value::I8(x) => Some(*x as i64),
        Value::U16(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::U32(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn token_id(meta: &HashMap<String, Value>, key: &str, n_tokens: usize) -> Option<u32> {
    let id = int_value(meta.get(key)?)?;
    // Some converters write -1 for "none"; ids outside the vocabulary are treated the same way.
    (0..n_tokens as i64).contains(&id).then_some(id as u32)
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (missing = GPT-2's).
fn pre_tokenizer(
    pre: Option<&str>,
    path: &Path,
) -> Result<(PreTokenizerWrapper, bool), EngineError> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper, EngineError> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| err(path, format!("pre-tokenizer regex: {e}")))?;
        Ok(split.into())
    };
    // The regex-less ByteLevel only maps bytes to chars; the split regex came before it.
    let byte_level_only: PreTokenizerWrapper = ByteLevel::new(false, false, false).into();
    let gpt2: PreTokenizerWrapper = ByteLevel::new(false, false, true).into();
    // The bool says whether BPE should skip merging words already in the vocabulary (Llama 3).
    Ok(match pre.unwrap_or("gpt-2") {
        "gpt-2" | "gpt2" => (gpt2, false),
        // StarCoder family: every digit alone, then GPT-2's regex.
        "smollm" | "starcoder" | "refact" | "codeshell" => (
            Sequence::new(vec![Digits::new(true).into(), gpt2]).into(),
            false,
        ),
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "falcon3" => (
            Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level_only]).into(),
            true,
        ),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => (
            Sequence::new(vec![split(QWEN2_REGEX)?, byte_level_only]).into(),
            false,
        ),
        other => {
            return Err(err(
                path,
                format!("unsupported pre-tokenizer `{other}` in `tokenizer.ggml.pre` (supported: {SUPPORTED_PRE})"),
            ))
        }
    })
}

/// Builds the tokenizer of a GGUF file from its metadata.
pub fn load(path: &Path) -> Result<GgufTokenizer, EngineError> {
    let meta = read_metadata(path)?;
    let model = meta
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| err(path, "GGUF metadata has no `tokenizer.ggml.model` (no tokenizer inside; give a tokenizer.json)"))?;
    if model != "gpt2" {
        return Err(err(
            path,
            format!("unsupported tokenizer model `{model}` in `tokenizer.ggml.model` (supported: gpt2, byte-level BPE)"),
        ));
    }
    let tokens = string_list(&meta, "tokenizer.ggml.tokens", path)?;
    let merges_raw = string_list(&meta, "tokenizer.ggml.merges", path)?;
    let token_types: Vec<i32> = match meta.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .ok()
            .and_then(|vs| {
                vs.iter()
                    .map(|v| int_value(v).map(|x| x as i32))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                err(
                    path,
                    "`tokenizer.ggml.token_type` is not an array of integers",
                )
            })?,
        None => Vec::new(),
    };
    if !token_types.is_empty() && token_types.len() != tokens.len() {
        return Err(err(
            path,
            format!(
                "`tokenizer.ggml.token_type` has {} entries but `tokenizer.ggml.tokens` has {}",
                token_types.len(),
                tokens.len()
            ),
        ));
    }

    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        // Keep the first id of a duplicated string, as llama.cpp's lookup does.
        vocab.entry(token.clone()).or_insert(id as u32);
    }
    let merges = merges_raw
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    err(
                        path,
                        format!("`tokenizer.ggml.merges`[{i}] = {m:?} is not \"a b\""),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let pre = meta
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok());
    let (pre_tokenizer, ignore_merges) = pre_tokenizer(pre.map(String::as_str), path)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| {
            err(
                path,
                format!("building the BPE tokenizer from `tokenizer.ggml.tokens`/`merges`: {e}"),
            )
        })?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (`<|im_start|>`, `<|endoftext|>`, …) and user-defined ones (`<think>`) are
    // matched whole in the text before BPE, as llama.cpp does, so they encode to single ids.
    let mut control = Vec::new();
    let mut user_defined = Vec::new();
    for (&t, token) in token_types.iter().zip(&tokens) {
        match t {
            TOKEN_TYPE_CONTROL => control.push(AddedToken::from(token.clone(), true)),
            TOKEN_TYPE_USER_DEFINED => {
                user_defined.push(AddedToken::from(token.clone(), false).normalized(false))
            }
            _ => {}
        }
    }
    tokenizer.add_special_tokens(&control);
    tokenizer.add_tokens(&user_defined);

    let n = tokens.len();
    let bos_token_id = token_id(&meta, "tokenizer.ggml.bos_token_id", n);
    let mut eos_token_ids = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = token_id(&meta, key, n) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let chat_template = meta
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    Ok(GgufTokenizer {
        tokenizer,
        bos_token_id,
        eos_token_ids,
        chat_template,
    })
}
