//! The policy against simulated truths: the error rate under repeated looks, the n_max cap,
//! sparse screening, and determinism.

use super::boundary::z_of;
use super::simulate::{draw, simulate, PositionTruth, SimOptions, Truth};
use super::*;
use crate::analysis::newcombe_at;

fn flat(positions: usize, rate: f64, share: f64) -> Truth {
    Truth {
        positions: vec![
            PositionTruth {
                rate,
                different_share: share,
                different_rate: rate,
                similar_rate: rate,
            };
            positions
        ],
        notes: Vec::new(),
    }
}

/// Drive a policy on one repetition of `truth`; the final counts and the policy.
fn run(
    truth: &Truth,
    settings: &AdaptiveSettings,
    seed: u64,
    rep: u32,
) -> (Vec<PositionCounts>, AdaptivePolicy) {
    let mut counts = vec![PositionCounts::default(); truth.positions.len()];
    let mut policy = AdaptivePolicy::new(settings.clone(), truth.sentences()).unwrap();
    for _ in 0..1000 {
        let round = policy.step(&counts);
        if round.is_empty() {
            return (counts, policy);
        }
        for (p, more) in round.requests {
            for _ in 0..more {
                let (d, y) = draw(seed, rep, p, counts[p].n, &truth.positions[p]);
                counts[p].add(Some(y), d);
            }
        }
    }
    panic!("the policy did not finish in 1000 rounds");
}

/// The settings under which Δ = 0 sentences get the most looks: nothing stops them early
/// except the boundary itself.
fn every_look() -> AdaptiveSettings {
    AdaptiveSettings {
        futility: 0.0,
        epsilon: 0.0,
        stride: 1,
        ..AdaptiveSettings::default()
    }
}

#[test]
fn the_error_rate_under_repeated_looks_stays_at_alpha() {
    // 20 sentences with Δ = 0 each, 400 repetitions: 8,000 chances for a false significant.
    // Two truths: the middle of the range and a rarer behavior with a smaller D set.
    for (rate, share) in [(0.5, 1.0), (0.2, 0.6)] {
        let truth = flat(21, rate, share);
        let settings = every_look();
        let (mut false_hits, mut trials) = (0u32, 0u32);
        for rep in 0..400 {
            let (_, policy) = run(&truth, &settings, 7, rep);
            for s in policy.sentence_states() {
                trials += 1;
                false_hits += u32::from(matches!(
                    s,
                    SentenceState::Resolved(Resolution::Significant { .. })
                ));
            }
        }
        let observed = false_hits as f64 / trials as f64;
        // Monte-Carlo slack: 3 binomial standard errors (neighbouring sentences share a
        // position, so this is a little generous, not strict).
        let slack = 3.0 * (0.05 * 0.95 / trials as f64).sqrt();
        assert!(
            observed <= settings.alpha + slack,
            "rate {rate}, share {share}: {observed} > α"
        );

        // The same looks at the fixed design's z every time would break α: the test can fail.
        let mut naive_hits = 0u32;
        for rep in 0..400 {
            let mut counts = vec![PositionCounts::default(); truth.positions.len()];
            let mut hit = vec![false; truth.sentences()];
            for look in 1..=settings.planned_looks() {
                for (p, c) in counts.iter_mut().enumerate() {
                    while c.n < look * settings.round {
                        let (d, y) = draw(7, rep, p, c.n, &truth.positions[p]);
                        c.add(Some(y), d);
                    }
                }
                for (i, h) in hit.iter_mut().enumerate() {
                    *h |= newcombe_at(counts[i + 1].rate, counts[i].different, z_of(0.05))
                        .is_some_and(|d| d.significant());
                }
            }
            naive_hits += hit.iter().filter(|&&h| h).count() as u32;
        }
        let naive = naive_hits as f64 / trials as f64;
        assert!(
            naive > settings.alpha + slack,
            "10 uncorrected looks should exceed α: {naive}"
        );
    }
}

#[test]
fn no_position_ever_gets_more_than_n_max() {
    let truth = flat(9, 0.5, 0.8);
    let settings = AdaptiveSettings {
        n_max: 37,
        round: 10,
        ..every_look()
    };
    for rep in 0..20 {
        let (counts, policy) = run(&truth, &settings, 1, rep);
        assert!(counts.iter().all(|c| c.n <= 37), "{counts:?}");
        assert!(policy.finished());
    }
    // Stored counts beyond n_max (an earlier fixed run) are never topped up.
    let mut policy = AdaptivePolicy::new(settings.clone(), 2).unwrap();
    let full = PositionCounts {
        n: 50,
        ..PositionCounts::default()
    };
    assert!(policy.step(&[full, full, full]).is_empty());
}

