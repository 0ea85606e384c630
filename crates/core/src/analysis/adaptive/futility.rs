//! Futility: how likely a sentence still is to end significant if its positions were sampled
//! up to n_max. Stopping for futility never declares anything significant, so it cannot raise
//! the error rate of the boundary; it only costs recall, which `bench adaptive` measures.
//!
//! The prediction is Bayesian and normal-approximated, so it is cheap enough to run at every
//! look of every sentence: each side's rate gets the Jeffreys posterior Beta(k + ½, m − k + ½);
//! the final count of that side is what is stored plus the valid rollouts still to come
//! (the remaining draws times the observed valid share, itself smoothed by ½); the final
//! difference is then normal with the predictive mean and variance of the two final rates.
//! The sentence would end significant with |Δ| ≥ min_effect roughly when the final |Δ| clears
//! max(z_final · standard error at the final counts, min_effect).

use super::boundary::normal_cdf;
use crate::analysis::Rate;

/// One side of a sentence now, and how many more draws its position may still get.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    pub rate: Rate,
    /// Rollouts stored at the position this side is counted from (valid or not, any T_i).
    pub n: u32,
    /// Draws still allowed at that position (n_max − n, or 0 when it cannot grow).
    pub remaining: u32,
}

/// Predictive mean and variance of the side's final rate, and its expected final count.
fn predict(side: Side) -> Option<(f64, f64, f64)> {
    let (k, m) = (side.rate.k as f64, side.rate.m as f64);
    // Share of draws that land in this side (valid label, and in D_i for the D side).
    let share = (m + 0.5) / (side.n as f64 + 1.0);
    let future = side.remaining as f64 * share;
    let total = m + future;
    if total <= 0.0 {
        return None;
    }
    let p = (k + 0.5) / (m + 1.0);
    let v = p * (1.0 - p) / (m + 2.0);
    let mean = (k + future * p) / total;
    let var = (future * (p * (1.0 - p) - v) + future * future * v) / (total * total);
    Some((mean, var.max(0.0), total))
}

/// The predictive probability that the sentence ends significant at z_final with
/// |Δ| ≥ min_effect. 0 when a side can never hold a valid rollout.
pub fn chance_of_significance(kept: Side, other: Side, z_final: f64, min_effect: f64) -> f64 {
    let (Some((ma, va, na)), Some((mb, vb, nb))) = (predict(kept), predict(other)) else {
        return 0.0;
    };
    let mu = ma - mb;
    let sigma = (va + vb).sqrt();
    let se_final = (ma * (1.0 - ma) / na + mb * (1.0 - mb) / nb).sqrt();
    let threshold = (z_final * se_final).max(min_effect);
    if sigma <= 1e-12 {
        return if mu.abs() >= threshold { 1.0 } else { 0.0 };
    }
    normal_cdf((mu - threshold) / sigma) + normal_cdf((-mu - threshold) / sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(k: u32, m: u32, n: u32, remaining: u32) -> Side {
        Side {
            rate: Rate::new(k, m),
            n,
            remaining,
        }
    }

    #[test]
    fn equal_rates_with_much_data_are_futile_and_large_gaps_are_not() {
        // 30 of 60 on both sides, 40 draws left: below the default futility level.
        let p = chance_of_significance(side(30, 60, 60, 40), side(30, 60, 60, 40), 2.0, 0.1);
        assert!(p < 0.05, "{p}");
        // 10 draws in, nothing is known yet.
        let p = chance_of_significance(side(5, 10, 10, 90), side(5, 10, 10, 90), 2.0, 0.1);
        assert!(p > 0.2, "{p}");
        // A large observed gap is likely to stay significant.
        let p = chance_of_significance(side(16, 20, 20, 80), side(4, 20, 20, 80), 2.0, 0.1);
        assert!(p > 0.9, "{p}");
    }

    #[test]
    fn no_data_and_no_more_draws_means_no_chance() {
        assert_eq!(
            chance_of_significance(side(3, 5, 5, 0), side(0, 0, 5, 0), 2.0, 0.1),
            0.0
        );
        // Nothing at all yet, but draws to come: undecided, not futile.
        let p = chance_of_significance(side(0, 0, 0, 100), side(0, 0, 0, 100), 2.0, 0.1);
        assert!(p > 0.2, "{p}");
    }

    #[test]
    fn at_the_end_the_prediction_is_the_observed_verdict() {
        let sure = chance_of_significance(side(90, 100, 100, 0), side(10, 100, 100, 0), 2.0, 0.1);
        assert_eq!(sure, 1.0);
        let none = chance_of_significance(side(50, 100, 100, 0), side(48, 100, 100, 0), 2.0, 0.1);
        assert_eq!(none, 0.0);
    }
}
