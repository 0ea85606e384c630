//! The trace list's sort columns: anchors first means the traces with the most significant
//! sentences (or the largest effect) can come first.

use super::entry::{anchors, largest_shown, TraceEntry};
use anchorscope_core::analysis::ImportanceKind;

/// What the trace list is sorted by (`s` cycles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortColumn {
    /// The order the files were loaded in (path order).
    #[default]
    Loaded,
    Id,
    /// Most significant sentences of the list's behavior first.
    Anchors,
    /// Largest |Δ| of the list's behavior first.
    LargestDelta,
    /// Most stored rollouts first.
    Rollouts,
    /// The trace's own outcome for the list's behavior: yes, then no, then the rest.
    Outcome,
}

impl SortColumn {
    pub fn next(self) -> Self {
        match self {
            Self::Loaded => Self::Id,
            Self::Id => Self::Anchors,
            Self::Anchors => Self::LargestDelta,
            Self::LargestDelta => Self::Rollouts,
            Self::Rollouts => Self::Outcome,
            Self::Outcome => Self::Loaded,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Loaded => "load order",
            Self::Id => "trace id",
            Self::Anchors => "significant sentences (most first)",
            Self::LargestDelta => "largest |Δ| (largest first)",
            Self::Rollouts => "rollouts (most first)",
            Self::Outcome => "outcome (yes first)",
        }
    }

    /// The column header this sort marks.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Loaded => None,
            Self::Id => Some("trace"),
            Self::Anchors => Some("sig."),
            Self::LargestDelta => Some("max|Δ|"),
            Self::Rollouts => Some("rollouts"),
            Self::Outcome => Some("outcome"),
        }
    }
}

/// Significant sentences of `behavior` in a trace (0 when it has no such behavior).
pub fn anchor_count(e: &TraceEntry, behavior: &str, kind: ImportanceKind) -> usize {
    e.analysis
        .behavior(behavior)
        .map_or(0, |b| anchors(b, kind, &e.analysis.rule).len())
}

/// Largest shown |Δ| of `behavior` in a trace.
pub fn largest_delta(e: &TraceEntry, behavior: &str, kind: ImportanceKind) -> Option<f64> {
    e.analysis
        .behavior(behavior)
        .and_then(|b| largest_shown(b, kind, &e.analysis.rule))
}

/// Sort `visible` (indices into `traces`) by `column`; ties keep load order.
pub fn sort(
    visible: &mut [usize],
    traces: &[TraceEntry],
    column: SortColumn,
    behavior: &str,
    kind: ImportanceKind,
) {
    let outcome_rank = |e: &TraceEntry| match e.outcome_of(behavior) {
        Some("yes") => 0,
        Some("no") => 1,
        Some(_) => 2,
        None => 3,
    };
    match column {
        SortColumn::Loaded => {}
        SortColumn::Id => {
            visible.sort_by(|&a, &b| traces[a].loaded.trace.id.cmp(&traces[b].loaded.trace.id))
        }
        SortColumn::Anchors => {
            visible.sort_by_key(|&i| std::cmp::Reverse(anchor_count(&traces[i], behavior, kind)))
        }
        SortColumn::LargestDelta => visible.sort_by(|&a, &b| {
            let d = |i: usize| largest_delta(&traces[i], behavior, kind).unwrap_or(-1.0);
            d(b).total_cmp(&d(a))
        }),
        SortColumn::Rollouts => {
            visible.sort_by_key(|&i| std::cmp::Reverse(traces[i].loaded.rollouts.len()))
        }
        SortColumn::Outcome => visible.sort_by_key(|&i| outcome_rank(&traces[i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_visits_every_column_once() {
        let mut seen = vec![SortColumn::Loaded];
        let mut c = SortColumn::Loaded.next();
        while c != SortColumn::Loaded {
            assert!(!seen.contains(&c));
            seen.push(c);
            c = c.next();
        }
        assert_eq!(seen.len(), 6);
    }
}
