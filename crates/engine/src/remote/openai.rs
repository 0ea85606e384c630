//! [`OpenAiGenerator`]: the [`Generator`] that samples through an OpenAI-compatible server.
//!
//! The prompt is the text the local engine continues ([`ChatTemplate::continuation_prompt`]):
//! the trace's messages rendered with the model's chat template, then the kept reasoning, sent
//! raw to `/v1/completions` so the server continues inside the reasoning. The seeds of one
//! position go out in requests of `n_per_request` continuations, at most `concurrency` requests
//! in flight (one thread each); every reply is handed to the job as it arrives, so rollouts are
//! stored as they come. A cancel stops waiting at once; replies that arrive later are dropped.
//!
//! Each rollout's token count is decided per reply ([`super::usage`]): the server's when it
//! counts per choice, else our own count of the text ([`TokenCounter`]). A reply with
//! duplicated choices ([`super::duplicates`]) makes the generator ask for one continuation per
//! request from then on: only its first choice is kept, the other seeds are sampled again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::chat::ChatTemplate;
use crate::worker::{Control, Generator, Sampled};
use crate::EngineError;
use anchorscope_core::trace::{Message, SamplerSettings, Trace};

use super::client::Client;
use super::duplicates::duplicate_choices;
use super::protocol::{self, Completion};
use super::retry::RemoteError;
use super::settings::{EngineKind, EngineSettings};
use super::token_count::TokenCounter;
use super::usage::per_choice_tokens;

/// End of the final output in the scratchpad convention (the local engine stops there too).
const END_OF_OUTPUT: &str = anchorscope_core::trace::tags::OUTPUT.close;

/// How often the job's cancel flag is checked while requests are in flight.
const POLL: Duration = Duration::from_millis(100);

/// Samples continuations on a remote server.
pub struct OpenAiGenerator {
    client: Arc<Client>,
    pub template: ChatTemplate,
    /// Continuations per request; drops to 1 for good once the server rejects n > 1 or
    /// returns duplicated choices.
    n_per_request: Arc<AtomicUsize>,
    /// Set once, by the first reply with duplicated choices: what happened and what the
    /// generator does since (the warning, and a note of every later run's record).
    duplicate_fallback: Arc<OnceLock<String>>,
    /// Counts each choice's tokens when the server's usage is not per choice.
    counter: TokenCounter,
    concurrency: usize,
    /// Set when a request gave up on an unreachable server: the next position first probes
    /// the server once instead of spending every retry again (a job over many positions would
    /// otherwise wait out the whole backoff at each of them).
    unreachable: bool,
}

impl OpenAiGenerator {
    /// A generator over `client` (no check of the server), counting tokens with `counter`.
    pub fn new(
        client: Client,
        template: ChatTemplate,
        n_per_request: usize,
        concurrency: usize,
        counter: TokenCounter,
    ) -> Self {
        Self {
            client: Arc::new(client),
            template,
            n_per_request: Arc::new(AtomicUsize::new(n_per_request.max(1))),
            duplicate_fallback: Arc::new(OnceLock::new()),
            counter,
            concurrency: concurrency.max(1),
            unreachable: false,
        }
    }

    /// Build from `[engine]` settings, read the API key from its variable, and check that the
    /// server answers and serves the model. Progress goes to `status`.
    pub fn connect(
        settings: &EngineSettings,
        status: &mut dyn FnMut(crate::EngineStatus),
    ) -> Result<Self, EngineError> {
        if settings.kind != EngineKind::Openai {
            return Err(EngineError::Other(
                "the openai generator needs [engine] kind = \"openai\"".into(),
            ));
        }
        settings.validate().map_err(EngineError::Other)?;
        let key = settings.api_key().map_err(EngineError::Other)?;
        let url = settings.url.as_deref().unwrap_or_default();
        let model = settings.model.as_deref().unwrap_or_default();
        let client = Client::new(
            url,
            model,
            key,
            Duration::from_secs_f64(settings.timeout_s),
            settings.max_retries,
        )
        .map_err(EngineError::Other)?;
        let template = match &settings.template {
            Some(name) => ChatTemplate::from_name(name).ok_or_else(|| {
                EngineError::Other(format!("[engine] template = {name:?}: unknown"))
            })?,
            None => ChatTemplate::for_model("", model),
        };
        status(crate::EngineStatus::Loading(format!(
            "connecting to {}…",
            client.origin()
        )));
        client.check_model().map_err(remote_error)?;
        let counter =
            TokenCounter::find(settings.tokenizer.as_deref(), model).map_err(EngineError::Other)?;
        let generator = Self::new(
            client,
            template,
            settings.n_per_request,
            settings.concurrency,
            counter,
        );
        status(crate::EngineStatus::Ready(generator.describe()));
        Ok(generator)
    }

