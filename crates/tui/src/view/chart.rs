//! The rate-by-position chart (the post's Figure 1): each behavior's rate over positions
//! 0..=n with its Wilson 95% band drawn as dotted lo/hi lines, and a marker at the selected
//! sentence.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Pane};
use anchorscope_core::analysis::{BehaviorAnalysis, MetricSource};

/// Points of one behavior: (rate, lower band, upper band).
pub type Series = (Vec<(f64, f64)>, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// The rate and Wilson band points of a behavior; undefined positions are left out.
pub fn series(b: &BehaviorAnalysis, positions: usize) -> Series {
    let mut rate = Vec::new();
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    for p in 0..positions {
        if let Some(v) = b.rate_value(p) {
            rate.push((p as f64, v));
        }
        if matches!(b.source, MetricSource::Rollouts) {
            if let Some(iv) = b.positions.get(p).and_then(|r| r.wilson()) {
                lo.push((p as f64, iv.lo));
                hi.push((p as f64, iv.hi));
            }
        }
    }
    (rate, lo, hi)
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Pane::Chart;
    let wide = area.width >= 48;
    let title = if wide {
        " rate by position · 95% Wilson band "
    } else {
        " rate · 95% band "
    };
    let block = Block::bordered()
        .title(Span::styled(
            title,
            app.theme.fg(app.theme.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(app.theme.border_style(focused));
    let Some(entry) = app.entry() else {
        frame.render_widget(block, area);
        return;
    };
    let positions = entry.loaded.trace.positions();
    let all: Vec<(usize, Series)> = entry
        .analysis
        .behaviors
        .iter()
        .enumerate()
        .map(|(i, b)| (i, series(b, positions)))
        .filter(|(_, s)| !s.0.is_empty())
        .collect();
    if all.is_empty() {
        let msg = vec![
            Line::from("no rollouts yet: rates by position"),
            Line::from("appear once positions are resampled."),
        ];
        frame.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .style(app.theme.fg(app.theme.muted))
                .block(block),
            area,
        );
        return;
    }

    let x_max = (positions.saturating_sub(1)).max(1) as f64;
    let sel = app.selected as f64 + 0.5;
    let marker_pts = [(sel, 0.0), (sel, 1.0)];
    let mut datasets = Vec::new();
    // Our own key in the bottom border: ratatui's legend box hides on small charts.
    let mut key: Vec<Span> = Vec::new();
    for (i, (rate, lo, hi)) in &all {
        let name = entry.analysis.behaviors[*i].behavior.clone();
        let color = app.theme.behavior_color(*i);
        let mut style = app.theme.fg(color);
        if *i == app.behavior_index() {
            style = style.add_modifier(Modifier::BOLD);
        }
        datasets.push(
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(app.theme.fg(color))
                .data(lo),
        );
        datasets.push(
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(app.theme.fg(color))
                .data(hi),
        );
        let shown = if wide {
            name.as_str()
        } else {
            short_name(&name)
        };
        key.push(Span::styled(format!(" ━ {shown}"), style));
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(style)
                .data(rate),
        );
    }
    datasets.push(
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(app.theme.fg(app.theme.focus))
            .data(&marker_pts),
    );
    let axis_style = app.theme.fg(app.theme.muted);
    let mid = format!("{}", (x_max / 2.0).round());
    key.push(Span::styled(
        format!(" ┊ S{} ", app.selected),
        app.theme.fg(app.theme.focus),
    ));
    if wide && all.iter().any(|(_, (_, lo, _))| !lo.is_empty()) {
        key.push(Span::styled("• band ", app.theme.fg(app.theme.muted)));
    }
    let chart = Chart::new(datasets)
        .block(block.title_bottom(Line::from(key)))
        .x_axis(
            Axis::default()
                .bounds([0.0, x_max])
                .style(axis_style)
                .labels(vec![
                    Line::from("0"),
                    Line::from(mid),
                    Line::from(format!("{}", x_max as usize)),
                ]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 1.0])
                .style(axis_style)
                .labels(vec![Line::from("0"), Line::from(".5"), Line::from("1")]),
        );
    frame.render_widget(chart, area);
}

/// A short name for a small chart's key: "AF" for alignment faking, else the name cut at 10.
fn short_name(name: &str) -> &str {
    if name == anchorscope_core::behavior::ALIGNMENT_FAKING {
        return "AF";
    }
    match name.char_indices().nth(10) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorscope_core::analysis::{Rate, SentenceMetrics};

    #[test]
    fn series_skips_undefined_positions_and_has_wilson_band() {
        let b = BehaviorAnalysis {
            behavior: "x".into(),
            source: MetricSource::Rollouts,
            positions: vec![Rate::new(1, 2), Rate::new(0, 0), Rate::new(4, 4)],
            imported_rates: Vec::new(),
            invalid: Vec::new(),
            sentences: Vec::<SentenceMetrics>::new(),
        };
        let (rate, lo, hi) = series(&b, 3);
        assert_eq!(rate, vec![(0.0, 0.5), (2.0, 1.0)]);
        assert_eq!(lo.len(), 2);
        assert!(lo[0].1 < 0.5 && hi[0].1 > 0.5);
    }
}
