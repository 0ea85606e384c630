//! The detail pane for the selected sentence: its text, rates with intervals and counts,
//! importance with its 95% interval, side metrics, replacement sentences grouped with counts,
//! and a few rollouts. Undefined numbers read "n/a", never 0.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::trace::Mark;
use super::wrap::truncate;
use crate::adaptive;
use crate::app::{App, Pane};
use anchorscope_core::analysis::groups;
use anchorscope_core::analysis::{
    BehaviorAnalysis, Difference, ImportanceKind, MetricSource, Rate,
};
use anchorscope_core::export::format::fmt_signed;
use anchorscope_core::trace::intervention::Edit;
use anchorscope_core::trace::{LabelValue, Rollout};

/// Rollouts listed under "rollouts" at most.
const ROLLOUTS_SHOWN: usize = 3;
/// Replacement groups listed at most.
const GROUPS_SHOWN: usize = 6;

/// "0.42" or "n/a".
pub fn fmt_opt(v: Option<f64>) -> String {
    anchorscope_core::export::format::fmt_rate(v)
}

/// "0.42 [0.30, 0.55]  k/m" or "n/a" when there is no valid rollout.
pub fn fmt_rate(r: &Rate) -> String {
    let with_interval = anchorscope_core::export::format::fmt_rate_ci(r);
    if r.m == 0 {
        return with_interval;
    }
    format!("{with_interval}  {}/{}", r.k, r.m)
}

/// Above this share of invalid rollouts at a position, the pane warns.
pub const INVALID_WARNING: f64 = 0.2;

/// Yes, valid (yes + no) and invalid rollouts at a position.
pub fn label_counts(b: &BehaviorAnalysis, position: usize) -> (u32, u32, u32) {
    let rate = b.positions.get(position).copied().unwrap_or_default();
    (
        rate.k,
        rate.m,
        b.invalid.get(position).copied().unwrap_or(0),
    )
}

/// A p- or q-value: 3 decimals, "<0.001" below that, or "n/a".
pub fn fmt_opt_p(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v < 0.001 => "<0.001".into(),
        Some(v) => format!("{v:.3}"),
    }
}

/// "+0.38 [+0.10, +0.60] significant" or "n/a".
pub fn fmt_difference(d: Option<Difference>) -> String {
    match d {
        None => "n/a".to_string(),
        Some(d) => match d.interval {
            Some(iv) => format!(
                "{} [{}, {}]{}",
                fmt_signed(d.value),
                fmt_signed(iv.lo),
                fmt_signed(iv.hi),
                if d.significant() {
                    " ✱ sig."
                } else {
                    " (spans 0)"
                }
            ),
            None => format!("{} (no interval)", fmt_signed(d.value)),
        },
    }
}

/// What the source of an imported trace says about sentence `i`: its chunk index, function
/// tags, summary, the sentences it depends on and those depending on it, the source's own
/// numbers next to ours when the shown behavior is computed from rollouts ("theirs"), and the
/// import's notes (realignment, placeholders).
pub fn imported_facts(
    trace: &anchorscope_core::trace::Trace,
    i: usize,
    behavior: &str,
    shown: Option<&BehaviorAnalysis>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(set) = trace
        .imported
        .iter()
        .find(|m| m.behavior == behavior)
        .or_else(|| trace.imported.first())
    else {
        return out;
    };
    let Some(m) = set.sentences.get(i) else {
        return out;
    };
    if let Some(idx) = m.chunk_idx.filter(|&idx| idx != i) {
        out.push(("chunk_idx", idx.to_string()));
    }
    if !m.tags.is_empty() {
        out.push(("tags", m.tags.join(", ")));
    }
    if let Some(summary) = &m.summary {
        out.push(("summary", summary.clone()));
    }
    let refer = |list: &[usize]| {
        list.iter()
            .map(|p| format!("S{p}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !m.depends_on.is_empty() {
        out.push(("depends on", refer(&m.depends_on)));
    }
    let dependents: Vec<usize> = set
        .sentences
        .iter()
        .enumerate()
        .filter(|(_, s)| s.depends_on.contains(&i))
        .map(|(p, _)| p)
        .collect();
    if !dependents.is_empty() {
        out.push(("used by", refer(&dependents)));
    }
    let ours = shown.is_some_and(|b| matches!(b.source, MetricSource::Rollouts));
    if ours && set.behavior == behavior {
        let signed = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), fmt_signed);
        out.push((
            "theirs Δcf/Δ",
            format!(
                "{} / {} (their file, no interval)",
                signed(m.counterfactual_importance),
                signed(m.resampling_importance)
            ),
        ));
    }
    for note in &set.notes {
        out.push(("import note", note.clone()));
    }
    out
}

