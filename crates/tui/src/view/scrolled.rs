//! A bordered, wrapped, scrollable text popup that stops where its last line reaches the
//! bottom (the offset it drew with and the last useful one go back in [`Hits`]).

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Hits};

/// The last useful scroll offset of `lines` wrapped into `width` × `height`.
pub fn max_scroll(lines: &[Line], width: u16, height: u16) -> u16 {
    let total = Paragraph::new(lines.to_vec())
        .wrap(Wrap { trim: false })
        .line_count(width);
    (total as u16).saturating_sub(height)
}

/// Draw `lines` in a bordered popup over `area`, from line `scroll` (clamped to the end).
pub fn render(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    title: String,
    lines: Vec<Line<'static>>,
    scroll: u16,
    hits: &mut Hits,
) {
    let t = &app.theme;
    let block = Block::bordered()
        .title(Span::styled(
            title,
            t.fg(t.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(t.border_style(true));
    let inner = block.inner(area);
    let max = max_scroll(&lines, inner.width, inner.height);
    let scroll = scroll.min(max);
    hits.popup_scroll = scroll;
    hits.popup_max_scroll = Some(max);
    if max > 0 {
        let at = format!(" {}/{} ", scroll + 1, max + 1);
        let block = block.title_bottom(Line::styled(at, t.fg(t.muted)).right_aligned());
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0))
                .block(block),
            area,
        );
    } else {
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
    }
}

/// A popup rectangle that leaves a margin of the screen around it (all of it when small).
pub fn large(area: Rect) -> Rect {
    let (mx, my) = if area.width >= 100 { (4, 2) } else { (0, 0) };
    Rect::new(
        area.x + mx,
        area.y + my,
        area.width.saturating_sub(2 * mx),
        area.height.saturating_sub(2 * my),
    )
}
