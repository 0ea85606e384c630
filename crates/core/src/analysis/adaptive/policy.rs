//! The adaptive policy as a deterministic state machine. Its caller (the engine worker, or the
//! simulation of `bench adaptive`) owns the rollouts; the policy only reads their counts and
//! says which positions get how many more, and why each sentence stopped.
//!
//! One step:
//! 1. **Sparse phase.** Every `stride`-th position (and the last) is sampled first. Once both
//!    ends of a stretch have a round, the stretch is *filled* (its positions join) when the
//!    two rates differ by at least `screen_z` standard errors, else its sentences are
//!    *skipped*: a sentence's importance shows up as a step of the rate between its positions
//!    (rate_{i+1} − rate_i ≈ |D_i|/m · Δcf_i), and a flat stretch has no step to explain.
//! 2. **Looks.** A sentence i being sampled is looked at whenever the counts of its positions
//!    i (the other side: D_i, or all rollouts for resampling importance) and i + 1 (the kept
//!    side) changed. It is decided significant when the look's Newcombe interval excludes 0
//!    ([`Boundary`]), decided precise when the interval at the last look's z is narrower than
//!    ±ε, futile when [`chance_of_significance`] is below `futility`, and exhausted when both
//!    positions are at n_max (or cannot grow) without any of these.
//! 3. **Requests.** A position is sampled while a sentence it feeds is undecided, a round at a
//!    time (counts are brought to multiples of `round`, a lagging side catches up first), and
//!    never beyond n_max.

use serde::{Deserialize, Serialize};

use super::boundary::Boundary;
use super::counts::PositionCounts;
use super::futility::{chance_of_significance, Side};
use super::AdaptiveSettings;
use crate::analysis::{newcombe_at, ImportanceKind};

/// Why a sentence stopped being sampled.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Resolution {
    /// The look's interval excluded 0. `delta` = kept − other at that look, `n` the larger
    /// rollout count of its two positions then.
    Significant { delta: f64, n: u32 },
    /// The interval at the last look's z holds Δ to within ±ε (it may or may not hold 0).
    Precise { delta: f64 },
    /// Little chance of ending significant with |Δ| ≥ min_effect even at n_max.
    Futile,
    /// Both positions reached n_max (or could not get more rollouts) undecided.
    Exhausted,
    /// In a stretch the sparse phase found flat: never sampled for its own sake.
    Skipped,
}

impl Resolution {
    /// Whether the policy declared the sentence's importance significant.
    pub fn significant(&self) -> bool {
        matches!(self, Resolution::Significant { .. })
    }

    /// Short name for tables and status lines.
    pub fn name(&self) -> &'static str {
        match self {
            Resolution::Significant { .. } => "significant",
            Resolution::Precise { .. } => "precise",
            Resolution::Futile => "futile",
            Resolution::Exhausted => "n_max",
            Resolution::Skipped => "skipped",
        }
    }
}

/// Where a sentence stands.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SentenceState {
    /// In a stretch whose ends the sparse phase has not screened yet.
    Waiting,
    /// Undecided: its positions get more rollouts.
    Sampling,
    Resolved(Resolution),
}

/// Where a position stands (what a UI marks per position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionState {
    /// Not sampled yet: its stretch waits for the sparse phase.
    Waiting,
    /// Gets more rollouts this round.
    Sampling,
    /// Every sentence it feeds is decided before n_max.
    Decided,
    /// Holds n_max rollouts (or could not get more).
    AtNMax,
    /// Both sentences it feeds were skipped by the sparse phase.
    Skipped,
}

/// What one step asks for: `(position, more rollouts)`, positions ascending. Empty when done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub requests: Vec<(usize, u32)>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Rollouts asked for in this round.
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|&(_, k)| k as u64).sum()
    }
}

#[derive(Clone, Debug)]
struct Track {
    state: SentenceState,
    /// Interim looks that have spent α.
    interim_looks: u32,
    /// (n_i, n_{i+1}) at the last look.
    seen: Option<(u32, u32)>,
}

/// A stretch between two sparse positions `a < b` (sentences a..b).
#[derive(Clone, Copy, Debug)]
struct Stretch {
    a: usize,
    b: usize,
    screened: bool,
}

/// The adaptive sampling of one trace for one behavior.
#[derive(Clone, Debug)]
pub struct AdaptivePolicy {
    settings: AdaptiveSettings,
    boundary: Boundary,
    sentences: Vec<Track>,
    stretches: Vec<Stretch>,
    /// Positions that cannot get more rollouts (see [`AdaptivePolicy::exhaust`]).
    exhausted: Vec<bool>,
}

