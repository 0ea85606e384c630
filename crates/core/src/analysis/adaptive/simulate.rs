//! The simulation behind `anchorscope bench adaptive`: how many rollouts the adaptive policy
//! saves against the fixed design (n_max at every position, as the reference pipeline), and
//! what it loses, on a trace whose true rates are taken from a Thought Anchors folder.
//!
//! Both designs read the same random streams: draw j at position p of repetition r is one
//! fixed pair of uniforms, so the adaptive run's first n rollouts at a position are exactly
//! the fixed run's first n, and any difference in the verdicts comes from the policy alone.

use serde::Serialize;

use super::counts::PositionCounts;
use super::policy::{AdaptivePolicy, SentenceState};
use super::AdaptiveSettings;
use crate::analysis::{newcombe_at, Z95};
use crate::trace::ImportedSentenceMetrics;

/// The true outcome model of one position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PositionTruth {
    /// P(yes) over all rollouts here.
    pub rate: f64,
    /// P(replacement in D_i): the folder's different-trajectories fraction.
    pub different_share: f64,
    /// P(yes | replacement in D_i) = rate_{i+1} − Δcf_i.
    pub different_rate: f64,
    /// P(yes | replacement similar), so that the mixture gives `rate` (clipped to [0, 1]).
    pub similar_rate: f64,
}

/// The true model of a trace: positions 0..=n, sentence i between positions i and i + 1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Truth {
    pub positions: Vec<PositionTruth>,
    /// What had to be assumed or clipped, one line each.
    pub notes: Vec<String>,
}

impl Truth {
    /// From a Thought Anchors folder's per-chunk metrics (our sign convention, realigned by
    /// the importer). Chunk c's rate is the rate at position c; the last chunk has no kept
    /// rate after it, so the simulated trace has one sentence fewer than the folder.
    pub fn from_imported(chunks: &[ImportedSentenceMetrics]) -> Result<Self, String> {
        if chunks.len() < 2 {
            return Err(format!(
                "{} chunk(s): at least two chunks with rates are needed (a sentence's kept rate \
                 is the next chunk's rate)",
                chunks.len()
            ));
        }
        let name = |i: usize| chunks[i].chunk_idx.unwrap_or(i);
        let rates = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| match c.rate {
                Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
                Some(r) => Err(format!("chunk {}: rate {r} is not in [0, 1]", name(i))),
                None => Err(format!("chunk {}: no rate", name(i))),
            })
            .collect::<Result<Vec<f64>, String>>()?;
        let mut notes = Vec::new();
        let (mut assumed, mut clipped) = (Vec::new(), Vec::new());
        let mut positions = Vec::with_capacity(chunks.len());
        for (i, &rate) in rates.iter().enumerate() {
            let Some(&kept) = rates.get(i + 1) else {
                // The last position only serves as the kept side of the sentence before it.
                positions.push(PositionTruth {
                    rate,
                    different_share: 0.0,
                    different_rate: rate,
                    similar_rate: rate,
                });
                continue;
            };
            let share = chunks[i]
                .different_trajectories_fraction
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            let different_rate = match chunks[i].counterfactual_importance {
                Some(cf) => {
                    let d = kept - cf;
                    if !(0.0..=1.0).contains(&d) {
                        clipped.push(name(i));
                    }
                    d.clamp(0.0, 1.0)
                }
                None => {
                    if share > 0.0 {
                        assumed.push(name(i));
                    }
                    rate
                }
            };
            let similar_rate = if share < 1.0 {
                let s = (rate - share * different_rate) / (1.0 - share);
                if !(-1e-9..=1.0 + 1e-9).contains(&s) {
                    clipped.push(name(i));
                }
                s.clamp(0.0, 1.0)
            } else {
                rate
            };
            positions.push(PositionTruth {
                rate,
                different_share: share,
                different_rate,
                similar_rate,
            });
        }
        if !assumed.is_empty() {
            notes.push(format!(
                "chunks {assumed:?}: no counterfactual importance but a share of different \
                 replacements; their D rate is taken to be the chunk's rate (Δcf = resampling Δ)"
            ));
        }
        clipped.sort_unstable();
        clipped.dedup();
        if !clipped.is_empty() {
            notes.push(format!(
                "chunks {clipped:?}: rate, share and Δcf are not jointly consistent (their \
                 denominators differ); outcome probabilities clipped to [0, 1]"
            ));
        }
        Ok(Self { positions, notes })
    }

    pub fn sentences(&self) -> usize {
        self.positions.len().saturating_sub(1)
    }
}

/// How the simulation runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimOptions {
    pub settings: AdaptiveSettings,
    pub reps: u32,
    pub seed: u64,
    /// |Δ| a significant sentence must reach to count in recall and precision.
    pub report_effect: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            settings: AdaptiveSettings::default(),
            reps: 200,
            seed: 0,
            report_effect: 0.1,
        }
    }
}

