//! Resampling from the explorer: checks before sampling (the model, the behavior), the job
//! queue, cancelling, and the engine's messages.

use super::adaptive::base_behavior;
use super::{App, Confirm, Popup, StatusMessage, INTERACTIVE_ROLLOUTS, NO_ENGINE};
use crate::adaptive::summary;
use crate::jobs::describe_adaptive;
use anchorscope_core::behavior::scope::label_continuations;
use anchorscope_core::loaded::runs_of;
use anchorscope_engine::{AdaptivePlan, EngineCommand, EngineEvent, JobId, ModelIdentity};

impl App {
    /// `r` / `R`: sample at `positions` of the open trace, after saying what would make the
    /// numbers mean something else (another model wrote the trace; the behavior cannot be
    /// labelled here).
    pub(crate) fn resample(&mut self, positions: Vec<usize>) {
        self.request_sampling(positions, None);
    }

    /// Sample at `positions`, adaptively when `adaptive` is given, once the checks pass or the
    /// user said yes to what they found.
    pub(crate) fn request_sampling(
        &mut self,
        positions: Vec<usize>,
        adaptive: Option<AdaptivePlan>,
    ) {
        if self.engine.is_none() {
            return self.set_info(NO_ENGINE.to_string());
        }
        let mut reasons = Vec::new();
        if let Some(mut why) = self.unlabelable_behavior() {
            // The sweep cannot stop on a behavior it gets no labels for: say which decides.
            if let Some(plan) = &adaptive {
                why.push_str(&format!(
                    "; the adaptive sweep decides on `{}`",
                    plan.behavior
                ));
            }
            reasons.push(why);
        }
        if !self.model_confirmed.contains(&self.current) {
            if let Some(why) = self.other_model() {
                reasons.push(why);
            }
        }
        if reasons.is_empty() {
            self.queue_resample(positions, adaptive);
        } else {
            self.popup = Some(Popup::Confirm(Confirm::Resample {
                positions,
                reasons,
                adaptive,
            }));
        }
    }

    /// The coloring behavior, when no configured classifier can label it (an imported
    /// `correct` or `blackmail`): new rollouts would carry no such label.
    fn unlabelable_behavior(&self) -> Option<String> {
        let shown = self.behavior_name();
        let base = base_behavior(&shown);
        if shown == "none" || self.behavior_names.iter().any(|n| n == base) {
            return None;
        }
        Some(format!(
            "no classifier or judge labels `{base}` here (labelled: {}); new rollouts get \
             those labels only, so `{base}` keeps its current numbers",
            self.behavior_names.join(", ")
        ))
    }

    /// The trace was written by a model other than the engine's: rollouts then measure the
    /// engine's model continuing another model's reasoning.
    pub(super) fn other_model(&self) -> Option<String> {
        let identity = self.engine_view.identity.as_ref()?;
        let entry = self.entry()?;
        match same_model(
            entry.loaded.trace.manifest.model_hash.as_deref(),
            entry.model(),
            identity,
        ) {
            Some(false) => Some(format!(
                "this trace was written by {}; the engine samples with {}: the rollouts \
                 measure that model continuing this one's reasoning",
                entry.model().unwrap_or("another model"),
                identity.model
            )),
            _ => None,
        }
    }

    /// Queue a job for the open trace (adaptive when `adaptive` is given) and start it when
    /// nothing runs.
    pub(crate) fn queue_resample(&mut self, positions: Vec<usize>, adaptive: Option<AdaptivePlan>) {
        let Some(entry) = self.entry() else { return };
        let id = &entry.loaded.trace.id;
        let what = match (&adaptive, positions.as_slice()) {
            (Some(plan), _) => describe_adaptive(id, plan),
            (None, [i, _]) => format!(
                "{id} S{i} · {INTERACTIVE_ROLLOUTS} rollouts at positions {i}, {}",
                i + 1
            ),
            (None, all) => format!(
                "{id} · {INTERACTIVE_ROLLOUTS} rollouts at all {} positions",
                all.len()
            ),
        };
        // The worker ignores `n` for an adaptive job; n_max there keeps the queue's "at most"
        // counts (quit warning) true.
        let n = adaptive
            .as_ref()
            .map_or(INTERACTIVE_ROLLOUTS, |p| p.settings.n_max as usize);
        let doing = match &adaptive {
            Some(plan) => self.adaptive_doing(plan),
            None => format!(
                "{INTERACTIVE_ROLLOUTS} rollouts at {} position(s)",
                positions.len()
            ),
        };
        let adaptive_job = adaptive.is_some();
        let template = job_template(entry, positions, n, adaptive);
        let waiting = self.jobs.busy();
        self.jobs.add(template, self.current, what);
        if waiting {
            let ahead = self.jobs.queue.len() - 1 + usize::from(self.jobs.running.is_some());
            self.set_info(format!(
                "queued behind {ahead} job(s) ({} lists jobs): {doing}",
                self.keymap.hint(&crate::action::Action::JobList)
            ));
        } else {
            // "adaptive sweep on …" says what it does; a fixed job's counts need the verb.
            let verb = if adaptive_job { "" } else { "sampling " };
            self.set_info(format!("{verb}{doing}…"));
        }
        self.submit_next();
    }