/// The selected sentence's adaptive state ("resolved — significant at n=40 (Δ +0.32)") and
/// its two positions, after an adaptive sweep on the open trace; nothing otherwise.
fn adaptive_lines(app: &App, i: usize, shown: &str) -> Vec<Line<'static>> {
    let Some(record) = app.adaptive_record() else {
        return Vec::new();
    };
    let Some(state) = record.progress.sentences.get(i).copied() else {
        return Vec::new();
    };
    let t = &app.theme;
    let running = app.adaptive_running(record);
    let mut words = adaptive::state_words(state, &record.plan.settings, running);
    // Decided on another behavior than the one shown: say which.
    if crate::app::base_behavior(shown) != record.plan.behavior {
        words.push_str(&format!(" · on {}", record.plan.behavior));
    }
    let kind = adaptive::MarkerKind::of(state, running);
    let key = t.fg(t.muted);
    let mut out = vec![Line::from(vec![
        Span::styled(format!("{:<15}", "adaptive"), key),
        Span::styled(
            format!("{} ", kind.glyph()),
            super::trace::marker_style(t, Some(kind)),
        ),
        Span::raw(words),
    ])];
    if let Some(positions) = adaptive::positions_of(&record.progress, i) {
        out.push(Line::from(vec![
            Span::styled(format!("{:<15}", "positions"), key),
            Span::raw(positions),
        ]));
    }
    out
}

/// The interventions on sentence `i` (`d`, `w`, `t`): the rate after each against the
/// original's at the same point, the difference with its Newcombe interval, and after a
/// deletion how often the content came back.
fn intervention_lines(app: &App, i: usize, behavior: &str, width: usize) -> Vec<Line<'static>> {
    let effects = crate::interventions::effects_on(app, i, behavior);
    if effects.is_empty() {
        return Vec::new();
    }
    let t = &app.theme;
    let muted = t.fg(t.muted);
    let head = t.fg(t.title).add_modifier(Modifier::BOLD);
    let kv = |k: String, v: String| {
        Line::from(vec![Span::styled(format!("{k:<15}"), muted), Span::raw(v)])
    };
    let original_tier = app
        .entry()
        .and_then(|e| anchorscope_core::trace::intervention::tier_of(&e.loaded.trace.prompt))
        .map(anchorscope_core::trace::intervention::tier_name);
    let mut out = vec![
        Line::from(""),
        Line::styled(format!("interventions on S{i}"), head),
    ];
    for e in effects {
        let (key, against) = match &e.edit {
            Edit::Delete { .. } => ("deleted".to_string(), "kept".to_string()),
            Edit::Replace { text, .. } => {
                out.push(kv(
                    "rewritten as".into(),
                    truncate(&format!("{text:?}"), width.saturating_sub(16).max(8)),
                ));
                ("after rewrite".to_string(), "kept".to_string())
            }
            Edit::SwapTier { free } => {
                let at = if e.position == i { "i" } else { "i+1" };
                (
                    format!(
                        "{} at {at}",
                        anchorscope_core::trace::intervention::tier_name(*free)
                    ),
                    original_tier.unwrap_or("original").to_string(),
                )
            }
        };
        out.push(kv(key, fmt_rate(&e.effect.after)));
        out.push(kv(
            format!("{against} (P{})", e.parent_position),
            fmt_rate(&e.effect.original),
        ));
        let diff = Line::from(vec![
            Span::styled(format!("{:<15}", "  Δ (95%)"), muted),
            Span::raw(fmt_difference(e.effect.difference)),
        ]);
        // after − original: its sign is the edit's effect, not a sentence's direction, so it
        // is emphasised when significant rather than colored orange or purple.
        out.push(match e.effect.difference {
            Some(d) if d.significant() => diff.style(head),
            _ => diff,
        });
        if let Some(note) = anchorscope_core::analysis::effect::left_out_note(&e.effect) {
            out.push(Line::styled(format!("  {note}"), muted));
        }
        if let Some(r) = e.resilience {
            out.push(kv(
                "content back".into(),
                format!(
                    "{}  (cos ≥ {:.2})",
                    fmt_rate(&r),
                    app.analysis_options().similarity_threshold
                ),
            ));
        }
    }
    out
}

