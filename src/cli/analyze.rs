//! `anchorscope analyze`: run the sampling engine headless on one trace, then print the stats
//! table (or JSON). Rollouts already stored are kept and topped up to -n, never resampled.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;

use anchorscope::analysis::adaptive::{AdaptiveSettings, Resolution, SentenceState};
use anchorscope::config::Config;
use anchorscope::engine::remote::client::{normalize_base, origin_of};
use anchorscope::engine::remote::judge::model_judge;
use anchorscope::engine::remote::EngineKind;
use anchorscope::engine::{worker, AdaptivePlan, AdaptiveProgress, Job};
use anchorscope::store::atomic_write;
use anchorscope::trace::SamplerSettings;

use super::engine_opts::{model_label, now_utc};
use super::job_runner::run_jobs;
use super::{load, stats, AnalyzeArgs, ImportanceArg, StatsArgs};

/// Where the run's provenance goes: beside the rollout store.
#[derive(Debug, Serialize)]
struct RunManifest {
    /// `local` or `openai`.
    engine: &'static str,
    /// For openai: the server's `scheme://host:port` (no credentials, no key).
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    model: String,
    sampler: SamplerSettings,
    seeds: String,
    classifiers: BTreeMap<String, String>,
    positions: Vec<usize>,
    /// Fixed: the rollouts per position asked for. Adaptive: the cap (n_max).
    n: usize,
    /// How the adaptive policy sampled and where it ended; absent for a fixed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive: Option<AdaptiveRecord>,
    created: String,
}

/// The adaptive part of the manifest: the settings, the behavior that decided, and the end.
#[derive(Debug, Serialize)]
struct AdaptiveRecord {
    behavior: String,
    settings: AdaptiveSettings,
    sentences_resolved: usize,
    sentences: usize,
    rollouts_used: u64,
    rollouts_fixed: u64,
    rounds: u32,
    notes: Vec<String>,
}

