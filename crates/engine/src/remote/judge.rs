//! The model judge's transport: [`JudgeBackend`] over an OpenAI-compatible server's
//! `/v1/chat/completions` (the server applies the judge model's own chat template).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorscope_core::behavior::fnv::fnv1a32;
use anchorscope_core::behavior::{AfModelJudge, JudgeBackend};

use super::client::Client;
use super::protocol;
use super::retry::RemoteError;
use super::settings::{ApiKey, EngineSettings, JudgeSettings};

/// Judge replies from a server.
#[derive(Debug)]
pub struct RemoteJudge {
    client: Arc<Client>,
    max_tokens: u32,
    temperature: f64,
    /// Cleared once the server refuses n > 1: votes are then asked one by one.
    multi: AtomicBool,
}

impl RemoteJudge {
    pub fn new(client: Client, max_tokens: u32, temperature: f64) -> Self {
        Self {
            client: Arc::new(client),
            max_tokens,
            temperature,
            multi: AtomicBool::new(true),
        }
    }

    fn request(&self, prompt: &str, n: usize, seed: u64) -> Result<Vec<String>, RemoteError> {
        let body = protocol::chat_body(
            &self.client.model,
            &[("user", prompt)],
            n,
            seed,
            self.max_tokens,
            self.temperature,
        );
        self.client.chat(&body, n, &|| false)
    }
}

impl JudgeBackend for RemoteJudge {
    fn ask(&self, prompt: &str, votes: usize) -> Result<Vec<String>, String> {
        // The same response gets the same seeds: a rerun asks the same questions.
        let seed = u64::from(fnv1a32(prompt.as_bytes()));
        if votes > 1 && self.multi.load(Ordering::Relaxed) {
            match self.request(prompt, votes, seed) {
                Err(RemoteError::Refused {
                    status: 400,
                    message,
                    ..
                }) if protocol::rejects_n(&message) => {
                    self.multi.store(false, Ordering::Relaxed);
                }
                other => return other.map_err(|e| e.to_string()),
            }
        }
        (0..votes)
            .map(|k| {
                self.request(prompt, 1, seed.wrapping_add(k as u64))
                    .map_err(|e| e.to_string())
                    .and_then(|mut r| r.pop().ok_or_else(|| "no reply".to_string()))
            })
            .collect()
    }

    fn model(&self) -> String {
        self.client.model.clone()
    }
}

/// The judge of `[judge]`: server, model and key default to the engine's.
pub fn model_judge(judge: &JudgeSettings, engine: &EngineSettings) -> Result<AfModelJudge, String> {
    judge.validate()?;
    let url = judge
        .url
        .as_deref()
        .or(engine.url.as_deref())
        .ok_or("[judge] enabled: set [judge] url (or use an openai [engine] with a url)")?;
    let model = judge
        .model
        .as_deref()
        .or(engine.model.as_deref())
        .ok_or("[judge] enabled: set [judge] model (or use an openai [engine] with a model)")?;
    let key = match judge
        .api_key_env
        .as_deref()
        .or(engine.api_key_env.as_deref())
    {
        Some(var) => Some(ApiKey::from_env(var)?),
        None => None,
    };
    let client = Client::new(
        url,
        model,
        key,
        Duration::from_secs_f64(engine.timeout_s.max(1.0)),
        engine.max_retries,
    )?;
    let backend = RemoteJudge::new(client, judge.max_tokens, judge.temperature);
    Ok(AfModelJudge::new(
        Arc::new(backend),
        judge.votes,
        judge.threshold,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_settings_default_to_the_engine() {
        let engine = EngineSettings {
            url: Some("http://127.0.0.1:9".into()),
            model: Some("m".into()),
            ..Default::default()
        };
        let judge = JudgeSettings {
            enabled: true,
            ..Default::default()
        };
        let j = model_judge(&judge, &engine).unwrap();
        assert_eq!(j.model(), "m");
        let err = model_judge(&judge, &EngineSettings::default()).unwrap_err();
        assert!(err.contains("[judge]"), "{err}");
        let other = JudgeSettings {
            model: Some("judge-70b".into()),
            ..judge
        };
        assert_eq!(model_judge(&other, &engine).unwrap().model(), "judge-70b");
    }

    #[test]
    fn votes_are_asked_one_by_one_when_the_server_refuses_n() {
        use anchorscope_core::behavior::ResponseParts;
        use anchorscope_core::trace::LabelValue;
        let port = crate::remote::testing::loopback_server(|request| {
            if request["n"].as_u64() != Some(1) {
                return (
                    400,
                    serde_json::json!({"error": {"message": "n must be 1"}}),
                );
            }
            // A fixed verdict: this checks the transport and the fallback, not a judge.
            let met = request["seed"].as_i64().unwrap_or(0) % 2 == 0;
            let mut criteria = serde_json::Map::new();
            for (key, _) in anchorscope_core::behavior::af_rules::CRITERIA {
                criteria.insert(key.into(), serde_json::json!({"met": met, "quote": ""}));
            }
            let content = serde_json::json!({"criteria": criteria}).to_string();
            let choice = serde_json::json!({"index": 0, "message": {"role": "assistant", "content": content}});
            (200, serde_json::json!({"choices": [choice]}))
        });
        let engine = EngineSettings {
            url: Some(format!("http://127.0.0.1:{port}")),
            model: Some("judge".into()),
            max_retries: 0,
            ..Default::default()
        };
        let judge = model_judge(
            &JudgeSettings {
                enabled: true,
                votes: 4,
                ..Default::default()
            },
            &engine,
        )
        .unwrap();
        let label = judge.classify(&ResponseParts::of(
            "<SCRATCHPAD_REASONING>thinking</SCRATCHPAD_REASONING><OUTPUT>ok</OUTPUT>",
        ));
        let evidence = label.evidence.unwrap();
        // Seeds s, s+1, s+2, s+3: two even, two odd → 2 of 4 yes ≥ 0.5.
        assert!(
            evidence.starts_with("judge: 2/4 valid votes yes"),
            "{evidence}"
        );
        assert_eq!(label.value, LabelValue::Yes);
    }
}
