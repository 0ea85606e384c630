//! Job logic with the deterministic test double (no model): top-up and seed indices, cancel,
//! latest-wins, store == events, progress totals, labels, similarity, early stop, errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use super::test_double::{LetterEmbedder, ScriptedGenerator};
use super::*;
use crate::sampler::rollout_seed;
use crate::{Job, JobId};
use anchorscope_core::behavior::UserBehaviorSpec;
use anchorscope_core::store::{read_rollouts, RolloutWriter};
use anchorscope_core::trace::split::split_response;
use anchorscope_core::trace::{FinishReason, LabelValue, Message, Rollout, SamplerSettings, Trace};

fn trace() -> Trace {
    let response = "<SCRATCHPAD_REASONING>I am on the free tier. I think about it carefully. \
                    I decide now.</SCRATCHPAD_REASONING>\n<OUTPUT><rejected/></OUTPUT>";
    let mut t = Trace::new(
        "t1",
        vec![Message::new("system", "s"), Message::new("user", "q")],
        response,
    );
    t.sentences = split_response(&t.response, &SplitOptions::default());
    assert_eq!(t.sentences.len(), 3, "fixture has three sentences");
    t
}

fn job(id: JobId, store: &Path, positions: Vec<usize>, n: usize) -> Job {
    Job {
        id,
        trace: Arc::new(trace()),
        store_path: store.to_path_buf(),
        positions,
        n,
        sampler: SamplerSettings::default(),
        adaptive: None,
    }
}

fn ctx(behaviors: BehaviorsConfig) -> JobContext {
    JobContext {
        behaviors: BehaviorSet::with_user(&behaviors).unwrap(),
        split: SplitOptions::default(),
        early_stop: true,
    }
}

/// Collects events; optionally sends a command when the k-th rollout event arrives.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<EngineEvent>>>,
}

impl Recorder {
    fn all(&self) -> Vec<EngineEvent> {
        self.events.lock().unwrap().clone()
    }
    fn rollouts(&self, job: JobId) -> Vec<Rollout> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                EngineEvent::Rollout { job: j, rollout } if j == job => Some(*rollout),
                _ => None,
            })
            .collect()
    }
    fn sink(
        &self,
        on_rollout: Option<(usize, Sender<EngineCommand>, EngineCommand)>,
    ) -> impl Fn(EngineEvent) + Send + 'static {
        let events = self.events.clone();
        move |e: EngineEvent| {
            let mut all = events.lock().unwrap();
            all.push(e);
            if let Some((k, tx, command)) = &on_rollout {
                let n = all
                    .iter()
                    .filter(|e| matches!(e, EngineEvent::Rollout { .. }))
                    .count();
                if n == *k && matches!(all.last(), Some(EngineEvent::Rollout { .. })) {
                    tx.send(command.clone()).unwrap();
                }
            }
        }
    }
}

fn run(
    job: &Job,
    generator: &mut ScriptedGenerator,
    embed: bool,
    ctx: &JobContext,
    rec: &Recorder,
) -> bool {
    let (_tx, rx) = mpsc::channel();
    let mut inbox = Inbox::new(rx);
    let sink = rec.sink(None);
    let mut letters = LetterEmbedder;
    let embedder: Option<&mut (dyn Embedder + 'static)> =
        if embed { Some(&mut letters) } else { None };
    run_job(job, generator, embedder, ctx, &mut inbox, &sink)
}

fn stored(path: &Path) -> Vec<Rollout> {
    let (rollouts, warnings) = read_rollouts(path).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    rollouts
}

#[test]
fn fills_every_position_and_store_matches_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let rec = Recorder::default();
    let j = job(1, &store, vec![0, 3], 4);
    let cancelled = run(
        &j,
        &mut ScriptedGenerator::default(),
        true,
        &ctx(Default::default()),
        &rec,
    );
    assert!(!cancelled);
    let events = rec.all();
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Finished {
            job: 1,
            cancelled: false
        })
    );
    let reported = rec.rollouts(1);
    assert_eq!(reported.len(), 8);
    assert_eq!(
        stored(&store),
        reported,
        "store lines == Rollout events, in order"
    );
    // Seeds are indices 0..4 at each position.
    for p in [0, 3] {
        let mut seeds: Vec<u64> = reported
            .iter()
            .filter(|r| r.position == p)
            .map(|r| r.seed)
            .collect();
        seeds.sort();
        let mut want: Vec<u64> = (0..4).map(|i| rollout_seed("t1", p, i)).collect();
        want.sort();
        assert_eq!(seeds, want, "position {p}");
    }
    // Progress: first 0/8, last 8/8, done never decreases.
    let progress: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Progress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(progress.first(), Some(&(0, 8)));
    assert_eq!(progress.last(), Some(&(8, 8)));
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0));
    // Labels follow the script; similarity only where S_i exists.
    for r in &reported {
        let want = if r.seed % 2 == 0 {
            LabelValue::Yes
        } else {
            LabelValue::No
        };
        assert_eq!(r.label("compliance"), Some(want), "{r:?}");
        assert!(r.labels.contains_key("alignment_faking"));
        assert!(
            r.replacement.starts_with("Replacement "),
            "{:?}",
            r.replacement
        );
        assert_eq!(r.similarity.is_some(), r.position == 0, "{r:?}");
        // Stopped as soon as the compliance tag was written: the rest was never generated.
        assert_eq!(r.finish, FinishReason::Decided);
        assert!(!r.text.contains("tail"), "{:?}", r.text);
    }
}

