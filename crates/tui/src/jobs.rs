//! The explorer's job queue: one job runs on the engine, the others wait here in order.
//!
//! Why here and not in the engine: the worker keeps "latest wins" for callers that want it
//! (a new Submit supersedes the running job). The explorer never relies on that: it submits
//! the next job only when the running one has finished, so a second `r` queues instead of
//! silently cancelling the first, and `J` can show and cancel every job.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use anchorscope_engine::{Job, JobId};

use crate::engine_hook::JobProgress;

/// A job the explorer made: what it samples and for which trace.
#[derive(Clone, Debug)]
pub struct QueuedJob {
    pub job: Job,
    /// Index of the trace it samples (into `App::traces`).
    pub trace: usize,
    /// What it is, for the job list ("S12 · 16 rollouts at 2 positions").
    pub what: String,
}

/// The job on the engine now.
#[derive(Clone, Debug)]
pub struct RunningJob {
    pub queued: QueuedJob,
    pub progress: Option<JobProgress>,
    pub started: Instant,
    /// Tokens of the rollouts that arrived (for the ETA's tokens per rollout).
    pub arrived_tokens: u64,
    pub arrived: usize,
}

/// The running job, the waiting ones, and which trace every job id samples.
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: JobId,
    pub running: Option<RunningJob>,
    pub queue: VecDeque<QueuedJob>,
    /// Job id → index of the trace it samples. Kept for a job until it finishes, so rollouts
    /// that arrive after a cancel still join their trace (they are stored data).
    pub trace_of: HashMap<JobId, usize>,
}

impl Jobs {
    /// Give `template` an id and queue it; returns the id.
    pub fn add(&mut self, template: Job, trace: usize, what: String) -> JobId {
        self.next_id += 1;
        let id = self.next_id;
        self.trace_of.insert(id, trace);
        self.queue.push_back(QueuedJob {
            job: Job { id, ..template },
            trace,
            what,
        });
        id
    }

    /// The next job to send when nothing runs (it becomes the running one).
    pub fn start_next(&mut self) -> Option<Job> {
        if self.running.is_some() {
            return None;
        }
        let queued = self.queue.pop_front()?;
        let job = queued.job.clone();
        self.running = Some(RunningJob {
            queued,
            progress: None,
            started: Instant::now(),
            arrived_tokens: 0,
            arrived: 0,
        });
        Some(job)
    }

    pub fn running_id(&self) -> Option<JobId> {
        self.running.as_ref().map(|r| r.queued.job.id)
    }

    pub fn is_current(&self, job: JobId) -> bool {
        self.running_id() == Some(job)
    }

    /// Whether anything runs or waits.
    pub fn busy(&self) -> bool {
        self.running.is_some() || !self.queue.is_empty()
    }

    /// The running job's progress, if it has reported any.
    pub fn progress(&self) -> Option<&JobProgress> {
        self.running.as_ref().and_then(|r| r.progress.as_ref())
    }

    /// Rollouts the running job has still to sample (not stored yet): what quitting loses at
    /// most, besides the queued jobs.
    pub fn unsampled(&self) -> usize {
        let Some(r) = &self.running else { return 0 };
        match &r.progress {
            Some(p) if p.total > 0 => p.total.saturating_sub(p.done),
            // Not started yet: at most every rollout it asked for.
            _ => r.queued.job.positions.len() * r.queued.job.n,
        }
    }

    /// Rollouts the queued jobs would sample at most (positions × n; the engine tops up, so
    /// fewer when some are stored already).
    pub fn queued_rollouts(&self) -> usize {
        self.queue
            .iter()
            .map(|q| q.job.positions.len() * q.job.n)
            .sum()
    }

    /// Drop a queued job; true when it was queued.
    pub fn remove_queued(&mut self, id: JobId) -> bool {
        let before = self.queue.len();
        self.queue.retain(|q| q.job.id != id);
        let removed = self.queue.len() != before;
        if removed {
            self.trace_of.remove(&id);
        }
        removed
    }

    /// The running job has ended: forget it (the next one can start).
    pub fn finish_running(&mut self) -> Option<RunningJob> {
        self.running.take()
    }

