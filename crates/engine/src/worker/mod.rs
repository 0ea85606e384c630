//! The engine worker: a thread that loads the model once, then runs jobs one at a time off the
//! UI thread. It talks only through [`EngineCommand`] in and [`EngineEvent`] out.
//!
//! - A new Submit while a job runs supersedes it (latest wins): the running job stops after its
//!   in-flight step and reports `Finished { cancelled: true }`.
//! - Cancel stops at the next decoding step; rollouts in flight are dropped, never half-written.
//! - Every rollout is appended to the store and synced before its Rollout event is sent.
//! - A model that fails to load is reported as a Status event; the worker keeps answering jobs
//!   with that error, so the explorer keeps running.

mod adaptive;
pub mod generate;
pub mod job;
#[cfg(test)]
pub(crate) mod test_double;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use crate::embed::SentenceEmbedder;
use crate::remote::{EngineKind, EngineSettings, JudgeSettings, OpenAiGenerator};
use crate::{device, install, EngineCommand, EngineError, EngineEvent, EngineStatus};
use anchorscope_core::behavior::{BehaviorSet, BehaviorsConfig};
use anchorscope_core::trace::split::SplitOptions;

pub use generate::LmGenerator;
pub use job::{
    pack_groups, run_job, Control, Embedder, Generator, GroupControl, Inbox, JobContext, OneSlot,
    Sampled, SlotControl,
};

/// Which model to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelChoice {
    /// The project's default model, installed into the cache when missing.
    Default,
    /// A model `anchorscope model install` knows by this name ([`install::MODELS`]), installed
    /// into the cache when missing.
    Named(String),
    /// A GGUF file or a Hugging Face-style directory.
    Path(PathBuf),
}

impl ModelChoice {
    /// `default`, a known model's name or a path, as written on the command line. A known name
    /// wins over a file of the same name in the working directory (write `./NAME` for the file):
    /// what a name means should not depend on where the command runs.
    pub fn parse(arg: &str) -> Self {
        if arg == "default" {
            ModelChoice::Default
        } else if install::find_model(arg).is_some() {
            ModelChoice::Named(arg.to_string())
        } else {
            ModelChoice::Path(PathBuf::from(arg))
        }
    }

    /// How the choice reads in messages: `default model`, the name, or the path.
    pub fn label(&self) -> String {
        match self {
            ModelChoice::Default => "default model".into(),
            ModelChoice::Named(name) => name.clone(),
            ModelChoice::Path(p) => p.display().to_string(),
        }
    }
}

/// What the worker loads and how it labels.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub model: ModelChoice,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// Load the sentence embedder (installed when missing) for T_i/S_i similarity.
    pub embedder: bool,
    pub behaviors: BehaviorsConfig,
    pub split: SplitOptions,
    /// `[engine]`: local (the model above) or an OpenAI-compatible server.
    pub engine: EngineSettings,
    /// `[judge]`: the model judge for alignment faking, when enabled.
    pub judge: JudgeSettings,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            model: ModelChoice::Default,
            device: "auto".into(),
            embedder: true,
            behaviors: BehaviorsConfig::default(),
            split: SplitOptions::default(),
            engine: EngineSettings::default(),
            judge: JudgeSettings::default(),
        }
    }
}

/// The running worker: send commands; join after Shutdown.
pub struct WorkerHandle {
    pub sender: Sender<EngineCommand>,
    pub join: JoinHandle<()>,
}

impl WorkerHandle {
    /// Ask the worker to stop after its in-flight step and wait for it.
    pub fn shutdown(self) {
        let _ = self.sender.send(EngineCommand::Shutdown);
        let _ = self.join.join();
    }
}

/// What a loader produces: a generator and maybe an embedder.
pub type Loaded = (Box<dyn Generator>, Option<Box<dyn Embedder>>);

/// Start the worker with the candle model of `config`.
pub fn spawn(config: WorkerConfig, events: impl Fn(EngineEvent) + Send + 'static) -> WorkerHandle {
    let load_config = config.clone();
    spawn_with(
        move |status: &mut dyn FnMut(EngineStatus)| load_engine(&load_config, status),
        config,
        events,
    )
}

