//! TestBackend snapshots of the explorer, driven through the real main loop (`run_app`).

use crate::tui_support;

use anchorscope::analysis::Direction;
use anchorscope::tui::app::{App, Screen};
use anchorscope::tui::theme::Theme;
use anchorscope::tui::AppEvent;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use ratatui::style::{Color, Modifier};
use tui_support::*;

/// Row and column where `needle` starts on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let t = text(buf);
    for (y, line) in t.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            let x = line[..byte].chars().count();
            return Some((x as u16, y as u16));
        }
    }
    None
}

#[test]
fn trace_list_with_import_error() {
    let (mut app, _) = app(several());
    let buf = drive(&mut app, 100, 16, vec![]);
    let t = text(&buf);
    assert!(t.contains("af-paid-002") && t.contains("paid"));
    assert!(t.contains("traces/broken.json: line 4, column 12"));
    // Per trace: its own outcome, significant sentences, largest |Δ|, rollouts.
    assert!(
        t.contains("outcome") && t.contains("sig.") && t.contains("max|Δ|"),
        "columns:\n{t}"
    );
    assert!(t.contains("columns: compliance"), "{t}");
    insta::assert_snapshot!("trace_list", t);
}

#[test]
fn list_filter_then_open() {
    let (mut app, _) = app(several());
    let events = vec![key('/'), key('c'), key('h'), key('a'), code(KeyCode::Enter)];
    let buf = drive(&mut app, 100, 16, events);
    let t = text(&buf);
    assert!(t.contains("chat-003") && !t.contains("af-paid-002"), "{t}");
    let buf = drive(&mut app, 100, 16, vec![code(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Trace);
    assert!(text(&buf).contains(" chat-003 · "));
}

#[test]
fn trace_view_without_rollouts() {
    let (mut app, _) = app(single(false));
    let buf = drive(&mut app, 120, 30, vec![]);
    let t = text(&buf);
    assert!(t.contains("no rollouts yet"));
    assert!(t.contains("n/a"), "undefined numbers read n/a");
    assert!(!t.contains("0.00 ["), "no invented rates");
    insta::assert_snapshot!("trace_view_without_rollouts", t);
}

#[test]
fn trace_view_with_rollouts_colors_by_direction() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 120, 32, vec![]);
    let t = text(&buf);
    assert_eq!(app.behavior_name(), "compliance");
    insta::assert_snapshot!("trace_view_with_rollouts", t);

    // S0 promotes compliance (+0.5), S1 suppresses it (−0.625): both past the top step of the
    // absolute scale; each is drawn strong only if the analysis finds it significant.
    let theme = Theme::default();
    let entry = app.entry().unwrap();
    let rule = entry.analysis.rule;
    let b = &entry.analysis.behaviors[0];
    let s0 = b.shade(0, app.importance, &rule);
    let s1 = b.shade(1, app.importance, &rule);
    assert_eq!((s0.direction, s0.level), (Some(Direction::Promotes), 3));
    assert_eq!((s1.direction, s1.level), (Some(Direction::Suppresses), 3));
    let sig = |i: usize| {
        b.sentences[i]
            .importance(app.importance)
            .unwrap()
            .significant()
    };
    assert_eq!((s0.strong, s1.strong), (sig(0), sig(1)));
    let promote = theme.direction_style(s0.direction, s0.level, s0.strong);
    let suppress = theme.direction_style(s1.direction, s1.level, s1.strong);
    let (x0, y0) = find(&buf, "The user is on the free tier").unwrap();
    let c0 = &buf[(x0 + 2, y0)];
    assert_eq!(c0.bg, promote.bg.unwrap());
    assert!(c0.modifier.contains(Modifier::REVERSED), "S0 is selected");
    let (x1, y1) = find(&buf, "If I refuse").unwrap();
    let c1 = &buf[(x1 + 2, y1)];
    assert_eq!((c1.fg, c1.bg), (suppress.fg.unwrap(), suppress.bg.unwrap()));
    match (c0.bg, c1.bg) {
        (Color::Rgb(r, _, b), Color::Rgb(r2, _, b2)) => {
            assert!(r > b, "orange has more red than blue");
            assert!(b2 > r2 / 2 && b2 > 100, "purple has strong blue");
        }
        other => panic!("expected RGB tints, got {other:?}"),
    }
    // S2 has Δ = 0 exactly: default style, ○ glyph.
    let (x2, y2) = find(&buf, "I strongly prefer").unwrap();
    assert_eq!(buf[(x2 + 2, y2)].bg, Color::Reset);
    assert!(t.contains("○"));
    // Detail pane: rates with Wilson intervals and counts, significance, replacement groups.
    assert!(t.contains("2/8") && t.contains("6/8"), "{t}");
    assert!(t.contains("+0.50 ["));
    // Taller: replacement groups (identical text counted) and example rollouts.
    let tall = text(&drive(&mut app, 120, 50, vec![]));
    assert!(tall.contains("replacements (2 distinct)"), "{tall}");
    // Position 0: rollouts j = 0,3,6 say "Maybe this is only a test." (j = 0 complies: 1/3),
    // the other five the second sentence (j = 1 complies: 1/5).
    assert!(
        tall.contains("5× 0.20") && tall.contains("3× 0.33"),
        "{tall}"
    );
    assert!(tall.contains("rollouts at 0 (8)"), "{tall}");
}

