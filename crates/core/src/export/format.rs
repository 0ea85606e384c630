//! Formatting shared by the exporters and the TUI: rates, differences, "n/a" for undefined
//! values (never 0), truncation, escaping, and the notes that must travel with the numbers.

use std::collections::BTreeSet;

use crate::analysis::{
    BehaviorAnalysis, Difference, Direction, ImportanceKind, Interval, MetricSource, Rate,
};
use crate::behavior::{af_rules, ALIGNMENT_FAKING};
use crate::trace::Rollout;

/// What undefined values read as, everywhere.
pub const NA: &str = "n/a";

/// A value with 2 decimals, or "n/a".
pub fn fmt_rate(value: Option<f64>) -> String {
    value.map_or_else(|| NA.to_string(), |v| fmt_fixed(v, 2))
}

/// "0.42 [0.31, 0.55]" from counts (Wilson 95%), or "n/a" when m = 0.
pub fn fmt_rate_ci(rate: &Rate) -> String {
    match (rate.value(), rate.wilson()) {
        (Some(v), Some(w)) => format!("{v:.2} [{:.2}, {:.2}]", w.lo, w.hi),
        _ => NA.to_string(),
    }
}

/// A rate point with an optional interval: "0.42 [0.31, 0.55]", "0.42" or "n/a".
pub fn fmt_point(point: &RatePoint) -> String {
    match (point.value, point.interval) {
        (Some(v), Some(i)) => format!("{v:.2} [{:.2}, {:.2}]", i.lo, i.hi),
        (Some(v), None) => format!("{v:.2}"),
        _ => NA.to_string(),
    }
}

/// A signed number with 2 decimals: "+0.33", "-0.12" (ASCII minus), and "0.00" for anything
/// that rounds to zero, so no screen or file ever shows "-0.00" or "+0.00".
pub fn fmt_signed(v: f64) -> String {
    let text = format!("{v:+.2}");
    if text == "+0.00" || text == "-0.00" {
        "0.00".to_string()
    } else {
        text
    }
}

/// An unsigned value with `decimals` decimals, never "-0.00" (a tiny negative or −0.0 from
/// float noise reads as 0).
pub fn fmt_fixed(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// "+0.33 [+0.02, +0.61]" (Newcombe 95%), "+0.33" when imported without interval, or "n/a".
pub fn fmt_diff(diff: Option<Difference>) -> String {
    match diff {
        None => NA.to_string(),
        Some(Difference {
            value,
            interval: Some(i),
        }) => format!(
            "{} [{}, {}]",
            fmt_signed(value),
            fmt_signed(i.lo),
            fmt_signed(i.hi)
        ),
        Some(Difference {
            value,
            interval: None,
        }) => fmt_signed(value),
    }
}

/// The direction of an importance, undefined when the importance is.
pub fn direction(diff: Option<Difference>) -> Option<Direction> {
    diff.map(|d| Direction::of(d.value))
}

/// A one-character sign: "+" promotes, "-" suppresses, "0" neutral, "" undefined.
pub fn direction_sign(diff: Option<Difference>) -> &'static str {
    match direction(diff) {
        Some(Direction::Promotes) => "+",
        Some(Direction::Suppresses) => "-",
        Some(Direction::Neutral) => "0",
        None => "",
    }
}

/// "*" when the 95% interval excludes 0, "" otherwise (and when no interval exists).
pub fn significance_mark(diff: Option<Difference>) -> &'static str {
    if diff.is_some_and(|d| d.significant()) {
        "*"
    } else {
        ""
    }
}

/// Human name of an importance kind.
pub fn importance_name(kind: ImportanceKind) -> &'static str {
    match kind {
        ImportanceKind::Counterfactual => "counterfactual importance",
        ImportanceKind::Resampling => "resampling importance",
    }
}

/// The rate at one position: point value (from counts or imported) and Wilson interval (counts
/// only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePoint {
    pub value: Option<f64>,
    pub interval: Option<Interval>,
}

/// The rate of a behavior at a position 0..=n.
pub fn rate_point(b: &BehaviorAnalysis, position: usize) -> RatePoint {
    let interval = match b.source {
        MetricSource::Rollouts => b.positions.get(position).and_then(Rate::wilson),
        MetricSource::Imported { .. } => None,
    };
    RatePoint {
        value: b.rate_value(position),
        interval,
    }
}

/// Number of positions a behavior has rates for (n + 1 for n sentences).
pub fn position_count(b: &BehaviorAnalysis) -> usize {
    b.sentences.len() + 1
}

/// Provenance of a trace as (label, value) pairs for headers: sampler settings and the
/// classifiers recorded in the manifest, when known.
pub fn manifest_lines(m: &crate::trace::Manifest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(hash) = &m.model_hash {
        out.push(("model hash".to_string(), hash.clone()));
    }
    if let Some(s) = &m.sampler {
        out.push((
            "sampler".to_string(),
            format!(
                "temperature {}, top-p {}, max new tokens {}",
                s.temperature, s.top_p, s.max_new_tokens
            ),
        ));
    }
    if !m.classifiers.is_empty() {
        let list: Vec<String> = m
            .classifiers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.push(("classifiers".to_string(), list.join(", ")));
    }
    if let Some(c) = &m.created {
        out.push(("created".to_string(), c.clone()));
    }
    out
}

