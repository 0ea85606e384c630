//! One job: bring every requested position up to n rollouts. Model-independent: the sampling
//! itself is behind [`Generator`], so the job logic (top-up, seeds, cancel, store, progress,
//! labels) is the same for the candle model and for the tests' deterministic double.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crate::embed::cosine;
use crate::sampler::rollout_seed;
use crate::{EngineCommand, EngineError, EngineEvent, Job, JobId};
use anchorscope_core::behavior::BehaviorSet;
use anchorscope_core::store::runs::{append_run, runs_path_for, RunRecord};
use anchorscope_core::store::{read_store, RolloutWriter};
use anchorscope_core::trace::intervention::{recurrence, Edit};
use anchorscope_core::trace::split::{first_sentence, SplitOptions};
use anchorscope_core::trace::tags;
use anchorscope_core::trace::{FinishReason, Rollout, SamplerSettings, Trace};

/// A finished continuation as the generator hands it over (before labels and storage).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub seed: u64,
    /// The continuation only (not the prefix).
    pub text: String,
    pub tokens: u32,
    pub finish: FinishReason,
}

/// What a generator reports to, and asks of, the job while it samples one position.
pub trait Control {
    /// Checked between decoding steps: true means stop now and drop the rollouts in flight.
    fn cancelled(&mut self) -> bool;
    /// `n` tokens were generated in the last step (for tokens/s).
    fn tokens(&mut self, n: usize);
    /// Whether a row may stop early: every behavior's label of prefix + `continuation` is final.
    fn decided(&self, continuation: &str) -> bool;
    /// A row finished. An error (the store could not be written) must end the sampling.
    fn finished(&mut self, sampled: Sampled) -> Result<(), EngineError>;
    /// The generator changed how it samples for the rest of the job (e.g. one continuation
    /// per request after a server duplicated choices): `note` says what and why. The job warns
    /// the user and records it as the provenance of the rollouts that follow.
    fn generation_changed(&mut self, _note: &str) {}
}

/// What a generator reports to, and asks of, the job while it samples several positions
/// together. `slot` indexes the `work` handed to [`Generator::sample_group`].
pub trait GroupControl {
    /// Checked between decoding steps: true means stop now and drop the rollouts in flight.
    fn cancelled(&mut self) -> bool;
    /// `n` tokens were generated in the last step (for tokens/s).
    fn tokens(&mut self, n: usize);
    /// Whether a row of `slot` may stop early (see [`Control::decided`]).
    fn decided(&self, slot: usize, continuation: &str) -> bool;
    /// A row of `slot` finished. An error (the store could not be written) must end the sampling.
    fn finished(&mut self, slot: usize, sampled: Sampled) -> Result<(), EngineError>;
    /// Sampling could not start at `slot`'s position (e.g. its prefix is over the context);
    /// the other slots go on.
    fn failed(&mut self, slot: usize, error: EngineError);
    /// See [`Control::generation_changed`].
    fn generation_changed(&mut self, _note: &str) {}
}

/// One slot of a [`GroupControl`] seen as a [`Control`] (positions sampled one at a time).
pub struct SlotControl<'a> {
    pub group: &'a mut dyn GroupControl,
    pub slot: usize,
}

impl Control for SlotControl<'_> {
    fn cancelled(&mut self) -> bool {
        self.group.cancelled()
    }
    fn tokens(&mut self, n: usize) {
        self.group.tokens(n)
    }
    fn decided(&self, continuation: &str) -> bool {
        self.group.decided(self.slot, continuation)
    }
    fn finished(&mut self, sampled: Sampled) -> Result<(), EngineError> {
        self.group.finished(self.slot, sampled)
    }
    fn generation_changed(&mut self, note: &str) {
        self.group.generation_changed(note)
    }
}

/// A [`Control`] seen as a one-slot [`GroupControl`] (slot 0).
pub struct OneSlot<'a>(pub &'a mut dyn Control);

