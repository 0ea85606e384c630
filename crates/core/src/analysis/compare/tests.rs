use std::collections::BTreeMap;

use super::*;
use crate::analysis::{analyze_trace, newcombe, AnalysisOptions, SignificanceRule};
use crate::trace::{FinishReason, Label, LabelValue, Rollout, Sentence};

fn trace(id: &str, tier: &str, texts: &[&str]) -> Trace {
    let mut t = Trace::new(id, vec![], texts.join(" "));
    let mut start = 0;
    t.sentences = texts
        .iter()
        .map(|s| {
            let sentence = Sentence {
                start,
                end: start + s.len(),
                text: s.to_string(),
            };
            start += s.len() + 1;
            sentence
        })
        .collect();
    t.meta.insert("tier".into(), tier.into());
    t.model = Some("m".into());
    t
}

/// A rollout at `position` labelled yes/no for `behavior`, with a replacement far in meaning.
fn rollout(behavior: &str, position: usize, yes: bool) -> Rollout {
    let mut labels = BTreeMap::new();
    labels.insert(
        behavior.to_string(),
        Label {
            value: if yes { LabelValue::Yes } else { LabelValue::No },
            classifier: "test".into(),
            version: "1".into(),
            evidence: None,
        },
    );
    Rollout {
        position,
        seed: 0,
        replacement: format!("r{position}"),
        text: String::new(),
        tokens: 1,
        finish: FinishReason::Stop,
        labels,
        similarity: Some(0.1),
        run: None,
        recurrence: None,
    }
}

