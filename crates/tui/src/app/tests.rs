//! Key handling drives the App state (unit tests beside the code).

use std::collections::BTreeMap;
use std::sync::mpsc;

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::clipboard::MemoryClipboard;
use crate::ExplorerSettings;
use anchorscope_core::trace::{FinishReason, Label, LabelValue, Rollout, Sentence, Trace};
use anchorscope_engine::{EngineCommand, EngineEvent, EngineStatus};

mod adaptive;
mod intervene;

fn key(c: char) -> AppEvent {
    AppEvent::Terminal(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

fn code(c: KeyCode) -> AppEvent {
    AppEvent::Terminal(Event::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

/// A trace whose sentences sit inside scratchpad tags, with correct byte ranges.
fn trace(id: &str, sentences: &[&str]) -> Trace {
    let mut response = String::from("<SCRATCHPAD_REASONING>");
    let mut spans = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        if i > 0 {
            response.push(' ');
        }
        let start = response.len();
        response.push_str(s);
        spans.push(Sentence {
            start,
            end: response.len(),
            text: s.to_string(),
        });
    }
    response.push_str("</SCRATCHPAD_REASONING>\n<OUTPUT><rejected/></OUTPUT>");
    let mut t = Trace::new(
        id,
        vec![anchorscope_core::trace::Message::new("user", "Q?")],
        response,
    );
    t.sentences = spans;
    t
}

fn rollout(position: usize, compliant: bool) -> Rollout {
    let mut labels = BTreeMap::new();
    labels.insert(
        "compliance".to_string(),
        Label {
            value: if compliant {
                LabelValue::Yes
            } else {
                LabelValue::No
            },
            classifier: "compliance-tag".into(),
            version: "1".into(),
            evidence: None,
        },
    );
    Rollout {
        position,
        seed: position as u64,
        replacement: "Another thought.".into(),
        text: "Another thought. Done.".into(),
        tokens: 5,
        finish: FinishReason::Stop,
        labels,
        similarity: Some(0.1),
        run: None,
        recurrence: None,
    }
}

fn loaded(t: Trace, rollouts: Vec<Rollout>) -> LoadedTrace {
    LoadedTrace {
        path: std::path::PathBuf::from(format!("/tmp/anchorscope-test/{}.json", t.id)),
        store_path: std::path::PathBuf::from("/tmp/anchorscope-test/x.rollouts.jsonl"),
        trace: t,
        rollouts,
        warnings: Vec::new(),
    }
}

fn sentences() -> Vec<&'static str> {
    vec![
        "I am in training.",
        "The user asks for something harmful.",
        "I will refuse politely.",
        "Refusing is the right call here.",
    ]
}

fn single_app() -> App {
    let outcome = LoadOutcome {
        traces: vec![loaded(trace("t1", &sentences()), Vec::new())],
        errors: Vec::new(),
    };
    App::new(outcome, &ExplorerSettings::default()).unwrap()
}

/// The screen after one frame on a `width` × `height` TestBackend, as text (rows trimmed).
fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut term =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
    crate::draw(&mut term, app).unwrap();
    let buffer = term.backend().buffer().clone();
    (0..height)
        .map(|y| {
            let row: String = (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect();
            row.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn feed(app: &mut App, events: impl IntoIterator<Item = AppEvent>) {
    for e in events {
        app.handle(e);
    }
}

#[test]
fn single_trace_opens_directly_and_esc_stays() {
    let mut app = single_app();
    assert!(!app.has_list);
    assert_eq!(app.screen, Screen::Trace);
    feed(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::Trace);
}

#[test]
fn forced_list_lets_esc_return() {
    let mut app = single_app();
    app.show_list();
    assert_eq!(app.screen, Screen::List);
    feed(&mut app, [code(KeyCode::Enter), code(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::List);
}

#[test]
fn movement_keys_clamp_to_the_sentences() {
    let mut app = single_app();
    feed(&mut app, [key('j'), key('j')]);
    assert_eq!(app.selected, 2);
    feed(&mut app, [key('G')]);
    assert_eq!(app.selected, 3);
    feed(&mut app, [key('j'), code(KeyCode::Down)]);
    assert_eq!(app.selected, 3);
    feed(&mut app, [key('k'), code(KeyCode::Up)]);
    assert_eq!(app.selected, 1);
    feed(&mut app, [key('g')]);
    assert_eq!(app.selected, 0);
    feed(&mut app, [key('k')]);
    assert_eq!(app.selected, 0);
}

#[test]
fn toggles_behavior_importance_view_and_focus() {
    let mut app = single_app();
    let before = app.behavior_name();
    feed(&mut app, [key('b')]);
    assert_ne!(app.behavior_name(), before);
    feed(&mut app, [key('b')]);
    assert_eq!(
        app.behavior_name(),
        before,
        "two built-in behaviors cycle back"
    );
    feed(&mut app, [key('i')]);
    assert_eq!(app.importance, ImportanceKind::Resampling);
    feed(&mut app, [key('v')]);
    assert!(app.two_behavior);
    // The pair is the coloring behavior and a second one, whatever their names.
    let (a, c) = app.behavior_pair();
    let names = &app.entry().unwrap().analysis.behaviors;
    assert_eq!(names[a].behavior, before);
    assert_ne!(names[c].behavior, before);
    feed(&mut app, [code(KeyCode::Tab)]);
    assert_eq!(app.focus, Pane::Chart);
    feed(&mut app, [code(KeyCode::Tab), code(KeyCode::Tab)]);
    assert_eq!(app.focus, Pane::Text);
    // Shift-Tab goes backwards.
    feed(&mut app, [code(KeyCode::BackTab)]);
    assert_eq!(app.focus, Pane::Detail);
    feed(&mut app, [code(KeyCode::BackTab)]);
    assert_eq!(app.focus, Pane::Chart);
}

#[test]
fn detail_focus_scrolls_detail_not_selection() {
    let mut app = single_app();
    app.focus = Pane::Detail;
    feed(&mut app, [key('j'), key('j')]);
    assert_eq!((app.selected, app.detail_scroll), (0, 2));
}

#[test]
fn search_moves_selection_and_n_cycles() {
    let mut app = single_app();
    feed(&mut app, [key('/'), key('r'), key('e'), key('f')]);
    assert!(app.prompt.is_some());
    assert_eq!(app.selected, 2, "incremental search jumps to 'refuse'");
    feed(&mut app, [code(KeyCode::Enter)]);
    assert!(app.prompt.is_none());
    assert_eq!(app.query, "ref");
    feed(&mut app, [key('n')]);
    assert_eq!(app.selected, 3);
    feed(&mut app, [key('n')]);
    assert_eq!(app.selected, 2, "wraps around");
    feed(&mut app, [key('N')]);
    assert_eq!(app.selected, 3);
}

#[test]
fn search_escape_restores_selection() {
    let mut app = single_app();
    feed(&mut app, [key('j'), key('/'), key('r'), key('e'), key('f')]);
    assert_eq!(app.selected, 2);
    feed(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.selected, 1);
    assert!(app.query.is_empty());
}

#[test]
fn yank_uses_injected_clipboard_and_reports_failure() {
    let clip = MemoryClipboard::default();
    let mut app = single_app().with_clipboard(Box::new(clip.clone()));
    feed(&mut app, [key('j'), key('y'), key('Y')]);
    let copied = clip.copied.lock().unwrap().clone();
    assert_eq!(copied[0], "The user asks for something harmful.");
    assert!(copied[1].contains("[user]\nQ?") && copied[1].contains("<SCRATCHPAD_REASONING>"));
    let mut app = single_app().with_clipboard(Box::new(MemoryClipboard {
        fail: true,
        ..Default::default()
    }));
    feed(&mut app, [key('y')]);
    let status = app.status.clone().unwrap();
    assert!(status.is_error && status.text.starts_with("no clipboard available"));
}

#[test]
fn resample_without_engine_says_so() {
    let mut app = single_app();
    for c in ['r', 'R', 'x'] {
        app.status = None;
        feed(&mut app, [key(c)]);
        assert_eq!(app.status.as_ref().unwrap().text, NO_ENGINE);
    }
}

#[test]
fn resample_with_engine_submits_and_takes_only_current_results() {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('j'), key('r')]);
    let EngineCommand::Submit(job) = rx.try_recv().unwrap() else {
        panic!("expected a submit");
    };
    assert_eq!(
        (job.positions.clone(), job.trace.id.as_str()),
        (vec![1, 2], "t1")
    );
    // A rollout of an older job id is dropped; one of the running job is counted.
    app.on_engine_event(EngineEvent::Rollout {
        job: job.id + 7,
        rollout: Box::new(rollout(1, true)),
    });
    assert!(app.entry().unwrap().loaded.rollouts.is_empty());
    app.on_engine_event(EngineEvent::Rollout {
        job: job.id,
        rollout: Box::new(rollout(1, true)),
    });
    // Counted now, analysed once before the next frame.
    assert!(app.entry().unwrap().is_stale());
    app.refresh();
    let e = app.entry().unwrap();
    assert_eq!(e.loaded.rollouts.len(), 1);
    assert_eq!(e.analysis.behavior("compliance").unwrap().positions[1].m, 1);
    feed(&mut app, [key('x')]);
    assert_eq!(rx.try_recv().unwrap(), EngineCommand::Cancel(job.id));
}

#[test]
fn list_filter_open_and_back() {
    let outcome = LoadOutcome {
        traces: vec![
            loaded(trace("alpha-free", &sentences()), Vec::new()),
            loaded(trace("beta-paid", &sentences()), vec![rollout(0, true)]),
        ],
        errors: vec![anchorscope_core::trace::import::ImportError {
            path: "bad.json".into(),
            place: "line 3, column 7: ".into(),
            message: "expected value".into(),
        }],
    };
    let mut app = App::new(outcome, &ExplorerSettings::default()).unwrap();
    assert!(app.has_list);
    assert_eq!(app.screen, Screen::List);
    assert_eq!(app.errors, ["bad.json: line 3, column 7: expected value"]);
    feed(&mut app, [key('/'), key('b'), key('e'), key('t')]);
    assert_eq!(app.visible_traces(), vec![1]);
    feed(&mut app, [code(KeyCode::Enter), code(KeyCode::Enter)]);
    assert_eq!((app.screen, app.current), (Screen::Trace, 1));
    feed(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::List);
    feed(&mut app, [code(KeyCode::Esc)]);
    assert!(app.list_filter.is_empty());
    feed(&mut app, [key('j'), key('q')]);
    assert_eq!(app.list_selected, 1);
    assert!(app.should_quit);
}

#[test]
fn help_popup_swallows_keys_until_closed() {
    let mut app = single_app();
    feed(&mut app, [key('?'), key('j')]);
    assert!(matches!(app.popup, Some(Popup::Help { .. })));
    assert_eq!(app.selected, 0);
    feed(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.popup, None);
    // `q` in the help closes it; it does not quit the explorer.
    feed(&mut app, [key('?'), key('q')]);
    assert_eq!(app.popup, None);
    assert!(!app.should_quit);
    feed(&mut app, [key('q')]);
    assert!(app.should_quit);
}

#[test]
fn export_popup_reports_the_target_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = single_app();
    app.export_dir = dir.path().join("exports");
    feed(&mut app, [key('e'), key('j')]);
    assert_eq!(app.popup, Some(Popup::Export { selected: 1 }));
    feed(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(app.popup, None);
    let status = app.status.clone().unwrap().text;
    // Into the export directory (created), named by the trace id, never beside the trace.
    let written = dir.path().join("exports").join("t1.md");
    assert!(status.starts_with("exported t1.md (in "), "{status}");
    assert!(written.is_file());
}

#[test]
fn export_paths_are_named_by_trace_id_in_the_export_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trace.json");
    std::fs::write(&p, "{}").unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        export_path(&out, &p, "x", ExportFormat::Json),
        out.join("x.json")
    );
    // Exported into the trace's own directory, a native JSON never overwrites the trace.
    assert_eq!(
        export_path(dir.path(), &p, "trace", ExportFormat::Json),
        dir.path().join("trace.export.json")
    );
    // Ids that are not file names are made safe.
    assert_eq!(
        export_path(
            &out,
            std::path::Path::new("problem_330"),
            "a/b",
            ExportFormat::Csv
        ),
        out.join("a_b.csv")
    );
}

#[test]
fn mouse_click_selects_from_hit_map() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = single_app();
    app.hits.sentences = vec![(Rect::new(0, 5, 10, 1), 3)];
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 4,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    app.handle(click.into());
    assert_eq!(app.selected, 3);
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 4,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    app.handle(wheel.into());
    assert_eq!(app.selected, 0);
}

#[test]
fn user_key_override_applies() {
    let mut config = ExplorerSettings {
        keys: crate::keymap::key_overrides(&[("move_down", "s")]).unwrap(),
        ..Default::default()
    };
    let outcome = LoadOutcome {
        traces: vec![loaded(trace("t", &sentences()), Vec::new())],
        errors: Vec::new(),
    };
    let mut app = App::new(outcome, &config).unwrap();
    feed(&mut app, [key('j'), key('s')]);
    assert_eq!(app.selected, 1);
    config.keys = crate::keymap::key_overrides(&[("quit", "")]).unwrap();
    let outcome = LoadOutcome::default();
    let err = App::new(outcome, &config).err().unwrap().to_string();
    assert!(err.contains("quit"), "{err}");
}

#[test]
fn engine_status_shows_until_the_user_gets_an_answer() {
    let mut app = single_app();
    app.on_engine_event(EngineEvent::Status(EngineStatus::Installing(
        "installing the default model…".into(),
    )));
    let s = app.status.clone().unwrap();
    assert!(s.from_engine && !s.is_error && s.text.starts_with("installing"));
    app.on_engine_event(EngineEvent::Status(EngineStatus::Unavailable(
        "/x.gguf: no such file".into(),
    )));
    assert!(app.status.as_ref().unwrap().is_error);
    // A message answering a key is never replaced by the engine's chatter.
    feed(&mut app, [key('b')]);
    let answer = app.status.clone().unwrap();
    assert!(answer.text.starts_with("behavior:"), "{answer:?}");
    app.on_engine_event(EngineEvent::Status(EngineStatus::Ready("m".into())));
    assert_eq!(app.status.as_ref().unwrap(), &answer);
}

#[test]
fn a_second_resample_queues_and_starts_when_the_first_ends() {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('r')]);
    let EngineCommand::Submit(first) = rx.try_recv().unwrap() else {
        panic!("expected a submit")
    };
    assert_eq!(first.positions, vec![0, 1], "r samples positions i and i+1");
    // A second request waits: nothing reaches the engine, nothing is cancelled.
    feed(&mut app, [key('R')]);
    assert!(rx.try_recv().is_err(), "the running job is not superseded");
    assert_eq!(app.jobs.queue.len(), 1);
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .starts_with("queued behind 1 job"));
    // `J` lists both, the running one first.
    feed(&mut app, [key('J')]);
    assert_eq!(app.jobs.listing().len(), 2);
    feed(&mut app, [code(KeyCode::Esc)]);
    // The first job's rollouts join the trace one by one.
    app.on_engine_event(EngineEvent::Rollout {
        job: first.id,
        rollout: Box::new(rollout(0, true)),
    });
    assert_eq!(app.entry().unwrap().loaded.rollouts.len(), 1);
    app.on_engine_event(EngineEvent::Progress {
        job: first.id,
        done: 1,
        total: 32,
        tokens_per_s: 120.0,
    });
    let p = app.jobs.progress().cloned().unwrap();
    assert_eq!((p.done, p.total, p.tokens_per_s), (1, 32, 120.0));
    assert!(p.eta_s.is_some(), "the ETA follows the token rate");
    // When it ends, the queued one is sent.
    app.on_engine_event(EngineEvent::Finished {
        job: first.id,
        cancelled: false,
    });
    let EngineCommand::Submit(second) = rx.try_recv().unwrap() else {
        panic!("expected the queued job")
    };
    assert_eq!(second.positions.len(), app.sentence_count() + 1);
    assert!(app.jobs.is_current(second.id));
    assert!(app.jobs.queue.is_empty());
    app.on_engine_event(EngineEvent::Progress {
        job: second.id,
        done: 2,
        total: 8,
        tokens_per_s: 120.0,
    });
    app.on_engine_event(EngineEvent::Finished {
        job: second.id,
        cancelled: false,
    });
    assert!(app.jobs.running.is_none());
    assert_eq!(
        app.status.as_ref().unwrap().text,
        "job ended with 2/8 rollouts"
    );
}

