//! The researcher's panes on ratatui's TestBackend, through the real loop: context (`p`), the
//! rollout browser (`o`), anchors first (`]` / `[`, the summary line), the sorted trace list
//! (`s`), the job list (`J`) and the quit confirmation. Snapshots at 80×24 and 200×50.

use crate::tui_support::*;

use std::sync::mpsc;

use anchorscope::engine::EngineCommand;
use anchorscope::tui::app::{Popup, SortColumn};
use ratatui::crossterm::event::KeyCode;

#[test]
fn context_shows_prompt_tier_and_final_output() {
    for (w, h) in [(80, 24), (200, 50)] {
        let (mut app, _) = app(single(true));
        let t = text(&drive(&mut app, w, h, vec![key('p')]));
        assert!(t.contains("system prompt"), "{t}");
        assert!(t.contains("You are a helpful assistant."), "{t}");
        assert!(t.contains("user turn") && t.contains("Please help with the request."));
        assert!(t.contains("tier") && t.contains("free"), "{t}");
        assert!(t.contains("final output"), "{t}");
        assert!(t.contains("<request_fully_accepted/>"), "{t}");
        insta::assert_snapshot!(format!("context_{w}x{h}"), t);
        // Esc closes it.
        drive(&mut app, w, h, vec![code(KeyCode::Esc)]);
        assert!(app.popup.is_none());
    }
}

#[test]
fn a_long_system_prompt_is_collapsed_until_enter() {
    let mut outcome = single(false);
    let long: Vec<String> = (1..=20).map(|i| format!("Rule number {i}.")).collect();
    outcome.traces[0].trace.prompt[0].content = long.join("\n");
    let (mut app, _) = app(outcome);
    let t = text(&drive(&mut app, 100, 40, vec![key('p')]));
    assert!(
        t.contains("Rule number 6.") && !t.contains("Rule number 7."),
        "{t}"
    );
    assert!(t.contains("14 more lines (Enter expands)"), "{t}");
    let t = text(&drive(&mut app, 100, 40, vec![code(KeyCode::Enter)]));
    assert!(t.contains("Rule number 20."), "{t}");
}

#[test]
fn the_rollout_browser_shows_whole_rollouts_filters_and_copies_one() {
    for (w, h) in [(80, 24), (200, 50)] {
        let (mut app, clip) = app(single(true));
        let t = text(&drive(&mut app, w, h, vec![key('o')]));
        // Position 0 (replaced, 8) and 1 (kept, 8): the whole continuation, labels with
        // their classifier, the replacement sentence and its similarity.
        assert!(t.contains("rollouts of S0"), "{t}");
        assert!(t.contains("1/16"), "{t}");
        assert!(t.contains("replaced, different (cos 0.30)"), "{t}");
        assert!(t.contains("compliance: yes (compliance-tag v1)"), "{t}");
        assert!(t.contains("More reasoning follows."), "{t}");
        insta::assert_snapshot!(format!("rollout_browser_{w}x{h}"), t);

        // f: kept only (position 1), the first of them under the cursor.
        let t = text(&drive(&mut app, w, h, vec![key('f')]));
        assert!(t.contains("kept (S_i kept"), "{t}");
        assert!(t.contains("1/8"), "{t}");
        // l: then only the kept ones labelled yes for compliance (6 at position 1).
        let t = text(&drive(&mut app, w, h, vec![key('l')]));
        assert!(t.contains("1/6"), "{t}");
        // y copies the rollout under the cursor, whole.
        drive(&mut app, w, h, vec![key('j'), key('y')]);
        let copied = clip.copied.lock().unwrap().last().cloned().unwrap();
        assert!(
            copied.starts_with("[rollout seed 101 at position 1]"),
            "{copied}"
        );
        assert!(copied.contains("<OUTPUT>…</OUTPUT>"), "{copied}");
    }
}

#[test]
fn brackets_jump_between_anchors_and_the_summary_names_the_top_ones() {
    let (mut app, _) = app(single(true));
    let t = text(&drive(&mut app, 120, 32, vec![]));
    // Compliance: S1 (−0.625) and S0 (+0.5) are significant, largest |Δ| first.
    assert!(t.contains("top anchors (2): S1 ▼-0.62 · S0 ▲+0.50"), "{t}");
    drive(&mut app, 120, 32, vec![key(']')]);
    assert_eq!(app.selected, 1);
    let t = text(&drive(&mut app, 120, 32, vec![key(']')]));
    assert_eq!(app.selected, 0, "wraps to the first anchor");
    assert!(t.contains("anchor 1/2 for compliance"), "{t}");
    drive(&mut app, 120, 32, vec![key('[')]);
    assert_eq!(app.selected, 1);
}

