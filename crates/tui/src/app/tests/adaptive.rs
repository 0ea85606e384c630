//! Adaptive sweeps from the explorer: which keys submit them with which plan, and how their
//! decisions show (TestBackend snapshots of the text pane, detail pane and status line).
//! The progress fed here is TEST DATA, not a policy's output.

use std::sync::mpsc;

use super::*;
use anchorscope_core::analysis::adaptive::{AdaptiveSettings, Resolution, SentenceState};
use anchorscope_core::trace::{ImportedMetrics, ImportedSentenceMetrics};
use anchorscope_engine::{AdaptiveProgress, Job, ModelIdentity};

/// Settings unlike the defaults, so a test sees they were passed on, not made up.
fn settings() -> AdaptiveSettings {
    AdaptiveSettings {
        n_max: 40,
        round: 8,
        min_effect: 0.15,
        ..Default::default()
    }
}

fn config(adaptive: bool) -> ExplorerSettings {
    let mut config = ExplorerSettings::default();
    config.sampling.adaptive = adaptive;
    config.sampling.adaptive_settings = settings();
    config.analysis.similarity_threshold = 0.65;
    config
}

fn app_with(t: Trace, config: &ExplorerSettings) -> (App, mpsc::Receiver<EngineCommand>) {
    let outcome = LoadOutcome {
        traces: vec![loaded(t, Vec::new())],
        errors: Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let app = App::new(outcome, config).unwrap().with_engine(Box::new(tx));
    (app, rx)
}

fn submitted(rx: &mpsc::Receiver<EngineCommand>) -> Job {
    match rx.try_recv() {
        Ok(EngineCommand::Submit(job)) => job,
        other => panic!("expected a submit, got {other:?}"),
    }
}

/// Four sentences: one decided significant, one still sampling, one futile, one waiting; 60
/// of a fixed 200 rollouts spent after 3 rounds.
fn progress() -> AdaptiveProgress {
    let sentences = vec![
        SentenceState::Resolved(Resolution::Significant { delta: 0.32, n: 40 }),
        SentenceState::Sampling,
        SentenceState::Resolved(Resolution::Futile),
        SentenceState::Waiting,
    ];
    let mut p = crate::adaptive::tests::progress(sentences, 60, 200, 3);
    p.notes = vec!["no embedder: resampling importance decides".into()];
    p
}

#[test]
fn a_submits_an_adaptive_sweep_with_the_configured_plan() {
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(false));
    let shown = app.behavior_name();
    feed(&mut app, [key('A')]);
    let job = submitted(&rx);
    let plan = job
        .adaptive
        .clone()
        .expect("A is adaptive whatever the config");
    assert_eq!(plan.settings, settings());
    assert_eq!(plan.behavior, shown);
    assert_eq!(plan.similarity_threshold, 0.65);
    assert_eq!(job.positions, (0..=4).collect::<Vec<_>>());
    // `n` is ignored by the worker; n_max keeps the queue's "at most" counts true.
    assert_eq!(job.n, 40);
    let listing = app.jobs.listing();
    assert_eq!(
        listing[0].2,
        format!("adaptive sweep of t1: n_max 40, round 8 · {shown}")
    );
    let status = app.status.clone().unwrap().text;
    assert_eq!(
        status,
        format!("adaptive sweep on `{shown}` (n_max 40, round 8)…")
    );
}

#[test]
fn r_sweeps_adaptively_only_when_the_config_says_so() {
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(false));
    feed(&mut app, [key('R')]);
    let fixed = submitted(&rx);
    assert_eq!(
        (fixed.adaptive.clone(), fixed.n),
        (None, INTERACTIVE_ROLLOUTS)
    );
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(true));
    feed(&mut app, [key('R')]);
    let job = submitted(&rx);
    assert_eq!(job.adaptive.map(|p| p.settings), Some(settings()));
    // `r` (one sentence) stays a fixed top-up: it queues behind the sweep.
    feed(&mut app, [key('r')]);
    assert_eq!(app.jobs.queue.len(), 1);
    assert_eq!(app.jobs.queue[0].job.adaptive, None);
}

#[test]
fn settings_that_cannot_run_are_refused_before_anything_is_sent() {
    let mut config = config(true);
    config.sampling.adaptive_settings.round = 0;
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config);
    feed(&mut app, [key('A')]);
    assert!(rx.try_recv().is_err());
    let status = app.status.clone().unwrap();
    assert!(
        status.is_error && status.text.contains("round"),
        "{status:?}"
    );
}

#[test]
fn an_unlabelled_behavior_asks_first_then_the_sweep_decides_on_a_labelled_one() {
    let mut t = trace("t1", &sentences());
    // An imported behavior no configured classifier labels: it comes first and colors the
    // text.
    t.imported.push(ImportedMetrics {
        behavior: "correct".into(),
        note: "imported".into(),
        notes: Vec::new(),
        sentences: vec![ImportedSentenceMetrics::default(); 4],
    });
    t.model = Some("deepseek-r1-distill-qwen-14b".into());
    let (mut app, rx) = app_with(t, &config(false));
    assert_eq!(base_behavior(&app.behavior_name()), "correct");
    app.on_engine_event(EngineEvent::Model(ModelIdentity {
        engine: "local".into(),
        model: "/m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        sha256: None,
    }));
    feed(&mut app, [key('A')]);
    let first_labelled = app.labelable()[0].clone();
    let Some(Popup::Confirm(Confirm::Resample {
        reasons, adaptive, ..
    })) = app.popup.clone()
    else {
        panic!("expected the resample question, got {:?}", app.popup)
    };
    // Both warnings: the behavior and the other model.
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].ends_with(&format!("the adaptive sweep decides on `{first_labelled}`")),
        "{reasons:?}"
    );
    assert_eq!(adaptive.map(|p| p.behavior), Some(first_labelled.clone()));
    assert!(rx.try_recv().is_err(), "nothing sent before the answer");
    feed(&mut app, [key('y')]);
    let job = submitted(&rx);
    assert_eq!(job.adaptive.unwrap().behavior, first_labelled);
    let status = app.status.clone().unwrap().text;
    assert!(
        status.contains(&format!(
            "adaptive sweep on `{first_labelled}` (`correct` has no classifier here; n_max 40"
        )),
        "{status}"
    );
    // A "no" sends nothing.
    feed(&mut app, [key('A'), key('n')]);
    assert!(rx.try_recv().is_err());
}

