//! The worker on the real default model (SmolLM2-135M-Instruct GGUF), when its file is present:
//! reproducible seeds, top-up, store == events, context overflow reported per position.
//! Skipped with a note when the file is absent (CI has no downloads); the model is looked up
//! via ANCHORSCOPE_MODEL, then the install cache, then /tmp/models.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anchorscope::behavior::BehaviorSet;
use anchorscope::engine::worker::{run_job, Inbox, JobContext, LmGenerator};
use anchorscope::engine::{device, EngineEvent, Job};
use anchorscope::store::read_rollouts;
use anchorscope::trace::split::SplitOptions;
use anchorscope::trace::{Rollout, SamplerSettings, Trace};

use crate::real::model as model_path;

/// Load the real model found by `model_path`.
fn load(path: &Path) -> Option<LmGenerator> {
    let device = device::select("cpu").unwrap();
    Some(LmGenerator::load(path, &device).unwrap_or_else(|e| panic!("{e}")))
}

fn sample_trace() -> Trace {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces/example-free-tier-complies.json");
    let mut outcome = anchorscope::loaded::load_path(&p, &SplitOptions::default()).unwrap();
    let trace = outcome.traces.remove(0).trace;
    assert!(
        trace.sentences.len() > 10,
        "the sample is split into sentences"
    );
    trace
}

fn run(
    generator: &mut LmGenerator,
    trace: &Trace,
    store: &Path,
    positions: Vec<usize>,
    n: usize,
    sampler: SamplerSettings,
) -> Vec<EngineEvent> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = events.clone();
        move |e: EngineEvent| events.lock().unwrap().push(e)
    };
    let job = Job {
        id: 1,
        trace: Arc::new(trace.clone()),
        store_path: store.to_path_buf(),
        positions,
        n,
        sampler,
        adaptive: None,
    };
    let ctx = JobContext {
        behaviors: BehaviorSet::builtin(),
        split: SplitOptions::default(),
        early_stop: true,
    };
    let (_tx, rx) = mpsc::channel();
    let mut inbox = Inbox::new(rx);
    run_job(&job, generator, None, &ctx, &mut inbox, &sink);
    let out = events.lock().unwrap().clone();
    out
}

fn rollouts(events: &[EngineEvent]) -> Vec<Rollout> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Rollout { rollout, .. } => Some((**rollout).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn real_model_rollouts_are_reproducible_topped_up_and_stored() {
    let Some(path) = model_path() else { return };
    let Some(mut generator) = load(&path) else {
        return;
    };
    let trace = sample_trace();
    let sampler = SamplerSettings {
        max_new_tokens: 6,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();

    let a = dir.path().join("a.jsonl");
    let first = rollouts(&run(
        &mut generator,
        &trace,
        &a,
        vec![5, 16],
        2,
        sampler.clone(),
    ));
    assert_eq!(first.len(), 4);
    assert_eq!(read_rollouts(&a).unwrap().0, first, "store == events");
    for r in &first {
        assert!(r.tokens >= 1 && r.tokens <= 6, "{r:?}");
        assert!(!r.text.is_empty() || r.tokens == 1, "{r:?}");
    }
    // Same seeds in a fresh store: the same text (the cache of another trace in between).
    let b = dir.path().join("b.jsonl");
    let again = rollouts(&run(
        &mut generator,
        &trace,
        &b,
        vec![5, 16],
        2,
        sampler.clone(),
    ));
    let key = |rs: &[Rollout]| {
        let mut v: Vec<(u64, String)> = rs.iter().map(|r| (r.seed, r.text.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(key(&first), key(&again));
    // Top-up to 3 at position 5: one more, a new seed.
    let more = rollouts(&run(&mut generator, &trace, &a, vec![5], 3, sampler));
    assert_eq!(more.len(), 1);
    assert!(first.iter().all(|r| r.seed != more[0].seed));
}

#[test]
fn real_model_context_overflow_is_reported_per_position() {
    let Some(path) = model_path() else { return };
    let Some(mut generator) = load(&path) else {
        return;
    };
    let context = generator.lm.info().max_context;
    let trace = sample_trace();
    let dir = tempfile::tempdir().unwrap();
    let sampler = SamplerSettings {
        max_new_tokens: context as u32,
        ..Default::default()
    };
    let events = run(
        &mut generator,
        &trace,
        &dir.path().join("s.jsonl"),
        vec![0, 1],
        1,
        sampler,
    );
    let errors: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Error { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "{events:?}");
    assert!(
        errors
            .iter()
            .all(|m| m.contains("exceeds the model's context")),
        "{errors:?}"
    );
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Finished {
            job: 1,
            cancelled: false
        })
    );
}

#[test]
fn real_model_greedy_rollouts_are_the_same_with_and_without_prefix_reuse() {
    let Some(path) = model_path() else { return };
    let Some(mut generator) = load(&path) else {
        return;
    };
    let trace = sample_trace();
    let greedy = SamplerSettings {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens: 5,
    };
    let dir = tempfile::tempdir().unwrap();
    // Early positions keep the from-scratch prefills short.
    let positions = vec![0, 1, 2];
    let cached = rollouts(&run(
        &mut generator,
        &trace,
        &dir.path().join("a.jsonl"),
        positions.clone(),
        1,
        greedy.clone(),
    ));
    generator.prefix_reuse = false;
    let scratch = rollouts(&run(
        &mut generator,
        &trace,
        &dir.path().join("b.jsonl"),
        positions,
        1,
        greedy,
    ));
    assert_eq!(cached.len(), 3);
    let texts = |rs: &[Rollout]| {
        rs.iter()
            .map(|r| (r.position, r.text.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&cached), texts(&scratch));
}
