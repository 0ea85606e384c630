//! `anchorscope stats`: the per-sentence metrics table, or the analysis as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::bail;
use serde::Serialize;

use anchorscope::analysis::significance::is_significant;
use anchorscope::analysis::{
    BehaviorAnalysis, Difference, Direction, ImportanceKind, MetricSource, Rate, SentenceMetrics,
    ShadeRule, SignificanceRule, TraceAnalysis, THEIRS_SUFFIX,
};
use anchorscope::config::Config;
use anchorscope::export::format::{fmt_fixed, fmt_signed};
use anchorscope::loaded::LoadedTrace;
use anchorscope::store::runs::{Pool, RunRecord};

use super::load;
use super::output::{one_line, print};
use super::StatsArgs;

/// Classifier id of the rule-based alignment-faking judge; its numbers are always labeled.
const AF_RULES_CLASSIFIER: &str = "af-rules";
/// Longest sentence excerpt in the table (characters).
const SENTENCE_WIDTH: usize = 60;

/// One trace's analysis as printed by `stats --json`.
#[derive(Debug, Serialize)]
struct TraceStats {
    trace: String,
    path: String,
    rollouts: usize,
    /// The importance the table would show (both kinds are in the data).
    importance: ImportanceKind,
    /// Problems met while loading (skipped store lines, dropped duplicates, import notes).
    warnings: Vec<String>,
    /// Which runs the rates pool, and why others are left out.
    pooled_runs: Pool,
    /// Every run record of the trace's store.
    runs: Vec<RunRecord>,
    #[serde(flatten)]
    analysis: TraceAnalysis,
}

pub fn run(args: &StatsArgs, config: &Config) -> anyhow::Result<()> {
    let config = &load::with_judge_scope(config, args.judge_scope);
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let mut traces = load::select(outcome.traces, args.trace.as_deref())?;
    load::fill_similarities(&mut traces);
    let behaviors = load::behavior_names(config)?;
    let kind = ImportanceKind::from(args.importance);

    let mut analysed = Vec::with_capacity(traces.len());
    for mut loaded in traces {
        let pooled = load::pool_runs(&mut loaded, config, args.pool)?;
        let mut analysis = load::analyze_pooled(&loaded, &behaviors, config, &pooled);
        if let Some(only) = &args.behavior {
            keep_behavior(&mut analysis, only, &loaded.trace.id)?;
        }
        analysed.push((loaded, analysis, pooled));
    }

    let text = if args.json {
        let mut stats: Vec<TraceStats> = analysed
            .into_iter()
            .map(|(loaded, analysis, pooled)| TraceStats {
                trace: loaded.trace.id,
                path: loaded.path.display().to_string(),
                rollouts: loaded.rollouts.len(),
                importance: kind,
                warnings: loaded.warnings,
                pooled_runs: pooled.pool,
                runs: pooled.runs,
                analysis,
            })
            .collect();
        // One object for one trace (the common case), an array when the path held several.
        let mut text = if stats.len() == 1 {
            serde_json::to_string_pretty(&stats.remove(0))?
        } else {
            serde_json::to_string_pretty(&stats)?
        };
        text.push('\n');
        text
    } else {
        analysed
            .iter()
            .map(|(loaded, analysis, pooled)| render_trace(loaded, analysis, kind, &pooled.pool))
            .collect::<Vec<_>>()
            .join("\n")
    };
    print(&text)
}

/// Drop every behavior but `name`; an unknown name is an error listing the known ones.
fn keep_behavior(analysis: &mut TraceAnalysis, name: &str, trace_id: &str) -> anyhow::Result<()> {
    if analysis.behavior(name).is_none() {
        bail!(
            "trace {trace_id} has no behavior {name:?}; behaviors: {}",
            analysis.behavior_names().join(", ")
        );
    }
    analysis.behaviors.retain(|b| b.behavior == name);
    Ok(())
}

