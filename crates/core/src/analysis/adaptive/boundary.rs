//! The efficacy boundary: which z each look's interval uses so that repeated looks keep the
//! per-sentence error rate at α.
//!
//! Why this shape: the adaptive run is compared with a fixed run that looks once at n_max with
//! z = 1.96. Spending almost all of α on the last look keeps its z close to 1.96 (so the
//! sentences a fixed run would call significant are still called so), while the small share
//! spent before it lets a large effect stop the sampling early (Haybittle and Peto's design).
//! The guarantee uses only the union bound: if look j declares a Δ = 0 sentence significant
//! with probability at most α_j, then some look does with probability at most Σ α_j ≤ α,
//! whatever the correlation between looks and whatever the stopping rule for other reasons.

use super::AdaptiveSettings;
use crate::analysis::significance::erfc;

/// Standard normal distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The z with Φ(z) = p, for p in (0, 1) (Acklam's rational approximation, relative error
/// below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The two-sided z of a nominal level α: Φ⁻¹(1 − α/2).
pub fn z_of(alpha: f64) -> f64 {
    normal_quantile(1.0 - alpha / 2.0)
}

/// The z of every look of one sentence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Boundary {
    /// Looks before n_max that may declare significance (each spends `interim_alpha / this`).
    pub interim_looks: u32,
    /// z of each of those looks (infinite when there are none).
    pub z_interim: f64,
    /// z of the look at n_max, which spends α − interim_alpha.
    pub z_final: f64,
}

impl Boundary {
    pub fn new(settings: &AdaptiveSettings) -> Self {
        let interim_looks = settings.planned_looks().saturating_sub(1);
        let (z_interim, spent) = if interim_looks == 0 || settings.interim_alpha == 0.0 {
            (f64::INFINITY, 0.0)
        } else {
            (
                z_of(settings.interim_alpha / interim_looks as f64),
                settings.interim_alpha,
            )
        };
        Self {
            interim_looks,
            z_interim,
            z_final: z_of(settings.alpha - spent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_inverts_the_cdf_and_matches_tables() {
        assert!((z_of(0.05) - 1.959964).abs() < 1e-5, "{}", z_of(0.05));
        assert!((z_of(0.001) - 3.290527).abs() < 1e-5, "{}", z_of(0.001));
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        // Φ is good to 1.2e-7 relative (erfcc), the quantile to 1.2e-9.
        for p in [1e-6, 0.01, 0.2, 0.7, 0.99, 1.0 - 1e-6] {
            let back = normal_cdf(normal_quantile(p));
            let tail = p.min(1.0 - p);
            assert!((back - p).abs() < 1e-6 * tail, "{p} -> {back}");
        }
    }

    #[test]
    fn the_default_boundary_spends_little_before_the_last_look() {
        let b = Boundary::new(&AdaptiveSettings::default());
        assert_eq!(b.interim_looks, 9);
        // α_j = 0.001 / 9 before n_max, 0.049 at n_max.
        assert!((b.z_interim - z_of(0.001 / 9.0)).abs() < 1e-12);
        assert!((b.z_final - z_of(0.049)).abs() < 1e-12);
        assert!(b.z_final > 1.96 && b.z_final < 1.975, "{}", b.z_final);
        // One look only: the whole α at n_max, the fixed design's z.
        let one = Boundary::new(&AdaptiveSettings {
            round: 100,
            ..AdaptiveSettings::default()
        });
        assert_eq!(one.interim_looks, 0);
        assert!((one.z_final - 1.959964).abs() < 1e-5);
        assert!(one.z_interim.is_infinite());
    }
}
