//! Screen geometry: where the text, chart and detail panes go for a given terminal size.

use ratatui::layout::{Constraint, Layout, Rect};

/// Main area and the one-line status bar at the bottom.
pub fn split_status(area: Rect) -> (Rect, Rect) {
    let [main, status] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    (main, status)
}

/// The trace view's panes; `chart`/`detail` are empty when the terminal is too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePanes {
    pub text: Rect,
    pub chart: Rect,
    pub detail: Rect,
}

/// Wide terminals: text left, chart over detail right. Narrow (e.g. 80×24): text on top,
/// chart and detail side by side below. Tiny: text only.
pub fn trace_panes(area: Rect) -> TracePanes {
    let empty = Rect::new(area.x, area.y, 0, 0);
    if area.width >= 110 && area.height >= 16 {
        let [text, right] =
            Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
                .areas(area);
        let [chart, detail] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);
        TracePanes {
            text,
            chart,
            detail,
        }
    } else if area.height >= 16 && area.width >= 40 {
        let [text, bottom] =
            Layout::vertical([Constraint::Percentage(48), Constraint::Percentage(52)]).areas(area);
        let [chart, detail] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(bottom);
        TracePanes {
            text,
            chart,
            detail,
        }
    } else {
        TracePanes {
            text: area,
            chart: empty,
            detail: empty,
        }
    }
}

/// A centered rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_stacks_and_wide_splits() {
        let p = trace_panes(Rect::new(0, 0, 80, 23));
        assert!(p.text.width == 80 && p.chart.y > p.text.y);
        let p = trace_panes(Rect::new(0, 0, 160, 40));
        assert!(p.chart.x > p.text.x && p.detail.y > p.chart.y);
        let p = trace_panes(Rect::new(0, 0, 20, 4));
        assert_eq!(p.chart.width, 0);
    }
}
