//! `anchorscope bench adaptive DIR…`: simulate fixed against adaptive resampling on real
//! Thought Anchors folders (their own rates as the truth), and print the rollouts each uses
//! and what the adaptive run loses (see analysis::adaptive::simulate and docs/METHOD.md).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;

use anchorscope::analysis::adaptive::simulate::{simulate, SimOptions, SimReport, SimSums, Truth};
use anchorscope::config::Config;
use anchorscope::trace::import::parse_path;

use super::output::print;
use super::BenchAdaptiveArgs;

/// One folder's line, or the pooled line.
#[derive(Debug, Serialize)]
struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
    sentences: usize,
    #[serde(flatten)]
    report: SimReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// `--json`: the pooled numbers at the top level, each folder's in `folders`.
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    pooled: &'a Line,
    folders: &'a [Line],
    options: &'a SimOptions,
}

pub fn run(args: &BenchAdaptiveArgs, config: &Config) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("--reps 0: run at least one repetition");
    }
    let settings = args.adaptive.apply(&config.sampling.adaptive_settings)?;
    let opts = SimOptions {
        settings,
        reps: args.reps,
        seed: args.seed,
        report_effect: 0.1,
    };
    let mut lines = Vec::new();
    let mut pooled = SimSums::default();
    let mut sentences = 0;
    for dir in &args.dirs {
        for (name, truth) in truths(dir, config)? {
            let sums = simulate(&truth, &opts)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("simulating {name}"))?;
            pooled.add(&sums);
            sentences += truth.sentences();
            lines.push(Line {
                folder: Some(name),
                sentences: truth.sentences(),
                report: sums.report(),
                notes: truth.notes,
            });
        }
    }
    let total = Line {
        folder: None,
        sentences,
        report: pooled.report(),
        notes: Vec::new(),
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&JsonOut {
            pooled: &total,
            folders: &lines,
            options: &opts,
        })?;
        text.push('\n');
        return print(&text);
    }
    print(&table(&lines, &total, &opts))
}

/// Every Thought Anchors trace under `dir` (a problem folder or a directory of them) with the
/// truth built from its imported metrics.
fn truths(dir: &Path, config: &Config) -> anyhow::Result<Vec<(String, Truth)>> {
    let parsed = parse_path(dir, &config.split).map_err(|e| anyhow::anyhow!("{e}"))?;
    for e in &parsed.errors {
        super::output::warn(e);
    }
    let mut out = Vec::new();
    for sourced in parsed.traces {
        let Some(imported) = sourced.trace.imported.first() else {
            continue;
        };
        let truth = Truth::from_imported(&imported.sentences)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sourced.path.display()))?;
        out.push((sourced.trace.id.clone(), truth));
    }
    if out.is_empty() {
        bail!(
            "{}: no Thought Anchors folder with per-chunk rates (chunks_labeled.json) here",
            dir.display()
        );
    }
    Ok(out)
}

fn share(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

fn table(lines: &[Line], total: &Line, opts: &SimOptions) -> String {
    let s = &opts.settings;
    let mut out = format!(
        "bench adaptive: {} repetitions (seed {}); fixed = {} rollouts at every position; \
         adaptive: round {}, α {} ({} before n_max), ε {}, futility {} at |Δ| ≥ {}, stride {}, \
         screen {} SE\n\n",
        opts.reps,
        opts.seed,
        s.n_max,
        s.round,
        s.alpha,
        s.interim_alpha,
        s.epsilon,
        s.futility,
        s.min_effect,
        s.stride,
        s.screen_z
    );
    let width = lines
        .iter()
        .filter_map(|l| l.folder.as_deref())
        .map(|f| f.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let _ = writeln!(
        out,
        "{:<width$} {:>5} {:>9} {:>9} {:>8} {:>16} {:>7} {:>7} {:>9} {:>6}",
        "folder",
        "sent.",
        "fixed",
        "adaptive",
        "savings",
        "(5%–95%)",
        "oracle",
        "recall",
        "precision",
        "sign"
    );
    for line in lines.iter().chain(std::iter::once(total)) {
        let r = &line.report;
        let spread = match (r.savings_p5, r.savings_p95) {
            (Some(a), Some(b)) => format!("{a:.3}–{b:.3}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<width$} {:>5} {:>9.0} {:>9.1} {:>8.3} {:>16} {:>7.3} {:>7} {:>9} {:>6}",
            line.folder.as_deref().unwrap_or("all folders"),
            line.sentences,
            r.fixed_rollouts,
            r.adaptive_rollouts,
            r.savings,
            spread,
            r.oracle_savings,
            share(r.recall),
            share(r.precision),
            share(r.sign_agreement)
        );
    }
    out.push_str(
        "\nrollouts: mean per repetition. recall: share of the sentences the fixed run finds \
         significant with |Δ| ≥ 0.1 that the adaptive run declares significant; precision: share \
         of the adaptive run's significant sentences with |Δ| ≥ 0.1 that the fixed run finds \
         significant; sign: of the recalled, same sign. oracle: the savings of a clairvoyant policy that knows \
         in advance which sentences the fixed run will find, samples their positions to n_max \
         and every other position one round: what the folder allows at full recall; a real \
         policy beats it only by declaring those sentences before n_max.\n",
    );
    for line in lines {
        let r = &line.report.resolved;
        let _ = writeln!(
            out,
            "{}: per repetition {:.1} significant, {:.1} precise, {:.1} futile, {:.1} at n_max, \
             {:.1} skipped; fixed finds {:.1} (|Δ| ≥ 0.1), of which missed: {:.2} futile, \
             {:.2} precise, {:.2} at n_max, {:.2} skipped",
            line.folder.as_deref().unwrap_or(""),
            r.significant,
            r.precise,
            r.futile,
            r.n_max,
            r.skipped,
            line.report.fixed_significant,
            line.report.missed.futile,
            line.report.missed.precise,
            line.report.missed.n_max,
            line.report.missed.skipped
        );
        for note in &line.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}
