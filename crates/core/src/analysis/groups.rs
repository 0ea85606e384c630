//! The rollouts of one position counted in groups, for the detail pane and the exports: by
//! replacement sentence (T_i) and by meaning against the removed sentence (similarity ≥ the
//! threshold or below it: the counterfactual set). Counting lives here, beside the rates, so
//! every view shows the same numbers.

use std::collections::BTreeMap;

use crate::trace::{LabelValue, Rollout};

use super::Rate;

/// Rollouts counted together: how many there are, and the behavior's rate among them (yes out
/// of valid; invalid labels count as rollouts but not in the rate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCount {
    pub rollouts: usize,
    pub rate: Rate,
}

impl GroupCount {
    /// Count one rollout for `behavior`.
    pub fn add(&mut self, rollout: &Rollout, behavior: &str) {
        self.rollouts += 1;
        match rollout.label(behavior) {
            Some(LabelValue::Yes) => {
                self.rate.k += 1;
                self.rate.m += 1;
            }
            Some(LabelValue::No) => self.rate.m += 1,
            _ => {}
        }
    }
}

/// One distinct replacement sentence (trimmed) and its rollouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacementGroup {
    pub text: String,
    pub count: GroupCount,
}

/// The rollouts at `position` grouped by their trimmed replacement sentence, most frequent
/// first (ties by text).
pub fn replacement_groups(
    rollouts: &[Rollout],
    position: usize,
    behavior: &str,
) -> Vec<ReplacementGroup> {
    let mut groups: BTreeMap<String, GroupCount> = BTreeMap::new();
    for r in rollouts.iter().filter(|r| r.position == position) {
        groups
            .entry(r.replacement.trim().to_string())
            .or_default()
            .add(r, behavior);
    }
    let mut out: Vec<ReplacementGroup> = groups
        .into_iter()
        .map(|(text, count)| ReplacementGroup { text, count })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .rollouts
            .cmp(&a.count.rollouts)
            .then_with(|| a.text.cmp(&b.text))
    });
    out
}

/// The rollouts at a position split by the meaning of T_i against S_i.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeaningSplit {
    /// Similarity ≥ the threshold: the same meaning.
    pub same: GroupCount,
    /// Below it: a different meaning (the counterfactual set).
    pub different: GroupCount,
}

/// [`MeaningSplit`] at `position`; `None` when no rollout there has a similarity (no embedder,
/// or the last position).
pub fn meaning_split(
    rollouts: &[Rollout],
    position: usize,
    behavior: &str,
    threshold: f32,
) -> Option<MeaningSplit> {
    let mut split = MeaningSplit::default();
    let mut any = false;
    for r in rollouts.iter().filter(|r| r.position == position) {
        let Some(sim) = r.similarity else { continue };
        any = true;
        let group = if sim >= threshold {
            &mut split.same
        } else {
            &mut split.different
        };
        group.add(r, behavior);
    }
    any.then_some(split)
}

/// Texts counted by their trimmed form, most frequent first (ties by text): the imported
/// replacement lists, which carry no labels.
pub fn text_counts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in texts {
        *counts.entry(t.trim().to_string()).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Label;

    fn rollout(position: usize, replacement: &str, similarity: Option<f32>, yes: bool) -> Rollout {
        let mut r = Rollout::bare(position, 0, replacement);
        r.similarity = similarity;
        r.labels.insert(
            "compliance".to_string(),
            Label {
                value: if yes { LabelValue::Yes } else { LabelValue::No },
                classifier: "compliance-tag".into(),
                version: "1".into(),
                evidence: None,
            },
        );
        r
    }

    fn count(rollouts: usize, k: u32, m: u32) -> GroupCount {
        GroupCount {
            rollouts,
            rate: Rate::new(k, m),
        }
    }

    #[test]
    fn split_by_meaning_with_each_group_rate() {
        let rs = vec![
            rollout(2, "x", Some(0.95), true),
            rollout(2, "x", Some(0.85), false),
            rollout(2, "x", Some(0.30), true),
            rollout(2, "x", None, true),
            rollout(3, "x", Some(0.10), false),
        ];
        assert_eq!(
            meaning_split(&rs, 2, "compliance", 0.8),
            Some(MeaningSplit {
                same: count(2, 1, 2),
                different: count(1, 1, 1),
            })
        );
        assert_eq!(meaning_split(&rs, 5, "compliance", 0.8), None);
        assert_eq!(meaning_split(&rs[3..4], 2, "compliance", 0.8), None);
    }

    #[test]
    fn groups_by_trimmed_text_most_frequent_first() {
        let mut rs = vec![
            rollout(1, "b ", None, true),
            rollout(1, " a", None, false),
            rollout(1, "b", None, false),
            rollout(0, "b", None, true),
        ];
        rs[1].labels.clear(); // unlabelled: a rollout, not in the rate
        let groups = replacement_groups(&rs, 1, "compliance");
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].text.as_str(), groups[0].count),
            ("b", count(2, 1, 2))
        );
        assert_eq!(
            (groups[1].text.as_str(), groups[1].count),
            ("a", count(1, 0, 0))
        );
        assert_eq!(
            text_counts(["y", "x", " y"]),
            vec![("y".to_string(), 2), ("x".to_string(), 1)]
        );
    }
}