    /// Send the next queued job when nothing runs.
    pub(crate) fn submit_next(&mut self) {
        let Some(job) = self.jobs.start_next() else {
            return;
        };
        let id = job.id;
        let sent = match self.engine.as_mut() {
            Some(engine) => engine.send(EngineCommand::Submit(job)),
            None => Err(NO_ENGINE.to_string()),
        };
        if let Err(e) = sent {
            self.jobs.finish_running();
            self.jobs.trace_of.remove(&id);
            self.set_error(e);
        }
    }

    /// `x`: cancel the running job (the queue then goes on).
    pub(crate) fn cancel_job(&mut self) {
        if self.engine.is_none() {
            return self.set_info(NO_ENGINE.to_string());
        }
        match self.jobs.running_id() {
            Some(id) => self.cancel(id),
            None => self.set_info("no job running".into()),
        }
    }

    /// Cancel one job: a queued one is dropped; the running one is asked to stop after its
    /// in-flight step (stored rollouts stay).
    pub(crate) fn cancel(&mut self, id: JobId) {
        if self.jobs.remove_queued(id) {
            return self.set_info(format!("job {id} removed from the queue"));
        }
        if !self.jobs.is_current(id) {
            return self.set_info(format!("job {id} has ended"));
        }
        let Some(engine) = self.engine.as_mut() else {
            return self.set_info(NO_ENGINE.to_string());
        };
        match engine.send(EngineCommand::Cancel(id)) {
            Ok(()) => self.set_info("cancelling…".into()),
            Err(e) => self.set_error(e),
        }
    }

    /// An engine message. Rollouts join the trace their job sampled (they are stored data,
    /// even from a cancelled job) and only update counts: the analysis is rebuilt once per
    /// frame ([`App::refresh`]).
    pub fn on_engine_event(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Status(state) => {
                if state.is_ready() {
                    self.engine_view.ready = Some(state.to_string());
                }
                self.engine_view.state = Some(state.clone());
                // Never hide a message that answers the user's last key.
                if self.status.as_ref().is_none_or(|s| s.from_engine) {
                    self.status = Some(StatusMessage {
                        text: state.to_string(),
                        is_error: state.is_error(),
                        from_engine: true,
                    });
                }
            }
            EngineEvent::Model(identity) => self.engine_view.identity = Some(identity),
            EngineEvent::Rollout { job, rollout } => {
                let Some(&index) = self.jobs.trace_of.get(&job) else {
                    return;
                };
                self.jobs.note_rollout(job, rollout.tokens);
                let Some(entry) = self.traces.get_mut(index) else {
                    return;
                };
                // A rollout of a run not seen yet: its record was appended before it.
                let known = rollout
                    .run
                    .as_ref()
                    .is_none_or(|id| entry.runs.iter().any(|r| &r.id == id));
                if !known {
                    if let Ok(runs) = runs_of(&entry.loaded) {
                        entry.runs = runs;
                    }
                    entry.invalidate();
                }
                let mut rollout = *rollout;
                if let Some(set) = &self.scope_set {
                    label_continuations(
                        set,
                        &entry.loaded.trace,
                        std::slice::from_mut(&mut rollout),
                    );
                }
                entry.push(rollout);
            }
            EngineEvent::Progress {
                job,
                done,
                total,
                tokens_per_s,
            } => self.jobs.note_progress(job, done, total, tokens_per_s),
            EngineEvent::Error { job, message } if self.jobs.is_current(job) => {
                self.set_error(format!("engine: {message}"));
            }
            EngineEvent::Error { .. } => {}
            EngineEvent::Adaptive { job, progress } => self.jobs.note_adaptive(job, *progress),
            EngineEvent::Finished { job, cancelled } => {
                self.jobs.trace_of.remove(&job);
                if !self.jobs.is_current(job) {
                    return;
                }
                let ended = self.jobs.finish_running();
                let adaptive = ended.as_ref().and_then(|r| r.adaptive.clone());
                let done = ended.and_then(|r| r.progress).map(|p| (p.done, p.total));
                let keep_error = self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.is_error && !s.from_engine);
                let text = match (cancelled, done, adaptive) {
                    // An adaptive sweep ends with what it decided and what it saved.
                    (true, _, Some(a)) => format!("adaptive sweep cancelled: {}", summary(&a)),
                    (false, _, Some(a)) => format!("adaptive sweep finished: {}", summary(&a)),
                    (true, Some((d, t)), None) => {
                        format!("job cancelled ({d}/{t} rollouts stored)")
                    }
                    (true, None, None) => "job cancelled".to_string(),
                    (false, Some((d, t)), None) if d < t => {
                        format!("job ended with {d}/{t} rollouts")
                    }
                    (false, Some((_, 0)), None) => {
                        "nothing to sample: every position has enough rollouts".to_string()
                    }
                    (false, Some((d, _)), None) => format!("job finished: {d} rollouts"),
                    (false, None, None) => "job finished".to_string(),
                };
                // An error of this job (e.g. the model is missing) stays visible.
                if !keep_error {
                    let waiting = self.jobs.queue.len();
                    if waiting > 0 {
                        self.set_info(format!("{text}; next of {waiting} queued starts"));
                    } else {
                        self.set_info(text);
                    }
                }
                self.submit_next();
            }
        }
    }

    /// What the status bar says about the engine: "model · device", or what it is doing.
    pub fn engine_label(&self) -> String {
        use anchorscope_engine::EngineStatus as S;
        if !self.engine_view.attached {
            return "no engine".into();
        }
        match (&self.engine_view.ready, &self.engine_view.state) {
            (_, Some(S::Unavailable(_))) => "model unavailable".into(),
            (_, Some(S::Error(_))) => "engine error".into(),
            (Some(ready), _) => {
                let ready = ready.strip_prefix("model ready: ").unwrap_or(ready);
                // The model file's name and the device read better than the long description.
                match (&self.engine_view.identity, ready.rsplit_once(" on ")) {
                    (Some(id), Some((_, device))) => {
                        let path = std::path::Path::new(&id.model);
                        let name = path
                            .file_stem()
                            .map_or(id.model.clone(), |s| s.to_string_lossy().into_owned());
                        format!("{name} · {device}")
                    }
                    _ => ready.to_string(),
                }
            }
            (None, Some(S::Installing(_))) => "installing model…".into(),
            (None, _) => "loading model…".into(),
        }
    }
}

