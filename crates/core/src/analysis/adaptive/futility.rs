//! Futility: how likely a sentence still is to end significant if its positions were sampled
//! up to n_max. Stopping for futility never declares anything significant, so it cannot raise
//! the error rate of the boundary; it only costs recall, which `bench adaptive` measures.
//!
//! The prediction is Bayesian (the predictive probability of the fixed design's verdict, see
//! [`chance_of_significance`]): the kept side's rate gets Jeffreys' posterior, the D_i side's a
//! posterior whose prior is centred on its position's rate, and the final test is applied to
//! simulated final counts exactly as the fixed design applies it.

use crate::analysis::{newcombe_at, Rate};

/// One side of a sentence now, and how many more draws its position may still get.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    pub rate: Rate,
    /// Rollouts stored at the position this side is counted from (valid or not, any T_i).
    pub n: u32,
    /// Draws still allowed at that position (n_max − n, or 0 when it cannot grow).
    pub remaining: u32,
    /// The prior of the side's rate: its mean and its weight in rollouts. Jeffreys' prior is
    /// (½, 1). The D_i side of counterfactual importance is a subset of the position's
    /// rollouts, so its prior is centred on the whole position's rate: a D set that is still
    /// empty then predicts nothing the position's rollouts do not already show.
    pub prior: (f64, f64),
}

/// Jeffreys' prior, Beta(½, ½): mean ½, weight 1.
pub const JEFFREYS: (f64, f64) = (0.5, 1.0);

/// Weight, in rollouts, of the prior that centres a D_i side on its position's rate.
pub const SUBSET_PRIOR_WEIGHT: f64 = 2.0;

impl Side {
    /// A side with Jeffreys' prior.
    pub fn jeffreys(rate: Rate, n: u32, remaining: u32) -> Self {
        Self {
            rate,
            n,
            remaining,
            prior: JEFFREYS,
        }
    }

    /// The D_i side of a position whose rollouts (all of them) have rate `whole`.
    pub fn subset_of(rate: Rate, whole: Rate, n: u32, remaining: u32) -> Self {
        let mean = (whole.k as f64 + 0.5) / (whole.m as f64 + 1.0);
        Self {
            rate,
            n,
            remaining,
            prior: (mean, SUBSET_PRIOR_WEIGHT),
        }
    }
}

/// Predictive draws per look: enough to tell a chance of 2% from 10% (the standard error at
/// 2% is 0.9 points), and a look stops drawing as soon as the answer is clear.
pub const PREDICTIVE_DRAWS: u32 = 256;

/// The predictive probability that the sentence ends significant at `z_final` with
/// |Δ| ≥ `min_effect` once both positions are sampled to the end.
///
/// Why a simulation and not a formula: the final test is Newcombe's interval on counts that
/// can stay small (a D_i set that holds 3 rollouts at n_max), where a normal approximation of
/// the final difference puts far too much mass in the tails and keeps sampling sentences that
/// cannot become significant. Each draw takes each side's rate from its posterior (the
/// side's prior updated by its counts), the share of future draws that land in the side from
/// its Jeffreys posterior, the future counts from those, and applies the final test exactly.
///
/// Deterministic: the random stream is seeded by the counts, so the same counts give the same
/// answer. Drawing stops early once the estimate is surely at least `stop_above` (the caller
/// only asks whether it is below that).
pub fn chance_of_significance(
    kept: Side,
    other: Side,
    z_final: f64,
    min_effect: f64,
    stop_above: f64,
) -> f64 {
    if kept.remaining == 0 && other.remaining == 0 {
        return f64::from(u8::from(final_test(
            kept.rate, other.rate, z_final, min_effect,
        )));
    }
    let mut rng = Rng::seeded(&[kept, other]);
    let enough = (stop_above * PREDICTIVE_DRAWS as f64).floor() as u32 + 1;
    let mut hits = 0u32;
    for drawn in 1..=PREDICTIVE_DRAWS {
        let a = kept.predict(&mut rng);
        let b = other.predict(&mut rng);
        if final_test(a, b, z_final, min_effect) {
            hits += 1;
            if stop_above > 0.0 && hits >= enough {
                return hits as f64 / drawn as f64;
            }
        }
    }
    hits as f64 / PREDICTIVE_DRAWS as f64
}

/// The fixed design's verdict at the final counts: significant, and |Δ| at least `min_effect`.
fn final_test(kept: Rate, other: Rate, z: f64, min_effect: f64) -> bool {
    newcombe_at(kept, other, z).is_some_and(|d| d.significant() && d.value.abs() >= min_effect)
}