impl GroupControl for OneSlot<'_> {
    fn cancelled(&mut self) -> bool {
        self.0.cancelled()
    }
    fn tokens(&mut self, n: usize) {
        self.0.tokens(n)
    }
    fn decided(&self, _slot: usize, continuation: &str) -> bool {
        self.0.decided(continuation)
    }
    fn finished(&mut self, _slot: usize, sampled: Sampled) -> Result<(), EngineError> {
        self.0.finished(sampled)
    }
    fn failed(&mut self, _slot: usize, _error: EngineError) {}
    fn generation_changed(&mut self, note: &str) {
        self.0.generation_changed(note)
    }
}

/// Samples continuations of a trace's prefix P_position, one per seed.
pub trait Generator {
    /// Sample one rollout per seed from P_position (prompt + `trace.prefix(position)`), calling
    /// `control.finished` for each row as it ends and `control.cancelled` between steps.
    fn sample(
        &mut self,
        trace: &Trace,
        position: usize,
        seeds: &[u64],
        settings: &SamplerSettings,
        control: &mut dyn Control,
    ) -> Result<(), EngineError>;

    /// How many rows (rollouts of any positions) this generator decodes together in one
    /// [`Generator::sample_group`] call with these settings; 0 = one position per call.
    fn group_rows(&self, _settings: &SamplerSettings) -> usize {
        0
    }

    /// `(engine, model)` as a run record names them (`store::runs`): which engine kind and
    /// which model produced the rollouts, so runs of different models never pool silently.
    fn run_identity(&self) -> (String, String) {
        ("unknown".into(), "unknown".into())
    }

    /// SHA-256 of the model file, when the generator reads one (run records carry it, so two
    /// files with one name never pool as the same model).
    fn model_sha256(&self) -> Option<String> {
        None
    }

    /// What a run record should say about how this generator makes rollouts beyond the
    /// settings (e.g. how a remote server's token counts are made); empty by default.
    fn run_notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Sample every `(position, seeds)` of `work`; slot k of `control` is `work[k]`. The
    /// default samples the positions one after another; a generator that batches rows of
    /// different positions in one decoding pass overrides it (and [`Generator::group_rows`]).
    /// An error that ends every slot is returned; one slot's failure goes to `control.failed`.
    fn sample_group(
        &mut self,
        trace: &Trace,
        work: &[(usize, Vec<u64>)],
        settings: &SamplerSettings,
        control: &mut dyn GroupControl,
    ) -> Result<(), EngineError> {
        for (slot, (position, seeds)) in work.iter().enumerate() {
            if control.cancelled() {
                return Ok(());
            }
            let mut one = SlotControl {
                group: &mut *control,
                slot,
            };
            if let Err(e) = self.sample(trace, *position, seeds, settings, &mut one) {
                control.failed(slot, e);
            }
        }
        Ok(())
    }
}

/// Split the plan into calls of [`Generator::sample_group`]: each group holds at most
/// `capacity` rows (a position's seeds may be split over two groups); capacity 0 means one
/// position per group, whatever its seed count.
pub fn pack_groups(plan: Vec<(usize, Vec<u64>)>, capacity: usize) -> Vec<Vec<(usize, Vec<u64>)>> {
    if capacity == 0 {
        return plan.into_iter().map(|w| vec![w]).collect();
    }
    let mut groups: Vec<Vec<(usize, Vec<u64>)>> = Vec::new();
    let mut room = 0;
    for (position, seeds) in plan {
        let mut rest = seeds.as_slice();
        while !rest.is_empty() {
            if room == 0 {
                groups.push(Vec::new());
                room = capacity;
            }
            let take = rest.len().min(room);
            let (now, later) = rest.split_at(take);
            if let Some(g) = groups.last_mut() {
                g.push((position, now.to_vec()));
            }
            room -= take;
            rest = later;
        }
    }
    groups
}

/// Sentence embeddings for the similarity of T_i to S_i.
pub trait Embedder {
    /// One L2-normalised vector per text.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError>;
}

impl Embedder for crate::embed::SentenceEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        crate::embed::SentenceEmbedder::embed(self, texts)
    }
}

