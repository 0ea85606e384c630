//! The context popup (`p`): what the model was given and what it answered. The system
//! prompt is collapsed to its first lines until Enter expands it; the user turn, the final
//! output after the reasoning, and an imported scenario's own text follow.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::scrolled;
use crate::app::{App, Hits};
use anchorscope_core::trace::import::SCENARIO_META;
use anchorscope_core::trace::tags;

/// System prompt lines shown while collapsed.
pub const COLLAPSED_LINES: usize = 6;

pub fn render(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    scroll: u16,
    expanded: bool,
    hits: &mut Hits,
) {
    let lines = context_lines(app, expanded);
    let title = format!(
        " context · Enter {} the system prompt · Esc closes ",
        if expanded { "collapses" } else { "expands" }
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

/// The popup's text.
pub fn context_lines(app: &App, expanded: bool) -> Vec<Line<'static>> {
    let t = &app.theme;
    let head = t.fg(t.title).add_modifier(Modifier::BOLD);
    let muted = t.fg(t.muted);
    let Some(entry) = app.entry() else {
        return vec![Line::from("no trace open")];
    };
    let trace = &entry.loaded.trace;
    let mut lines = Vec::new();
    let kv = |k: &str, v: &str| {
        Line::from(vec![
            Span::styled(format!("{k:<10} "), muted),
            Span::raw(v.to_string()),
        ])
    };
    lines.push(kv("trace", &trace.id));
    lines.push(kv("model", entry.model().unwrap_or("unknown")));
    lines.push(kv(
        "tier",
        trace.meta.get("tier").map_or("not stated", String::as_str),
    ));
    for (k, v) in trace
        .meta
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "tier" | "query") && !k.starts_with(SCENARIO_META))
    {
        lines.push(kv(k, v));
    }
    for m in &trace.prompt {
        lines.push(Line::from(""));
        let body: Vec<&str> = m.content.lines().collect();
        if m.role == "system" && !expanded && body.len() > COLLAPSED_LINES {
            lines.push(Line::styled(
                format!(
                    "system prompt ({} lines, first {COLLAPSED_LINES} shown)",
                    body.len()
                ),
                head,
            ));
            lines.extend(
                body[..COLLAPSED_LINES]
                    .iter()
                    .map(|l| Line::from(l.to_string())),
            );
            lines.push(Line::styled(
                format!(
                    "… {} more lines (Enter expands)",
                    body.len() - COLLAPSED_LINES
                ),
                muted,
            ));
        } else {
            let role = match m.role.as_str() {
                "system" => "system prompt".to_string(),
                "user" => "user turn".to_string(),
                other => format!("{other} turn"),
            };
            lines.push(Line::styled(role, head));
            lines.extend(body.iter().map(|l| Line::from(l.to_string())));
        }
    }
    if trace.prompt.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::styled("no prompt stored with this trace", muted));
    }
    let scenario: Vec<(&String, &String)> = trace
        .meta
        .iter()
        .filter(|(k, _)| k.starts_with(SCENARIO_META))
        .collect();
    if !scenario.is_empty() {
        lines.push(Line::from(""));
        let name = trace.meta.get("scenario").map_or("", String::as_str);
        lines.push(Line::styled(format!("scenario {name}"), head));
        for (k, v) in scenario {
            lines.push(Line::styled(
                k.trim_start_matches(SCENARIO_META).to_string(),
                muted,
            ));
            lines.extend(v.lines().map(|l| Line::from(l.to_string())));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        format!(
            "reasoning: {} sentences (in the text pane)",
            trace.sentences.len()
        ),
        muted,
    ));
    lines.push(Line::from(""));
    let output = tags::final_output(&trace.response).trim();
    lines.push(Line::styled("final output (after the reasoning)", head));
    if output.is_empty() {
        lines.push(Line::styled(
            "none: the response ends inside the reasoning",
            muted,
        ));
    } else {
        lines.extend(output.lines().map(|l| Line::from(l.to_string())));
    }
    lines
}
