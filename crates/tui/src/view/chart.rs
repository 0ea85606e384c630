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
use anchorscope_core::trace::intervention::tier_name;

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

/// One drawn curve: its key text, its color, whether it is the emphasised one, its points.
struct Curve {
    key: String,
    color: ratatui::style::Color,
    bold: bool,
    series: Series,
    /// How the rate line is drawn (the swapped tier's differs when colors cannot tell).
    marker: Marker,
}

/// The shown behavior's curve under the original tier and under the swapped one, when the open
/// trace's tier swap (`t` / `T`) has rollouts for it; None otherwise.
fn tier_curves(app: &App, positions: usize, wide: bool) -> Option<Vec<Curve>> {
    let entry = app.entry()?;
    let child = &app.traces[crate::interventions::tier_child(app, app.current)?];
    let name = app.behavior_name();
    let find = |e: &crate::app::TraceEntry| {
        e.analysis
            .behaviors
            .iter()
            .find(|b| b.behavior == name)
            .map(|b| series(b, positions))
    };
    let swapped = find(child).filter(|s| !s.0.is_empty())?;
    let original = find(entry).unwrap_or_default();
    let tier = |free: Option<bool>| free.map_or("?", tier_name);
    let ours = anchorscope_core::trace::intervention::tier_of(&entry.loaded.trace.prompt);
    let theirs = anchorscope_core::trace::intervention::tier_of(&child.loaded.trace.prompt);
    let label = if wide {
        name.as_str()
    } else {
        short_name(&name)
    };
    let color = app.theme.behavior_color(app.behavior_index());
    let other = app.theme.behavior_color(app.behavior_index() + 1);
    Some(vec![
        Curve {
            key: format!("{label} · {}", tier(ours)),
            color,
            bold: true,
            series: original,
            marker: Marker::Braille,
        },
        Curve {
            key: format!("{label} · {} (swapped)", tier(theirs)),
            color: other,
            bold: true,
            series: swapped,
            // One color for both (NO_COLOR, a one-color theme): a heavier line tells them apart.
            marker: if other == color {
                Marker::Block
            } else {
                Marker::Braille
            },
        },
    ])
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Pane::Chart;
    let wide = area.width >= 48;
    let Some(entry) = app.entry() else {
        frame.render_widget(
            Block::bordered().border_style(app.theme.border_style(focused)),
            area,
        );
        return;
    };
    let positions = entry.loaded.trace.positions();
    // A tier swap of this trace draws the shown behavior under both tiers: the gap at each
    // position is the part of the tier effect the text so far does not carry.
    let tiers = tier_curves(app, positions, wide);
    let title = match (&tiers, wide) {
        (Some(_), true) => " rate under both tiers · 95% Wilson band ",
        (Some(_), false) => " both tiers · 95% band ",
        (None, true) => " rate by position · 95% Wilson band ",
        (None, false) => " rate · 95% band ",
    };
    let block = Block::bordered()
        .title(Span::styled(
            title,
            app.theme.fg(app.theme.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(app.theme.border_style(focused));
    let all: Vec<Curve> = match tiers {
        Some(curves) => curves,
        None => entry
            .analysis
            .behaviors
            .iter()
            .enumerate()
            .map(|(i, b)| Curve {
                key: if wide {
                    b.behavior.clone()
                } else {
                    short_name(&b.behavior).to_string()
                },
                color: app.theme.behavior_color(i),
                bold: i == app.behavior_index(),
                series: series(b, positions),
                marker: Marker::Braille,
            })
            .filter(|c| !c.series.0.is_empty())
            .collect(),
    };
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
    for curve in &all {
        let (rate, lo, hi) = &curve.series;
        let mut style = app.theme.fg(curve.color);
        if curve.bold {
            style = style.add_modifier(Modifier::BOLD);
        }
        for band in [lo, hi] {
            datasets.push(
                Dataset::default()
                    .marker(Marker::Dot)
                    .graph_type(GraphType::Scatter)
                    .style(app.theme.fg(curve.color))
                    .data(band),
            );
        }
        let glyph = if curve.marker == Marker::Block {
            "█"
        } else {
            "━"
        };
        key.push(Span::styled(format!(" {glyph} {}", curve.key), style));
        datasets.push(
            Dataset::default()
                .marker(curve.marker)
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
    if wide && all.iter().any(|c| !c.series.1.is_empty()) {
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
