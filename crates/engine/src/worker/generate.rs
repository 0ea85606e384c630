//! The candle path of [`Generator`]: prefix reuse, batched decoding, sampling per row.
//!
//! Per trace, the full text (rendered prompt + whole response) is tokenized once with offsets
//! and prefilled once; the KV cache of P_i is then that cache truncated at the last token
//! boundary before P_i's cut, extended by the few tokens of the remainder. N rows decode
//! together from it (the prefix is shared, not copied).

use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::chat::ChatTemplate;
use crate::chat_format::ChatFormat;
use crate::decode::{Decoder, Row, Start, StopRule};
use crate::lm::{Batch, Lm, Prefix};
use crate::tokenizer::TextTokenizer;
use crate::EngineError;
use anchorscope_core::trace::{FinishReason, Message, SamplerSettings, Trace};

use super::job::{Control, Generator, GroupControl, OneSlot, Sampled};

/// End of the final output in the scratchpad convention: a rollout is complete there.
const END_OF_OUTPUT: &str = anchorscope_core::trace::tags::OUTPUT.close;

/// A loaded model with its tokenizer and chat template.
pub struct LmGenerator {
    pub lm: Lm,
    pub tokenizer: TextTokenizer,
    pub template: ChatFormat,
    pub path: PathBuf,
    /// Reuse the trace's prefilled cache (the default). Off: every position is tokenized and
    /// prefilled from scratch — slower, and the reference the cache path is checked against.
    pub prefix_reuse: bool,
    /// Generate exactly `max_new_tokens` per row (benchmarks, like transformers'
    /// `min_new_tokens`): end-of-sequence tokens are never sampled, and neither the end of
    /// the output nor a decided label stops a row.
    pub ignore_stops: bool,
    eos: Vec<u32>,
    cache: Option<TraceCache>,
}

/// The prefilled full text of the last trace sampled.
struct TraceCache {
    text: String,
    tokens: Vec<u32>,
    offsets: Vec<Range<usize>>,
    /// Whether the offsets tile the text (each token starts where the previous ended, up to
    /// tokens sharing the bytes of one character); otherwise positions are prefilled from
    /// scratch, which is slower but never wrong.
    tiled: bool,
    /// The KV of the first tokens, as far as a request has needed so far (None: nothing yet).
    /// Filled lazily: a job at early positions does not pay for the rest of the trace, and a
    /// later job extends it instead of starting over.
    prefix: Option<Prefix>,
}

impl TraceCache {
    /// The cache of the first `len` tokens (at most the context), running only the tokens
    /// not cached yet; None for no tokens.
    fn prefix_upto(&mut self, lm: &Lm, len: usize) -> Result<Option<Prefix>, EngineError> {
        let len = len.min(self.tokens.len()).min(lm.info().max_context);
        if len == 0 {
            return Ok(None);
        }
        let have = self.prefix.as_ref().map_or(0, |p| p.len());
        if len > have {
            let grown = match &self.prefix {
                Some(p) => lm.extend(p, &self.tokens[have..len])?.0,
                None => lm.prefill(&self.tokens[..len])?,
            };
            self.prefix = Some(grown);
        }
        Ok(self.prefix.as_ref().map(|p| p.truncate(len)))
    }
}