impl Side {
    /// One draw of this side's counts at the end of the sampling.
    fn predict(&self, rng: &mut Rng) -> Rate {
        if self.remaining == 0 {
            return self.rate;
        }
        let (k, m, n) = (self.rate.k, self.rate.m, self.n);
        let share = rng.beta(m as f64 + 0.5, (n - m.min(n)) as f64 + 0.5);
        let (mean, weight) = self.prior;
        let p = rng.beta(
            k as f64 + mean * weight,
            (m - k) as f64 + (1.0 - mean) * weight,
        );
        let valid = rng.binomial(self.remaining, share);
        let yes = rng.binomial(valid, p);
        Rate::new(k + yes, m + valid)
    }
}

/// A small deterministic generator (SplitMix64) with the three draws the prediction needs.
struct Rng(u64);

impl Rng {
    fn seeded(sides: &[Side]) -> Self {
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for s in sides {
            for v in [s.rate.k, s.rate.m, s.n, s.remaining] {
                h = (h ^ u64::from(v))
                    .wrapping_mul(0x100_0000_01b3)
                    .rotate_left(17);
            }
        }
        Self(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 boosted by U^(1/shape)).
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = self.unit().powf(1.0 / shape);
            return self.gamma(shape + 1.0) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            0.5
        }
    }

    /// Binomial(n, p): Bernoulli sums up to 200 trials, a rounded normal beyond.
    fn binomial(&mut self, n: u32, p: f64) -> u32 {
        if n <= 200 {
            return (0..n).filter(|_| self.unit() < p).count() as u32;
        }
        let mean = n as f64 * p;
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(k: u32, m: u32, n: u32, remaining: u32) -> Side {
        Side::jeffreys(Rate::new(k, m), n, remaining)
    }

    #[test]
    fn equal_rates_with_much_data_are_futile_and_large_gaps_are_not() {
        // 30 of 60 on both sides, 40 draws left: below the default futility level.
        let p = chance_of_significance(side(30, 60, 60, 40), side(30, 60, 60, 40), 2.0, 0.1, 0.0);
        assert!(p < 0.05, "{p}");
        // 10 draws in, nothing is known yet.
        let p = chance_of_significance(side(5, 10, 10, 90), side(5, 10, 10, 90), 2.0, 0.1, 0.0);
        assert!(p > 0.2, "{p}");
        // A large observed gap is likely to stay significant.
        let p = chance_of_significance(side(16, 20, 20, 80), side(4, 20, 20, 80), 2.0, 0.1, 0.0);
        assert!(p > 0.9, "{p}");
    }

    #[test]
    fn no_data_and_no_more_draws_means_no_chance() {
        assert_eq!(
            chance_of_significance(side(3, 5, 5, 0), side(0, 0, 5, 0), 2.0, 0.1, 0.0),
            0.0
        );
        // Nothing at all yet, but draws to come: undecided, not futile.
        let p = chance_of_significance(side(0, 0, 0, 100), side(0, 0, 0, 100), 2.0, 0.1, 0.0);
        assert!(p > 0.2, "{p}");
    }

    #[test]
    fn an_empty_d_set_on_a_flat_position_is_futile() {
        // Nothing complied at position i (0 of n) and no replacement differed; the kept side
        // is 0 of n too. The fixed design could only call this significant if the few D
        // rollouts still to come mostly complied.
        let chance =
            |n: u32, d: Side| chance_of_significance(side(0, n, n, 100 - n), d, 1.965, 0.1, 0.0);
        let centred = |n| Side::subset_of(Rate::new(0, 0), Rate::new(0, n), n, 100 - n);
        let jeffreys = |n| Side::jeffreys(Rate::new(0, 0), n, 100 - n);
        assert!(chance(20, centred(20)) < 0.05);
        assert!(chance(40, centred(40)) < 0.01);
        // With Jeffreys' prior on the empty D set, the same counts keep looking promising:
        // the reason the D side is centred on its position.
        assert!(chance(20, jeffreys(20)) > 5.0 * chance(20, centred(20)));
    }

    #[test]
    fn the_same_counts_give_the_same_chance_and_early_stops_stay_above_the_level() {
        let a = chance_of_significance(side(9, 20, 20, 80), side(5, 20, 20, 80), 1.965, 0.1, 0.0);
        let b = chance_of_significance(side(9, 20, 20, 80), side(5, 20, 20, 80), 1.965, 0.1, 0.0);
        assert_eq!(a, b);
        let early =
            chance_of_significance(side(9, 20, 20, 80), side(5, 20, 20, 80), 1.965, 0.1, 0.02);
        assert!(a >= 0.02 && early >= 0.02, "{a} {early}");
    }

    #[test]
    fn at_the_end_the_prediction_is_the_observed_verdict() {
        let sure =
            chance_of_significance(side(90, 100, 100, 0), side(10, 100, 100, 0), 2.0, 0.1, 0.0);
        assert_eq!(sure, 1.0);
        let none =
            chance_of_significance(side(50, 100, 100, 0), side(48, 100, 100, 0), 2.0, 0.1, 0.0);
        assert_eq!(none, 0.0);
    }
}
