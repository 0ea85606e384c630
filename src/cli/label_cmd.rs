//! `anchorscope label`: label each trace's own response with every behavior and print the
//! labels with their evidence, so a researcher can audit a classifier on their own data (and,
//! with `[judge]` configured, compare the offline judge with the model judge).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde::Serialize;

use anchorscope::behavior::{parts::ResponseParts, BehaviorSet, ALIGNMENT_FAKING};
use anchorscope::config::Config;
use anchorscope::engine::remote::judge::model_judge;
use anchorscope::trace::terminal::terminal_safe;
use anchorscope::trace::{Label, LabelValue};

use super::load;
use super::output::print;
use super::LabelArgs;

/// The key of the model judge's label when both alignment-faking judges run.
const MODEL_JUDGE_KEY: &str = "alignment_faking (af-model-judge)";

#[derive(Debug, Serialize)]
struct TraceLabels {
    trace: String,
    labels: BTreeMap<String, LabelOut>,
}

#[derive(Debug, Serialize)]
struct LabelOut {
    value: &'static str,
    classifier: String,
    version: String,
    evidence: Option<String>,
}

impl From<&Label> for LabelOut {
    fn from(l: &Label) -> Self {
        Self {
            value: value_name(l.value),
            classifier: l.classifier.clone(),
            version: l.version.clone(),
            evidence: l.evidence.clone(),
        }
    }
}

fn value_name(v: LabelValue) -> &'static str {
    match v {
        LabelValue::Yes => "yes",
        LabelValue::No => "no",
        LabelValue::Invalid => "invalid",
    }
}

pub fn run(args: &LabelArgs, config: &Config) -> anyhow::Result<()> {
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let traces = load::select(outcome.traces, args.trace.as_deref())?;
    let offline =
        BehaviorSet::with_user(&config.behaviors).context("in the config's [[behavior]] tables")?;
    let names = offline.names();
    if let Some(b) = &args.behavior {
        if !names.contains(b) {
            bail!(
                "--behavior {b}: no such behavior; known: {}",
                names.join(", ")
            );
        }
    }
    // The model judge labels alignment faking beside the offline judge, not instead of it.
    let model = if config.judge.enabled {
        let engine = config.engine.clone();
        let judge = model_judge(&config.judge, &engine).map_err(anyhow::Error::msg)?;
        Some(BehaviorSet::builtin().with_af_model_judge(judge))
    } else {
        None
    };

    let mut out = Vec::with_capacity(traces.len());
    for loaded in &traces {
        let parts = ResponseParts::of(&loaded.trace.response);
        let mut labels = offline.classify_parts(&parts);
        if let Some(model) = &model {
            if args
                .behavior
                .as_deref()
                .is_none_or(|b| b == ALIGNMENT_FAKING)
            {
                if let Some(l) = model.classify_parts(&parts).remove(ALIGNMENT_FAKING) {
                    labels.insert(MODEL_JUDGE_KEY.into(), l);
                }
            }
        }
        if let Some(b) = &args.behavior {
            labels
                .retain(|name, _| name == b || (b == ALIGNMENT_FAKING && name == MODEL_JUDGE_KEY));
        }
        out.push((loaded.trace.id.clone(), labels));
    }

    let text = if args.json {
        let list: Vec<TraceLabels> = out
            .iter()
            .map(|(trace, labels)| TraceLabels {
                trace: trace.clone(),
                labels: labels.iter().map(|(k, l)| (k.clone(), l.into())).collect(),
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&list)?;
        s.push('\n');
        s
    } else {
        render(&out)
    };
    print(&text)
}

/// One block per trace: each label with its classifier and its evidence indented below; with
/// both alignment-faking judges, a last line of how often they agree.
fn render(out: &[(String, BTreeMap<String, Label>)]) -> String {
    let mut s = String::new();
    let (mut both, mut agree) = (0, 0);
    for (trace, labels) in out {
        let _ = writeln!(s, "{}", terminal_safe(trace));
        for (name, l) in labels {
            let _ = writeln!(
                s,
                "  {name}: {} ({}@{})",
                value_name(l.value),
                l.classifier,
                l.version
            );
            for line in l.evidence.as_deref().unwrap_or("").lines() {
                let _ = writeln!(s, "      {}", terminal_safe(line));
            }
        }
        if let (Some(a), Some(b)) = (labels.get(ALIGNMENT_FAKING), labels.get(MODEL_JUDGE_KEY)) {
            if a.value != LabelValue::Invalid && b.value != LabelValue::Invalid {
                both += 1;
                agree += usize::from(a.value == b.value);
            }
        }
    }
    if both > 0 {
        let _ = writeln!(
            s,
            "offline and model judge agree on {agree} of {both} traces both could label"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(value: LabelValue, classifier: &str) -> Label {
        Label {
            value,
            classifier: classifier.into(),
            version: "1".into(),
            evidence: Some("line one\nline \u{1b}]52;c;x\u{7}two".into()),
        }
    }

    #[test]
    fn render_indents_evidence_strips_escapes_and_counts_agreement() {
        let out = vec![
            (
                "t1".to_string(),
                BTreeMap::from([
                    (
                        ALIGNMENT_FAKING.to_string(),
                        label(LabelValue::Yes, "af-rules"),
                    ),
                    (
                        MODEL_JUDGE_KEY.to_string(),
                        label(LabelValue::Yes, "af-model-judge"),
                    ),
                ]),
            ),
            (
                "t2".to_string(),
                BTreeMap::from([
                    (
                        ALIGNMENT_FAKING.to_string(),
                        label(LabelValue::No, "af-rules"),
                    ),
                    (
                        MODEL_JUDGE_KEY.to_string(),
                        label(LabelValue::Yes, "af-model-judge"),
                    ),
                ]),
            ),
        ];
        let text = render(&out);
        assert!(
            text.contains("  alignment_faking: yes (af-rules@1)\n      line one\n"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            text.ends_with("agree on 1 of 2 traces both could label\n"),
            "{text}"
        );
    }
}
