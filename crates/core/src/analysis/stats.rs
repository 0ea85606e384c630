//! Binomial rates with Wilson intervals, Newcombe intervals for differences, Bernoulli KL.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959964;

/// A closed interval [lo, hi].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// k successes out of m valid trials. The rate is undefined when m = 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub k: u32,
    pub m: u32,
}

impl Rate {
    pub fn new(k: u32, m: u32) -> Self {
        debug_assert!(k <= m);
        Self { k, m }
    }

    /// k / m, or `None` when there is no valid trial.
    pub fn value(&self) -> Option<f64> {
        (self.m > 0).then(|| self.k as f64 / self.m as f64)
    }

    /// Wilson score interval at 95%; `None` when m = 0.
    pub fn wilson(&self) -> Option<Interval> {
        wilson(self.k, self.m, Z95)
    }
}

/// Wilson score interval for k of m at the given z (METHOD.md formula).
pub fn wilson(k: u32, m: u32, z: f64) -> Option<Interval> {
    if m == 0 {
        return None;
    }
    let m = m as f64;
    let p = k as f64 / m;
    let z2 = z * z;
    let denom = 1.0 + z2 / m;
    let center = (p + z2 / (2.0 * m)) / denom;
    let half = z * (p * (1.0 - p) / m + z2 / (4.0 * m * m)).sqrt() / denom;
    Some(Interval {
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
    })
}

/// A difference of two rates (a − b) with Newcombe's hybrid score interval (method 10).
/// The interval is `None` for differences imported without counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub value: f64,
    pub interval: Option<Interval>,
}

impl Difference {
    /// Significant when the 95% interval exists and excludes 0.
    pub fn significant(&self) -> bool {
        self.interval.is_some_and(|i| i.excludes_zero())
    }
}

/// Newcombe's hybrid score interval for p_a − p_b from the two Wilson intervals, at 95%.
/// `None` when either rate is undefined.
pub fn newcombe(a: Rate, b: Rate) -> Option<Difference> {
    newcombe_at(a, b, Z95)
}

/// [`newcombe`] at any z (the adaptive policy's looks use the z of the α each look spends).
pub fn newcombe_at(a: Rate, b: Rate, z: f64) -> Option<Difference> {
    let (pa, pb) = (a.value()?, b.value()?);
    let (wa, wb) = (wilson(a.k, a.m, z)?, wilson(b.k, b.m, z)?);
    let d = pa - pb;
    let lo = d - ((pa - wa.lo).powi(2) + (wb.hi - pb).powi(2)).sqrt();
    let hi = d + ((wa.hi - pa).powi(2) + (pb - wb.lo).powi(2)).sqrt();
    Some(Difference {
        value: d,
        interval: Some(Interval { lo, hi }),
    })
}

/// KL(P ‖ Q) in nats between two Bernoulli outcome distributions, each smoothed with additive
/// α over its two outcomes: p = (k + α) / (m + 2α). `None` when either set is empty. The
/// analysis calls it as KL(P_D ‖ P_kept).
pub fn bernoulli_kl(p_rate: Rate, q_rate: Rate, alpha: f64) -> Option<f64> {
    if p_rate.m == 0 || q_rate.m == 0 {
        return None;
    }
    let smooth = |r: Rate| (r.k as f64 + alpha) / (r.m as f64 + 2.0 * alpha);
    let (p, q) = (smooth(p_rate), smooth(q_rate));
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    Some(term(p, q) + term(1.0 - p, 1.0 - q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn rate_is_undefined_without_trials() {
        assert_eq!(Rate::new(0, 0).value(), None);
        assert_eq!(Rate::new(0, 0).wilson(), None);
        assert_eq!(Rate::new(0, 4).value(), Some(0.0));
    }

    #[test]
    fn wilson_matches_hand_computation() {
        // k=5, m=10, z=1.959964: z²=3.841459; denom=1.3841459; center=(0.5+0.1920729)/denom=0.5;
        // half = 1.959964*sqrt(0.025+0.00960365)/denom = 1.959964*0.186020/1.3841459 = 0.263411.
        let w = Rate::new(5, 10).wilson().unwrap();
        assert!(close(w.lo, 0.236589), "{w:?}");
        assert!(close(w.hi, 0.763411), "{w:?}");
        // k=0, m=10: center = 0.1920729/1.3841459 = 0.138768; half equals center, so lo = 0.
        let w = Rate::new(0, 10).wilson().unwrap();
        assert!(close(w.lo, 0.0) && close(w.hi, 0.277535), "{w:?}");
        // k=1, m=1: lo = (1+1.920730 - sqrt(3.841459*(0+3.841459/4)))/4.841459 ... = 0.206549
        let w = Rate::new(1, 1).wilson().unwrap();
        assert!(close(w.lo, 0.206549) && close(w.hi, 1.0), "{w:?}");
    }

    #[test]
    fn newcombe_matches_hand_computation() {
        // a = 8/10 (Wilson 0.490162..0.943318), b = 2/10 (Wilson 0.056682..0.509838)
        // d = 0.6; lo = 0.6 - sqrt(0.309838² + 0.309838²) = 0.161823;
        // hi = 0.6 + sqrt(0.143318² + 0.143318²) = 0.802683.
        let d = newcombe(Rate::new(8, 10), Rate::new(2, 10)).unwrap();
        assert!(close(d.value, 0.6));
        assert!(close(d.interval.unwrap().lo, 0.161823), "{d:?}");
        assert!(close(d.interval.unwrap().hi, 0.802683), "{d:?}");
        assert!(d.significant());
        let d = newcombe(Rate::new(5, 10), Rate::new(4, 10)).unwrap();
        assert!(!d.significant());
        assert_eq!(newcombe(Rate::new(1, 2), Rate::new(0, 0)), None);
    }

    #[test]
    fn kl_matches_hand_computation() {
        // p = 0.75, q = 0.25: 0.75 ln 3 + 0.25 ln(1/3) = 0.5 ln 3 = 0.549306
        let kl = bernoulli_kl(Rate::new(3, 4), Rate::new(1, 4), 0.0).unwrap();
        assert!(close(kl, 0.549306), "{kl}");
        assert!(close(
            bernoulli_kl(Rate::new(2, 4), Rate::new(5, 10), 1e-9).unwrap(),
            0.0
        ));
        // Laplace α=1: p = 4/6, q = 2/6: (2/3)ln2 + (1/3)ln(1/2) = (1/3) ln 2 = 0.231049
        let kl = bernoulli_kl(Rate::new(3, 4), Rate::new(1, 4), 1.0).unwrap();
        assert!(close(kl, 0.231049), "{kl}");
        assert_eq!(bernoulli_kl(Rate::new(0, 0), Rate::new(1, 4), 1.0), None);
    }
}
