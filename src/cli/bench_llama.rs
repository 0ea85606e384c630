//! `anchorscope bench --peer llama.cpp`: llama.cpp's own programs as the peer, on the same GGUF
//! file. The single job is `llama-batched-bench` (shared prompt, unified KV); the sweep is
//! `llama-server` started here as a child, every position sent at once as a `/completion`
//! request of `n_cmpl` rows; the same server then serves our `--engine openai` client on the
//! same sweep. Every child is killed when its job ends, also on error (the guards' Drop).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use anchorscope::bench::job::{self, rate, run_generator, JobSpec};
use anchorscope::bench::{batched_bench, llama_server, BenchInputs, JobReport};
use anchorscope::engine::chat::ChatTemplate;
use anchorscope::engine::proc_memory::field_bytes;
use anchorscope::engine::remote::http::Http;
use anchorscope::engine::remote::{Client, EngineSettings, OpenAiGenerator, TokenCounter};
use anchorscope::engine::tokenizer::TextTokenizer;

/// How often a child's peak RSS (`VmHWM`) is read; the peak is exact up to the growth of the
/// last interval before the child exits.
const RSS_POLL: Duration = Duration::from_millis(20);

/// How long llama-server may take to load the model and answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

/// One request may take this long (a whole sweep position on a loaded 2-core machine).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// The llama.cpp programs (`scripts/build-llama-cpp.sh` builds them) and how to run them.
pub struct LlamaCpp {
    bin: PathBuf,
    model: PathBuf,
    threads: usize,
    work: PathBuf,
}

impl LlamaCpp {
    /// Check that `bin` holds both programs before any long job.
    pub fn check(bin: &Path, model: &Path, threads: usize, work: &Path) -> anyhow::Result<Self> {
        for program in ["llama-batched-bench", "llama-server"] {
            if !bin.join(program).is_file() {
                bail!(
                    "--llama-cpp {}: no {program} there (scripts/build-llama-cpp.sh builds it; \
                     scripts/bench.sh --peer llama.cpp runs it for you)",
                    bin.display()
                );
            }
        }
        Ok(Self {
            bin: bin.to_path_buf(),
            model: model.to_path_buf(),
            threads,
            work: work.to_path_buf(),
        })
    }

    /// What the peer's precision column says: llama.cpp computes on the file's blocks.
    pub fn precision(&self) -> String {
        format!("the file's blocks (ggml, {} threads)", self.threads)
    }

    /// The single job: `rows` rows of `new_tokens` after a shared prompt of `prefix` tokens.
    pub fn single(
        &self,
        prefix: usize,
        rows: usize,
        new_tokens: usize,
    ) -> anyhow::Result<JobReport> {
        let mut command = Command::new(self.bin.join("llama-batched-bench"));
        command.args(batched_bench::args(
            &self.model.display().to_string(),
            prefix,
            rows,
            new_tokens,
            self.threads,
        ));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .context("llama-batched-bench: cannot start")?;
        let peak = PeakRss::watch(child.id());
        let output = child.wait_with_output().context("llama-batched-bench")?;
        let peak = peak.stop();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "llama-batched-bench failed ({}):\n{}",
                output.status,
                tail(&stderr, 15)
            );
        }
        // Its results are log lines: stdout in the builds seen, stderr read as well to be safe.
        let rows_out = batched_bench::parse_output(&format!("{stdout}\n{stderr}"))
            .map_err(|e| anyhow::anyhow!("{e}:\n{}", tail(&stderr, 15)))?;
        let row = rows_out
            .iter()
            .find(|r| r.pl == rows)
            .context("llama-batched-bench measured another row count")?;
        Ok(batched_bench::report(row, &self.precision(), peak))
    }

    /// Start llama-server for a sweep of these prompts, `rows` rows each.
    pub fn server(
        &self,
        prefixes: &[usize],
        rows: usize,
        new_tokens: usize,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let log = self.work.join("llama-server.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(self.bin.join("llama-server"));
        command
            .args(llama_server::args(
                &self.model.display().to_string(),
                port,
                prefixes,
                rows,
                new_tokens,
                self.threads,
            ))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command.spawn().context("llama-server: cannot start")?;
        let peak = PeakRss::watch(child.id());
        let mut server = Server {
            child,
            peak: Some(peak),
            url: format!("http://127.0.0.1:{port}"),
            log,
            precision: self.precision(),
        };
        server.wait_healthy()?;
        Ok(server)
    }
}