    /// One line for status bars: `deepseek-ai/DeepSeek-V3.1 at http://h:8000 (openai, deepseek-r1 template)`.
    pub fn describe(&self) -> String {
        format!(
            "{} at {} (openai, {} template)",
            self.client.model,
            self.client.origin(),
            self.template.name()
        )
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Continuations per request now (1 after a server refused n > 1).
    pub fn n_per_request(&self) -> usize {
        self.n_per_request.load(Ordering::Relaxed)
    }

    /// One response to `messages`, the assistant's turn seeded with `opener` (for `collect`).
    pub fn complete(
        &self,
        messages: &[Message],
        opener: &str,
        seed: u64,
        settings: &SamplerSettings,
    ) -> Result<Sampled, EngineError> {
        let prompt = format!("{}{opener}", self.template.render_prompt(messages));
        let stop: &[&str] = if opener.contains("SCRATCHPAD") {
            &[END_OF_OUTPUT]
        } else {
            &[]
        };
        let body = protocol::completion_body(&self.client.model, &prompt, 1, seed, settings, stop);
        let reply = self
            .client
            .complete(&body, 1, &|| false)
            .map_err(remote_error)?;
        sampled_of(reply, &[seed], &self.counter, settings.max_new_tokens)
            .pop()
            .ok_or_else(|| EngineError::Other("the server returned no choice".into()))
    }

    /// The note a run record carries when the server duplicated choices (None until then).
    pub fn duplicate_fallback(&self) -> Option<&str> {
        self.duplicate_fallback.get().map(String::as_str)
    }
}

fn remote_error(e: RemoteError) -> EngineError {
    EngineError::Other(e.to_string())
}

/// The rollouts of one reply, seed `seeds[i]` for choice `i`, for a request capped at
/// `max_tokens`. Tokens: per choice as [`per_choice_tokens`] decides from the reply's usage and
/// `counter`'s count of each text. A stop string the server cut off (vLLM reports it as
/// `stop_reason`) is put back, so the text ends as the local engine's does.
fn sampled_of(
    reply: Completion,
    seeds: &[u64],
    counter: &TokenCounter,
    max_tokens: u32,
) -> Vec<Sampled> {
    let texts: Vec<String> = reply
        .choices
        .iter()
        .map(|c| {
            let mut text = c.text.clone();
            if c.stop_string.as_deref() == Some(END_OF_OUTPUT) && !text.ends_with(END_OF_OUTPUT) {
                text.push_str(END_OF_OUTPUT);
            }
            text
        })
        .collect();
    let ours: Vec<u64> = texts.iter().map(|t| counter.count(t)).collect();
    let server: Vec<Option<u64>> = reply.choices.iter().map(|c| c.completion_tokens).collect();
    let (tokens, _source) = per_choice_tokens(
        reply.completion_tokens,
        &server,
        &ours,
        counter.is_exact(),
        max_tokens,
    );
    reply
        .choices
        .into_iter()
        .zip(texts)
        .zip(tokens)
        .filter_map(|((c, text), tokens)| {
            Some(Sampled {
                seed: *seeds.get(c.index)?,
                text,
                tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
                finish: c.finish,
            })
        })
        .collect()
}

/// The run-record note on token counts: the rule of [`per_choice_tokens`] with `counter`'s
/// way of counting.
fn token_note(counter: &TokenCounter) -> String {
    format!(
        "tokens per rollout: the server's usage when it counts each choice (a usage per choice, \
         or n = 1); a reply total that matches the sum of the choices' own counts is shared out \
         in proportion to them; otherwise each choice's tokens are {}",
        counter.describe()
    )
}

/// Whether a trace uses the scratchpad convention (then `</OUTPUT>` ends a rollout).
fn is_scratchpad(trace: &Trace) -> bool {
    anchorscope_core::trace::tags::uses_output_tags(&trace.response)
}

/// What a request thread hands to the job.
enum Reply {
    /// Rollouts for these seeds (a reply's choices, less any duplicates).
    Rollouts(Vec<u64>, Vec<Sampled>),
    /// A request failed for good.
    Failed(RemoteError),
    /// The way the rest is sampled changed (the generator's first duplicated reply).
    Changed(String),
}

impl Generator for OpenAiGenerator {
    fn run_identity(&self) -> (String, String) {
        (
            format!("remote {}", self.client.base()),
            self.client.model.clone(),
        )
    }

