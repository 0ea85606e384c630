//! Adaptive jobs (docs/METHOD.md, "Adaptive resampling"): the job samples in rounds, and after
//! each round [`AdaptivePolicy`] reads the stored counts and says which positions get more.
//! The policy decides; this module only feeds it the store's counts, turns its requests into
//! seeds (disjoint from every stored seed, as any top-up), and reports where it stands.

use std::collections::BTreeMap;

use super::job::{plan_seeds, Ended, Session};
use super::{Embedder, Generator, Inbox};
use crate::{AdaptivePlan, AdaptiveProgress, EngineEvent};
use anchorscope_core::analysis::adaptive::{
    AdaptivePolicy, PositionCounts, PositionState, Round, SentenceState,
};
use anchorscope_core::analysis::ImportanceKind;
use anchorscope_core::store::runs::{read_runs, run_of, runs_path_for, RunRecord};
use anchorscope_core::trace::Rollout;

/// Run an adaptive job to its end: every sentence it covers resolved, or cancelled.
pub(crate) fn run(
    session: &mut Session,
    plan: &AdaptivePlan,
    positions: &[usize],
    generator: &mut dyn Generator,
    mut embedder: Option<&mut (dyn Embedder + 'static)>,
    inbox: &mut Inbox,
) -> Ended {
    let job = session.job;
    let trace = &job.trace;
    let n_sentences = trace.sentences.len();
    let labelled = session.behavior_names();
    if !labelled.iter().any(|b| b == &plan.behavior) {
        session.error(format!(
            "adaptive: no classifier labels `{}` here (labelled: {}), so nothing could decide \
             when to stop; not sampling",
            plan.behavior,
            labelled.join(", ")
        ));
        return Ended::Failed;
    }
    let mut settings = plan.settings.clone();
    let mut notes = Vec::new();
    if settings.importance == ImportanceKind::Counterfactual && embedder.is_none() {
        // Without similarities D_i is empty and counterfactual importance undefined everywhere:
        // every sentence would run to n_max. The resampling importance needs no embedder.
        settings.importance = ImportanceKind::Resampling;
        notes.push(
            "no sentence embedder: the resampling importance (rate_{i+1} − rate_i) decides \
             instead of the counterfactual one"
                .to_string(),
        );
    }
    notes.push(format!(
        "decides on `{}`, from the rollouts that pool with this job's run",
        plan.behavior
    ));
    let mut policy = match AdaptivePolicy::new(settings, n_sentences) {
        Ok(p) => p,
        Err(e) => {
            session.error(format!("adaptive settings: {e}"));
            return Ended::Failed;
        }
    };
    let covered = covered_positions(positions, trace.positions());
    for (p, &c) in covered.iter().enumerate() {
        if !c {
            policy.exhaust(p);
        }
    }
    let mut rounds = 0u32;
    // Positions asked for in the last round with the count they had then.
    let mut asked: Vec<(usize, u32)> = Vec::new();
    loop {
        let stored = match session.read_store() {
            Ok(s) => s,
            Err(message) => {
                session.error(message);
                return Ended::Failed;
            }
        };
        let runs = read_runs(&runs_path_for(&job.store_path)).unwrap_or_default();
        let counts = pooled_counts(
            n_sentences,
            &stored.rollouts,
            &runs,
            &session.run,
            &plan.behavior,
            plan.similarity_threshold,
        );
        // A position that got nothing from a round it asked for (every row failed) cannot be
        // counted on to grow: its sentences are decided with what it holds.
        for &(p, before) in &asked {
            if counts.get(p).is_none_or(|c| c.n <= before) {
                policy.exhaust(p);
            }
        }
        for &p in &session.failed_positions {
            policy.exhaust(p);
        }
        let round = policy.step(&counts);
        let progress = progress_of(&policy, &counts, &round, &covered, rounds, &notes);
        (session.events())(EngineEvent::Adaptive {
            job: job.id,
            progress: Box::new(progress),
        });
        if round.is_empty() {
            return Ended::Done;
        }
        let work: Vec<(usize, Vec<u64>)> = round
            .requests
            .iter()
            .map(|&(p, more)| {
                let have = stored.counts.get(&p).copied().unwrap_or(0);
                (
                    p,
                    plan_seeds(&trace.id, p, have, more as usize, &stored.used),
                )
            })
            .collect();
        asked = round
            .requests
            .iter()
            .map(|&(p, _)| (p, counts.get(p).map_or(0, |c| c.n)))
            .collect();
        rounds += 1;
        let ended = session.sample(work, generator, embedder.as_deref_mut(), inbox);
        if ended != Ended::Done {
            return ended;
        }
    }
}

/// Which positions of the trace the job covers.
fn covered_positions(positions: &[usize], total: usize) -> Vec<bool> {
    let mut covered = vec![false; total];
    for &p in positions {
        if let Some(c) = covered.get_mut(p) {
            *c = true;
        }
    }
    covered
}

/// Counts per position of the rollouts that pool with `run` (same engine, model, sampler, cap
/// and judge scope; METHOD.md "Pooling"): the policy decides on what the job itself could add
/// to, never on rollouts of other settings. Rollouts whose run has no record are left out.
pub(crate) fn pooled_counts(
    n_sentences: usize,
    rollouts: &[Rollout],
    runs: &[RunRecord],
    run: &RunRecord,
    behavior: &str,
    threshold: f32,
) -> Vec<PositionCounts> {
    let mut pools: BTreeMap<&str, bool> = BTreeMap::new();
    let mut counts = vec![PositionCounts::default(); n_sentences + 1];
    for r in rollouts {
        let id = run_of(r);
        let pools_with = *pools.entry(id).or_insert_with(|| {
            id == run.id
                || runs
                    .iter()
                    .find(|rec| rec.id == id)
                    .is_some_and(|rec| rec.difference(run).is_none())
        });
        if let (true, Some(c)) = (pools_with, counts.get_mut(r.position)) {
            c.add_rollout(r, behavior, threshold);
        }
    }
    counts
}

/// What the UI is told after a look.
fn progress_of(
    policy: &AdaptivePolicy,
    counts: &[PositionCounts],
    round: &Round,
    covered: &[bool],
    rounds: u32,
    notes: &[String],
) -> AdaptiveProgress {
    let sentences = policy.sentence_states();
    // A sentence is the job's when one of its two positions is.
    let ours = |i: usize| covered.get(i).copied().unwrap_or(false) || covered[i + 1];
    let total = (0..sentences.len()).filter(|&i| ours(i)).count();
    let resolved = (0..sentences.len())
        .filter(|&i| ours(i) && matches!(sentences[i], SentenceState::Resolved(_)))
        .count();
    let job_positions = covered.iter().filter(|&&c| c).count() as u64;
    let used = covered
        .iter()
        .enumerate()
        .filter(|(_, &c)| c)
        .map(|(p, _)| counts.get(p).map_or(0, |c| c.n as u64))
        .sum();
    let positions: Vec<PositionState> = policy.position_states(counts, round);
    AdaptiveProgress {
        sentences,
        positions,
        resolved,
        total,
        used,
        fixed: job_positions * policy.settings().n_max as u64,
        round: rounds,
        importance: policy.settings().importance,
        notes: notes.to_vec(),
    }
}
