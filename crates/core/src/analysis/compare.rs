//! Two traces side by side (for example the free and the paid tier of one query): their
//! sentences aligned by similarity, both rate curves, and for each aligned pair both
//! importances and their difference.
//!
//! Pure: the caller brings each trace's [`TraceAnalysis`] (computed as everywhere else, so the
//! numbers equal `stats`) and the similarity matrix (the engine's sentence embedder, or
//! [`lexical`] when none is installed). Nothing here reads a file.
//!
//! Sign convention: every difference is **A minus B** (the first trace given minus the second),
//! each importance keeping METHOD.md's sign (positive pushes toward the behavior). A positive
//! difference means the sentence pushes toward the behavior more in A than in B.

pub mod align;
pub mod lexical;

use serde::{Deserialize, Serialize};

pub use align::{align, AlignError, AlignedPair, SimilarityMatrix};
pub use lexical::{lexical_matrix, lexical_similarity, LEXICAL_NAME};

use super::significance::is_significant;
use super::TraceAnalysis;
use super::{BehaviorAnalysis, Difference, ImportanceKind, Interval, MetricSource, Rate};
use crate::trace::Trace;

/// Pairs below this similarity stay unaligned unless the caller says otherwise. All-MiniLM
/// cosines of unrelated sentences of one topic sit around 0.2–0.4 and paraphrases above 0.6;
/// word-count cosines of unrelated sentences stay low except for shared function words.
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.5;

/// What every difference is, said once in the output so a reader of the JSON needs no manual.
pub const DIFFERENCE_RULE: &str = "A minus B (importance in the first trace minus in the second); \
95% interval by MOVER from the two independent 95% intervals (the construction Newcombe's \
interval uses for two rates); significant when it excludes 0, per pair, without \
multiple-comparison correction";

/// Which similarity to align with (`compare --similarity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityChoice {
    /// The installed sentence embedder, else the lexical fallback (said in the output).
    #[default]
    Auto,
    /// The sentence embedder only: an error when it is not installed.
    Embedding,
    /// Word-count cosine only.
    Lexical,
}

crate::choices!(SimilarityChoice { Auto => "auto", Embedding => "embedding", Lexical => "lexical" });

/// What the alignment's similarities are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityKind {
    Embedding,
    Lexical,
}

/// The similarity used, with why the fallback was taken when it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarityMethod {
    pub kind: SimilarityKind,
    /// e.g. "cosine of all-MiniLM-L6-v2 sentence embeddings" or [`LEXICAL_NAME`].
    pub name: String,
    /// Set when the lexical similarity stands in for the embedder: why the embedder was not
    /// used (not installed, failed to load or to embed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

impl SimilarityMethod {
    /// Cosine of the named embedder's sentence embeddings.
    pub fn embedding(model: &str) -> Self {
        Self {
            kind: SimilarityKind::Embedding,
            name: format!("cosine of {model} sentence embeddings"),
            fallback_reason: None,
        }
    }

    /// Word-count cosine; `fallback_reason` when it replaces the embedder.
    pub fn lexical(fallback_reason: Option<String>) -> Self {
        Self {
            kind: SimilarityKind::Lexical,
            name: LEXICAL_NAME.to_string(),
            fallback_reason,
        }
    }

    /// One line for a header: the name, and for a fallback that it is one and why.
    pub fn describe(&self) -> String {
        match &self.fallback_reason {
            Some(why) => format!(
                "{} (FALLBACK: the sentence embedder was not used: {why})",
                self.name
            ),
            None => self.name.clone(),
        }
    }
}

/// One trace as given to [`compare`].
#[derive(Clone, Copy, Debug)]
pub struct CompareSide<'a> {
    pub trace: &'a Trace,
    /// The trace's analysis over its pooled rollouts (as `stats` computes it).
    pub analysis: &'a TraceAnalysis,
    /// Rollouts stored for the trace (shown in headers).
    pub rollouts: usize,
}

/// Settings of a comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompareOptions {
    /// Sentences less similar than this are never paired.
    pub min_similarity: f32,
    /// Which importance is compared.
    pub importance: ImportanceKind,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            min_similarity: DEFAULT_MIN_SIMILARITY,
            importance: ImportanceKind::default(),
        }
    }
}

/// Which of the two traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    A,
    B,
}

/// What a header says about one trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideSummary {
    pub id: String,
    /// `meta.tier` of the trace ("free", "paid"), when it has one.
    pub tier: Option<String>,
    /// The model that wrote the trace (the trace's own field, else its manifest's).
    pub model: Option<String>,
    pub rollouts: usize,
    /// Which runs the rates pool, when the caller pooled them.
    pub pooled: Option<String>,
    /// The sentence texts, indexed by the `a` / `b` of [`AlignedPair`].
    pub sentences: Vec<String>,
}

