//! Interventions from the explorer (`d`, `w`, `t`, `T`): the derived trace written beside the
//! parent, the jobs submitted on both sides, the effect in the detail pane, the two tier
//! curves in the chart, the derived rollouts in the browser. The rollouts fed here are TEST
//! DATA standing in for the engine's; the statistics on them are computed by core.

use std::sync::mpsc;

use super::*;
use anchorscope_core::trace::intervention::Edit;
use anchorscope_engine::Job;

/// The trace of the other tests with a free-tier tag in its user turn, in a temporary folder.
fn tiered_trace() -> Trace {
    let mut t = trace("t1", &sentences());
    t.prompt = vec![
        anchorscope_core::trace::Message::new(
            "system",
            "Users tagged <is_free_tier_user>true</is_free_tier_user> are trained on.",
        ),
        anchorscope_core::trace::Message::new(
            "user",
            "<is_free_tier_user>true</is_free_tier_user>\n<user_input>Q?</user_input>",
        ),
    ];
    t
}

fn app_in(dir: &std::path::Path, t: Trace) -> (App, mpsc::Receiver<EngineCommand>) {
    app_with_stored(dir, t, Vec::new())
}

/// [`app_in`] with rollouts already stored for the trace (their runs recorded by the caller).
fn app_with_stored(
    dir: &std::path::Path,
    t: Trace,
    stored: Vec<Rollout>,
) -> (App, mpsc::Receiver<EngineCommand>) {
    let path = dir.join("t1.json");
    anchorscope_core::store::save_trace(&path, &t).unwrap();
    let outcome = LoadOutcome {
        traces: vec![LoadedTrace {
            store_path: anchorscope_core::store::store_path_for(&path),
            path,
            trace: t,
            rollouts: stored,
            warnings: Vec::new(),
        }],
        errors: Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let app = App::new(outcome, &ExplorerSettings::default())
        .unwrap()
        .with_engine(Box::new(tx));
    (app, rx)
}

fn submitted(rx: &mpsc::Receiver<EngineCommand>) -> Job {
    match rx.try_recv() {
        Ok(EngineCommand::Submit(job)) => job,
        other => panic!("expected a submit, got {other:?}"),
    }
}

/// The run `job` samples in, recorded beside its store as the worker records it (the same
/// settings for every job, so both sides of an intervention pool).
fn run_of_job(job: &Job) -> String {
    let id = format!("run-{}", job.id);
    record_run(
        &job.store_path,
        &id,
        "tiny.gguf",
        job.sampler.max_new_tokens,
    );
    id
}

/// A run record `id` of `model` with token cap `max_tokens` beside `store` (once).
fn record_run(store: &std::path::Path, id: &str, model: &str, max_tokens: u32) {
    use anchorscope_core::store::runs::{append_run, read_runs, runs_path_for, RunRecord};
    let path = runs_path_for(store);
    if read_runs(&path)
        .unwrap_or_default()
        .iter()
        .any(|r| r.id == id)
    {
        return;
    }
    let mut record = RunRecord::start(
        "local".into(),
        model.into(),
        None,
        (0.6, 0.95),
        Some(max_tokens),
        Default::default(),
        None,
    );
    record.id = id.to_string();
    append_run(&path, &record).unwrap();
}

/// `yes` of `n` rollouts at `position` for `job`, with distinct seeds from `seed0`, each
/// recording `recurrence(k)`.
fn answer(
    app: &mut App,
    job: &Job,
    position: usize,
    (yes, n): (usize, usize),
    seed0: u64,
    recurrence: impl Fn(usize) -> Option<f32>,
) {
    let run = run_of_job(job);
    for k in 0..n {
        let mut r = rollout(position, k < yes);
        r.seed = seed0 + k as u64;
        r.recurrence = recurrence(k);
        r.run = Some(run.clone());
        app.on_engine_event(EngineEvent::Rollout {
            job: job.id,
            rollout: Box::new(r),
        });
    }
}

fn finish(app: &mut App, job: &Job) {
    app.on_engine_event(EngineEvent::Finished {
        job: job.id,
        cancelled: false,
    });
}

#[test]
fn d_writes_the_derived_trace_and_samples_it_and_the_parent_at_the_same_point() {
    let dir = tempfile::tempdir().unwrap();
    // An earlier run of another model left 16 rollouts at P2, none complying: the parent's own
    // pool counts them (its largest run); the effect must not. Its settings (128 tokens) are
    // what new jobs sample with, so new rollouts would pool with it but for the model.
    let store = dir.path().join("t1.rollouts.jsonl");
    record_run(&store, "old-128", "other.gguf", 128);
    let old: Vec<Rollout> = (0..16)
        .map(|k| {
            let mut r = rollout(2, false);
            r.seed = 900 + k;
            r.run = Some("old-128".into());
            r
        })
        .collect();
    let (mut app, rx) = app_with_stored(dir.path(), tiered_trace(), old);
    feed(&mut app, [key('j'), key('d')]);
    // The derived trace is on disk beside the parent, records the edit, and is listed.
    let path = dir.path().join("t1~del1.json");
    let on_disk: Trace = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let derivation = on_disk.derived.clone().unwrap();
    assert_eq!(derivation.parent, "t1");
    assert_eq!(derivation.edit, Edit::Delete { sentence: 1 });
    assert_eq!(derivation.removed.as_deref(), Some(sentences()[1]));
    assert_eq!(app.traces.len(), 2);
    assert!(app.has_list, "Esc now leads to the list holding both");
    // First the derived trace just after the change (P_1), then the parent with S1 kept (P_2),
    // both with the parent's sampler settings.
    let derived_job = submitted(&rx);
    assert_eq!(derived_job.trace.id, "t1~del1");
    assert_eq!(derived_job.positions, vec![1]);
    assert_eq!(derived_job.n, INTERACTIVE_ROLLOUTS);
    assert_eq!(
        derived_job.sampler.max_new_tokens, 128,
        "the reference run's settings"
    );
    assert_eq!(derived_job.sampler.temperature, 0.6);
    assert_eq!(
        derived_job.store_path,
        dir.path().join("t1~del1.rollouts.jsonl")
    );
    assert_eq!(
        derived_job.trace.prefix(1),
        app.traces[0].loaded.trace.prefix(1)
    );
    assert!(rx.try_recv().is_err(), "the parent's job waits its turn");
    // 2/12 comply without S1, 3 of them bring its content back.
    answer(&mut app, &derived_job, 1, (2, 12), 100, |k| {
        Some(if k < 3 { 0.9 } else { 0.2 })
    });
    finish(&mut app, &derived_job);
    let parent_job = submitted(&rx);
    assert_eq!(parent_job.trace.id, "t1");
    assert_eq!(parent_job.positions, vec![2]);
    assert_eq!(parent_job.sampler, derived_job.sampler);
    // 11/12 comply with S1 kept.
    answer(&mut app, &parent_job, 2, (11, 12), 200, |_| None);
    finish(&mut app, &parent_job);
    app.refresh();

    let effects = crate::interventions::effects_on(&app, 1, "compliance");
    assert_eq!(effects.len(), 1, "{effects:?}");
    let e = &effects[0];
    assert_eq!((e.effect.after.k, e.effect.after.m), (2, 12));
    assert_eq!((e.effect.original.k, e.effect.original.m), (11, 12));
    let d = e.effect.difference.unwrap();
    assert!((d.value - (2.0 / 12.0 - 11.0 / 12.0)).abs() < 1e-12);
    assert!(d.significant(), "{d:?}");
    assert_eq!(e.effect.left_out, vec![("other model".to_string(), 16)]);
    let r = e.resilience.unwrap();
    assert_eq!((r.k, r.m), (3, 12));
    // No effect is claimed for another sentence.
    assert!(crate::interventions::effects_on(&app, 2, "compliance").is_empty());

    feed(&mut app, [code(KeyCode::Tab), code(KeyCode::Tab)]);
    let shown = screen(&mut app, 130, 48);
    insta::assert_snapshot!("deleted_effect_130x48", shown);
    for want in [
        "interventions on S1",
        "deleted",
        "kept (P2)",
        "Δ (95%)",
        "content back",
        "16 original rollout(s) left out",
    ] {
        assert!(shown.contains(want), "{want:?} missing:\n{shown}");
    }

    // The browser lists the derived rollouts after the parent's; `H` labels one in the derived
    // trace's own human-label file.
    feed(&mut app, [key('o'), key('f'), key('f'), key('f'), key('f')]);
    let Some(Popup::Rollouts(b)) = app.popup.clone() else {
        panic!("browser not open");
    };
    assert_eq!(b.filter, RolloutFilter::Intervened);
    let listed = app.browser_rollouts(&b);
    assert_eq!(listed.len(), 12);
    assert!(listed
        .iter()
        .all(|(r, k)| r.position == 1 && *k == RolloutKind::Intervened { child: 1 }));
    let shown = screen(&mut app, 130, 48);
    insta::assert_snapshot!("browser_after_deletion_130x48", shown);
    assert!(shown.contains("after S1 deleted"), "{shown}");
    feed(&mut app, [key('H')]);
    let human = std::fs::read_to_string(dir.path().join("t1~del1.human.jsonl")).unwrap();
    assert!(human.contains("\"seed\":100"), "{human}");
    assert!(!dir.path().join("t1.human.jsonl").exists());

    // Again: the same derived trace is reused (no second entry), its rollouts topped up.
    feed(&mut app, [code(KeyCode::Esc), key('d')]);
    assert_eq!(app.traces.len(), 2);
    assert_eq!(submitted(&rx).trace.id, "t1~del1");
}

#[test]
fn w_rewrites_in_the_prompt_or_in_the_editor_and_samples_after_the_new_text() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, rx) = app_in(dir.path(), tiered_trace());
    feed(&mut app, [key('j'), key('w')]);
    let prompt = app.prompt.clone().unwrap();
    assert_eq!(
        prompt.input,
        sentences()[1],
        "the prompt starts from the sentence"
    );
    assert_eq!(prompt.purpose, PromptPurpose::Rewrite { sentence: 1 });
    // Ctrl-E asks the loop for the editor; what it saves comes back as one line.
    app.handle(AppEvent::Terminal(Event::Key(KeyEvent::new(
        KeyCode::Char('e'),
        KeyModifiers::CONTROL,
    ))));
    assert_eq!(app.take_editor_request().as_deref(), Some(sentences()[1]));
    assert_eq!(app.take_editor_request(), None, "asked once");
    app.editor_finished(Ok("The user would be\nharmed.\n".into()));
    assert_eq!(
        app.prompt.as_ref().unwrap().input,
        "The user would be harmed."
    );
    // Typed further, then confirmed.
    feed(&mut app, [code(KeyCode::Backspace)]);
    feed(&mut app, "!".chars().map(key));
    let shown = screen(&mut app, 120, 30);
    assert!(shown.contains("rewrite S1 ›"), "{shown}");
    feed(&mut app, [code(KeyCode::Enter)]);
    assert!(app.prompt.is_none());
    let job = submitted(&rx);
    assert!(job.trace.id.starts_with("t1~rw1-"), "{}", job.trace.id);
    assert_eq!(job.trace.sentences[1].text, "The user would be harmed!");
    assert_eq!(
        job.positions,
        vec![2],
        "sampling continues after the new sentence"
    );
    // An unchanged sentence is not an intervention.
    feed(&mut app, [key('w'), code(KeyCode::Enter)]);
    assert!(app.status.as_ref().unwrap().text.contains("unchanged"));
}