/// What stays the same across jobs: classifiers, splitter, early-stop policy.
pub struct JobContext {
    pub behaviors: BehaviorSet,
    pub split: SplitOptions,
    /// Stop a row once the behavior set says every label is final (`labels_final`). Off for
    /// the benchmark, where both sides must generate the full token count.
    pub early_stop: bool,
}

/// Commands that arrive while a job runs: cancel it, supersede it (latest wins), shut down.
pub struct Inbox {
    rx: Receiver<EngineCommand>,
    /// The job to run next (the latest Submit seen while another ran).
    pub pending: Option<Job>,
    pub shutdown: bool,
}

impl Inbox {
    pub fn new(rx: Receiver<EngineCommand>) -> Self {
        Self {
            rx,
            pending: None,
            shutdown: false,
        }
    }

    /// Block for the next job (a pending one first). None: shut down or every sender is gone.
    pub fn next_job(&mut self, events: &dyn Fn(EngineEvent)) -> Option<Job> {
        loop {
            if self.shutdown {
                return None;
            }
            if let Some(job) = self.pending.take() {
                return Some(job);
            }
            match self.rx.recv() {
                Ok(command) => {
                    self.take(command, None, events);
                }
                Err(_) => return None,
            }
        }
    }

    /// Drain queued commands; true when the running job `current` must stop.
    pub fn should_stop(&mut self, current: JobId, events: &dyn Fn(EngineEvent)) -> bool {
        let mut stop = false;
        loop {
            match self.rx.try_recv() {
                Ok(command) => stop |= self.take(command, Some(current), events),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // Nobody can read our results any more.
                    self.shutdown = true;
                    break;
                }
            }
        }
        stop || self.shutdown
    }

    /// Apply one command; true when it stops the running job.
    fn take(
        &mut self,
        command: EngineCommand,
        current: Option<JobId>,
        events: &dyn Fn(EngineEvent),
    ) -> bool {
        match command {
            EngineCommand::Submit(job) => {
                // Latest wins: an older pending job is dropped (and said so).
                if let Some(old) = self.pending.replace(job) {
                    events(EngineEvent::Finished {
                        job: old.id,
                        cancelled: true,
                    });
                }
                current.is_some()
            }
            EngineCommand::Cancel(id) => {
                if self.pending.as_ref().is_some_and(|j| j.id == id) {
                    self.pending = None;
                    events(EngineEvent::Finished {
                        job: id,
                        cancelled: true,
                    });
                }
                current == Some(id)
            }
            EngineCommand::Shutdown => {
                self.shutdown = true;
                true
            }
        }
    }
}

/// Rollouts stored per position, every seed the store has used, and the rollouts themselves,
/// from a read of the store. Reading skips bad lines, so an `Err` is a store that cannot be read
/// at all: without its seeds a top-up could draw stored seeds again, so the job must stop rather
/// than guess.
fn stored_seeds(
    read: Result<anchorscope_core::store::StoreRead, anchorscope_core::trace::import::ImportError>,
) -> Result<Stored, String> {
    let stored =
        read.map_err(|e| format!("{e}; not sampling, so no stored seed is drawn twice"))?;
    let mut counts = BTreeMap::new();
    let mut used = HashSet::new();
    for r in &stored.rollouts {
        *counts.entry(r.position).or_insert(0usize) += 1;
        used.insert(r.seed);
    }
    // A damaged line's seed was sampled once: never sample it again.
    used.extend(stored.unreadable_seeds.iter().map(|&(_, seed)| seed));
    Ok(Stored {
        counts,
        used,
        rollouts: stored.rollouts,
    })
}

/// The seeds to draw at one position: indices from `existing` on, skipping any whose seed is
/// already stored (so a rerun never repeats a sample even if counts and seeds disagree).
pub fn plan_seeds(
    trace_id: &str,
    position: usize,
    existing: usize,
    needed: usize,
    used: &HashSet<u64>,
) -> Vec<u64> {
    (existing..)
        .map(|index| rollout_seed(trace_id, position, index))
        .filter(|s| !used.contains(s))
        .take(needed)
        .collect()
}

