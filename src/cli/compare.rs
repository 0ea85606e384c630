//! `anchorscope compare A B`: two traces side by side (e.g. the free and the paid tier of one
//! query): sentences aligned by similarity, both importances and their difference A − B.
//! Each trace is loaded, pooled and analysed exactly as `stats` does, so the numbers agree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use anchorscope::analysis::compare::{
    compare, BehaviorComparison, CompareOptions, CompareSide, Comparison, SideSummary,
    SimilarityChoice, DEFAULT_MIN_SIMILARITY,
};
use anchorscope::analysis::{ImportanceKind, SignificanceRule, TraceAnalysis};
use anchorscope::behavior::scope::JudgeScope;
use anchorscope::config::Config;
use anchorscope::engine::compare_similarity::sentence_similarities;
use anchorscope::export::format::{fmt_diff, fmt_fixed, fmt_rate_ci, significance_mark};
use anchorscope::loaded::LoadedTrace;
use anchorscope::store::runs::PoolMode;

use super::output::{one_line, print, warn};
use super::{choice, load, ImportanceArg};

/// Characters of each sentence shown in the table.
const SENTENCE_WIDTH: usize = 40;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first trace (file or directory); differences are A minus B.
    #[arg(value_name = "A")]
    pub a: PathBuf,

    /// The second trace (file or directory).
    #[arg(value_name = "B")]
    pub b: PathBuf,

    /// Which trace of A, when A holds several (JSONL, directory).
    #[arg(long, value_name = "ID")]
    pub trace_a: Option<String>,

    /// Which trace of B, when B holds several.
    #[arg(long, value_name = "ID")]
    pub trace_b: Option<String>,

    /// The behavior of the table (default: the first, compliance for native traces); with
    /// --json, only this behavior.
    #[arg(long, value_name = "B")]
    pub behavior: Option<String>,

    /// Which importance is compared.
    #[arg(long, value_enum, default_value_t = ImportanceArg::Counterfactual)]
    pub importance: ImportanceArg,

    /// How sentences are matched: `auto` (the installed sentence embedder, else word counts,
    /// said in the output), `embedding` (an error without the embedder) or `lexical`.
    #[arg(long, value_name = "HOW", default_value = "auto",
          value_parser = choice::<SimilarityChoice>(SimilarityChoice::NAMES))]
    pub similarity: SimilarityChoice,

    /// Sentences less similar than this are left unaligned.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_MIN_SIMILARITY)]
    pub min_similarity: f32,

    /// Print the whole comparison as JSON (alignment, both rate curves, per-row numbers).
    #[arg(long)]
    pub json: bool,

    /// Which runs' rollouts the rates pool: `matching` (default, or `[sampling] pool`) or `all`.
    #[arg(long, value_name = "WHICH", value_parser = choice::<PoolMode>(PoolMode::NAMES))]
    pub pool: Option<PoolMode>,

    /// What reasoning behaviors are judged on: `full` or `continuation` (default: the config's
    /// `[analysis] judge_scope`, else full).
    #[arg(long, value_name = "SCOPE", value_parser = choice::<JudgeScope>(JudgeScope::NAMES))]
    pub judge_scope: Option<JudgeScope>,
}

/// `compare --json`: the comparison with where each trace came from.
#[derive(Serialize)]
struct CompareJson<'a> {
    a_path: String,
    b_path: String,
    /// Problems met while loading each trace (skipped store lines, import notes).
    warnings_a: &'a [String],
    warnings_b: &'a [String],
    #[serde(flatten)]
    comparison: &'a Comparison,
}

