//! The side-by-side screen: aligned rows (A's sentence, its Δ, B's sentence, its Δ, A − B),
//! both rate curves on the aligned rows' axis, and the selected row in full.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::Frame;

use super::detail::fmt_difference;
use super::wrap::truncate;
use crate::app::{App, CompareView, Hits};
use anchorscope_core::analysis::compare::{BehaviorComparison, Which};
use anchorscope_core::analysis::Difference;
use anchorscope_core::export::format::fmt_signed;

pub fn render(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let Some(view) = &app.compare else { return };
    let t = &app.theme;
    let c = &view.comparison;
    let behavior = c.behaviors.get(view.behavior);
    let name = behavior.map_or("none", |b| b.behavior.as_str());
    let [rows_area, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [chart_area, detail_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);

    let title = format!(
        " A {} ({}) ⟷ B {} ({}) · {name} · A − B ",
        c.a.id,
        c.a.tier.as_deref().unwrap_or("–"),
        c.b.id,
        c.b.tier.as_deref().unwrap_or("–"),
    );
    let block = Block::bordered()
        .title(Span::styled(
            title,
            t.fg(t.title).add_modifier(Modifier::BOLD),
        ))
        .title_bottom(Line::styled(
            format!(" {} ", c.similarity.describe()),
            t.fg(t.muted),
        ))
        .border_style(t.border_style(true));
    let inner = block.inner(rows_area);
    frame.render_widget(block, rows_area);
    hits.text = inner;
    render_rows(frame, inner, app, view, behavior);
    render_chart(frame, chart_area, app, view, behavior);
    render_detail(frame, detail_area, app, view, behavior);
}

fn delta(d: Option<Difference>, significant: bool) -> String {
    match d {
        Some(d) => format!(
            "{}{}",
            fmt_signed(d.value),
            if significant { "✱" } else { " " }
        ),
        None => "n/a  ".to_string(),
    }
}

fn render_rows(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: &CompareView,
    behavior: Option<&BehaviorComparison>,
) {
    let t = &app.theme;
    let c = &view.comparison;
    if area.height < 2 {
        return;
    }
    // Fixed columns: "A## " Δ(7) " B## " Δ(7) " A−B(7) sim(5)"; the rest is split between
    // the two sentences.
    let fixed = 4 + 7 + 1 + 4 + 7 + 1 + 7 + 5 + 4;
    let text_w = (area.width as usize).saturating_sub(fixed) / 2;
    let header = Line::styled(
        format!(
            "{:<4}{:<tw$} {:>7} {:<4}{:<tw$} {:>7} {:>7} {:>5}",
            "A",
            "sentence of A",
            "Δ A",
            "B",
            "sentence of B",
            "Δ B",
            "A − B",
            "sim",
            tw = text_w
        ),
        t.fg(t.muted).add_modifier(Modifier::BOLD),
    );
    let height = area.height as usize - 1;
    let start = view.row.saturating_sub(height.saturating_sub(1));
    let mut lines = vec![header];
    for (row, pair) in c.pairs.iter().enumerate().skip(start).take(height) {
        let imp = behavior.and_then(|b| b.rows.get(row));
        let sentence = |s: &[String], i: Option<usize>| {
            i.and_then(|i| s.get(i))
                .map_or(String::new(), |s| truncate(s, text_w))
        };
        let idx = |i: Option<usize>| i.map_or("–".to_string(), |i| format!("S{i}"));
        let text = format!(
            "{:<4}{:<tw$} {:>7} {:<4}{:<tw$} {:>7} {:>7} {:>5}",
            idx(pair.a),
            sentence(&c.a.sentences, pair.a),
            imp.map_or(String::new(), |p| delta(p.a, p.significant_a)),
            idx(pair.b),
            sentence(&c.b.sentences, pair.b),
            imp.map_or(String::new(), |p| delta(p.b, p.significant_b)),
            imp.map_or(String::new(), |p| delta(
                p.difference,
                p.significant_difference
            )),
            pair.similarity
                .map_or("–".to_string(), |s| format!("{s:.2}")),
            tw = text_w
        );
        let style = if row == view.row {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else if imp.is_some_and(|p| p.significant_difference) {
            t.fg(t.focus)
        } else {
            Style::default()
        };
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_chart(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: &CompareView,
    behavior: Option<&BehaviorComparison>,
) {
    let t = &app.theme;
    let c = &view.comparison;
    let block = Block::bordered()
        .title(Span::styled(
            " rate on aligned rows: ━ A ━ B ",
            t.fg(t.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(t.border_style(false));
    let Some(b) = behavior else {
        frame.render_widget(block, area);
        return;
    };
    let points = |side: Which| -> Vec<(f64, f64)> {
        c.curve_on_rows(b, side)
            .into_iter()
            .filter_map(|(x, p)| p.value.map(|v| (x as f64, v)))
            .collect()
    };
    let (pa, pb) = (points(Which::A), points(Which::B));
    if pa.is_empty() && pb.is_empty() {
        frame.render_widget(
            Paragraph::new("no rates yet on either side")
                .style(t.fg(t.muted))
                .block(block),
            area,
        );
        return;
    }
    let x_max = c.pairs.len().max(1) as f64;
    let datasets = vec![
        Dataset::default()
            .name("A")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.fg(t.title))
            .data(&pa),
        Dataset::default()
            .name("B")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.fg(t.focus))
            .data(&pb),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([0.0, x_max])
                .labels(vec![
                    Line::from("0"),
                    Line::from(format!("{}", c.pairs.len())),
                ])
                .style(t.fg(t.muted)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 1.0])
                .labels(vec![Line::from("0"), Line::from("1")])
                .style(t.fg(t.muted)),
        );
    frame.render_widget(chart, area);
}

fn render_detail(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: &CompareView,
    behavior: Option<&BehaviorComparison>,
) {
    let t = &app.theme;
    let c = &view.comparison;
    let muted = t.fg(t.muted);
    let head = t.fg(t.title).add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    if let Some(pair) = c.pairs.get(view.row) {
        let imp = behavior.and_then(|b| b.rows.get(view.row));
        let side = |label: &str, id: &str, s: &[String], i: Option<usize>| {
            let text = i
                .and_then(|i| s.get(i))
                .map_or("(no counterpart)".to_string(), |s| s.clone());
            let at = i.map_or(String::new(), |i| format!(" S{i}"));
            Line::from(vec![
                Span::styled(format!("{label} {id}{at}: "), head),
                Span::raw(text),
            ])
        };
        lines.push(side("A", &c.a.id, &c.a.sentences, pair.a));
        lines.push(side("B", &c.b.id, &c.b.sentences, pair.b));
        lines.push(Line::from(""));
        let kv = |k: &str, v: String| {
            Line::from(vec![Span::styled(format!("{k:<12}"), muted), Span::raw(v)])
        };
        lines.push(kv(
            "similarity",
            pair.similarity
                .map_or("– (unaligned)".into(), |s| format!("{s:.2}")),
        ));
        if let Some(p) = imp {
            lines.push(kv("Δ A", fmt_difference(p.a)));
            lines.push(kv("Δ B", fmt_difference(p.b)));
            lines.push(kv("A − B", fmt_difference(p.difference)));
        }
        lines.push(Line::from(""));
        lines.push(Line::styled(
            format!(
                "{} aligned of {} rows · {} rollouts in A, {} in B",
                c.aligned_count(),
                c.pairs.len(),
                c.a.rollouts,
                c.b.rollouts
            ),
            muted,
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(Span::styled(format!(" row {} ", view.row), head))
                .border_style(t.border_style(false)),
        ),
        area,
    );
}