impl SideSummary {
    fn of(side: &CompareSide) -> Self {
        let t = side.trace;
        Self {
            id: t.id.clone(),
            tier: t.meta.get("tier").cloned(),
            model: t.model.clone().or_else(|| t.manifest.model.clone()),
            rollouts: side.rollouts,
            pooled: side.analysis.pooled.clone(),
            sentences: t.sentences.iter().map(|s| s.text.clone()).collect(),
        }
    }
}

/// The rate of a behavior at one position of one trace, for a chart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Position 0..=n (the rate when sentence `position` and everything after it is resampled;
    /// position n is the whole reasoning kept).
    pub position: usize,
    /// The rate, from counts or imported; `None` (n/a) without data.
    pub value: Option<f64>,
    /// The counts behind it (computed rates only).
    pub rate: Option<Rate>,
    /// Wilson 95% interval (computed rates only).
    pub interval: Option<Interval>,
}

/// One aligned row's numbers for one behavior.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PairImportance {
    /// The importance of A's sentence (`None`: no sentence of A in this row, or n/a).
    pub a: Option<Difference>,
    /// Significant under A's analysis rule (per-sentence 95% or FDR, as configured).
    pub significant_a: bool,
    pub b: Option<Difference>,
    pub significant_b: bool,
    /// `a − b` with its interval (see [`difference_of`]); `None` when either is missing.
    pub difference: Option<Difference>,
    /// The difference's 95% interval excludes 0.
    pub significant_difference: bool,
}

/// One behavior compared across the two traces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BehaviorComparison {
    pub behavior: String,
    /// Where A's numbers come from; `None` when A has no such behavior.
    pub source_a: Option<MetricSource>,
    pub source_b: Option<MetricSource>,
    /// A's rate at each of its positions 0..=n (empty when A lacks the behavior).
    pub rates_a: Vec<CurvePoint>,
    pub rates_b: Vec<CurvePoint>,
    /// One entry per row of [`Comparison::pairs`], in the same order.
    pub rows: Vec<PairImportance>,
}

impl BehaviorComparison {
    /// The rate curve of one side.
    pub fn rates(&self, side: Which) -> &[CurvePoint] {
        match side {
            Which::A => &self.rates_a,
            Which::B => &self.rates_b,
        }
    }
}

/// Two traces compared: the alignment, and per behavior both curves and the per-row numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub a: SideSummary,
    pub b: SideSummary,
    pub similarity: SimilarityMethod,
    pub min_similarity: f32,
    pub importance: ImportanceKind,
    /// [`DIFFERENCE_RULE`]: what `difference` is and how its interval is formed.
    pub difference: &'static str,
    /// Every sentence of A and of B exactly once, each side in its own order.
    pub pairs: Vec<AlignedPair>,
    /// Every behavior of A (in A's order), then those only B has.
    pub behaviors: Vec<BehaviorComparison>,
}

impl Comparison {
    pub fn behavior(&self, name: &str) -> Option<&BehaviorComparison> {
        self.behaviors.iter().find(|b| b.behavior == name)
    }

    pub fn behavior_names(&self) -> Vec<&str> {
        self.behaviors.iter().map(|b| b.behavior.as_str()).collect()
    }

    /// Rows holding a sentence of both traces.
    pub fn aligned_count(&self) -> usize {
        self.pairs.iter().filter(|p| p.is_aligned()).count()
    }

    /// The row of `pairs` that holds sentence `index` of one side.
    pub fn row_of(&self, side: Which, index: usize) -> Option<usize> {
        self.pairs.iter().position(|p| match side {
            Which::A => p.a == Some(index),
            Which::B => p.b == Some(index),
        })
    }

    /// One side's rate curve placed on the aligned rows, so both curves share an x axis: the
    /// rate at position i (S_i resampled) at the row holding S_i, and the final position n at
    /// x = `pairs.len()`. Rows where the side has no sentence get no point.
    pub fn curve_on_rows(
        &self,
        behavior: &BehaviorComparison,
        side: Which,
    ) -> Vec<(usize, CurvePoint)> {
        let rates = behavior.rates(side);
        let mut out: Vec<(usize, CurvePoint)> = self
            .pairs
            .iter()
            .enumerate()
            .filter_map(|(row, p)| {
                let i = match side {
                    Which::A => p.a,
                    Which::B => p.b,
                }?;
                rates.get(i).map(|point| (row, *point))
            })
            .collect();
        let n = match side {
            Which::A => self.a.sentences.len(),
            Which::B => self.b.sentences.len(),
        };
        if let Some(last) = rates.get(n) {
            out.push((self.pairs.len(), *last));
        }
        out
    }
}

