//! `anchorscope intervene TRACE (--delete I | --replace I TEXT | --swap-tier)`: make the
//! derived trace (trace::intervention), sample it and the parent at the matching point with
//! the same settings, and print the effect with its interval (docs/METHOD.md, "Interventions").

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use anchorscope::analysis::effect::{effect, Side};
use anchorscope::analysis::{Difference, Rate};
use anchorscope::config::Config;
use anchorscope::engine::{worker, Job};
use anchorscope::store::derived::{derived_path_for, save_derived, Saved};
use anchorscope::store::runs::{pool, read_runs, runs_path_for, RunRecord};
use anchorscope::store::{read_rollouts, store_path_for};
use anchorscope::trace::intervention::{compared_positions, derive, resilience, tier_of, Edit};
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
    /// Original rollouts at the position not compared: sampled with other settings than the
    /// intervention's (reason, count).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    left_out: Vec<(String, usize)>,
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
    // New rollouts join the counted ones: the settings of the run the rates pool around,
    // else the trace's recorded ones; the flags override either.
    let runs = anchorscope::loaded::runs_of(&loaded)
        .with_context(|| format!("{}: run records", loaded.store_path.display()))?;
    let base = anchorscope::loaded::pooling_sampler(&loaded, &runs, config.sampling.pool);
    let sampler = args.sampling.sampler(base)?;
    let pairs = compared_positions(&derived);
    let (derived_positions, parent_positions): (Vec<usize>, Vec<usize>) =
        pairs.iter().copied().unzip();
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
    let mode = config.sampling.pool;
    let after = stored(&derived_store)?;
    let original = stored(&loaded.store_path)?;
    let behaviors = behaviors_of(&after.0, &original.0, args.behavior.as_deref());
    if behaviors.is_empty() {
        notes.push("no rollout carries a label on either side: nothing to compare".into());
    }
    let effects: Vec<BehaviorEffect> = behaviors
        .iter()
        .map(|b| BehaviorEffect {
            behavior: b.clone(),
            rows: pairs
                .iter()
                .map(|&(d, p)| {
                    let e = effect(b, side(&after, d), side(&original, p), mode);
                    Row {
                        position: d,
                        parent_position: p,
                        after: e.after.into(),
                        original: e.original.into(),
                        difference: e.difference,
                        left_out: e.left_out,
                    }
                })
                .collect(),
        })
        .collect();
    if effects
        .iter()
        .flat_map(|e| &e.rows)
        .any(|r| !r.left_out.is_empty())
    {
        notes.push(
            "original rollouts sampled with other settings than the intervention's (another \
             token cap, sampler or model) are not compared: `orig. left out`, `left_out` in JSON"
                .into(),
        );
    }
    let after_pool = pool(&after.0, &after.1, mode);
    let counted: Vec<Rollout> = after_pool.filter(&after.0);
    let resilience = match &edit {
        Edit::Delete { .. } => {
            deleted_content_back(&counted, &derived_positions, config, &mut notes)
        }
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

/// One side of an effect: a store's rollouts and runs at `position`.
fn side(stored: &(Vec<Rollout>, Vec<RunRecord>), position: usize) -> Side<'_> {
    Side {
        rollouts: &stored.0,
        runs: &stored.1,
        position,
    }
}

/// A store's rollouts and run records (empty when nothing was stored yet).
fn stored(store: &Path) -> anyhow::Result<(Vec<Rollout>, Vec<RunRecord>)> {
    if !store.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (rollouts, warnings) =
        read_rollouts(store).with_context(|| format!("reading {}", store.display()))?;
    for w in warnings {
        warn(format_args!("{}: {w}", store.display()));
    }
    let runs = read_runs(&runs_path_for(store))
        .with_context(|| format!("reading the run records of {}", store.display()))?;
    Ok((rollouts, runs))
}

/// Behaviors labelled on both sides (or the one asked for), in a stable order.
fn behaviors_of(a: &[Rollout], b: &[Rollout], only: Option<&str>) -> Vec<String> {
    // A person's labels (`X (human)`) count inside X; they are not behaviors of their own.
    let names = |rs: &[Rollout]| -> std::collections::BTreeSet<String> {
        rs.iter()
            .flat_map(|r| r.labels.keys())
            .filter(|k| !k.ends_with(anchorscope::trace::HUMAN_SUFFIX))
            .cloned()
            .collect()
    };
    let both: Vec<String> = names(a).intersection(&names(b)).cloned().collect();
    match only {
        Some(o) => both.into_iter().filter(|b| b == o).collect(),
        None => both,
    }
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
            let left_out: usize = row.left_out.iter().map(|(_, n)| n).sum();
            let diff = if left_out > 0 {
                format!("{diff} ({left_out} orig. left out)")
            } else {
                diff
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
