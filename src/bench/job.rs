//! One measured job on our side, run through the worker's own job code ([`run_job`] with a real
//! [`Job`], the loaded [`LmGenerator`], a temporary rollout store and the built-in behaviors),
//! so whatever makes the engine faster shows up here. The report is the same shape the Python
//! peer prints, so the command compares like with like.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::behavior::{BehaviorSet, BehaviorsConfig};
use crate::engine::proc_memory::field_bytes;
use crate::engine::worker::{run_job, Generator, Inbox, JobContext, LmGenerator};
use crate::engine::{EngineError, EngineEvent, Job};
use crate::trace::split::SplitOptions;
use crate::trace::{FinishReason, SamplerSettings};

use super::flops::kv_elements_per_token;
use super::inputs::BenchInputs;

/// Which job: N rollouts from the one prefix, or N rollouts at each sweep position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Single,
    Sweep,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Single => "single",
            JobKind::Sweep => "sweep",
        }
    }
}

/// What one side measured for one job (ours, or the peer's JSON with the same fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// `anchorscope` or `transformers`.
    pub side: String,
    /// `single`, `sweep`, or `memory` (a single job at another row count).
    pub job: String,
    pub device: String,
    /// How the weights were held while sampling, e.g. `f32 (expanded from Q4_1 GGUF)`.
    pub precision: String,
    pub rows: usize,
    pub new_tokens: usize,
    /// Prompt tokens of each position sampled.
    #[serde(default)]
    pub prefix_tokens: Vec<usize>,
    #[serde(default)]
    pub rollouts: usize,
    /// Tokens actually generated (all rows, all positions).
    pub tokens_generated: u64,
    /// Finish reason -> rollouts (`length` = ran to the token cap).
    #[serde(default)]
    pub finish: BTreeMap<String, usize>,
    /// Model load, not part of `wall_s`.
    #[serde(default)]
    pub load_s: f64,
    /// The job itself: prefill(s), decoding, sampling, (ours) labels and store writes.
    pub wall_s: f64,
    pub tokens_per_s: f64,
    /// Seconds per position, in order (ours: the first includes the trace's one prefill).
    #[serde(default)]
    pub position_s: Vec<f64>,
    /// Peak resident memory of the process that ran the job (model load included).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Peak resident memory during the job alone: the peak is reset once the model is loaded
    /// (Linux `clear_refs`), so a load-time transient cannot hide what the job itself needs.
    #[serde(default)]
    pub job_peak_rss_bytes: Option<u64>,
    /// Resident memory once the model was loaded, before the job.
    #[serde(default)]
    pub rss_after_load_bytes: Option<u64>,
    /// Ours: the rows' own KV at the end of a position (rows × new tokens × per-token KV).
    #[serde(default)]
    pub own_kv_bytes: Option<u64>,
    /// Ours: the shared prefix KV (stored once for all rows).
    #[serde(default)]
    pub prefix_kv_bytes: Option<u64>,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Peak and current resident memory of this process (Linux `/proc/self/status`).
pub fn rss_bytes() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    (
        field_bytes(&status, "VmHWM:"),
        field_bytes(&status, "VmRSS:"),
    )
}

/// Reset the peak resident memory to the current one (Linux ≥ 4.0: `5` to
/// `/proc/self/clear_refs`); false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A rollout store in a fresh temporary directory, removed on drop (no tempfile crate in the
/// binary: the benchmark must not leave stores behind).
struct TempStore {
    dir: PathBuf,
}