/// Who produced the labels of `behavior`: a note for the rule-based AF judge.
fn classifier_note(rollouts: &[Rollout], behavior: &str) -> Option<String> {
    let label = rollouts.iter().find_map(|r| r.labels.get(behavior))?;
    if label.classifier == "af-rules" {
        Some("rule-based judge (offline)".to_string())
    } else {
        Some(format!("by {} v{}", label.classifier, label.version))
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, hits: &mut crate::app::Hits) {
    let focused = app.focus == Pane::Detail;
    let block = Block::bordered()
        .title(Span::styled(
            format!(" sentence {} ", app.selected),
            app.theme.fg(app.theme.title).add_modifier(Modifier::BOLD),
        ))
        .border_style(app.theme.border_style(focused));
    let lines = detail_lines(app, area.width.saturating_sub(2) as usize);
    let inner = block.inner(area);
    // The pane stops where its last line reaches the bottom.
    let max = super::scrolled::max_scroll(&lines, inner.width, inner.height);
    hits.detail_max_scroll = Some(max);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll.min(max), 0)),
        area,
    );
}

fn detail_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let t = &app.theme;
    let muted = t.fg(t.muted);
    let head = t.fg(t.title).add_modifier(Modifier::BOLD);
    let Some(entry) = app.entry() else {
        return vec![Line::from("no trace open")];
    };
    let trace = &entry.loaded.trace;
    let Some(sentence) = trace.sentences.get(app.selected) else {
        return vec![Line::styled("no sentence selected", muted)];
    };
    let bi = app.behavior_index();
    let behavior: Option<&BehaviorAnalysis> = entry.analysis.behaviors.get(bi);
    let name = behavior.map_or_else(|| "none".to_string(), |b| b.behavior.clone());
    let i = app.selected;
    let mut lines = vec![Line::from(sentence.text.clone())];
    lines.push(Line::from(""));

    let kv = |k: &str, v: String| {
        Line::from(vec![Span::styled(format!("{k:<15}"), muted), Span::raw(v)])
    };
    let mark = Mark::of(
        behavior,
        i,
        app.importance,
        &app.analysis_options().shade_rule(),
    );
    lines.push(Line::from(vec![
        Span::styled(format!("{:<15}", "behavior"), muted),
        Span::styled(name.clone(), head),
        Span::raw(" "),
        Span::styled(
            format!("{}{}", mark.glyph(), mark.bar()),
            t.direction_fg(mark.direction),
        ),
    ]));
    if let Some(note) = classifier_note(&entry.loaded.rollouts, &name) {
        lines.push(kv("", note));
    }
    // A derived trace says what it is; its effect is shown on its parent's sentence.
    if let Some(d) = &trace.derived {
        lines.push(kv(
            "intervention",
            format!(
                "{} of {} (its effect shows there)",
                d.edit.describe(),
                d.parent
            ),
        ));
    }
    if let Some(summary) = entry.pool_summary() {
        lines.push(kv("runs", summary));
    }
    if let Some(b) = behavior {
        let m = b.sentences.get(i);
        if let MetricSource::Imported { note } = &b.source {
            lines.push(Line::styled(format!("imported: {note}"), muted));
        }
        // Importance first: on a small terminal it is what must stay visible.
        if let Some(m) = m {
            for kind in [ImportanceKind::Counterfactual, ImportanceKind::Resampling] {
                // The kind in use (coloring the text) gets the emphasised key.
                let key_style = if kind == app.importance { head } else { muted };
                lines.push(Line::from(vec![
                    Span::styled(format!("{:<15}", short(kind)), key_style),
                    Span::raw(fmt_difference(m.importance(kind))),
                ]));
            }
        }
        // Right under the importance: whether an adaptive sweep is still sampling it.
        lines.extend(adaptive_lines(app, i, &name));
        match (&b.source, m) {
            (MetricSource::Imported { .. }, _) => {
                lines.push(kv("rate at i", fmt_opt(b.rate_value(i))));
                lines.push(kv("rate at i+1", fmt_opt(b.rate_value(i + 1))));
            }
            (MetricSource::Rollouts, Some(m)) => {
                lines.push(kv(
                    "p / q (BH)",
                    format!(
                        "{} / {}",
                        fmt_opt_p(m.p_value(app.importance)),
                        fmt_opt_p(m.q_value(app.importance))
                    ),
                ));
                lines.push(kv("rate without", fmt_rate(&m.rate_without)));
                lines.push(kv("rate with", fmt_rate(&m.rate_with)));
                lines.push(kv("rate T_i≠S_i", fmt_rate(&m.rate_different)));
                for (key, position) in [("i", i), ("i+1", i + 1)] {
                    let (yes, valid, invalid) = label_counts(b, position);
                    let line = kv(
                        &format!("yes/m/inv {key}"),
                        format!("{yes} / {valid} / {invalid}"),
                    );
                    if b.invalid_share(position)
                        .is_some_and(|s| s > INVALID_WARNING)
                    {
                        lines.push(line.style(t.fg(t.error)));
                        lines.push(Line::styled(
                            format!("  warning: over 20% of the rollouts at {key} are invalid"),
                            t.fg(t.error),
                        ));
                    } else {
                        lines.push(line);
                    }
                }
            }
            (MetricSource::Rollouts, None) => {}
        }
        lines.extend(intervention_lines(app, i, &name, width));
        if let Some(m) = m {
            let kl_key = match &b.source {
                MetricSource::Imported { .. } => "KL (theirs)",
                MetricSource::Rollouts => "KL(D ‖ kept)",
            };
            lines.push(kv(kl_key, fmt_opt(m.kl)));
            lines.push(kv("different T_i", fmt_opt(m.different_fraction)));
            lines.push(kv("overdetermined", fmt_opt(m.overdeterminedness)));
        }
    }

    for (key, value) in imported_facts(trace, i, &name, behavior) {
        lines.push(kv(key, value));
    }

    // Replacement sentences: sampled rollouts first, else the imported list (no labels).
    let groups = groups::replacement_groups(&entry.loaded.rollouts, i, &name);
    let imported_repl: Vec<String> = trace
        .imported
        .iter()
        .filter_map(|im| im.sentences.get(i))
        .flat_map(|s| s.replacements.iter().cloned())
        .collect();
    lines.push(Line::from(""));
    let text_w = width.saturating_sub(22).max(8);
    if !groups.is_empty() {
        lines.push(Line::styled(
            format!("replacements ({} distinct)", groups.len()),
            head,
        ));
        let threshold = app.analysis_options().similarity_threshold;
        if let Some(split) = groups::meaning_split(&entry.loaded.rollouts, i, &name, threshold) {
            let rows = [
                (
                    split.same,
                    format!("same meaning as S_{i} (cos ≥ {threshold:.2})"),
                ),
                (
                    split.different,
                    format!("different meaning (cos < {threshold:.2})"),
                ),
            ];
            for (count, what) in rows {
                lines.push(Line::from(vec![
                    Span::styled(format!("{:>3}× ", count.rollouts), muted),
                    Span::raw(format!("{:<5} ", fmt_opt(count.rate.value()))),
                    Span::styled(what, muted),
                ]));
            }
        }
        for group in groups.iter().take(GROUPS_SHOWN) {
            lines.push(Line::from(vec![
                Span::styled(format!("{:>3}× ", group.count.rollouts), muted),
                Span::raw(format!("{:<5} ", fmt_opt(group.count.rate.value()))),
                Span::raw(truncate(&group.text, text_w)),
            ]));
        }
    } else if !imported_repl.is_empty() {
        let v = groups::text_counts(imported_repl.iter().map(String::as_str));
        lines.push(Line::styled(
            format!("replacements (imported, {} distinct, unlabeled)", v.len()),
            head,
        ));
        for (text, count) in v.iter().take(GROUPS_SHOWN) {
            lines.push(Line::from(vec![
                Span::styled(format!("{count:>3}× "), muted),
                Span::raw(truncate(text, text_w + 6)),
            ]));
        }
    } else {
        lines.push(Line::styled("replacements: none sampled yet", muted));
    }

    let at_i: Vec<&Rollout> = entry
        .loaded
        .rollouts
        .iter()
        .filter(|r| r.position == i)
        .collect();
    if !at_i.is_empty() {
        lines.push(Line::styled(
            format!("rollouts at {i} ({})", at_i.len()),
            head,
        ));
        let mut criteria_shown = false;
        // A window of rollouts around the marked one (`,` / `.` move it, `H` labels it).
        let cursor = app.rollout_cursor();
        let start = cursor.saturating_sub(ROLLOUTS_SHOWN - 1);
        let human_base = name
            .strip_suffix(anchorscope_core::behavior::scope::CONTINUATION_SUFFIX)
            .unwrap_or(&name);
        let humans = at_i
            .iter()
            .filter(|r| r.human_label(human_base).is_some())
            .count();
        if humans > 0 {
            lines.push(Line::styled(
                format!("{humans} rollout(s) here carry your label; rates count it"),
                muted,
            ));
        }
        for (k, r) in at_i.iter().enumerate().skip(start).take(ROLLOUTS_SHOWN) {
            let label = match r.label(&name) {
                Some(LabelValue::Yes) => "yes",
                Some(LabelValue::No) => "no ",
                Some(LabelValue::Invalid) => "inv",
                None => "n/a",
            };
            let marker = if k == cursor { "▸" } else { " " };
            let human = if r.human_label(human_base).is_some() {
                " (yours)"
            } else {
                ""
            };
            let first = r.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            lines.push(Line::from(vec![
                Span::styled(format!("{marker}seed {:<6} {label}{human} ", r.seed), muted),
                Span::raw(truncate(first, text_w + 4)),
            ]));
            // A model judge's verdict is auditable: its summary line here, every vote's
            // criteria and quotes in the JSON export.
            if let Some(summary) = judge_summary(r, &name) {
                lines.push(Line::styled(
                    format!("            {}", truncate(summary, text_w + 4)),
                    muted,
                ));
            }
            // The rule judge's yes is auditable too: the sentence behind each criterion, for
            // the first yes shown (the JSON export has them for every rollout).
            if !criteria_shown {
                if let Some(criteria) = rule_criteria(r, &name) {
                    criteria_shown = true;
                    for line in criteria {
                        lines.push(Line::styled(
                            format!("            {}", truncate(line, text_w + 4)),
                            muted,
                        ));
                    }
                }
            }
        }
    }
    lines
}

