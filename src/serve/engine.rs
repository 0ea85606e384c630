//! The engine side of `serve`: one thread owns the model and answers generation requests in
//! arrival order from a bounded queue. The n choices of a request decode together as one batch
//! from one shared prefill, and the KV cache of the last prompt is kept, so the same prompt (or
//! one sharing its beginning) arriving again only runs the tokens that differ.

use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::Tensor;

use super::wire::{ApiError, Finish, GenParams, Prompt};
use crate::engine::decode::{Decoder, Ended, Row, Start, StopRule};
use crate::engine::lm::Prefix;
use crate::engine::sampler::{rollout_seed, splitmix64};
use crate::engine::tokenizer::TextTokenizer;
use crate::engine::worker::LmGenerator;
use crate::engine::EngineError;
use crate::trace::Message;

/// The status logged for a request whose client went away (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;
/// How often (in decoding steps) a running request checks that its client is still there.
const DISCONNECT_CHECK_EVERY: usize = 16;

/// What the engine is asked to do.
#[derive(Debug)]
pub enum Work {
    Complete(GenParams),
    /// Render `messages` with the model's chat template, then as [`Work::Complete`] (the
    /// params' prompt is ignored).
    Chat(Vec<Message>, GenParams),
}

/// One queued request: the work, where the answer goes, and the client's socket (to skip the
/// request when the client has gone before its turn).
pub struct Task {
    pub work: Work,
    pub reply: Sender<Result<Generation, ApiError>>,
    pub client: Option<TcpStream>,
}

/// One finished choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub text: String,
    pub finish: Finish,
    /// Tokens sampled for this choice (an end-of-text token is not counted).
    pub tokens: usize,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub choices: Vec<Choice>,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the previous request's cache.
    pub reused_tokens: usize,
}

impl Generation {
    pub fn completion_tokens(&self) -> usize {
        self.choices.iter().map(|c| c.tokens).sum()
    }
}

/// The seed of choice `index` of a request seeded with `seed`: choice 0 uses the seed itself,
/// so an n=1 request with a rollout's stored seed draws exactly what the local engine draws for
/// that seed from the same tokens; the others are FNV-mixed from (seed, index).
pub fn choice_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        seed
    } else {
        rollout_seed("anchorscope-serve", seed as usize, index)
    }
}

/// A fresh seed for a request that gave none (not reproducible, by the request's choice).
fn random_seed(counter: &mut u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    *counter = counter.wrapping_add(1);
    let mut state = nanos ^ counter.rotate_left(32);
    splitmix64(&mut state)
}

/// The KV cache of the last prompt run.
struct PromptCache {
    tokens: Vec<u32>,
    prefix: Prefix,
}

/// The model and its prompt cache.
pub struct Engine {
    generator: LmGenerator,
    /// Test-only fault (`--fault-delay-ms`): sleep before each request, as a slow model would,
    /// so requests queue behind each other.
    pub fault_delay: std::time::Duration,
    cache: Option<PromptCache>,
    seed_counter: u64,
}

impl Engine {
    pub fn new(generator: LmGenerator) -> Self {
        Engine {
            generator,
            fault_delay: std::time::Duration::ZERO,
            cache: None,
            seed_counter: 0,
        }
    }

    pub fn max_context(&self) -> usize {
        self.generator.lm.info().max_context
    }

    pub fn model_name(&self) -> &str {
        &self.generator.lm.info().name
    }

    /// Serve tasks until every sender is gone. A task whose client has disconnected is skipped;
    /// a panic while generating becomes a 500 and the cache is dropped (it may be half-built).
    pub fn run(mut self, tasks: Receiver<Task>) {
        for task in tasks {
            if task.client.as_ref().is_some_and(client_gone) {
                // Answered only for the log: nobody reads it.
                let _ = task.reply.send(Err(client_closed("before its turn")));
                continue;
            }
            if !self.fault_delay.is_zero() {
                std::thread::sleep(self.fault_delay);
            }
            let client = task.client;
            let result =
                guarded(|| self.work(task.work, &mut || client.as_ref().is_some_and(client_gone)));
            if result.as_ref().is_err_and(|e| e.status == 500) {
                // A failure (a panic above all) may have left the cache half-built.
                self.cache = None;
            }
            // The client may have gone meanwhile; nothing to do then.
            let _ = task.reply.send(result);
        }
    }

