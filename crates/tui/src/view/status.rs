//! The status line: where you are (trace, behavior, importance kind, position) and the last
//! message; the search prompt while it is open.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};
use ratatui::Frame;

use crate::action::Action;
use crate::app::{importance_label, App, PromptPurpose, Screen};
use crate::engine_hook::format_eta;
use anchorscope_engine::AdaptiveProgress;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    // The right end always names the engine and model; while a job runs the gauge sits left
    // of it. Both get their room first: the location and message take what is left.
    let wide = area.width >= 120;
    let engine = format!(
        " {} ",
        fit_keeping_end(&app.engine_label(), if wide { 40 } else { 24 })
    );
    let engine_w = (engine.chars().count() as u16).min(area.width / 3);
    // Narrow: a compact gauge (done/total and ETA), so a message still has room.
    let gauge_w = match (app.jobs.running.is_some(), app.prompt.is_none()) {
        (true, true) if wide => (area.width * 40 / 100).min(52),
        (true, true) if area.width >= 40 => 22,
        _ => 0,
    };
    let [rest, gauge, model] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(gauge_w),
        Constraint::Length(engine_w),
    ])
    .areas(area);
    if gauge_w > 0 {
        render_gauge(frame, gauge, app);
    }
    let model_style = match app.engine_view.state.as_ref() {
        Some(s) if s.is_error() => t.fg(t.error),
        _ => t.fg(t.muted).add_modifier(Modifier::REVERSED),
    };
    frame.render_widget(Paragraph::new(Span::styled(engine, model_style)), model);
    let area = rest;
    let sep = Span::styled(" │ ", t.fg(t.muted));
    if let Some(p) = &app.prompt {
        let (what, hint) = match (p.purpose, app.screen) {
            (PromptPurpose::Rewrite { sentence }, _) => (
                format!(" rewrite S{sentence} › "),
                "  Enter samples · Ctrl-E $EDITOR · Esc cancels",
            ),
            (PromptPurpose::Search, Screen::List) => {
                (" filter /".to_string(), "  Enter confirms · Esc cancels")
            }
            (PromptPurpose::Search, _) => {
                (" search /".to_string(), "  Enter confirms · Esc cancels")
            }
        };
        // A long rewrite shows its end, where the typing happens.
        let room = (area.width as usize)
            .saturating_sub(what.chars().count() + hint.chars().count() + 1)
            .max(8);
        let line = Line::from(vec![
            Span::styled(what, t.fg(t.focus).add_modifier(Modifier::BOLD)),
            Span::raw(tail_chars(&p.input, room)),
            Span::styled("█", t.fg(t.focus)),
            Span::styled(hint, t.fg(t.muted)),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let mut spans = vec![];
    match app.screen {
        Screen::Compare => {
            if let Some(v) = &app.compare {
                spans.push(Span::styled(
                    format!(" {} ⟷ {}", v.comparison.a.id, v.comparison.b.id),
                    t.fg(t.title).add_modifier(Modifier::BOLD),
                ));
                spans.push(sep.clone());
                spans.push(Span::raw(format!(
                    "row {}/{}",
                    v.row + 1,
                    v.comparison.pairs.len()
                )));
            }
        }
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
                let pos = if n == 0 { 0 } else { app.selected + 1 };
                spans.push(Span::raw(format!("{pos}/{n}")));
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
    // Too long for the line: the help hint goes first; a real message keeps the trace id and
    // position beside it, then the id alone.
    let fits = |spans: &[Span], message: &Span| {
        spans.iter().map(Span::width).sum::<usize>() + 3 + message.width() <= area.width as usize
    };
    let message = if app.status.is_none() && !fits(&spans, &message) {
        Span::raw("")
    } else {
        message
    };
    if !fits(&spans, &message) && spans.len() > 3 {
        spans.truncate(3);
    }
    if !fits(&spans, &message) && spans.len() > 1 {
        spans.truncate(1);
    }
    // Still too long: the message alone (the trace id is in the pane's title), cut to fit.
    if !fits(&spans, &message) && app.status.is_some() {
        let style = message.style;
        let text = fit(&message.content, (area.width as usize).saturating_sub(1));
        frame.render_widget(
            Paragraph::new(Line::from(vec![Span::raw(" "), Span::styled(text, style)])),
            area,
        );
        return;
    }
    spans.push(sep);
    spans.push(message);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `12/32 · 150 tok/s · ETA 1m05s ━━━━────`: the running job's progress.
fn render_gauge(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let queued = app.jobs.queue.len();
    let (label, ratio) = match (app.jobs.adaptive(), app.jobs.progress()) {
        // An adaptive sweep's rounds grow its total: sentences resolved say more.
        (Some(a), _) => adaptive_gauge(a, area.width as usize, queued),
        (None, Some(p)) => {
            let compact = area.width < 30;
            let mut label = if compact {
                format!(" {}/{}", p.done, p.total)
            } else {
                format!(" {}/{} · {:.0} tok/s", p.done, p.total, p.tokens_per_s)
            };
            if let Some(eta) = p.eta_s {
                label.push_str(&format!(" · ETA {}", format_eta(eta)));
            }
            if queued > 0 {
                label.push_str(&if compact {
                    format!(" +{queued}")
                } else {
                    format!(" · +{queued} queued")
                });
            }
            (label, p.ratio())
        }
        (None, None) => (" starting…".to_string(), 0.0),
    };
    let gauge = LineGauge::default()
        .ratio(ratio)
        .label(Span::styled(label, t.fg(t.focus)))
        .filled_style(t.fg(t.ok))
        .unfilled_style(t.fg(t.muted));
    frame.render_widget(gauge, area);
}

/// `adaptive: 31/40 resolved · 1,240 vs 4,100 (70% saved)` down to `31/40`, the longest that
/// leaves some of the line in `width`; the ratio is the share of sentences resolved.
fn adaptive_gauge(a: &AdaptiveProgress, width: usize, queued: usize) -> (String, f64) {
    let room = width.saturating_sub(3);
    let labels = crate::adaptive::gauge_labels(a);
    let mut label = labels
        .iter()
        .find(|l| l.chars().count() <= room)
        .or(labels.last())
        .cloned()
        .unwrap_or_default();
    let more = format!(" +{queued}");
    if queued > 0 && label.chars().count() + more.len() <= room {
        label.push_str(&more);
    }
    let ratio = if a.total == 0 {
        1.0
    } else {
        (a.resolved as f64 / a.total as f64).clamp(0.0, 1.0)
    };
    (label, ratio)
}

/// `text` cut to `width` characters in the middle, keeping its last word (the device).
fn fit_keeping_end(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    let tail_len = text
        .rsplit_once(' ')
        .map_or(0, |(_, t)| t.chars().count() + 1)
        .min(width / 2);
    let head_len = width.saturating_sub(tail_len + 1);
    let head: String = chars[..head_len].iter().collect();
    let tail: String = chars[chars.len() - tail_len..].iter().collect();
    format!("{head}…{tail}")
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

/// The last `n` characters of `text`, with `…` in front when cut.
fn tail_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    if count <= n {
        return text.to_string();
    }
    let skip = count - n.saturating_sub(1);
    format!("…{}", text.chars().skip(skip).collect::<String>())
}
