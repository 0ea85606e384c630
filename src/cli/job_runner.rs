//! Run engine jobs headless, one after another, with a progress line: what `analyze` and
//! `intervene` share. Jobs go to the worker one at a time because a Submit while a job runs
//! supersedes it (the explorer's "latest wins").

use std::sync::mpsc::Receiver;

use anchorscope::engine::worker::WorkerHandle;
use anchorscope::engine::{AdaptiveProgress, EngineCommand, EngineEvent, EngineStatus, Job};
use anyhow::Context;

use super::progress::ProgressLine;

/// What the jobs did.
#[derive(Debug, Default)]
pub struct JobsOutcome {
    /// Rollouts stored, per job in submission order.
    pub stored: Vec<usize>,
    pub errors: Vec<String>,
    /// The model as the engine named it once ready (else the label given).
    pub model: String,
    /// The last adaptive look of any job.
    pub last_adaptive: Option<AdaptiveProgress>,
}

impl JobsOutcome {
    pub fn total_stored(&self) -> usize {
        self.stored.iter().sum()
    }
}

/// Submit `jobs` in order, each after the previous one finished, reporting progress on stderr
/// (`command` names the line, with the trace when there are several jobs). `adaptive_line`
/// renders an adaptive look for the progress line.
pub fn run_jobs(
    handle: &WorkerHandle,
    rx: &Receiver<EngineEvent>,
    command: &str,
    jobs: Vec<Job>,
    model_label: String,
    adaptive_line: impl Fn(&AdaptiveProgress) -> String,
) -> anyhow::Result<JobsOutcome> {
    let mut outcome = JobsOutcome {
        model: model_label,
        ..JobsOutcome::default()
    };
    let several = jobs.len() > 1;
    for job in jobs {
        let id = job.id;
        let what = if several {
            format!("{command} {}", job.trace.id)
        } else {
            command.to_string()
        };
        handle
            .sender
            .send(EngineCommand::Submit(job))
            .context("the engine stopped before the job started")?;
        let mut progress = ProgressLine::new(what);
        let mut stored = 0usize;
        for event in rx.iter() {
            match event {
                EngineEvent::Status(state) => {
                    if let EngineStatus::Ready(model) = &state {
                        outcome.model = model.clone();
                    }
                    progress.say(&state.to_string());
                }
                EngineEvent::Progress {
                    done,
                    total,
                    tokens_per_s,
                    ..
                } => progress.update(done, total, tokens_per_s),
                EngineEvent::Rollout { .. } => stored += 1,
                EngineEvent::Model(_) => {}
                EngineEvent::Adaptive { progress: p, .. } => {
                    progress.say(&adaptive_line(&p));
                    outcome.last_adaptive = Some(*p);
                }
                EngineEvent::Error { message, .. } => {
                    progress.say(&format!("error: {message}"));
                    outcome.errors.push(message);
                }
                EngineEvent::Finished { job, .. } if job == id => break,
                EngineEvent::Finished { .. } => {}
            }
        }
        progress.finish();
        outcome.stored.push(stored);
    }
    Ok(outcome)
}