    /// Tokenize, prefill (reusing the cache) and decode one request.
    pub fn work(
        &mut self,
        work: Work,
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Generation, ApiError> {
        let params = match work {
            Work::Complete(p) => p,
            Work::Chat(messages, mut p) => {
                let template = &self.generator.template;
                // A template may refuse a conversation (roles out of order, say): the
                // client's request is what is wrong.
                let text = template
                    .render_prompt(&messages)
                    .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
                p.prompt = Prompt::Text(text);
                // The turn ends at the template's end marker even where the tokenizer does not
                // count it as an end-of-text token.
                let end = template.turn_end().to_string();
                if !p.stop.contains(&end) {
                    p.stop.push(end);
                }
                p
            }
        };
        let tokens = match &params.prompt {
            Prompt::Text(text) => self.generator.tokenizer.encode(text).map_err(engine_err)?,
            Prompt::Tokens(ids) => {
                let vocab = self.generator.lm.info().vocab_size;
                if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                    return Err(ApiError::invalid(
                        "prompt",
                        format!("token id {bad} is outside the model's vocabulary of {vocab}"),
                    ));
                }
                ids.clone()
            }
        };
        if tokens.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "the prompt encodes to no tokens",
            ));
        }
        let context = self.max_context();
        if tokens.len() + params.max_tokens > context {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "the prompt has {} tokens and max_tokens is {}: together {} exceed the \
                     model's context of {context} tokens",
                    tokens.len(),
                    params.max_tokens,
                    tokens.len() + params.max_tokens
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let (prefix, logits, reused) = self.prefill(&tokens).map_err(engine_err)?;
        let base_seed = params
            .seed
            .unwrap_or_else(|| random_seed(&mut self.seed_counter));
        let seeds: Vec<u64> = (0..params.n).map(|i| choice_seed(base_seed, i)).collect();
        let choices = self
            .decode(&prefix, &logits, &seeds, &params, gone)
            .map_err(engine_err)?
            .ok_or_else(|| client_closed("while generating"))?;
        Ok(Generation {
            choices,
            prompt_tokens: tokens.len(),
            reused_tokens: reused,
        })
    }

    /// The cache of `tokens` and the logits after the last one, running only what the cached
    /// prompt does not share; also how many tokens came from the cache.
    fn prefill(&mut self, tokens: &[u32]) -> Result<(Prefix, Tensor, usize), EngineError> {
        let lm = &self.generator.lm;
        let cached = self.cache.take();
        let shared = cached
            .as_ref()
            .map_or(0, |c| common_prefix(&c.tokens, tokens));
        // At least the last token runs again: its logits are the first choice's distribution.
        let base = shared.min(tokens.len() - 1);
        let (prefix, logits) = match cached {
            Some(c) if base > 0 => lm.extend(&c.prefix.truncate(base), &tokens[base..])?,
            _ if tokens.len() == 1 => lm.extend(&lm.prefill(tokens)?.truncate(0), tokens)?,
            _ => {
                let (head, last) = tokens.split_at(tokens.len() - 1);
                lm.extend(&lm.prefill(head)?, last)?
            }
        };
        self.cache = Some(PromptCache {
            tokens: tokens.to_vec(),
            prefix: prefix.clone(),
        });
        Ok((prefix, logits, base))
    }

    /// Decode one row per seed from `prefix` together, in the decode session the worker uses
    /// (`engine::decode`), with the API's stop rule; `None` when the client went away meanwhile.
    fn decode(
        &self,
        prefix: &Prefix,
        logits: &Tensor,
        seeds: &[u64],
        params: &GenParams,
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Vec<Choice>>, EngineError> {
        let decoder = Decoder {
            lm: &self.generator.lm,
            tokenizer: &self.generator.tokenizer,
            eos: self.generator.eos(),
            mask_eos: false,
            temperature: params.temperature,
            top_p: params.top_p,
        };
        let start = Start {
            slot: 0,
            prefix: prefix.clone(),
            logits: logits.clone(),
            seeds: seeds.to_vec(),
        };
        let mut rule = ApiRule {
            tokenizer: &self.generator.tokenizer,
            params,
            gone,
            searched: vec![StopSearch::default(); seeds.len()],
            done: vec![None; seeds.len()],
            steps: 0,
            failed: None,
        };
        let ended = decoder.run(vec![start], &mut rule)?;
        // A tokenizer failure while flushing a finished row is the request's error, as before
        // the decode loop was shared.
        if let Some(e) = rule.failed {
            return Err(e);
        }
        if ended == Ended::Early {
            return Ok(None);
        }
        rule.done
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.ok_or_else(|| EngineError::Other(format!("choice {i} never finished"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The API's stop rule: a choice ends at an end-of-text token, before the earliest stop
/// string, or at `max_tokens`; every few steps the client is checked and, gone, the session
/// ends early.
struct ApiRule<'a> {
    tokenizer: &'a TextTokenizer,
    params: &'a GenParams,
    gone: &'a mut dyn FnMut() -> bool,
    /// Per row: how far its text was searched for stop strings.
    searched: Vec<StopSearch>,
    done: Vec<Option<Choice>>,
    steps: usize,
    /// The first error met inside the rule (flushing a row's text), answered after the session.
    failed: Option<EngineError>,
}

impl ApiRule<'_> {
    /// Cut the row's text before the earliest stop string it now holds; whether one was found.
    fn cut_at_stop(&mut self, row: &mut Row) -> bool {
        self.searched
            .get_mut(row.index)
            .is_some_and(|s| s.cut(&mut row.stream.text, &self.params.stop))
    }

    /// Flush the held-back tail (the last character's bytes): it may complete a stop string.
    fn flush_then(&mut self, row: &mut Row, otherwise: Finish) -> Finish {
        if let Err(e) = row.stream.flush(self.tokenizer, &row.tokens) {
            self.failed.get_or_insert(e);
            return otherwise;
        }
        if self.cut_at_stop(row) {
            Finish::Stop
        } else {
            otherwise
        }
    }
}

/// A growing text searched for stop strings without searching it all again at every token.
#[derive(Clone, Copy, Debug, Default)]
struct StopSearch {
    /// Bytes of the text already searched (minus an overlap as long as the longest stop).
    searched: usize,
}

impl StopSearch {
    /// Cut `text` before the earliest stop string it now holds; whether one was found.
    fn cut(&mut self, text: &mut String, stops: &[String]) -> bool {
        match earliest_stop(text, self.searched, stops) {
            Some(at) => {
                text.truncate(at);
                true
            }
            None => {
                let longest = stops.iter().map(String::len).max().unwrap_or(0);
                // A stop string may straddle the old end: search again from that far back.
                self.searched = floor_char(text, text.len().saturating_sub(longest));
                false
            }
        }
    }
}

impl StopRule<Finish> for ApiRule<'_> {
    fn after_token(&mut self, row: &mut Row) -> Option<Finish> {
        if self.cut_at_stop(row) {
            Some(Finish::Stop)
        } else if row.tokens.len() >= self.params.max_tokens {
            Some(self.flush_then(row, Finish::Length))
        } else {
            None
        }
    }

    fn end_of_text(&mut self, row: &mut Row) -> Finish {
        self.flush_then(row, Finish::Stop)
    }

    fn finished(&mut self, row: Row, finish: Finish) -> Result<(), EngineError> {
        let index = row.index;
        let choice = Choice {
            tokens: row.tokens.len(),
            text: row.stream.text,
            finish,
        };
        if let Some(slot) = self.done.get_mut(index) {
            *slot = Some(choice);
        }
        Ok(())
    }

    fn proceed(&mut self) -> bool {
        self.steps += 1;
        !(self.steps.is_multiple_of(DISCONNECT_CHECK_EVERY) && (self.gone)())
    }
}

/// The byte where the earliest stop string starts in `text[from..]` (absolute), if any.
pub fn earliest_stop(text: &str, from: usize, stops: &[String]) -> Option<usize> {
    let from = floor_char(text, from.min(text.len()));
    stops
        .iter()
        .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
        .min()
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The number of leading tokens two sequences share.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether the peer has closed the connection (a read would return end of file). Data waiting
/// (a pipelined request) or nothing yet both mean it is still there.
pub fn client_gone(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let gone = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    gone
}

/// The client closed its connection: 499 (nginx's "client closed request"), for the log only.
fn client_closed(when: &str) -> ApiError {
    ApiError::new(
        CLIENT_CLOSED,
        "client_closed_request",
        format!("the client disconnected {when}"),
    )
}

fn engine_err(e: EngineError) -> ApiError {
    match e {
        EngineError::ContextOverflow { .. } => {
            ApiError::invalid("max_tokens", e.to_string()).with_code("context_length_exceeded")
        }
        e => ApiError::server(format!("engine error: {e}")),
    }
}

/// Run `f`; a panic becomes a 500 whose message is the panic's.
fn guarded<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(ApiError::server(format!(
            "the engine panicked: {}",
            panic_message(panic.as_ref())
        )))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Start the engine thread; tasks are sent through the returned queue.
pub fn spawn(
    engine: Engine,
    tasks: Receiver<Task>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("anchorscope-serve-engine".into())
        .spawn(move || engine.run(tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_from_the_searched_mark() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(earliest_stop("abc END x\n\n", 0, &stops), Some(4));
        assert_eq!(earliest_stop("a\n\nEND", 0, &stops), Some(1));
        assert_eq!(earliest_stop("abcdef", 0, &stops), None);
        // From inside a multi-byte character: moved back to its start.
        assert_eq!(earliest_stop("éEND", 1, &stops), Some(2));
    }

    #[test]
    fn stream_cut_keeps_text_before_a_stop_spanning_two_pushes() {
        let mut s = StopSearch::default();
        let mut text = "hello EN".to_string();
        let stops = vec!["END".to_string()];
        assert!(!s.cut(&mut text, &stops));
        text.push_str("D and more");
        assert!(s.cut(&mut text, &stops));
        assert_eq!(text, "hello ");
    }

    #[test]
    fn seeds_per_choice() {
        assert_eq!(choice_seed(42, 0), 42);
        assert_eq!(choice_seed(42, 1), choice_seed(42, 1));
        assert_ne!(choice_seed(42, 1), choice_seed(42, 2));
        assert_ne!(choice_seed(42, 1), choice_seed(43, 1));
        let mut c = 0;
        assert_ne!(random_seed(&mut c), random_seed(&mut c));
    }

    fn tiny_engine(dir: &std::path::Path) -> Engine {
        use crate::engine::lm::testing::{write_tiny_gguf, TinySpec};
        let path = dir.join("tiny.gguf");
        let spec = TinySpec::new(crate::engine::lm::Arch::Llama, 5).with_byte_level_tokenizer();
        write_tiny_gguf(&path, &spec).unwrap();
        Engine::new(LmGenerator::load(&path, &candle_core::Device::Cpu).unwrap())
    }

    fn params(prompt: &str, n: usize, seed: u64) -> GenParams {
        GenParams {
            prompt: Prompt::Text(prompt.into()),
            max_tokens: 12,
            temperature: 0.8,
            top_p: 0.95,
            n,
            seed: Some(seed),
            stop: Vec::new(),
        }
    }

    #[test]
    fn a_cached_prompt_prefix_gives_what_a_cold_engine_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut warm = tiny_engine(dir.path());
        let mut cold = tiny_engine(dir.path());
        let never = &mut || false;
        let a = warm
            .work(Work::Complete(params("hello world 12", 2, 9)), never)
            .unwrap();
        assert_eq!(a.reused_tokens, 0);
        // Shares "hello world" with the cached prompt: only the rest runs.
        let shared = warm
            .work(Work::Complete(params("hello world again", 3, 4)), never)
            .unwrap();
        assert!(shared.reused_tokens >= 2, "{shared:?}");
        let fresh = cold
            .work(Work::Complete(params("hello world again", 3, 4)), never)
            .unwrap();
        assert_eq!(fresh.reused_tokens, 0);
        assert_eq!(shared.choices, fresh.choices);
        assert_eq!(shared.choices.len(), 3);
        // The same prompt again reuses all but its last token.
        let again = warm
            .work(Work::Complete(params("hello world again", 3, 4)), never)
            .unwrap();
        assert_eq!(again.reused_tokens, again.prompt_tokens - 1);
        assert_eq!(again.choices, fresh.choices);
    }

    #[test]
    fn a_client_gone_mid_generation_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = tiny_engine(dir.path());
        let mut p = params("hello", 1, 1);
        p.max_tokens = 200;
        p.temperature = 0.0;
        let e = engine
            .work(Work::Complete(p), &mut || true)
            .map(|g| g.choices[0].tokens);
        // Either it stopped at the first check, or the model ended before it.
        match e {
            Err(e) => assert_eq!(e.status, CLIENT_CLOSED),
            Ok(tokens) => assert!(tokens < DISCONNECT_CHECK_EVERY, "{tokens}"),
        }
    }

    #[test]
    fn a_panic_becomes_a_500_with_its_message() {
        let e = guarded::<()>(|| panic!("index out of range at row {}", 3)).unwrap_err();
        assert_eq!(e.status, 500);
        assert!(
            e.message.contains("index out of range at row 3"),
            "{}",
            e.message
        );
        let e = guarded::<()>(|| std::panic::panic_any(7u8)).unwrap_err();
        assert!(e.message.contains("unknown panic"), "{}", e.message);
        assert_eq!(guarded(|| Ok(5)), Ok(5));
    }

    #[test]
    fn common_prefix_counts_shared_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
