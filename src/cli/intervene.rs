//! `anchorscope intervene TRACE (--delete I | --replace I TEXT | --swap-tier)`: make the
//! derived trace (trace::intervention), sample it and the parent at the matching point with
//! the same settings, and print the effect with its interval (docs/METHOD.md, "Interventions").

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use anchorscope::analysis::adaptive::PositionCounts;
use anchorscope::analysis::{newcombe, Difference, Rate};
use anchorscope::config::Config;
use anchorscope::engine::{worker, Job};
use anchorscope::store::derived::{derived_path_for, save_derived, Saved};
use anchorscope::store::runs::{pool, PoolMode};
use anchorscope::store::{read_rollouts, store_path_for};
use anchorscope::trace::intervention::{
    continuation_position, derive, parent_position, resilience, tier_of, Edit,
};
use anchorscope::trace::{Rollout, Trace};

use super::engine_opts::{self, model_label};
use super::job_runner::run_jobs;
use super::load;
use super::output::{print, warn};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("edit").required(true).args(["delete", "replace", "swap_tier"])))]
pub struct InterveneArgs {
    /// Trace file (or a file or directory holding it, with --trace).
    #[arg(value_name = "TRACE")]
    pub trace_path: PathBuf,

    /// Only this trace, when TRACE holds several.
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,

    /// Delete sentence I and continue from the reasoning before it.
    #[arg(long, value_name = "I")]
    pub delete: Option<usize>,

    /// Replace sentence I by TEXT and continue after it.
    #[arg(long, num_args = 2, value_names = ["I", "TEXT"])]
    pub replace: Option<Vec<String>>,

    /// Keep the reasoning and swap `<is_free_tier_user>` (true ↔ false) in the user turn;
    /// every position is sampled under both tiers.
    #[arg(long)]
    pub swap_tier: bool,

    /// Rollouts at each sampled position, on each side (stored ones count).
    #[arg(short = 'n', long = "rollouts", value_name = "N", default_value_t = 20)]
    pub n: usize,

    /// Only this behavior in the printed effect.
    #[arg(long, value_name = "B")]
    pub behavior: Option<String>,