impl LmGenerator {
    /// Load a GGUF file (tokenizer from its metadata) or a directory with `config.json`,
    /// `tokenizer.json` and `*.safetensors`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        if !path.exists() {
            return Err(EngineError::Model {
                path: path.to_path_buf(),
                message: "no such file or directory".into(),
            });
        }
        let tokenizer = if path.is_dir() {
            TextTokenizer::from_file(&path.join("tokenizer.json"))?
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            TextTokenizer::from_gguf(path)?
        } else {
            return Err(EngineError::Model {
                path: path.to_path_buf(),
                message: "expected a .gguf file or a model directory (config.json, \
                          tokenizer.json, *.safetensors)"
                    .into(),
            });
        };
        let lm = Lm::load(path, device)?;
        let info = lm.info().clone();
        let tok_vocab = tokenizer.vocab_size();
        // A model may pad its embedding table beyond the tokenizer, never the reverse.
        if tok_vocab > info.vocab_size {
            return Err(EngineError::TokenizerMismatch {
                path: path.to_path_buf(),
                message: format!(
                    "the tokenizer has {tok_vocab} tokens, the model only {}",
                    info.vocab_size
                ),
            });
        }
        let mut eos = info.eos_token_ids.clone();
        for id in &tokenizer.eos_token_ids {
            if !eos.contains(id) {
                eos.push(*id);
            }
        }
        // The model file's own chat template when it has one that renders (HF directories:
        // tokenizer_config.json's), else the family's built-in one.
        let jinja = tokenizer
            .chat_template
            .clone()
            .or_else(|| path.is_dir().then(|| config_chat_template(path)).flatten());
        let family = ChatTemplate::detect(&info.arch, &info.name, jinja.as_deref());
        let token = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default();
        let template = ChatFormat::of_model(
            family,
            jinja.as_deref(),
            &token(tokenizer.bos_token_id),
            &token(tokenizer.eos_token_ids.first().copied()),
        );
        Ok(Self {
            lm,
            tokenizer,
            template,
            path: path.to_path_buf(),
            prefix_reuse: true,
            ignore_stops: false,
            eos,
            cache: None,
        })
    }

    /// One line for status bars: `SmolLM2-135M-Instruct (llama, 49152 tokens)`.
    /// The ids that end a response: the model's end-of-sequence ids and the tokenizer's.
    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    pub fn describe(&self) -> String {
        let i = self.lm.info();
        format!("{} ({}, {} tokens)", i.name, i.arch, i.vocab_size)
    }

    /// The cache and next-token logits of `text[..cut]`, reusing the trace's prefilled text.
    fn prefix_at(
        &mut self,
        text: &str,
        cut: usize,
        max_new: usize,
    ) -> Result<(Prefix, Tensor), EngineError> {
        let context = self.lm.info().max_context;
        if self.cache.as_ref().is_none_or(|c| c.text != text) {
            self.cache = None;
            let encoded = self.tokenizer.encode_with_offsets(text)?;
            let (tokens, offsets): (Vec<u32>, Vec<Range<usize>>) = encoded.into_iter().unzip();
            let tiled = tiles(&offsets, text.len());
            if tokens.is_empty() {
                return Err(EngineError::Other(
                    "empty prompt and response: nothing to continue".into(),
                ));
            }
            self.cache = Some(TraceCache {
                text: text.to_string(),
                tokens,
                offsets,
                tiled,
                prefix: None,
            });
        }
        let Some(cache) = self.cache.as_mut() else {
            return Err(EngineError::Other("the trace cache was not filled".into()));
        };
        let (base, rest): (usize, Vec<u32>) = if cache.tiled && self.prefix_reuse {
            // Reuse only the tokens before the whitespace that ends the prefix: byte-level
            // pre-tokenizers split whitespace by what follows it (`\s+(?!\S)`), so "\n\nBefore"
            // in the whole text and a prefix ending in "\n\n" tokenize differently there. The
            // remainder is tokenized on its own, exactly as the prefix alone would be.
            let settled = text[..cut].trim_end().len();
            let (b, byte_b) = boundary(&cache.offsets, settled);
            let mut rest = if byte_b < cut {
                self.tokenizer.encode(&text[byte_b..cut])?
            } else {
                Vec::new()
            };
            let mut b = b;
            if rest.is_empty() {
                // The logits after the cut come from running the last token again.
                if b == 0 {
                    return Err(EngineError::Other(
                        "empty prefix: nothing to continue".into(),
                    ));
                }
                b -= 1;
                rest.push(cache.tokens[b]);
            }
            (b, rest)
        } else {
            (0, self.tokenizer.encode(&text[..cut])?)
        };
        // Counted from `b`, not from the truncated cache: past the context the cache holds
        // fewer tokens than the prefix has (only `context` were prefilled).
        let tokens = base + rest.len();
        if rest.is_empty() {
            return Err(EngineError::Other(
                "empty prefix: nothing to continue".into(),
            ));
        }
        if tokens + max_new > context {
            return Err(EngineError::ContextOverflow {
                tokens,
                max_new,
                context,
            });
        }
        match cache.prefix_upto(&self.lm, base)? {
            Some(p) => self.lm.extend(&p, &rest),
            None => from_scratch(&self.lm, &rest),
        }
    }

    /// Decode `seeds.len()` continuations from `prefix` (whose next-token logits are `logits`).
    fn decode_rows(
        &self,
        prefix: &Prefix,
        logits: &Tensor,
        seeds: &[u64],
        settings: &SamplerSettings,
        control: &mut dyn Control,
    ) -> Result<(), EngineError> {
        let start = Start {
            slot: 0,
            prefix: prefix.clone(),
            logits: logits.clone(),
            seeds: seeds.to_vec(),
        };
        self.decode_group(vec![start], settings, &mut OneSlot(control))
    }

    /// Decode the rows of every start together (the one decode session, `crate::decode`),
    /// with the rollout stop rule: the end of the output, the token cap, or labels already final.
    fn decode_group(
        &self,
        starts: Vec<Start>,
        settings: &SamplerSettings,
        control: &mut dyn GroupControl,
    ) -> Result<(), EngineError> {
        let max_new = settings.max_new_tokens as usize;
        if max_new == 0 {
            for start in starts {
                for seed in start.seeds {
                    let empty = Sampled {
                        seed,
                        text: String::new(),
                        tokens: 0,
                        finish: FinishReason::Length,
                    };
                    control.finished(start.slot, empty)?;
                }
            }
            return Ok(());
        }
        let decoder = Decoder {
            lm: &self.lm,
            tokenizer: &self.tokenizer,
            eos: &self.eos,
            mask_eos: self.ignore_stops,
            temperature: settings.temperature,
            top_p: settings.top_p,
        };
        let mut rule = RolloutRule {
            control,
            tokenizer: &self.tokenizer,
            max_new,
            ignore_stops: self.ignore_stops,
        };
        decoder.run(starts, &mut rule)?;
        Ok(())
    }

    /// One response to `messages`, the assistant's turn seeded with `opener` (e.g.
    /// `<SCRATCHPAD_REASONING>`), for `collect`. Never stops early: the whole response is kept.
    pub fn complete(
        &mut self,
        messages: &[Message],
        opener: &str,
        seed: u64,
        settings: &SamplerSettings,
    ) -> Result<Sampled, EngineError> {
        let text = format!("{}{opener}", self.template.render_prompt(messages)?);
        let tokens = self.tokenizer.encode(&text)?;
        let context = self.lm.info().max_context;
        let max_new = settings.max_new_tokens as usize;
        if tokens.len() + max_new > context {
            return Err(EngineError::ContextOverflow {
                tokens: tokens.len(),
                max_new,
                context,
            });
        }
        if tokens.is_empty() {
            return Err(EngineError::Other("empty prompt".into()));
        }
        let (prefix, logits) = from_scratch(&self.lm, &tokens)?;
        let mut one = CollectOne::default();
        self.decode_rows(&prefix, &logits, &[seed], settings, &mut one)?;
        one.result
            .ok_or_else(|| EngineError::Other("the model produced no response".into()))
    }
}

