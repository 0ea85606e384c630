//! The science that needs no model: rates per position, importance per sentence, direction.
//! Pure functions of a trace and its stored rollouts (METHOD.md "Rates", "Importance").
//! No I/O here.

pub mod adaptive;
pub mod compare;
pub mod effect;
pub mod groups;
pub mod significance;
pub mod stats;
pub mod tally;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use significance::{shade, Shade, ShadeRule, SignificanceRule};
pub use stats::{bernoulli_kl, newcombe, newcombe_at, wilson, Difference, Interval, Rate, Z95};
pub use tally::{Added, Tally};

use crate::trace::{ImportedMetrics, Rollout, Trace};

/// Settings of the analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisOptions {
    /// T_i counts as "different" from S_i when cosine similarity is below this.
    pub similarity_threshold: f32,
    /// Additive smoothing for the KL column (1e-9 as in the published code; 1.0 = Laplace).
    pub kl_alpha: f64,
    /// What "significant" means: `per_sentence` (95% interval excludes 0) or `fdr`
    /// (Benjamini–Hochberg q-value ≤ `fdr_level` across the trace's sentences).
    pub significance: SignificanceRule,
    /// The false discovery rate for `significance = "fdr"`.
    pub fdr_level: f64,
    /// Fewer valid rollouts than this on either side of a difference: the sentence is not
    /// colored at all (its numbers are still shown).
    pub min_n: u32,
    /// What reasoning behaviors are judged on: `full` (prefix + continuation, the paper's) or
    /// `continuation` (also the continuation alone, shown as `NAME (continuation)` beside it).
    pub judge_scope: crate::behavior::scope::JudgeScope,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.8,
            kl_alpha: 1e-9,
            significance: SignificanceRule::PerSentence,
            fdr_level: 0.05,
            min_n: 5,
            judge_scope: Default::default(),
        }
    }
}

impl AnalysisOptions {
    pub fn shade_rule(&self) -> ShadeRule {
        ShadeRule {
            significance: self.significance,
            fdr_level: self.fdr_level,
            min_n: self.min_n,
        }
    }
}

/// Which importance metric colors and ranks sentences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceKind {
    #[default]
    Counterfactual,
    Resampling,
}

/// Where the numbers of a [`BehaviorAnalysis`] come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MetricSource {
    /// Computed here from stored rollouts.
    Rollouts,
    /// Imported from another tool (no counts, so no intervals); the note says how.
    Imported { note: String },
}

/// Per-sentence metrics for one behavior. Every `Option` is `None` when undefined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentenceMetrics {
    pub index: usize,
    /// Rate at position i (S_i resampled).
    pub rate_without: Rate,
    /// Rate at position i+1 (S_i kept).
    pub rate_with: Rate,
    /// Rate over D_i: rollouts at i whose T_i is semantically different from S_i.
    pub rate_different: Rate,
    /// Δ_i = rate_{i+1} − rate_i with Newcombe interval.
    pub resampling: Option<Difference>,
    /// Δcf_i = rate_{i+1} − rate(D_i) with Newcombe interval.
    pub counterfactual: Option<Difference>,
    /// Ours: KL(P_D ‖ P_kept) between the yes/no outcomes of the different-replacement
    /// rollouts and the kept ones (docs/METHOD.md). For imported metrics: the source's own KL
    /// (Thought Anchors: over final answers), labelled as theirs wherever it is shown.
    pub kl: Option<f64>,
    /// |D_i| / (rollouts at i with a similarity).
    pub different_fraction: Option<f64>,
    /// 1 − distinct(T_i) / (rollouts at i).
    pub overdeterminedness: Option<f64>,
    /// Rollouts stored at position i (any label).
    pub n: usize,
    /// Two-sided p-value of the counterfactual difference (two-proportion z-test).
    #[serde(default)]
    pub p_counterfactual: Option<f64>,
    /// Benjamini–Hochberg q-value of the counterfactual difference across the trace.
    #[serde(default)]
    pub q_counterfactual: Option<f64>,
    #[serde(default)]
    pub p_resampling: Option<f64>,
    #[serde(default)]
    pub q_resampling: Option<f64>,
}

