//! The rollout browser (`o`): every rollout of the selected sentence with its whole
//! continuation, its replacement sentence and similarity, every label with its classifier and
//! evidence, and its run. `f` / `l` filter, `y` copies the rollout under the cursor.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::scrolled;
use crate::app::RolloutKind;
use crate::app::{App, Hits, RolloutBrowser};
use anchorscope_core::trace::{LabelValue, Rollout};

pub fn render(frame: &mut Frame, area: Rect, app: &App, b: &RolloutBrowser, hits: &mut Hits) {
    let listed = app.browser_rollouts(b);
    let cursor = b.cursor.min(listed.len().saturating_sub(1));
    let (lines, starts) = browser_lines(app, &listed, cursor);
    // A cursor move asks (scroll = MAX) for its rollout at the top; paging keeps the offset.
    let scroll = if b.scroll == u16::MAX {
        starts.get(cursor).copied().unwrap_or(0) as u16
    } else {
        b.scroll
    };
    let title = format!(
        " rollouts of S{} · {} · {} {} · {}/{} · f / l filter, y copies, Esc closes ",
        app.selected,
        b.filter.describe(),
        app.behavior_name(),
        b.label.describe(),
        if listed.is_empty() { 0 } else { cursor + 1 },
        listed.len()
    );
    scrolled::render(
        frame,
        scrolled::large(area),
        app,
        title,
        lines,
        scroll,
        hits,
    );
}

fn value(v: LabelValue) -> &'static str {
    match v {
        LabelValue::Yes => "yes",
        LabelValue::No => "no",
        LabelValue::Invalid => "invalid",
    }
}

/// "after S3 deleted (PARENT~del3) · content back (cos 0.91)": the intervention a derived
/// rollout follows, and after a deletion how close its reasoning came to the deleted sentence.
fn intervened_how(app: &App, child: usize, recurrence: Option<f32>) -> String {
    let Some(trace) = app.traces.get(child).map(|e| &e.loaded.trace) else {
        return "after an intervention".into();
    };
    let edit = trace
        .derived
        .as_ref()
        .map_or_else(|| "an intervention".into(), |d| d.edit.describe());
    let mut how = format!("after {edit} ({})", trace.id);
    if let Some(sim) = recurrence {
        let threshold = app.analysis_options().similarity_threshold;
        let back = if sim >= threshold {
            "came back"
        } else {
            "did not come back"
        };
        how.push_str(&format!(" · deleted content {back} (best cos {sim:.2})"));
    }
    how
}

/// The browser's lines and the first line of each rollout.
fn browser_lines(
    app: &App,
    listed: &[(&Rollout, RolloutKind)],
    cursor: usize,
) -> (Vec<Line<'static>>, Vec<usize>) {
    let t = &app.theme;
    let muted = t.fg(t.muted);
    let head = t.fg(t.title).add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut starts = Vec::with_capacity(listed.len());
    let original = app
        .entry()
        .and_then(|e| e.loaded.trace.sentences.get(app.selected))
        .map_or(String::new(), |s| s.text.clone());
    lines.push(Line::from(vec![
        Span::styled(format!("S{} ", app.selected), muted),
        Span::raw(original),
    ]));
    if listed.is_empty() {
        lines.push(Line::styled(
            "no rollout matches (r samples this sentence; f / l change the filter)",
            muted,
        ));
        return (lines, starts);
    }
    for (k, (r, kind)) in listed.iter().enumerate() {
        lines.push(Line::from(""));
        starts.push(lines.len());
        let marker = if k == cursor { "▸ " } else { "  " };
        let how = match kind {
            RolloutKind::Kept => "kept (S_i kept)".to_string(),
            RolloutKind::Different(s) => format!("replaced, different (cos {s:.2})"),
            RolloutKind::Similar(s) => format!("replaced, similar (cos {s:.2})"),
            RolloutKind::Replaced => "replaced (no similarity recorded)".to_string(),
            RolloutKind::Intervened { child } => intervened_how(app, *child, r.recurrence),
        };
        let style = if k == cursor {
            head.add_modifier(Modifier::REVERSED)
        } else {
            head
        };
        lines.push(Line::styled(
            format!(
                "{marker}#{} · seed {} · position {} · {how} · {} tokens, {:?}",
                k + 1,
                r.seed,
                r.position,
                r.tokens,
                r.finish
            ),
            style,
        ));
        if let Some(run) = &r.run {
            lines.push(Line::styled(format!("  run {run}"), muted));
        }
        if matches!(
            kind,
            RolloutKind::Different(_) | RolloutKind::Similar(_) | RolloutKind::Replaced
        ) {
            lines.push(Line::from(vec![
                Span::styled("  T_i  ", muted),
                Span::raw(r.replacement.clone()),
            ]));
        }
        for (name, label) in &r.labels {
            lines.push(Line::from(vec![
                Span::styled(format!("  {name}: "), muted),
                Span::styled(value(label.value), t.fg(t.focus)),
                Span::styled(format!(" ({} v{})", label.classifier, label.version), muted),
            ]));
            if let Some(evidence) = &label.evidence {
                for l in evidence.lines().filter(|l| !l.trim().is_empty()) {
                    lines.push(Line::styled(format!("      {l}"), muted));
                }
            }
        }
        if r.labels.is_empty() {
            lines.push(Line::styled("  no labels", muted));
        }
        lines.push(Line::styled("  continuation", muted));
        lines.extend(r.text.lines().map(|l| Line::from(format!("  {l}"))));
    }
    (lines, starts)
}
