//! The seam for the sampling engine (next issue). The UI talks to an engine only through
//! [`anchorscope_engine`] messages: it submits jobs and cancels them through this trait, and the
//! engine's [`anchorscope_engine::EngineEvent`]s arrive on the UI's event channel
//! ([`super::event::AppEvent::Engine`]). Without an engine, resampling keys say so.

use anchorscope_engine::{EngineCommand, Job, JobId};

/// What the UI needs from an engine: a place to send commands. Implemented by the engine's
/// worker handle (e.g. the sending half of its command channel).
pub trait EngineHook {
    /// Send a command; Err carries a message for the status line.
    fn send(&mut self, command: EngineCommand) -> Result<(), String>;
}

/// An mpsc sender is a ready-made hook: the engine worker owns the receiving half.
impl EngineHook for std::sync::mpsc::Sender<EngineCommand> {
    fn send(&mut self, command: EngineCommand) -> Result<(), String> {
        std::sync::mpsc::Sender::send(self, command).map_err(|_| "the engine has stopped".into())
    }
}

/// Progress of the running job, as the status line's gauge shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobProgress {
    pub done: usize,
    pub total: usize,
    pub tokens_per_s: f64,
    /// Seconds left at the pace so far; None until a rollout has finished.
    pub eta_s: Option<f64>,
}

impl JobProgress {
    /// `done` of `total` after `elapsed_s` seconds: the remaining rollouts at the same pace.
    pub fn new(done: usize, total: usize, tokens_per_s: f64, elapsed_s: f64) -> Self {
        let eta_s = (done > 0 && total >= done && elapsed_s > 0.0)
            .then(|| elapsed_s / done as f64 * (total - done) as f64);
        Self {
            done,
            total,
            tokens_per_s,
            eta_s,
        }
    }

    /// 0.0 ..= 1.0 (1.0 for an empty job).
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }
}

/// `1m05s`, `42s`, `2h03m`: a compact duration for the ETA.
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Job bookkeeping: one running job; results of superseded jobs are dropped by id, except
/// rollouts, which are stored data and join the trace they were sampled for.
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: JobId,
    pub running: Option<JobId>,
    pub progress: Option<JobProgress>,
    /// When the running job was submitted (for the ETA).
    pub started: Option<std::time::Instant>,
    /// Job id → index of the trace it samples (into `App::traces`).
    pub trace_of: std::collections::HashMap<JobId, usize>,
}

impl Jobs {
    /// A new job that supersedes the running one (latest wins).
    pub fn start(&mut self, template: Job) -> Job {
        self.next_id += 1;
        self.running = Some(self.next_id);
        self.progress = None;
        self.started = Some(std::time::Instant::now());
        Job {
            id: self.next_id,
            ..template
        }
    }

    pub fn is_current(&self, job: JobId) -> bool {
        self.running == Some(job)
    }

    /// Seconds since the running job started.
    pub fn elapsed_s(&self) -> f64 {
        self.started.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_from_pace_and_formatting() {
        let p = JobProgress::new(4, 16, 100.0, 10.0);
        assert_eq!(p.eta_s, Some(30.0));
        assert_eq!(p.ratio(), 0.25);
        assert_eq!(JobProgress::new(0, 16, 0.0, 5.0).eta_s, None);
        assert_eq!(JobProgress::new(0, 0, 0.0, 0.0).ratio(), 1.0);
        assert_eq!(format_eta(42.4), "42s");
        assert_eq!(format_eta(65.0), "1m05s");
        assert_eq!(format_eta(7380.0), "2h03m");
    }
}