/// The record of a sampling run of `job`.
fn start_run(job: &Job, generator: &dyn Generator, ctx: &JobContext) -> RunRecord {
    let (engine, model) = generator.run_identity();
    let mut record = RunRecord::start(
        engine,
        model,
        generator.model_sha256(),
        (job.sampler.temperature as f32, job.sampler.top_p as f32),
        Some(job.sampler.max_new_tokens),
        ctx.behaviors.classifier_versions(),
        Some(anchorscope_core::store::runs::DEFAULT_JUDGE_SCOPE.into()),
    );
    record.notes = generator.run_notes();
    record
}

/// Run one job to the end or until cancelled; every event goes through `events`, the last one
/// being `Finished`. Returns whether it was cancelled.
pub fn run_job(
    job: &Job,
    generator: &mut dyn Generator,
    embedder: Option<&mut (dyn Embedder + 'static)>,
    ctx: &JobContext,
    inbox: &mut Inbox,
    events: &dyn Fn(EngineEvent),
) -> bool {
    let finish = |cancelled| {
        events(EngineEvent::Finished {
            job: job.id,
            cancelled,
        });
        cancelled
    };
    let error = |message: String| {
        events(EngineEvent::Error {
            job: job.id,
            message,
        })
    };

    // What is already stored decides the top-up: the store is the truth (the UI's counts may
    // miss rollouts of a job it superseded).
    // The writer (and its lock) comes first: reading and planning under the lock means two
    // processes can never plan the same seeds.
    let mut writer = match RolloutWriter::open(&job.store_path) {
        Ok(w) => w,
        Err(e) => {
            error(format!(
                "{}: cannot open the rollout store: {e}",
                job.store_path.display()
            ));
            return finish(false);
        }
    };
    let trace = &job.trace;
    let positions: Vec<usize> = job
        .positions
        .iter()
        .copied()
        .filter(|&p| {
            let exists = p < trace.positions();
            if !exists {
                error(format!(
                    "position {p} does not exist (the trace has positions 0..={})",
                    trace.sentences.len()
                ));
            }
            exists
        })
        .collect();
    let mut session = Session::new(job, &*generator, ctx, &mut writer, events);
    let ended = match &job.adaptive {
        Some(plan) => {
            super::adaptive::run(&mut session, plan, &positions, generator, embedder, inbox)
        }
        None => run_fixed(&mut session, &positions, generator, embedder, inbox),
    };
    finish(ended == Ended::Cancelled)
}

/// A fixed job: every position up to `job.n`.
fn run_fixed(
    session: &mut Session,
    positions: &[usize],
    generator: &mut dyn Generator,
    embedder: Option<&mut (dyn Embedder + 'static)>,
    inbox: &mut Inbox,
) -> Ended {
    let stored = match session.read_store() {
        Ok(stored) => stored,
        Err(message) => {
            session.error(message);
            return Ended::Failed;
        }
    };
    let (existing, used) = (stored.counts, stored.used);
    let n = session.job.n;
    let trace_id = session.job.trace.id.clone();
    let mut plan = Vec::new();
    for &p in positions {
        let have = existing.get(&p).copied().unwrap_or(0);
        let needed = n.saturating_sub(have);
        if needed > 0 {
            plan.push((p, plan_seeds(&trace_id, p, have, needed, &used)));
        }
    }
    let total: usize = plan.iter().map(|(_, s)| s.len()).sum();
    if total == 0 {
        session.announce(0);
        return Ended::Done;
    }
    session.sample(plan, generator, embedder, inbox)
}

/// How a job (or one round of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Done,
    Cancelled,
    /// The store could not be read or written, or the run not recorded: said in an Error.
    Failed,
}

/// What the store holds, read under the writer's lock.
#[derive(Debug)]
pub(crate) struct Stored {
    /// Rollouts per position (any run).
    pub counts: BTreeMap<usize, usize>,
    /// Every seed the store has used, damaged lines included.
    pub used: HashSet<u64>,
    pub rollouts: Vec<Rollout>,
}

/// The sampling side of one job, kept across its rounds: the store's writer, the run every
/// rollout is stored with (recorded before its first rollout), and the progress counters.
pub(crate) struct Session<'a> {
    pub job: &'a Job,
    ctx: &'a JobContext,
    writer: &'a mut RolloutWriter,
    events: &'a dyn Fn(EngineEvent),
    /// The run of this job; `recorded` once it is in the manifest.
    pub run: RunRecord,
    recorded: bool,
    manifest: std::path::PathBuf,
    progress: Progress,
    embed_warned: bool,
    /// Positions where sampling failed in the last [`Session::sample`] (e.g. over the context).
    pub failed_positions: Vec<usize>,
}