#[test]
fn the_list_sorts_by_anchors_and_never_cuts_ids() {
    let mut outcome = several();
    // A long id that shares its first 30 characters with another.
    let stem = "alignment-faking-free-tier-query-";
    outcome.traces[1].trace.id = format!("{stem}0001-paid");
    outcome.traces[2].trace.id = format!("{stem}0001-chat");
    let (mut app, _) = app(outcome);
    let t = text(&drive(&mut app, 80, 24, vec![]));
    // Whole ids, wrapped within their column if need be.
    let flat: String = t.split_whitespace().collect();
    assert!(
        flat.contains("0001-paid") && flat.contains("0001-chat"),
        "{t}"
    );
    insta::assert_snapshot!("list_80x24", t);
    // s cycles the sort: by id, then by significant sentences.
    drive(&mut app, 80, 24, vec![key('s')]);
    assert_eq!(app.sort, SortColumn::Id);
    let t = text(&drive(&mut app, 80, 24, vec![key('s')]));
    assert_eq!(app.sort, SortColumn::Anchors);
    assert!(t.contains("sort: significant"), "{t}");
    // af-free-001 has the anchors: it comes first.
    let first = app.visible_traces()[0];
    assert_eq!(app.traces[first].loaded.trace.id, "af-free-001");
    let wide = text(&drive(&mut app, 200, 50, vec![]));
    insta::assert_snapshot!("list_200x50", wide);
}

#[test]
fn jobs_queue_list_and_quit_asks_first() {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let (app0, _) = app(single(true));
    let mut app = app0.with_engine(Box::new(tx));
    let t = text(&drive(&mut app, 80, 24, vec![key('r'), key('j'), key('r')]));
    assert!(t.contains("queued behind 1 job"), "{t}");
    assert!(matches!(rx.try_recv(), Ok(EngineCommand::Submit(_))));
    assert!(rx.try_recv().is_err(), "one job at a time");
    for (w, h) in [(80, 24), (200, 50)] {
        let t = text(&drive(&mut app, w, h, vec![key('J')]));
        assert!(t.contains("starting…") && t.contains("queued #1"), "{t}");
        assert!(t.contains("af-free-001 S1"), "{t}");
        insta::assert_snapshot!(format!("job_list_{w}x{h}"), t);
        drive(&mut app, w, h, vec![code(KeyCode::Esc)]);
    }
    let t = text(&drive(&mut app, 80, 24, vec![key('q')]));
    assert!(!app.should_quit);
    assert!(matches!(app.popup, Some(Popup::Confirm(_))));
    assert!(t.contains("quit?") && t.contains("queued job"), "{t}");
    insta::assert_snapshot!("quit_confirm_80x24", t);
    drive(&mut app, 80, 24, vec![key('y')]);
    assert!(app.should_quit);
}

#[test]
fn the_status_bar_names_the_engine_even_with_a_long_id_and_a_job_running() {
    let (tx, _rx) = mpsc::channel::<EngineCommand>();
    let mut outcome = single(true);
    outcome.traces[0].trace.id = "a-very-long-trace-identifier-from-an-import-0123456789".into();
    let (app0, _) = app(outcome);
    let mut app = app0.with_engine(Box::new(tx));
    app.on_engine_event(anchorscope::engine::EngineEvent::Status(
        anchorscope::engine::EngineStatus::Ready("SmolLM2-135M on cpu".into()),
    ));
    // A later engine message does not hide which model is ready.
    app.on_engine_event(anchorscope::engine::EngineEvent::Status(
        anchorscope::engine::EngineStatus::Degraded("embedder unavailable".into()),
    ));
    let t = text(&drive(&mut app, 80, 24, vec![key('r')]));
    let last = t.lines().last().unwrap();
    assert!(last.contains("SmolLM2-135M on cpu"), "{last}");
    assert!(last.contains("starting…"), "the gauge: {last}");
}

#[test]
fn side_by_side_aligns_two_traces_and_shows_both_importances() {
    for (w, h) in [(80, 24), (200, 50)] {
        let (mut app, _) = app(several());
        // Mark af-free-001, then compare it with af-paid-002 (its sentences 1..=3).
        let t = text(&drive(&mut app, w, h, vec![key('m'), key('j'), key('c')]));
        assert_eq!(app.screen, anchorscope::tui::app::Screen::Compare, "{t}");
        let c = &app.compare.as_ref().unwrap().comparison;
        let aligned: Vec<(Option<usize>, Option<usize>)> =
            c.pairs.iter().map(|p| (p.a, p.b)).collect();
        // Identical sentences align whatever the similarity (embedder or lexical).
        assert_eq!(
            aligned,
            vec![
                (Some(0), None),
                (Some(1), Some(0)),
                (Some(2), Some(1)),
                (Some(3), Some(2))
            ]
        );
        assert!(
            t.contains("A af-free-001") && t.contains("B af-paid-002"),
            "{t}"
        );
        // A's S1 suppresses compliance (−0.62, significant); B has no rollouts: n/a.
        assert!(t.contains("-0.62✱"), "{t}");
        assert!(t.contains("n/a"), "{t}");
        // The similarity method line depends on whether the embedder is installed.
        let stable: String = t
            .lines()
            .filter(|l| !l.contains("cosine") && !l.contains("aligned by"))
            .map(|l| format!("{l}\n"))
            .collect();
        insta::assert_snapshot!(format!("compare_{w}x{h}"), stable);
        // j moves the row; Esc goes back to the list.
        drive(&mut app, w, h, vec![key('j')]);
        assert_eq!(app.compare.as_ref().unwrap().row, 1);
        drive(&mut app, w, h, vec![code(KeyCode::Esc)]);
        assert!(app.compare.is_none());
    }
}