#[test]
fn top_up_uses_new_indices_and_rerun_samples_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let c = ctx(Default::default());
    run(
        &job(1, &store, vec![1], 3),
        &mut ScriptedGenerator::default(),
        false,
        &c,
        &Recorder::default(),
    );
    let first: Vec<u64> = stored(&store).iter().map(|r| r.seed).collect();
    assert_eq!(first.len(), 3);

    // Ask for 5: two more, with indices 3 and 4; the explorer's stale count is ignored.
    let rec = Recorder::default();
    let more = job(2, &store, vec![1], 5);
    run(&more, &mut ScriptedGenerator::default(), false, &c, &rec);
    let new: Vec<u64> = rec.rollouts(2).iter().map(|r| r.seed).collect();
    let mut want = vec![rollout_seed("t1", 1, 3), rollout_seed("t1", 1, 4)];
    let mut got = new.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(new.iter().all(|s| !first.contains(s)));
    assert_eq!(stored(&store).len(), 5);

    // Same request again: nothing to do, total 0.
    let rec = Recorder::default();
    run(
        &job(3, &store, vec![1], 5),
        &mut ScriptedGenerator::default(),
        false,
        &c,
        &rec,
    );
    assert!(rec.rollouts(3).is_empty());
    assert_eq!(
        rec.all(),
        vec![
            EngineEvent::Progress {
                job: 3,
                done: 0,
                total: 0,
                tokens_per_s: 0.0
            },
            EngineEvent::Finished {
                job: 3,
                cancelled: false
            }
        ]
    );
    assert_eq!(stored(&store).len(), 5);
}

#[test]
fn seeds_already_stored_are_skipped_even_when_counts_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    // A store holding index 1's seed only (e.g. index 0 was lost): count 1, so the plan starts
    // at index 1 — whose seed exists — and must skip it.
    let mut w = RolloutWriter::open(&store).unwrap();
    let mut r = Rollout {
        position: 2,
        seed: rollout_seed("t1", 2, 1),
        replacement: String::new(),
        text: String::new(),
        tokens: 0,
        finish: FinishReason::Stop,
        labels: BTreeMap::new(),
        similarity: None,
        run: None,
        recurrence: None,
    };
    w.append(&r).unwrap();
    r.seed = 99;
    drop(w);
    let rec = Recorder::default();
    run(
        &job(1, &store, vec![2], 3),
        &mut ScriptedGenerator::default(),
        false,
        &ctx(Default::default()),
        &rec,
    );
    let seeds: Vec<u64> = stored(&store).iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), 3);
    let unique: std::collections::HashSet<_> = seeds.iter().collect();
    assert_eq!(unique.len(), 3, "no seed twice: {seeds:?}");
}

