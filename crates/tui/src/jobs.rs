//! The explorer's job queue: one job runs on the engine, the others wait here in order.
//!
//! Why here and not in the engine: the worker keeps "latest wins" for callers that want it
//! (a new Submit supersedes the running job). The explorer never relies on that: it submits
//! the next job only when the running one has finished, so a second `r` queues instead of
//! silently cancelling the first, and `J` can show and cancel every job.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use anchorscope_engine::{AdaptivePlan, AdaptiveProgress, Job, JobId};

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
    /// An adaptive job's latest decisions (after its last round).
    pub adaptive: Option<AdaptiveProgress>,
}

/// The last decisions of an adaptive job on a trace, kept after the job ends so the text
/// pane's markers stay for the session.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveRecord {
    pub job: JobId,
    pub plan: AdaptivePlan,
    pub progress: AdaptiveProgress,
}

/// "adaptive sweep of t1: n_max 100, round 10 · compliance": an adaptive job in the job list.
pub fn describe_adaptive(trace_id: &str, plan: &AdaptivePlan) -> String {
    format!(
        "adaptive sweep of {trace_id}: n_max {}, round {} · {}",
        plan.settings.n_max, plan.settings.round, plan.behavior
    )
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
    /// Trace index → the last adaptive decisions on it this session.
    pub adaptive_by_trace: HashMap<usize, AdaptiveRecord>,
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
            adaptive: None,
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

    /// The running job's latest adaptive decisions, once its first round is looked at.
    pub fn adaptive(&self) -> Option<&AdaptiveProgress> {
        self.running.as_ref().and_then(|r| r.adaptive.as_ref())
    }

    /// The last adaptive decisions on trace `trace` (of a running or an ended job).
    pub fn adaptive_of_trace(&self, trace: usize) -> Option<&AdaptiveRecord> {
        self.adaptive_by_trace.get(&trace)
    }

    /// Rollouts the running job has still to sample (not stored yet): what quitting loses at
    /// most, besides the queued jobs.
    pub fn unsampled(&self) -> usize {
        let Some(r) = &self.running else { return 0 };
        // An adaptive job's rounds grow its total: what it may still add is up to n_max
        // everywhere, less what it holds.
        if let Some(a) = &r.adaptive {
            return a.fixed.saturating_sub(a.used) as usize;
        }
        match &r.progress {
            Some(p) if p.total > 0 => p.total.saturating_sub(p.done),
            // Not started yet: at most every rollout it asked for.
            _ => r.queued.job.positions.len() * r.queued.job.n,
        }
    }

    /// Rollouts the queued jobs would sample at most (positions × n; the engine tops up, so
    /// fewer when some are stored already; an adaptive job's n is its n_max).
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

    /// An adaptive job's decisions after a round: kept for the running job and, beyond its
    /// end, for the trace it samples. Another job's are stale (one job runs at a time).
    pub fn note_adaptive(&mut self, job: JobId, progress: AdaptiveProgress) {
        let Some(r) = self.running.as_mut().filter(|r| r.queued.job.id == job) else {
            return;
        };
        let Some(plan) = r.queued.job.adaptive.clone() else {
            return;
        };
        r.adaptive = Some(progress.clone());
        self.adaptive_by_trace.insert(
            r.queued.trace,
            AdaptiveRecord {
                job,
                plan,
                progress,
            },
        );
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

    fn adaptive_job(positions: Vec<usize>) -> Job {
        let settings = anchorscope_core::analysis::adaptive::AdaptiveSettings {
            n_max: 50,
            round: 5,
            ..Default::default()
        };
        Job {
            n: settings.n_max as usize,
            adaptive: Some(AdaptivePlan {
                settings,
                behavior: "compliance".into(),
                similarity_threshold: 0.8,
            }),
            ..job(positions)
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

    #[test]
    fn adaptive_decisions_outlive_their_job_and_stale_ones_are_dropped() {
        use crate::adaptive::tests::progress;
        use anchorscope_core::analysis::adaptive::SentenceState;
        let mut jobs = Jobs::default();
        let a = jobs.add(adaptive_job(vec![0, 1, 2]), 3, "a".into());
        let plan = jobs.queue[0].job.adaptive.clone().unwrap();
        assert_eq!(
            describe_adaptive("t1", &plan),
            "adaptive sweep of t1: n_max 50, round 5 · compliance"
        );
        // Not started yet: every rollout up to n_max at most.
        assert_eq!(jobs.queued_rollouts(), 150);
        jobs.start_next();
        let first = progress(vec![SentenceState::Sampling; 2], 30, 150, 1);
        // Another job's decisions are stale.
        jobs.note_adaptive(a + 1, first.clone());
        assert!(jobs.adaptive().is_none() && jobs.adaptive_of_trace(3).is_none());
        jobs.note_adaptive(a, first);
        let later = progress(vec![SentenceState::Sampling; 2], 60, 150, 2);
        jobs.note_adaptive(a, later.clone());
        assert_eq!(jobs.adaptive(), Some(&later), "the latest round wins");
        // What quitting would lose: up to n_max everywhere, less what is stored.
        assert_eq!(jobs.unsampled(), 90);
        jobs.finish_running();
        assert!(jobs.adaptive().is_none());
        let kept = jobs.adaptive_of_trace(3).unwrap();
        assert_eq!((kept.job, &kept.progress, &kept.plan), (a, &later, &plan));
    }

    #[test]
    fn a_fixed_job_records_no_adaptive_decisions() {
        use crate::adaptive::tests::progress;
        let mut jobs = Jobs::default();
        let a = jobs.add(job(vec![0]), 0, "a".into());
        jobs.start_next();
        jobs.note_adaptive(a, progress(vec![], 0, 0, 1));
        assert!(jobs.adaptive().is_none() && jobs.adaptive_by_trace.is_empty());
    }
}
