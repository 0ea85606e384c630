//! The `?` popup, generated from the live key map so it never drifts from the bindings.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::layout::centered;
use super::trace::legend;
use crate::app::{App, Hits};

pub fn render(frame: &mut Frame, area: Rect, app: &App, scroll: u16, hits: &mut Hits) {
    let t = &app.theme;
    let rows = app.keymap.help_rows();
    let key_w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(4)
        .max(6);
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|(keys, desc)| {
            Line::from(vec![
                Span::styled(
                    format!(" {keys:<key_w$}  "),
                    t.fg(t.focus).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*desc),
            ])
        })
        .collect();
    lines.push(Line::from(vec![
        Span::styled(format!(" {:<key_w$}  ", "mouse"), t.fg(t.focus)),
        Span::raw("click selects a sentence/row · wheel scrolls"),
    ]));
    for (k, text) in adaptive_help(app).into_iter().enumerate() {
        let key = if k == 0 { "adaptive" } else { "" };
        lines.push(Line::from(vec![
            Span::styled(format!(" {key:<key_w$}  "), t.fg(t.focus)),
            Span::raw(text),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(legend(t, 80));
    lines.push(Line::styled(
        format!(" {}", crate::adaptive::MARKER_LEGEND),
        t.fg(t.muted),
    ));
    lines.push(Line::styled(
        " keys are set in [keys] of the config file",
        t.fg(t.muted),
    ));
    let width = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 2;
    let height = lines.len() as u16 + 2;
    let popup = centered(area, width, height);
    // Taller than the screen: it scrolls (j/k, PageUp/PageDown) and says where it is.
    super::scrolled::render(
        frame,
        popup,
        app,
        " help · j/k scroll · Esc or q closes ".to_string(),
        lines,
        scroll,
        hits,
    );
}

/// What `R` does under this config, and how `A` differs (two lines, as narrow as the rows).
fn adaptive_help(app: &App) -> [String; 2] {
    use crate::action::Action;
    let settings = app.adaptive_settings();
    let (r, a) = (
        app.keymap.hint(&Action::ResampleAll),
        app.keymap.hint(&Action::AdaptiveAll),
    );
    let first = if app.adaptive_by_default() {
        format!("[sampling] adaptive = true: {r} sweeps adaptively, as {a} does")
    } else {
        format!(
            "[sampling] adaptive = false: {r} samples {} at every position",
            crate::app::INTERACTIVE_ROLLOUTS
        )
    };
    let second = format!(
        "{a}: n_max {}, round {} ([sampling.adaptive_settings])",
        settings.n_max, settings.round
    );
    [first, second]
}
