//! The seam for the sampling engine (next issue). The UI talks to an engine only through
//! [`anchorscope_engine`] messages: it submits jobs and cancels them through this trait, and the
//! engine's [`anchorscope_engine::EngineEvent`]s arrive on the UI's event channel
//! ([`super::event::AppEvent::Engine`]). Without an engine, resampling keys say so.

use anchorscope_engine::EngineCommand;

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

    /// Progress with an ETA from tokens, which follows the real rate from the first step on
    /// (rows decoded together finish together, so counting finished rollouts alone gives no
    /// ETA until the first batch ends): the tokens the remaining rollouts need
    /// (`per_rollout` each: the mean of those arrived, or the token cap before any) less
    /// those already generated for rollouts in flight, at `tokens_per_s`.
    pub fn estimate(
        (done, total): (usize, usize),
        tokens_per_s: f64,
        elapsed_s: f64,
        per_rollout: f64,
        arrived_tokens: f64,
    ) -> Self {
        let in_flight = (tokens_per_s * elapsed_s - arrived_tokens).max(0.0);
        let remaining = (total.saturating_sub(done) as f64 * per_rollout - in_flight).max(0.0);
        let eta_s = (tokens_per_s > 0.0).then(|| remaining / tokens_per_s);
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
