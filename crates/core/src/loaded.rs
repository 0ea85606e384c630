//! A trace joined with its rollout store: the one place that knows both `trace` (parsing) and
//! `store` (the files beside a trace). Neither of those imports this module, so the join stays
//! above them.
//!
//! Every trace gets a rollout store: `store::store_path_for(path)` for a file holding one trace
//! (and for a folder), `NAME.<key>.rollouts.jsonl` for a file holding several, where the key is
//! the trace's member key (see `trace::import`). Stored rollouts, a person's labels and cached
//! similarities are loaded with the trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::store;
use crate::store::runs::{read_runs, run_of, runs_path_for, RunRecord, IMPORTED_RUN};
use crate::trace::import::{parse_path, ImportError, SourcedTrace};
use crate::trace::split::SplitOptions;
use crate::trace::{Rollout, Trace};

/// A trace read from disk with its stored rollouts.
#[derive(Clone, Debug)]
pub struct LoadedTrace {
    pub trace: Trace,
    pub rollouts: Vec<Rollout>,
    /// The file (or folder) the trace was read from.
    pub path: PathBuf,
    /// Where new rollouts for this trace are appended (JSONL beside the trace).
    pub store_path: PathBuf,
    /// Non-fatal problems (e.g. a truncated last line in the rollout store).
    pub warnings: Vec<String>,
}

/// What loading a path produced.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub traces: Vec<LoadedTrace>,
    pub errors: Vec<ImportError>,
}

/// Load every trace at `path` (see `trace::import::parse_path`) with its stored rollouts.
/// Per-file failures inside a directory are returned beside the traces that did load.
pub fn load_path(path: &Path, opts: &SplitOptions) -> Result<LoadOutcome, ImportError> {
    let parsed = parse_path(path, opts)?;
    Ok(LoadOutcome {
        traces: parsed.traces.into_iter().map(attach_store).collect(),
        errors: parsed.errors,
    })
}

/// Attach the rollout store (and the person's labels and cached similarities beside it).
pub fn attach_store(sourced: SourcedTrace) -> LoadedTrace {
    let SourcedTrace {
        trace,
        mut rollouts,
        path,
        member,
        mut warnings,
    } = sourced;
    let store_path = match &member {
        Some(key) => store::store_path_for_member(&path, key),
        None => store::store_path_for(&path),
    };
    match store::read_rollouts(&store_path) {
        Ok((mut stored, mut store_warnings)) => {
            rollouts.append(&mut stored);
            warnings.append(&mut store_warnings);
        }
        // A broken store must not hide the trace: show it without those rollouts.
        Err(e) => warnings.push(format!("rollouts not loaded: {e}")),
    }
    // A person's verdicts, beside the classifiers' labels.
    let human_path = store::human::human_path_for(&store_path);
    match store::human::read_verdicts(&human_path) {
        Ok((verdicts, mut human_warnings)) => {
            store::human::apply_verdicts(&mut rollouts, &verdicts);
            warnings.append(&mut human_warnings);
        }
        Err(e) => warnings.push(format!("human labels not loaded: {e}")),
    }
    // Similarities computed earlier for rollouts stored without one (imported replacements).
    if rollouts
        .iter()
        .any(|r| store::similarities::needs_similarity(&trace, r))
    {
        let cache_path = store::similarities::similarities_path_for(&store_path);
        match store::similarities::read_cache(&cache_path) {
            Ok((cache, mut cache_warnings)) => {
                store::similarities::apply_cache(&trace, &mut rollouts, &cache);
                warnings.append(&mut cache_warnings);
            }
            Err(e) => warnings.push(format!("cached similarities not loaded: {e}")),
        }
    }
    let positions = trace.positions();
    let before = rollouts.len();
    rollouts.retain(|r| r.position < positions);
    if rollouts.len() < before {
        warnings.push(format!(
            "{} rollouts skipped: position beyond the trace's {} positions",
            before - rollouts.len(),
            positions
        ));
    }
    LoadedTrace {
        trace,
        rollouts,
        path,
        store_path,
        warnings,
    }
}

/// The record of the imported rollouts of a trace: what the source says (the model that wrote
/// the trace, its sampler settings when known), and where they came from.
pub fn imported_record(loaded: &LoadedTrace) -> RunRecord {
    let manifest = &loaded.trace.manifest;
    let sampler = manifest.sampler.as_ref();
    RunRecord {
        id: IMPORTED_RUN.into(),
        date: manifest.created.clone().unwrap_or_default(),
        engine: "imported".into(),
        model: manifest.model.clone().unwrap_or_else(|| "unknown".into()),
        model_sha256: None,
        temperature: sampler.map(|s| s.temperature as f32),
        top_p: sampler.map(|s| s.top_p as f32),
        max_tokens: None,
        seed_rule: "none: rollouts read from the source's files".into(),
        classifiers: BTreeMap::new(),
        judge_scope: None,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        source: Some(loaded.path.display().to_string()),
        notes: Vec::new(),
    }
}

/// Every run of a loaded trace: the store's manifest, plus the imported run's record when
/// some rollouts were read from the source's files.
/// The sampler settings of new rollouts for `loaded` ([`reference_sampler`] over its stored
/// rollouts pooled as `mode` says, the trace's recorded settings as the fallback).
pub fn pooling_sampler(
    loaded: &LoadedTrace,
    runs: &[RunRecord],
    mode: crate::store::runs::PoolMode,
) -> crate::trace::SamplerSettings {
    let base = loaded.trace.manifest.sampler.clone().unwrap_or_default();
    let chosen = crate::store::runs::pool(&loaded.rollouts, runs, mode);
    crate::store::runs::reference_sampler(&chosen, runs, base)
}

pub fn runs_of(loaded: &LoadedTrace) -> Result<Vec<RunRecord>, ImportError> {
    let mut runs = read_runs(&runs_path_for(&loaded.store_path))?;
    if loaded.rollouts.iter().any(|r| run_of(r) == IMPORTED_RUN) {
        runs.push(imported_record(loaded));
    }
    Ok(runs)
}