/// The text report of one trace: a header, then one table per behavior.
fn render_trace(
    loaded: &LoadedTrace,
    analysis: &TraceAnalysis,
    kind: ImportanceKind,
    pool: &Pool,
) -> String {
    let trace = &loaded.trace;
    let mut out = String::new();
    let _ = writeln!(out, "trace {}  ({})", trace.id, loaded.path.display());
    let _ = writeln!(
        out,
        "  {} sentences, {} rollouts; importance: {}",
        trace.sentences.len(),
        loaded.rollouts.len(),
        kind_name(kind)
    );
    let _ = writeln!(out, "  {}", pool.summary());
    if let Some(note) = &trace.manifest.note {
        let _ = writeln!(out, "  manifest: {note}");
    }
    let _ = writeln!(
        out,
        "  without/with = rate when the sentence is resampled/kept (k/m); q = Benjamini-Hochberg q-value across the trace; * = {}; inv = invalid rollouts at i; dir: + promotes, - suppresses",
        significance_meaning(&analysis.rule)
    );
    for behavior in &analysis.behaviors {
        out.push('\n');
        let _ = writeln!(out, "{}", behavior.behavior);
        for note in notes(loaded, behavior) {
            let _ = writeln!(out, "  note: {note}");
        }
        let sentence_text = |i: usize| {
            trace
                .sentences
                .get(i)
                .map(|s| one_line(&s.text, SENTENCE_WIDTH))
                .unwrap_or_default()
        };
        let rows: Vec<Vec<String>> = behavior
            .sentences
            .iter()
            .map(|s| row(behavior, s, kind, &analysis.rule, sentence_text(s.index)))
            .collect();
        out.push_str(&table(&HEADER, &rows));
    }
    out
}

/// What the `*` column means under the analysis's rule.
fn significance_meaning(rule: &ShadeRule) -> String {
    match rule.significance {
        SignificanceRule::PerSentence => "95% interval excludes 0".into(),
        SignificanceRule::Fdr => format!("q <= {} (FDR)", rule.fdr_level),
    }
}

const HEADER: [&str; 12] = [
    "#",
    "without",
    "with",
    "importance [95% CI]",
    "q",
    "sig",
    "inv",
    "dir",
    "KL",
    "diff",
    "overdet",
    "sentence",
];

/// One table row for sentence `s`.
fn row(
    b: &BehaviorAnalysis,
    s: &SentenceMetrics,
    kind: ImportanceKind,
    rule: &ShadeRule,
    text: String,
) -> Vec<String> {
    let (without, with) = match b.source {
        MetricSource::Rollouts => (rate_cell(s.rate_without), rate_cell(s.rate_with)),
        // Imported rates carry no counts: show the point value alone.
        MetricSource::Imported { .. } => (
            opt_cell(b.rate_value(s.index), 2),
            opt_cell(b.rate_value(s.index + 1), 2),
        ),
    };
    let importance = s.importance(kind);
    vec![
        s.index.to_string(),
        without,
        with,
        importance_cell(importance),
        s.q_value(kind)
            .map_or_else(String::new, |q| format!("{q:.3}")),
        if is_significant(s, kind, rule) {
            "*".into()
        } else {
            String::new()
        },
        match b.source {
            MetricSource::Rollouts => {
                let invalid = b.invalid.get(s.index).copied().unwrap_or(0);
                let warn = b.invalid_share(s.index).is_some_and(|x| x > 0.2);
                format!("{invalid}{}", if warn { "!" } else { "" })
            }
            MetricSource::Imported { .. } => String::new(),
        },
        importance
            .map(|d| direction_glyph(Direction::of(d.value)).to_string())
            .unwrap_or_default(),
        opt_cell(s.kl, 3),
        opt_cell(s.different_fraction, 2),
        opt_cell(s.overdeterminedness, 2),
        text,
    ]
}

