//! The trace list: one row per loaded trace with summary columns, the filter, and the files
//! that failed to load.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::wrap::truncate;
use crate::app::{App, Hits, TraceEntry};
use anchorscope_core::analysis::MetricSource;

/// Behaviors with data (rollout labels or imported metrics), comma-separated, or "–".
pub fn behaviors_with_data(e: &TraceEntry) -> String {
    let names: Vec<&str> = e
        .analysis
        .behaviors
        .iter()
        .filter(|b| match b.source {
            MetricSource::Rollouts => b.positions.iter().any(|r| r.m > 0),
            MetricSource::Imported { .. } => true,
        })
        .map(|b| b.behavior.as_str())
        .collect();
    if names.is_empty() {
        "–".to_string()
    } else {
        names.join(", ")
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let t = &app.theme;
    let err_h = if app.errors.is_empty() {
        0
    } else {
        (app.errors.len() as u16 + 2).min(area.height / 3).max(3)
    };
    let [table_area, err_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(err_h)]).areas(area);

    let visible = app.visible_traces();
    let title = if app.list_filter.is_empty() {
        format!(" traces ({}) ", app.traces.len())
    } else {
        format!(
            " traces ({}/{}) · filter: {} ",
            visible.len(),
            app.traces.len(),
            app.list_filter
        )
    };
    let block = Block::bordered()
        .title(Span::styled(
            title,
            t.fg(t.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(t.border_style(true));
    let inner = block.inner(table_area);

    let header = Row::new(
        [
            "trace",
            "format",
            "model",
            "tier",
            "sent.",
            "rollouts",
            "behaviors",
        ]
        .map(|h| Cell::from(h).style(t.fg(t.muted).add_modifier(Modifier::BOLD))),
    );
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .map(|(row, &i)| {
            let e = &app.traces[i];
            let tr = &e.loaded.trace;
            let style = if row == app.list_selected {
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(tr.id.clone()),
                Cell::from(tr.source.label()),
                Cell::from(tr.model.clone().unwrap_or_else(|| "–".into())),
                Cell::from(tr.meta.get("tier").cloned().unwrap_or_else(|| "–".into())),
                Cell::from(Line::from(tr.sentences.len().to_string()).right_aligned()),
                Cell::from(Line::from(e.loaded.rollouts.len().to_string()).right_aligned()),
                Cell::from(behaviors_with_data(e)),
            ])
            .style(style)
        })
        .collect();
    // Row rectangles for the mouse: header is one line, rows one line each.
    let first_row = inner.y + 1;
    for (row, &i) in visible.iter().enumerate() {
        let y = first_row + row as u16;
        if y >= inner.y + inner.height {
            break;
        }
        hits.list_rows
            .push((Rect::new(inner.x, y, inner.width, 1), i));
    }
    let widths = [
        Constraint::Fill(2),
        Constraint::Length(15),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Fill(3),
    ];
    if visible.is_empty() {
        let msg = if app.traces.is_empty() {
            "no trace loaded".to_string()
        } else {
            format!(
                "no trace matches {:?} (Esc clears the filter)",
                app.list_filter
            )
        };
        frame.render_widget(
            Paragraph::new(msg).style(t.fg(t.muted)).block(block),
            table_area,
        );
    } else {
        frame.render_widget(
            Table::new(rows, widths)
                .header(header)
                .column_spacing(1)
                .block(block),
            table_area,
        );
    }

    if err_h > 0 {
        let lines: Vec<Line> = app
            .errors
            .iter()
            .map(|e| Line::styled(truncate(e, 400), t.fg(t.error)))
            .collect();
        let block = Block::bordered()
            .title(Span::styled(
                format!(" {} file(s) failed to load ", app.errors.len()),
                t.fg(t.error).add_modifier(Modifier::BOLD),
            ))
            .border_style(t.fg(t.error));
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
            err_area,
        );
    }
}
