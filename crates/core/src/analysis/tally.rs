//! Running counts of a trace's rollouts: everything [`super::analyze_trace`] needs, kept up to
//! date one rollout at a time.
//!
//! Why: a rollout arriving during a job changes the counts of one position. Rescanning every
//! stored rollout for each arrival made a long job slow the explorer quadratically (0.3 s per
//! rollout at 20,000 stored). With a tally an arrival costs a few counter updates, and the
//! analysis is rebuilt from per-position counts (O(sentences), not O(rollouts)). The batch
//! path uses the same tally, so both give identical numbers by construction.

use std::collections::{BTreeSet, HashSet};

use super::{
    bernoulli_kl, fill_q_values, newcombe, order_behaviors, significance, AnalysisOptions,
    BehaviorAnalysis, MetricSource, Rate, SentenceMetrics,
};
use crate::trace::{LabelValue, Rollout, HUMAN_SUFFIX};

/// Counts at one position (prefix P_i).
#[derive(Clone, Debug, Default)]
struct PositionTally {
    /// Rollouts stored here (any label).
    n: usize,
    /// Rollouts with a similarity of T_i to S_i.
    with_similarity: usize,
    /// Rollouts whose T_i is semantically different from S_i (the set D_i).
    different: usize,
    /// Distinct trimmed replacement sentences (for overdeterminedness).
    distinct: HashSet<String>,
    /// Per tracked behavior: yes / (yes + no) over every rollout here.
    rates: Vec<Rate>,
    /// Per tracked behavior: the same over D_i.
    different_rates: Vec<Rate>,
}

/// What [`Tally::add`] did with a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted.
    Counted,
    /// Not counted: it carries a label the tally does not track yet (a behavior never seen
    /// before), so earlier rollouts would have to be recounted for it: rebuild the tally.
    NeedsRebuild,
}

/// Per-position counts of every tracked behavior over a trace's rollouts.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    threshold: f32,
    /// Behaviors with counts, `preferred` first, then label names in first-seen order
    /// (see `order_behaviors`).
    tracked: Vec<String>,
    positions: Vec<PositionTally>,
    /// Every label key seen on a counted rollout (human verdicts included).
    keys: BTreeSet<String>,
}

impl Tally {
    /// A tally of `rollouts` for a trace of `n_sentences` sentences (positions 0..=n); the
    /// tracked behaviors are `preferred` then every label name the rollouts carry.
    pub fn new(
        n_sentences: usize,
        rollouts: &[&Rollout],
        preferred: &[String],
        opts: &AnalysisOptions,
    ) -> Self {
        let mut seen: Vec<String> = Vec::new();
        let mut seen_set: BTreeSet<&str> = BTreeSet::new();
        for r in rollouts {
            for name in r.labels.keys().filter(|n| !n.ends_with(HUMAN_SUFFIX)) {
                if seen_set.insert(name) {
                    seen.push(name.clone());
                }
            }
        }
        let tracked = order_behaviors(preferred, seen);
        let b = tracked.len();
        let mut tally = Self {
            threshold: opts.similarity_threshold,
            positions: vec![
                PositionTally {
                    rates: vec![Rate::default(); b],
                    different_rates: vec![Rate::default(); b],
                    ..PositionTally::default()
                };
                n_sentences + 1
            ],
            tracked,
            keys: BTreeSet::new(),
        };
        for r in rollouts {
            tally.count(r);
        }
        tally
    }

    /// Count one more rollout; see [`Added`].
    pub fn add(&mut self, rollout: &Rollout) -> Added {
        let untracked = rollout
            .labels
            .keys()
            .filter(|n| !n.ends_with(HUMAN_SUFFIX))
            .any(|n| !self.tracked.iter().any(|t| t == n));
        if untracked {
            return Added::NeedsRebuild;
        }
        self.count(rollout);
        Added::Counted
    }

    fn count(&mut self, r: &Rollout) {
        // Like the batch analysis always did: a rollout of a position the trace does not have
        // is ignored.
        let Some(at) = self.positions.get_mut(r.position) else {
            return;
        };
        self.keys.extend(r.labels.keys().cloned());
        let different = r.similarity.is_some_and(|s| s < self.threshold);
        at.n += 1;
        at.with_similarity += usize::from(r.similarity.is_some());
        at.different += usize::from(different);
        at.distinct.insert(r.replacement.trim().to_string());
        for (i, name) in self.tracked.iter().enumerate() {
            let (yes, valid) = match r.label(name) {
                Some(LabelValue::Yes) => (1, 1),
                Some(LabelValue::No) => (0, 1),
                Some(LabelValue::Invalid) | None => (0, 0),
            };
            at.rates[i].k += yes;
            at.rates[i].m += valid;
            if different {
                at.different_rates[i].k += yes;
                at.different_rates[i].m += valid;
            }
        }
    }

    /// The behaviors with counts, in display order.
    pub fn tracked(&self) -> &[String] {
        &self.tracked
    }