pub fn run(args: &AnalyzeArgs, config: &Config) -> anyhow::Result<()> {
    if args.swap_tier {
        return super::intervene::run(&swap_tier_args(args), config);
    }
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let loaded = load::select_one(outcome.traces, args.trace.as_deref())?;
    let trace = &loaded.trace;
    let positions = parse_positions(&args.positions, trace.sentences.len())?;
    if args.n == 0 {
        bail!("-n 0: ask for at least one rollout per position");
    }
    // New rollouts join the counted ones: the settings of the run the rates pool around,
    // else the trace's recorded ones; the flags override either.
    let runs = anchorscope::loaded::runs_of(&loaded)
        .with_context(|| format!("{}: run records", loaded.store_path.display()))?;
    let base = anchorscope::loaded::pooling_sampler(&loaded, &runs, config.sampling.pool);
    let sampler = args.sampling.sampler(base)?;

    let (tx, rx) = mpsc::channel();
    let engine = args.sampling.engine(config)?;
    let mut behaviors = anchorscope::behavior::BehaviorSet::with_user(&config.behaviors)
        .context("in the config's [[behavior]] tables")?;
    if config.judge.enabled {
        // The manifest records the judge the worker labels with (same settings, same version).
        let judge = model_judge(&config.judge, &engine).map_err(anyhow::Error::msg)?;
        behaviors = behaviors.with_af_model_judge(judge);
    }
    let remote = engine.kind == EngineKind::Openai;
    let server = if remote {
        let url = engine.url.as_deref().unwrap_or_default();
        Some(origin_of(&normalize_base(url).map_err(anyhow::Error::msg)?))
    } else {
        None
    };
    let worker_cfg = args.sampling.worker(config, engine);
    let model_label = model_label(&worker_cfg);
    let handle = worker::spawn(worker_cfg, move |e| {
        let _ = tx.send(e);
    });
    let adaptive = adaptive_plan(args, config, &behaviors.names())?;
    let job = Job {
        id: 1,
        trace: Arc::new(trace.clone()),
        store_path: loaded.store_path.clone(),
        positions: positions.clone(),
        n: args.n,
        sampler: sampler.clone(),
        adaptive: adaptive.clone(),
    };
    let outcome = run_jobs(
        &handle,
        &rx,
        "analyze",
        vec![job],
        model_label,
        adaptive_line,
    )?;
    handle.shutdown();
    let stored = outcome.total_stored();
    let (errors, model_status, last_adaptive) =
        (outcome.errors, outcome.model, outcome.last_adaptive);

    if stored > 0 {
        let manifest = RunManifest {
            engine: if remote { "openai" } else { "local" },
            server,
            model: model_status,
            sampler,
            seeds: if remote {
                "rollout_seed = FNV-1a-64(trace id, 0xff, position u64 LE, index u64 LE); \
                 sampled by the server: each request's `seed` is its first rollout's seed \
                 (the same 64 bits as a signed integer), its n choices get the group's seeds in index order"
                    .to_string()
            } else {
                "rollout_seed = FNV-1a-64(trace id, 0xff, position u64 LE, index u64 LE); \
                 sampler RNG = xoshiro256** seeded by splitmix64(seed)"
                    .to_string()
            },
            classifiers: behaviors.classifier_versions(),
            positions,
            n: adaptive
                .as_ref()
                .map_or(args.n, |a| a.settings.n_max as usize),
            adaptive: adaptive
                .as_ref()
                .zip(last_adaptive.as_ref())
                .map(|(plan, p)| AdaptiveRecord {
                    behavior: plan.behavior.clone(),
                    settings: plan.settings.clone(),
                    sentences_resolved: p.resolved,
                    sentences: p.total,
                    rollouts_used: p.used,
                    rollouts_fixed: p.fixed,
                    rounds: p.round,
                    notes: p.notes.clone(),
                }),
            created: now_utc(),
        };
        let path = loaded.store_path.with_extension("manifest.json");
        let mut text = serde_json::to_string_pretty(&manifest)?;
        text.push('\n');
        atomic_write(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if stored == 0 && !errors.is_empty() {
        bail!("no rollout was sampled:\n  {}", errors.join("\n  "));
    }
    eprintln!(
        "{stored} new rollouts stored in {}",
        loaded.store_path.display()
    );
    if let Some(p) = &last_adaptive {
        eprintln!("{}", adaptive_summary(p));
    }
    let stats_args = StatsArgs {
        trace_path: args.trace_path.clone(),
        behavior: args.behavior.clone(),
        importance: ImportanceArg::default(),
        trace: Some(trace.id.clone()),
        json: args.json,
        // `--pool`, else the config's `[sampling] pool`.
        pool: args.pool,
        judge_scope: args.judge_scope,
    };
    stats::run(&stats_args, config)?;
    if !errors.is_empty() {
        bail!("{} error(s) during sampling (see above)", errors.len());
    }
    Ok(())
}

/// `analyze --swap-tier` is `intervene --swap-tier` with the same trace, engine and sampler.
fn swap_tier_args(args: &AnalyzeArgs) -> super::intervene::InterveneArgs {
    super::intervene::InterveneArgs {
        trace_path: args.trace_path.clone(),
        trace: args.trace.clone(),
        delete: None,
        replace: None,
        swap_tier: true,
        n: args.n,
        behavior: args.behavior.clone(),
        sampling: args.sampling.clone(),
        json: args.json,
    }
}

/// The adaptive plan when `--adaptive` (or the config's `[sampling] adaptive` without
/// `--fixed`) asks for one. The deciding behavior is `--behavior`, else `compliance` when it
/// is labelled, else the first labelled behavior.
fn adaptive_plan(
    args: &AnalyzeArgs,
    config: &Config,
    labelled: &[String],
) -> anyhow::Result<Option<AdaptivePlan>> {
    if !(args.adaptive || (config.sampling.adaptive && !args.fixed)) {
        return Ok(None);
    }
    let settings = args
        .adaptive_opts
        .apply(&config.sampling.adaptive_settings)?;
    let behavior = match &args.behavior {
        Some(b) if labelled.contains(b) => b.clone(),
        Some(b) => bail!(
            "--behavior {b}: adaptive sampling decides on a behavior the classifiers label              ({}); `{b}` is not one of them",
            labelled.join(", ")
        ),
        None if labelled.iter().any(|b| b == "compliance") => "compliance".to_string(),
        None => match labelled.first() {
            Some(b) => b.clone(),
            None => bail!("adaptive sampling needs a behavior to decide on; none is labelled"),
        },
    };
    Ok(Some(AdaptivePlan {
        settings,
        behavior,
        similarity_threshold: config.analysis.similarity_threshold,
    }))
}

/// The progress line after a look.
fn adaptive_line(p: &AdaptiveProgress) -> String {
    format!(
        "adaptive round {}: {}/{} sentences resolved, {} rollouts (fixed: {})",
        p.round, p.resolved, p.total, p.used, p.fixed
    )
}

/// What the adaptive run did, for the end of `analyze`.
fn adaptive_summary(p: &AdaptiveProgress) -> String {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &p.sentences {
        if let SentenceState::Resolved(r) = s {
            *by_kind.entry(r.name()).or_default() += 1;
        }
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let saved = p.saved_percent();
    let significant_early = p
        .sentences
        .iter()
        .filter(|s| matches!(s, SentenceState::Resolved(Resolution::Significant { .. })))
        .count();
    let mut text = format!(
        "adaptive: {}/{} sentences resolved ({}) in {} rounds; {} rollouts at the job's \
         positions against {} for the fixed design: {saved:.0}% saved; {significant_early} \
         declared significant by the adaptive boundary",
        p.resolved,
        p.total,
        kinds.join(", "),
        p.round,
        p.used,
        p.fixed
    );
    for note in &p.notes {
        text.push_str(&format!("\n  note: {note}"));
    }
    text
}

/// `all`, `i`, `i..j` (j excluded), `i..=j`, or a comma list of those; every position must be
/// in 0..=sentences (position `sentences` is after the last sentence).
pub fn parse_positions(spec: &str, sentences: usize) -> anyhow::Result<Vec<usize>> {
    let last = sentences;
    let mut out = Vec::new();
    let number = |s: &str| -> anyhow::Result<usize> {
        s.trim().parse::<usize>().map_err(|_| {
            anyhow::anyhow!(
                "--positions {spec}: {s:?} is not a position (use all, i, i..j or i..=j)"
            )
        })
    };
    let beyond = |p: usize| -> anyhow::Result<usize> {
        if p > last {
            bail!("--positions {spec}: position {p} does not exist (this trace has positions 0..={last})");
        }
        Ok(p)
    };
    // Every bound is checked before a range is expanded: `0..18446744073709551615` is an
    // error naming the position, never an allocation of 2^64 entries.
    for part in spec.split(',') {
        let part = part.trim();
        if part == "all" {
            out.extend(0..=last);
        } else if let Some((a, b)) = part.split_once("..=") {
            out.extend(beyond(number(a)?)?..=beyond(number(b)?)?);
        } else if let Some((a, b)) = part.split_once("..") {
            let end = number(b)?;
            // An exclusive end may be one past the last position.
            let end = if end == last.saturating_add(1) {
                end
            } else {
                beyond(end)?
            };
            out.extend(beyond(number(a)?)?..end);
        } else {
            out.push(beyond(number(part)?)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("--positions {spec}: selects no position");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_ranges_are_an_error_not_an_allocation() {
        let err = parse_positions("0..18446744073709551615", 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("18446744073709551615 does not exist"), "{err}");
        let err = parse_positions("2..=18446744073709551615", 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(parse_positions("1..4", 3).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn positions() {
        assert_eq!(parse_positions("all", 3).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_positions("2", 3).unwrap(), vec![2]);
        assert_eq!(parse_positions("1..3", 5).unwrap(), vec![1, 2]);
        assert_eq!(parse_positions("1..=3, 0", 5).unwrap(), vec![0, 1, 2, 3]);
        let err = parse_positions("7", 3).unwrap_err().to_string();
        assert!(err.contains("0..=3"), "{err}");
        assert!(parse_positions("x", 3).is_err());
        assert!(parse_positions("3..1", 5).is_err());
    }
}
