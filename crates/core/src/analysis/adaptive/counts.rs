//! What the policy reads at each position: how many rollouts are stored and the two rates a
//! sentence's importance is built from.

use serde::{Deserialize, Serialize};

use crate::analysis::{ImportanceKind, Rate};
use crate::trace::{LabelValue, Rollout};

/// Counts of one position (prefix P_i) for the behavior the policy decides on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionCounts {
    /// Rollouts stored here, whatever their label (what n_max caps).
    pub n: u32,
    /// yes / valid over every rollout here: the kept side of sentence i − 1 and the resampled
    /// side of sentence i's resampling importance.
    pub rate: Rate,
    /// yes / valid over the set D_i (replacement semantically different from S_i): the other
    /// side of sentence i's counterfactual importance.
    pub different: Rate,
}

impl PositionCounts {
    /// Count one rollout: `yes` is its label (`None` when invalid or missing), `different`
    /// whether its replacement is in D_i.
    pub fn add(&mut self, yes: Option<bool>, different: bool) {
        self.n += 1;
        if let Some(yes) = yes {
            self.rate.m += 1;
            self.rate.k += u32::from(yes);
            if different {
                self.different.m += 1;
                self.different.k += u32::from(yes);
            }
        }
    }

    /// Count a stored rollout for `behavior`, D_i by `similarity < threshold` (METHOD.md).
    pub fn add_rollout(&mut self, rollout: &Rollout, behavior: &str, threshold: f32) {
        let yes = match rollout.label(behavior) {
            Some(LabelValue::Yes) => Some(true),
            Some(LabelValue::No) => Some(false),
            Some(LabelValue::Invalid) | None => None,
        };
        self.add(yes, rollout.similarity.is_some_and(|s| s < threshold));
    }

    /// The side compared with the kept rate for this position's sentence.
    pub fn other_side(&self, importance: ImportanceKind) -> Rate {
        match importance {
            ImportanceKind::Counterfactual => self.different,
            ImportanceKind::Resampling => self.rate,
        }
    }
}

/// Counts of positions 0..=n_sentences from stored rollouts (rollouts of positions the trace
/// does not have are ignored, as in the analysis).
pub fn count_rollouts<'a>(
    n_sentences: usize,
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    behavior: &str,
    threshold: f32,
) -> Vec<PositionCounts> {
    let mut counts = vec![PositionCounts::default(); n_sentences + 1];
    for r in rollouts {
        if let Some(c) = counts.get_mut(r.position) {
            c.add_rollout(r, behavior, threshold);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Label;

    #[test]
    fn invalid_labels_count_in_n_only_and_d_needs_a_low_similarity() {
        let make = |pos, seed, value: Option<LabelValue>, sim: Option<f32>| {
            let mut r = Rollout::bare(pos, seed, "T");
            r.similarity = sim;
            if let Some(value) = value {
                r.labels.insert(
                    "compliance".into(),
                    Label {
                        value,
                        classifier: "t".into(),
                        version: "1".into(),
                        evidence: None,
                    },
                );
            }
            r
        };
        let rollouts = [
            make(0, 1, Some(LabelValue::Yes), Some(0.5)),
            make(0, 2, Some(LabelValue::No), Some(0.9)),
            make(0, 3, Some(LabelValue::Invalid), Some(0.1)),
            make(0, 4, None, None),
            make(1, 5, Some(LabelValue::Yes), None),
            make(7, 6, Some(LabelValue::Yes), Some(0.1)),
        ];
        let counts = count_rollouts(1, &rollouts, "compliance", 0.8);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[0].n, 4);
        assert_eq!(counts[0].rate, Rate::new(1, 2));
        assert_eq!(counts[0].different, Rate::new(1, 1));
        assert_eq!(counts[1].different, Rate::new(0, 0));
        assert_eq!(
            counts[0].other_side(ImportanceKind::Resampling),
            counts[0].rate
        );
    }
}
