//! The export popup: pick a format; the file goes beside the trace.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::layout::centered;
use crate::app::{export_path, App, Confirm, EXPORT_FORMATS};

pub fn render_export(frame: &mut Frame, area: Rect, app: &App, selected: usize) {
    let t = &app.theme;
    let Some(entry) = app.entry() else { return };
    let mut lines = Vec::new();
    for (i, f) in EXPORT_FORMATS.iter().enumerate() {
        let path = export_path(
            &app.export_dir,
            &entry.loaded.path,
            &entry.loaded.trace.id,
            *f,
        );
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let style = if i == selected {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {} ", i + 1), t.fg(t.focus)),
            Span::styled(format!("{:<5} → {name} ", f.extension()), style),
        ]));
    }
    lines.push(Line::styled(
        format!(" into {}", app.export_dir.display()),
        t.fg(t.muted),
    ));
    lines.push(Line::styled(
        " Enter/1-4 writes · Esc cancels",
        t.fg(t.muted),
    ));
    let width = lines.iter().map(Line::width).max().unwrap_or(30) as u16 + 2;
    let popup = centered(area, width.max(34), lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(Span::styled(
                    " export ",
                    t.fg(t.title).add_modifier(Modifier::BOLD),
                ))
                .border_style(t.border_style(true)),
        ),
        popup,
    );
}

/// The job list (`J`): the running job with its progress, then the queued ones.
pub fn render_jobs(frame: &mut Frame, area: Rect, app: &App, selected: usize) {
    let t = &app.theme;
    let listing = app.jobs.listing();
    let mut lines = Vec::new();
    if listing.is_empty() {
        lines.push(Line::styled(" no job running or queued", t.fg(t.muted)));
    }
    let selected = selected.min(listing.len().saturating_sub(1));
    let states: Vec<String> = listing
        .iter()
        .enumerate()
        .map(|(k, (_, _, _, progress))| job_state(k, *progress))
        .collect();
    let state_w = states.iter().map(|s| s.chars().count()).max().unwrap_or(0);
    for (k, (id, _, what, _)) in listing.iter().enumerate() {
        let state = &states[k];
        let style = if k == selected {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {id:>3} "), t.fg(t.focus)),
            Span::styled(format!("{state:<state_w$} "), style),
            Span::raw(format!("{what} ")),
        ]));
        lines.extend(adaptive_job_lines(app, *id));
    }
    lines.push(Line::styled(
        format!(
            " {} cancels the selected job (stored rollouts stay) · Esc closes",
            app.keymap.hint(&crate::action::Action::Cancel)
        ),
        t.fg(t.muted),
    ));
    let width = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 2;
    let popup = centered(area, width.max(40), lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(Span::styled(
                    " jobs ",
                    t.fg(t.title).add_modifier(Modifier::BOLD),
                ))
                .border_style(t.border_style(true)),
        ),
        popup,
    );
}

/// Under an adaptive job that has looked at its first round: what it decided and saved, the
/// round and the importance that decides, and the engine's notes on how it decided.
fn adaptive_job_lines(app: &App, id: anchorscope_engine::JobId) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(a) = app.jobs.adaptive().filter(|_| app.jobs.is_current(id)) else {
        return Vec::new();
    };
    let indent = "      ";
    let mut lines = vec![
        Line::from(format!("{indent}adaptive: {}", crate::adaptive::summary(a))),
        Line::styled(
            format!(
                "{indent}round {} · {} importance decides",
                a.round,
                crate::app::importance_label(a.importance)
            ),
            t.fg(t.muted),
        ),
    ];
    for note in &a.notes {
        lines.push(Line::styled(format!("{indent}note: {note}"), t.fg(t.muted)));
    }
    lines
}

/// "running 3/32 · 120 tok/s · ETA 42s", "starting…" or "queued #k".
fn job_state(k: usize, progress: Option<&crate::engine_hook::JobProgress>) -> String {
    match progress {
        Some(p) if p.total > 0 => {
            let mut s = format!(
                "running {}/{} · {:.0} tok/s",
                p.done, p.total, p.tokens_per_s
            );
            if let Some(eta) = p.eta_s {
                s.push_str(&format!(" · ETA {}", crate::engine_hook::format_eta(eta)));
            }
            s
        }
        Some(_) => "starting…".to_string(),
        None => format!("queued #{k}"),
    }
}

/// A yes/no question.
pub fn render_confirm(frame: &mut Frame, area: Rect, app: &App, question: &Confirm) {
    let t = &app.theme;
    let (title, mut text) = match question {
        Confirm::Quit => {
            let running = app.jobs.unsampled();
            let queued = app.jobs.queue.len();
            let mut s = format!(
                "A job is sampling: up to {running} rollout(s) not stored yet would be lost \
                 (every stored rollout is kept)."
            );
            if app.jobs.running.is_none() {
                s = String::new();
            }
            if queued > 0 {
                s.push_str(&format!(
                    " {queued} queued job(s) (up to {} rollouts) would not run.",
                    app.jobs.queued_rollouts()
                ));
            }
            (" quit? ", s.trim().to_string())
        }
        Confirm::Resample { reasons, .. } => (" resample anyway? ", reasons.join("\n\n")),
        Confirm::Intervene { reasons, .. } => (" intervene anyway? ", reasons.join("\n\n")),
    };
    text.push_str("\n\ny / Enter: yes · any other key: no");
    let width = (area.width.saturating_sub(4)).min(72);
    let inner_w = width.saturating_sub(2);
    let lines: Vec<Line> = text.lines().map(|l| Line::from(l.to_string())).collect();
    let height = Paragraph::new(lines.clone())
        .wrap(ratatui::widgets::Wrap { trim: false })
        .line_count(inner_w) as u16
        + 2;
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(Span::styled(
                        title,
                        t.fg(t.error).add_modifier(Modifier::BOLD),
                    ))
                    .border_style(t.fg(t.error)),
            ),
        popup,
    );
}