impl<'a> Session<'a> {
    fn new(
        job: &'a Job,
        generator: &dyn Generator,
        ctx: &'a JobContext,
        writer: &'a mut RolloutWriter,
        events: &'a dyn Fn(EngineEvent),
    ) -> Self {
        Self {
            job,
            ctx,
            writer,
            events,
            run: start_run(job, generator, ctx),
            recorded: false,
            manifest: runs_path_for(&job.store_path),
            progress: Progress {
                job: job.id,
                done: 0,
                total: 0,
                tokens: 0,
                started: Instant::now(),
                last_sent: Instant::now(),
            },
            embed_warned: false,
            failed_positions: Vec::new(),
        }
    }

    pub fn events(&self) -> &'a dyn Fn(EngineEvent) {
        self.events
    }

    /// The behaviors the job's classifiers label.
    pub fn behavior_names(&self) -> Vec<String> {
        self.ctx.behaviors.names()
    }

    pub fn error(&self, message: String) {
        (self.events)(EngineEvent::Error {
            job: self.job.id,
            message,
        });
    }

    /// What the store holds now. An unreadable store is an error: without its seeds a top-up
    /// could draw stored seeds again.
    pub fn read_store(&self) -> Result<Stored, String> {
        stored_seeds(read_store(&self.job.store_path))
    }

    /// `more` rollouts join the job's total; the UI hears it at once.
    pub fn announce(&mut self, more: usize) {
        self.progress.total += more;
        let e = self.progress.event();
        (self.events)(e);
    }

    /// Sample every `(position, seeds)` of `plan`, storing each rollout as it arrives.
    pub fn sample(
        &mut self,
        plan: Vec<(usize, Vec<u64>)>,
        generator: &mut dyn Generator,
        embedder: Option<&mut (dyn Embedder + 'static)>,
        inbox: &mut Inbox,
    ) -> Ended {
        self.failed_positions.clear();
        let total: usize = plan.iter().map(|(_, s)| s.len()).sum();
        self.announce(total);
        if total == 0 {
            return Ended::Done;
        }
        // The run's record is appended and synced before its first rollout is written, so
        // every stored run id resolves to a record.
        if !self.recorded {
            if let Err(e) = append_run(&self.manifest, &self.run) {
                self.error(format!(
                    "{}: cannot record the run: {e}",
                    self.manifest.display()
                ));
                return Ended::Failed;
            }
            self.recorded = true;
        }
        let trace = &self.job.trace;
        let groups = pack_groups(plan, generator.group_rows(&self.job.sampler));
        let mut control = JobControl {
            job: self.job,
            slots: Vec::new(),
            ctx: self.ctx,
            embedder,
            writer: &mut *self.writer,
            run: self.run.clone(),
            manifest: self.manifest.clone(),
            inbox,
            events: self.events,
            progress: &mut self.progress,
            cancelled: false,
            store_failed: false,
            embed_warned: self.embed_warned,
            failed_positions: Vec::new(),
            deleted: deleted_sentence(&self.job.trace),
            deleted_vector: None,
        };
        let mut ended = Ended::Done;
        for work in groups {
            if control.cancelled() {
                ended = Ended::Cancelled;
                break;
            }
            control.slots = work
                .iter()
                .map(|&(position, _)| Slot {
                    position,
                    prefix: trace.prefix(position),
                    original: trace.sentences.get(position).map(|s| s.text.as_str()),
                    original_vector: None,
                })
                .collect();
            let result = generator.sample_group(trace, &work, &self.job.sampler, &mut control);
            if let Err(e) = result {
                let positions: Vec<String> = work.iter().map(|(p, _)| p.to_string()).collect();
                let at = if positions.len() == 1 {
                    format!("position {}", positions[0])
                } else {
                    format!("positions {}", positions.join(", "))
                };
                control
                    .failed_positions
                    .extend(work.iter().map(|&(p, _)| p));
                (self.events)(EngineEvent::Error {
                    job: self.job.id,
                    message: format!("{at}: {e}"),
                });
            }
            if control.cancelled {
                ended = Ended::Cancelled;
                break;
            }
            if control.store_failed {
                // Without a store nothing sampled could be kept: stop rather than waste the
                // model.
                ended = Ended::Failed;
                break;
            }
        }
        // The run may have been continued (generation_changed): later rounds use the new one.
        self.run = control.run;
        self.embed_warned = control.embed_warned;
        self.failed_positions = control.failed_positions;
        ended
    }
}

