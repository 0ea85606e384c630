//! The trace list: one row per loaded trace with summary columns, the filter, and the files
//! that failed to load.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::wrap::truncate;
use crate::app::{anchor_count, largest_delta, App, Hits};

/// A model name without its directory (manifests name the file path in parentheses).
fn short_model(model: &str) -> &str {
    let name = model.split(" (").next().unwrap_or(model);
    name.rsplit('/').next().unwrap_or(name)
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
    let mut title = if app.list_filter.is_empty() {
        format!(" traces ({})", app.traces.len())
    } else {
        format!(
            " traces ({}/{}) · filter: {}",
            visible.len(),
            app.traces.len(),
            app.list_filter
        )
    };
    title.push_str(&format!(
        " · columns: {} ({}) · sort: {} ",
        app.list_behavior_name(),
        crate::app::importance_label(app.importance),
        app.sort.describe()
    ));
    let block = Block::bordered()
        .title(Span::styled(
            title,
            t.fg(t.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(t.border_style(true));
    let inner = block.inner(table_area);

    let behavior = app.list_behavior_name();
    let sorted = app.sort.header();
    let head = |h: &'static str| {
        let mut style = t.fg(t.muted).add_modifier(Modifier::BOLD);
        if sorted == Some(h) {
            style = t
                .fg(t.focus)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        }
        Cell::from(h).style(style)
    };
    let header = Row::new([
        Cell::from(""),
        head("trace"),
        head("tier"),
        head("outcome"),
        head("sig."),
        head("max|Δ|"),
        head("rollouts"),
        head("sent."),
        head("model"),
    ]);
    // Ids are never cut (two traces must never look alike): the column is as wide as the
    // longest id up to half the table, and a longer id wraps onto more lines of its row.
    let longest = visible
        .iter()
        .map(|&i| app.traces[i].loaded.trace.id.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    // The other columns' fixed widths and spacing, and at least 8 for the model.
    let others = 1 + 4 + 7 + 4 + 6 + 8 + 5 + 8 + 8;
    let id_w = longest.min((inner.width as usize).saturating_sub(others).max(12));
    let kind = app.importance;
    let mut heights = Vec::with_capacity(visible.len());
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
            let id_lines: Vec<Line> = tr
                .id
                .chars()
                .collect::<Vec<char>>()
                .chunks(id_w.max(1))
                .map(|c| Line::from(c.iter().collect::<String>()))
                .collect();
            let height = id_lines.len().max(1) as u16;
            heights.push(height);
            let sig = anchor_count(e, &behavior, kind);
            let largest = largest_delta(e, &behavior, kind)
                .map_or_else(|| "–".to_string(), |d| format!("{d:.2}"));
            let mark = if app.marked == Some(i) { "◆" } else { " " };
            Row::new(vec![
                Cell::from(mark).style(t.fg(t.focus)),
                Cell::from(ratatui::text::Text::from(id_lines)),
                Cell::from(tr.meta.get("tier").cloned().unwrap_or_else(|| "–".into())),
                Cell::from(e.outcome_of(&behavior).unwrap_or("–")),
                Cell::from(Line::from(sig.to_string()).right_aligned()),
                Cell::from(Line::from(largest).right_aligned()),
                Cell::from(Line::from(e.loaded.rollouts.len().to_string()).right_aligned()),
                Cell::from(Line::from(tr.sentences.len().to_string()).right_aligned()),
                Cell::from(e.model().map_or("–", short_model).to_string()),
            ])
            .height(height)
            .style(style)
        })
        .collect();
    // Row rectangles for the mouse: header is one line, then each row's height.
    let mut y = inner.y + 1;
    for (&i, &h) in visible.iter().zip(&heights) {
        if y >= inner.y + inner.height {
            break;
        }
        let h = h.min(inner.y + inner.height - y);
        hits.list_rows
            .push((Rect::new(inner.x, y, inner.width, h), i));
        y += h;
    }
    let widths = [
        Constraint::Length(1),
        Constraint::Length(id_w as u16),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Fill(1),
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