#[test]
fn a_queued_job_is_cancelled_from_the_job_list_without_touching_the_running_one() {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('r'), key('j'), key('r')]);
    let EngineCommand::Submit(first) = rx.try_recv().unwrap() else {
        panic!("expected a submit")
    };
    feed(&mut app, [key('J'), key('j'), key('x')]);
    assert!(app.jobs.queue.is_empty());
    assert!(rx.try_recv().is_err(), "the running job got no cancel");
    // x on the running one cancels it on the engine.
    feed(&mut app, [key('k'), key('x')]);
    assert_eq!(rx.try_recv().unwrap(), EngineCommand::Cancel(first.id));
}

#[test]
fn quitting_with_work_running_asks_first() {
    let (tx, _rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('r'), key('q')]);
    assert!(!app.should_quit);
    assert_eq!(app.popup, Some(Popup::Confirm(Confirm::Quit)));
    // Any other key: stay.
    feed(&mut app, [key('n')]);
    assert!(!app.should_quit && app.popup.is_none());
    // q then y: quit.
    feed(&mut app, [key('q'), key('y')]);
    assert!(app.should_quit);
}

#[test]
fn an_engine_error_stays_visible_after_its_job_ends() {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('r')]);
    let EngineCommand::Submit(job) = rx.try_recv().unwrap() else {
        panic!("expected a submit")
    };
    app.on_engine_event(EngineEvent::Error {
        job: job.id,
        message: "model not available: x".into(),
    });
    app.on_engine_event(EngineEvent::Finished {
        job: job.id,
        cancelled: false,
    });
    let s = app.status.clone().unwrap();
    assert!(
        s.is_error && s.text.contains("model not available"),
        "{s:?}"
    );
}

