//! The `[engine]` and `[judge]` sections of the config file, and the API key.
//!
//! ```toml
//! [engine]
//! kind = "openai"                 # or "local" (the default)
//! url = "http://gpu-node:8000"
//! model = "deepseek-ai/DeepSeek-V3.1"
//! api_key_env = "OPENAI_API_KEY"  # the variable's NAME; the key itself is never written down
//! concurrency = 8
//! n_per_request = 8
//! timeout_s = 600
//! max_retries = 5
//! template = "deepseek-r1"        # chatml | llama3 | deepseek-r1; default: from the model name
//! tokenizer = "/models/DeepSeek-V3.1/tokenizer.json"  # counts tokens when usage is not per choice
//! [judge]
//! enabled = true
//! votes = 3
//! threshold = 0.5
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which engine samples rollouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The candle model on this machine.
    #[default]
    Local,
    /// An OpenAI-compatible server (vLLM, SGLang, `anchorscope serve`).
    Openai,
}

/// `[engine]`: which engine and, for `openai`, how to reach the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    pub kind: EngineKind,
    /// The server's base URL (`http://host:8000`; a trailing `/v1` is accepted).
    pub url: Option<String>,
    /// For `openai`: the served model's name (as `GET /v1/models` lists it).
    pub model: Option<String>,
    /// The NAME of the environment variable holding the API key (sent as a Bearer token).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Continuations asked for per request (`n`); falls back to 1 when the server rejects n > 1.
    pub n_per_request: usize,
    /// Seconds one request may take (connect, generate, read) before it is retried.
    pub timeout_s: f64,
    /// Retries of one request after a 429, a 5xx, a timeout or a malformed reply.
    pub max_retries: u32,
    /// `chatml`, `llama3` or `deepseek-r1`; default: guessed from the model name.
    pub template: Option<String>,
    /// The served model's tokenizer (a `tokenizer.json`, a GGUF file, a model directory or an
    /// installed model's name), to count each choice's tokens when the server's `usage` is not
    /// per choice; without it the count is an estimate (see `remote::token_count`).
    pub tokenizer: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            kind: EngineKind::Local,
            url: None,
            model: None,
            api_key_env: None,
            concurrency: 8,
            n_per_request: 8,
            timeout_s: 600.0,
            max_retries: 5,
            template: None,
            tokenizer: None,
        }
    }
}

impl EngineSettings {
    /// Every check: ranges, and for `openai` a URL and a model.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_ranges()?;
        if self.kind == EngineKind::Openai {
            if self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                return Err("the openai engine needs a server URL (--url or [engine] url)".into());
            }
            if self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
                return Err(
                    "the openai engine needs the served model's name (--model or [engine] model)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Range checks, each error naming the setting (URL and model may still come from flags).
    pub fn validate_ranges(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("[engine] concurrency = 0: must be at least 1".into());
        }
        if self.n_per_request == 0 {
            return Err("[engine] n_per_request = 0: must be at least 1".into());
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(format!(
                "[engine] timeout_s = {}: must be a positive number of seconds",
                self.timeout_s
            ));
        }
        if let Some(t) = &self.template {
            if crate::chat::ChatTemplate::from_name(t).is_none() {
                return Err(format!(
                    "[engine] template = {t:?}: expected chatml, llama3 or deepseek-r1"
                ));
            }
        }
        Ok(())
    }

    /// The API key from the variable named by `api_key_env` (None when no variable is named).
    /// A named but unset variable is an error naming the variable, never a value.
    pub fn api_key(&self) -> Result<Option<ApiKey>, String> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => ApiKey::from_env(var).map(Some),
        }
    }
}

/// `[judge]`: the model judge for alignment faking, through the engine's server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeSettings {
    pub enabled: bool,
    /// Independent judge replies per rollout.
    pub votes: usize,
    /// The label is yes when (yes votes) / (valid votes) ≥ threshold.
    pub threshold: f64,
    /// The judge model; default: the engine's.
    pub model: Option<String>,
    /// The judge server; default: the engine's.
    pub url: Option<String>,
    /// Environment variable with the judge server's key; default: the engine's.
    pub api_key_env: Option<String>,
    /// Token cap of one judge reply.
    pub max_tokens: u32,
    /// Sampling temperature of the judge (votes differ only when > 0).
    pub temperature: f64,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            votes: 3,
            threshold: 0.5,
            model: None,
            url: None,
            api_key_env: None,
            max_tokens: 1024,
            temperature: 0.7,
        }
    }
}

impl JudgeSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.votes == 0 {
            return Err("[judge] votes = 0: must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "[judge] threshold = {}: must be in (0, 1]",
                self.threshold
            ));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "[judge] temperature = {}: must be ≥ 0",
                self.temperature
            ));
        }
        Ok(())
    }
}

/// A bearer token. Its Debug form is redacted and it has no Display, so it cannot end up in a
/// log line, an error or a manifest by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key from environment variable `var`; the error names the variable only.
    pub fn from_env(var: &str) -> Result<Self, String> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Self(v.trim().to_string())),
            Ok(_) => Err(format!(
                "the environment variable {var} (api_key_env) is empty"
            )),
            Err(_) => Err(format!(
                "the environment variable {var} (api_key_env) is not set"
            )),
        }
    }

    /// The `Authorization` header value. Only the HTTP layer calls this.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted_in_debug() {
        let key = ApiKey::new("sk-secret-123");
        let shown = format!("{key:?} {:?}", Some(key.clone()));
        assert!(!shown.contains("sk-secret-123"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert_eq!(key.bearer(), "Bearer sk-secret-123");
    }

    #[test]
    fn missing_key_variable_names_the_variable() {
        let s = EngineSettings {
            api_key_env: Some("ANCHORSCOPE_TEST_SURELY_UNSET_VAR".into()),
            ..Default::default()
        };
        let err = s.api_key().unwrap_err();
        assert!(err.contains("ANCHORSCOPE_TEST_SURELY_UNSET_VAR"), "{err}");
        assert_eq!(EngineSettings::default().api_key(), Ok(None));
    }

    #[test]
    fn parses_and_validates_the_sections() {
        let e: EngineSettings = toml::from_str(
            "kind = \"openai\"\nurl = \"http://h:8000\"\nmodel = \"m\"\nn_per_request = 4\n",
        )
        .unwrap();
        assert_eq!(e.kind, EngineKind::Openai);
        assert_eq!((e.n_per_request, e.concurrency, e.max_retries), (4, 8, 5));
        assert!(e.validate().is_ok());
        let no_url = EngineSettings {
            url: None,
            ..e.clone()
        };
        assert!(no_url.validate().unwrap_err().contains("URL"));
        let bad_template = EngineSettings {
            template: Some("mistral".into()),
            ..e
        };
        assert!(bad_template.validate().unwrap_err().contains("template"));
        assert!(toml::from_str::<EngineSettings>("kind = \"grpc\"").is_err());
        assert!(toml::from_str::<EngineSettings>("urll = \"x\"").is_err());
        let j: JudgeSettings = toml::from_str("enabled = true\nvotes = 5").unwrap();
        assert!(j.enabled && j.votes == 5 && j.validate().is_ok());
        let bad = JudgeSettings {
            threshold: 0.0,
            ..j
        };
        assert!(bad.validate().unwrap_err().contains("threshold"));
    }
}