/// The difference `a − b` of two independent estimates, with a 95% interval by MOVER (Zou &
/// Donner 2008), the same construction Newcombe's hybrid interval applies to two Wilson
/// intervals (METHOD.md "Importance"): with a ∈ [l_a, u_a] and b ∈ [l_b, u_b],
///
///   lo = (a − b) − √((a − l_a)² + (u_b − b)²),   hi = (a − b) + √((u_a − a)² + (b − l_b)²).
///
/// Independence holds because the two importances come from the rollouts of two different
/// traces. Applied to two rates with their Wilson intervals this gives exactly Newcombe's
/// interval (tested). No interval when either side has none (imported numbers).
pub fn difference_of(a: Difference, b: Difference) -> Difference {
    let value = a.value - b.value;
    let interval = match (a.interval, b.interval) {
        (Some(ia), Some(ib)) => Some(Interval {
            lo: value - ((a.value - ia.lo).powi(2) + (ib.hi - b.value).powi(2)).sqrt(),
            hi: value + ((ia.hi - a.value).powi(2) + (b.value - ib.lo).powi(2)).sqrt(),
        }),
        _ => None,
    };
    Difference { value, interval }
}

/// Compare two traces: align their sentences by `sim` (rows: A's sentences, columns: B's),
/// then gather per behavior both rate curves and, per aligned row, both importances of the
/// chosen kind and their difference A − B.
///
/// Errors when the matrix does not have one row per sentence of A and one column per sentence
/// of B, or the threshold is not a number.
pub fn compare(
    a: CompareSide,
    b: CompareSide,
    sim: &SimilarityMatrix,
    method: SimilarityMethod,
    opts: &CompareOptions,
) -> Result<Comparison, AlignError> {
    let (na, nb) = (a.trace.sentences.len(), b.trace.sentences.len());
    if sim.rows() != na || sim.cols() != nb {
        return Err(AlignError::Shape {
            rows: sim.rows(),
            cols: sim.cols(),
            want_rows: na,
            want_cols: nb,
        });
    }
    if opts.min_similarity.is_nan() {
        return Err(AlignError::Threshold(opts.min_similarity));
    }
    let pairs = align(sim, opts.min_similarity);
    let mut names: Vec<&str> = a.analysis.behavior_names();
    for name in b.analysis.behavior_names() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let behaviors = names
        .into_iter()
        .map(|name| {
            let (ba, bb) = (a.analysis.behavior(name), b.analysis.behavior(name));
            BehaviorComparison {
                behavior: name.to_string(),
                source_a: ba.map(|x| x.source.clone()),
                source_b: bb.map(|x| x.source.clone()),
                rates_a: ba.map(|x| curve(x, na)).unwrap_or_default(),
                rates_b: bb.map(|x| curve(x, nb)).unwrap_or_default(),
                rows: pairs
                    .iter()
                    .map(|p| {
                        let (ia, sa) = side_importance(&a, ba, p.a, opts.importance);
                        let (ib, sb) = side_importance(&b, bb, p.b, opts.importance);
                        let difference = ia.zip(ib).map(|(x, y)| difference_of(x, y));
                        PairImportance {
                            a: ia,
                            significant_a: sa,
                            b: ib,
                            significant_b: sb,
                            difference,
                            significant_difference: difference.is_some_and(|d| d.significant()),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Comparison {
        a: SideSummary::of(&a),
        b: SideSummary::of(&b),
        similarity: method,
        min_similarity: opts.min_similarity,
        importance: opts.importance,
        difference: DIFFERENCE_RULE,
        pairs,
        behaviors,
    })
}

/// A behavior's rate at positions 0..=n (computed or imported).
fn curve(b: &BehaviorAnalysis, n_sentences: usize) -> Vec<CurvePoint> {
    (0..=n_sentences)
        .map(|position| {
            let counted = matches!(b.source, MetricSource::Rollouts);
            let rate = if counted {
                b.positions.get(position).copied()
            } else {
                None
            };
            CurvePoint {
                position,
                value: b.rate_value(position),
                rate,
                interval: rate.and_then(|r| r.wilson()),
            }
        })
        .collect()
}

/// The importance of sentence `index` of one side and whether it is significant under that
/// side's rule.
fn side_importance(
    side: &CompareSide,
    behavior: Option<&BehaviorAnalysis>,
    index: Option<usize>,
    kind: ImportanceKind,
) -> (Option<Difference>, bool) {
    let Some(m) = behavior.zip(index).and_then(|(b, i)| b.sentences.get(i)) else {
        return (None, false);
    };
    (
        m.importance(kind),
        is_significant(m, kind, &side.analysis.rule),
    )
}

#[cfg(test)]
mod tests;