#[test]
fn decided_sentences_stop_early_and_undecided_ones_reach_n_max() {
    // Positions 0..=3 alternate between never and always: every sentence there has |Δ| = 1.
    // Positions 4..=7 sit at 0.5: Δ = 0 there, undecided without futility or ε.
    let mut truth = flat(8, 0.5, 1.0);
    for p in 0..=3 {
        let r = if p % 2 == 0 { 0.0 } else { 1.0 };
        truth.positions[p] = PositionTruth {
            rate: r,
            different_share: 1.0,
            different_rate: r,
            similar_rate: r,
        };
    }
    let settings = every_look();
    let (counts, policy) = run(&truth, &settings, 3, 0);
    let states = policy.sentence_states();
    for (i, state) in states.iter().enumerate().take(3) {
        assert!(
            matches!(state, SentenceState::Resolved(Resolution::Significant { delta, .. }) if delta.abs() == 1.0),
            "sentence {i}: {state:?}"
        );
    }
    assert!(
        counts[..=2].iter().all(|c| c.n == settings.round),
        "{counts:?}"
    );
    for (i, state) in states.iter().enumerate().take(7).skip(4) {
        assert_eq!(
            *state,
            SentenceState::Resolved(Resolution::Exhausted),
            "{i}"
        );
    }
    assert!(
        counts[4..].iter().all(|c| c.n == settings.n_max),
        "{counts:?}"
    );
    let positions = policy.position_states(&counts, &Round::default());
    assert_eq!(positions[0], PositionState::Decided);
    assert_eq!(positions[7], PositionState::AtNMax);
}

#[test]
fn the_sparse_phase_skips_flat_stretches_and_fills_around_a_step() {
    // A rate that jumps from 0.1 to 0.9 at sentence 9 (positions 9 → 10).
    let mut truth = flat(17, 0.1, 1.0);
    for p in 10..17 {
        truth.positions[p] = PositionTruth {
            rate: 0.9,
            different_share: 1.0,
            different_rate: 0.9,
            similar_rate: 0.9,
        };
    }
    truth.positions[9].different_rate = 0.1;
    let settings = AdaptiveSettings {
        stride: 4,
        screen_z: 2.0,
        ..AdaptiveSettings::default()
    };
    let mut skipped_elsewhere = 0;
    for rep in 0..20 {
        let (counts, policy) = run(&truth, &settings, 5, rep);
        let states = policy.sentence_states();
        // The step lies in the stretch 8..12: it is filled, and sentence 9 is found.
        assert!(
            matches!(states[9], SentenceState::Resolved(Resolution::Significant { delta, .. }) if delta > 0.5),
            "rep {rep}: {:?}",
            states[9]
        );
        assert!(counts[9].n > 0 && counts[10].n > 0);
        skipped_elsewhere += states
            .iter()
            .filter(|s| **s == SentenceState::Resolved(Resolution::Skipped))
            .count();
    }
    // Three of the four stretches are flat; at 2 standard errors most of them are skipped.
    assert!(skipped_elsewhere >= 20 * 8, "{skipped_elsewhere}");
}

#[test]
fn the_same_counts_give_the_same_decisions() {
    let truth = flat(12, 0.3, 0.7);
    let a = run(&truth, &AdaptiveSettings::default(), 9, 4);
    let b = run(&truth, &AdaptiveSettings::default(), 9, 4);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.sentence_states(), b.1.sentence_states());
}

#[test]
fn an_exhausted_position_decides_its_sentences_with_what_it_holds() {
    let mut policy = AdaptivePolicy::new(every_look(), 1).unwrap();
    let round = policy.step(&[PositionCounts::default(); 2]);
    assert_eq!(round.requests, vec![(0, 10), (1, 10)]);
    policy.exhaust(0);
    let mut one = PositionCounts::default();
    for _ in 0..10 {
        one.add(Some(true), true);
    }
    // Position 0 has nothing and cannot grow; position 1 goes on to n_max, then it is over.
    let mut counts = [PositionCounts::default(), one];
    loop {
        let round = policy.step(&counts);
        if round.is_empty() {
            break;
        }
        assert!(round.requests.iter().all(|&(p, _)| p == 1));
        for (_, more) in round.requests {
            for _ in 0..more {
                counts[1].add(Some(true), true);
            }
        }
    }
    assert_eq!(counts[1].n, 100);
    assert_eq!(
        policy.sentence_states(),
        vec![SentenceState::Resolved(Resolution::Exhausted)]
    );
}

#[test]
fn fixed_and_adaptive_read_the_same_draws_and_agree_where_both_sample_fully() {
    // With no way to stop early, the adaptive run samples n_max everywhere and must give the
    // fixed run's verdicts (its last look uses a slightly larger z, so verdicts may only be
    // lost, never gained), and exactly the fixed run's rollout count.
    let truth = flat(6, 0.4, 0.9);
    let settings = AdaptiveSettings {
        interim_alpha: 0.0,
        ..every_look()
    };
    let opts = SimOptions {
        settings,
        reps: 30,
        seed: 11,
        report_effect: 0.0,
    };
    let sums = simulate(&truth, &opts).unwrap();
    assert_eq!(sums.fixed_rollouts, sums.adaptive_rollouts);
    let report = sums.report();
    assert_eq!(report.savings, 0.0);
    assert_eq!(report.precision.unwrap_or(1.0), 1.0);
    assert_eq!(sums.recalled, sums.fixed_found);
}