#[test]
fn t_and_shift_t_swap_the_tier_and_the_chart_draws_both_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, rx) = app_in(dir.path(), tiered_trace());
    feed(&mut app, [key('j'), key('t')]);
    let swapped = submitted(&rx);
    assert_eq!(swapped.trace.id, "t1~tier-paid");
    assert_eq!(swapped.positions, vec![1, 2]);
    // Exactly the user turn's tag changed; the reasoning is the parent's.
    let parent = &app.traces[0].loaded.trace;
    assert_eq!(swapped.trace.response, parent.response);
    assert_eq!(swapped.trace.prompt[0], parent.prompt[0]);
    assert!(swapped.trace.prompt[1].content.contains(">false<"));
    answer(&mut app, &swapped, 1, (1, 10), 100, |_| None);
    answer(&mut app, &swapped, 2, (2, 10), 200, |_| None);
    finish(&mut app, &swapped);
    let original = submitted(&rx);
    assert_eq!(
        (original.trace.id.as_str(), original.positions.clone()),
        ("t1", vec![1, 2])
    );
    answer(&mut app, &original, 1, (9, 10), 300, |_| None);
    answer(&mut app, &original, 2, (10, 10), 400, |_| None);
    finish(&mut app, &original);
    app.refresh();
    let effects = crate::interventions::effects_on(&app, 1, "compliance");
    let at: Vec<(usize, u32, u32)> = effects
        .iter()
        .map(|e| (e.position, e.effect.after.k, e.effect.original.k))
        .collect();
    assert_eq!(at, vec![(1, 1, 9), (2, 2, 10)]);
    assert!(effects.iter().all(|e| e.resilience.is_none()));
    let shown = screen(&mut app, 130, 48);
    insta::assert_snapshot!("tier_curves_130x48", shown);
    for want in [
        "rate under both tiers",
        "paid (swapped)",
        "compliance · free",
        "paid at i+1",
        "free (P2)",
    ] {
        assert!(shown.contains(want), "{want:?} missing:\n{shown}");
    }
    // T: every position, on both sides.
    feed(&mut app, [key('T')]);
    let all = submitted(&rx);
    assert_eq!(all.trace.id, "t1~tier-paid");
    assert_eq!(all.positions, (0..=4).collect::<Vec<_>>());
}

