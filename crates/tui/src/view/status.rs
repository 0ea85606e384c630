//! The status line: where you are (trace, behavior, importance kind, position) and the last
//! message; the search prompt while it is open.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};
use ratatui::Frame;

use crate::action::Action;
use crate::app::{importance_label, App, Screen};
use crate::engine_hook::format_eta;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    // While a job runs, the right part of the line is its gauge.
    let area = match (&app.jobs.running, app.prompt.is_none()) {
        (Some(_), true) if area.width >= 40 => {
            let gauge_width = (area.width * 45 / 100).min(52);
            let [rest, gauge] =
                Layout::horizontal([Constraint::Min(0), Constraint::Length(gauge_width)])
                    .areas(area);
            render_gauge(frame, gauge, app);
            rest
        }
        _ => area,
    };
    let sep = Span::styled(" │ ", t.fg(t.muted));
    if let Some(p) = &app.prompt {
        let what = match app.screen {
            Screen::List => "filter",
            Screen::Trace => "search",
        };
        let line = Line::from(vec![
            Span::styled(
                format!(" {what} /"),
                t.fg(t.focus).add_modifier(Modifier::BOLD),
            ),
            Span::raw(p.input.clone()),
            Span::styled("█", t.fg(t.focus)),
            Span::styled("  Enter confirms · Esc cancels", t.fg(t.muted)),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let mut spans = vec![];
    match app.screen {
        Screen::List => {
            spans.push(Span::styled(
                format!(" {} traces", app.traces.len()),
                t.fg(t.title).add_modifier(Modifier::BOLD),
            ));
            if !app.list_filter.is_empty() {
                spans.push(sep.clone());
                spans.push(Span::raw(format!("filter: {}", app.list_filter)));
            }
        }
        Screen::Trace => {
            if let Some(e) = app.entry() {
                let n = e.loaded.trace.sentences.len();
                spans.push(Span::styled(
                    format!(" {}", e.loaded.trace.id),
                    t.fg(t.title).add_modifier(Modifier::BOLD),
                ));
                spans.push(sep.clone());
                let behavior = if app.two_behavior {
                    let (a, b) = app.behavior_pair();
                    let name = |i: usize| {
                        e.analysis
                            .behaviors
                            .get(i)
                            .map_or("–", |b| b.behavior.as_str())
                    };
                    format!("{} | {}", name(a), name(b))
                } else {
                    app.behavior_name()
                };
                spans.push(Span::raw(behavior));
                spans.push(sep.clone());
                spans.push(Span::raw(importance_label(app.importance)));
                spans.push(sep.clone());
                let pos = if n == 0 { 0 } else { app.selected + 1 };
                spans.push(Span::raw(format!("{pos}/{n}")));
            }
        }
    }
    let location: usize = spans.iter().map(Span::width).sum();
    let message = match &app.status {
        // The engine's messages (loading, installing) yield to the location, cut to fit.
        Some(m) if m.from_engine => Span::styled(
            fit(&m.text, (area.width as usize).saturating_sub(location + 3)),
            if m.is_error {
                t.fg(t.error)
            } else {
                t.fg(t.muted)
            },
        ),
        Some(m) => Span::styled(
            m.text.clone(),
            if m.is_error {
                t.fg(t.error)
            } else {
                t.fg(t.ok)
            },
        ),
        None => Span::styled(
            format!("{} help", app.keymap.hint(&Action::Help)),
            t.fg(t.muted),
        ),
    };
    // A message that would not fit keeps only the first field (trace id / count) beside it.
    if location + 3 + message.width() > area.width as usize && spans.len() > 1 {
        spans.truncate(1);
    }
    spans.push(sep);
    spans.push(message);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `12/32 · 150 tok/s · ETA 1m05s ━━━━────`: the running job's progress.
fn render_gauge(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let (label, ratio) = match &app.jobs.progress {
        Some(p) => {
            let mut label = format!(" {}/{} · {:.0} tok/s", p.done, p.total, p.tokens_per_s);
            if let Some(eta) = p.eta_s {
                label.push_str(&format!(" · ETA {}", format_eta(eta)));
            }
            (label, p.ratio())
        }
        None => (" starting…".to_string(), 0.0),
    };
    let gauge = LineGauge::default()
        .ratio(ratio)
        .label(Span::styled(label, t.fg(t.focus)))
        .filled_style(t.fg(t.ok))
        .unfilled_style(t.fg(t.muted));
    frame.render_widget(gauge, area);
}

/// `text` cut to `width` characters with an ellipsis.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