/// done/total and tokens/s of a job.
struct Progress {
    job: JobId,
    done: usize,
    total: usize,
    tokens: usize,
    started: Instant,
    last_sent: Instant,
}

impl Progress {
    fn event(&mut self) -> EngineEvent {
        self.last_sent = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        EngineEvent::Progress {
            job: self.job,
            done: self.done,
            total: self.total,
            tokens_per_s: if secs > 0.0 {
                self.tokens as f64 / secs
            } else {
                0.0
            },
        }
    }
}

/// How often tokens/s is refreshed between finished rollouts.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// One position of the group being sampled.
struct Slot<'a> {
    position: usize,
    /// The response part of P_position (the kept reasoning).
    prefix: &'a str,
    /// S_position; None at the last position.
    original: Option<&'a str>,
    original_vector: Option<Vec<f32>>,
}

/// The job's side of sampling a group of positions.
struct JobControl<'a> {
    job: &'a Job,
    slots: Vec<Slot<'a>>,
    ctx: &'a JobContext,
    embedder: Option<&'a mut (dyn Embedder + 'static)>,
    writer: &'a mut RolloutWriter,
    /// The run every rollout is stored with (a new one after [`GroupControl::generation_changed`]).
    run: RunRecord,
    /// Where run records are appended.
    manifest: std::path::PathBuf,
    inbox: &'a mut Inbox,
    events: &'a dyn Fn(EngineEvent),
    progress: &'a mut Progress,
    cancelled: bool,
    store_failed: bool,
    embed_warned: bool,
    /// Positions whose sampling could not start or failed.
    failed_positions: Vec<usize>,
    /// The sentence a deletion removed, when the job samples such a derived trace: each
    /// rollout records how close its reasoning comes to it (resilience).
    deleted: Option<&'a str>,
    deleted_vector: Option<Vec<f32>>,
}

/// S_i of a trace derived by deleting S_i (trace::intervention); None for any other trace.
fn deleted_sentence(trace: &Trace) -> Option<&str> {
    let derived = trace.derived.as_ref()?;
    match derived.edit {
        Edit::Delete { .. } => derived.removed.as_deref(),
        _ => None,
    }
}