#[test]
fn cancel_mid_job_leaves_a_valid_store_and_nothing_after_finished() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let (tx, rx) = mpsc::channel();
    let mut inbox = Inbox::new(rx);
    let rec = Recorder::default();
    let sink = rec.sink(Some((3, tx.clone(), EngineCommand::Cancel(7))));
    let j = job(7, &store, vec![0, 1, 2, 3], 6);
    let mut generator = ScriptedGenerator::default();
    let cancelled = run_job(
        &j,
        &mut generator,
        None,
        &ctx(Default::default()),
        &mut inbox,
        &sink,
    );
    assert!(cancelled);
    let events = rec.all();
    let end = events
        .iter()
        .position(|e| matches!(e, EngineEvent::Finished { .. }))
        .unwrap();
    assert_eq!(end, events.len() - 1, "Finished is the last event");
    assert_eq!(
        events[end],
        EngineEvent::Finished {
            job: 7,
            cancelled: true
        }
    );
    let reported = rec.rollouts(7);
    // Rows finishing in the same step as the third are kept; the job stops at the next step.
    assert!(
        reported.len() >= 3 && reported.len() < 24,
        "{}",
        reported.len()
    );
    assert!(
        reported.iter().all(|r| r.position == 0),
        "stopped within the first position"
    );
    assert_eq!(
        stored(&store),
        reported,
        "every stored line parses and was reported"
    );
}

#[test]
fn worker_thread_latest_submit_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let rec = Recorder::default();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    // The loader waits until both jobs are queued, so the order of events is fixed.
    let handle = spawn_with(
        move |status: &mut dyn FnMut(EngineStatus)| {
            go_rx.recv().unwrap();
            status(EngineStatus::Ready("scripted test double".into()));
            Ok((
                Box::new(ScriptedGenerator::default()) as Box<dyn Generator>,
                None,
            ))
        },
        WorkerConfig::default(),
        rec.sink(None),
    );
    handle
        .sender
        .send(EngineCommand::Submit(job(1, &store, vec![0, 1, 2, 3], 50)))
        .unwrap();
    handle
        .sender
        .send(EngineCommand::Submit(job(2, &store, vec![3], 2)))
        .unwrap();
    go_tx.send(()).unwrap();
    // Wait for job 2 to finish, then shut down.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !rec.all().contains(&EngineEvent::Finished {
        job: 2,
        cancelled: false,
    }) {
        assert!(std::time::Instant::now() < deadline, "{:?}", rec.all());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    handle.shutdown();
    let events = rec.all();
    assert_eq!(
        events.first(),
        Some(&EngineEvent::Status(EngineStatus::Ready(
            "scripted test double".into()
        )))
    );
    assert!(events.contains(&EngineEvent::Finished {
        job: 1,
        cancelled: true
    }));
    assert!(
        rec.rollouts(1).is_empty(),
        "job 1 was superseded before its first step"
    );
    assert_eq!(rec.rollouts(2).len(), 2);
    assert_eq!(stored(&store).len(), 2);
}

#[test]
fn load_error_is_reported_and_jobs_answer_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let handle = spawn_with(
        |_status: &mut dyn FnMut(EngineStatus)| {
            Err(EngineError::Model {
                path: "/no/model.gguf".into(),
                message: "no such file".into(),
            })
        },
        WorkerConfig::default(),
        rec.sink(None),
    );
    handle
        .sender
        .send(EngineCommand::Submit(job(
            4,
            &dir.path().join("s.jsonl"),
            vec![0],
            2,
        )))
        .unwrap();
    handle.shutdown();
    let events = rec.all();
    let EngineEvent::Status(state @ EngineStatus::Unavailable(why)) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(state.is_error());
    assert!(
        why.contains("/no/model.gguf") && why.contains("no such file"),
        "{why}"
    );
    assert!(
        matches!(&events[1], EngineEvent::Error { job: 4, message } if message.contains("/no/model.gguf"))
    );
    assert_eq!(
        events[2],
        EngineEvent::Finished {
            job: 4,
            cancelled: false
        }
    );
    assert!(!dir.path().join("s.jsonl").exists(), "nothing written");
}