    fn run_notes(&self) -> Vec<String> {
        let mut notes = vec![token_note(&self.counter)];
        notes.extend(self.duplicate_fallback().map(str::to_string));
        notes
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
        if self.unreachable {
            self.client
                .probe()
                .map_err(|e| EngineError::Other(format!("the server is still unreachable: {e}")))?;
            self.unreachable = false;
        }
        let prompt: Arc<str> = self.template.continuation_prompt(trace, position).into();
        let stop: &'static [&'static str] = if is_scratchpad(trace) {
            &[END_OF_OUTPUT]
        } else {
            &[]
        };
        let per = self.n_per_request.load(Ordering::Relaxed);
        let queue: VecDeque<Vec<u64>> = seeds.chunks(per).map(<[u64]>::to_vec).collect();
        let workers = self.concurrency.min(queue.len());
        let queue = Arc::new(Mutex::new(queue));
        let stopped = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Reply>();
        for _ in 0..workers {
            let worker = RequestWorker {
                client: Arc::clone(&self.client),
                prompt: Arc::clone(&prompt),
                stop,
                settings: settings.clone(),
                queue: Arc::clone(&queue),
                stopped: Arc::clone(&stopped),
                n_per_request: Arc::clone(&self.n_per_request),
                duplicate_fallback: Arc::clone(&self.duplicate_fallback),
                counter: self.counter.clone(),
                tx: tx.clone(),
            };
            // Detached: after a cancel, a thread may still wait on its request; its reply then
            // finds the channel closed and is dropped.
            std::thread::Builder::new()
                .name("anchorscope-remote".into())
                .spawn(move || worker.run())
                .map_err(|e| EngineError::Other(format!("starting a request thread: {e}")))?;
        }
        drop(tx);
        let stop_all = || stopped.store(true, Ordering::Relaxed);
        let mut remaining = seeds.len();
        while remaining > 0 {
            if control.cancelled() {
                stop_all();
                return Ok(());
            }
            match rx.recv_timeout(POLL) {
                Ok(Reply::Rollouts(settled, rollouts)) => {
                    control.tokens(rollouts.iter().map(|s| s.tokens as usize).sum());
                    remaining = remaining.saturating_sub(settled.len());
                    for sampled in rollouts {
                        if let Err(e) = control.finished(sampled) {
                            stop_all();
                            return Err(e);
                        }
                    }
                }
                Ok(Reply::Changed(note)) => control.generation_changed(&note),
                Ok(Reply::Failed(e)) => {
                    stop_all();
                    self.unreachable = matches!(e, RemoteError::GaveUp { .. });
                    return Err(remote_error(e));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::Other(format!(
                        "{}: the request threads ended with {remaining} rollouts missing",
                        self.client.endpoint("/v1/completions")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One request thread: takes seed groups off the shared queue until it is empty.
struct RequestWorker {
    client: Arc<Client>,
    prompt: Arc<str>,
    stop: &'static [&'static str],
    settings: SamplerSettings,
    queue: Arc<Mutex<VecDeque<Vec<u64>>>>,
    stopped: Arc<AtomicBool>,
    n_per_request: Arc<AtomicUsize>,
    duplicate_fallback: Arc<OnceLock<String>>,
    counter: TokenCounter,
    tx: mpsc::Sender<Reply>,
}

impl RequestWorker {
    fn run(self) {
        while let Some(group) = self.next_group() {
            let n = group.len();
            let body = protocol::completion_body(
                &self.client.model,
                &self.prompt,
                n,
                group[0],
                &self.settings,
                self.stop,
            );
            let stopped = || self.stopped.load(Ordering::Relaxed);
            let result = self.client.complete(&body, n, &stopped);
            if let Err(RemoteError::Refused {
                status: 400,
                message,
                ..
            }) = &result
            {
                if n > 1 && protocol::rejects_n(message) {
                    // The server samples one continuation per request: split the group, and
                    // every later request of this generator asks for one.
                    self.n_per_request.store(1, Ordering::Relaxed);
                    self.requeue(&group);
                    continue;
                }
            }
            let sent = match result {
                Ok(reply) => self.settle(group, reply),
                Err(e) => self.tx.send(Reply::Failed(e)).is_ok(),
            };
            if !sent {
                return;
            }
        }
    }

    /// The next seed group, cut to the current continuations per request (groups queued
    /// before a fallback to n = 1 are split here rather than sent as they were).
    fn next_group(&self) -> Option<Vec<u64>> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let mut queue = self.queue.lock().ok()?;
        let mut group = queue.pop_front()?;
        let per = self.n_per_request.load(Ordering::Relaxed).max(1);
        if group.len() > per {
            let rest = group.split_off(per);
            for chunk in rest.rchunks(per) {
                queue.push_front(chunk.to_vec());
            }
        }
        Some(group)
    }

    /// Put seeds back at the front of the queue, one request each.
    fn requeue(&self, seeds: &[u64]) {
        if let Ok(mut q) = self.queue.lock() {
            for &seed in seeds.iter().rev() {
                q.push_front(vec![seed]);
            }
        }
    }

    /// Hand a reply's rollouts to the job. A reply with duplicated choices keeps only its
    /// first choice (the sample of the seed the request sent); the other seeds go back on the
    /// queue one request each, and every later request asks for one continuation. False when
    /// the job no longer listens.
    fn settle(&self, group: Vec<u64>, reply: Completion) -> bool {
        let n = group.len();
        let texts: Vec<&str> = reply.choices.iter().map(|c| c.text.as_str()).collect();
        // Every request carries a seed (completion_body).
        let duplicates = duplicate_choices(&texts, true);
        // Counted on the whole reply: its usage covers all n choices.
        let mut rollouts = sampled_of(reply, &group, &self.counter, self.settings.max_new_tokens);
        let Some(duplicates) = duplicates else {
            return self.tx.send(Reply::Rollouts(group, rollouts)).is_ok();
        };
        self.n_per_request.store(1, Ordering::Relaxed);
        rollouts.truncate(1);
        if self
            .tx
            .send(Reply::Rollouts(group[..1].to_vec(), rollouts))
            .is_err()
        {
            return false;
        }
        let what = if duplicates.all_identical {
            format!("all {n} choices identical")
        } else {
            format!(
                "{} of {n} choices repeating another",
                duplicates.repeats.len()
            )
        };
        let note = format!(
            "{} returned {what} for one request with a seed (the server seeds every choice \
             alike); from here on each request asks for one continuation with its own seed, \
             and the duplicated rollouts were dropped and sampled again",
            self.client.origin()
        );
        // Said once per generator: later duplicated replies (requests already in flight) are
        // settled the same way without repeating the warning. Sent before the seeds go back on
        // the queue, so the job records the change before any of their rollouts arrive.
        if self.duplicate_fallback.set(note.clone()).is_ok()
            && self.tx.send(Reply::Changed(note)).is_err()
        {
            return false;
        }
        self.requeue(&group[1..]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::protocol::Choice;
    use anchorscope_core::trace::FinishReason;

    fn choice(index: usize, text: &str, finish: FinishReason, stop: Option<&str>) -> Choice {
        Choice {
            index,
            text: text.into(),
            finish,
            stop_string: stop.map(str::to_string),
            completion_tokens: None,
        }
    }

    fn estimate() -> TokenCounter {
        TokenCounter::Estimate { model: "m".into() }
    }

    #[test]
    fn choices_get_their_seeds_tokens_and_stop_string() {
        let reply = Completion {
            choices: vec![
                choice(0, "a <OUTPUT>x", FinishReason::Stop, Some(END_OF_OUTPUT)),
                choice(1, "b", FinishReason::Length, None),
                choice(2, "c</OUTPUT>", FinishReason::Stop, Some(END_OF_OUTPUT)),
            ],
            completion_tokens: Some(10),
        };
        let got = sampled_of(reply, &[11, 22, 33], &estimate(), 64);
        assert_eq!(got.iter().map(|s| s.seed).collect::<Vec<_>>(), [11, 22, 33]);
        // Estimated 5, 1 and 3 tokens (the restored stop string included): the server's 10 is
        // their sum, shared out in proportion.
        assert_eq!(got.iter().map(|s| s.tokens).collect::<Vec<_>>(), [6, 1, 3]);
        assert_eq!(got[0].text, "a <OUTPUT>x</OUTPUT>");
        assert_eq!(got[1].text, "b");
        assert_eq!(got[2].text, "c</OUTPUT>");
        assert_eq!(got[1].finish, FinishReason::Length);
    }

    #[test]
    fn a_usage_that_is_one_choice_worth_is_replaced_by_our_counts() {
        // Four 64-byte texts (16 estimated tokens each) and a usage of 16: not their sum, so an
        // even split (4 each) would be wrong by the factor n.
        let text = "x".repeat(64);
        let reply = Completion {
            choices: (0..4)
                .map(|i| choice(i, &format!("{i}{text}"), FinishReason::Length, None))
                .collect(),
            completion_tokens: Some(16),
        };
        let got = sampled_of(reply, &[1, 2, 3, 4], &estimate(), 64);
        assert_eq!(got.iter().map(|s| s.tokens).collect::<Vec<_>>(), [17; 4]);
    }

    #[test]
    fn the_prompt_is_the_template_render_plus_the_prefix() {
        let mut trace = Trace::new(
            "t",
            vec![Message::new("user", "Q?")],
            "<SCRATCHPAD_REASONING>One. Two.".to_string(),
        );
        trace.sentences =
            anchorscope_core::trace::split::split_response(&trace.response, &Default::default());
        let text = ChatTemplate::ChatMl.continuation_prompt(&trace, 1);
        assert!(text.starts_with("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"));
        assert!(text.ends_with(trace.prefix(1)));
        assert!(is_scratchpad(&trace));
        assert_eq!(ChatTemplate::DeepSeekR1.name(), "deepseek-r1");
    }

    /// A loopback stand-in for a server that samples one continuation per request (as some
    /// OpenAI-compatible servers do): 400 for n > 1, else one choice naming the seed it got.
    /// It checks the client's protocol handling, not sampling (tests/remote_*.rs use the real
    /// `anchorscope serve`).
    fn one_per_request_server() -> u16 {
        crate::remote::testing::loopback_server(|request| {
            if request["n"].as_u64() != Some(1) {
                return (
                    400,
                    serde_json::json!({"error": {"message": "n > 1 is not supported"}}),
                );
            }
            let text = format!("seed {}", request["seed"]);
            let choice = serde_json::json!({"index": 0, "text": text, "finish_reason": "length"});
            (
                200,
                serde_json::json!({"choices": [choice], "usage": {"completion_tokens": 3}}),
            )
        })
    }

    /// Rollouts, tokens and generation changes as the job would see them.
    #[derive(Default)]
    struct Collect(Vec<Sampled>, usize, Vec<String>);

    impl Control for Collect {
        fn cancelled(&mut self) -> bool {
            false
        }
        fn tokens(&mut self, n: usize) {
            self.1 += n;
        }
        fn decided(&self, _continuation: &str) -> bool {
            false
        }
        fn finished(&mut self, sampled: Sampled) -> Result<(), EngineError> {
            self.0.push(sampled);
            Ok(())
        }
        fn generation_changed(&mut self, note: &str) {
            self.2.push(note.to_string());
        }
    }

    fn client_for(port: u16) -> Client {
        Client::new(
            &format!("http://127.0.0.1:{port}"),
            "m",
            None,
            Duration::from_secs(10),
            0,
        )
        .unwrap()
    }

    fn two_sentence_trace() -> Trace {
        let mut trace = Trace::new("t", vec![Message::new("user", "Q?")], "A. B.".to_string());
        trace.sentences =
            anchorscope_core::trace::split::split_response(&trace.response, &Default::default());
        trace
    }

    /// A server that gives every choice of a request the request's seed (as vLLM did before
    /// its PR 11898): n identical choices, named after the seed, with summed usage. It counts
    /// the requests that asked for n > 1.
    fn seed_reusing_server() -> (u16, Arc<AtomicUsize>) {
        let multi = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&multi);
        let port = crate::remote::testing::loopback_server(move |request| {
            let n = request["n"].as_u64().unwrap_or(1) as usize;
            if n > 1 {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            let text = format!("seed {}", request["seed"]);
            let choices: Vec<serde_json::Value> = (0..n)
                .map(|i| serde_json::json!({"index": i, "text": text, "finish_reason": "length"}))
                .collect();
            let usage = serde_json::json!({"completion_tokens": 3 * n});
            (200, serde_json::json!({"choices": choices, "usage": usage}))
        });
        (port, multi)
    }

    #[test]
    fn duplicated_choices_fall_back_to_one_seed_per_request_for_good() {
        let (port, multi) = seed_reusing_server();
        let mut generator =
            OpenAiGenerator::new(client_for(port), ChatTemplate::ChatMl, 4, 2, estimate());
        let trace = two_sentence_trace();
        let seeds = [1u64, 2, 3, 4, 5, u64::MAX];
        let mut control = Collect::default();
        generator
            .sample(&trace, 1, &seeds, &SamplerSettings::default(), &mut control)
            .unwrap();
        let mut got: Vec<(u64, String)> =
            control.0.iter().map(|s| (s.seed, s.text.clone())).collect();
        got.sort();
        let want: Vec<(u64, String)> = seeds
            .iter()
            .map(|&s| (s, format!("seed {}", protocol::wire_seed(s))))
            .collect();
        assert_eq!(
            got, want,
            "one rollout per seed, each its own request's sample"
        );
        assert_eq!(control.2.len(), 1, "warned once: {:?}", control.2);
        let note = &control.2[0];
        assert!(
            note.contains(&format!("127.0.0.1:{port}"))
                && note.contains("identical")
                && note.contains("one continuation"),
            "{note}"
        );
        assert_eq!(generator.n_per_request(), 1);
        assert!(
            generator.run_notes().contains(note),
            "later runs carry the note"
        );
        // Tokens: the kept first choices' shares of their replies' sums, then 3 per request.
        assert_eq!(control.1, 3 * seeds.len());
        // Remembered: the next position asks for one continuation per request from the start.
        let before = multi.load(Ordering::Relaxed);
        let mut next = Collect::default();
        generator
            .sample(
                &trace,
                0,
                &[7, 8, 9],
                &SamplerSettings::default(),
                &mut next,
            )
            .unwrap();
        assert_eq!(
            multi.load(Ordering::Relaxed),
            before,
            "no n > 1 request after the fallback"
        );
        assert_eq!(next.0.len(), 3);
        assert!(next.2.is_empty(), "no second warning");
    }

    #[test]
    fn run_notes_say_how_tokens_are_counted() {
        let generator = OpenAiGenerator::new(client_for(1), ChatTemplate::ChatMl, 4, 2, estimate());
        let notes = generator.run_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ESTIMATED"), "{notes:?}");
        assert_eq!(generator.duplicate_fallback(), None);
    }

    #[test]
    fn a_server_refusing_n_gets_one_request_per_seed() {
        let port = one_per_request_server();
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            "m",
            None,
            Duration::from_secs(10),
            0,
        )
        .unwrap();
        let mut generator = OpenAiGenerator::new(client, ChatTemplate::ChatMl, 4, 2, estimate());
        let mut trace = Trace::new("t", vec![Message::new("user", "Q?")], "A. B.".to_string());
        trace.sentences =
            anchorscope_core::trace::split::split_response(&trace.response, &Default::default());
        let seeds = [1u64, 2, 3, 4, 5, u64::MAX];
        let mut control = Collect::default();
        generator
            .sample(&trace, 1, &seeds, &SamplerSettings::default(), &mut control)
            .unwrap();
        assert_eq!(generator.n_per_request(), 1);
        let mut got: Vec<(u64, String)> =
            control.0.iter().map(|s| (s.seed, s.text.clone())).collect();
        got.sort();
        let want: Vec<(u64, String)> = seeds
            .iter()
            .map(|&s| (s, format!("seed {}", protocol::wire_seed(s))))
            .collect();
        assert_eq!(got, want, "each rollout carries the seed its request sent");
        assert_eq!(control.1, 3 * seeds.len());
    }
}