impl SentenceMetrics {
    /// The importance of the chosen kind, if defined.
    pub fn importance(&self, kind: ImportanceKind) -> Option<Difference> {
        match kind {
            ImportanceKind::Counterfactual => self.counterfactual,
            ImportanceKind::Resampling => self.resampling,
        }
    }

    /// The p-value of the chosen kind, if defined.
    pub fn p_value(&self, kind: ImportanceKind) -> Option<f64> {
        match kind {
            ImportanceKind::Counterfactual => self.p_counterfactual,
            ImportanceKind::Resampling => self.p_resampling,
        }
    }

    /// The Benjamini–Hochberg q-value of the chosen kind, if defined.
    pub fn q_value(&self, kind: ImportanceKind) -> Option<f64> {
        match kind {
            ImportanceKind::Counterfactual => self.q_counterfactual,
            ImportanceKind::Resampling => self.q_resampling,
        }
    }
}

/// Sign of an importance: positive pushes toward the behavior.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Promotes,
    Suppresses,
    Neutral,
}

impl Direction {
    pub fn of(value: f64) -> Self {
        if value > 0.0 {
            Direction::Promotes
        } else if value < 0.0 {
            Direction::Suppresses
        } else {
            Direction::Neutral
        }
    }
}

/// Everything shown for one behavior: rates by position and metrics by sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BehaviorAnalysis {
    pub behavior: String,
    pub source: MetricSource,
    /// rate_i for i in 0..=n (n + 1 entries). Empty counts for imported metrics.
    pub positions: Vec<Rate>,
    /// For imported metrics: the imported rate per position where known.
    pub imported_rates: Vec<Option<f64>>,
    /// Rollouts per position whose label for this behavior is invalid or missing (they leave
    /// the denominator). Empty for imported metrics.
    #[serde(default)]
    pub invalid: Vec<u32>,
    pub sentences: Vec<SentenceMetrics>,
}

impl BehaviorAnalysis {
    /// The point value of the rate at a position, from counts or imported numbers.
    pub fn rate_value(&self, position: usize) -> Option<f64> {
        match self.source {
            MetricSource::Rollouts => self.positions.get(position).and_then(Rate::value),
            MetricSource::Imported { .. } => self.imported_rates.get(position).copied().flatten(),
        }
    }

    /// Share of position `p`'s rollouts that are invalid for this behavior, when any exist.
    pub fn invalid_share(&self, position: usize) -> Option<f64> {
        let invalid = *self.invalid.get(position)?;
        let total = invalid + self.positions.get(position)?.m;
        (total > 0).then(|| invalid as f64 / total as f64)
    }

    /// How sentence `i` is drawn (direction, absolute level, strong or faint).
    pub fn shade(&self, i: usize, kind: ImportanceKind, rule: &ShadeRule) -> Shade {
        match self.sentences.get(i) {
            Some(m) => shade(m, kind, &self.source, rule),
            None => Shade::NONE,
        }
    }

    /// The largest |importance| over sentences (for scaling color intensity); 0 if none.
    pub fn max_magnitude(&self, kind: ImportanceKind) -> f64 {
        self.sentences
            .iter()
            .filter_map(|s| s.importance(kind))
            .map(|d| d.value.abs())
            .fold(0.0, f64::max)
    }
}

/// The analysis of a whole trace, one entry per behavior.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceAnalysis {
    pub behaviors: Vec<BehaviorAnalysis>,
    /// What "significant" meant and how sentences are shaded for this analysis, so every view
    /// and export of it draws the same thing.
    #[serde(default)]
    pub rule: ShadeRule,
    /// Which runs the rates pool, in one line ("pooled runs: 2 of 3 (1 excluded: other
    /// model)"), when the caller pooled them; every export states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled: Option<String>,
}

impl TraceAnalysis {
    pub fn behavior(&self, name: &str) -> Option<&BehaviorAnalysis> {
        self.behaviors.iter().find(|b| b.behavior == name)
    }

    pub fn behavior_names(&self) -> Vec<&str> {
        self.behaviors.iter().map(|b| b.behavior.as_str()).collect()
    }
}