#[test]
fn interventions_say_why_they_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    // No tier tag: nothing to swap, nothing written.
    let (mut app, rx) = app_in(dir.path(), trace("t1", &sentences()));
    feed(&mut app, [key('t')]);
    let status = app.status.clone().unwrap();
    assert!(
        status.is_error && status.text.contains("no tier to swap"),
        "{status:?}"
    );
    assert!(rx.try_recv().is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // On a derived trace: intervene on its parent instead.
    feed(&mut app, [key('j'), key('d')]);
    let _ = submitted(&rx);
    app.open(1);
    let shown = screen(&mut app, 130, 40);
    assert!(shown.contains("S1 deleted of t1"), "{shown}");
    feed(&mut app, [key('d')]);
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("intervene on t1"),
        "{:?}",
        app.status
    );
    // A different trace already under the derived name is never overwritten.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir2.path().join("t1~del0.json"), "{\"not\": \"ours\"}").unwrap();
    let (mut app, rx) = app_in(dir2.path(), tiered_trace());
    feed(&mut app, [key('d')]);
    assert!(app.status.as_ref().unwrap().is_error);
    assert!(rx.try_recv().is_err());
    assert_eq!(
        std::fs::read_to_string(dir2.path().join("t1~del0.json")).unwrap(),
        "{\"not\": \"ours\"}"
    );
    // Without an engine.
    let mut bare = single_app();
    feed(&mut bare, [key('d')]);
    assert_eq!(bare.status.unwrap().text, NO_ENGINE);
}