/// A job for `entry` (its id is given when queued), sampled with the trace's own sampler
/// settings so every job on it pools.
pub(crate) fn job_template(
    entry: &super::TraceEntry,
    positions: Vec<usize>,
    n: usize,
    adaptive: Option<AdaptivePlan>,
) -> anchorscope_engine::Job {
    anchorscope_engine::Job {
        id: 0,
        trace: std::sync::Arc::new(entry.loaded.trace.clone()),
        store_path: entry.loaded.store_path.clone(),
        positions,
        n,
        sampler: sampler_for(entry),
        adaptive,
    }
}

/// The sampler settings of a new job on `entry`: those of the run its rates pool around, so new
/// rollouts top up the counted ones instead of starting a run the pool leaves out (a trace
/// collected at 300 tokens whose rollouts were sampled at 256, say); else the trace's recorded
/// settings; else the defaults.
pub(crate) fn sampler_for(entry: &super::TraceEntry) -> anchorscope_core::trace::SamplerSettings {
    let base = entry
        .loaded
        .trace
        .manifest
        .sampler
        .clone()
        .unwrap_or_default();
    anchorscope_core::store::runs::reference_sampler(&entry.pool, &entry.runs, base)
}

/// Whether a trace was written by the engine's model: by file hash when both are known, else
/// by name (None when the trace names no model).
pub fn same_model(
    trace_hash: Option<&str>,
    trace_model: Option<&str>,
    engine: &ModelIdentity,
) -> Option<bool> {
    if let (Some(theirs), Some(ours)) = (trace_hash, engine.sha256.as_deref()) {
        let theirs = theirs.strip_prefix("sha256:").unwrap_or(theirs);
        return Some(theirs.eq_ignore_ascii_case(ours));
    }
    let squash = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    let theirs = squash(trace_model?);
    let ours = squash(&engine.model);
    Some(!theirs.is_empty() && (ours.contains(&theirs) || theirs.contains(&ours)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_check_prefers_hashes_then_names() {
        let engine = ModelIdentity {
            engine: "local".into(),
            model: "/m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            sha256: Some("ABC".into()),
        };
        assert_eq!(same_model(Some("sha256:abc"), None, &engine), Some(true));
        assert_eq!(same_model(Some("sha256:abd"), None, &engine), Some(false));
        assert_eq!(
            same_model(None, Some("deepseek-r1-distill-qwen-14b"), &engine),
            Some(false)
        );
        assert_eq!(
            same_model(None, Some("SmolLM2-135M-Instruct.Q4_1.gguf"), &engine),
            Some(true)
        );
        assert_eq!(same_model(None, None, &engine), None);
    }
}