#[test]
fn a_failing_position_is_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let rec = Recorder::default();
    let mut generator = ScriptedGenerator {
        fail_position: Some(1),
        ..Default::default()
    };
    run(
        &job(1, &store, vec![0, 1, 2, 9], 2),
        &mut generator,
        false,
        &ctx(Default::default()),
        &rec,
    );
    let errors: Vec<String> = rec
        .all()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Error { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("position 9") && errors[0].contains("0..=3"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("position 1:") && errors[1].contains("context"),
        "{errors:?}"
    );
    let positions: Vec<usize> = stored(&store).iter().map(|r| r.position).collect();
    assert_eq!(positions.iter().filter(|&&p| p == 0).count(), 2);
    assert_eq!(positions.iter().filter(|&&p| p == 2).count(), 2);
    assert!(!positions.contains(&1));
}

#[test]
fn user_output_patterns_disable_early_stop_and_token_cap_gives_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let behaviors = BehaviorsConfig {
        behaviors: vec![UserBehaviorSpec {
            name: "says_tail".into(),
            output: vec!["tail".into()],
            ..Default::default()
        }],
    };
    let rec = Recorder::default();
    run(
        &job(1, &store, vec![0], 3),
        &mut ScriptedGenerator::default(),
        false,
        &ctx(behaviors.clone()),
        &rec,
    );
    for r in rec.rollouts(1) {
        assert_eq!(r.finish, FinishReason::Stop, "{r:?}");
        assert!(r.text.ends_with("tail </OUTPUT>"), "{:?}", r.text);
        assert_eq!(r.label("says_tail"), Some(LabelValue::Yes));
    }
    let rec = Recorder::default();
    let mut capped = job(2, &dir.path().join("b.jsonl"), vec![0], 2);
    capped.sampler.max_new_tokens = 2;
    run(
        &capped,
        &mut ScriptedGenerator::default(),
        false,
        &ctx(behaviors),
        &rec,
    );
    for r in rec.rollouts(2) {
        assert_eq!((r.finish, r.tokens), (FinishReason::Length, 2), "{r:?}");
        assert_eq!(r.label("compliance"), Some(LabelValue::Invalid));
    }
}

#[test]
fn unwritable_store_is_an_error_and_nothing_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("missing-dir/t.rollouts.jsonl");
    let rec = Recorder::default();
    run(
        &job(1, &store, vec![0], 2),
        &mut ScriptedGenerator::default(),
        false,
        &ctx(Default::default()),
        &rec,
    );
    assert!(rec.rollouts(1).is_empty());
    assert!(rec.all().iter().any(
        |e| matches!(e, EngineEvent::Error { message, .. } if message.contains("missing-dir"))
    ));
    assert_eq!(
        rec.all().last(),
        Some(&EngineEvent::Finished {
            job: 1,
            cancelled: false
        })
    );
}

#[test]
fn model_choice_parses_default_names_and_paths() {
    assert_eq!(ModelChoice::parse("default"), ModelChoice::Default);
    assert_eq!(
        ModelChoice::parse("m.gguf"),
        ModelChoice::Path("m.gguf".into())
    );
    for name in crate::install::MODEL_NAMES {
        assert_eq!(ModelChoice::parse(name), ModelChoice::Named(name.into()));
    }
    // A name that is not quite a known one is a path (and fails to load as one, naming it).
    assert_eq!(
        ModelChoice::parse("./qwen2.5-0.5b"),
        ModelChoice::Path("./qwen2.5-0.5b".into())
    );
    assert_eq!(ModelChoice::parse("qwen2.5-0.5b").label(), "qwen2.5-0.5b");
    assert_eq!(ModelChoice::Default.label(), "default model");
}

#[test]
fn a_panic_in_the_generator_is_reported_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let rec = Recorder::default();
    let handle = spawn_with(
        |_status: &mut dyn FnMut(EngineStatus)| {
            let g = ScriptedGenerator {
                panic_position: Some(1),
                ..Default::default()
            };
            Ok((Box::new(g) as Box<dyn Generator>, None))
        },
        WorkerConfig::default(),
        rec.sink(None),
    );
    let wait_for = |id: JobId| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !rec
            .all()
            .iter()
            .any(|e| matches!(e, EngineEvent::Finished { job, .. } if *job == id))
        {
            assert!(std::time::Instant::now() < deadline, "{:?}", rec.all());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    handle
        .sender
        .send(EngineCommand::Submit(job(1, &store, vec![1], 2)))
        .unwrap();
    wait_for(1);
    handle
        .sender
        .send(EngineCommand::Submit(job(2, &store, vec![0], 2)))
        .unwrap();
    wait_for(2);
    handle.shutdown();
    let events = rec.all();
    assert!(
        events.iter().any(|e| matches!(e,
            EngineEvent::Error { job: 1, message } if message.contains("scripted panic at position 1"))),
        "{events:?}"
    );
    assert!(events.contains(&EngineEvent::Finished {
        job: 1,
        cancelled: false
    }));
    assert!(events.contains(&EngineEvent::Finished {
        job: 2,
        cancelled: false
    }));
    assert_eq!(rec.rollouts(2).len(), 2);
}