#[test]
fn styles_are_recorded_in_snapshot() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 80, 24, vec![key('j')]);
    insta::assert_debug_snapshot!("narrow_with_rollouts_styles", buf);
}

#[test]
fn af_detail_names_the_rule_based_judge() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 120, 32, vec![key('b'), key('j')]);
    assert_eq!(app.behavior_name(), "alignment_faking");
    assert!(text(&buf).contains("rule-based judge (offline)"));
}

#[test]
fn help_popup_lists_every_binding() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 100, 60, vec![key('?')]);
    let t = text(&buf);
    for a in anchorscope::tui::action::Action::BINDABLE {
        assert!(t.contains(a.describe()), "help lacks {a:?}");
    }
    insta::assert_snapshot!("help_popup", t);
}

#[test]
fn help_scrolls_on_a_small_terminal_and_stops_at_its_end() {
    let (mut app, _) = app(single(true));
    let first = text(&drive(&mut app, 80, 24, vec![key('?')]));
    assert!(first.contains("next sentence"), "{first}");
    assert!(!first.contains("this help"), "the end is below: {first}");
    let end = text(&drive(&mut app, 80, 24, vec![key('G')]));
    assert!(end.contains("keys are set in [keys]"), "{end}");
    // Past the end it stays at the end: one step up shows a line the end did not.
    let again = text(&drive(&mut app, 80, 24, vec![key('j'), key('j'), key('k')]));
    assert_ne!(again, end);
    assert!(again.contains("this help"), "{again}");
    // q closes it.
    drive(&mut app, 80, 24, vec![key('q')]);
    assert!(app.popup.is_none() && !app.should_quit);
}

#[test]
fn narrow_80x24() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 80, 24, vec![key('j')]);
    let t = text(&buf);
    assert!(
        t.contains("rate · 95% band") && t.contains("sentence 1"),
        "{t}"
    );
    insta::assert_snapshot!("narrow_80x24", t);
}

#[test]
fn two_behavior_view() {
    let (mut app, _) = app(single(true));
    let buf = drive(&mut app, 120, 30, vec![key('v')]);
    let t = text(&buf);
    // The coloring behavior on the left, the next one on the right.
    assert!(
        t.contains("┌ compliance ") && t.contains("┌ alignment_faking "),
        "{t}"
    );
    // S1 suppresses compliance (left column) and promotes AF (right column).
    let row = t.lines().find(|l| l.contains("If I refuse")).unwrap();
    assert!(row.find('▼').unwrap() < row.find('▲').unwrap(), "{row}");
    insta::assert_snapshot!("two_behavior_view", t);
}

