//! The trace view's text pane: one block of wrapped lines per sentence, each prefixed by its
//! index, a direction glyph and a magnitude bar, and tinted by direction for a behavior.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::layout::trace_panes;
use super::wrap::wrap;
use super::{chart, detail};
use crate::adaptive::MarkerKind;
use crate::app::{anchors, importance_label, top_anchors, App, Hits, Pane};
use crate::theme::Theme;
use anchorscope_core::analysis::{BehaviorAnalysis, Direction, ImportanceKind, Shade, ShadeRule};
use anchorscope_core::export::format::fmt_signed;

/// How one sentence is marked for one behavior: the analysis's [`Shade`] (direction, level on
/// the absolute |Δ| scale, strong only when significant with enough rollouts), drawn as a glyph
/// and a bar that say the same without color.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    /// None when the importance is undefined or rests on too few rollouts.
    pub direction: Option<Direction>,
    /// 0..=3 by |Δ| steps of 0.05 / 0.15 / 0.30.
    pub level: u8,
    /// Significant (by the configured rule) with enough valid rollouts: full strength.
    pub strong: bool,
}

impl Mark {
    pub fn of(
        b: Option<&BehaviorAnalysis>,
        i: usize,
        kind: ImportanceKind,
        rule: &ShadeRule,
    ) -> Self {
        let shade = b.map_or(Shade::NONE, |b| b.shade(i, kind, rule));
        Self {
            direction: shade.direction,
            level: shade.level,
            strong: shade.strong,
        }
    }

    /// Sign glyph: ▲ / ▼ significant, △ / ▽ not (or no interval), ○ exactly zero,
    /// · undefined or too few rollouts.
    pub fn glyph(&self) -> char {
        match (self.direction, self.strong) {
            (Some(Direction::Promotes), true) => '▲',
            (Some(Direction::Promotes), false) => '△',
            (Some(Direction::Suppresses), true) => '▼',
            (Some(Direction::Suppresses), false) => '▽',
            (Some(Direction::Neutral), _) => '○',
            (None, _) => '·',
        }
    }

    /// Three-cell magnitude bar on the absolute scale (so size reads without color too):
    /// solid cells when strong, hollow when faint.
    pub fn bar(&self) -> &'static str {
        match (self.direction, self.strong, self.level) {
            (Some(Direction::Promotes | Direction::Suppresses), strong, level) => {
                match (strong, level) {
                    (_, 0) => "   ",
                    (true, 1) => "▮  ",
                    (true, 2) => "▮▮ ",
                    (true, _) => "▮▮▮",
                    (false, 1) => "▯  ",
                    (false, 2) => "▯▯ ",
                    (false, _) => "▯▯▯",
                }
            }
            _ => "   ",
        }
    }
}

/// The adaptive marker's color: sampling stands out, significant reads as found, the rest
/// stays quiet.
pub fn marker_style(theme: &Theme, kind: Option<MarkerKind>) -> Style {
    match kind {
        Some(MarkerKind::Sampling) => theme.fg(theme.focus).add_modifier(Modifier::BOLD),
        Some(MarkerKind::Significant) => theme.fg(theme.ok).add_modifier(Modifier::BOLD),
        Some(MarkerKind::Undecided) => theme.fg(theme.error),
        Some(MarkerKind::Decided | MarkerKind::Waiting) | None => theme.fg(theme.muted),
    }
}

/// The first imported function tag of sentence `i` as initials ("situation_assessment" → "SA",
/// "planning" → "PL"); empty when the trace has none.
pub fn short_tag(trace: &anchorscope_core::trace::Trace, i: usize) -> String {
    let Some(tag) = trace
        .imported
        .iter()
        .find_map(|m| m.sentences.get(i).and_then(|s| s.tags.first()))
    else {
        return String::new();
    };
    let words: Vec<&str> = tag
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    let code: String = match words.as_slice() {
        [one] => one.chars().take(2).collect(),
        many => many
            .iter()
            .filter_map(|w| w.chars().next())
            .take(2)
            .collect(),
    };
    code.to_uppercase()
}

/// The full trace screen: text (one or two columns), chart, detail.
pub fn render_screen(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let panes = trace_panes(area);
    hits.text = panes.text;
    hits.chart = panes.chart;
    hits.detail = panes.detail;
    if app.two_behavior {
        let (a, b) = app.behavior_pair();
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(panes.text);
        render_text(frame, left, app, a, hits);
        render_text(frame, right, app, b, hits);
    } else {
        render_text(frame, panes.text, app, app.behavior_index(), hits);
    }
    if panes.chart.width > 0 {
        chart::render(frame, panes.chart, app);
    }
    if panes.detail.width > 0 {
        hits.detail_height = panes.detail.height.saturating_sub(2);
        detail::render(frame, panes.detail, app, hits);
    }
}