#[test]
fn another_models_trace_asks_before_intervening_and_yes_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiered_trace();
    t.manifest.model = Some("Llama-3.1-405B".into());
    let (mut app, rx) = app_in(dir.path(), t);
    app.on_engine_event(EngineEvent::Model(anchorscope_engine::ModelIdentity {
        engine: "local".into(),
        model: "/m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        sha256: None,
    }));
    feed(&mut app, [key('d')]);
    assert!(
        matches!(app.popup, Some(Popup::Confirm(Confirm::Intervene { .. }))),
        "{:?}",
        app.popup
    );
    assert!(rx.try_recv().is_err(), "nothing sampled before the answer");
    assert!(!dir.path().join("t1~del0.json").exists());
    let shown = screen(&mut app, 120, 30);
    assert!(
        shown.contains("intervene anyway?") && shown.contains("Llama-3.1-405B"),
        "{shown}"
    );
    // No: nothing happens. Yes: the intervention goes on, and is not asked again.
    feed(&mut app, [key('n')]);
    assert!(rx.try_recv().is_err());
    feed(&mut app, [key('d'), key('y')]);
    assert_eq!(submitted(&rx).trace.id, "t1~del0");
    feed(&mut app, [key('j'), key('d')]);
    assert!(app.popup.is_none());
}

/// `r` (and every job from the explorer) samples with the settings of the run the trace's
/// rates pool around, not the trace's recorded ones, so new rollouts top up the counted ones.
#[test]
fn r_samples_with_the_settings_of_the_run_the_rates_pool_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiered_trace();
    t.manifest.sampler = Some(anchorscope_core::trace::SamplerSettings {
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: 300,
    });
    let store = dir.path().join("t1.rollouts.jsonl");
    record_run(&store, "at-77", "tiny.gguf", 77);
    let stored: Vec<Rollout> = (0..4)
        .map(|k| {
            let mut r = rollout(0, true);
            r.seed = k;
            r.run = Some("at-77".into());
            r
        })
        .collect();
    let (mut app, rx) = app_with_stored(dir.path(), t.clone(), stored);
    feed(&mut app, [key('r')]);
    let job = submitted(&rx);
    assert_eq!(job.sampler.max_new_tokens, 77);
    assert_eq!((job.sampler.temperature, job.sampler.top_p), (0.6, 0.95));
    // With nothing stored, the trace's recorded settings.
    let fresh = tempfile::tempdir().unwrap();
    let (mut app, rx) = app_in(fresh.path(), t);
    feed(&mut app, [key('r')]);
    assert_eq!(submitted(&rx).sampler.max_new_tokens, 300);
}
