//! Adaptive jobs on the test double: decided positions stop early, undecided ones reach n_max
//! and hold exactly the fixed sweep's seeds there, top-ups stay seed-disjoint, and a job that
//! cannot decide says why.

use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::{AdaptivePlan, AdaptiveProgress};
use anchorscope_core::analysis::adaptive::{AdaptiveSettings, Resolution, SentenceState};
use anchorscope_core::analysis::ImportanceKind;

fn adaptive_job(store: &Path, settings: AdaptiveSettings) -> Job {
    Job {
        adaptive: Some(AdaptivePlan {
            settings,
            behavior: "compliance".into(),
            similarity_threshold: 0.8,
        }),
        ..job(1, store, vec![0, 1, 2, 3], 0)
    }
}

fn per_position(rollouts: &[Rollout]) -> BTreeMap<usize, Vec<u64>> {
    let mut out: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for r in rollouts {
        out.entry(r.position).or_default().push(r.seed);
    }
    out
}

fn last_progress(rec: &Recorder) -> AdaptiveProgress {
    rec.all()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Adaptive { progress, .. } => Some(*progress),
            _ => None,
        })
        .next_back()
        .expect("an adaptive job reports its progress")
}

#[test]
fn decided_positions_stop_after_one_round() {
    // Positions 0 and 1 never comply, 2 and 3 always do: S1 (D at position 1 against the
    // kept rollouts at 2) moves the rate from 0 to 1, S0 and S2 change nothing.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let mut generator = ScriptedGenerator {
        comply_at: vec![Some(false), Some(false), Some(true), Some(true)],
        ..ScriptedGenerator::default()
    };
    let settings = AdaptiveSettings::default();
    let rec = Recorder::default();
    let cancelled = run(
        &adaptive_job(&store, settings),
        &mut generator,
        true,
        &ctx(BehaviorsConfig::default()),
        &rec,
    );
    assert!(!cancelled);
    let counts: Vec<usize> = per_position(&stored(&store))
        .values()
        .map(Vec::len)
        .collect();
    // S1 is decided at the first look; S0 and S2 (0/10 against 0/10, 10/10 against 10/10)
    // need a few more rounds before futility rules out |Δ| ≥ 0.1 at the default level, far
    // from n_max.
    assert_eq!(counts.len(), 4);
    assert!(
        counts.iter().all(|&n| n == counts[0] && n <= 40),
        "{counts:?}"
    );
    let progress = last_progress(&rec);
    assert_eq!((progress.resolved, progress.total), (3, 3));
    assert_eq!(progress.used, 4 * counts[0] as u64);
    assert_eq!(progress.fixed, 400);
    assert_eq!(progress.importance, ImportanceKind::Counterfactual);
    match progress.sentences[1] {
        SentenceState::Resolved(Resolution::Significant { delta, n }) => {
            assert!((delta - 1.0).abs() < 1e-9, "{delta}");
            assert_eq!(n, 10);
        }
        other => panic!("S1 should be significant, got {other:?}"),
    }
    for i in [0, 2] {
        assert!(
            matches!(progress.sentences[i], SentenceState::Resolved(r) if !r.significant()),
            "S{i}: {:?}",
            progress.sentences[i]
        );
    }
    // The job's progress total is what it asked for, and it all arrived.
    let last_total = rec
        .all()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Progress { done, total, .. } => Some((done, total)),
            _ => None,
        })
        .next_back();
    assert_eq!(last_total, Some((4 * counts[0], 4 * counts[0])));
}

#[test]
fn undecided_positions_reach_n_max_with_the_fixed_sweeps_seeds() {
    // Compliance by seed parity everywhere: no sentence matters. With futility and the
    // precision stop off, only n_max ends the sampling.
    let dir = tempfile::tempdir().unwrap();
    let adaptive_store = dir.path().join("a.rollouts.jsonl");
    let fixed_store = dir.path().join("f.rollouts.jsonl");
    let settings = AdaptiveSettings {
        n_max: 30,
        futility: 0.0,
        epsilon: 0.0,
        ..AdaptiveSettings::default()
    };
    let rec = Recorder::default();
    run(
        &adaptive_job(&adaptive_store, settings),
        &mut ScriptedGenerator::default(),
        true,
        &ctx(BehaviorsConfig::default()),
        &rec,
    );
    let progress = last_progress(&rec);
    run(
        &job(2, &fixed_store, vec![0, 1, 2, 3], 30),
        &mut ScriptedGenerator::default(),
        true,
        &ctx(BehaviorsConfig::default()),
        &Recorder::default(),
    );
    let adaptive = per_position(&stored(&adaptive_store));
    let fixed = per_position(&stored(&fixed_store));
    let mut at_n_max = 0;
    for (i, state) in progress.sentences.iter().enumerate() {
        let SentenceState::Resolved(resolution) = state else {
            panic!("S{i} unresolved at the end: {state:?}");
        };
        if *resolution == Resolution::Exhausted {
            at_n_max += 1;
            for p in [i, i + 1] {
                // Same seeds in the same order: the adaptive sweep's rollouts there are the
                // fixed sweep's.
                let sorted = |s: &Vec<u64>| {
                    let mut s = s.clone();
                    s.sort_unstable();
                    s
                };
                assert_eq!(sorted(&adaptive[&p]), sorted(&fixed[&p]), "position {p}");
            }
        }
    }
    assert!(at_n_max >= 2, "{:?}", progress.sentences);
    assert!(
        adaptive.values().all(|s| s.len() <= 30),
        "never beyond n_max"
    );
}