pub fn run(args: &CompareArgs, config: &Config) -> anyhow::Result<()> {
    if !args.min_similarity.is_finite() {
        bail!("--min-similarity {} is not a number", args.min_similarity);
    }
    let config = &load::with_judge_scope(config, args.judge_scope);
    let mut a = load_one(&args.a, args.trace_a.as_deref(), "A", config)?;
    let mut b = load_one(&args.b, args.trace_b.as_deref(), "B", config)?;
    let analysis_a = analyze(&mut a, args.pool, config).context(side_context("A", &a))?;
    let analysis_b = analyze(&mut b, args.pool, config).context(side_context("B", &b))?;

    let texts = |l: &LoadedTrace| -> Vec<String> {
        l.trace.sentences.iter().map(|s| s.text.clone()).collect()
    };
    let (ta, tb) = (texts(&a), texts(&b));
    let sa: Vec<&str> = ta.iter().map(String::as_str).collect();
    let sb: Vec<&str> = tb.iter().map(String::as_str).collect();
    let sims = sentence_similarities(&sa, &sb, args.similarity)?;
    // Said in the output too; on stderr as well so a reader of --json cannot miss it.
    if let Some(why) = &sims.method.fallback_reason {
        warn(format_args!(
            "sentences aligned by {} instead of the sentence embedder: {why}",
            sims.method.name
        ));
    }
    let kind = ImportanceKind::from(args.importance);
    let mut comparison = compare(
        CompareSide {
            trace: &a.trace,
            analysis: &analysis_a,
            rollouts: a.rollouts.len(),
        },
        CompareSide {
            trace: &b.trace,
            analysis: &analysis_b,
            rollouts: b.rollouts.len(),
        },
        &sims.matrix,
        sims.method,
        &CompareOptions {
            min_similarity: args.min_similarity,
            importance: kind,
        },
    )?;
    let behavior = pick_behavior(&comparison, args.behavior.as_deref())?;

    let text = if args.json {
        if args.behavior.is_some() {
            comparison.behaviors.retain(|x| x.behavior == behavior);
        }
        let json = CompareJson {
            a_path: a.path.display().to_string(),
            b_path: b.path.display().to_string(),
            warnings_a: &a.warnings,
            warnings_b: &b.warnings,
            comparison: &comparison,
        };
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        text
    } else {
        let rules = [&analysis_a, &analysis_b].map(significance_meaning);
        render(&comparison, &behavior, [&a.path, &b.path], rules)
    };
    print(&text)
}

fn side_context(which: &str, l: &LoadedTrace) -> String {
    format!("trace {which} ({})", l.path.display())
}

/// Load the one trace of a side; every error says which side and which file.
fn load_one(
    path: &Path,
    id: Option<&str>,
    which: &str,
    config: &Config,
) -> anyhow::Result<LoadedTrace> {
    let outcome = load::load(path, &config.split).with_context(|| format!("trace {which}"))?;
    load::warn_about(&outcome);
    let mut loaded = load::select_one(outcome.traces, id)
        .with_context(|| format!("trace {which} ({})", path.display()))?;
    load::fill_similarities(std::slice::from_mut(&mut loaded));
    Ok(loaded)
}

/// The analysis `stats` would print for this trace (same behaviors, pool and options).
fn analyze(
    loaded: &mut LoadedTrace,
    pool: Option<PoolMode>,
    config: &Config,
) -> anyhow::Result<TraceAnalysis> {
    let behaviors = load::behavior_names(config)?;
    let pooled = load::pool_runs(loaded, config, pool)?;
    Ok(load::analyze_pooled(loaded, &behaviors, config, &pooled))
}

/// The named behavior, or the first; an unknown name is an error listing the known ones.
fn pick_behavior(c: &Comparison, name: Option<&str>) -> anyhow::Result<String> {
    let names = c.behavior_names();
    match name {
        Some(n) if names.contains(&n) => Ok(n.to_string()),
        Some(n) => bail!(
            "neither trace has behavior {n:?}; behaviors: {}",
            names.join(", ")
        ),
        None => match names.first() {
            Some(first) => Ok(first.to_string()),
            None => bail!("neither trace has any behavior to compare"),
        },
    }
}

/// What `*` means for one trace's importances under its analysis rule.
fn significance_meaning(analysis: &TraceAnalysis) -> String {
    match analysis.rule.significance {
        SignificanceRule::PerSentence => "95% interval excludes 0".into(),
        SignificanceRule::Fdr => format!("q <= {} (FDR)", analysis.rule.fdr_level),
    }
}