/// `k` yes of `m` at each listed position.
fn rollouts(behavior: &str, counts: &[(usize, u32, u32)]) -> Vec<Rollout> {
    let mut out = Vec::new();
    for &(position, k, m) in counts {
        for i in 0..m {
            out.push(rollout(behavior, position, i < k));
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn difference_interval_by_hand() {
    // a = 0.6 [0.16, 0.80], b = 0.1 [−0.2, 0.3]:
    // lo = 0.5 − √(0.44² + 0.2²) = 0.5 − √0.2336 = 0.016678…
    // hi = 0.5 + √(0.2² + 0.3²) = 0.5 + √0.13 = 0.860555…
    let a = Difference {
        value: 0.6,
        interval: Some(Interval { lo: 0.16, hi: 0.80 }),
    };
    let b = Difference {
        value: 0.1,
        interval: Some(Interval { lo: -0.2, hi: 0.3 }),
    };
    let d = difference_of(a, b);
    assert!(close(d.value, 0.5));
    let i = d.interval.unwrap();
    assert!((i.lo - 0.016_678).abs() < 1e-6, "{i:?}");
    assert!((i.hi - 0.860_555).abs() < 1e-6, "{i:?}");
    assert!(d.significant());
    // B − A is the mirror image: same width, sign flipped.
    let r = difference_of(b, a);
    assert!(close(r.value, -0.5));
    assert!(close(r.interval.unwrap().lo, -i.hi) && close(r.interval.unwrap().hi, -i.lo));
}

#[test]
fn difference_of_two_rates_is_newcombes_interval() {
    // The same construction as METHOD.md's interval for two rates: fed two rates with their
    // Wilson intervals it must give Newcombe's interval exactly.
    for (ra, rb) in [
        (Rate::new(8, 10), Rate::new(2, 10)),
        (Rate::new(0, 3), Rate::new(3, 3)),
        (Rate::new(17, 40), Rate::new(5, 12)),
    ] {
        let as_estimate = |r: Rate| Difference {
            value: r.value().unwrap(),
            interval: r.wilson(),
        };
        let ours = difference_of(as_estimate(ra), as_estimate(rb));
        let theirs = newcombe(ra, rb).unwrap();
        assert!(close(ours.value, theirs.value));
        let (o, t) = (ours.interval.unwrap(), theirs.interval.unwrap());
        assert!(close(o.lo, t.lo) && close(o.hi, t.hi), "{o:?} vs {t:?}");
    }
}

#[test]
fn imported_estimates_give_a_difference_without_interval() {
    let point = |v| Difference {
        value: v,
        interval: None,
    };
    let with = Difference {
        value: 0.2,
        interval: Some(Interval { lo: 0.1, hi: 0.3 }),
    };
    let d = difference_of(point(0.5), with);
    assert!(close(d.value, 0.3));
    assert_eq!(d.interval, None);
    assert!(!d.significant(), "no interval, never significant");
}

/// A: "keep" promotes compliance strongly (0/4 when replaced, 4/4 kept); B: the same sentence
/// has no effect (2/4 and 2/4). B has an extra sentence in the middle.
fn free_and_paid() -> (Trace, Vec<Rollout>, Trace, Vec<Rollout>) {
    let a = trace("q-free", "free", &["I will keep it.", "Then answer."]);
    let ra = rollouts("compliance", &[(0, 0, 4), (1, 4, 4), (2, 4, 4)]);
    let b = trace(
        "q-paid",
        "paid",
        &[
            "I will keep it.",
            "Something unrelated entirely.",
            "Then answer.",
        ],
    );
    let rb = rollouts("compliance", &[(0, 2, 4), (1, 2, 4), (2, 2, 4), (3, 2, 4)]);
    (a, ra, b, rb)
}

fn names() -> Vec<String> {
    vec!["compliance".into()]
}

#[test]
fn difference_is_a_minus_b_and_na_where_either_side_is_missing() {
    let (ta, ra, tb, rb) = free_and_paid();
    let opts = AnalysisOptions::default();
    let (aa, ab) = (
        analyze_trace(&ta, &ra, &names(), &opts),
        analyze_trace(&tb, &rb, &names(), &opts),
    );
    let texts = |t: &Trace| {
        t.sentences
            .iter()
            .map(|s| s.text.clone())
            .collect::<Vec<_>>()
    };
    let (sa, sb) = (texts(&ta), texts(&tb));
    let ra_: Vec<&str> = sa.iter().map(String::as_str).collect();
    let rb_: Vec<&str> = sb.iter().map(String::as_str).collect();
    let sim = lexical_matrix(&ra_, &rb_).unwrap();
    let c = compare(
        CompareSide {
            trace: &ta,
            analysis: &aa,
            rollouts: ra.len(),
        },
        CompareSide {
            trace: &tb,
            analysis: &ab,
            rollouts: rb.len(),
        },
        &sim,
        SimilarityMethod::lexical(None),
        &CompareOptions::default(),
    )
    .unwrap();

    assert_eq!(c.a.tier.as_deref(), Some("free"));
    assert_eq!(c.b.tier.as_deref(), Some("paid"));
    assert_eq!(c.a.rollouts, 12);
    let rows: Vec<(Option<usize>, Option<usize>)> = c.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(
        rows,
        vec![(Some(0), Some(0)), (None, Some(1)), (Some(1), Some(2))]
    );
    assert_eq!(c.aligned_count(), 2);
    assert_eq!(c.row_of(Which::B, 2), Some(2));
    assert_eq!(c.row_of(Which::A, 5), None);

    let b = c.behavior("compliance").unwrap();
    assert_eq!(b.rows.len(), c.pairs.len());
    // Row 0: A's Δcf = 4/4 − 0/4 = +1, B's = 2/4 − 2/4 = 0, so A − B = +1 (A pushes harder).
    let r0 = b.rows[0];
    assert!(close(r0.a.unwrap().value, 1.0));
    assert!(close(r0.b.unwrap().value, 0.0));
    assert!(close(r0.difference.unwrap().value, 1.0));
    assert!(r0.significant_a && !r0.significant_b);
    assert!(r0.significant_difference, "{:?}", r0.difference);
    // Row 1: B's sentence alone: no difference.
    assert_eq!(b.rows[1].a, None);
    assert!(b.rows[1].b.is_some());
    assert_eq!(b.rows[1].difference, None);
    // Row 2: A's sentence 1 kept vs resampled: both 4/4 → 0; B: 0. Difference 0, not significant.
    assert!(close(b.rows[2].difference.unwrap().value, 0.0));
    assert!(!b.rows[2].significant_difference);
    // Everywhere both exist, difference = a − b; elsewhere none.
    for r in &b.rows {
        match (r.a, r.b) {
            (Some(x), Some(y)) => assert!(close(r.difference.unwrap().value, x.value - y.value)),
            _ => assert_eq!(r.difference, None),
        }
    }
    // Rate curves: n + 1 points each, with counts and Wilson intervals.
    assert_eq!(b.rates_a.len(), 3);
    assert_eq!(b.rates_b.len(), 4);
    assert_eq!(b.rates_a[1].rate, Some(Rate::new(4, 4)));
    assert_eq!(b.rates_a[1].value, Some(1.0));
    assert_eq!(b.rates_a[1].interval, Rate::new(4, 4).wilson());
    // On the aligned rows: A has rows 0 and 2 plus its final position at x = 3.
    let xs: Vec<(usize, usize)> = c
        .curve_on_rows(b, Which::A)
        .iter()
        .map(|(x, p)| (*x, p.position))
        .collect();
    assert_eq!(xs, vec![(0, 0), (2, 1), (3, 2)]);
    let xs: Vec<usize> = c
        .curve_on_rows(b, Which::B)
        .iter()
        .map(|(x, _)| *x)
        .collect();
    assert_eq!(xs, vec![0, 1, 2, 3]);

    // Swapping the traces flips the sign of every difference.
    let swapped = compare(
        CompareSide {
            trace: &tb,
            analysis: &ab,
            rollouts: rb.len(),
        },
        CompareSide {
            trace: &ta,
            analysis: &aa,
            rollouts: ra.len(),
        },
        &lexical_matrix(&rb_, &ra_).unwrap(),
        SimilarityMethod::lexical(None),
        &CompareOptions::default(),
    )
    .unwrap();
    let d = swapped.behavior("compliance").unwrap().rows[0]
        .difference
        .unwrap();
    assert!(close(d.value, -1.0));
}

#[test]
fn significance_of_each_side_follows_its_own_rule() {
    let (ta, ra, tb, rb) = free_and_paid();
    // Under FDR with a tiny level nothing in A is significant, though its interval excludes 0.
    let fdr = AnalysisOptions {
        significance: SignificanceRule::Fdr,
        fdr_level: 1e-9,
        ..Default::default()
    };
    let aa = analyze_trace(&ta, &ra, &names(), &fdr);
    let ab = analyze_trace(&tb, &rb, &names(), &AnalysisOptions::default());
    let sim = SimilarityMatrix::new(2, 3, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    let side = |t, a, n| CompareSide {
        trace: t,
        analysis: a,
        rollouts: n,
    };
    let c = compare(
        side(&ta, &aa, 12),
        side(&tb, &ab, 16),
        &sim,
        SimilarityMethod::embedding("all-MiniLM-L6-v2"),
        &CompareOptions::default(),
    )
    .unwrap();
    let r0 = c.behaviors[0].rows[0];
    assert!(r0.a.unwrap().significant() && !r0.significant_a);
}

#[test]
fn a_behavior_of_one_side_only_is_kept_with_the_other_side_empty() {
    let ta = trace("a", "free", &["One sentence here."]);
    let tb = trace("b", "paid", &["One sentence here."]);
    let ra = rollouts("compliance", &[(0, 1, 2), (1, 2, 2)]);
    let rb = rollouts("refusal", &[(0, 1, 2), (1, 0, 2)]);
    let opts = AnalysisOptions::default();
    let aa = analyze_trace(&ta, &ra, &[], &opts);
    let ab = analyze_trace(&tb, &rb, &[], &opts);
    let sim = SimilarityMatrix::new(1, 1, vec![1.0]).unwrap();
    let c = compare(
        CompareSide {
            trace: &ta,
            analysis: &aa,
            rollouts: 4,
        },
        CompareSide {
            trace: &tb,
            analysis: &ab,
            rollouts: 4,
        },
        &sim,
        SimilarityMethod::lexical(Some("not installed".into())),
        &CompareOptions {
            importance: ImportanceKind::Resampling,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.behavior_names(), vec!["compliance", "refusal"]);
    let refusal = c.behavior("refusal").unwrap();
    assert_eq!(refusal.source_a, None);
    assert_eq!(refusal.source_b, Some(MetricSource::Rollouts));
    assert!(refusal.rates_a.is_empty());
    assert_eq!(refusal.rates_b.len(), 2);
    assert!(c.curve_on_rows(refusal, Which::A).is_empty());
    let row = refusal.rows[0];
    assert_eq!(row.a, None);
    // Resampling importance of B: 0/2 − 1/2.
    assert!(close(row.b.unwrap().value, -0.5));
    assert_eq!(row.difference, None);
    assert!(c.similarity.describe().contains("FALLBACK"));
    assert!(c.similarity.describe().contains("not installed"));
}

#[test]
fn empty_traces_compare_to_nothing() {
    let ta = trace("a", "free", &[]);
    let tb = trace("b", "paid", &["Only B speaks."]);
    let opts = AnalysisOptions::default();
    let aa = analyze_trace(&ta, &[], &names(), &opts);
    let ab = analyze_trace(&tb, &[], &names(), &opts);
    let sim = lexical_matrix(&[], &["Only B speaks."]).unwrap();
    let c = compare(
        CompareSide {
            trace: &ta,
            analysis: &aa,
            rollouts: 0,
        },
        CompareSide {
            trace: &tb,
            analysis: &ab,
            rollouts: 0,
        },
        &sim,
        SimilarityMethod::lexical(None),
        &CompareOptions::default(),
    )
    .unwrap();
    assert_eq!(c.pairs.len(), 1);
    assert_eq!((c.pairs[0].a, c.pairs[0].b), (None, Some(0)));
    let b = c.behavior("compliance").unwrap();
    // No rollouts: every rate n/a, never 0.
    assert_eq!(b.rates_a.len(), 1);
    assert!(b
        .rates_a
        .iter()
        .chain(&b.rates_b)
        .all(|p| p.value.is_none()));
    assert!(b
        .rows
        .iter()
        .all(|r| r.a.is_none() && r.b.is_none() && r.difference.is_none()));
}

#[test]
fn a_matrix_of_the_wrong_shape_or_a_nan_threshold_is_an_error() {
    let ta = trace("a", "free", &["x."]);
    let tb = trace("b", "paid", &["x.", "y."]);
    let aa = analyze_trace(&ta, &[], &names(), &AnalysisOptions::default());
    let ab = analyze_trace(&tb, &[], &names(), &AnalysisOptions::default());
    let side = |t, a| CompareSide {
        trace: t,
        analysis: a,
        rollouts: 0,
    };
    let wrong = SimilarityMatrix::new(2, 1, vec![0.0, 0.0]).unwrap();
    let err = compare(
        side(&ta, &aa),
        side(&tb, &ab),
        &wrong,
        SimilarityMethod::lexical(None),
        &CompareOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("1 and 2 sentences"), "{err}");
    let right = SimilarityMatrix::new(1, 2, vec![0.0, 0.0]).unwrap();
    let err = compare(
        side(&ta, &aa),
        side(&tb, &ab),
        &right,
        SimilarityMethod::lexical(None),
        &CompareOptions {
            min_similarity: f32::NAN,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, AlignError::Threshold(_)));
}

#[test]
fn json_names_the_rule_and_the_method() {
    let ta = trace("a", "free", &["x."]);
    let aa = analyze_trace(&ta, &[], &names(), &AnalysisOptions::default());
    let side = CompareSide {
        trace: &ta,
        analysis: &aa,
        rollouts: 0,
    };
    let c = compare(
        side,
        side,
        &SimilarityMatrix::new(1, 1, vec![1.0]).unwrap(),
        SimilarityMethod::lexical(Some("no embedder".into())),
        &CompareOptions::default(),
    )
    .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["similarity"]["kind"], "lexical");
    assert_eq!(v["similarity"]["fallback_reason"], "no embedder");
    assert!(v["difference"].as_str().unwrap().starts_with("A minus B"));
    assert_eq!(v["pairs"][0]["a"], 0);
    assert_eq!(v["importance"], "counterfactual");
    assert!(v["behaviors"][0]["rows"][0]["difference"].is_null());
}