#[test]
fn top_ups_never_repeat_a_stored_seed_and_stop_at_n_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let ctx = ctx(BehaviorsConfig::default());
    // 7 rollouts stored at every position by an earlier fixed run with the same settings.
    run(
        &job(1, &store, vec![0, 1, 2, 3], 7),
        &mut ScriptedGenerator::default(),
        true,
        &ctx,
        &Recorder::default(),
    );
    let settings = AdaptiveSettings {
        n_max: 25,
        futility: 0.0,
        epsilon: 0.0,
        ..AdaptiveSettings::default()
    };
    run(
        &adaptive_job(&store, settings),
        &mut ScriptedGenerator::default(),
        true,
        &ctx,
        &Recorder::default(),
    );
    let all = stored(&store);
    let seeds: HashSet<u64> = all.iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), all.len(), "a seed was sampled twice");
    for (p, s) in per_position(&all) {
        assert!(s.len() <= 25, "position {p} holds {}", s.len());
        assert!(s.len() >= 10, "position {p} holds {}", s.len());
    }
}

#[test]
fn without_an_embedder_the_resampling_importance_decides_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let mut generator = ScriptedGenerator {
        comply_at: vec![Some(false), Some(false), Some(true), Some(true)],
        ..ScriptedGenerator::default()
    };
    let rec = Recorder::default();
    run(
        &adaptive_job(&store, AdaptiveSettings::default()),
        &mut generator,
        false,
        &ctx(BehaviorsConfig::default()),
        &rec,
    );
    let progress = last_progress(&rec);
    assert_eq!(progress.importance, ImportanceKind::Resampling);
    assert!(
        progress
            .notes
            .iter()
            .any(|n| n.contains("no sentence embedder")),
        "{:?}",
        progress.notes
    );
    assert_eq!(
        progress.sentences[1],
        SentenceState::Resolved(Resolution::Significant { delta: 1.0, n: 10 })
    );
}

#[test]
fn a_behavior_no_classifier_labels_stops_the_job_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let mut job = adaptive_job(&store, AdaptiveSettings::default());
    if let Some(plan) = job.adaptive.as_mut() {
        plan.behavior = "blackmail".into();
    }
    let rec = Recorder::default();
    run(
        &job,
        &mut ScriptedGenerator::default(),
        true,
        &ctx(BehaviorsConfig::default()),
        &rec,
    );
    let events = rec.all();
    assert!(
        events.iter().any(|e| matches!(e,
            EngineEvent::Error { message, .. } if message.contains("`blackmail`"))),
        "{events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(EngineEvent::Finished {
            cancelled: false,
            ..
        })
    ));
    assert!(stored(&store).is_empty());
}

#[test]
fn cancelling_between_rounds_keeps_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let (tx, rx) = mpsc::channel();
    let mut inbox = Inbox::new(rx);
    let rec = Recorder::default();
    // Cancel when the 25th rollout arrives: inside the second round.
    let sink = rec.sink(Some((25, tx, EngineCommand::Cancel(1))));
    let settings = AdaptiveSettings {
        futility: 0.0,
        epsilon: 0.0,
        ..AdaptiveSettings::default()
    };
    let cancelled = run_job(
        &adaptive_job(&store, settings),
        &mut ScriptedGenerator::default(),
        Some(&mut LetterEmbedder),
        &ctx(BehaviorsConfig::default()),
        &mut inbox,
        &sink,
    );
    assert!(cancelled);
    let kept = stored(&store);
    assert_eq!(kept.len(), rec.rollouts(1).len(), "store == events");
    assert!(kept.len() >= 25 && kept.len() < 80, "{}", kept.len());
}
