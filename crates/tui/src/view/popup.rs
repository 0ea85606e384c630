//! The export popup: pick a format; the file goes beside the trace.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::layout::centered;
use crate::app::{export_path, App, EXPORT_FORMATS};

pub fn render_export(frame: &mut Frame, area: Rect, app: &App, selected: usize) {
    let t = &app.theme;
    let Some(entry) = app.entry() else { return };
    let mut lines = Vec::new();
    for (i, f) in EXPORT_FORMATS.iter().enumerate() {
        let path = export_path(&entry.loaded.path, &entry.loaded.trace.id, *f);
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
