//! Judge scope (METHOD.md "Judge scope"): what a reasoning behavior is judged on.
//!
//! `full` (the paper's way, the default) judges the kept prefix P_i plus the continuation. A
//! sentence that itself states the criteria then carries every rollout after it to "yes"
//! whatever the model wrote next, so it looks like an anchor. `continuation` also judges the
//! resampled text alone and keeps that label beside the full one, as `NAME (continuation)`, so
//! both importances can be read side by side. The offline classifiers are cheap, so the
//! continuation labels are computed in memory when a trace is loaded, for every stored rollout.

use serde::{Deserialize, Serialize};

use super::{BehaviorSet, ResponseParts};
use crate::trace::{FinishReason, Rollout, Trace};

/// Suffix of the behavior name that holds continuation-only labels.
pub const CONTINUATION_SUFFIX: &str = " (continuation)";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeScope {
    /// Prefix + continuation only (as in the paper).
    #[default]
    Full,
    /// Also the continuation alone, as `NAME (continuation)`.
    Continuation,
}

crate::choices!(JudgeScope { Full => "full", Continuation => "continuation" });

/// The continuation as a response of its own: the reasoning tag that is open at the cut is
/// reopened, so the judges find the continuation's reasoning without the kept prefix.
pub fn continuation_response(trace: &Trace, rollout: &Rollout) -> String {
    let opened = crate::trace::tags::open_at_end(trace.prefix(rollout.position));
    format!("{opened}{}", rollout.text)
}

/// Add `NAME (continuation)` labels for every behavior of `set` that reads the reasoning, to
/// every rollout sampled from this trace's prefixes that lacks them. Imported rollouts (finish
/// `Unknown`) are skipped: their text is not a continuation of our prefix. Returns how many
/// labels were computed.
pub fn label_continuations(set: &BehaviorSet, trace: &Trace, rollouts: &mut [Rollout]) -> usize {
    let names: Vec<String> = set
        .names()
        .into_iter()
        .filter(|n| set.reads_reasoning(n))
        .collect();
    if names.is_empty() {
        return 0;
    }
    let mut computed = 0;
    for rollout in rollouts.iter_mut() {
        if rollout.finish == FinishReason::Unknown || rollout.position >= trace.positions() {
            continue;
        }
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !rollout
                    .labels
                    .contains_key(&format!("{n}{CONTINUATION_SUFFIX}"))
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let response = continuation_response(trace, rollout);
        let labels = set.classify_parts(&ResponseParts::of(&response));
        for name in missing {
            if let Some(label) = labels.get(name) {
                rollout
                    .labels
                    .insert(format!("{name}{CONTINUATION_SUFFIX}"), label.clone());
                computed += 1;
            }
        }
    }
    computed
}
