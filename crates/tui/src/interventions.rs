//! What the views show of interventions (docs/METHOD.md, "Interventions"): the derived traces
//! of the open trace, and for a sentence the rate after each intervention on it against the
//! original's at the same point, with the Newcombe difference and, after a deletion, the
//! resilience. Pure reads of the explorer's state; the numbers come from core.

use anchorscope_core::analysis::{newcombe, Difference, Rate};
use anchorscope_core::store::derived::derived_path_for;
use anchorscope_core::trace::intervention::{
    continuation_position, parent_position, resilience, Edit,
};

use crate::app::{App, TraceEntry};

/// One intervention's effect on the shown behavior at one point.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// The derived trace (index into `App::traces`).
    pub child: usize,
    pub edit: Edit,
    /// The derived trace's position sampled, and the parent's it is compared with.
    pub position: usize,
    pub parent_position: usize,
    pub after: Rate,
    pub original: Rate,
    /// after − original with its 95% Newcombe interval (None while a side has no valid label).
    pub difference: Option<Difference>,
    /// After a deletion: the rollouts whose reasoning brought S_i's content back.
    pub resilience: Option<Rate>,
}

/// The derived traces of trace `parent` in this session's list: those whose derivation names
/// it and whose file sits where an intervention on it is written.
pub fn children(app: &App, parent: usize) -> Vec<usize> {
    let Some(p) = app.traces.get(parent) else {
        return Vec::new();
    };
    app.traces
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.loaded.trace.derived.as_ref().is_some_and(|d| {
                d.parent == p.loaded.trace.id
                    && e.loaded.path == derived_path_for(&p.loaded.path, &e.loaded.trace.id)
            })
        })
        .map(|(k, _)| k)
        .collect()
}

/// The tier-swapped trace of `parent`, when one was made.
pub fn tier_child(app: &App, parent: usize) -> Option<usize> {
    children(app, parent).into_iter().find(|&k| {
        matches!(
            app.traces[k].loaded.trace.derived.as_ref().map(|d| &d.edit),
            Some(Edit::SwapTier { .. })
        )
    })
}

/// The counted (pooled) rate of `behavior` at `position`: empty when the entry has no such
/// behavior or position yet.
fn rate_of(entry: &TraceEntry, behavior: &str, position: usize) -> Rate {
    entry
        .analysis
        .behaviors
        .iter()
        .find(|b| b.behavior == behavior)
        .and_then(|b| b.positions.get(position).copied())
        .unwrap_or(Rate::new(0, 0))
}

/// The effects of every intervention on sentence `i` of the open trace, for `behavior`:
/// deletions and rewrites of S_i (after the change vs S_i kept, at i+1), and the tier swap at
/// i and i+1 (same reasoning, the other tier).
pub fn effects_on(app: &App, i: usize, behavior: &str) -> Vec<Effect> {
    let parent = app.current;
    let Some(p) = app.traces.get(parent) else {
        return Vec::new();
    };
    let threshold = app.analysis_options().similarity_threshold;
    let mut out = Vec::new();
    for child in children(app, parent) {
        let entry = &app.traces[child];
        let Some(derivation) = entry.loaded.trace.derived.as_ref() else {
            continue;
        };
        let pairs: Vec<(usize, usize)> = match (
            continuation_position(&entry.loaded.trace),
            parent_position(&derivation.edit),
        ) {
            (Some(d), Some(q)) if q == i + 1 => vec![(d, q)],
            (Some(_), Some(_)) => continue,
            _ => vec![(i, i), (i + 1, i + 1)],
        };
        for (d, q) in pairs {
            let after = rate_of(entry, behavior, d);
            let original = rate_of(p, behavior, q);
            let sampled = entry.loaded.rollouts.iter().any(|r| r.position == d);
            if !sampled {
                continue;
            }
            let resilience = matches!(derivation.edit, Edit::Delete { .. })
                .then(|| {
                    resilience(
                        entry
                            .loaded
                            .rollouts
                            .iter()
                            .filter(|r| r.position == d && entry.pool.includes(r)),
                        threshold,
                    )
                })
                .filter(|r| r.m > 0);
            out.push(Effect {
                child,
                edit: derivation.edit.clone(),
                position: d,
                parent_position: q,
                after,
                original,
                difference: newcombe(after, original),
                resilience,
            });
        }
    }
    out
}
