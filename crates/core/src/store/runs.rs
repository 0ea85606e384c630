//! Run records: the append-only manifest of sampling runs beside a rollout store, and the
//! pooling rule that decides which runs' rollouts a rate may combine (METHOD.md "Pooling").
//!
//! The manifest is `NAME.runs.jsonl` beside `NAME.rollouts.jsonl`, one JSON line per run. A
//! run's record is appended and synced before the first rollout of that run is written, so
//! every stored rollout's `run` id resolves to a record. Lines are only ever appended: the
//! file is opened in append mode and never truncated or rewritten, so an earlier run's record
//! cannot be changed by a later one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::trace::import::ImportError;
use crate::trace::Rollout;

/// The pseudo run id of rollouts stored before runs were recorded (no `run` field). They form
/// one run of their own with unknown settings, so they never pool silently with a known run.
pub const LEGACY_RUN: &str = "legacy";

pub use crate::trace::IMPORTED_RUN;

/// What the behaviors of the reasoning are judged on (METHOD.md "Judge scope").
pub const DEFAULT_JUDGE_SCOPE: &str = "prefix+continuation";

/// How the worker picks seeds, recorded as text so a reader knows what "seed" meant.
pub const SEED_RULE: &str = "seed = FNV-1a(trace id, position, index), index counting up from \
the number of rollouts already stored at the position, skipping any seed already stored there \
(a rerun never repeats a sample)";

/// One sampling run (or one import): everything that decides how its rollouts were generated
/// and labelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `local` (candle), `remote <url>`, or `imported`.
    pub engine: String,
    pub model: String,
    /// SHA-256 of the model file, when the engine knows it (local GGUF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    /// `None` when the source did not say (imported data).
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// The continuation token cap; `None` when there was none (imported data).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub seed_rule: String,
    /// behavior name → `classifier@version`.
    #[serde(default)]
    pub classifiers: BTreeMap<String, String>,
    /// `prefix+continuation` or `continuation` (METHOD.md "Judge scope").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_scope: Option<String>,
    pub tool_version: String,
    /// For imported runs: where the rollouts came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the engine produced what the settings above do not say: e.g. how a remote server's
    /// token counts were made, or that requests fell back to one continuation each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The settings that must agree for rollouts to pool (METHOD.md: engine, model file, sampler,
/// token cap, judge scope). Classifier versions are not part of it: labels are recomputed
/// per behavior, and a label carries its own version.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationKey {
    engine: String,
    /// The file hash when known, else the model name.
    model: String,
    temperature: Option<u32>,
    top_p: Option<u32>,
    max_tokens: Option<u32>,
    judge_scope: Option<String>,
}

impl RunRecord {
    /// A new record with a fresh id for a run starting now.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        engine: String,
        model: String,
        model_sha256: Option<String>,
        sampler: (f32, f32),
        max_tokens: Option<u32>,
        classifiers: BTreeMap<String, String>,
        judge_scope: Option<String>,
    ) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut record = Self {
            id: String::new(),
            date: utc_date(now.as_secs()),
            engine,
            model,
            model_sha256,
            temperature: Some(sampler.0),
            top_p: Some(sampler.1),
            max_tokens,
            seed_rule: SEED_RULE.into(),
            classifiers,
            judge_scope,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            source: None,
            notes: Vec::new(),
        };
        record.id = new_run_id(&record, now.as_nanos());
        record
    }

    /// The record of a run that goes on from this one with `note` added: the same settings
    /// (so their rollouts pool), a fresh id and start time. Records are never rewritten, so
    /// when the way rollouts are made changes mid-job, the rest of the job becomes this run.
    pub fn continued(&self, note: String) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut record = self.clone();
        record.date = utc_date(now.as_secs());
        record.notes.push(note);
        record.id = new_run_id(&record, now.as_nanos());
        record
    }

    pub fn key(&self) -> GenerationKey {
        GenerationKey {
            engine: self.engine.clone(),
            model: self
                .model_sha256
                .clone()
                .unwrap_or_else(|| self.model.clone()),
            temperature: self.temperature.map(f32::to_bits),
            top_p: self.top_p.map(f32::to_bits),
            max_tokens: self.max_tokens,
            // Runs recorded before the scope was written were judged the only way there was.
            judge_scope: Some(
                self.judge_scope
                    .clone()
                    .unwrap_or_else(|| DEFAULT_JUDGE_SCOPE.into()),
            ),
        }
    }

    /// Why this run's rollouts cannot pool with `reference`'s, or `None` when they can.
    pub fn difference(&self, reference: &RunRecord) -> Option<&'static str> {
        let (a, b) = (self.key(), reference.key());
        if a.engine != b.engine {
            Some("other engine")
        } else if a.model != b.model {
            Some("other model")
        } else if a.temperature != b.temperature || a.top_p != b.top_p {
            Some("other sampler")
        } else if a.max_tokens != b.max_tokens {
            Some("other token cap")
        } else if a.judge_scope != b.judge_scope {
            Some("other judge scope")
        } else {
            None
        }
    }
}