    /// A rollout of the running job arrived with `tokens` tokens.
    pub fn note_rollout(&mut self, job: JobId, tokens: u32) {
        if let Some(r) = self.running.as_mut().filter(|r| r.queued.job.id == job) {
            r.arrived += 1;
            r.arrived_tokens += u64::from(tokens);
        }
    }

    /// New progress of the running job: the ETA from the tokens still to generate at the
    /// measured rate (see [`JobProgress::estimate`]).
    pub fn note_progress(&mut self, job: JobId, done: usize, total: usize, tokens_per_s: f64) {
        let Some(r) = self.running.as_mut().filter(|r| r.queued.job.id == job) else {
            return;
        };
        let elapsed = r.started.elapsed().as_secs_f64();
        let cap = r.queued.job.sampler.max_new_tokens;
        let per_rollout = if r.arrived > 0 {
            r.arrived_tokens as f64 / r.arrived as f64
        } else {
            f64::from(cap)
        };
        r.progress = Some(JobProgress::estimate(
            (done, total),
            tokens_per_s,
            elapsed,
            per_rollout,
            r.arrived_tokens as f64,
        ));
    }

    /// Every job in order: the running one first. (id, trace, what, progress).
    pub fn listing(&self) -> Vec<(JobId, usize, &str, Option<&JobProgress>)> {
        let mut out = Vec::new();
        if let Some(r) = &self.running {
            out.push((
                r.queued.job.id,
                r.queued.trace,
                r.queued.what.as_str(),
                Some(r.progress.as_ref().unwrap_or(&STARTING)),
            ));
        }
        for q in &self.queue {
            out.push((q.job.id, q.trace, q.what.as_str(), None));
        }
        out
    }
}

/// The progress of a job that has not reported yet.
static STARTING: JobProgress = JobProgress {
    done: 0,
    total: 0,
    tokens_per_s: 0.0,
    eta_s: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use anchorscope_core::trace::{SamplerSettings, Trace};
    use std::sync::Arc;

    fn job(positions: Vec<usize>) -> Job {
        Job {
            id: 0,
            trace: Arc::new(Trace::new("t", Vec::new(), "A. B.")),
            store_path: "t.rollouts.jsonl".into(),
            positions,
            n: 4,
            sampler: SamplerSettings::default(),
            adaptive: None,
        }
    }

    #[test]
    fn jobs_wait_in_order_and_start_one_at_a_time() {
        let mut jobs = Jobs::default();
        let a = jobs.add(job(vec![0, 1]), 0, "a".into());
        let b = jobs.add(job(vec![1, 2]), 1, "b".into());
        assert_eq!(jobs.start_next().map(|j| j.id), Some(a));
        // Nothing else starts while one runs.
        assert!(jobs.start_next().is_none());
        assert_eq!(jobs.queued_rollouts(), 8);
        assert_eq!(jobs.listing().len(), 2);
        jobs.finish_running();
        assert_eq!(jobs.start_next().map(|j| j.id), Some(b));
        assert!(jobs.is_current(b) && !jobs.is_current(a));
    }

    #[test]
    fn a_queued_job_can_be_removed_and_the_eta_follows_the_arrived_tokens() {
        let mut jobs = Jobs::default();
        let a = jobs.add(job(vec![0]), 0, "a".into());
        let b = jobs.add(job(vec![1]), 0, "b".into());
        assert!(jobs.remove_queued(b));
        assert!(!jobs.remove_queued(b));
        assert!(!jobs.trace_of.contains_key(&b));
        jobs.start_next();
        jobs.note_rollout(a, 10);
        jobs.note_rollout(a, 30);
        jobs.note_progress(a, 2, 4, 20.0);
        let p = jobs.progress().unwrap();
        assert_eq!((p.done, p.total), (2, 4));
        // 2 rollouts left at 20 tokens each (the mean so far), 20 tok/s: about 2 s (less the
        // tokens already generated for them: none yet, the test's elapsed time is ~0).
        let eta = p.eta_s.unwrap();
        assert!(eta > 1.5 && eta <= 2.0, "{eta}");
        assert_eq!(jobs.unsampled(), 2);
    }
}