    #[command(flatten)]
    pub sampling: engine_opts::SamplingArgs,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One behavior's effect at one point: the rate after the edit against the parent's.
#[derive(Debug, Serialize)]
struct Row {
    /// The derived trace's position (the parent's is `parent_position`).
    position: usize,
    parent_position: usize,
    after: RateOut,
    original: RateOut,
    /// after − original with its 95% Newcombe interval; absent when a side has no valid label.
    difference: Option<Difference>,
}

#[derive(Debug, Serialize)]
struct RateOut {
    k: u32,
    m: u32,
    rate: Option<f64>,
    interval: Option<anchorscope::analysis::Interval>,
}

impl From<Rate> for RateOut {
    fn from(r: Rate) -> Self {
        Self {
            k: r.k,
            m: r.m,
            rate: r.value(),
            interval: r.wilson(),
        }
    }
}

#[derive(Debug, Serialize)]
struct BehaviorEffect {
    behavior: String,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Report {
    parent: String,
    derived: String,
    derived_path: PathBuf,
    edit: Edit,
    rollouts_stored: usize,
    effects: Vec<BehaviorEffect>,
    /// Deletions: how often the deleted sentence's content comes back in the continuation.
    #[serde(skip_serializing_if = "Option::is_none")]
    resilience: Option<Resilience>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Resilience {
    threshold: f32,
    #[serde(flatten)]
    rate: RateOut,
}

pub fn run(args: &InterveneArgs, config: &Config) -> anyhow::Result<()> {
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let loaded = load::select_one(outcome.traces, args.trace.as_deref())?;
    let parent = &loaded.trace;
    if args.n == 0 {
        bail!("-n 0: ask for at least one rollout per position");
    }
    let edit = edit_of(args, parent)?;
    let derived = derive(parent, edit.clone())
        .with_context(|| format!("{}: {}", loaded.path.display(), parent.id))?;
    let derived_path = derived_path_for(&loaded.path, &derived.id);
    if save_derived(&derived_path, &derived)? == Saved::Written {
        eprintln!("derived trace: {}", derived_path.display());
    }
    let derived_store = store_path_for(&derived_path);

    // Both sides are sampled with the same settings: the parent's manifest, then the flags.
    let base = parent.manifest.sampler.clone().unwrap_or_default();
    let sampler = args.sampling.sampler(base)?;
    let (derived_positions, parent_positions): (Vec<usize>, Vec<usize>) =
        match (continuation_position(&derived), parent_position(&edit)) {
            (Some(d), Some(p)) => (vec![d], vec![p]),
            _ => (
                (0..parent.positions()).collect(),
                (0..parent.positions()).collect(),
            ),
        };
    let job = |id, trace: &Trace, store: &Path, positions: &[usize]| Job {
        id,
        trace: Arc::new(trace.clone()),
        store_path: store.to_path_buf(),
        positions: positions.to_vec(),
        n: args.n,
        sampler: sampler.clone(),
        adaptive: None,
    };
    let jobs = vec![
        job(1, &derived, &derived_store, &derived_positions),
        job(2, parent, &loaded.store_path, &parent_positions),
    ];
    let engine = args.sampling.engine(config)?;
    let worker_cfg = args.sampling.worker(config, engine);
    let label = model_label(&worker_cfg);
    let (tx, rx) = mpsc::channel();
    let handle = worker::spawn(worker_cfg, move |e| {
        let _ = tx.send(e);
    });
    let outcome = run_jobs(&handle, &rx, "intervene", jobs, label, |_| String::new())?;
    handle.shutdown();
    if outcome.total_stored() == 0 && !outcome.errors.is_empty() {
        bail!("no rollout was sampled:\n  {}", outcome.errors.join("\n  "));
    }

    let mut notes = Vec::new();
    let after = pooled(&derived_store, config.sampling.pool, &mut notes)?;
    let original = pooled(&loaded.store_path, config.sampling.pool, &mut notes)?;
    let behaviors = behaviors_of(&after, &original, args.behavior.as_deref());
    if behaviors.is_empty() {
        notes.push("no rollout carries a label on either side: nothing to compare".into());
    }
    let pairs: Vec<(usize, usize)> = derived_positions
        .iter()
        .copied()
        .zip(parent_positions.iter().copied())
        .collect();
    let effects = behaviors
        .iter()
        .map(|b| BehaviorEffect {
            behavior: b.clone(),
            rows: pairs
                .iter()
                .map(|&(d, p)| {
                    let (a, o) = (rate_at(&after, d, b), rate_at(&original, p, b));
                    Row {
                        position: d,
                        parent_position: p,
                        after: a.into(),
                        original: o.into(),
                        difference: newcombe(a, o),
                    }
                })
                .collect(),
        })
        .collect();
    let resilience = match &edit {
        Edit::Delete { .. } => deleted_content_back(&after, &derived_positions, config, &mut notes),
        _ => None,
    };
    let report = Report {
        parent: parent.id.clone(),
        derived: derived.id.clone(),
        derived_path,
        edit,
        rollouts_stored: outcome.total_stored(),
        effects,
        resilience,
        notes,
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        return print(&text);
    }
    print(&table(&report))
}

fn edit_of(args: &InterveneArgs, parent: &Trace) -> anyhow::Result<Edit> {
    if let Some(i) = args.delete {
        return Ok(Edit::Delete { sentence: i });
    }
    if let Some(v) = &args.replace {
        let [i, text] = v.as_slice() else {
            bail!("--replace takes a sentence index and a text");
        };
        let sentence = i
            .parse()
            .with_context(|| format!("--replace {i:?}: the sentence index must be a number"))?;
        return Ok(Edit::Replace {
            sentence,
            text: text.clone(),
        });
    }
    match tier_of(&parent.prompt) {
        Some(free) => Ok(Edit::SwapTier { free: !free }),
        None => bail!(
            "{}: no <is_free_tier_user>true|false</is_free_tier_user> in the user turn: no tier \
             to swap",
            parent.id
        ),
    }
}

/// The rollouts of a store that pool (as the config says), with the pool's summary noted.
fn pooled(store: &Path, mode: PoolMode, notes: &mut Vec<String>) -> anyhow::Result<Vec<Rollout>> {
    if !store.exists() {
        return Ok(Vec::new());
    }
    let (rollouts, warnings) =
        read_rollouts(store).with_context(|| format!("reading {}", store.display()))?;
    for w in warnings {
        warn(format_args!("{}: {w}", store.display()));
    }
    let runs = anchorscope::store::runs::read_runs(&anchorscope::store::runs::runs_path_for(store))
        .unwrap_or_default();
    let chosen = pool(&rollouts, &runs, mode);
    if !chosen.excluded.is_empty() {
        notes.push(format!("{}: {}", store.display(), chosen.summary()));
    }
    Ok(chosen.filter(&rollouts))
}

/// Behaviors labelled on both sides (or the one asked for), in a stable order.
fn behaviors_of(a: &[Rollout], b: &[Rollout], only: Option<&str>) -> Vec<String> {
    let names = |rs: &[Rollout]| -> std::collections::BTreeSet<String> {
        rs.iter().flat_map(|r| r.labels.keys().cloned()).collect()
    };
    let both: Vec<String> = names(a).intersection(&names(b)).cloned().collect();
    match only {
        Some(o) => both.into_iter().filter(|b| b == o).collect(),
        None => both,
    }
}

/// k/m of `behavior` among the rollouts at `position` (invalid labels left out), counted as
/// the adaptive policy counts them.
fn rate_at(rollouts: &[Rollout], position: usize, behavior: &str) -> Rate {
    let mut counts = PositionCounts::default();
    for r in rollouts.iter().filter(|r| r.position == position) {
        // The similarity threshold only splits off D_i, which this rate does not use.
        counts.add_rollout(r, behavior, 0.0);
    }
    counts.rate
}

/// Resilience of a deleted sentence from the rollouts after the deletion: each records how
/// close its reasoning came to S_i (the worker computes it with the sentence embedder).
fn deleted_content_back(
    after: &[Rollout],
    positions: &[usize],
    config: &Config,
    notes: &mut Vec<String>,
) -> Option<Resilience> {
    let sampled = after.iter().filter(|r| positions.contains(&r.position));
    let threshold = config.analysis.similarity_threshold;
    let rate = resilience(sampled, threshold);
    if rate.m == 0 {
        notes.push(
            "no resilience: no rollout after the deletion was compared with the deleted \
             sentence (the sentence embedder was off or not installed: `anchorscope model \
             install`)"
                .into(),
        );
        return None;
    }
    Some(Resilience {
        threshold,
        rate: rate.into(),
    })
}

fn fmt_rate(r: &RateOut) -> String {
    match (r.rate, r.interval) {
        (Some(v), Some(i)) => format!("{}/{} = {v:.2} [{:.2}, {:.2}]", r.k, r.m, i.lo, i.hi),
        _ => format!("{}/{} = n/a", r.k, r.m),
    }
}

fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{}: {} → {} ({}), {} new rollouts\n",
        report.parent,
        report.edit.describe(),
        report.derived,
        report.derived_path.display(),
        report.rollouts_stored
    );
    for effect in &report.effects {
        let _ = writeln!(
            out,
            "\n{}: rate after the edit vs the original at the same point (its sentence kept)",
            effect.behavior
        );
        let _ = writeln!(
            out,
            "{:>4} {:>28} {:>28} {:>26}",
            "pos", "after", "original", "difference (95%)"
        );
        for row in &effect.rows {
            let diff = match &row.difference {
                Some(d) => match d.interval {
                    Some(i) => format!(
                        "{:+.2} [{:+.2}, {:+.2}]{}",
                        d.value,
                        i.lo,
                        i.hi,
                        if d.significant() { " *" } else { "" }
                    ),
                    None => format!("{:+.2}", d.value),
                },
                None => "n/a".into(),
            };
            let _ = writeln!(
                out,
                "{:>4} {:>28} {:>28} {:>26}",
                row.position,
                fmt_rate(&row.after),
                fmt_rate(&row.original),
                diff
            );
        }
    }
    if let Some(r) = &report.resilience {
        let _ = writeln!(
            out,
            "\nresilience: the deleted sentence's content came back (similarity ≥ {}) in {}",
            r.threshold,
            fmt_rate(&r.rate)
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
