//! What the explorer says about an adaptive sweep (docs/METHOD.md, "Adaptive resampling"):
//! the marker of each sentence, its state in words, and the saving so far. Pure functions of
//! the engine's [`AdaptiveProgress`], shared by the text pane, the detail pane, the status
//! line, the job list and the finish message, so they all say the same thing.

use anchorscope_core::analysis::adaptive::{
    AdaptiveSettings, PositionState, Resolution, SentenceState,
};
use anchorscope_core::export::format::fmt_signed;
use anchorscope_engine::AdaptiveProgress;

/// How a sentence's adaptive state is drawn in the text pane's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    Waiting,
    Sampling,
    Significant,
    /// Resolved some other way (precise, futile, at n_max, skipped).
    Decided,
    /// Left waiting or sampling by a sweep that ended (cancelled, or an engine error).
    Undecided,
}

impl MarkerKind {
    /// The marker of a sentence; `running`: its sweep still samples.
    pub fn of(state: SentenceState, running: bool) -> Self {
        match state {
            SentenceState::Waiting | SentenceState::Sampling if !running => Self::Undecided,
            SentenceState::Waiting => Self::Waiting,
            SentenceState::Sampling => Self::Sampling,
            SentenceState::Resolved(r) if r.significant() => Self::Significant,
            SentenceState::Resolved(_) => Self::Decided,
        }
    }

    /// One cell; distinct shapes so the markers read without color.
    pub fn glyph(self) -> char {
        match self {
            Self::Waiting => '·',
            Self::Sampling => '◌',
            Self::Significant => '✱',
            Self::Decided => '✓',
            Self::Undecided => '?',
        }
    }
}

/// The legend of the markers (help popup).
pub const MARKER_LEGEND: &str =
    "adaptive: ◌ sampling · ✱ significant · ✓ decided · · waiting · ? undecided (ended)";

/// `1,240`: counts of rollouts read better grouped.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The share of the fixed run's rollouts not spent, in whole percent (None without a fixed
/// run to compare with). Floored, so a saving is never overstated.
pub fn saved_percent(p: &AdaptiveProgress) -> Option<u64> {
    (p.fixed > 0).then(|| p.saved_percent().floor() as u64)
}

/// `1,240 rollouts vs 4,100 fixed (70% saved)`.
pub fn rollouts_vs_fixed(p: &AdaptiveProgress) -> String {
    let mut s = format!(
        "{} rollouts vs {} fixed",
        thousands(p.used),
        thousands(p.fixed)
    );
    if let Some(pct) = saved_percent(p) {
        s.push_str(&format!(" ({pct}% saved)"));
    }
    s
}

/// `31/40 sentences resolved · 1,240 rollouts vs 4,100 fixed (70% saved)`.
pub fn summary(p: &AdaptiveProgress) -> String {
    format!(
        "{}/{} sentences resolved · {}",
        p.resolved,
        p.total,
        rollouts_vs_fixed(p)
    )
}

/// Gauge labels from the longest to the shortest; the status line takes the first that fits.
pub fn gauge_labels(p: &AdaptiveProgress) -> Vec<String> {
    let counts = format!("{}/{}", p.resolved, p.total);
    let vs = format!("{} vs {}", thousands(p.used), thousands(p.fixed));
    let saved = saved_percent(p).map(|pct| format!("{pct}% saved"));
    let mut out = Vec::new();
    if let Some(saved) = &saved {
        out.push(format!(" adaptive: {counts} resolved · {vs} ({saved})"));
        out.push(format!(" adaptive {counts} · {vs} ({saved})"));
        out.push(format!(" {counts} · {saved}"));
    } else {
        out.push(format!(" adaptive: {counts} resolved · {vs}"));
    }
    out.push(format!(" {counts}"));
    out
}

/// A sentence's state in words for the detail pane. `running`: the sweep still samples (a
/// sentence left undecided by a finished sweep says so instead of "sampling").
pub fn state_words(state: SentenceState, settings: &AdaptiveSettings, running: bool) -> String {
    match state {
        SentenceState::Waiting if running => "waiting: its stretch is not screened yet".to_string(),
        SentenceState::Sampling if running => "sampling".to_string(),
        SentenceState::Waiting | SentenceState::Sampling => {
            "undecided: the sweep ended before a decision".to_string()
        }
        SentenceState::Resolved(r) => resolution_words(r, settings),
    }
}

/// Why a sentence stopped, with the numbers that decided it.
pub fn resolution_words(r: Resolution, settings: &AdaptiveSettings) -> String {
    match r {
        Resolution::Significant { delta, n } => {
            format!("resolved — significant at n={n} (Δ {})", fmt_signed(delta))
        }
        Resolution::Precise { delta } => format!(
            "resolved — precise: Δ {} within ±{}",
            fmt_signed(delta),
            settings.epsilon
        ),
        Resolution::Futile => format!(
            "futile: little chance of |Δ| ≥ {} even at n_max",
            settings.min_effect
        ),
        Resolution::Exhausted => format!("at n_max ({}) without a decision", settings.n_max),
        Resolution::Skipped => "skipped: the sparse phase found its stretch flat".to_string(),
    }
}