impl LmGenerator {
    /// The rendered prompt and the whole response (prefilled once per trace), and where the
    /// response starts in it. The text to continue at a position
    /// ([`ChatFormat::continuation_prompt`]) is the first `response_at + prefix(i).len()`
    /// bytes, so the template is rendered once per trace, not once per position.
    fn full_text(&self, trace: &Trace) -> Result<(String, usize), EngineError> {
        let mut text = self.template.render_prompt(&trace.prompt)?;
        let response_at = text.len();
        text.push_str(&trace.response);
        Ok((text, response_at))
    }
}

impl Generator for LmGenerator {
    fn run_identity(&self) -> (String, String) {
        ("local".into(), self.path.display().to_string())
    }

    fn model_sha256(&self) -> Option<String> {
        cached_sha256(&self.path)
    }

    fn sample(
        &mut self,
        trace: &Trace,
        position: usize,
        seeds: &[u64],
        settings: &SamplerSettings,
        control: &mut dyn Control,
    ) -> Result<(), EngineError> {
        if seeds.is_empty() {
            return Ok(());
        }
        let (full, response_at) = self.full_text(trace)?;
        let cut = response_at + trace.prefix(position).len();
        let (prefix, logits) = self.prefix_at(&full, cut, settings.max_new_tokens as usize)?;
        self.decode_rows(&prefix, &logits, seeds, settings, control)
    }