impl AdaptivePolicy {
    /// A policy for a trace of `n_sentences` sentences (positions 0..=n_sentences).
    pub fn new(settings: AdaptiveSettings, n_sentences: usize) -> Result<Self, String> {
        settings.check()?;
        let sparse = settings.stride > 1 && n_sentences > 1;
        let initial = if sparse {
            SentenceState::Waiting
        } else {
            SentenceState::Sampling
        };
        let mut stretches = Vec::new();
        if sparse {
            let mut a = 0;
            while a < n_sentences {
                let b = (a + settings.stride).min(n_sentences);
                stretches.push(Stretch {
                    a,
                    b,
                    screened: false,
                });
                a = b;
            }
        }
        Ok(Self {
            boundary: Boundary::new(&settings),
            settings,
            sentences: vec![
                Track {
                    state: initial,
                    interim_looks: 0,
                    seen: None,
                };
                n_sentences
            ],
            stretches,
            exhausted: vec![false; n_sentences + 1],
        })
    }

    pub fn settings(&self) -> &AdaptiveSettings {
        &self.settings
    }

    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// Every sentence's state, by index.
    pub fn sentence_states(&self) -> Vec<SentenceState> {
        self.sentences.iter().map(|t| t.state).collect()
    }

    /// Whether every sentence is resolved.
    pub fn finished(&self) -> bool {
        self.sentences
            .iter()
            .all(|t| matches!(t.state, SentenceState::Resolved(_)))
    }

    /// Position `p` cannot get more rollouts (its prefix is over the context, the engine fails
    /// there, or the job does not cover it): its sentences are decided with what it holds.
    pub fn exhaust(&mut self, p: usize) {
        if let Some(e) = self.exhausted.get_mut(p) {
            *e = true;
        }
    }

    /// Read the counts (one per position; missing ones count as empty), update every decision,
    /// and say what to sample next. Deterministic: the same counts after the same history give
    /// the same answer.
    pub fn step(&mut self, counts: &[PositionCounts]) -> Round {
        let at = |p: usize| counts.get(p).copied().unwrap_or_default();
        self.screen(&at);
        for i in 0..self.sentences.len() {
            if self.sentences[i].state == SentenceState::Sampling {
                self.look(i, at(i), at(i + 1));
            }
        }
        self.requests(&at)
    }

    /// The state of every position after [`AdaptivePolicy::step`] asked for `round`.
    pub fn position_states(&self, counts: &[PositionCounts], round: &Round) -> Vec<PositionState> {
        let n_max = self.settings.n_max;
        (0..self.exhausted.len())
            .map(|p| {
                let fed: Vec<SentenceState> = [p.checked_sub(1), Some(p)]
                    .into_iter()
                    .flatten()
                    .filter_map(|i| self.sentences.get(i).map(|t| t.state))
                    .collect();
                let n = counts.get(p).map_or(0, |c| c.n);
                if round.requests.iter().any(|&(q, _)| q == p) {
                    PositionState::Sampling
                } else if n >= n_max || (self.exhausted[p] && n > 0) {
                    PositionState::AtNMax
                } else if fed.contains(&SentenceState::Waiting) {
                    PositionState::Waiting
                } else if n == 0
                    && fed
                        .iter()
                        .all(|s| *s == SentenceState::Resolved(Resolution::Skipped))
                {
                    PositionState::Skipped
                } else {
                    PositionState::Decided
                }
            })
            .collect()
    }

    fn can_grow(&self, p: usize, n: u32) -> bool {
        !self.exhausted[p] && n < self.settings.n_max
    }

    /// The counts every position must reach before its first look or screen.
    fn first_round(&self) -> u32 {
        self.settings.round.min(self.settings.n_max)
    }

    fn screen(&mut self, at: &dyn Fn(usize) -> PositionCounts) {
        let first = self.first_round();
        for s in 0..self.stretches.len() {
            let Stretch { a, b, screened } = self.stretches[s];
            let ready = |p: usize| at(p).n >= first || self.exhausted[p];
            if screened || !ready(a) || !ready(b) {
                continue;
            }
            self.stretches[s].screened = true;
            let fill = b - a == 1 || rates_differ(at(a), at(b), self.settings.screen_z);
            for track in &mut self.sentences[a..b] {
                if track.state == SentenceState::Waiting {
                    track.state = if fill {
                        SentenceState::Sampling
                    } else {
                        SentenceState::Resolved(Resolution::Skipped)
                    };
                }
            }
        }
    }