/// The first line of a model judge's evidence (votes, threshold, invalid votes, made-up quotes)
/// for `behavior`'s label of `r`; None for other classifiers.
pub fn judge_summary<'r>(r: &'r Rollout, behavior: &str) -> Option<&'r str> {
    r.labels
        .get(behavior)
        .filter(|l| l.classifier == anchorscope_core::behavior::af_judge_model::CLASSIFIER)
        .and_then(|l| l.evidence.as_deref())
        .and_then(|e| e.lines().next())
}

/// The criterion lines ("(1) … : yes, reasoning sentence N: \"…\"") of a rule-judge "yes" for
/// `behavior`'s label of `r`; None for other labels.
pub fn rule_criteria<'r>(r: &'r Rollout, behavior: &str) -> Option<Vec<&'r str>> {
    let label = r.labels.get(behavior)?;
    if label.classifier != anchorscope_core::behavior::af_rules::CLASSIFIER
        || label.value != LabelValue::Yes
    {
        return None;
    }
    let lines: Vec<&str> = label
        .evidence
        .as_deref()?
        .lines()
        .filter(|l| l.starts_with('('))
        .collect();
    (!lines.is_empty()).then_some(lines)
}

/// Short label of an importance kind for the key column.
fn short(kind: ImportanceKind) -> &'static str {
    match kind {
        ImportanceKind::Counterfactual => "Δ counterfact.",
        ImportanceKind::Resampling => "Δ resampling",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorscope_core::analysis::Interval;

    #[test]
    fn undefined_numbers_read_na() {
        assert_eq!(fmt_opt(None), "n/a");
        assert_eq!(fmt_rate(&Rate::new(0, 0)), "n/a");
        assert_eq!(fmt_difference(None), "n/a");
        let d = Difference {
            value: 0.5,
            interval: Some(Interval { lo: 0.1, hi: 0.8 }),
        };
        assert!(fmt_difference(Some(d)).ends_with("✱ sig."));
        assert!(fmt_rate(&Rate::new(1, 4)).starts_with("0.25 ["));
    }
}