/// A run id: the UTC start second plus 8 hex digits of a hash of the record and the start
/// nanoseconds and process id, so two runs started in the same second still differ while the
/// id stays readable and sortable by date.
fn new_run_id(record: &RunRecord, nanos: u128) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(record).unwrap_or_default());
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let compact: String = record.date.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{compact}-{hex}")
}

/// Now, as [`utc_date`] writes it.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_date(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (civil-from-days, proleptic
/// Gregorian), so the crate needs no date library for one timestamp.
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The manifest beside a store: `X.rollouts.jsonl` → `X.runs.jsonl`; any other store name
/// gets `.runs.jsonl` appended.
pub fn runs_path_for(store_path: &Path) -> PathBuf {
    super::beside_store(store_path, "runs")
}

/// Append one record to the manifest and sync it. Append mode only: existing lines are never
/// touched.
pub fn append_run(manifest: &Path, record: &RunRecord) -> io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(io::Error::other)?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(manifest)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Read every record of a manifest. A missing file is no runs; a line that does not parse is
/// an error naming the file and line.
pub fn read_runs(manifest: &Path) -> Result<Vec<RunRecord>, ImportError> {
    let file = match File::open(manifest) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImportError::new(manifest, "", e.to_string())),
    };
    let mut runs = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let place = format!("line {}: ", index + 1);
        let line = line.map_err(|e| ImportError::new(manifest, place.clone(), e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<RunRecord>(&line)
            .map_err(|e| ImportError::new(manifest, place, format!("not a run record: {e}")))?;
        runs.push(record);
    }
    Ok(runs)
}

/// Whether rates pool only runs whose settings match (the default) or every run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Only runs whose generation settings equal the reference run's.
    #[default]
    Matching,
    /// Every run, whatever its settings (an explicit choice, said wherever rates are shown).
    All,
}

crate::choices!(PoolMode { Matching => "matching", All => "all" });

/// `[sampling]` in the config file: `pool = "matching"` (default) or `"all"`; `adaptive = true`
/// makes full sweeps (`analyze`, the explorer's resample-all) adaptive, with the policy's
/// settings in `[sampling.adaptive_settings]` (docs/METHOD.md, "Adaptive resampling").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    pub pool: PoolMode,
    pub adaptive: bool,
    pub adaptive_settings: crate::analysis::adaptive::AdaptiveSettings,
}

/// Which runs a trace's rates pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool {
    pub mode: PoolMode,
    /// The run the others are compared with: the one with the most rollouts (ties: the
    /// earlier id). A researcher expects the bulk of their data to be what is counted; a
    /// short new run with other settings must not silently displace it.
    pub reference: Option<String>,
    /// Pooled run ids with their rollout counts.
    pub included: Vec<(String, usize)>,
    /// Left-out run ids with their rollout counts and the reason.
    pub excluded: Vec<(String, usize, String)>,
}

/// The run id of a rollout, [`LEGACY_RUN`] when it has none.
pub fn run_of(rollout: &Rollout) -> &str {
    rollout.run.as_deref().unwrap_or(LEGACY_RUN)
}

/// Decide the pool for one trace's rollouts. Runs with no record (legacy rollouts, or an id
/// missing from the manifest) have unknown settings: they pool with nothing else unless the
/// mode is `All`.
pub fn pool(rollouts: &[Rollout], runs: &[RunRecord], mode: PoolMode) -> Pool {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rollouts {
        *counts.entry(run_of(r)).or_default() += 1;
    }
    let reference = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(id, _)| id.to_string());
    let record = |id: &str| runs.iter().find(|r| r.id == id);
    let mut included = Vec::new();
    let mut excluded = Vec::new();
    for (&id, &n) in &counts {
        let reason = match (mode, reference.as_deref()) {
            (PoolMode::All, _) => None,
            (_, Some(reference)) if reference == id => None,
            (_, Some(reference)) => match (record(id), record(reference)) {
                (Some(a), Some(b)) => a.difference(b),
                _ => Some("unknown settings"),
            },
            (_, None) => None,
        };
        match reason {
            None => included.push((id.to_string(), n)),
            Some(why) => excluded.push((id.to_string(), n, why.to_string())),
        }
    }
    Pool {
        mode,
        reference,
        included,
        excluded,
    }
}