#[test]
fn no_color_shows_glyphs_and_bars_without_colors() {
    let (app0, _) = app(single(true));
    let mut app = app0.with_theme(Theme::new(&Default::default(), true).unwrap());
    let buf = drive(&mut app, 100, 24, vec![]);
    let t = text(&buf);
    assert!(
        t.contains("▲▮▮▮ The user") || t.contains("▲▮▮  The user"),
        "{t}"
    );
    assert!(t.contains("▼▮▮▮ If I refuse"), "{t}");
    for cell in buf.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset));
    }
    insta::assert_snapshot!("no_color", t);
}

#[test]
fn search_moves_selection_through_the_loop() {
    let (mut app, _) = app(single(true));
    let mut events: Vec<AppEvent> = vec![key('/')];
    events.extend("values".chars().map(key));
    events.push(code(KeyCode::Enter));
    drive(&mut app, 100, 24, events);
    assert_eq!(app.selected, 1);
    let buf = drive(&mut app, 100, 24, vec![key('n')]);
    assert_eq!(app.selected, 3);
    assert!(text(&buf).contains("match 2/2"));
}

#[test]
fn yank_through_the_loop_uses_the_injected_clipboard() {
    let (mut app, clip) = app(single(false));
    let buf = drive(&mut app, 100, 24, vec![key('G'), key('y')]);
    assert_eq!(clip.copied.lock().unwrap().as_slice(), [SENTENCES[3]]);
    assert!(text(&buf).contains("sentence: copied to clipboard"));
    // At 80 columns the long message still fits: the status line drops the location fields.
    let buf = drive(&mut app, 80, 24, vec![key('y')]);
    let last = text(&buf).lines().last().unwrap().to_string();
    assert!(
        last.contains("sentence: copied to clipboard (73 chars)"),
        "{last}"
    );
}

#[test]
fn quit_ends_the_loop() {
    let (mut app, _) = app(single(false));
    // Events after `q` are never applied.
    drive(&mut app, 80, 24, vec![key('q'), key('j')]);
    assert!(app.should_quit);
    assert_eq!(app.selected, 0);
}

#[test]
fn mouse_click_selects_sentence_under_cursor() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let (mut app, _) = app(single(false));
    let buf = drive(&mut app, 120, 30, vec![]);
    let (x, y) = find(&buf, "I strongly prefer").unwrap();
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x + 3,
        row: y,
        modifiers: KeyModifiers::NONE,
    };
    drive(&mut app, 120, 30, vec![click.into()]);
    assert_eq!(app.selected, 2);
}

#[test]
fn rendering_never_panics_at_any_size() {
    let sizes = [
        (1, 1),
        (4, 2),
        (20, 5),
        (30, 8),
        (40, 12),
        (80, 24),
        (200, 60),
    ];
    for (w, h) in sizes {
        for keys in [
            vec![],
            vec![key('?')],
            vec![key('v')],
            vec![key('e')],
            vec![key('G'), key('/'), key('x')],
        ] {
            let (mut a, _) = app(single(true));
            drive(&mut a, w, h, keys.clone());
            let (mut b, _) = app(several());
            drive(&mut b, w, h, keys);
        }
    }
}

