//! The effect of an intervention at one point (docs/METHOD.md, "Interventions"): the rate after
//! the change against the original's at the matching position, with the Newcombe difference.
//!
//! The two sides live in two stores, each with its own runs. Pooling each store on its own
//! could compare rollouts sampled with other settings (another token cap, another model), so
//! the original side counts only runs that pool with the derived side's reference run: the
//! comparison is made at one set of generation settings, and what was left out is said.

use serde::Serialize;

use super::groups::GroupCount;
use super::{newcombe, Difference, Rate};
use crate::store::runs::{pool, run_of, PoolMode, RunRecord};
use crate::trace::Rollout;

/// One side of the comparison: a store's rollouts, its run records, and the position counted.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    pub rollouts: &'a [Rollout],
    pub runs: &'a [RunRecord],
    pub position: usize,
}

/// The effect of an intervention on one behavior at one pair of positions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Effect {
    /// The rate after the change (the derived trace's pooled rollouts).
    pub after: Rate,
    /// The original's rate at the matching position, from runs that pool with the derived
    /// side's.
    pub original: Rate,
    /// after − original with its 95% Newcombe interval; None while a side has no valid label.
    pub difference: Option<Difference>,
    /// Original rollouts at the position left out, by reason ("other token cap").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<(String, usize)>,
}

/// k/m of `behavior` among `rollouts`, counted as a replacement group is (a person's label
/// where given; invalid and missing labels left out).
fn count<'a>(rollouts: impl Iterator<Item = &'a Rollout>, behavior: &str) -> Rate {
    let mut group = GroupCount::default();
    for r in rollouts {
        group.add(r, behavior);
    }
    group.rate
}

/// The effect of the intervention `after` against `original` for `behavior`. The derived side
/// pools as `mode` says; the original side keeps the runs that pool with the derived side's
/// reference run (all of them with [`PoolMode::All`], or when the derived side has no
/// rollouts yet, in which case the original pools on its own).
pub fn effect(behavior: &str, after: Side<'_>, original: Side<'_>, mode: PoolMode) -> Effect {
    let after_pool = pool(after.rollouts, after.runs, mode);
    let after_rate = count(
        after
            .rollouts
            .iter()
            .filter(|r| r.position == after.position && after_pool.includes(r)),
        behavior,
    );
    let reference = after_pool
        .reference
        .as_deref()
        .and_then(|id| after.runs.iter().find(|r| r.id == id));
    // Only needed when nothing was sampled after the change: the original then pools alone.
    let alone = (after_pool.reference.is_none() && mode != PoolMode::All)
        .then(|| pool(original.rollouts, original.runs, mode));
    let mut left_out: Vec<(String, usize)> = Vec::new();
    let mut counted = Vec::new();
    for r in original
        .rollouts
        .iter()
        .filter(|r| r.position == original.position)
    {
        let why = match (mode, after_pool.reference.as_ref(), reference) {
            (PoolMode::All, _, _) => None,
            // Nothing sampled after the change yet: the original pools as it would alone.
            (_, None, _) => alone
                .as_ref()
                .is_some_and(|p| !p.includes(r))
                .then_some("not pooled"),
            (_, Some(_), Some(reference)) => {
                match original.runs.iter().find(|run| run.id == run_of(r)) {
                    Some(run) => run.difference(reference),
                    None => Some("unknown settings"),
                }
            }
            // The derived side's reference has no record: nothing is known to match it.
            (_, Some(_), None) => Some("unknown settings"),
        };
        match why {
            None => counted.push(r),
            Some(why) => match left_out.iter_mut().find(|(w, _)| w == why) {
                Some(entry) => entry.1 += 1,
                None => left_out.push((why.to_string(), 1)),
            },
        }
    }
    let original_rate = count(counted.into_iter(), behavior);
    Effect {
        after: after_rate,
        original: original_rate,
        difference: newcombe(after_rate, original_rate),
        left_out,
    }
}

/// "8 original rollouts left out (other token cap)" when any were.
pub fn left_out_note(effect: &Effect) -> Option<String> {
    let total: usize = effect.left_out.iter().map(|(_, n)| n).sum();
    (total > 0).then(|| {
        let why: Vec<String> = effect
            .left_out
            .iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        format!(
            "{total} original rollout(s) left out: sampled with other settings than the \
             intervention's ({})",
            why.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Label, LabelValue};

    fn side<'a>(rollouts: &'a [Rollout], runs: &'a [RunRecord], position: usize) -> Side<'a> {
        Side {
            rollouts,
            runs,
            position,
        }
    }

    fn run(id: &str, max_tokens: u32) -> RunRecord {
        let mut r = RunRecord::start(
            "local".into(),
            "m.gguf".into(),
            Some("abc".into()),
            (0.6, 0.95),
            Some(max_tokens),
            Default::default(),
            None,
        );
        r.id = id.into();
        r
    }

    fn rollout(position: usize, seed: u64, yes: Option<bool>, run: &str) -> Rollout {
        let mut r = Rollout::bare(position, seed, "x");
        r.run = Some(run.into());
        let value = match yes {
            Some(true) => LabelValue::Yes,
            Some(false) => LabelValue::No,
            None => LabelValue::Invalid,
        };
        r.labels.insert(
            "compliance".into(),
            Label {
                value,
                classifier: "t".into(),
                version: "1".into(),
                evidence: None,
            },
        );
        r
    }

    #[test]
    fn the_original_counts_only_runs_that_pool_with_the_intervention() {
        // After the deletion: 1/4 comply (one invalid left out), all at 300 tokens.
        let after_runs = [run("d300", 300)];
        let after: Vec<Rollout> = [Some(true), Some(false), Some(false), Some(false), None]
            .into_iter()
            .enumerate()
            .map(|(k, y)| rollout(3, k as u64, y, "d300"))
            .collect();
        // The original at P4: 8 old rollouts at 256 tokens (all comply), 4 new ones at 300
        // (3 comply), and one at another position.
        let original_runs = [run("p256", 256), run("p300", 300)];
        let mut original: Vec<Rollout> = (0..8)
            .map(|k| rollout(4, 100 + k, Some(true), "p256"))
            .collect();
        original.extend((0..4).map(|k| rollout(4, 200 + k, Some(k < 3), "p300")));
        original.push(rollout(3, 300, Some(false), "p300"));
        let e = effect(
            "compliance",
            side(&after, &after_runs, 3),
            side(&original, &original_runs, 4),
            PoolMode::Matching,
        );
        assert_eq!((e.after.k, e.after.m), (1, 4));
        // Pooled on its own the original would count the 8 at 256 tokens (its larger run).
        assert_eq!((e.original.k, e.original.m), (3, 4));
        assert_eq!(e.left_out, vec![("other token cap".to_string(), 8)]);
        let d = e.difference.unwrap();
        assert!((d.value - (0.25 - 0.75)).abs() < 1e-12);
        assert!(left_out_note(&e).unwrap().contains("8 other token cap"));
        // `all` pools everything.
        let all = effect(
            "compliance",
            side(&after, &after_runs, 3),
            side(&original, &original_runs, 4),
            PoolMode::All,
        );
        assert_eq!((all.original.k, all.original.m), (11, 12));
        assert!(all.left_out.is_empty());
        // Nothing after the change yet: the original pools alone, and there is no difference.
        let none = effect(
            "compliance",
            side(&[], &after_runs, 3),
            side(&original, &original_runs, 4),
            PoolMode::Matching,
        );
        assert_eq!((none.original.k, none.original.m), (8, 8));
        assert_eq!(none.difference, None);
    }
}