    /// Whether any counted rollout carries this label key.
    pub fn labelled(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Rollouts counted at a position.
    pub fn count_at(&self, position: usize) -> usize {
        self.positions.get(position).map_or(0, |p| p.n)
    }

    /// The analysis of one tracked behavior from the counts (`None` if it is not tracked).
    pub fn behavior(&self, name: &str, opts: &AnalysisOptions) -> Option<BehaviorAnalysis> {
        let b = self.tracked.iter().position(|t| t == name)?;
        let positions: Vec<Rate> = self.positions.iter().map(|p| p.rates[b]).collect();
        let invalid: Vec<u32> = self
            .positions
            .iter()
            .map(|p| p.n as u32 - p.rates[b].m)
            .collect();
        let n_sentences = self.positions.len().saturating_sub(1);
        let mut sentences: Vec<SentenceMetrics> = (0..n_sentences)
            .map(|i| {
                let at_i = &self.positions[i];
                let rate_with = positions[i + 1];
                let rate_without = positions[i];
                let rate_different = at_i.different_rates[b];
                SentenceMetrics {
                    index: i,
                    rate_without,
                    rate_with,
                    rate_different,
                    resampling: newcombe(rate_with, rate_without),
                    counterfactual: newcombe(rate_with, rate_different),
                    kl: bernoulli_kl(rate_different, rate_with, opts.kl_alpha),
                    different_fraction: (at_i.with_similarity > 0)
                        .then(|| at_i.different as f64 / at_i.with_similarity as f64),
                    overdeterminedness: (at_i.n > 0)
                        .then(|| 1.0 - at_i.distinct.len() as f64 / at_i.n as f64),
                    n: at_i.n,
                    p_counterfactual: significance::two_proportion_p(rate_with, rate_different),
                    q_counterfactual: None,
                    p_resampling: significance::two_proportion_p(rate_with, rate_without),
                    q_resampling: None,
                }
            })
            .collect();
        fill_q_values(&mut sentences);
        Some(BehaviorAnalysis {
            behavior: name.to_string(),
            source: MetricSource::Rollouts,
            positions,
            imported_rates: Vec::new(),
            invalid,
            sentences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze_trace;
    use crate::trace::{Label, Trace};

    fn labelled(position: usize, seed: u64, name: &str, value: LabelValue, sim: f32) -> Rollout {
        let mut r = Rollout::bare(position, seed, &format!("T{}", seed % 3));
        r.similarity = Some(sim);
        r.labels.insert(
            name.into(),
            Label {
                value,
                classifier: "test".into(),
                version: "1".into(),
                evidence: None,
            },
        );
        r
    }

    fn trace(n: usize) -> Trace {
        let text: String = (0..n).map(|i| format!("Sentence {i}. ")).collect();
        let mut t = Trace::new("t", Vec::new(), text);
        t.sentences = (0..n)
            .map(|i| crate::trace::Sentence {
                start: 0,
                end: 0,
                text: format!("Sentence {i}."),
            })
            .collect();
        t
    }

    fn varied(count: u64) -> Vec<Rollout> {
        (0..count)
            .map(|s| {
                let value = match s % 5 {
                    0 | 3 => LabelValue::Yes,
                    1 | 4 => LabelValue::No,
                    _ => LabelValue::Invalid,
                };
                labelled(
                    (s % 4) as usize,
                    s,
                    "compliance",
                    value,
                    (s % 10) as f32 / 10.0,
                )
            })
            .collect()
    }

    #[test]
    fn adding_one_by_one_equals_the_batch_analysis() {
        let t = trace(3);
        let names = vec!["compliance".to_string()];
        let opts = AnalysisOptions::default();
        let all = varied(40);
        let batch = analyze_trace(&t, &all, &names, &opts);
        let mut tally = Tally::new(3, &[], &names, &opts);
        for r in &all {
            assert_eq!(tally.add(r), Added::Counted);
        }
        let incremental = tally.behavior("compliance", &opts).unwrap();
        assert_eq!(batch.behaviors[0], incremental);
        // And the numbers are not trivially empty.
        assert!(incremental
            .sentences
            .iter()
            .any(|s| s.counterfactual.is_some()));
        assert_eq!(tally.count_at(0), 10);
    }

    #[test]
    fn a_new_behavior_asks_for_a_rebuild_and_out_of_range_positions_are_ignored() {
        let opts = AnalysisOptions::default();
        let names = vec!["compliance".to_string()];
        let mut tally = Tally::new(2, &[], &names, &opts);
        let other = labelled(0, 1, "blackmail", LabelValue::Yes, 0.5);
        assert_eq!(tally.add(&other), Added::NeedsRebuild);
        assert_eq!(tally.count_at(0), 0);
        let far = labelled(9, 2, "compliance", LabelValue::Yes, 0.5);
        assert_eq!(tally.add(&far), Added::Counted);
        assert_eq!((0..3).map(|p| tally.count_at(p)).sum::<usize>(), 0);
        assert!(tally.behavior("blackmail", &opts).is_none());
    }
}