impl JobControl<'_> {
    /// The largest cosine of a sentence of the continuation's reasoning to the deleted
    /// sentence (trace::intervention::recurrence); None unless the job samples a deletion and
    /// an embedder is loaded.
    fn recurrence(&mut self, continuation: &str) -> Option<f32> {
        let deleted = self.deleted?;
        let embedder = self.embedder.as_deref_mut()?;
        if self.deleted_vector.is_none() {
            match embedder.embed(&[deleted]) {
                Ok(mut v) => self.deleted_vector = v.pop(),
                Err(e) => {
                    self.embed_failed(&e.to_string());
                    return None;
                }
            }
        }
        // Disjoint fields: the deleted sentence's vector is read while the embedder works.
        let target = self.deleted_vector.as_ref()?;
        let embedder = self.embedder.as_deref_mut()?;
        let mut error = None;
        let found = recurrence(continuation, &self.ctx.split, |texts| {
            match embedder.embed(texts) {
                Ok(vectors) => Some(vectors.iter().map(|v| cosine(v, target)).collect()),
                Err(e) => {
                    error = Some(e.to_string());
                    None
                }
            }
        });
        if let Some(e) = error {
            self.embed_failed(&e);
        }
        found
    }

    /// An embedder error, reported once per job.
    fn embed_failed(&mut self, error: &str) {
        if !self.embed_warned {
            self.embed_warned = true;
            (self.events)(EngineEvent::Error {
                job: self.job.id,
                message: format!("embedder: {error}; similarity not recorded"),
            });
        }
    }

    /// cosine(embed(T_i), embed(S_i)); None without an embedder, at the last position, or for an
    /// empty replacement. An embedder error is reported once and leaves the similarity unset.
    fn similarity(&mut self, slot: usize, replacement: &str) -> Option<f32> {
        let original = self.slots.get(slot)?.original?;
        if replacement.trim().is_empty() {
            return None;
        }
        let embedder = self.embedder.as_deref_mut()?;
        let result = match &self.slots[slot].original_vector {
            Some(v) => embedder
                .embed(&[replacement])
                .map(|mut r| (v.clone(), r.pop())),
            None => embedder.embed(&[original, replacement]).map(|mut r| {
                let t = r.pop();
                (r.pop().unwrap_or_default(), t)
            }),
        };
        match result {
            Ok((s, Some(t))) if !s.is_empty() && s.len() == t.len() => {
                let sim = cosine(&s, &t);
                self.slots[slot].original_vector = Some(s);
                Some(sim)
            }
            Ok(_) => None,
            Err(e) => {
                self.embed_failed(&e.to_string());
                None
            }
        }
    }
}

impl GroupControl for JobControl<'_> {
    fn cancelled(&mut self) -> bool {
        if !self.cancelled && self.inbox.should_stop(self.job.id, self.events) {
            self.cancelled = true;
        }
        // A failed store also ends the sampling: nothing more could be kept.
        self.cancelled || self.store_failed
    }

    fn tokens(&mut self, n: usize) {
        self.progress.tokens += n;
        if self.progress.last_sent.elapsed() >= PROGRESS_EVERY {
            let e = self.progress.event();
            (self.events)(e);
        }
    }

    fn decided(&self, slot: usize, continuation: &str) -> bool {
        let Some(prefix) = self.slots.get(slot).map(|s| s.prefix) else {
            return false;
        };
        // Cheap gate first: the reasoning can only close in the continuation (the prefix is cut
        // inside it); until then no label is final.
        if !self.ctx.early_stop || !tags::closes_reasoning(continuation) {
            return false;
        }
        let mut response = String::with_capacity(prefix.len() + continuation.len());
        response.push_str(prefix);
        response.push_str(continuation);
        self.ctx.behaviors.labels_final(&response)
    }

    fn finished(&mut self, slot: usize, sampled: Sampled) -> Result<(), EngineError> {
        if self.cancelled {
            return Ok(()); // in flight when the job was cancelled: dropped
        }
        let Some((position, prefix)) = self.slots.get(slot).map(|s| (s.position, s.prefix)) else {
            return Err(EngineError::Other(format!(
                "a rollout came back for slot {slot} of a group of {}",
                self.slots.len()
            )));
        };
        let replacement = first_sentence(&sampled.text, &self.ctx.split);
        let mut response = String::with_capacity(prefix.len() + sampled.text.len());
        response.push_str(prefix);
        response.push_str(&sampled.text);
        let labels = self.ctx.behaviors.classify(&response);
        let similarity = self.similarity(slot, &replacement);
        let recurrence = self.recurrence(&sampled.text);
        let rollout = Rollout {
            position,
            seed: sampled.seed,
            replacement,
            text: sampled.text,
            tokens: sampled.tokens,
            finish: sampled.finish,
            labels,
            similarity,
            run: Some(self.run.id.clone()),
            recurrence,
        };
        // Stored (flushed and synced) before it is reported.
        if let Err(e) = self.writer.append(&rollout) {
            self.store_failed = true;
            let message = format!(
                "{}: writing a rollout failed: {e}",
                self.writer.path().display()
            );
            return Err(EngineError::Other(message));
        }
        (self.events)(EngineEvent::Rollout {
            job: self.job.id,
            rollout: Box::new(rollout),
        });
        self.progress.done += 1;
        let e = self.progress.event();
        (self.events)(e);
        Ok(())
    }

    fn generation_changed(&mut self, note: &str) {
        (self.events)(EngineEvent::Status(crate::EngineStatus::Degraded(format!(
            "warning: {note}"
        ))));
        // The rest of the job is a run of its own whose record carries the note, appended and
        // synced before any of its rollouts, as at the start of a job.
        let next = self.run.continued(note.to_string());
        match append_run(&self.manifest, &next) {
            Ok(()) => self.run = next,
            Err(e) => {
                self.store_failed = true;
                (self.events)(EngineEvent::Error {
                    job: self.job.id,
                    message: format!("{}: cannot record the run: {e}", self.manifest.display()),
                });
            }
        }
    }

    fn failed(&mut self, slot: usize, error: EngineError) {
        let at = match self.slots.get(slot) {
            Some(s) => {
                self.failed_positions.push(s.position);
                format!("position {}", s.position)
            }
            None => format!("slot {slot}"),
        };
        (self.events)(EngineEvent::Error {
            job: self.job.id,
            message: format!("{at}: {error}"),
        });
    }
}