/// Sums over repetitions; [`SimSums::report`] turns them into means and shares. Sums add, so
/// several folders pool into one line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SimSums {
    pub reps: u64,
    pub sentences: u64,
    pub fixed_rollouts: u64,
    pub adaptive_rollouts: u64,
    /// What a clairvoyant policy would use: n_max at the positions of the sentences the
    /// fixed run finds (F), one round everywhere else. No policy that must look before it
    /// stops can keep full recall with fewer, so `1 − oracle / fixed` bounds the savings.
    pub oracle_rollouts: u64,
    /// Sentences the fixed run finds significant with |Δ| ≥ report_effect (F).
    pub fixed_found: u64,
    /// Of F, those the adaptive run declares significant.
    pub recalled: u64,
    /// Of those, the ones whose signs agree.
    pub same_sign: u64,
    /// Sentences the adaptive run declares significant with |Δ| ≥ report_effect (A).
    pub adaptive_found: u64,
    /// Of A, those the fixed run finds significant.
    pub confirmed: u64,
    /// How the adaptive run resolved sentences, summed: significant, precise, futile, n_max,
    /// skipped.
    pub resolutions: [u64; 5],
    /// The sentences of F the adaptive run missed, by how it resolved them (same order).
    pub missed: [u64; 5],
    /// Per repetition: adaptive rollouts / fixed rollouts (for the spread).
    pub ratios: Vec<f64>,
}

impl SimSums {
    /// Pool another trace's sums run with the same repetitions: rollouts add up per
    /// repetition, shares pool over every sentence.
    pub fn add(&mut self, other: &SimSums) {
        self.reps = self.reps.max(other.reps);
        self.sentences += other.sentences;
        self.fixed_rollouts += other.fixed_rollouts;
        self.adaptive_rollouts += other.adaptive_rollouts;
        self.oracle_rollouts += other.oracle_rollouts;
        self.fixed_found += other.fixed_found;
        self.recalled += other.recalled;
        self.same_sign += other.same_sign;
        self.adaptive_found += other.adaptive_found;
        self.confirmed += other.confirmed;
        for (a, b) in self.resolutions.iter_mut().zip(other.resolutions) {
            *a += b;
        }
        for (a, b) in self.missed.iter_mut().zip(other.missed) {
            *a += b;
        }
        self.ratios.extend(&other.ratios);
    }

    pub fn report(&self) -> SimReport {
        let share = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let per_rep = |x: u64| x as f64 / self.reps.max(1) as f64;
        let mut ratios = self.ratios.clone();
        ratios.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            (!ratios.is_empty())
                .then(|| 1.0 - ratios[((ratios.len() - 1) as f64 * q).round() as usize])
        };
        SimReport {
            fixed_rollouts: per_rep(self.fixed_rollouts),
            adaptive_rollouts: per_rep(self.adaptive_rollouts),
            savings: share(
                self.fixed_rollouts - self.adaptive_rollouts.min(self.fixed_rollouts),
                self.fixed_rollouts,
            )
            .unwrap_or(0.0),
            oracle_savings: share(
                self.fixed_rollouts - self.oracle_rollouts.min(self.fixed_rollouts),
                self.fixed_rollouts,
            )
            .unwrap_or(0.0),
            savings_p5: quantile(0.95),
            savings_p95: quantile(0.05),
            recall: share(self.recalled, self.fixed_found),
            precision: share(self.confirmed, self.adaptive_found),
            sign_agreement: share(self.same_sign, self.recalled),
            fixed_significant: per_rep(self.fixed_found),
            adaptive_significant: per_rep(self.adaptive_found),
            resolved: Resolved::of(self.resolutions, per_rep),
            missed: Resolved::of(self.missed, per_rep),
        }
    }
}

/// Sentences per resolution, mean per repetition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resolved {
    pub significant: f64,
    pub precise: f64,
    pub futile: f64,
    pub n_max: f64,
    pub skipped: f64,
}

impl Resolved {
    fn of(sums: [u64; 5], per_rep: impl Fn(u64) -> f64) -> Self {
        Self {
            significant: per_rep(sums[0]),
            precise: per_rep(sums[1]),
            futile: per_rep(sums[2]),
            n_max: per_rep(sums[3]),
            skipped: per_rep(sums[4]),
        }
    }
}