/// A running llama-server; killed and reaped when dropped.
pub struct Server {
    child: Child,
    peak: Option<PeakRss>,
    pub url: String,
    log: PathBuf,
    precision: String,
}

impl Server {
    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let http = Http::new(Duration::from_secs(5), None);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("llama-server exited ({status}):\n{}", self.log_tail());
            }
            if let Ok(reply) = http.get(&format!("{}/health", self.url)) {
                if reply.status == 200 {
                    return Ok(());
                }
            }
            if started.elapsed() > HEALTH_TIMEOUT {
                bail!(
                    "llama-server not healthy after {HEALTH_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 15)
    }

    /// The server's peak RSS since it started or since [`Server::reset_peak`].
    pub fn peak_rss(&self) -> Option<u64> {
        self.peak.as_ref().and_then(PeakRss::current)
    }

    /// Start the peak over (Linux `clear_refs`), so the next job's peak is its own.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// The sweep: every position's request at once (one thread each), `rows` rows of exactly
    /// `new_tokens`, our token ids as the prompt. Tokens are counted per choice.
    pub fn sweep(
        &self,
        inputs: &BenchInputs,
        rows: usize,
        new_tokens: usize,
    ) -> anyhow::Result<JobReport> {
        let http = Http::new(REQUEST_TIMEOUT, None);
        let url = format!("{}/completion", self.url);
        let started = Instant::now();
        let replies: Vec<anyhow::Result<Vec<llama_server::ServerChoice>>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = inputs
                    .sweep
                    .iter()
                    .enumerate()
                    .map(|(k, prompt)| {
                        let body = llama_server::completion_body(
                            &prompt.ids,
                            rows,
                            new_tokens,
                            inputs.temperature,
                            inputs.top_p,
                            k as u64 + 1,
                        );
                        let (http, url) = (&http, &url);
                        s.spawn(move || -> anyhow::Result<_> {
                            let reply = http
                                .post_json(url, &body)
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            if reply.status != 200 {
                                bail!("HTTP {}: {}", reply.status, tail(&reply.body, 5));
                            }
                            llama_server::parse_reply(&reply.body, rows).map_err(anyhow::Error::msg)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| bail!("request thread panicked"))
                    })
                    .collect()
            });
        let wall_s = started.elapsed().as_secs_f64();
        let mut report = JobReport {
            side: "llama.cpp".into(),
            job: "sweep".into(),
            device: "cpu".into(),
            precision: self.precision.clone(),
            rows,
            new_tokens,
            prefix_tokens: inputs.sweep.iter().map(|p| p.ids.len()).collect(),
            wall_s,
            peak_rss_bytes: self.peak_rss(),
            note: Some(format!(
                "llama-server: {} requests at once, n_cmpl {rows} each, tokens counted per choice",
                inputs.sweep.len()
            )),
            ..JobReport::default()
        };
        for (reply, prompt) in replies.into_iter().zip(&inputs.sweep) {
            match reply {
                Ok(choices) => {
                    for c in choices {
                        report.rollouts += 1;
                        report.tokens_generated += c.tokens;
                        *report
                            .finish
                            .entry(llama_server::finish_name(&c.stop_type).to_string())
                            .or_insert(0) += 1;
                    }
                }
                Err(e) => report
                    .errors
                    .push(format!("position {}: {e:#}", prompt.position)),
            }
        }
        if report.rollouts == 0 {
            bail!(
                "llama-server answered no request: {}\n{}",
                report.errors.join("; "),
                self.log_tail()
            );
        }
        report.tokens_per_s = rate(report.tokens_generated, wall_s);
        Ok(report)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its handle: never anything else.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(peak) = self.peak.take() {
            peak.stop();
        }
    }
}