/// The text report: a header naming both traces and the similarity, then one row per aligned
/// row with both importances and the difference for `behavior`.
fn render(c: &Comparison, behavior: &str, paths: [&Path; 2], rules: [String; 2]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "compare: difference = A - B (A minus B)");
    for (label, side, path) in [("A", &c.a, paths[0]), ("B", &c.b, paths[1])] {
        let _ = writeln!(out, "  {label}  {}  ({})", side.id, path.display());
        let _ = writeln!(out, "     {}", side_line(side));
    }
    let alone_a = c
        .pairs
        .iter()
        .filter(|p| p.a.is_some() && p.b.is_none())
        .count();
    let alone_b = c
        .pairs
        .iter()
        .filter(|p| p.b.is_some() && p.a.is_none())
        .count();
    let _ = writeln!(out, "  similarity: {}", c.similarity.describe());
    let _ = writeln!(
        out,
        "  {} aligned pairs (similarity >= {}); alone: {alone_a} sentence(s) of A, {alone_b} of B",
        c.aligned_count(),
        fmt_fixed(f64::from(c.min_similarity), 2),
    );
    let others: Vec<&str> = c
        .behavior_names()
        .into_iter()
        .filter(|n| *n != behavior)
        .collect();
    let _ = writeln!(
        out,
        "  behavior: {behavior}{}; importance: {}",
        if others.is_empty() {
            String::new()
        } else {
            format!(" (others: {}; pick with --behavior)", others.join(", "))
        },
        kind_name(c.importance)
    );
    let same_rule = rules[0] == rules[1];
    let _ = writeln!(
        out,
        "  A, B = importance [95% CI] in each trace, * = {}; A-B [95% CI] from the two intervals (MOVER), * = excludes 0 (per row, uncorrected); n/a = no estimate",
        if same_rule {
            rules[0].clone()
        } else {
            format!("A: {}, B: {}", rules[0], rules[1])
        }
    );
    let Some(b) = c.behavior(behavior) else {
        return out;
    };
    for note in behavior_notes(c, b) {
        let _ = writeln!(out, "  note: {note}");
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = c
        .pairs
        .iter()
        .zip(&b.rows)
        .map(|(p, r)| {
            let text = |side: &SideSummary, i: Option<usize>| {
                i.and_then(|i| side.sentences.get(i))
                    .map(|t| one_line(t, SENTENCE_WIDTH))
                    .unwrap_or_default()
            };
            let cell = |d, significant: bool| {
                format!("{}{}", fmt_diff(d), if significant { "*" } else { "" })
            };
            vec![
                p.a.map_or_else(String::new, |i| i.to_string()),
                p.b.map_or_else(String::new, |i| i.to_string()),
                p.similarity
                    .map_or_else(String::new, |s| fmt_fixed(f64::from(s), 2)),
                if p.a.is_some() {
                    cell(r.a, r.significant_a)
                } else {
                    String::new()
                },
                if p.b.is_some() {
                    cell(r.b, r.significant_b)
                } else {
                    String::new()
                },
                format!(
                    "{}{}",
                    fmt_diff(r.difference),
                    significance_mark(r.difference)
                ),
                text(&c.a, p.a),
                text(&c.b, p.b),
            ]
        })
        .collect();
    out.push_str(&super::stats::table(&HEADER, &rows));
    out
}

const HEADER: [&str; 8] = [
    "A",
    "B",
    "sim",
    "A [95% CI]",
    "B [95% CI]",
    "A-B [95% CI]",
    "sentence A",
    "sentence B",
];

/// "tier free · model M · 17 sentences · 54 rollouts · pooled runs: 1 of 1".
fn side_line(s: &SideSummary) -> String {
    let mut parts = vec![
        format!("tier {}", s.tier.as_deref().unwrap_or("?")),
        format!("model {}", s.model.as_deref().unwrap_or("?")),
        format!("{} sentences", s.sentences.len()),
        format!("{} rollouts", s.rollouts),
    ];
    if let Some(p) = &s.pooled {
        parts.push(p.clone());
    }
    parts.join(" · ")
}

