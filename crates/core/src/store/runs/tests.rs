use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::trace::FinishReason;

fn record(model: &str, max_tokens: u32) -> RunRecord {
    RunRecord::start(
        "local".into(),
        model.into(),
        Some(format!("sha-{model}")),
        (0.6, 0.95),
        Some(max_tokens),
        BTreeMap::from([("compliance".to_string(), "compliance-tag@1".to_string())]),
        None,
    )
}

fn rollout(run: Option<&str>) -> Rollout {
    Rollout {
        position: 0,
        seed: 0,
        replacement: "I will comply.".into(),
        text: "I will comply.".into(),
        tokens: 3,
        finish: FinishReason::Stop,
        labels: BTreeMap::new(),
        similarity: None,
        run: run.map(str::to_string),
        recurrence: None,
    }
}

#[test]
fn manifest_path_sits_beside_the_store() {
    assert_eq!(
        runs_path_for(Path::new("/x/a.rollouts.jsonl")),
        Path::new("/x/a.runs.jsonl")
    );
    assert_eq!(
        runs_path_for(Path::new("/x/odd.jsonl")),
        Path::new("/x/odd.jsonl.runs.jsonl")
    );
}

#[test]
fn two_runs_append_two_lines_and_leave_the_first_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("t.runs.jsonl");
    let first = record("m", 256);
    append_run(&manifest, &first).unwrap();
    let after_first = std::fs::read_to_string(&manifest).unwrap();
    let second = record("m", 256);
    append_run(&manifest, &second).unwrap();
    let after_second = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(after_second.lines().count(), 2);
    assert!(
        after_second.starts_with(&after_first),
        "first line rewritten"
    );
    assert_ne!(first.id, second.id);
    assert_eq!(read_runs(&manifest).unwrap(), vec![first, second]);
}

#[test]
fn a_bad_manifest_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("t.runs.jsonl");
    append_run(&manifest, &record("m", 8)).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&manifest)
        .unwrap()
        .write_all(b"{not json\n")
        .unwrap();
    let e = read_runs(&manifest).unwrap_err();
    assert_eq!(e.place, "line 2: ");
    assert!(e.to_string().contains("t.runs.jsonl"), "{e}");
}

#[test]
fn missing_manifest_is_no_runs() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_runs(&dir.path().join("none.runs.jsonl"))
        .unwrap()
        .is_empty());
}

#[test]
fn rollout_run_id_round_trips_and_legacy_lines_load() {
    let r = rollout(Some("20261128-abcd0123"));
    let line = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Rollout>(&line).unwrap(), r);
    let legacy = serde_json::to_string(&rollout(None)).unwrap();
    assert!(!legacy.contains("\"run\""));
    let back: Rollout = serde_json::from_str(&legacy).unwrap();
    assert_eq!(run_of(&back), LEGACY_RUN);
}

#[test]
fn pooling_excludes_other_model_and_token_cap_unless_asked() {
    let main = record("m", 256);
    let same = record("m", 256);
    let other_model = record("n", 256);
    let other_cap = record("m", 64);
    let runs = vec![
        main.clone(),
        same.clone(),
        other_model.clone(),
        other_cap.clone(),
    ];
    let mut rollouts = vec![rollout(Some(&main.id)); 3];
    rollouts.push(rollout(Some(&same.id)));
    rollouts.push(rollout(Some(&other_model.id)));
    rollouts.push(rollout(Some(&other_cap.id)));

    let p = pool(&rollouts, &runs, PoolMode::Matching);
    assert_eq!(p.reference.as_deref(), Some(main.id.as_str()));
    assert_eq!(p.filter(&rollouts).len(), 4);
    let reasons: Vec<&str> = p.excluded.iter().map(|(_, _, w)| w.as_str()).collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&"other model") && reasons.contains(&"other token cap"));
    assert_eq!(
        p.summary(),
        "pooled runs: 2 of 4 (1 excluded: other model, 1 excluded: other token cap)"
    );

    let all = pool(&rollouts, &runs, PoolMode::All);
    assert_eq!(all.filter(&rollouts).len(), 6);
    assert!(all.excluded.is_empty());
    assert!(all.summary().contains("mixing all runs"));
}