#[cfg(test)]
mod pack_tests {
    use super::pack_groups;

    #[test]
    fn capacity_zero_keeps_one_position_per_group() {
        let plan = vec![(0, vec![1, 2, 3]), (4, vec![5])];
        assert_eq!(
            pack_groups(plan.clone(), 0),
            vec![vec![plan[0].clone()], vec![plan[1].clone()]]
        );
    }

    #[test]
    fn positions_share_groups_up_to_the_capacity_and_split_when_needed() {
        let plan = vec![(0, vec![1, 2, 3]), (1, vec![4, 5, 6]), (2, vec![7])];
        let groups = pack_groups(plan, 4);
        assert_eq!(
            groups,
            vec![
                vec![(0, vec![1, 2, 3]), (1, vec![4])],
                vec![(1, vec![5, 6]), (2, vec![7])],
            ]
        );
        // Every seed once, in order.
        let seeds: Vec<u64> = groups
            .iter()
            .flatten()
            .flat_map(|(_, s)| s.clone())
            .collect();
        assert_eq!(seeds, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(groups
            .iter()
            .all(|g| g.iter().map(|(_, s)| s.len()).sum::<usize>() <= 4));
    }

    #[test]
    fn an_empty_plan_has_no_groups() {
        assert!(pack_groups(Vec::new(), 8).is_empty());
    }
}

#[cfg(test)]
mod stored_seeds_tests {
    use super::*;
    use anchorscope_core::store::StoreRead;
    use anchorscope_core::trace::import::ImportError;

    #[test]
    fn an_unreadable_store_stops_the_job_instead_of_guessing_seeds() {
        let err = ImportError::new(
            std::path::Path::new("t.rollouts.jsonl"),
            "",
            "permission denied",
        );
        let message = stored_seeds(Err(err)).unwrap_err();
        assert!(message.contains("t.rollouts.jsonl"), "{message}");
        assert!(message.contains("not sampling"), "{message}");
    }

    #[test]
    fn counts_and_seeds_include_damaged_lines() {
        let rollout = |position, seed| Rollout::bare(position, seed, "");
        let read = StoreRead {
            rollouts: vec![rollout(0, 10), rollout(0, 11), rollout(2, 12)],
            unreadable_seeds: vec![(0, 99)],
            ..StoreRead::default()
        };
        let stored = stored_seeds(Ok(read)).unwrap();
        assert_eq!(stored.counts, BTreeMap::from([(0, 2), (2, 1)]));
        assert_eq!(stored.used, HashSet::from([10, 11, 12, 99]));
    }
}