/// Reads a child's `VmHWM` every [`RSS_POLL`] while it runs (std cannot give a reaped child's
/// rusage). Holds the last value read: VmHWM only grows, except after a `clear_refs` reset.
struct PeakRss {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || {
                let path = format!("/proc/{pid}/status");
                while !stop.load(Ordering::Relaxed) {
                    match std::fs::read_to_string(&path) {
                        Ok(status) => {
                            if let Some(b) = field_bytes(&status, "VmHWM:") {
                                bytes.store(b, Ordering::Relaxed);
                            }
                        }
                        Err(_) => break,
                    }
                    std::thread::sleep(RSS_POLL);
                }
            })
        };
        Self {
            stop,
            bytes,
            handle,
        }
    }

    fn current(&self) -> Option<u64> {
        Some(self.bytes.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        Some(self.bytes.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }
}

/// A port nothing listens on now (the OS picks it; the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Our `--engine openai` client ([`OpenAiGenerator`] with the default `[engine]` settings:
/// requests of `n_per_request` continuations, `concurrency` in flight) on the same sweep,
/// against `server`, through the same job code as our local side.
///
/// What differs from the peer's own sweep: the client sends the prompt as text (rendered by
/// its chat template, tokenized by the server), asks for `max_tokens` without `ignore_eos`
/// (a row may stop early), and samples one position after another. Tokens are counted by
/// re-tokenizing each rollout's text with the model's tokenizer: the client's own count comes
/// from `usage.completion_tokens`, which llama-server gives for the first choice only.
pub fn openai_client_sweep(
    server: &Server,
    inputs: &BenchInputs,
    spec: &JobSpec,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<JobReport> {
    let settings = EngineSettings::default();
    let model_name = Path::new(&inputs.model_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let client = Client::new(&server.url, &model_name, None, REQUEST_TIMEOUT, 1)
        .map_err(anyhow::Error::msg)?;
    let template = ChatTemplate::for_model("", &model_name);
    // The client counts each choice's tokens with the model file's own tokenizer.
    let counter =
        TokenCounter::find(Some(&inputs.model_path), &model_name).map_err(anyhow::Error::msg)?;
    let mut generator = OpenAiGenerator::new(
        client,
        template,
        settings.n_per_request,
        settings.concurrency,
        counter,
    );
    let recount = |text: &str| tokenizer.encode(text).map_or(0, |ids| ids.len() as u64);
    server.reset_peak();
    let precision = format!("{} via our openai client", server.precision);
    let mut report = run_generator(
        &mut generator,
        "anchorscope openai→llama-server",
        inputs,
        spec,
        &job::Context {
            load_s: 0.0,
            precision: &precision,
            device: "cpu",
        },
        Some(&recount),
    )?;
    // The client's prompts as text: their length in the model's tokens.
    report.prefix_tokens = inputs
        .sweep
        .iter()
        .map(|p| {
            let text = template.continuation_prompt(&inputs.sweep_trace, p.position);
            tokenizer.encode(&text).map_or(0, |ids| ids.len())
        })
        .collect();
    // The work is the server's: its peak, not this process's.
    report.peak_rss_bytes = server.peak_rss();
    report.job_peak_rss_bytes = None;
    report.rss_after_load_bytes = None;
    report.note = Some(format!(
        "our openai client: n_per_request {}, concurrency {}, one position at a time; tokens \
         re-counted from the text; peak RSS is llama-server's",
        settings.n_per_request, settings.concurrency
    ));
    Ok(report)
}