/// A position's state in a few words.
pub fn position_words(state: PositionState) -> &'static str {
    match state {
        PositionState::Waiting => "waiting",
        PositionState::Sampling => "sampling",
        PositionState::Decided => "decided",
        PositionState::AtNMax => "at n_max",
        PositionState::Skipped => "skipped",
    }
}

/// `i 12: decided · i+1 13: sampling`: the two positions sentence `i` reads.
pub fn positions_of(p: &AdaptiveProgress, i: usize) -> Option<String> {
    let at = |k: usize| p.positions.get(k).map(|s| position_words(*s));
    let (a, b) = (at(i)?, at(i + 1)?);
    Some(format!("{i}: {a} · {}: {b}", i + 1))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use anchorscope_core::analysis::ImportanceKind;

    /// A progress of `states` (sentences) with `used` of `fixed` rollouts after `round` rounds;
    /// positions follow the sentences they feed (test data, not a policy's output).
    pub(crate) fn progress(
        states: Vec<SentenceState>,
        used: u64,
        fixed: u64,
        round: u32,
    ) -> AdaptiveProgress {
        let resolved = states
            .iter()
            .filter(|s| matches!(s, SentenceState::Resolved(_)))
            .count();
        let mut positions: Vec<PositionState> = states
            .iter()
            .map(|s| match s {
                SentenceState::Waiting => PositionState::Waiting,
                SentenceState::Sampling => PositionState::Sampling,
                SentenceState::Resolved(Resolution::Exhausted) => PositionState::AtNMax,
                SentenceState::Resolved(Resolution::Skipped) => PositionState::Skipped,
                SentenceState::Resolved(_) => PositionState::Decided,
            })
            .collect();
        positions.push(PositionState::Decided);
        AdaptiveProgress {
            total: states.len(),
            sentences: states,
            positions,
            resolved,
            used,
            fixed,
            round,
            importance: ImportanceKind::Counterfactual,
            notes: Vec::new(),
        }
    }

    #[test]
    fn counts_are_grouped_and_the_saving_is_floored() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_240), "1,240");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let p = progress(vec![SentenceState::Sampling], 1_240, 4_100, 3);
        // (4100 − 1240) / 4100 = 69.8%: said as 69, never rounded up.
        assert_eq!(saved_percent(&p), Some(69));
        assert_eq!(
            summary(&p),
            "0/1 sentences resolved · 1,240 rollouts vs 4,100 fixed (69% saved)"
        );
        let none = progress(vec![], 0, 0, 0);
        assert_eq!(saved_percent(&none), None);
        assert_eq!(rollouts_vs_fixed(&none), "0 rollouts vs 0 fixed");
    }

    #[test]
    fn gauge_labels_shrink_to_the_counts() {
        let p = progress(
            vec![
                SentenceState::Resolved(Resolution::Futile),
                SentenceState::Sampling,
            ],
            300,
            1_000,
            2,
        );
        let labels = gauge_labels(&p);
        assert_eq!(
            labels.first().unwrap(),
            " adaptive: 1/2 resolved · 300 vs 1,000 (70% saved)"
        );
        assert_eq!(labels.last().unwrap(), " 1/2");
        let widths: Vec<usize> = labels.iter().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] > w[1]), "{labels:?}");
    }

    #[test]
    fn markers_and_words_follow_the_state() {
        let s = AdaptiveSettings::default();
        let sig = SentenceState::Resolved(Resolution::Significant { delta: 0.32, n: 40 });
        assert_eq!(MarkerKind::of(sig, true).glyph(), '✱');
        assert_eq!(MarkerKind::of(sig, false).glyph(), '✱');
        assert_eq!(MarkerKind::of(SentenceState::Sampling, true).glyph(), '◌');
        assert_eq!(MarkerKind::of(SentenceState::Waiting, true).glyph(), '·');
        // Once the sweep ended, what it left open is undecided, not sampling.
        assert_eq!(MarkerKind::of(SentenceState::Sampling, false).glyph(), '?');
        for r in [
            Resolution::Precise { delta: 0.01 },
            Resolution::Futile,
            Resolution::Exhausted,
            Resolution::Skipped,
        ] {
            assert_eq!(
                MarkerKind::of(SentenceState::Resolved(r), true),
                MarkerKind::Decided
            );
        }
        assert_eq!(
            state_words(sig, &s, true),
            "resolved — significant at n=40 (Δ +0.32)"
        );
        assert_eq!(
            state_words(SentenceState::Resolved(Resolution::Futile), &s, false),
            "futile: little chance of |Δ| ≥ 0.1 even at n_max"
        );
        assert_eq!(
            resolution_words(Resolution::Exhausted, &s),
            "at n_max (100) without a decision"
        );
        assert_eq!(state_words(SentenceState::Sampling, &s, true), "sampling");
        // A sweep that ended (cancelled) leaves it undecided, not "sampling".
        assert!(state_words(SentenceState::Sampling, &s, false).starts_with("undecided"));
    }

    #[test]
    fn the_positions_of_a_sentence_are_i_and_i_plus_one() {
        let p = progress(
            vec![
                SentenceState::Resolved(Resolution::Exhausted),
                SentenceState::Sampling,
            ],
            0,
            0,
            1,
        );
        assert_eq!(
            positions_of(&p, 0).as_deref(),
            Some("0: at n_max · 1: sampling")
        );
        assert_eq!(positions_of(&p, 2), None);
    }
}