    fn group_rows(&self, settings: &SamplerSettings) -> usize {
        if let Some(rows) = std::env::var("ANCHORSCOPE_BATCH_ROWS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            return rows;
        }
        let c = self.lm.config();
        // Each row holds its own KV (f32) in buffers sized for up to max_new tokens, and a row
        // of logits.
        let kv_per_token = c.n_layers * 2 * c.n_kv_heads * c.head_dim * 4;
        let positions = Batch::own_kv_capacity_for((settings.max_new_tokens as usize).max(1));
        let per_row = kv_per_token * positions + 2 * 4 * c.vocab_size;
        let (budget, most) = if self.lm.device().is_cpu() {
            (cpu_group_budget(), MAX_GROUP_ROWS_CPU)
        } else {
            (GPU_GROUP_BUDGET, MAX_GROUP_ROWS_GPU)
        };
        (budget / per_row.max(1)).clamp(1, most)
    }

    fn sample_group(
        &mut self,
        trace: &Trace,
        work: &[(usize, Vec<u64>)],
        settings: &SamplerSettings,
        control: &mut dyn GroupControl,
    ) -> Result<(), EngineError> {
        let (full, response_at) = self.full_text(trace)?;
        let max_new = settings.max_new_tokens as usize;
        let mut starts = Vec::with_capacity(work.len());
        for (slot, (position, seeds)) in work.iter().enumerate() {
            if seeds.is_empty() {
                continue;
            }
            // Every position's prefix comes from the one prefilled trace (prefix_at keeps it).
            let cut = response_at + trace.prefix(*position).len();
            match self.prefix_at(&full, cut, max_new) {
                Ok((prefix, logits)) => starts.push(Start {
                    slot,
                    prefix,
                    logits,
                    seeds: seeds.clone(),
                }),
                Err(e) => control.failed(slot, e),
            }
        }
        self.decode_group(starts, settings, control)
    }
}

/// Memory the rows of one batched group may take on the GPU (their own KV and logits, if every
/// row ran to the token cap); the shared prefixes are counted once per position.
const GPU_GROUP_BUDGET: usize = 4 << 30;

/// The same on CPU: a quarter of the memory available now, between 512 MiB and 8 GiB.
fn cpu_group_budget() -> usize {
    let available =
        crate::proc_memory::meminfo_bytes("MemAvailable:").and_then(|b| usize::try_from(b).ok());
    match available {
        Some(bytes) => (bytes / 4).clamp(512 << 20, 8 << 30),
        None => 1 << 30,
    }
}
/// On CPU a decoding step is compute-bound from ~64 rows on: more rows only delay the first
/// finished rollouts.
const MAX_GROUP_ROWS_CPU: usize = 128;
const MAX_GROUP_ROWS_GPU: usize = 512;

/// The cache and next-token logits of `tokens` (not empty) without any reuse.
fn from_scratch(lm: &Lm, tokens: &[u32]) -> Result<(Prefix, Tensor), EngineError> {
    let (head, last) = tokens.split_at(tokens.len() - 1);
    // `extend` gives the logits; the head is prefilled first (all of it when only one token,
    // then truncated to the empty view).
    let base = if head.is_empty() {
        lm.prefill(tokens)?.truncate(0)
    } else {
        lm.prefill(head)?
    };
    lm.extend(&base, last)
}

/// `collect`'s control: one row, no cancel, no early stop.
#[derive(Default)]
struct CollectOne {
    result: Option<Sampled>,
}

impl Control for CollectOne {
    fn cancelled(&mut self) -> bool {
        false
    }
    fn tokens(&mut self, _n: usize) {}
    fn decided(&self, _continuation: &str) -> bool {
        false
    }
    fn finished(&mut self, sampled: Sampled) -> Result<(), EngineError> {
        self.result = Some(sampled);
        Ok(())
    }
}

/// The rollout stop rule: a row ends at the end of the final output (`</OUTPUT>`, kept), at
/// the token cap, or once the caller says its labels are final; without stops (benchmarks) only
/// at the cap.
struct RolloutRule<'c, 't> {
    control: &'c mut dyn GroupControl,
    tokenizer: &'t TextTokenizer,
    max_new: usize,
    ignore_stops: bool,
}

impl StopRule<FinishReason> for RolloutRule<'_, '_> {
    fn sampled(&mut self, rows: usize) {
        self.control.tokens(rows);
    }

