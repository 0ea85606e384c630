//! Significance and how strongly a sentence is drawn (docs/METHOD.md, sections 7 and 8).
//!
//! One place decides, so the trace view, the `NO_COLOR` glyphs, `stats` and the exports agree:
//! - a p-value per sentence for the difference of two proportions (two-sided z-test with the
//!   pooled proportion, the textbook test for the same 2×2 table the Newcombe interval is built
//!   from), and Benjamini–Hochberg q-values across the sentences of one trace;
//! - a [`Shade`]: direction, a level on an absolute |Δ| scale, and whether the sentence is
//!   drawn at full strength (significant under the chosen rule, with enough valid rollouts on
//!   both sides) or faint.

use serde::{Deserialize, Serialize};

use super::stats::Rate;
use super::{Direction, ImportanceKind, MetricSource, SentenceMetrics};

/// What "significant" means everywhere (config `[analysis] significance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignificanceRule {
    /// The sentence's 95% Newcombe interval excludes 0.
    #[default]
    PerSentence,
    /// The Benjamini–Hochberg q-value is at most the FDR level.
    Fdr,
}

/// |Δ| at which the color steps up: below the first a sentence is not tinted at all.
pub const LEVEL_STEPS: [f64; 3] = [0.05, 0.15, 0.30];

/// Two-sided p-value of H0: p_a = p_b (z-test with the pooled proportion). `None` when either
/// side has no valid rollout. When both sides are all yes or all no the test has no variance:
/// the rates are equal and p = 1.
pub fn two_proportion_p(a: Rate, b: Rate) -> Option<f64> {
    if a.m == 0 || b.m == 0 {
        return None;
    }
    let (ma, mb) = (a.m as f64, b.m as f64);
    let (pa, pb) = (a.k as f64 / ma, b.k as f64 / mb);
    let pooled = (a.k + b.k) as f64 / (ma + mb);
    let se = (pooled * (1.0 - pooled) * (1.0 / ma + 1.0 / mb)).sqrt();
    if se == 0.0 {
        return Some(1.0);
    }
    let z = ((pa - pb) / se).abs();
    Some(erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0))
}

/// Complementary error function (the Chebyshev fit known as `erfcc` in Numerical Recipes,
/// fractional error below 1.2e-7 everywhere): ample for p-values compared with 0.05.
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Benjamini–Hochberg q-values (step-up, monotone, capped at 1). Undefined p-values are left
/// out of the family and get no q-value.
pub fn bh_qvalues(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut family: Vec<(usize, f64)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let n = family.len();
    let mut out = vec![None; p.len()];
    if n == 0 {
        return out;
    }
    family.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut running = 1.0f64;
    for rank in (0..n).rev() {
        let (i, pv) = family[rank];
        running = running.min(pv * n as f64 / (rank + 1) as f64);
        out[i] = Some(running.min(1.0));
    }
    out
}

/// The settings that decide significance and shading (part of `[analysis]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadeRule {
    pub significance: SignificanceRule,
    pub fdr_level: f64,
    /// Fewer valid rollouts than this on either side: the sentence is not colored.
    pub min_n: u32,
}

impl Default for ShadeRule {
    fn default() -> Self {
        super::AnalysisOptions::default().shade_rule()
    }
}

/// How one sentence is drawn for one behavior and importance kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shade {
    /// `None` when the importance is undefined or rests on fewer than `min_n` valid rollouts.
    pub direction: Option<Direction>,
    /// 0..=3 by [`LEVEL_STEPS`] of |Δ| (0: below the first step, not tinted).
    pub level: u8,
    /// Significant under the rule, with counts behind it: full color. Otherwise faint.
    pub strong: bool,
}

impl Shade {
    pub const NONE: Shade = Shade {
        direction: None,
        level: 0,
        strong: false,
    };
}

/// The level of |Δ| on the absolute scale.
pub fn level_of(magnitude: f64) -> u8 {
    LEVEL_STEPS.iter().filter(|&&s| magnitude >= s).count() as u8
}

/// Is this sentence's importance significant under the rule? Imported numbers (no counts, no
/// interval) never are.
pub fn is_significant(m: &SentenceMetrics, kind: ImportanceKind, rule: &ShadeRule) -> bool {
    match rule.significance {
        SignificanceRule::PerSentence => m.importance(kind).is_some_and(|d| d.significant()),
        SignificanceRule::Fdr => m.q_value(kind).is_some_and(|q| q <= rule.fdr_level),
    }
}

/// The shade of one sentence.
pub fn shade(
    m: &SentenceMetrics,
    kind: ImportanceKind,
    source: &MetricSource,
    rule: &ShadeRule,
) -> Shade {
    let Some(d) = m.importance(kind) else {
        return Shade::NONE;
    };
    let counted = matches!(source, MetricSource::Rollouts);
    if counted {
        let other = match kind {
            ImportanceKind::Counterfactual => m.rate_different,
            ImportanceKind::Resampling => m.rate_without,
        };
        if m.rate_with.m < rule.min_n || other.m < rule.min_n {
            return Shade::NONE;
        }
    }
    Shade {
        direction: Some(Direction::of(d.value)),
        level: level_of(d.value.abs()),
        strong: counted && is_significant(m, kind, rule),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_match_statsmodels() {
        // Reference values recorded from statsmodels 0.15.0 (Python 3.11.7):
        //   from statsmodels.stats.multitest import multipletests
        //   multipletests([0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 1.0, 0.5, 0.001],
        //                 method="fdr_bh")[1]
        // (ties at 0.04, a p of 1, unsorted input).
        let p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 1.0, 0.5, 0.001];
        let expected = [
            0.030000000000000002,
            0.060000000000000005,
            0.060000000000000005,
            0.022500000000000003,
            0.2571428571428572,
            0.060000000000000005,
            1.0,
            0.5625,
            0.009000000000000001,
        ];
        let q = bh_qvalues(&p.map(Some));
        for (got, want) in q.iter().zip(expected) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn undefined_p_values_are_outside_the_family() {
        let q = bh_qvalues(&[Some(0.01), None, Some(0.04)]);
        assert_eq!(q[1], None);
        // Family of 2: q = [0.02, 0.04].
        assert!((q[0].unwrap() - 0.02).abs() < 1e-12);
        assert!((q[2].unwrap() - 0.04).abs() < 1e-12);
        assert!(bh_qvalues(&[None, None]).iter().all(Option::is_none));
    }

    #[test]
    fn two_proportion_test_matches_reference_values() {
        // statsmodels 0.15.0: proportions_ztest([8, 2], [10, 10]) -> p = 0.007290358091535629
        let p = two_proportion_p(Rate::new(8, 10), Rate::new(2, 10)).unwrap();
        assert!((p - 0.007_290_358).abs() < 1e-6, "{p}");
        // proportions_ztest([30, 20], [50, 50]) -> p = 0.04550026389635843
        let p = two_proportion_p(Rate::new(30, 50), Rate::new(20, 50)).unwrap();
        assert!((p - 0.045_500_264).abs() < 1e-6, "{p}");
        assert_eq!(
            two_proportion_p(Rate::new(5, 5), Rate::new(3, 3)),
            Some(1.0)
        );
        assert_eq!(two_proportion_p(Rate::new(0, 0), Rate::new(3, 3)), None);
    }

    #[test]
    fn levels_are_absolute() {
        assert_eq!(level_of(0.01), 0);
        assert_eq!(level_of(0.05), 1);
        assert_eq!(level_of(0.149), 1);
        assert_eq!(level_of(0.2), 2);
        assert_eq!(level_of(0.9), 3);
    }
}