/// The bench's numbers: rollouts are means per repetition; recall, precision and sign
/// agreement pool every repetition (ratios of sums); `None` when nothing was there to count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    pub fixed_rollouts: f64,
    pub adaptive_rollouts: f64,
    pub savings: f64,
    /// The savings bound of a clairvoyant policy at full recall (see
    /// [`SimSums::oracle_rollouts`]).
    pub oracle_savings: f64,
    /// 5th and 95th percentile of the per-repetition savings.
    pub savings_p5: Option<f64>,
    pub savings_p95: Option<f64>,
    /// Share of F (fixed: significant and |Δ| ≥ 0.1) that the adaptive run declares
    /// significant.
    pub recall: Option<f64>,
    /// Share of A (adaptive: significant and |Δ| ≥ 0.1) that the fixed run finds significant.
    pub precision: Option<f64>,
    /// Of the recalled sentences, the share with the same sign in both runs.
    pub sign_agreement: Option<f64>,
    /// |F| and |A|, mean per repetition.
    pub fixed_significant: f64,
    pub adaptive_significant: f64,
    pub resolved: Resolved,
    /// Sentences of F the adaptive run missed, by how it resolved them, per repetition.
    pub missed: Resolved,
}

/// SplitMix64's output function: a strong 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The outcome of draw `index` at `position` in repetition `rep`: (in D_i, yes). A pure
/// function of its coordinates, so every design that reads a draw reads the same one.
pub fn draw(
    seed: u64,
    rep: u32,
    position: usize,
    index: u32,
    truth: &PositionTruth,
) -> (bool, bool) {
    let h = mix(mix(mix(seed ^ 0x5eed) ^ rep as u64) ^ position as u64);
    let h = mix(h ^ index as u64);
    let different = unit(h) < truth.different_share;
    let p_yes = if different {
        truth.different_rate
    } else {
        truth.similar_rate
    };
    (different, unit(mix(h)) < p_yes)
}

fn add_draws(
    counts: &mut PositionCounts,
    seed: u64,
    rep: u32,
    p: usize,
    more: u32,
    t: &PositionTruth,
) {
    for _ in 0..more {
        let (different, yes) = draw(seed, rep, p, counts.n, t);
        counts.add(Some(yes), different);
    }
}

/// Run both designs `opts.reps` times on `truth`.
pub fn simulate(truth: &Truth, opts: &SimOptions) -> Result<SimSums, String> {
    let settings = &opts.settings;
    settings.check()?;
    let n_sentences = truth.sentences();
    let positions = truth.positions.len();
    let mut sums = SimSums {
        reps: opts.reps as u64,
        sentences: (n_sentences as u64) * opts.reps as u64,
        ..SimSums::default()
    };
    let big = |d: f64| d.abs() >= opts.report_effect;
    for rep in 0..opts.reps {
        let mut fixed = vec![PositionCounts::default(); positions];
        for (p, c) in fixed.iter_mut().enumerate() {
            add_draws(c, opts.seed, rep, p, settings.n_max, &truth.positions[p]);
        }
        let mut counts = vec![PositionCounts::default(); positions];
        let mut policy = AdaptivePolicy::new(settings.clone(), n_sentences)?;
        loop {
            let round = policy.step(&counts);
            if round.is_empty() {
                break;
            }
            for (p, more) in round.requests {
                add_draws(&mut counts[p], opts.seed, rep, p, more, &truth.positions[p]);
            }
        }
        let used: u64 = counts.iter().map(|c| c.n as u64).sum();
        let fixed_used = settings.n_max as u64 * positions as u64;
        sums.fixed_rollouts += fixed_used;
        sums.adaptive_rollouts += used;
        sums.ratios.push(used as f64 / fixed_used.max(1) as f64);
        let mut needed = vec![false; positions];
        for (i, state) in policy.sentence_states().into_iter().enumerate() {
            let SentenceState::Resolved(resolution) = state else {
                return Err(format!("sentence {i} unresolved when the policy stopped"));
            };
            let kind = match resolution {
                super::Resolution::Significant { .. } => 0,
                super::Resolution::Precise { .. } => 1,
                super::Resolution::Futile => 2,
                super::Resolution::Exhausted => 3,
                super::Resolution::Skipped => 4,
            };
            sums.resolutions[kind] += 1;
            let f = newcombe_at(
                fixed[i + 1].rate,
                fixed[i].other_side(settings.importance),
                Z95,
            )
            .filter(|d| d.significant());
            let a = match resolution {
                super::Resolution::Significant { delta, .. } => Some(delta),
                _ => None,
            };
            if let Some(f) = f.filter(|f| big(f.value)) {
                sums.fixed_found += 1;
                needed[i] = true;
                needed[i + 1] = true;
                if let Some(a) = a {
                    sums.recalled += 1;
                    sums.same_sign += u64::from((a > 0.0) == (f.value > 0.0));
                } else {
                    sums.missed[kind] += 1;
                }
            }
            if a.is_some_and(big) {
                sums.adaptive_found += 1;
                sums.confirmed += u64::from(f.is_some());
            }
        }
        sums.oracle_rollouts += needed
            .iter()
            .map(|&n| {
                if n {
                    settings.n_max
                } else {
                    settings.round.min(settings.n_max)
                }
            } as u64)
            .sum::<u64>();
    }
    Ok(sums)
}