/// The sampler settings new rollouts should use to join a trace's counted ones: those of the
/// pool's reference run (temperature, top-p, token cap; each where the record says it), else
/// `base` (the trace's recorded settings, or the defaults). Imported runs fall back to `base`.
pub fn reference_sampler(
    pool: &Pool,
    runs: &[RunRecord],
    base: crate::trace::SamplerSettings,
) -> crate::trace::SamplerSettings {
    let reference = pool
        .reference
        .as_deref()
        .and_then(|id| runs.iter().find(|r| r.id == id))
        .filter(|r| r.engine != "imported");
    let Some(run) = reference else {
        return base;
    };
    // Records keep f32: read back as the decimal written (0.6, not 0.6000000238).
    let wide = |v: f32| format!("{v}").parse::<f64>().unwrap_or(f64::from(v));
    crate::trace::SamplerSettings {
        temperature: run.temperature.map_or(base.temperature, wide),
        top_p: run.top_p.map_or(base.top_p, wide),
        max_new_tokens: run.max_tokens.unwrap_or(base.max_new_tokens),
    }
}

/// What one newly stored rollout does to a pool (see [`Pool::arrive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Its run is pooled: count it.
    Counted,
    /// Its run is left out: it changes no rate.
    LeftOut,
    /// The pool itself may change (a run not seen before, or a new reference run): decide it
    /// again from every rollout with [`pool`].
    Redecide,
}

impl Pool {
    /// Note one more stored rollout without rescanning the others: its run's count grows,
    /// and the answer says whether it counts, or whether the pool must be decided again
    /// because the run is new or now outnumbers the reference (so [`pool`] on all rollouts
    /// would choose differently).
    pub fn arrive(&mut self, rollout: &Rollout) -> Arrival {
        let id = run_of(rollout);
        let count = if let Some(entry) = self.included.iter_mut().find(|(i, _)| i == id) {
            entry.1 += 1;
            entry.1
        } else if let Some(entry) = self.excluded.iter_mut().find(|(i, _, _)| i == id) {
            entry.1 += 1;
            entry.1
        } else {
            return Arrival::Redecide;
        };
        let reference = self.reference.as_deref();
        let reference_count = self
            .included
            .iter()
            .find(|(i, _)| Some(i.as_str()) == reference)
            .map_or(0, |e| e.1);
        // The reference is the run with most rollouts, ties to the earlier id.
        let overtakes = reference != Some(id)
            && (count > reference_count
                || (count == reference_count && reference.is_some_and(|r| id < r)));
        if overtakes {
            Arrival::Redecide
        } else if self.includes(rollout) {
            Arrival::Counted
        } else {
            Arrival::LeftOut
        }
    }

    pub fn includes(&self, rollout: &Rollout) -> bool {
        let id = run_of(rollout);
        self.included.iter().any(|(i, _)| i == id)
    }

    /// How many of `rollouts` count toward rates.
    pub fn filter_count(&self, rollouts: &[Rollout]) -> usize {
        rollouts.iter().filter(|r| self.includes(r)).count()
    }

    /// The rollouts that count toward rates.
    pub fn filter(&self, rollouts: &[Rollout]) -> Vec<Rollout> {
        rollouts
            .iter()
            .filter(|r| self.includes(r))
            .cloned()
            .collect()
    }

    /// One line for the status bar, `stats` and exports, e.g.
    /// `pooled runs: 2 of 3 (1 excluded: other model)`.
    pub fn summary(&self) -> String {
        let total = self.included.len() + self.excluded.len();
        let mut line = format!("pooled runs: {} of {total}", self.included.len());
        if !self.excluded.is_empty() {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, _, why) in &self.excluded {
                *reasons.entry(why).or_default() += 1;
            }
            let parts: Vec<String> = reasons
                .iter()
                .map(|(why, n)| format!("{n} excluded: {why}"))
                .collect();
            line.push_str(&format!(" ({})", parts.join(", ")));
        }
        if self.mode == PoolMode::All && total > 1 {
            line.push_str(" [mixing all runs by choice]");
        }
        line
    }
}

#[cfg(test)]
mod tests;
