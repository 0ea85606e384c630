//! One loaded trace in the explorer: its stored rollouts, the running counts behind its
//! analysis, and what the trace list shows of it.
//!
//! Arriving rollouts only update counts ([`Tally`], [`Pool::arrive`]); the analysis is rebuilt
//! from the counts at most once per frame ([`TraceEntry::refresh`]), so a long job costs the
//! explorer O(sentences) per frame whatever the number of stored rollouts.

use std::collections::BTreeMap;

use anchorscope_core::analysis::{
    analyze_tally, Added, AnalysisOptions, BehaviorAnalysis, ImportanceKind, ShadeRule, Tally,
    TraceAnalysis,
};
use anchorscope_core::loaded::LoadedTrace;
use anchorscope_core::store::runs::{pool, Arrival, Pool, PoolMode, RunRecord};
use anchorscope_core::trace::{Label, LabelValue, Rollout};

/// What must happen before the next frame shows this trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stale {
    /// The analysis is current.
    #[default]
    No,
    /// Counts changed: rebuild the analysis from them (cheap).
    Counts,
    /// The pool or the tracked behaviors changed: recount every stored rollout.
    All,
}

/// A loaded trace with its analysis.
#[derive(Clone, Debug)]
pub struct TraceEntry {
    pub loaded: LoadedTrace,
    pub analysis: TraceAnalysis,
    /// The run records of the trace's store (read at load, re-read when a new run appears).
    pub runs: Vec<RunRecord>,
    /// Which runs the rates pool, as `stats` and the exports decide it.
    pub pool: Pool,
    /// The labels the offline classifiers give the trace's own response (its outcome).
    pub outcome: BTreeMap<String, Label>,
    tally: Tally,
    stale: Stale,
}

impl TraceEntry {
    /// An entry whose analysis is computed from every stored rollout.
    pub fn new(
        loaded: LoadedTrace,
        runs: Vec<RunRecord>,
        outcome: BTreeMap<String, Label>,
        names: &[String],
        options: &AnalysisOptions,
        mode: PoolMode,
    ) -> Self {
        let mut entry = Self {
            pool: pool(&loaded.rollouts, &runs, mode),
            analysis: TraceAnalysis {
                behaviors: Vec::new(),
                rule: options.shade_rule(),
                pooled: None,
            },
            loaded,
            runs,
            outcome,
            tally: Tally::default(),
            stale: Stale::All,
        };
        entry.refresh(names, options, mode);
        entry
    }

    /// Analyse the pooled rollouts only, exactly as `stats` and `export` do, so the explorer
    /// never shows a rate that mixes runs with other settings.
    fn recount(&mut self, names: &[String], options: &AnalysisOptions, mode: PoolMode) {
        self.pool = pool(&self.loaded.rollouts, &self.runs, mode);
        let counted: Vec<&Rollout> = self
            .loaded
            .rollouts
            .iter()
            .filter(|r| self.pool.includes(r))
            .collect();
        self.tally = Tally::new(self.loaded.trace.sentences.len(), &counted, names, options);
    }

    /// Bring the analysis up to date (the loop calls this once per frame).
    pub fn refresh(&mut self, names: &[String], options: &AnalysisOptions, mode: PoolMode) {
        match self.stale {
            Stale::No => return,
            Stale::All => self.recount(names, options, mode),
            Stale::Counts => {}
        }
        self.analysis = analyze_tally(&self.loaded.trace, &self.tally, options);
        self.stale = Stale::No;
    }

    /// A stored rollout changed (a person's label): recount before the next frame.
    pub fn invalidate(&mut self) {
        self.stale = Stale::All;
    }

    /// Whether the next frame must rebuild the analysis.
    pub fn is_stale(&self) -> bool {
        self.stale != Stale::No
    }

    /// A newly stored rollout joins the trace: counted now if its run is pooled, and the
    /// analysis is marked for the next frame.
    pub fn push(&mut self, rollout: Rollout) {
        let recount = match self.pool.arrive(&rollout) {
            Arrival::Counted => self.tally.add(&rollout) == Added::NeedsRebuild,
            Arrival::LeftOut => false,
            Arrival::Redecide => true,
        };
        self.loaded.rollouts.push(rollout);
        self.stale = match (recount, self.stale) {
            (true, _) | (_, Stale::All) => Stale::All,
            (false, _) => Stale::Counts,
        };
    }

    /// Whether the pool line is worth showing: more than one run, or one left out.
    pub fn pool_summary(&self) -> Option<String> {
        (self.pool.included.len() + self.pool.excluded.len() > 1).then(|| self.pool.summary())
    }

    /// The trace's own outcome for a behavior: "yes", "no", "invalid", or None when no
    /// offline classifier labels it.
    pub fn outcome_of(&self, behavior: &str) -> Option<&'static str> {
        self.outcome.get(behavior).map(|l| match l.value {
            LabelValue::Yes => "yes",
            LabelValue::No => "no",
            LabelValue::Invalid => "invalid",
        })
    }

    /// The model that wrote the trace, as its manifest or header names it.
    pub fn model(&self) -> Option<&str> {
        self.loaded
            .trace
            .manifest
            .model
            .as_deref()
            .or(self.loaded.trace.model.as_deref())
    }
}

/// The significant sentences ("anchors") of one behavior, in reading order: those drawn at
/// full strength (significant under the rule, with enough valid rollouts on both sides).
pub fn anchors(b: &BehaviorAnalysis, kind: ImportanceKind, rule: &ShadeRule) -> Vec<usize> {
    (0..b.sentences.len())
        .filter(|&i| b.shade(i, kind, rule).strong)
        .collect()
}

/// The `k` anchors with the largest |Δ|, largest first: (sentence, Δ).
pub fn top_anchors(
    b: &BehaviorAnalysis,
    kind: ImportanceKind,
    rule: &ShadeRule,
    k: usize,
) -> Vec<(usize, f64)> {
    let mut found: Vec<(usize, f64)> = anchors(b, kind, rule)
        .into_iter()
        .filter_map(|i| Some((i, b.sentences.get(i)?.importance(kind)?.value)))
        .collect();
    found.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    found.truncate(k);
    found
}

/// The largest |Δ| among sentences with enough valid rollouts to be drawn at all (faint or
/// strong), so a single lucky rollout does not rank a trace first.
pub fn largest_shown(b: &BehaviorAnalysis, kind: ImportanceKind, rule: &ShadeRule) -> Option<f64> {
    (0..b.sentences.len())
        .filter(|&i| b.shade(i, kind, rule).direction.is_some())
        .filter_map(|i| b.sentences[i].importance(kind))
        .map(|d| d.value.abs())
        .max_by(f64::total_cmp)
}