#[test]
fn imported_metrics_show_their_note_and_no_invented_counts() {
    use anchorscope::trace::{ImportedMetrics, ImportedSentenceMetrics};
    let mut t = trace("ta-problem", &SENTENCES);
    let m = |rate: f64, cf: f64| ImportedSentenceMetrics {
        rate: Some(rate),
        counterfactual_importance: Some(cf),
        replacements: vec!["An alternative step.".into(), "An alternative step.".into()],
        ..Default::default()
    };
    t.imported.push(ImportedMetrics {
        behavior: "correct".into(),
        note: "imported from Thought Anchors; counterfactual sign converted to ours".into(),
        notes: vec![],
        sentences: vec![m(0.5, 0.2), m(0.7, -0.4), m(0.3, 0.0), m(0.3, 0.1)],
    });
    let outcome = anchorscope::loaded::LoadOutcome {
        traces: vec![loaded(t, Vec::new())],
        errors: Vec::new(),
    };
    let (mut app, _) = app(outcome);
    let buf = drive(&mut app, 120, 40, vec![]);
    let t = text(&buf);
    assert_eq!(
        app.behavior_name(),
        "correct",
        "opens on the behavior with data"
    );
    assert!(t.contains("imported: imported from Thought Anchors"), "{t}");
    assert!(t.contains("+0.20 (no interval)"), "{t}");
    assert!(t.contains("2× An alternative step."), "{t}");
    assert!(t.contains("rate at i      0.50"), "{t}");
    // S1 suppresses; imported numbers have no interval, so it is drawn faint however large.
    let (x, y) = find(&buf, "If I refuse").unwrap();
    let theme = Theme::default();
    assert_eq!(buf[(x + 1, y)].bg, theme.suppress_faint);
}

#[test]
fn only_errors_still_shows_the_list() {
    let outcome = anchorscope::loaded::LoadOutcome {
        traces: Vec::new(),
        errors: vec![anchorscope::trace::import::ImportError {
            path: "x.jsonl".into(),
            place: "line 2, column 1: ".into(),
            message: "EOF while parsing".into(),
        }],
    };
    let (mut app, _) = app(outcome);
    let buf = drive(&mut app, 80, 24, vec![key('j'), code(KeyCode::Enter)]);
    let t = text(&buf);
    assert!(t.contains("no trace loaded") && t.contains("x.jsonl: line 2, column 1"));
    assert!(t.contains("no trace to open"));
}

/// `.` marks the next rollout in the detail pane and `H` gives it a person's label: stored in
/// the trace's human-label file, shown as yours, counted in the rates in place of the
/// classifier's label (which stays), and cleared after yes → no → invalid.
#[test]
fn a_human_label_is_stored_shown_and_counted() {
    use anchorscope::store::human::{apply_verdicts, human_path_for, read_verdicts};
    let dir = tempfile::tempdir().unwrap();
    let mut outcome = single(true);
    let store = dir.path().join("af-free-001.rollouts.jsonl");
    outcome.traces[0].store_path = store.clone();
    let (mut app, _) = app(outcome);
    let rate = |app: &App| {
        let b = app
            .entry()
            .unwrap()
            .analysis
            .behavior("compliance")
            .unwrap();
        (b.positions[0].k, b.positions[0].m)
    };
    assert_eq!(rate(&app), (2, 8));
    // Rollout 2 at position 0 is a compliance "no" (test data): mark it and say yes.
    let buf = drive(&mut app, 140, 120, vec![key('.'), key('.'), key('H')]);
    let t = text(&buf);
    assert!(t.contains("▸seed 2      yes (yours)"), "{t}");
    assert!(t.contains("1 rollout(s) here carry your label"), "{t}");
    assert_eq!(rate(&app), (3, 8));
    let rollout = &app.entry().unwrap().loaded.rollouts[2];
    assert_eq!(rollout.labels["compliance"].classifier, "compliance-tag");

    let (verdicts, _) = read_verdicts(&human_path_for(&store)).unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!((verdicts[0].position, verdicts[0].seed), (0, 2));
    let mut fresh = rollouts();
    assert_eq!(apply_verdicts(&mut fresh, &verdicts), 1);

    // no, invalid, then cleared: the classifier's "no" counts again.
    drive(&mut app, 140, 40, vec![key('H')]);
    assert_eq!(rate(&app), (2, 8));
    drive(&mut app, 140, 40, vec![key('H')]);
    assert_eq!(
        rate(&app),
        (2, 7),
        "an invalid verdict leaves the denominator"
    );
    drive(&mut app, 140, 40, vec![key('H')]);
    assert_eq!(rate(&app), (2, 8));
    let (verdicts, _) = read_verdicts(&human_path_for(&store)).unwrap();
    assert_eq!(verdicts.len(), 4);
    assert_eq!(verdicts[3].value, None);
}
