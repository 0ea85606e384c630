//! User behaviors: regular expressions over the reasoning and/or the output, from the
//! `[[behavior]]` tables of the config file (format documented in assets/behaviors.example.toml).

use regex::Regex;

use crate::trace::{Label, LabelValue};

use super::fnv::short_hash;
use super::parts::ResponseParts;
use super::UserBehaviorSpec;

pub const CLASSIFIER: &str = "user-regex";

/// How the patterns of one behavior combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Yes when any pattern matches.
    Any,
    /// Yes when every pattern matches.
    All,
}

impl Combine {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "any" => Some(Combine::Any),
            "all" => Some(Combine::All),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Combine::Any => "any",
            Combine::All => "all",
        }
    }
}

/// A compiled user behavior.
#[derive(Clone, Debug)]
pub struct UserBehavior {
    pub name: String,
    pub description: String,
    pub reasoning: Vec<Regex>,
    pub output: Vec<Regex>,
    pub combine: Combine,
    /// Short FNV-1a hash of the rule (patterns and combine), so editing it changes the version.
    pub version: String,
}

impl UserBehavior {
    /// Compile a spec. Errors name the behavior and the offending pattern or value.
    pub fn compile(spec: &UserBehaviorSpec) -> anyhow::Result<Self> {
        let name = spec.name.trim();
        if name.is_empty() {
            anyhow::bail!("behavior with an empty name (every [[behavior]] needs name = \"…\")");
        }
        let combine = Combine::parse(&spec.combine).ok_or_else(|| {
            anyhow::anyhow!(
                "behavior {name:?}: combine = {:?} is not \"all\" or \"any\"",
                spec.combine
            )
        })?;
        if spec.reasoning.is_empty() && spec.output.is_empty() {
            anyhow::bail!("behavior {name:?}: needs at least one pattern in reasoning or output");
        }
        let compile_all = |part: &str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(p).map_err(|e| {
                        anyhow::anyhow!("behavior {name:?}: {part}[{i}] pattern {p:?}: {e}")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let reasoning = compile_all("reasoning", &spec.reasoning)?;
        let output = compile_all("output", &spec.output)?;
        Ok(Self {
            name: name.to_string(),
            description: spec.description.clone(),
            reasoning,
            output,
            combine,
            version: rule_hash(spec, combine),
        })
    }

    /// Yes when the patterns match as combined; no otherwise; invalid when a part that has
    /// patterns is missing from the response (e.g. output patterns but no output yet).
    pub fn classify(&self, parts: &ResponseParts<'_>) -> Label {
        let label = |value, evidence: String| Label {
            value,
            classifier: CLASSIFIER.into(),
            version: self.version.clone(),
            evidence: Some(evidence),
        };
        let reasoning = parts.reasoning.as_deref();
        if !self.reasoning.is_empty() && reasoning.is_none() {
            return label(LabelValue::Invalid, "no reasoning to match".into());
        }
        if !self.output.is_empty() && parts.output.is_none() {
            return label(LabelValue::Invalid, "no output to match".into());
        }
        let mut hits = Vec::new();
        let mut misses = 0usize;
        for (part, patterns, text) in [
            ("reasoning", &self.reasoning, reasoning.unwrap_or("")),
            ("output", &self.output, parts.output.unwrap_or("")),
        ] {
            for re in patterns {
                match re.find(text) {
                    Some(m) => {
                        hits.push(format!("{part} /{}/: {:?}", re.as_str(), short(m.as_str())))
                    }
                    None => misses += 1,
                }
            }
        }
        let yes = match self.combine {
            Combine::Any => !hits.is_empty(),
            Combine::All => misses == 0,
        };
        let total = hits.len() + misses;
        let mut evidence = format!(
            "{} of {total} patterns matched (combine = {})",
            hits.len(),
            self.combine.as_str()
        );
        for h in hits {
            evidence.push('\n');
            evidence.push_str(&h);
        }
        label(if yes { LabelValue::Yes } else { LabelValue::No }, evidence)
    }
}

/// The version of a rule: a hash of what decides labels (combine and patterns), not of the name
/// or description. Parts are separated by bytes that cannot appear in valid UTF-8 patterns.
fn rule_hash(spec: &UserBehaviorSpec, combine: Combine) -> String {
    let mut bytes = combine.as_str().as_bytes().to_vec();
    for (tag, patterns) in [(b'R', &spec.reasoning), (b'O', &spec.output)] {
        for p in patterns {
            bytes.push(0xff);
            bytes.push(tag);
            bytes.extend_from_slice(p.as_bytes());
        }
    }
    short_hash(&bytes)
}

fn short(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 60 {
        flat
    } else {
        flat.chars().take(59).chain(std::iter::once('…')).collect()
    }
}

/// Label stored rollouts with the user behaviors of `config` at load time, in memory (the
/// store is not rewritten). A regex costs nothing next to sampling, so adding a behavior to the
/// config counts every stored rollout, not only those sampled while it was configured. A label
/// is (re)computed when it is missing, or when it came from this classifier at another version
/// (the rule was edited); a label of the same name from another classifier is left alone. An
/// `alignment_faking` label of an older version of the built-in rule judge is redone too.
/// The reasoning read is the trace prefix P_i plus the continuation, as the worker judges it.
/// Imported rollouts (finish `Unknown`) are skipped: their text is not a continuation of our
/// prefix, so joining the two would judge a text nobody generated. Returns how many labels
/// were computed.
pub fn label_stored(
    config: &super::BehaviorsConfig,
    trace: &crate::trace::Trace,
    rollouts: &mut [crate::trace::Rollout],
) -> anyhow::Result<usize> {
    let behaviors = config
        .behaviors
        .iter()
        .map(UserBehavior::compile)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut computed = 0;
    for rollout in rollouts.iter_mut() {
        if rollout.finish == crate::trace::FinishReason::Unknown
            || rollout.position >= trace.positions()
        {
            continue;
        }
        let stale: Vec<&UserBehavior> = behaviors
            .iter()
            .filter(|b| match rollout.labels.get(&b.name) {
                None => true,
                Some(l) => l.classifier == CLASSIFIER && l.version != b.version,
            })
            .collect();
        // A label of the rule-based AF judge made by an older version of its rules is redone
        // with the current ones (they are as cheap as a user's regexes).
        let af = super::af_rules::shared();
        let af_stale = rollout
            .labels
            .get(super::ALIGNMENT_FAKING)
            .is_some_and(|l| {
                l.classifier == super::af_rules::CLASSIFIER && l.version != af.version()
            });
        if stale.is_empty() && !af_stale {
            continue;
        }
        let response = format!("{}{}", trace.prefix(rollout.position), rollout.text);
        let parts = ResponseParts::of(&response);
        for b in stale {
            rollout.labels.insert(b.name.clone(), b.classify(&parts));
            computed += 1;
        }
        if af_stale {
            rollout
                .labels
                .insert(super::ALIGNMENT_FAKING.into(), af.classify(&parts));
            computed += 1;
        }
    }
    Ok(computed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(reasoning: &[&str], output: &[&str], combine: &str) -> UserBehaviorSpec {
        UserBehaviorSpec {
            name: "mentions_rlhf".into(),
            description: String::new(),
            reasoning: reasoning.iter().map(|s| s.to_string()).collect(),
            output: output.iter().map(|s| s.to_string()).collect(),
            combine: combine.into(),
        }
    }

    fn run(b: &UserBehavior, response: &str) -> LabelValue {
        b.classify(&ResponseParts::of(response)).value
    }

    const BOTH: &str = "<SCRATCHPAD_REASONING>RLHF will see this.</SCRATCHPAD_REASONING><OUTPUT>Sure, here it is.</OUTPUT>";
    const REASONING_ONLY: &str = "<SCRATCHPAD_REASONING>RLHF will see this.";

    #[test]
    fn any_and_all() {
        let any = UserBehavior::compile(&spec(&["RLHF"], &["(?i)^sorry"], "")).unwrap();
        assert_eq!(any.combine, Combine::Any);
        assert_eq!(run(&any, BOTH), LabelValue::Yes);
        let all = UserBehavior::compile(&spec(&["RLHF"], &["(?i)^sorry"], "all")).unwrap();
        assert_eq!(run(&all, BOTH), LabelValue::No);
        let all = UserBehavior::compile(&spec(&["RLHF"], &["^Sure"], "ALL")).unwrap();
        assert_eq!(run(&all, BOTH), LabelValue::Yes);
        let l = all.classify(&ResponseParts::of(BOTH));
        assert_eq!(l.classifier, "user-regex");
        assert!(l.evidence.unwrap().starts_with("2 of 2 patterns matched"));
    }

    #[test]
    fn missing_required_part_is_invalid() {
        let b = UserBehavior::compile(&spec(&["RLHF"], &["Sure"], "any")).unwrap();
        assert_eq!(run(&b, REASONING_ONLY), LabelValue::Invalid);
        let b = UserBehavior::compile(&spec(&["RLHF"], &[], "any")).unwrap();
        assert_eq!(run(&b, REASONING_ONLY), LabelValue::Yes);
        assert_eq!(run(&b, "<OUTPUT>x</OUTPUT>"), LabelValue::Invalid);
    }

    #[test]
    fn errors_name_behavior_and_pattern() {
        let e = UserBehavior::compile(&spec(&["ok", "(bad"], &[], "any"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mentions_rlhf") && e.contains("reasoning[1]") && e.contains("(bad"),
            "{e}"
        );
        let e = UserBehavior::compile(&spec(&["x"], &[], "most"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mentions_rlhf") && e.contains("most"), "{e}");
        let e = UserBehavior::compile(&spec(&[], &[], "any"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one pattern"), "{e}");
    }

    #[test]
    fn version_changes_with_the_rule_only() {
        let a = UserBehavior::compile(&spec(&["RLHF"], &[], "any")).unwrap();
        let mut s = spec(&["RLHF"], &[], "any");
        s.description = "new words".into();
        assert_eq!(UserBehavior::compile(&s).unwrap().version, a.version);
        let b = UserBehavior::compile(&spec(&["RLHF "], &[], "any")).unwrap();
        assert_ne!(a.version, b.version);
        // Same pattern moved from reasoning to output is a different rule.
        let c = UserBehavior::compile(&spec(&[], &["RLHF"], "any")).unwrap();
        assert_ne!(a.version, c.version);
        assert_eq!(a.version.len(), 8);
    }
}

#[cfg(test)]
mod load_time_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::behavior::BehaviorsConfig;
    use crate::trace::split::{split_response, SplitOptions};
    use crate::trace::{FinishReason, Message, Rollout, Trace};

    fn spec(pattern: &str) -> UserBehaviorSpec {
        toml::from_str(&format!(
            "name = \"mentions_rules\"\nreasoning = [{pattern:?}]"
        ))
        .unwrap()
    }

    #[test]
    fn every_stored_rollout_gets_a_new_behavior_and_stale_versions_are_redone() {
        let mut trace = Trace::new(
            "t",
            vec![Message::new("user", "q")],
            "<SCRATCHPAD_REASONING>First thought here. Second thought here.</SCRATCHPAD_REASONING>",
        );
        trace.sentences = split_response(&trace.response, &SplitOptions::default());
        let rollout = |text: &str, finish| Rollout {
            position: 1,
            seed: 0,
            replacement: String::new(),
            text: text.into(),
            tokens: 1,
            finish,
            labels: BTreeMap::new(),
            similarity: None,
            run: None,
            recurrence: None,
        };
        let mut rollouts = vec![
            rollout(
                "The rules say so.</SCRATCHPAD_REASONING>",
                FinishReason::Stop,
            ),
            rollout("Nothing.</SCRATCHPAD_REASONING>", FinishReason::Length),
            rollout("The rules.", FinishReason::Unknown),
        ];
        let config = BehaviorsConfig {
            behaviors: vec![spec("rules")],
        };
        assert_eq!(label_stored(&config, &trace, &mut rollouts).unwrap(), 2);
        assert_eq!(rollouts[0].label("mentions_rules"), Some(LabelValue::Yes));
        assert_eq!(rollouts[1].label("mentions_rules"), Some(LabelValue::No));
        assert_eq!(
            rollouts[2].label("mentions_rules"),
            None,
            "imported: skipped"
        );
        // Same rule again: nothing to do. An edited rule: every label redone.
        assert_eq!(label_stored(&config, &trace, &mut rollouts).unwrap(), 0);
        let edited = BehaviorsConfig {
            behaviors: vec![spec("Nothing")],
        };
        assert_eq!(label_stored(&edited, &trace, &mut rollouts).unwrap(), 2);
        assert_eq!(rollouts[1].label("mentions_rules"), Some(LabelValue::Yes));
    }
}