/// Lines above the table: a side without the behavior or without data, and the rate with the
/// whole reasoning kept (the last point of each curve).
fn behavior_notes(c: &Comparison, b: &BehaviorComparison) -> Vec<String> {
    let mut notes = Vec::new();
    for (label, side, source, rates) in [
        ("A", &c.a, &b.source_a, &b.rates_a),
        ("B", &c.b, &b.source_b, &b.rates_b),
    ] {
        if source.is_none() {
            notes.push(format!(
                "trace {label} has no behavior {}: its column is empty",
                b.behavior
            ));
            continue;
        }
        if side.rollouts == 0 {
            notes.push(format!(
                "trace {label} has no rollouts: its importances are n/a"
            ));
        }
        if let Some(last) = rates.last() {
            let rate = match last.rate {
                Some(r) => format!("{} ({}/{})", fmt_rate_ci(&r), r.k, r.m),
                None => last.value.map_or_else(|| "n/a".into(), |v| fmt_fixed(v, 2)),
            };
            notes.push(format!(
                "{label}: rate with the whole reasoning kept (position {}): {rate}",
                last.position
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use anchorscope::analysis::compare::{lexical_matrix, SimilarityMethod};
    use anchorscope::analysis::{analyze_trace, AnalysisOptions};
    use anchorscope::trace::{Sentence, Trace};

    fn trace(id: &str, texts: &[&str]) -> Trace {
        let mut t = Trace::new(id, vec![], texts.join(" "));
        t.sentences = texts
            .iter()
            .map(|s| Sentence {
                start: 0,
                end: 0,
                text: s.to_string(),
            })
            .collect();
        t
    }

    fn comparison() -> Comparison {
        let (ta, tb) = (
            trace("a", &["Shared words here.", "Only in A."]),
            trace("b", &["Shared words here."]),
        );
        let names = vec!["compliance".to_string(), "alignment_faking".to_string()];
        let aa = analyze_trace(&ta, &[], &names, &AnalysisOptions::default());
        let ab = analyze_trace(&tb, &[], &names, &AnalysisOptions::default());
        let sim = lexical_matrix(
            &["Shared words here.", "Only in A."],
            &["Shared words here."],
        )
        .unwrap();
        compare(
            CompareSide {
                trace: &ta,
                analysis: &aa,
                rollouts: 0,
            },
            CompareSide {
                trace: &tb,
                analysis: &ab,
                rollouts: 0,
            },
            &sim,
            SimilarityMethod::lexical(Some("not installed".into())),
            &CompareOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn behavior_defaults_to_the_first_and_unknown_names_are_listed() {
        let c = comparison();
        assert_eq!(pick_behavior(&c, None).unwrap(), "compliance");
        assert_eq!(
            pick_behavior(&c, Some("alignment_faking")).unwrap(),
            "alignment_faking"
        );
        let err = pick_behavior(&c, Some("x")).unwrap_err().to_string();
        assert!(err.contains("compliance, alignment_faking"), "{err}");
    }

    #[test]
    fn text_has_both_sides_the_fallback_and_a_row_per_aligned_row() {
        let c = comparison();
        let rules = [
            "95% interval excludes 0".to_string(),
            "95% interval excludes 0".to_string(),
        ];
        let text = render(
            &c,
            "compliance",
            [Path::new("a.json"), Path::new("b.json")],
            rules,
        );
        assert!(text.contains("A  a  (a.json)"), "{text}");
        assert!(text.contains("B  b  (b.json)"), "{text}");
        assert!(text.contains("FALLBACK"), "{text}");
        assert!(text.contains("not installed"), "{text}");
        assert!(text.contains("1 aligned pairs"), "{text}");
        assert!(text.contains("alone: 1 sentence(s) of A, 0 of B"), "{text}");
        assert!(text.contains("trace A has no rollouts"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("sentence A"))
            .collect();
        // Header + one line per row of the alignment.
        assert_eq!(rows.len(), 1 + c.pairs.len(), "{text}");
        assert!(rows[1].contains("1.00") && rows[1].contains("Shared words here."));
        // A's second sentence alone: no B cell, and the difference is n/a.
        assert!(
            rows[2].contains("Only in A.") && rows[2].contains("n/a"),
            "{}",
            rows[2]
        );
    }
}