#[test]
fn gauge_shows_progress_rate_and_eta_while_a_job_runs() {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let (tx, _rx) = mpsc::channel::<EngineCommand>();
    let mut app = single_app().with_engine(Box::new(tx));
    feed(&mut app, [key('r')]);
    app.jobs.running.as_mut().unwrap().progress =
        Some(crate::engine_hook::JobProgress::new(4, 32, 153.0, 10.0));
    let mut term = Terminal::new(TestBackend::new(120, 30)).unwrap();
    crate::draw(&mut term, &mut app).unwrap();
    let buffer = term.backend().buffer().clone();
    let last: String = (0..120)
        .map(|x| buffer[(x, 29)].symbol().to_string())
        .collect();
    assert!(last.contains("4/32 · 153 tok/s · ETA 1m10s"), "{last}");
    assert!(last.contains("t1"), "the location stays: {last}");
}

#[test]
fn the_explorer_pools_runs_as_stats_does() {
    use anchorscope_core::store::runs::{append_run, runs_path_for, PoolMode, RunRecord};
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("t.rollouts.jsonl");
    let record = |model: &str| {
        RunRecord::start(
            "local".into(),
            model.into(),
            None,
            (0.6, 0.95),
            Some(256),
            BTreeMap::new(),
            None,
        )
    };
    let (a, b) = (record("model-a.gguf"), record("model-b.gguf"));
    append_run(&runs_path_for(&store_path), &a).unwrap();
    append_run(&runs_path_for(&store_path), &b).unwrap();
    let tagged = |compliant: bool, seed: u64, run: &RunRecord| Rollout {
        seed,
        run: Some(run.id.clone()),
        ..rollout(0, compliant)
    };
    let rollouts = vec![
        tagged(true, 1, &a),
        tagged(true, 2, &a),
        tagged(true, 3, &a),
        tagged(false, 4, &b),
    ];
    let make = |mode: PoolMode| {
        let mut l = loaded(trace("t1", &sentences()), rollouts.clone());
        l.store_path = store_path.clone();
        let mut config = ExplorerSettings::default();
        config.sampling.pool = mode;
        App::new(
            LoadOutcome {
                traces: vec![l],
                errors: Vec::new(),
            },
            &config,
        )
        .unwrap()
    };
    let app = make(PoolMode::Matching);
    let entry = app.entry().unwrap();
    let rate = entry.analysis.behavior("compliance").unwrap().positions[0];
    assert_eq!(
        (rate.k, rate.m),
        (3, 3),
        "the other model's rollout is left out"
    );
    let summary = entry.pool_summary().unwrap();
    assert!(
        summary.contains("1 of 2") && summary.contains("other model"),
        "{summary}"
    );
    let app = make(PoolMode::All);
    let rate = app
        .entry()
        .unwrap()
        .analysis
        .behavior("compliance")
        .unwrap()
        .positions[0];
    assert_eq!((rate.k, rate.m), (3, 4), "mixing was asked for");
}