/// Analyse one behavior from stored rollouts of a trace with `n_sentences` sentences.
pub fn analyze_behavior(
    n_sentences: usize,
    rollouts: &[Rollout],
    behavior: &str,
    opts: &AnalysisOptions,
) -> BehaviorAnalysis {
    let refs: Vec<&Rollout> = rollouts.iter().collect();
    let tally = Tally::new(n_sentences, &refs, &[behavior.to_string()], opts);
    // The behavior is tracked (it was preferred), so this is always Some.
    tally
        .behavior(behavior, opts)
        .unwrap_or_else(|| BehaviorAnalysis {
            behavior: behavior.to_string(),
            source: MetricSource::Rollouts,
            positions: Vec::new(),
            imported_rates: Vec::new(),
            invalid: Vec::new(),
            sentences: Vec::new(),
        })
}

/// Benjamini–Hochberg q-values of each importance kind across the sentences of one trace.
fn fill_q_values(sentences: &mut [SentenceMetrics]) {
    let p: Vec<Option<f64>> = sentences.iter().map(|m| m.p_counterfactual).collect();
    for (m, q) in sentences.iter_mut().zip(significance::bh_qvalues(&p)) {
        m.q_counterfactual = q;
    }
    let p: Vec<Option<f64>> = sentences.iter().map(|m| m.p_resampling).collect();
    for (m, q) in sentences.iter_mut().zip(significance::bh_qvalues(&p)) {
        m.q_resampling = q;
    }
}

/// Build a behavior view from metrics another tool computed (no counts, so no intervals).
pub fn from_imported(n_sentences: usize, imported: &ImportedMetrics) -> BehaviorAnalysis {
    let get = |i: usize| imported.sentences.get(i);
    // Their rate for chunk i is the rate at position i; position n has no chunk of its own.
    let imported_rates = (0..=n_sentences)
        .map(|p| get(p).and_then(|m| m.rate))
        .collect();
    let point = |v: Option<f64>| {
        v.map(|value| Difference {
            value,
            interval: None,
        })
    };
    let sentences = (0..n_sentences)
        .map(|i| {
            let m = get(i).cloned().unwrap_or_default();
            SentenceMetrics {
                index: i,
                rate_without: Rate::default(),
                rate_with: Rate::default(),
                rate_different: Rate::default(),
                resampling: point(m.resampling_importance),
                counterfactual: point(m.counterfactual_importance),
                kl: m.counterfactual_kl,
                different_fraction: m.different_trajectories_fraction,
                overdeterminedness: m.overdeterminedness,
                n: 0,
                p_counterfactual: None,
                q_counterfactual: None,
                p_resampling: None,
                q_resampling: None,
            }
        })
        .collect();
    BehaviorAnalysis {
        behavior: imported.behavior.clone(),
        source: MetricSource::Imported {
            note: imported.note.clone(),
        },
        positions: Vec::new(),
        imported_rates,
        invalid: Vec::new(),
        sentences,
    }
}

/// Appended to a behavior's name for the numbers a source folder computed itself, shown next
/// to the ones computed here from the same folder's rollouts.
pub const THEIRS_SUFFIX: &str = " (theirs)";

/// `preferred` then the `seen` label names not among them, each continuation-scope behavior
/// right after its full-scope one.
fn order_behaviors(preferred: &[String], seen_names: Vec<String>) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for name in preferred.iter().cloned().chain(seen_names) {
        if !seen.contains_key(&name) {
            seen.insert(name.clone(), order.len());
            order.push(name);
        }
    }
    // A continuation-scope behavior sits right after its full-scope one, for comparison.
    let suffix = crate::behavior::scope::CONTINUATION_SUFFIX;
    let (scoped, mut rest): (Vec<String>, Vec<String>) = order.into_iter().partition(|n| {
        n.strip_suffix(suffix)
            .is_some_and(|base| seen.contains_key(base))
    });
    for name in scoped {
        let base = name.strip_suffix(suffix).unwrap_or(&name);
        let at = rest
            .iter()
            .position(|n| n == base)
            .map_or(rest.len(), |i| i + 1);
        rest.insert(at, name);
    }
    rest
}