    fn after_token(&mut self, row: &mut Row) -> Option<FinishReason> {
        let at_cap = row.tokens.len() >= self.max_new;
        if self.ignore_stops {
            return at_cap.then_some(FinishReason::Length);
        }
        if let Some(end) = row.stream.text.find(END_OF_OUTPUT) {
            row.stream.text.truncate(end + END_OF_OUTPUT.len());
            Some(FinishReason::Stop)
        } else if at_cap {
            Some(FinishReason::Length)
        } else if self.control.decided(row.slot, &row.stream.text) {
            Some(FinishReason::Decided)
        } else {
            None
        }
    }

    fn end_of_text(&mut self, _row: &mut Row) -> FinishReason {
        FinishReason::Stop
    }

    fn finished(&mut self, mut row: Row, finish: FinishReason) -> Result<(), EngineError> {
        row.stream.flush(self.tokenizer, &row.tokens)?;
        let sampled = Sampled {
            seed: row.seed,
            text: row.stream.text,
            tokens: row.tokens.len() as u32,
            finish,
        };
        self.control.finished(row.slot, sampled)
    }

    fn proceed(&mut self) -> bool {
        !self.control.cancelled()
    }
}

/// `chat_template` of the `tokenizer_config.json` in a model directory (a string; the list
/// form of named templates gives its `default`).
fn config_chat_template(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    match value.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// Whether token offsets tile `0..len` in order: each token starts where the previous ended,
/// or repeats the previous range (tokens sharing one multi-byte character).
pub fn tiles(offsets: &[Range<usize>], len: usize) -> bool {
    let mut end = 0;
    let mut last: Option<&Range<usize>> = None;
    for r in offsets {
        let same_char = last.is_some_and(|l| l == r);
        if !same_char && r.start != end {
            return false;
        }
        end = r.end;
        last = Some(r);
    }
    end == len
}

/// The largest token count b whose tokens lie entirely before `cut`, and the byte they end at.
pub fn boundary(offsets: &[Range<usize>], cut: usize) -> (usize, usize) {
    let mut b = 0;
    let mut byte = 0;
    for (k, r) in offsets.iter().enumerate() {
        if r.end > cut {
            break;
        }
        // Tokens that share a character's bytes must be taken together with the next ones.
        if offsets.get(k + 1).is_some_and(|n| n == r) {
            continue;
        }
        b = k + 1;
        byte = r.end;
    }
    (b, byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_takes_whole_tokens_before_the_cut() {
        // "Hello world." as [Hello][ world][.]
        let offsets = vec![0..5, 5..11, 11..12];
        assert!(tiles(&offsets, 12));
        assert_eq!(boundary(&offsets, 0), (0, 0));
        assert_eq!(boundary(&offsets, 5), (1, 5));
        assert_eq!(boundary(&offsets, 8), (1, 5)); // mid-token: remainder " wo" is re-encoded
        assert_eq!(boundary(&offsets, 12), (3, 12));
    }

    #[test]
    fn tokens_sharing_a_character_stay_together() {
        // "aé" where é is split over two byte-level tokens reported with the same range.
        let offsets = vec![0..1, 1..3, 1..3];
        assert!(tiles(&offsets, 3));
        assert_eq!(boundary(&offsets, 3), (3, 3));
        assert_eq!(boundary(&offsets, 2), (1, 1));
    }

    #[test]
    fn gaps_or_trimmed_offsets_do_not_tile() {
        assert!(!tiles(&[0..5, 6..11], 11));
        assert!(!tiles(&[0..5, 5..5], 6));
        assert!(tiles(&[], 0));
    }
}

/// The model file's SHA-256, computed once per file and process (a GGUF is read in well under
/// a second, but a job starts on every `r`); `None` for a model directory or an unreadable file.
fn cached_sha256(path: &std::path::Path) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<std::path::PathBuf, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hash) = cache.lock().ok()?.get(path) {
        return Some(hash.clone());
    }
    if !path.is_file() {
        return None;
    }
    let hash = crate::install::sha256_file(path).ok()?;
    cache.lock().ok()?.insert(path.to_path_buf(), hash.clone());
    Some(hash)
}

#[cfg(test)]
mod model_hash_tests {
    use super::cached_sha256;

    #[test]
    fn model_hash_is_the_files_sha256_and_none_for_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 test vector.
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(cached_sha256(&file).as_deref(), Some(want));
        assert_eq!(cached_sha256(&file).as_deref(), Some(want), "cached");
        assert_eq!(cached_sha256(dir.path()), None);
    }
}