    fn look(&mut self, i: usize, here: PositionCounts, next: PositionCounts) {
        let settings = &self.settings;
        let first = self.first_round();
        let (grow_here, grow_next) = (self.can_grow(i, here.n), self.can_grow(i + 1, next.n));
        let ready = |c: PositionCounts, grows: bool| c.n >= first || !grows;
        if !ready(here, grow_here) || !ready(next, grow_next) {
            return;
        }
        let last = !grow_here && !grow_next;
        let track = &mut self.sentences[i];
        if track.seen == Some((here.n, next.n)) && !last {
            return;
        }
        track.seen = Some((here.n, next.n));
        let kept = next.rate;
        let other = here.other_side(settings.importance);
        let z = if last {
            Some(self.boundary.z_final)
        } else if track.interim_looks < self.boundary.interim_looks
            && self.boundary.z_interim.is_finite()
        {
            track.interim_looks += 1;
            Some(self.boundary.z_interim)
        } else {
            None
        };
        if let Some(d) = z.and_then(|z| newcombe_at(kept, other, z)) {
            if d.significant() {
                track.state = SentenceState::Resolved(Resolution::Significant {
                    delta: d.value,
                    n: here.n.max(next.n),
                });
                return;
            }
        }
        if last {
            track.state = SentenceState::Resolved(Resolution::Exhausted);
            return;
        }
        if settings.epsilon > 0.0 {
            if let Some(d) = newcombe_at(kept, other, self.boundary.z_final) {
                let i = d
                    .interval
                    .unwrap_or(crate::analysis::Interval { lo: -1.0, hi: 1.0 });
                if (i.hi - i.lo) / 2.0 < settings.epsilon {
                    track.state = SentenceState::Resolved(Resolution::Precise { delta: d.value });
                    return;
                }
            }
        }
        if settings.futility > 0.0 {
            let remaining = |c: PositionCounts, grows: bool| {
                if grows {
                    settings.n_max - c.n
                } else {
                    0
                }
            };
            let other_side = match settings.importance {
                ImportanceKind::Counterfactual => {
                    Side::subset_of(other, here.rate, here.n, remaining(here, grow_here))
                }
                ImportanceKind::Resampling => {
                    Side::jeffreys(other, here.n, remaining(here, grow_here))
                }
            };
            let chance = chance_of_significance(
                Side::jeffreys(kept, next.n, remaining(next, grow_next)),
                other_side,
                self.boundary.z_final,
                settings.min_effect,
                settings.futility,
            );
            if chance < settings.futility {
                track.state = SentenceState::Resolved(Resolution::Futile);
            }
        }
    }

    fn requests(&self, at: &dyn Fn(usize) -> PositionCounts) -> Round {
        let (round, n_max) = (self.settings.round, self.settings.n_max);
        let next = |n: u32| n_max.min((n / round + 1) * round);
        let up = |n: u32| n_max.min(n.div_ceil(round) * round);
        let mut target = vec![0u32; self.exhausted.len()];
        // Ends of stretches not screened yet: their first round.
        for s in self.stretches.iter().filter(|s| !s.screened) {
            for p in [s.a, s.b] {
                target[p] = target[p].max(self.first_round());
            }
        }
        for (i, track) in self.sentences.iter().enumerate() {
            if track.state != SentenceState::Sampling {
                continue;
            }
            for (p, q) in [(i, i + 1), (i + 1, i)] {
                let (np, nq) = (at(p).n, at(q).n);
                let want = if np < nq {
                    up(nq)
                } else if np == nq || !self.can_grow(q, nq) {
                    next(np)
                } else {
                    0 // the other side catches up first
                };
                target[p] = target[p].max(want);
            }
        }
        let requests = target
            .iter()
            .enumerate()
            .filter_map(|(p, &t)| {
                let n = at(p).n;
                (t > n && self.can_grow(p, n)).then(|| (p, t.min(n_max) - n))
            })
            .collect();
        Round { requests }
    }
}

/// The sparse screen: do the rates at the two ends of a stretch differ by at least `z`
/// standard errors? Rates are smoothed by one yes and one no (Agresti–Caffo), so two ends at
/// 0/10 are "equal" rather than undefined; an end without a valid label always fills.
fn rates_differ(a: PositionCounts, b: PositionCounts, z: f64) -> bool {
    if a.rate.m == 0 || b.rate.m == 0 {
        return true;
    }
    let smooth = |k: u32, m: u32| (k as f64 + 1.0) / (m as f64 + 2.0);
    let (pa, pb) = (smooth(a.rate.k, a.rate.m), smooth(b.rate.k, b.rate.m));
    let se = (pa * (1.0 - pa) / (a.rate.m as f64 + 2.0)
        + pb * (1.0 - pb) / (b.rate.m as f64 + 2.0))
        .sqrt();
    (pa - pb).abs() >= z * se
}
