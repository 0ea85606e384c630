//! What the views show of interventions (docs/METHOD.md, "Interventions"): the derived traces
//! of the open trace, and for a sentence the rate after each intervention on it against the
//! original's at the same point, with the Newcombe difference and, after a deletion, the
//! resilience. Pure reads of the explorer's state; the numbers come from core.

use anchorscope_core::analysis::effect::{effect, Effect, Side};
use anchorscope_core::analysis::Rate;
use anchorscope_core::store::derived::is_beside;
use anchorscope_core::trace::intervention::{compared_at, resilience, Edit};

use crate::app::App;

/// One intervention's effect on the shown behavior at one point.
#[derive(Clone, Debug, PartialEq)]
pub struct InterventionEffect {
    /// The derived trace (index into `App::traces`).
    pub child: usize,
    pub edit: Edit,
    /// The derived trace's position sampled, and the parent's it is compared with.
    pub position: usize,
    pub parent_position: usize,
    /// Both rates and the difference, at one set of generation settings (core's rule).
    pub effect: Effect,
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
                d.parent == p.loaded.trace.id && is_beside(&p.loaded.path, &e.loaded.path)
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

/// The effects of every intervention on sentence `i` of the open trace, for `behavior`:
/// deletions and rewrites of S_i (after the change vs S_i kept, at i+1), and the tier swap at
/// i and i+1 (same reasoning, the other tier).
pub fn effects_on(app: &App, i: usize, behavior: &str) -> Vec<InterventionEffect> {
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
        let pairs = compared_at(&entry.loaded.trace, i);
        for (d, q) in pairs {
            let sampled = entry.loaded.rollouts.iter().any(|r| r.position == d);
            if !sampled {
                continue;
            }
            let effect = effect(
                behavior,
                Side {
                    rollouts: &entry.loaded.rollouts,
                    runs: &entry.runs,
                    position: d,
                },
                Side {
                    rollouts: &p.loaded.rollouts,
                    runs: &p.runs,
                    position: q,
                },
                app.pool_mode(),
            );
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
            out.push(InterventionEffect {
                child,
                edit: derivation.edit.clone(),
                position: d,
                parent_position: q,
                effect,
                resilience,
            });
        }
    }
    out
}