#[test]
fn adaptive_progress_marks_the_sentences_and_stays_after_the_sweep() {
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(false));
    feed(&mut app, [key('A')]);
    let job = submitted(&rx);
    // Before the first look: no markers yet.
    assert!(!screen(&mut app, 120, 30).contains('◌'));
    app.on_engine_event(EngineEvent::Progress {
        job: job.id,
        done: 30,
        total: 50,
        tokens_per_s: 90.0,
    });
    app.on_engine_event(EngineEvent::Adaptive {
        job: job.id,
        progress: Box::new(progress()),
    });
    // A stale job's decisions change nothing.
    let mut stale = progress();
    stale.sentences = vec![SentenceState::Sampling; 4];
    app.on_engine_event(EngineEvent::Adaptive {
        job: job.id + 5,
        progress: Box::new(stale),
    });
    feed(&mut app, [key('j')]);
    let wide = screen(&mut app, 120, 30);
    // At 120 columns the gauge has 48: the shorter of the long labels.
    assert!(
        wide.contains("adaptive 2/4 · 60 vs 200 (70% saved)"),
        "{wide}"
    );
    assert!(wide.contains("adaptive       ◌ sampling"), "{wide}");
    insta::assert_snapshot!("adaptive_running_120x30", wide);
    // Under 120 columns the gauge is compact; the model name keeps its room.
    let narrow = screen(&mut app, 80, 24);
    assert!(narrow.contains("2/4 · 70% saved"), "{narrow}");
    insta::assert_snapshot!("adaptive_running_80x24", narrow);

    let mut last = progress();
    let mut states = last.sentences.clone();
    states[1] = SentenceState::Resolved(Resolution::Precise { delta: 0.01 });
    states[3] = SentenceState::Resolved(Resolution::Exhausted);
    last = AdaptiveProgress {
        notes: last.notes,
        ..crate::adaptive::tests::progress(states, 150, 200, 5)
    };
    app.on_engine_event(EngineEvent::Adaptive {
        job: job.id,
        progress: Box::new(last),
    });
    app.on_engine_event(EngineEvent::Finished {
        job: job.id,
        cancelled: false,
    });
    assert_eq!(
        app.status.clone().unwrap().text,
        "adaptive sweep finished: 4/4 sentences resolved · 150 rollouts vs 200 fixed (25% saved)"
    );
    feed(&mut app, [key('j'), key('j')]);
    let after = screen(&mut app, 120, 30);
    assert!(after.contains("✓ at n_max (40) without a"), "{after}");
    insta::assert_snapshot!("adaptive_finished_120x30", after);
}

#[test]
fn a_cancelled_sweep_says_what_it_decided_and_leaves_the_rest_undecided() {
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(false));
    feed(&mut app, [key('A')]);
    let job = submitted(&rx);
    app.on_engine_event(EngineEvent::Adaptive {
        job: job.id,
        progress: Box::new(progress()),
    });
    app.on_engine_event(EngineEvent::Finished {
        job: job.id,
        cancelled: true,
    });
    let status = app.status.clone().unwrap().text;
    assert!(
        status.starts_with("adaptive sweep cancelled: 2/4 sentences resolved"),
        "{status}"
    );
    feed(&mut app, [key('j')]);
    let t = screen(&mut app, 120, 30);
    assert!(
        t.contains("adaptive       ? undecided: the sweep ended"),
        "{t}"
    );
    assert!(t.contains("▶ 1 ? "), "the marker says it too: {t}");
}

#[test]
fn the_job_list_shows_the_sweep_with_its_saving_and_notes() {
    let (mut app, rx) = app_with(trace("t1", &sentences()), &config(false));
    feed(&mut app, [key('A'), key('r')]);
    let job = submitted(&rx);
    app.on_engine_event(EngineEvent::Adaptive {
        job: job.id,
        progress: Box::new(progress()),
    });
    feed(&mut app, [key('J')]);
    let t = screen(&mut app, 120, 30);
    assert!(
        t.contains("adaptive: 2/4 sentences resolved · 60 rollouts vs 200 fixed (70% saved)"),
        "{t}"
    );
    assert!(t.contains("note: no embedder"), "{t}");
    insta::assert_snapshot!("adaptive_job_list_120x30", t);
}

#[test]
fn the_help_says_what_r_does_under_the_config() {
    for (adaptive, says) in [
        (
            false,
            "[sampling] adaptive = false: R samples 16 at every position",
        ),
        (
            true,
            "[sampling] adaptive = true: R sweeps adaptively, as A does",
        ),
    ] {
        let (mut app, _rx) = app_with(trace("t1", &sentences()), &config(adaptive));
        feed(&mut app, [key('?'), key('G')]);
        let t = screen(&mut app, 120, 60);
        assert!(t.contains(says), "{t}");
        assert!(t.contains(Action::AdaptiveAll.describe()), "{t}");
        assert!(
            t.contains("A: n_max 40, round 8 ([sampling.adaptive_settings])"),
            "{t}"
        );
        assert!(t.contains(crate::adaptive::MARKER_LEGEND), "{t}");
    }
}