#[test]
fn each_job_records_its_run_before_its_rollouts_and_tags_them() {
    use anchorscope_core::store::runs::{read_runs, runs_path_for};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.rollouts.jsonl");
    let rec = Recorder::default();
    let context = ctx(Default::default());
    run(
        &job(1, &store, vec![0], 2),
        &mut ScriptedGenerator::default(),
        false,
        &context,
        &rec,
    );
    let manifest = runs_path_for(&store);
    let first_manifest = std::fs::read_to_string(&manifest).unwrap();
    run(
        &job(2, &store, vec![0], 4),
        &mut ScriptedGenerator::default(),
        false,
        &context,
        &rec,
    );
    let runs = read_runs(&manifest).unwrap();
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0].id, runs[1].id);
    assert!(
        std::fs::read_to_string(&manifest)
            .unwrap()
            .starts_with(&first_manifest),
        "the first record was rewritten"
    );
    assert_eq!(
        runs[0].max_tokens,
        Some(SamplerSettings::default().max_new_tokens)
    );
    assert!(runs[0].classifiers.contains_key("compliance"));
    let rollouts = stored(&store);
    assert_eq!(rollouts.len(), 4);
    for (r, want) in rollouts.iter().zip([0, 0, 1, 1]) {
        assert_eq!(r.run.as_deref(), Some(runs[want].id.as_str()), "{r:?}");
    }
}

mod adaptive;

/// A job on a trace derived by deleting S_i records, on each rollout, how close its reasoning
/// comes to S_i (resilience); other jobs record nothing, and without an embedder nothing.
#[test]
fn a_deletion_records_how_close_each_rollout_comes_to_the_deleted_sentence() {
    use anchorscope_core::trace::intervention::{derive, reasoning_sentences, Edit};
    let dir = tempfile::tempdir().unwrap();
    let parent = trace();
    let derived = derive(&parent, Edit::Delete { sentence: 1 }).unwrap();
    let deleted = parent.sentences[1].text.clone();
    let store = dir.path().join("d.rollouts.jsonl");
    let mut j = job(1, &store, vec![1], 4);
    j.trace = Arc::new(derived);
    let c = ctx(Default::default());
    run(
        &j,
        &mut ScriptedGenerator::default(),
        true,
        &c,
        &Recorder::default(),
    );
    let rollouts = stored(&store);
    assert_eq!(rollouts.len(), 4);
    let mut letters = LetterEmbedder;
    let target = letters.embed(&[deleted.as_str()]).unwrap().pop().unwrap();
    for r in &rollouts {
        let sentences = reasoning_sentences(&r.text, &c.split);
        assert!(!sentences.is_empty(), "{:?}", r.text);
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let want = letters
            .embed(&texts)
            .unwrap()
            .iter()
            .map(|v| crate::embed::cosine(v, &target))
            .fold(f32::MIN, f32::max);
        assert_eq!(r.recurrence, Some(want), "{r:?}");
    }
    // The parent's own job, and the deletion without an embedder, record none.
    let plain = dir.path().join("p.rollouts.jsonl");
    run(
        &job(2, &plain, vec![1], 2),
        &mut ScriptedGenerator::default(),
        true,
        &c,
        &Recorder::default(),
    );
    assert!(stored(&plain).iter().all(|r| r.recurrence.is_none()));
    let bare = dir.path().join("b.rollouts.jsonl");
    let mut k = job(3, &bare, vec![1], 2);
    k.trace = j.trace.clone();
    run(
        &k,
        &mut ScriptedGenerator::default(),
        false,
        &c,
        &Recorder::default(),
    );
    assert!(stored(&bare).iter().all(|r| r.recurrence.is_none()));
}