/// The legend under the text: what the colors and glyphs mean (compact when narrow).
pub fn legend(theme: &Theme, width: u16) -> Line<'static> {
    let up = Some(Direction::Promotes);
    let down = Some(Direction::Suppresses);
    let compact = width < 64;
    let (p, s) = if theme.no_color || compact {
        ("▲ promotes", "▼ suppresses")
    } else {
        ("orange ▲ promotes", "purple ▼ suppresses")
    };
    let tail = if compact {
        " ▮=|Δ| ▯=n.s. "
    } else {
        " · ▮ = |Δ|, △▯ = not sig., \u{b7} = n/a "
    };
    Line::from(vec![
        Span::raw(" "),
        Span::styled(p, theme.direction_fg(up)),
        Span::styled(if compact { " " } else { " · " }, theme.fg(theme.muted)),
        Span::styled(s, theme.direction_fg(down)),
        Span::styled(tail, theme.fg(theme.muted)),
    ])
}

/// "top anchors: S12 ▲+0.42 · S3 ▼−0.30 · S20 ▲+0.21" for one behavior, or why there are none.
fn anchor_summary(app: &App, behavior: Option<&BehaviorAnalysis>, width: usize) -> Line<'static> {
    let t = &app.theme;
    let muted = t.fg(t.muted);
    let Some(b) = behavior else {
        return Line::styled(" no behavior to rank", muted);
    };
    let rule = app.analysis_options().shade_rule();
    let top = top_anchors(b, app.importance, &rule, 3);
    if top.is_empty() {
        return Line::styled(
            super::wrap::truncate(
                &format!(
                    " no significant sentence for {} yet ({} resamples every position)",
                    b.behavior,
                    app.keymap.hint(&crate::action::Action::ResampleAll)
                ),
                width,
            ),
            muted,
        );
    }
    let total = anchors(b, app.importance, &rule).len();
    let mut spans = vec![Span::styled(format!(" top anchors ({total}): "), muted)];
    for (k, (i, value)) in top.iter().enumerate() {
        if k > 0 {
            spans.push(Span::styled(" · ", muted));
        }
        let direction = Some(Direction::of(*value));
        let glyph = if *value > 0.0 { '▲' } else { '▼' };
        spans.push(Span::styled(
            format!("S{i} {glyph}{}", fmt_signed(*value)),
            t.direction_fg(direction).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::styled(
        format!(
            "  {}/{} jump",
            app.keymap.hint(&crate::action::Action::NextAnchor),
            app.keymap.hint(&crate::action::Action::PrevAnchor)
        ),
        muted,
    ));
    Line::from(spans)
}

/// One text column colored for behavior `behavior_idx`.
fn render_text(frame: &mut Frame, area: Rect, app: &App, behavior_idx: usize, hits: &mut Hits) {
    let Some(entry) = app.entry() else { return };
    let trace = &entry.loaded.trace;
    let behavior = entry.analysis.behaviors.get(behavior_idx);
    let name = behavior.map_or("no behavior", |b| b.behavior.as_str());
    let focused = app.focus == Pane::Text;
    // Two columns are narrow: their titles name only the behavior.
    let title = if app.two_behavior {
        format!(" {name} ")
    } else {
        format!(
            " {} · {} · {} ",
            trace.id,
            name,
            importance_label(app.importance)
        )
    };
    let block = Block::bordered()
        .title(Span::styled(
            title,
            app.theme.fg(app.theme.title).add_modifier(Modifier::BOLD),
        ))
        .title_bottom(legend(&app.theme, area.width))
        .border_style(app.theme.border_style(focused));
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return;
    }
    // The first line names the top anchors, so the important sentences need no hunting.
    if inner.height >= 4 && !trace.sentences.is_empty() {
        let summary = anchor_summary(app, behavior, inner.width as usize);
        frame.render_widget(
            Paragraph::new(summary),
            Rect::new(inner.x, inner.y, inner.width, 1),
        );
        inner.y += 1;
        inner.height -= 1;
    }
    if trace.sentences.is_empty() {
        frame.render_widget(
            Paragraph::new("this trace has no reasoning sentences")
                .style(app.theme.fg(app.theme.muted)),
            inner,
        );
        return;
    }

    let n = trace.sentences.len();
    let idx_w = (n.saturating_sub(1)).to_string().len().max(2);
    // Imported function tags as a two-letter code after the glyph (full names in the detail
    // pane); the column only exists for traces that carry tags.
    let tags: Vec<String> = (0..n).map(|i| short_tag(trace, i)).collect();
    let tag_w = if tags.iter().any(|t| !t.is_empty()) {
        3
    } else {
        0
    };
    // After an adaptive sweep on this trace (running or ended): each sentence's state, in a
    // column of its own after the index.
    let adaptive = app
        .adaptive_record()
        .map(|r| (&r.progress.sentences, app.adaptive_running(r)));
    let marker_w = if adaptive.is_some() { 2 } else { 0 };
    let prefix_w = 1 + idx_w + 1 + marker_w + 1 + 3 + 1 + tag_w;
    let text_w = (inner.width as usize).saturating_sub(prefix_w).max(1);
    let matches = app.matches(&app.query);
    let rule = app.analysis_options().shade_rule();

    let mut lines: Vec<Line> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let mut first_line = vec![0usize; n];
    for (i, s) in trace.sentences.iter().enumerate() {
        first_line[i] = lines.len();
        let mark = Mark::of(behavior, i, app.importance, &rule);
        let selected = i == app.selected;
        let mut text_style = app
            .theme
            .direction_style(mark.direction, mark.level, mark.strong);
        if matches.contains(&i) {
            text_style = text_style.add_modifier(Modifier::UNDERLINED);
        }
        if selected {
            text_style = text_style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        }
        let glyph_style = app.theme.direction_fg(mark.direction);
        let idx_style = if selected {
            app.theme.fg(app.theme.focus).add_modifier(Modifier::BOLD)
        } else {
            app.theme.fg(app.theme.muted)
        };
        for (k, chunk) in wrap(&s.text, text_w).into_iter().enumerate() {
            let mut spans = Vec::with_capacity(4);
            if k == 0 {
                let cursor = if selected { '▶' } else { ' ' };
                spans.push(Span::styled(format!("{cursor}{i:>idx_w$} "), idx_style));
                if let Some((states, running)) = adaptive {
                    // A sentence the progress does not cover (another trace length) is blank.
                    let kind = states.get(i).map(|s| MarkerKind::of(*s, running));
                    let glyph = kind.map_or(' ', MarkerKind::glyph);
                    spans.push(Span::styled(
                        format!("{glyph} "),
                        marker_style(&app.theme, kind),
                    ));
                }
                spans.push(Span::styled(
                    format!("{}{} ", mark.glyph(), mark.bar()),
                    glyph_style,
                ));
                if tag_w > 0 {
                    spans.push(Span::styled(
                        format!("{:<2} ", tags[i]),
                        app.theme.fg(app.theme.muted),
                    ));
                }
            } else {
                spans.push(Span::raw(" ".repeat(prefix_w)));
            }
            spans.push(Span::styled(chunk, text_style));
            lines.push(Line::from(spans));
            owner.push(i);
        }
    }

    // Keep the selected sentence in view, starting from the last scroll position.
    let height = inner.height as usize;
    let sel = app.selected.min(n - 1);
    let sel_start = first_line[sel];
    let sel_end = if sel + 1 < n {
        first_line[sel + 1]
    } else {
        lines.len()
    };
    let mut scroll = app.text_scroll.min(lines.len().saturating_sub(1));
    if sel_start < scroll {
        scroll = sel_start;
    } else if sel_end > scroll + height {
        scroll = sel_end.saturating_sub(height).min(sel_start);
    }
    hits.text_scroll = scroll;

    let visible: Vec<Line> = lines.into_iter().skip(scroll).take(height).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (row, &i) in owner.iter().skip(scroll).take(height).enumerate() {
        seen.insert(i);
        hits.sentences
            .push((Rect::new(inner.x, inner.y + row as u16, inner.width, 1), i));
    }
    hits.visible_sentences = seen.len().saturating_sub(1).max(1);
    frame.render_widget(Paragraph::new(visible).style(Style::default()), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_follows_absolute_level_and_glyph_follows_significance() {
        let m = |d, level, strong| Mark {
            direction: Some(d),
            level,
            strong,
        };
        assert_eq!(m(Direction::Promotes, 1, true).bar(), "▮  ");
        assert_eq!(m(Direction::Promotes, 2, true).bar(), "▮▮ ");
        assert_eq!(m(Direction::Suppresses, 3, true).bar(), "▮▮▮");
        assert_eq!(m(Direction::Suppresses, 3, true).glyph(), '▼');
        // Not significant: hollow glyph and bar, whatever the size.
        assert_eq!(m(Direction::Suppresses, 3, false).glyph(), '▽');
        assert_eq!(m(Direction::Promotes, 3, false).bar(), "▯▯▯");
        // Below the first step: direction shown, no bar.
        assert_eq!(m(Direction::Promotes, 0, true).bar(), "   ");
        let none = Mark {
            direction: None,
            level: 0,
            strong: false,
        };
        assert_eq!((none.glyph(), none.bar()), ('·', "   "));
    }

    #[test]
    fn short_tags_are_initials() {
        let mut t = anchorscope_core::trace::Trace::new("t", vec![], "A b. C d.");
        t.imported.push(anchorscope_core::trace::ImportedMetrics {
            sentences: vec![
                anchorscope_core::trace::ImportedSentenceMetrics {
                    tags: vec!["situation_assessment".into()],
                    ..Default::default()
                },
                anchorscope_core::trace::ImportedSentenceMetrics {
                    tags: vec!["planning".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(short_tag(&t, 0), "SA");
        assert_eq!(short_tag(&t, 1), "PL");
        assert_eq!(short_tag(&t, 2), "");
    }
}