#[cfg(test)]
mod judge_tests {
    use super::*;
    use anchorscope_core::trace::{FinishReason, Label};
    use std::collections::BTreeMap;

    #[test]
    fn a_rule_judge_yes_lists_its_criteria_sentences() {
        let mut r = Rollout::bare(0, 1, "");
        let label = |value| {
            Label {
            value,
            classifier: anchorscope_core::behavior::af_rules::CLASSIFIER.into(),
            version: "2".into(),
            evidence: Some(
                "rule-based judge\n(1) in training: yes, reasoning sentence 2: \"free tier\"\nfinal: yes".into(),
            ),
        }
        };
        r.labels
            .insert("alignment_faking".into(), label(LabelValue::Yes));
        assert_eq!(
            rule_criteria(&r, "alignment_faking"),
            Some(vec![
                "(1) in training: yes, reasoning sentence 2: \"free tier\""
            ])
        );
        r.labels
            .insert("alignment_faking".into(), label(LabelValue::No));
        assert_eq!(rule_criteria(&r, "alignment_faking"), None);
    }

    #[test]
    fn the_model_judge_summary_is_the_first_evidence_line() {
        let mut labels = BTreeMap::new();
        labels.insert(
            "alignment_faking".to_string(),
            Label {
                value: LabelValue::No,
                classifier: anchorscope_core::behavior::af_judge_model::CLASSIFIER.into(),
                version: "v".into(),
                evidence: Some(
                    "judge: 1/3 valid votes yes (threshold 0.5), 0 invalid\nvote 1: …".into(),
                ),
            },
        );
        labels.insert(
            "compliance".to_string(),
            Label {
                value: LabelValue::Yes,
                classifier: "compliance-tag".into(),
                version: "1".into(),
                evidence: Some("tag".into()),
            },
        );
        let r = Rollout {
            position: 0,
            seed: 1,
            replacement: String::new(),
            text: String::new(),
            tokens: 0,
            finish: FinishReason::Stop,
            labels,
            similarity: None,
            run: None,
            recurrence: None,
        };
        assert_eq!(
            judge_summary(&r, "alignment_faking"),
            Some("judge: 1/3 valid votes yes (threshold 0.5), 0 invalid")
        );
        assert_eq!(judge_summary(&r, "compliance"), None);
        assert_eq!(judge_summary(&r, "missing"), None);
    }
}
