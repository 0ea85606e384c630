//! The adaptive policy's options, shared by `analyze --adaptive` and `bench adaptive`: each
//! flag overrides the config's `[sampling.adaptive_settings]`, which overrides the defaults.

use anyhow::bail;
use clap::Args;

use anchorscope::analysis::adaptive::AdaptiveSettings;

#[derive(Clone, Debug, Default, Args)]
pub struct AdaptiveOpts {
    /// Most rollouts per position [default: 100].
    #[arg(long, value_name = "N")]
    pub n_max: Option<u32>,

    /// Rollouts per position per round; each round ends with a look [default: 10].
    #[arg(long, value_name = "N")]
    pub round: Option<u32>,

    /// Per-sentence error rate over all looks [default: 0.05].
    #[arg(long, value_name = "A")]
    pub alpha: Option<f64>,

    /// The part of --alpha spent before n_max [default: 0.001].
    #[arg(long, value_name = "A")]
    pub interim_alpha: Option<f64>,

    /// Stop a sentence whose interval is narrower than ±E [default: 0.05].
    #[arg(long, value_name = "E")]
    pub epsilon: Option<f64>,

    /// Smallest |Δ| worth finding, for futility [default: 0.1].
    #[arg(long, value_name = "D")]
    pub min_effect: Option<f64>,

    /// Stop a sentence whose chance of ending significant is below P; 0 = off [default: 0.01].
    #[arg(long, value_name = "P")]
    pub futility: Option<f64>,

    /// Sparse phase: sample every S-th position first; 1 = off [default: 1].
    #[arg(long, value_name = "S")]
    pub stride: Option<usize>,

    /// Fill a sparse stretch when its end rates differ by Z standard errors [default: 1.0].
    #[arg(long, value_name = "Z")]
    pub screen_z: Option<f64>,
}

impl AdaptiveOpts {
    /// `base` with every given flag applied, checked.
    pub fn apply(&self, base: &AdaptiveSettings) -> anyhow::Result<AdaptiveSettings> {
        let mut s = base.clone();
        if let Some(v) = self.n_max {
            s.n_max = v;
        }
        if let Some(v) = self.round {
            s.round = v;
        }
        if let Some(v) = self.alpha {
            s.alpha = v;
        }
        if let Some(v) = self.interim_alpha {
            s.interim_alpha = v;
        }
        if let Some(v) = self.epsilon {
            s.epsilon = v;
        }
        if let Some(v) = self.min_effect {
            s.min_effect = v;
        }
        if let Some(v) = self.futility {
            s.futility = v;
        }
        if let Some(v) = self.stride {
            s.stride = v;
        }
        if let Some(v) = self.screen_z {
            s.screen_z = v;
        }
        if let Err(e) = s.check() {
            bail!("adaptive settings: {e} (from the flags or [sampling.adaptive_settings])");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_base_and_bad_values_are_errors() {
        let opts = AdaptiveOpts {
            n_max: Some(40),
            stride: Some(1),
            ..AdaptiveOpts::default()
        };
        let s = opts.apply(&AdaptiveSettings::default()).unwrap();
        assert_eq!((s.n_max, s.stride, s.round), (40, 1, 10));
        let bad = AdaptiveOpts {
            round: Some(500),
            ..AdaptiveOpts::default()
        };
        let err = bad
            .apply(&AdaptiveSettings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("round"), "{err}");
    }
}
