//! anchorscope-engine: sampling continuations of a trace from a prefix.
//!
//! Owns: our Llama/Qwen decoder on candle ([`lm`]), tokenizers and chat formats ([`tokenizer`],
//! [`chat`], [`chat_format`]), the sampler, the one decode session every caller shares
//! ([`decode`]), the worker thread that runs jobs for the explorer and the CLI ([`worker`]),
//! OpenAI-compatible servers as engines and judges ([`remote`]), the sentence embedder, model
//! installs and device selection.
//!
//! May import: anchorscope-core, candle, tokenizers, minijinja, an HTTP client. Never the
//! explorer (ratatui) or the command line (clap). The rest of the program talks to the worker
//! only through the messages below ([`EngineCommand`] in, [`EngineEvent`] out, with typed
//! [`EngineStatus`]), and asks the behavior set, never the tags, when labels are final.

pub mod chat;
pub mod chat_format;
pub mod compare_similarity;
pub mod decode;
pub mod device;
pub mod embed;
pub mod error;
pub mod install;
pub mod lm;
pub mod mmap;
pub mod proc_memory;
pub mod remote;
pub mod sampler;
pub mod similarity_fill;
pub mod tokenizer;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::EngineError;

use anchorscope_core::analysis::adaptive::{AdaptiveSettings, PositionState, SentenceState};
use anchorscope_core::analysis::ImportanceKind;
use anchorscope_core::trace::{Rollout, SamplerSettings, Trace};

/// Identifies a job so stale results of a superseded job can be dropped.
pub type JobId = u64;

/// A request to bring every position in `positions` of a trace up to `n` rollouts.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub trace: Arc<Trace>,
    /// The append-only rollout store of the trace; every rollout is appended and flushed here
    /// before it is reported.
    pub store_path: PathBuf,
    pub positions: Vec<usize>,
    /// Target rollouts per position (top-up: positions that already hold some get the rest;
    /// the worker counts them in the store itself, never trusting a caller's stale count).
    pub n: usize,
    pub sampler: SamplerSettings,
    /// Sample adaptively instead (docs/METHOD.md, "Adaptive resampling"): in rounds, each
    /// position of `positions` only while a sentence it feeds is undecided, never beyond the
    /// plan's `n_max`; `n` is then ignored.
    pub adaptive: Option<AdaptivePlan>,
}

/// What an adaptive job decides on.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptivePlan {
    pub settings: AdaptiveSettings,
    /// The behavior whose importance decides when a position stops (one the job's behavior
    /// set labels).
    pub behavior: String,
    /// D_i: replacements whose similarity to S_i is below this (METHOD.md).
    pub similarity_threshold: f32,
}

/// Where an adaptive job stands after a look (sent after every round, and once at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveProgress {
    /// Every sentence of the trace, by index (a sentence neither of whose positions the job
    /// covers is decided on what is stored).
    pub sentences: Vec<SentenceState>,
    /// Every position of the trace, by index.
    pub positions: Vec<PositionState>,
    /// Sentences the job covers, and how many of them are resolved.
    pub resolved: usize,
    pub total: usize,
    /// Rollouts stored at the job's positions now, and what a fixed run (n_max at each of
    /// them) would hold: the saving so far is `fixed − used` of `fixed`.
    pub used: u64,
    pub fixed: u64,
    /// Rounds run so far (0 before the first).
    pub round: u32,
    /// Which importance decides (counterfactual falls back to resampling without an
    /// embedder), and anything else the user should know about how it decided.
    pub importance: ImportanceKind,
    pub notes: Vec<String>,
}

impl AdaptiveProgress {
    /// The share of the fixed design's rollouts not used so far, in percent (0 when there is
    /// no fixed count).
    pub fn saved_percent(&self) -> f64 {
        if self.fixed == 0 {
            return 0.0;
        }
        100.0 * self.fixed.saturating_sub(self.used) as f64 / self.fixed as f64
    }
}

/// What the engine sends back, in order; every rollout is stored before it is reported.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// What the engine is doing (shown in the status line).
    Status(EngineStatus),
    /// Which model samples, once it is loaded (a UI warns before resampling a trace that
    /// another model wrote).
    Model(ModelIdentity),
    Rollout {
        job: JobId,
        rollout: Box<Rollout>,
    },
    Progress {
        job: JobId,
        done: usize,
        total: usize,
        tokens_per_s: f64,
    },
    Error {
        job: JobId,
        message: String,
    },
    /// An adaptive job's decisions after a look.
    Adaptive {
        job: JobId,
        progress: Box<AdaptiveProgress>,
    },
    Finished {
        job: JobId,
        cancelled: bool,
    },
}

/// The model an engine samples with, as its run records name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// `local` or `openai`.
    pub engine: String,
    /// The model file's path, or the served model's name.
    pub model: String,
    /// SHA-256 (hex) of the model file, when there is one.
    pub sha256: Option<String>,
}

/// The engine's state, typed so that a UI decides how to show it without reading its text.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineStatus {
    /// Installing the model or the embedder (the text says which step).
    Installing(String),
    /// Loading a model or connecting to a server.
    Loading(String),
    /// Ready to sample: the model and where it runs.
    Ready(String),
    /// Sampling works but something is missing (e.g. no embedder: similarity not recorded).
    Degraded(String),
    /// The engine cannot sample: why.
    Unavailable(String),
    /// A configuration error that stops the engine (e.g. a behavior that does not compile).
    Error(String),
}

impl EngineStatus {
    /// Whether the UI should show it as an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Error(_))
    }

    /// Whether the engine can take jobs.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }
}

impl std::fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Installing(what) | Self::Loading(what) | Self::Degraded(what) => {
                f.write_str(what)
            }
            Self::Ready(model) => write!(f, "model ready: {model}"),
            Self::Unavailable(why) => write!(f, "model not available: {why}"),
            Self::Error(message) => f.write_str(message),
        }
    }
}

/// Commands to the engine worker.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineCommand {
    Submit(Job),
    Cancel(JobId),
    Shutdown,
}