/// Collapse whitespace runs (newlines included) to single spaces.
pub fn one_line(text: &str) -> String {
    crate::trace::terminal::terminal_safe(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` characters, ending with "…" when cut. Never splits a character.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One line of at most `max` characters: whitespace runs collapsed, "…" when cut (table cells,
/// list rows, the detail pane).
pub fn one_line_cut(text: &str, max: usize) -> String {
    truncate_chars(&one_line(text), max)
}

/// Escape for HTML text and attribute values: & < > " '.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `classifier@version` of every label stored for `behavior`, sorted.
pub fn classifiers_used(rollouts: &[Rollout], behavior: &str) -> Vec<String> {
    rollouts
        .iter()
        .filter_map(|r| r.labels.get(behavior))
        .map(|l| format!("{}@{}", l.classifier, l.version))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Notes that must be shown next to a behavior's numbers: where imported metrics come from (and
/// their sign conversion), which classifiers labeled the rollouts, and that the alignment-faking
/// numbers come from the rule-based offline judge.
pub fn behavior_notes(b: &BehaviorAnalysis, rollouts: &[Rollout]) -> Vec<String> {
    let mut notes = Vec::new();
    match &b.source {
        MetricSource::Imported { note } => {
            notes.push(format!(
                "Imported metrics (no rollouts stored here, so no intervals): {}",
                if note.is_empty() {
                    "no note given"
                } else {
                    note
                }
            ));
        }
        MetricSource::Rollouts => {
            let used = classifiers_used(rollouts, &b.behavior);
            if !used.is_empty() {
                notes.push(format!("Labels by: {}", used.join(", ")));
            }
            let human = rollouts
                .iter()
                .filter(|r| r.human_label(&b.behavior).is_some())
                .count();
            if human > 0 {
                notes.push(format!(
                    "{human} rollout(s) carry a person's label, which the rates count in place \
                     of the classifier's."
                ));
            }
            let rule_judge = used
                .iter()
                .any(|c| c.starts_with(&format!("{}@", af_rules::CLASSIFIER)));
            if rule_judge || (used.is_empty() && b.behavior == ALIGNMENT_FAKING) {
                notes.push(format!(
                    "Alignment-faking labels come from the {}.",
                    af_rules::DISPLAY_NAME
                ));
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_labels_are_named_in_the_notes() {
        use crate::trace::{Label, LabelValue};
        let label = |classifier: &str| Label {
            value: LabelValue::Yes,
            classifier: classifier.into(),
            version: "1".into(),
            evidence: None,
        };
        let mut r = Rollout::bare(0, 0, "");
        r.labels
            .insert("compliance".to_string(), label("compliance-tag"));
        r.labels
            .insert("compliance (human)".to_string(), label("human"));
        let b = crate::analysis::analyze_trace(
            &crate::trace::Trace::new("t", Vec::new(), ""),
            std::slice::from_ref(&r),
            &["compliance".to_string()],
            &Default::default(),
        );
        let notes = behavior_notes(b.behavior("compliance").unwrap(), &[r]);
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("1 rollout(s) carry a person's label")),
            "{notes:?}"
        );
        assert!(notes[0].contains("compliance-tag@1"), "{notes:?}");
    }

    #[test]
    fn undefined_is_na_never_zero() {
        assert_eq!(fmt_rate(None), "n/a");
        assert_eq!(fmt_rate_ci(&Rate::new(0, 0)), "n/a");
        assert_eq!(fmt_diff(None), "n/a");
        assert_eq!(fmt_rate(Some(0.0)), "0.00");
    }

    #[test]
    fn rates_and_differences() {
        assert_eq!(fmt_rate_ci(&Rate::new(5, 10)), "0.50 [0.24, 0.76]");
        let d = Difference {
            value: 0.6,
            interval: Some(Interval {
                lo: 0.161823,
                hi: 0.802683,
            }),
        };
        assert_eq!(fmt_diff(Some(d)), "+0.60 [+0.16, +0.80]");
        assert_eq!(
            fmt_diff(Some(Difference {
                value: -0.12,
                interval: None
            })),
            "-0.12"
        );
        assert_eq!(direction_sign(Some(d)), "+");
        assert_eq!(significance_mark(Some(d)), "*");
        assert_eq!(direction_sign(None), "");
    }

    #[test]
    fn text_helpers() {
        assert_eq!(truncate_chars("héllo wörld", 5), "héll…");
        assert_eq!(truncate_chars("short", 5), "short");
        assert_eq!(one_line(" a\n\n b\tc "), "a b c");
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
