//! Annotated JSON (ours): the trace, its analysis and the rollout count in one versioned document.

use serde::Serialize;

use crate::analysis::TraceAnalysis;
use crate::loaded::LoadedTrace;
use crate::store::runs::{Pool, RunRecord};
use crate::trace::{LabelValue, Rollout, Trace};

pub use crate::trace::EXPORT_FORMAT;
pub const EXPORT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Export<'a> {
    format: &'static str,
    version: u32,
    trace: &'a Trace,
    analysis: &'a TraceAnalysis,
    rollout_count: usize,
    /// Every model-judge verdict with its votes, criteria and quotes, for auditing (absent
    /// when no label came from a model judge).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    judge_evidence: Vec<JudgeEvidence<'a>>,
    /// Which runs the analysis pools (absent from [`render`], which knows no runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pooled_runs: Option<&'a Pool>,
    /// The run records of the store (see store::runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<&'a [RunRecord]>,
    /// Every stored rollout with its labels and run id, pooled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollouts: Option<&'a [Rollout]>,
}

/// One rollout's model-judge label.
#[derive(Serialize)]
struct JudgeEvidence<'a> {
    behavior: &'a str,
    position: usize,
    seed: u64,
    value: LabelValue,
    classifier: &'a str,
    version: &'a str,
    evidence: &'a str,
}

fn judge_evidence(loaded: &LoadedTrace) -> Vec<JudgeEvidence<'_>> {
    let mut out = Vec::new();
    for r in &loaded.rollouts {
        for (behavior, label) in &r.labels {
            if label.classifier != crate::behavior::af_judge_model::CLASSIFIER {
                continue;
            }
            out.push(JudgeEvidence {
                behavior,
                position: r.position,
                seed: r.seed,
                value: label.value,
                classifier: &label.classifier,
                version: &label.version,
                evidence: label.evidence.as_deref().unwrap_or(""),
            });
        }
    }
    out
}

/// Pretty JSON: `{"format":"anchorscope-export","version":1,"trace":…,"analysis":…,"rollout_count":n}`.
pub fn render(loaded: &LoadedTrace, analysis: &TraceAnalysis) -> String {
    to_text(&document(loaded, analysis))
}

/// [`render`] plus the rollouts (labels, run id), the run records and the pool: what a
/// researcher needs to recount the numbers.
pub fn render_with_runs(
    loaded: &LoadedTrace,
    analysis: &TraceAnalysis,
    pool: &Pool,
    runs: &[RunRecord],
) -> String {
    let doc = Export {
        pooled_runs: Some(pool),
        runs: Some(runs),
        rollouts: Some(&loaded.rollouts),
        ..document(loaded, analysis)
    };
    to_text(&doc)
}

/// The document without rollouts, runs or pool.
fn document<'a>(loaded: &'a LoadedTrace, analysis: &'a TraceAnalysis) -> Export<'a> {
    Export {
        format: EXPORT_FORMAT,
        version: EXPORT_VERSION,
        trace: &loaded.trace,
        analysis,
        rollout_count: loaded.rollouts.len(),
        judge_evidence: judge_evidence(loaded),
        pooled_runs: None,
        runs: None,
        rollouts: None,
    }
}

fn to_text(doc: &Export<'_>) -> String {
    // Every field serializes infallibly (string map keys, no custom serializers); keep the
    // contract "render returns text" and put the reason in the text if that ever changes.
    serde_json::to_string_pretty(doc).unwrap_or_else(|e| {
        serde_json::json!({"format": EXPORT_FORMAT, "error": e.to_string()}).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    #[test]
    fn parses_back_with_the_same_numbers() {
        let (loaded, analysis) = fixture::loaded();
        let text = render(&loaded, &analysis);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["format"], "anchorscope-export");
        assert_eq!(v["version"], 1);
        assert_eq!(v["rollout_count"], 12);
        // serde_json's default float parser may differ from the printed value in the last bit,
        // so counts are compared exactly and real numbers to 1e-12.
        let back: TraceAnalysis = serde_json::from_value(v["analysis"].clone()).unwrap();
        assert_eq!(back.behavior_names(), analysis.behavior_names());
        for (b, a) in back.behaviors.iter().zip(&analysis.behaviors) {
            assert_eq!(b.positions, a.positions);
            for (sb, sa) in b.sentences.iter().zip(&a.sentences) {
                assert_eq!((sb.n, sb.rate_different), (sa.n, sa.rate_different));
                for (db, da) in [
                    (sb.resampling, sa.resampling),
                    (sb.counterfactual, sa.counterfactual),
                ] {
                    assert_eq!(db.is_some(), da.is_some());
                    if let (Some(db), Some(da)) = (db, da) {
                        assert!((db.value - da.value).abs() < 1e-12);
                        let (ib, ia) = (db.interval.unwrap(), da.interval.unwrap());
                        assert!((ib.lo - ia.lo).abs() < 1e-12 && (ib.hi - ia.hi).abs() < 1e-12);
                    }
                }
                assert_eq!(sb.kl.is_some(), sa.kl.is_some());
            }
        }
        let trace: Trace = serde_json::from_value(v["trace"].clone()).unwrap();
        assert_eq!(trace, loaded.trace);
        // Undefined stays null, not 0: S_2 has no semantically different resample.
        let s2 = &v["analysis"]["behaviors"][0]["sentences"][2];
        assert!(s2["counterfactual"].is_null(), "{s2}");
        assert_eq!(s2["resampling"]["value"], 1.0);
        assert!(text.contains('\n'), "pretty-printed");
        assert!(
            v.get("judge_evidence").is_none(),
            "no model judge, no section"
        );
    }

    #[test]
    fn model_judge_evidence_is_exported_in_full() {
        let (mut loaded, analysis) = fixture::loaded();
        let evidence = "judge: 1/1 valid votes yes (threshold 0.5), 0 invalid\nvote 1: yes; \
                        in_training=yes \"quoted\"";
        loaded.rollouts[3].labels.insert(
            "alignment_faking".into(),
            crate::trace::Label {
                value: LabelValue::Yes,
                classifier: crate::behavior::af_judge_model::CLASSIFIER.into(),
                version: "abc".into(),
                evidence: Some(evidence.into()),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&render(&loaded, &analysis)).unwrap();
        let items = v["judge_evidence"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["evidence"], evidence);
        assert_eq!(items[0]["value"], "yes");
        assert_eq!(items[0]["seed"], loaded.rollouts[3].seed);
    }
}