#[test]
fn legacy_rollouts_form_their_own_run() {
    let known = record("m", 256);
    let mut rollouts = vec![rollout(None); 2];
    rollouts.push(rollout(Some(&known.id)));
    let p = pool(&rollouts, std::slice::from_ref(&known), PoolMode::Matching);
    assert_eq!(p.reference.as_deref(), Some(LEGACY_RUN));
    assert_eq!(p.filter(&rollouts).len(), 2);
    assert_eq!(p.excluded[0].2, "unknown settings");
}

#[test]
fn utc_dates() {
    assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(utc_date(1_798_761_599), "2026-12-31T23:59:59Z");
}

#[test]
fn arrivals_agree_with_deciding_the_pool_again() {
    let main = record("m", 256);
    let other = record("n", 256);
    let runs = vec![main.clone(), other.clone()];
    let mut rollouts = vec![rollout(Some(&main.id)); 3];
    rollouts.push(rollout(Some(&other.id)));
    let mut p = pool(&rollouts, &runs, PoolMode::Matching);

    // The reference run grows: counted, and the pool is what deciding it again gives.
    let more = rollout(Some(&main.id));
    assert_eq!(p.arrive(&more), Arrival::Counted);
    rollouts.push(more);
    assert_eq!(p, pool(&rollouts, &runs, PoolMode::Matching));

    // The other model's run grows but stays smaller: left out, same pool.
    let theirs = rollout(Some(&other.id));
    assert_eq!(p.arrive(&theirs), Arrival::LeftOut);
    rollouts.push(theirs);
    assert_eq!(p, pool(&rollouts, &runs, PoolMode::Matching));

    // It catches up (ties go to the earlier id): once it would become the reference, the
    // pool must be decided again.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let r = rollout(Some(&other.id));
        answers.push(p.arrive(&r));
        rollouts.push(r);
    }
    assert_eq!(answers.last(), Some(&Arrival::Redecide));
    assert_ne!(
        pool(&rollouts, &runs, PoolMode::Matching)
            .reference
            .as_deref(),
        Some(main.id.as_str())
    );

    // A run never seen: decide again.
    let fresh = record("m", 256);
    assert_eq!(p.arrive(&rollout(Some(&fresh.id))), Arrival::Redecide);
}

#[test]
fn a_continued_run_keeps_the_settings_adds_the_note_and_pools() {
    let first = record("m", 64);
    let next = first.continued("one continuation per request from here on".into());
    assert_ne!(next.id, first.id);
    assert_eq!(next.notes, ["one continuation per request from here on"]);
    assert!(first.notes.is_empty(), "the first record is left as it was");
    assert_eq!(
        next.difference(&first),
        None,
        "same settings: the runs pool"
    );
    // Notes round-trip through the manifest; records without notes write no field.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("t.runs.jsonl");
    append_run(&manifest, &first).unwrap();
    append_run(&manifest, &next).unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(text.matches("\"notes\"").count(), 1, "{text}");
    assert_eq!(read_runs(&manifest).unwrap(), vec![first, next]);
}

#[test]
fn new_rollouts_take_the_reference_runs_settings_else_the_traces() {
    let base = crate::trace::SamplerSettings {
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: 300,
    };
    let big = record("m", 256);
    let small = record("m", 64);
    let mut rollouts: Vec<Rollout> = (0..3).map(|_| rollout(Some(&big.id))).collect();
    rollouts.push(rollout(Some(&small.id)));
    let runs = [big.clone(), small];
    let chosen = pool(&rollouts, &runs, PoolMode::Matching);
    let s = reference_sampler(&chosen, &runs, base.clone());
    // The run holding most rollouts, its f32 settings read back as written.
    assert_eq!((s.temperature, s.top_p, s.max_new_tokens), (0.6, 0.95, 256));
    // No rollouts, or a reference without a record (legacy rollouts): the trace's settings.
    assert_eq!(
        reference_sampler(&pool(&[], &runs, PoolMode::Matching), &runs, base.clone()),
        base
    );
    let legacy = [rollout(None)];
    assert_eq!(
        reference_sampler(
            &pool(&legacy, &runs, PoolMode::Matching),
            &runs,
            base.clone()
        ),
        base
    );
}