/// Start the worker with any loader (the tests' double, or [`load_engine`]). The loader runs
/// on the worker thread and reports what it does through `status`.
pub fn spawn_with<L>(
    loader: L,
    config: WorkerConfig,
    events: impl Fn(EngineEvent) + Send + 'static,
) -> WorkerHandle
where
    L: FnOnce(&mut dyn FnMut(EngineStatus)) -> Result<Loaded, EngineError> + Send + 'static,
{
    let (sender, rx) = mpsc::channel();
    let join = std::thread::Builder::new()
        .name("anchorscope-engine".into())
        .spawn(move || {
            let status = |s: EngineStatus| events(EngineEvent::Status(s));
            let behaviors = BehaviorSet::with_user(&config.behaviors)
                .and_then(|set| with_judge(set, &config.judge, &config.engine));
            let loaded = loader(&mut |s: EngineStatus| status(s));
            let engine: Result<(Loaded, BehaviorSet), EngineStatus> = match (loaded, behaviors) {
                (Ok(l), Ok(b)) => Ok((l, b)),
                (Err(e), _) => Err(EngineStatus::Unavailable(e.to_string())),
                (_, Err(e)) => Err(EngineStatus::Error(format!("behaviors: {e:#}"))),
            };
            if let Err(state) = &engine {
                status(state.clone());
            }
            if let Ok(((generator, _), _)) = &engine {
                let (engine, model) = generator.run_identity();
                events(EngineEvent::Model(crate::ModelIdentity {
                    engine,
                    model,
                    sha256: generator.model_sha256(),
                }));
            }
            let mut inbox = Inbox::new(rx);
            let mut engine = engine.map(|((generator, embedder), behaviors)| {
                let ctx = JobContext {
                    behaviors,
                    split: config.split.clone(),
                    early_stop: true,
                };
                (generator, embedder, ctx)
            });
            while let Some(job) = inbox.next_job(&events) {
                match &mut engine {
                    Ok((generator, embedder, ctx)) => {
                        let embedder = embedder.as_deref_mut();
                        // A bug in the model code must not silently kill the engine: the UI
                        // would wait forever. Report it as this job's error and go on.
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_job(&job, generator.as_mut(), embedder, ctx, &mut inbox, &events)
                        }));
                        if let Err(payload) = run {
                            let what = payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "unknown panic".into());
                            events(EngineEvent::Error {
                                job: job.id,
                                message: format!("the engine failed: {what}"),
                            });
                            events(EngineEvent::Finished {
                                job: job.id,
                                cancelled: false,
                            });
                        }
                    }
                    Err(state) => {
                        events(EngineEvent::Error {
                            job: job.id,
                            message: state.to_string(),
                        });
                        events(EngineEvent::Finished {
                            job: job.id,
                            cancelled: false,
                        });
                    }
                }
            }
        })
        .expect("spawning the engine thread");
    WorkerHandle { sender, join }
}

/// The behaviors with the model judge for alignment faking when `[judge]` enables it.
fn with_judge(
    set: BehaviorSet,
    judge: &JudgeSettings,
    engine: &EngineSettings,
) -> anyhow::Result<BehaviorSet> {
    if !judge.enabled {
        return Ok(set);
    }
    let judge = crate::remote::judge::model_judge(judge, engine)
        .map_err(|e| anyhow::anyhow!("model judge: {e}"))?;
    Ok(set.with_af_model_judge(judge))
}

/// Load what `config` asks for: install the default model when needed, open the device, load
/// the model and (best effort) the embedder. Progress goes to `status`. With an openai
/// `[engine]` the generator is the server's and only the embedder runs here.
pub fn load_engine(
    config: &WorkerConfig,
    status: &mut dyn FnMut(EngineStatus),
) -> Result<Loaded, EngineError> {
    if config.engine.kind == EngineKind::Openai {
        let generator = OpenAiGenerator::connect(&config.engine, status)?;
        let embedder = if config.embedder {
            device::select(&config.device)
                .and_then(|device| load_embedder(&device, status))
                .unwrap_or_else(|e| {
                    status(EngineStatus::Degraded(format!(
                        "embedder unavailable ({e}); similarity is not recorded"
                    )));
                    None
                })
        } else {
            None
        };
        return Ok((Box::new(generator), embedder));
    }
    let path = resolve_model(&config.model, status)?;
    let (device, fallback) = device::select_explained(&config.device)?;
    if let Some(why) = fallback {
        status(EngineStatus::Degraded(why));
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    status(EngineStatus::Loading(format!("loading {name}…")));
    let generator = LmGenerator::load(&path, &device)?;
    status(EngineStatus::Ready(format!(
        "{} on {}",
        generator.describe(),
        device_name(&device)
    )));
    if let Some(note) = generator.template.note() {
        status(EngineStatus::Degraded(note.to_string()));
    }
    let embedder = if config.embedder {
        load_embedder(&device, status)?
    } else {
        None
    };
    Ok((Box::new(generator), embedder))
}

/// The sentence embedder, best effort: a failure is reported and similarity is not recorded.
fn load_embedder(
    device: &candle_core::Device,
    status: &mut dyn FnMut(EngineStatus),
) -> Result<Option<Box<dyn Embedder>>, EngineError> {
    let installed =
        install::ensure_embedder(&mut |m: &str| status(EngineStatus::Installing(m.to_string())));
    match installed.and_then(|dir| SentenceEmbedder::load(&dir, device)) {
        Ok(e) => Ok(Some(Box::new(e))),
        Err(e) => {
            status(EngineStatus::Degraded(format!(
                "embedder unavailable ({e}); similarity is not recorded"
            )));
            Ok(None)
        }
    }
}

/// The model file or directory for a choice (installing a known model when missing).
pub fn resolve_model(
    choice: &ModelChoice,
    status: &mut dyn FnMut(EngineStatus),
) -> Result<PathBuf, EngineError> {
    let (model, said) = match choice {
        ModelChoice::Path(p) => return Ok(p.clone()),
        ModelChoice::Default => (&install::DEFAULT_MODEL, "the default model".to_string()),
        ModelChoice::Named(name) => {
            let model = install::find_model(name).ok_or_else(|| {
                EngineError::Other(format!(
                    "--model {name}: no model of that name (known: {})",
                    install::MODEL_NAMES.join(", ")
                ))
            })?;
            (model, model.name.to_string())
        }
    };
    let mut installing = |m: &str| status(EngineStatus::Installing(m.to_string()));
    if !install::model_path(model).exists() {
        installing(&format!("installing {said}…"));
    }
    install::ensure_model(model, &mut installing)
}

/// `cpu` or `cuda:N`, for messages.
pub fn device_name(device: &candle_core::Device) -> String {
    match device {
        candle_core::Device::Cpu => "cpu".into(),
        other => format!("{:?}", other.location()),
    }
}