/// Lines that say where a behavior's numbers come from, shown above its table.
fn notes(loaded: &LoadedTrace, b: &BehaviorAnalysis) -> Vec<String> {
    let mut notes = Vec::new();
    if let MetricSource::Imported { note } = &b.source {
        notes.push(format!(
            "imported, not computed here: {note} (no counts, so no intervals)"
        ));
        // What the import changed (realignment, placeholders), from the matching metric set.
        let base = b
            .behavior
            .strip_suffix(THEIRS_SUFFIX)
            .unwrap_or(&b.behavior);
        if let Some(set) = loaded.trace.imported.iter().find(|m| m.behavior == base) {
            notes.extend(set.notes.iter().cloned());
        }
        return notes;
    }
    let mut classifiers: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in &loaded.rollouts {
        if let Some(label) = r.labels.get(&b.behavior) {
            *classifiers
                .entry((label.classifier.as_str(), label.version.as_str()))
                .or_default() += 1;
        }
    }
    if loaded.rollouts.is_empty() {
        notes.push("no rollouts stored for this trace: every rate and importance is n/a".into());
    } else if classifiers.is_empty() {
        notes.push("no rollout has a label for this behavior: every rate is n/a".into());
    }
    if !classifiers.is_empty() {
        let list: Vec<String> = classifiers
            .iter()
            .map(|((c, v), n)| format!("{c} {v} ({n} rollouts)"))
            .collect();
        notes.push(format!("labels by {}", list.join(", ")));
    }
    let human = loaded
        .rollouts
        .iter()
        .filter(|r| r.human_label(&b.behavior).is_some())
        .count();
    if human > 0 {
        notes.push(format!(
            "{human} rollout(s) carry a person's label, which the rates count in place of the \
             classifier's"
        ));
    }
    let warned: Vec<String> = (0..b.positions.len())
        .filter(|&p| b.invalid_share(p).is_some_and(|x| x > 0.2))
        .map(|p| p.to_string())
        .collect();
    if !warned.is_empty() {
        notes.push(format!(
            "warning: over 20% of the rollouts are invalid at position(s) {} (marked ! in inv); invalid labels leave the denominator",
            warned.join(", ")
        ));
    }
    if classifiers.keys().any(|(c, _)| *c == AF_RULES_CLASSIFIER) {
        notes.push(
            "alignment-faking labels from the rule-based judge (af-rules: regular expressions over the five criteria), not the paper's model judge"
                .into(),
        );
    }
    notes
}

fn kind_name(kind: ImportanceKind) -> &'static str {
    match kind {
        ImportanceKind::Counterfactual => {
            "counterfactual (kept vs. replaced by a different-meaning sentence)"
        }
        ImportanceKind::Resampling => "resampling (kept vs. resampled)",
    }
}

fn direction_glyph(d: Direction) -> &'static str {
    match d {
        Direction::Promotes => "+",
        Direction::Suppresses => "-",
        Direction::Neutral => "0",
    }
}

fn rate_cell(rate: Rate) -> String {
    match rate.value() {
        Some(v) => format!("{v:.2} ({}/{})", rate.k, rate.m),
        None => "n/a".into(),
    }
}

fn opt_cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => fmt_fixed(v, decimals),
        None => "n/a".into(),
    }
}