/// Analyse a trace. Behaviors with data come first: imported metric sets (whose behavior has no
/// rollouts here), then every behavior with rollout labels or named in `behaviors`. Named
/// behaviors without any rollout are left out when the trace carries imported metrics, so a
/// Thought Anchors trace opens on its own behavior rather than on empty compliance columns.
pub fn analyze_trace(
    trace: &Trace,
    rollouts: &[Rollout],
    behaviors: &[String],
    opts: &AnalysisOptions,
) -> TraceAnalysis {
    let refs: Vec<&Rollout> = rollouts.iter().collect();
    let tally = Tally::new(trace.sentences.len(), &refs, behaviors, opts);
    analyze_tally(trace, &tally, opts)
}

/// [`analyze_trace`] from running counts (the explorer keeps a [`Tally`] up to date as
/// rollouts arrive and rebuilds the analysis from it, never rescanning the rollouts).
pub fn analyze_tally(trace: &Trace, tally: &Tally, opts: &AnalysisOptions) -> TraceAnalysis {
    let n = trace.sentences.len();
    let mut out: Vec<BehaviorAnalysis> = trace
        .imported
        .iter()
        .filter(|imp| !tally.labelled(&imp.behavior))
        .map(|imp| from_imported(n, imp))
        .collect();
    for name in tally.tracked() {
        let shown = out.iter().any(|b| &b.behavior == name);
        if shown || (!trace.imported.is_empty() && !tally.labelled(name)) {
            continue;
        }
        if let Some(analysis) = tally.behavior(name, opts) {
            out.push(analysis);
        }
        // A full folder: ours comes from its rollouts, and the folder's own numbers stay in
        // view right after, named as theirs, so the two can be compared sentence by sentence.
        for imp in trace.imported.iter().filter(|imp| &imp.behavior == name) {
            let mut theirs = from_imported(n, imp);
            theirs.behavior = format!("{name}{THEIRS_SUFFIX}");
            out.push(theirs);
        }
    }
    TraceAnalysis {
        behaviors: out,
        rule: opts.shade_rule(),
        pooled: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{FinishReason, Label, LabelValue};

    fn rollout(position: usize, yes: Option<bool>, replacement: &str, sim: Option<f32>) -> Rollout {
        let mut labels = BTreeMap::new();
        let value = match yes {
            Some(true) => LabelValue::Yes,
            Some(false) => LabelValue::No,
            None => LabelValue::Invalid,
        };
        labels.insert(
            "compliance".to_string(),
            Label {
                value,
                classifier: "test".into(),
                version: "1".into(),
                evidence: None,
            },
        );
        Rollout {
            position,
            seed: 0,
            replacement: replacement.into(),
            text: String::new(),
            tokens: 1,
            finish: FinishReason::Stop,
            labels,
            similarity: sim,
            run: None,
            recurrence: None,
        }
    }

    #[test]
    fn importance_by_hand() {
        // One sentence (positions 0 and 1).
        // Position 0: 4 rollouts: yes(sim .9, "A"), no(sim .5, "B"), no(sim .3, "B"), invalid(.2,"C")
        // Position 1: 3 rollouts: yes, yes, no.
        let rs = vec![
            rollout(0, Some(true), "A", Some(0.9)),
            rollout(0, Some(false), "B", Some(0.5)),
            rollout(0, Some(false), "B", Some(0.3)),
            rollout(0, None, "C", Some(0.2)),
            rollout(1, Some(true), "x", None),
            rollout(1, Some(true), "y", None),
            rollout(1, Some(false), "z", None),
        ];
        let a = analyze_behavior(1, &rs, "compliance", &AnalysisOptions::default());
        assert_eq!(a.positions, vec![Rate::new(1, 3), Rate::new(2, 3)]);
        let s = &a.sentences[0];
        // Δ = 2/3 − 1/3 = 1/3
        assert!((s.resampling.unwrap().value - 1.0 / 3.0).abs() < 1e-12);
        // D_0 = {no, no, invalid}: rate 0/2; Δcf = 2/3 − 0 = 2/3
        assert_eq!(s.rate_different, Rate::new(0, 2));
        assert!((s.counterfactual.unwrap().value - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            Direction::of(s.counterfactual.unwrap().value),
            Direction::Promotes
        );
        // |D| / with-similarity = 3/4; distinct {A,B,C} = 3 of 4 → 1 − 3/4
        assert_eq!(s.different_fraction, Some(0.75));
        assert_eq!(s.overdeterminedness, Some(0.25));
        assert_eq!(s.n, 4);
    }

    #[test]
    fn undefined_not_zero_without_data() {
        let rs = vec![rollout(1, Some(true), "x", None)];
        let a = analyze_behavior(2, &rs, "compliance", &AnalysisOptions::default());
        assert_eq!(a.rate_value(0), None);
        assert_eq!(a.rate_value(1), Some(1.0));
        assert_eq!(a.sentences[0].resampling, None);
        assert_eq!(a.sentences[0].counterfactual, None);
        assert_eq!(a.sentences[0].kl, None);
        assert_eq!(a.sentences[0].different_fraction, None);
        assert_eq!(a.sentences[0].overdeterminedness, None);
        assert_eq!(a.max_magnitude(ImportanceKind::Counterfactual), 0.0);
    }

    #[test]
    fn suppressing_sentence_has_negative_sign() {
        let rs = vec![
            rollout(0, Some(true), "a", Some(0.1)),
            rollout(0, Some(true), "b", Some(0.1)),
            rollout(1, Some(false), "c", None),
            rollout(1, Some(false), "d", None),
        ];
        let a = analyze_behavior(1, &rs, "compliance", &AnalysisOptions::default());
        let cf = a.sentences[0].counterfactual.unwrap();
        assert_eq!(cf.value, -1.0);
        assert_eq!(Direction::of(cf.value), Direction::Suppresses);
        assert!(cf.interval.unwrap().hi < 0.0, "2/2 vs 0/2 differ at 95%");
    }

    #[test]
    fn imported_metrics_fill_rates_and_importance() {
        let imp = ImportedMetrics {
            behavior: "accuracy".into(),
            note: "converted".into(),
            notes: vec![],
            sentences: vec![
                crate::trace::ImportedSentenceMetrics {
                    rate: Some(0.3),
                    counterfactual_importance: Some(-0.12),
                    ..Default::default()
                },
                crate::trace::ImportedSentenceMetrics {
                    rate: Some(0.17),
                    ..Default::default()
                },
            ],
        };
        let a = from_imported(2, &imp);
        assert_eq!(a.rate_value(0), Some(0.3));
        assert_eq!(a.rate_value(1), Some(0.17));
        assert_eq!(a.rate_value(2), None);
        assert_eq!(a.sentences[0].counterfactual.unwrap().value, -0.12);
        assert_eq!(a.sentences[1].counterfactual, None);
    }

    #[test]
    fn trace_analysis_puts_imported_first_and_hides_empty_named_behaviors() {
        let mut trace = Trace::new("t", vec![], "one sentence here. two sentence here.");
        trace.sentences = vec![
            crate::trace::Sentence {
                start: 0,
                end: 18,
                text: "one sentence here.".into(),
            },
            crate::trace::Sentence {
                start: 19,
                end: 37,
                text: "two sentence here.".into(),
            },
        ];
        let names = vec!["compliance".to_string(), "alignment_faking".to_string()];
        let opts = AnalysisOptions::default();
        // Without imported metrics, named behaviors are shown even with no rollouts (all n/a).
        let a = analyze_trace(&trace, &[], &names, &opts);
        assert_eq!(a.behavior_names(), vec!["compliance", "alignment_faking"]);
        trace.imported.push(ImportedMetrics {
            behavior: "correct".into(),
            note: "n".into(),
            notes: vec![],
            sentences: vec![],
        });
        let a = analyze_trace(&trace, &[], &names, &opts);
        assert_eq!(a.behavior_names(), vec!["correct"]);
        // A named behavior with rollouts is kept after the imported one.
        let rs = vec![rollout(0, Some(true), "x", None)];
        let a = analyze_trace(&trace, &rs, &names, &opts);
        assert_eq!(a.behavior_names(), vec!["correct", "compliance"]);
    }
}