impl TempStore {
    fn new() -> Result<Self, EngineError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("anchorscope-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            EngineError::Other(format!("{}: cannot create a store: {e}", dir.display()))
        })?;
        Ok(TempStore { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("bench.rollouts.jsonl")
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The job to run: which prompts, how many rows, how many new tokens per row.
#[derive(Clone, Copy, Debug)]
pub struct JobSpec {
    pub kind: JobKind,
    pub rows: usize,
    pub new_tokens: usize,
}

/// What the report says about how the job was run (measured or decided by the caller).
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Seconds the model took to load.
    pub load_s: f64,
    pub precision: &'a str,
    pub device: &'a str,
}

/// Run one job with `gen` (already loaded) and report it.
pub fn run(
    gen: &mut LmGenerator,
    inputs: &BenchInputs,
    spec: &JobSpec,
    context: &Context,
) -> Result<JobReport, EngineError> {
    let cfg = gen.lm.config().clone();
    let mut report = run_generator(gen, "anchorscope", inputs, spec, context, None)?;
    let kv_token_bytes = kv_elements_per_token(&cfg) * std::mem::size_of::<f32>() as u64;
    let longest_prefix = report.prefix_tokens.iter().copied().max().unwrap_or(0) as u64;
    report.own_kv_bytes = Some((spec.rows * spec.new_tokens) as u64 * kv_token_bytes);
    report.prefix_kv_bytes = Some(longest_prefix * kv_token_bytes);
    Ok(report)
}

/// Count a rollout's tokens from its text, for generators whose own count cannot be trusted.
pub type Recount<'a> = &'a dyn Fn(&str) -> u64;

/// Run one job with any generator (ours, or our OpenAI client against a server) and report it
/// as `side`. With `recount`, tokens are counted from each rollout's text instead of the
/// generator's figure.
pub fn run_generator(
    generator: &mut dyn Generator,
    side: &str,
    inputs: &BenchInputs,
    spec: &JobSpec,
    context: &Context,
    recount: Option<Recount>,
) -> Result<JobReport, EngineError> {
    let JobSpec {
        kind,
        rows,
        new_tokens,
    } = *spec;
    let (trace, prompts) = match kind {
        JobKind::Single => (&inputs.single_trace, std::slice::from_ref(&inputs.single)),
        JobKind::Sweep => (&inputs.sweep_trace, inputs.sweep.as_slice()),
    };
    let store = TempStore::new()?;
    let job = Job {
        id: 1,
        trace: Arc::new(trace.clone()),
        store_path: store.path(),
        positions: prompts.iter().map(|p| p.position).collect(),
        n: rows,
        sampler: SamplerSettings {
            temperature: inputs.temperature,
            top_p: inputs.top_p,
            max_new_tokens: new_tokens as u32,
        },
        adaptive: None,
    };
    let behaviors = BehaviorSet::with_user(&BehaviorsConfig::default())
        .map_err(|e| EngineError::Other(format!("behaviors: {e:#}")))?;
    let ctx = JobContext {
        behaviors,
        split: SplitOptions::default(),
        // Both sides must generate the full token count.
        early_stop: false,
    };
    // The sender stays alive for the whole job: a closed channel reads as a shutdown.
    let (_commands, rx) = mpsc::channel();
    let mut inbox = Inbox::new(rx);
    let log = RefCell::new(EventLog {
        recount,
        ..EventLog::default()
    });
    let (load_peak, rss_after_load) = rss_bytes();
    let reset = reset_peak_rss();
    let started = Instant::now();
    let events = |e: EngineEvent| log.borrow_mut().record(e, started);
    run_job(&job, generator, None, &ctx, &mut inbox, &events);
    let wall_s = started.elapsed().as_secs_f64();
    let (job_peak, _) = rss_bytes();
    // After a reset VmHWM is the job's own peak; the process peak is the larger of the two.
    let peak = if reset {
        load_peak.max(job_peak)
    } else {
        job_peak
    };
    let log = log.into_inner();

    Ok(JobReport {
        side: side.into(),
        job: kind.name().into(),
        device: context.device.into(),
        precision: context.precision.into(),
        rows,
        new_tokens,
        prefix_tokens: prompts.iter().map(|p| p.ids.len()).collect(),
        rollouts: log.rollouts,
        tokens_generated: log.tokens,
        finish: log.finish,
        load_s: context.load_s,
        wall_s,
        tokens_per_s: rate(log.tokens, wall_s),
        position_s: log.position_s,
        peak_rss_bytes: peak,
        job_peak_rss_bytes: if reset { job_peak } else { None },
        rss_after_load_bytes: rss_after_load,
        own_kv_bytes: None,
        prefix_kv_bytes: None,
        errors: log.errors,
        note: None,
    })
}

/// Tokens per second; 0 when nothing was timed.
pub fn rate(tokens: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        tokens as f64 / secs
    } else {
        0.0
    }
}

/// What the job's events said.
#[derive(Default)]
struct EventLog<'a> {
    /// Counts a rollout's tokens from its text, when the generator's count is not trusted.
    recount: Option<Recount<'a>>,
    rollouts: usize,
    tokens: u64,
    finish: BTreeMap<String, usize>,
    errors: Vec<String>,
    /// Seconds per position, closed when a rollout of the next position arrives.
    position_s: Vec<f64>,
    current: Option<usize>,
    position_started: f64,
    last_rollout: f64,
}

impl EventLog<'_> {
    fn record(&mut self, event: EngineEvent, started: Instant) {
        let now = started.elapsed().as_secs_f64();
        match event {
            EngineEvent::Rollout { rollout, .. } => {
                if self.current != Some(rollout.position) {
                    if self.current.is_some() {
                        self.position_s
                            .push(self.last_rollout - self.position_started);
                        self.position_started = self.last_rollout;
                    }
                    self.current = Some(rollout.position);
                }
                self.last_rollout = now;
                self.rollouts += 1;
                self.tokens += match self.recount {
                    Some(count) => count(&rollout.text),
                    None => u64::from(rollout.tokens),
                };
                *self
                    .finish
                    .entry(finish_name(rollout.finish).into())
                    .or_insert(0) += 1;
            }
            EngineEvent::Error { message, .. } => self.errors.push(message),
            EngineEvent::Finished { .. } => {
                if self.current.is_some() {
                    self.position_s
                        .push(self.last_rollout - self.position_started);
                }
            }
            EngineEvent::Status(_)
            | EngineEvent::Model(_)
            | EngineEvent::Progress { .. }
            | EngineEvent::Adaptive { .. } => {}
        }
    }
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Decided => "decided",
        FinishReason::Unknown => "unknown",
    }
}

/// Read the inputs file a parent wrote.
pub fn read_inputs(path: &Path) -> Result<BenchInputs, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::Other(format!("{}: not benchmark inputs: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_at_least_its_rss() {
        if let (Some(peak), Some(now)) = rss_bytes() {
            assert!(peak >= now && now > 0);
        }
    }

    #[test]
    fn a_reset_peak_drops_to_about_the_current_rss() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // A transient 64 MiB allocation raises the peak; after a reset the peak is near RSS.
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
        drop(big);
        let (before, _) = rss_bytes();
        if reset_peak_rss() {
            let (after, now) = rss_bytes();
            assert!(after.unwrap() < before.unwrap(), "{after:?} {before:?}");
            assert!(after.unwrap() >= now.unwrap());
        }
    }

    #[test]
    fn rate_is_zero_without_time() {
        assert_eq!(rate(100, 0.0), 0.0);
        assert_eq!(rate(100, 2.0), 50.0);
    }
}