fn importance_cell(d: Option<Difference>) -> String {
    match d {
        None => "n/a".into(),
        Some(d) => match d.interval {
            Some(i) => format!(
                "{} [{}, {}]",
                fmt_signed(d.value),
                fmt_signed(i.lo),
                fmt_signed(i.hi)
            ),
            None => fmt_signed(d.value),
        },
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain(std::iter::once(header[col].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rollout pooled (the fixtures have no run records).
    fn test_pool(l: &LoadedTrace) -> Pool {
        anchorscope::store::runs::pool(&l.rollouts, &[], anchorscope::store::runs::PoolMode::All)
    }
    use anchorscope::analysis::{analyze_trace, from_imported, AnalysisOptions};
    use anchorscope::trace::{
        FinishReason, ImportedMetrics, ImportedSentenceMetrics, Label, LabelValue, Message,
        Rollout, Sentence, Trace,
    };
    use std::path::PathBuf;

    fn rollout(position: usize, value: LabelValue, classifier: &str, sim: f32) -> Rollout {
        let mut labels = BTreeMap::new();
        labels.insert(
            "alignment_faking".to_string(),
            Label {
                value,
                classifier: classifier.into(),
                version: "1".into(),
                evidence: None,
            },
        );
        Rollout {
            position,
            seed: 0,
            replacement: format!("r{position}"),
            text: String::new(),
            tokens: 1,
            finish: FinishReason::Stop,
            labels,
            similarity: Some(sim),
            run: None,
            recurrence: None,
        }
    }

    fn loaded(rollouts: Vec<Rollout>) -> LoadedTrace {
        let mut trace = Trace::new(
            "t1",
            vec![Message::new("user", "q")],
            "First one. Second one.",
        );
        trace.sentences = vec![
            Sentence {
                start: 0,
                end: 10,
                text: "First one.".into(),
            },
            Sentence {
                start: 11,
                end: 22,
                text: "Second one.".into(),
            },
        ];
        LoadedTrace {
            trace,
            rollouts,
            path: PathBuf::from("t1.json"),
            store_path: PathBuf::from("t1.rollouts.jsonl"),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn cells_format_values_and_undefined() {
        assert_eq!(rate_cell(Rate::new(1, 3)), "0.33 (1/3)");
        assert_eq!(rate_cell(Rate::default()), "n/a");
        assert_eq!(opt_cell(None, 2), "n/a");
        assert_eq!(opt_cell(Some(0.12345), 3), "0.123");
        assert_eq!(importance_cell(None), "n/a");
        assert_eq!(
            importance_cell(Some(Difference {
                value: -0.5,
                interval: None
            })),
            "-0.50"
        );
    }

    #[test]
    fn table_aligns_columns_by_chars() {
        let rows = vec![vec!["10".to_string(), "é".to_string(), "x".to_string()]];
        assert_eq!(
            table(&["#", "abc", "s"], &rows),
            "  #   abc  s\n  10  é    x\n"
        );
    }

    #[test]
    fn computed_rows_show_counts_sign_and_af_rules_note() {
        // Position 0: 0 of 2 (both semantically different); position 1: 2 of 2 → Δcf = +1.
        let rs = vec![
            rollout(0, LabelValue::No, "af-rules", 0.1),
            rollout(0, LabelValue::No, "af-rules", 0.2),
            rollout(1, LabelValue::Yes, "af-rules", 0.9),
            rollout(1, LabelValue::Yes, "af-rules", 0.9),
        ];
        let l = loaded(rs);
        let names = vec!["alignment_faking".to_string()];
        let a = analyze_trace(&l.trace, &l.rollouts, &names, &AnalysisOptions::default());
        let text = render_trace(&l, &a, ImportanceKind::Counterfactual, &test_pool(&l));
        let row0 = text
            .lines()
            .find(|l| l.trim_start().starts_with("0 "))
            .unwrap();
        assert!(row0.contains("0.00 (0/2)"), "{row0}");
        assert!(row0.contains("1.00 (2/2)"), "{row0}");
        assert!(row0.contains("+1.00 ["), "{row0}");
        assert!(row0.contains(" * "), "2/2 vs 0/2 is significant: {row0}");
        assert!(row0.ends_with("First one."), "{row0}");
        // Sentence 1 has no rollouts at position 2: undefined, not 0.
        let row1 = text
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap();
        assert!(row1.contains("n/a"), "{row1}");
        assert!(!row1.contains('*'), "{row1}");
        assert!(text.contains("af-rules 1 (4 rollouts)"), "{text}");
        assert!(text.contains("rule-based judge"), "{text}");
    }

    #[test]
    fn no_rollouts_says_so() {
        let l = loaded(Vec::new());
        let names = vec!["compliance".to_string()];
        let a = analyze_trace(&l.trace, &l.rollouts, &names, &AnalysisOptions::default());
        let text = render_trace(&l, &a, ImportanceKind::Resampling, &test_pool(&l));
        assert!(text.contains("no rollouts stored"), "{text}");
        assert!(text.contains("importance: resampling"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  0 ") || l.starts_with("  1 "))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows.iter().all(|r| !r.contains('*')), "{text}");
    }

    #[test]
    fn imported_metrics_are_marked_and_have_no_counts() {
        let l = loaded(Vec::new());
        let imp = ImportedMetrics {
            behavior: "accuracy".into(),
            note: "Thought Anchors, sign flipped".into(),
            notes: vec![],
            sentences: vec![ImportedSentenceMetrics {
                rate: Some(0.3),
                counterfactual_importance: Some(-0.12),
                ..Default::default()
            }],
        };
        let a = TraceAnalysis {
            behaviors: vec![from_imported(2, &imp)],
            rule: Default::default(),
            pooled: None,
        };
        let text = render_trace(&l, &a, ImportanceKind::Counterfactual, &test_pool(&l));
        assert!(text.contains("imported, not computed here: Thought Anchors, sign flipped"));
        let row0 = text
            .lines()
            .find(|l| l.trim_start().starts_with("0 "))
            .unwrap();
        assert!(row0.contains("0.30") && row0.contains("-0.12"), "{row0}");
        assert!(!row0.contains('('), "no counts for imported rates: {row0}");
    }

    #[test]
    fn keep_behavior_filters_or_lists_names() {
        let l = loaded(Vec::new());
        let names = vec!["compliance".to_string(), "alignment_faking".to_string()];
        let mut a = analyze_trace(&l.trace, &l.rollouts, &names, &AnalysisOptions::default());
        let err = keep_behavior(&mut a.clone(), "nope", "t1").unwrap_err();
        assert!(
            err.to_string().contains("compliance, alignment_faking"),
            "{err}"
        );
        keep_behavior(&mut a, "compliance", "t1").unwrap();
        assert_eq!(a.behavior_names(), vec!["compliance"]);
    }
}
