//! [`OpenAiGenerator`]: the [`Generator`] that samples through an OpenAI-compatible server.
//!
//! The prompt is the text the local engine continues ([`ChatTemplate::continuation_prompt`]):
//! the trace's messages rendered with the model's chat template, then the kept reasoning, sent
//! raw to `/v1/completions` so the server continues inside the reasoning. The seeds of one
//! position go out in requests of `n_per_request` continuations, at most `concurrency` requests
//! in flight (one thread each); every reply is handed to the job as it arrives, so rollouts are
//! stored as they come. A cancel stops waiting at once; replies that arrive later are dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::chat::ChatTemplate;
use crate::worker::{Control, Generator, Sampled};
use crate::EngineError;
use anchorscope_core::trace::{Message, SamplerSettings, Trace};

use super::client::Client;
use super::protocol::{self, Completion};
use super::retry::RemoteError;
use super::settings::{EngineKind, EngineSettings};

/// End of the final output in the scratchpad convention (the local engine stops there too).
const END_OF_OUTPUT: &str = anchorscope_core::trace::tags::OUTPUT.close;

/// How often the job's cancel flag is checked while requests are in flight.
const POLL: Duration = Duration::from_millis(100);

/// Samples continuations on a remote server.
pub struct OpenAiGenerator {
    client: Arc<Client>,
    pub template: ChatTemplate,
    /// Continuations per request; drops to 1 for good once the server rejects n > 1.
    n_per_request: Arc<AtomicUsize>,
    concurrency: usize,
    /// Set when a request gave up on an unreachable server: the next position first probes
    /// the server once instead of spending every retry again (a job over many positions would
    /// otherwise wait out the whole backoff at each of them).
    unreachable: bool,
}

impl OpenAiGenerator {
    /// A generator over `client` (no check of the server).
    pub fn new(
        client: Client,
        template: ChatTemplate,
        n_per_request: usize,
        concurrency: usize,
    ) -> Self {
        Self {
            client: Arc::new(client),
            template,
            n_per_request: Arc::new(AtomicUsize::new(n_per_request.max(1))),
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
        let generator = Self::new(
            client,
            template,
            settings.n_per_request,
            settings.concurrency,
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
        sampled_of(reply, &[seed])
            .pop()
            .ok_or_else(|| EngineError::Other("the server returned no choice".into()))
    }
}

fn remote_error(e: RemoteError) -> EngineError {
    EngineError::Other(e.to_string())
}

/// The rollouts of one reply, seed `seeds[i]` for choice `i`. Tokens: the reply's
/// `completion_tokens` split evenly (the API reports no per-choice count). A stop string the
/// server cut off (vLLM reports it as `stop_reason`) is put back, so the text ends as the local
/// engine's does.
fn sampled_of(reply: Completion, seeds: &[u64]) -> Vec<Sampled> {
    let n = reply.choices.len().max(1) as u64;
    let total = reply.completion_tokens.unwrap_or(0);
    reply
        .choices
        .into_iter()
        .filter_map(|c| {
            let seed = *seeds.get(c.index)?;
            let share = total / n + u64::from((c.index as u64) < total % n);
            let mut text = c.text;
            if c.stop_string.as_deref() == Some(END_OF_OUTPUT) && !text.ends_with(END_OF_OUTPUT) {
                text.push_str(END_OF_OUTPUT);
            }
            Some(Sampled {
                seed,
                text,
                tokens: u32::try_from(share).unwrap_or(u32::MAX),
                finish: c.finish,
            })
        })
        .collect()
}

/// Whether a trace uses the scratchpad convention (then `</OUTPUT>` ends a rollout).
fn is_scratchpad(trace: &Trace) -> bool {
    anchorscope_core::trace::tags::uses_output_tags(&trace.response)
}

type Reply = (Vec<u64>, Result<Completion, RemoteError>);

impl Generator for OpenAiGenerator {
    fn run_identity(&self) -> (String, String) {
        (
            format!("remote {}", self.client.base()),
            self.client.model.clone(),
        )
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
                Ok((group, Ok(reply))) => {
                    let rollouts = sampled_of(reply, &group);
                    control.tokens(rollouts.iter().map(|s| s.tokens as usize).sum());
                    remaining -= group.len();
                    for sampled in rollouts {
                        if let Err(e) = control.finished(sampled) {
                            stop_all();
                            return Err(e);
                        }
                    }
                }
                Ok((_, Err(e))) => {
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
    tx: mpsc::Sender<Reply>,
}

impl RequestWorker {
    fn run(self) {
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            let group = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => return,
            };
            let Some(group) = group else { return };
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
                    if let Ok(mut q) = self.queue.lock() {
                        for &seed in group.iter().rev() {
                            q.push_front(vec![seed]);
                        }
                    }
                    continue;
                }
            }
            if self.tx.send((group, result)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::protocol::Choice;
    use anchorscope_core::trace::FinishReason;

    #[test]
    fn choices_get_their_seeds_tokens_and_stop_string() {
        let reply = Completion {
            choices: vec![
                Choice {
                    index: 0,
                    text: "a <OUTPUT>x".into(),
                    finish: FinishReason::Stop,
                    stop_string: Some(END_OF_OUTPUT.into()),
                },
                Choice {
                    index: 1,
                    text: "b".into(),
                    finish: FinishReason::Length,
                    stop_string: None,
                },
                Choice {
                    index: 2,
                    text: "c</OUTPUT>".into(),
                    finish: FinishReason::Stop,
                    stop_string: Some(END_OF_OUTPUT.into()),
                },
            ],
            completion_tokens: Some(10),
        };
        let got = sampled_of(reply, &[11, 22, 33]);
        assert_eq!(got.iter().map(|s| s.seed).collect::<Vec<_>>(), [11, 22, 33]);
        assert_eq!(got.iter().map(|s| s.tokens).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!(got[0].text, "a <OUTPUT>x</OUTPUT>");
        assert_eq!(got[1].text, "b");
        assert_eq!(got[2].text, "c</OUTPUT>");
        assert_eq!(got[1].finish, FinishReason::Length);
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

    #[derive(Default)]
    struct Collect(Vec<Sampled>, usize);

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
        let mut generator = OpenAiGenerator::new(client, ChatTemplate::ChatMl, 4, 2);
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
