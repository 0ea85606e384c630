//! The OpenAI wire format of `serve`: request bodies (parsed and validated into [`GenParams`]),
//! response bodies, and errors shaped like OpenAI's `{"error": {...}}`.
//!
//! This is the contract with the `--engine openai` client: field names, defaults and the error
//! shape follow OpenAI's completions API (as vLLM serves it). Unknown request fields are
//! ignored, as vLLM does, except the few whose non-default value we cannot honour (`echo`,
//! `stream`, `logprobs`, `best_of`), which are refused rather than silently dropped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::trace::Message;

/// Most choices one request may ask for (they decode as one batch).
pub const MAX_N: usize = 128;
/// Most stop strings per request (OpenAI allows 4; a few more cost nothing).
pub const MAX_STOP: usize = 16;
/// OpenAI's default `max_tokens` for completions.
pub const DEFAULT_MAX_TOKENS: usize = 16;

/// An error as OpenAI reports it, with the HTTP status it goes out with.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `server_error`, …
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// A 400 about one request field.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param),
            ..ApiError::new(400, "invalid_request_error", message)
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn server(message: impl Into<String>) -> Self {
        ApiError::new(500, "server_error", message)
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
        .to_string()
    }
}

/// The prompt as sent: a string, a list of one string, or a list of token ids.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    /// A batch of token lists: parsed only to refuse it with a clear message.
    TokenBatch(Vec<Vec<u32>>),
}

/// What the engine is asked to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// `stop` as sent: one string or a list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

/// The sampling fields shared by both endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    /// The chat API's newer name for `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<StopField>,
    pub echo: Option<bool>,
    pub stream: Option<bool>,
    pub logprobs: Option<Value>,
    pub best_of: Option<i64>,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Option<PromptField>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// One chat message: content as a string or as a list of text parts.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<ChatContent>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ChatContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// A validated generation request (both endpoints end here).
#[derive(Clone, Debug, PartialEq)]
pub struct GenParams {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub n: usize,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

/// Parse a JSON body; a syntax or type error says where (serde_json's line and column).
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            400,
            "invalid_request_error",
            "empty request body: expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's message ends with "at line L column C".
        ApiError::new(
            400,
            "invalid_request_error",
            format!("invalid JSON body: {e}"),
        )
    })
}

impl CompletionRequest {
    /// The validated parameters; `model_name` is the served name (any other `model` is a 404).
    pub fn validate(self, model_name: &str) -> Result<GenParams, ApiError> {
        let prompt = match self.prompt {
            None => {
                return Err(ApiError::invalid(
                    "prompt",
                    "missing required field `prompt`",
                ))
            }
            Some(PromptField::Text(s)) => Prompt::Text(s),
            Some(PromptField::Tokens(t)) => Prompt::Tokens(t),
            Some(PromptField::Texts(mut v)) if v.len() == 1 => Prompt::Text(v.remove(0)),
            Some(PromptField::Texts(v)) => {
                return Err(ApiError::invalid(
                    "prompt",
                    format!(
                        "`prompt` is a list of {} strings: only one prompt per request is \
                         supported (use `n` for several choices)",
                        v.len()
                    ),
                ))
            }
            Some(PromptField::TokenBatch(v)) => {
                return Err(ApiError::invalid(
                    "prompt",
                    format!(
                        "`prompt` is a list of {} token lists: only one prompt per request is \
                         supported",
                        v.len()
                    ),
                ))
            }
        };
        let empty = match &prompt {
            Prompt::Text(s) => s.is_empty(),
            Prompt::Tokens(t) => t.is_empty(),
        };
        if empty {
            return Err(ApiError::invalid("prompt", "`prompt` is empty"));
        }
        self.sampling
            .validate(prompt, model_name, DEFAULT_MAX_TOKENS)
    }
}

impl ChatRequest {
    /// The messages (for the chat template) and the validated sampling parameters; the prompt
    /// is left empty for the caller to fill with the rendered conversation.
    pub fn validate(self, model_name: &str) -> Result<(Vec<Message>, GenParams), ApiError> {
        let Some(raw) = self.messages else {
            return Err(ApiError::invalid(
                "messages",
                "missing required field `messages`",
            ));
        };
        if raw.is_empty() {
            return Err(ApiError::invalid("messages", "`messages` is empty"));
        }
        let mut messages = Vec::with_capacity(raw.len());
        for (i, m) in raw.into_iter().enumerate() {
            let content = match m.content {
                None => String::new(),
                Some(ChatContent::Text(s)) => s,
                Some(ChatContent::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::invalid(
                                "messages",
                                format!(
                                    "messages[{i}]: content part of type `{}` is not supported \
                                     (text only)",
                                    p.kind
                                ),
                            ));
                        }
                        text.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    text
                }
            };
            messages.push(Message::new(m.role, content));
        }
        // Chat has no max_tokens default in OpenAI's API (up to the context); a bounded default
        // keeps a forgotten field from tying up the engine.
        let params = self
            .sampling
            .validate(Prompt::Text(String::new()), model_name, 512)?;
        Ok((messages, params))
    }
}

impl SamplingFields {
    fn validate(
        self,
        prompt: Prompt,
        model_name: &str,
        default_max_tokens: usize,
    ) -> Result<GenParams, ApiError> {
        if let Some(m) = &self.model {
            if m != model_name {
                return Err(ApiError::new(
                    404,
                    "not_found_error",
                    format!("the model `{m}` does not exist (this server serves `{model_name}`)"),
                )
                .with_code("model_not_found"));
            }
        }
        if self.echo == Some(true) {
            return Err(ApiError::invalid("echo", "`echo: true` is not supported"));
        }
        if self.stream == Some(true) {
            return Err(ApiError::invalid(
                "stream",
                "`stream: true` is not supported: ask without streaming",
            ));
        }
        if self.logprobs.as_ref().is_some_and(|v| !is_off(v)) {
            return Err(ApiError::invalid("logprobs", "`logprobs` is not supported"));
        }
        let n = match self.n {
            None => 1,
            Some(n) if (1..=MAX_N as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::invalid(
                    "n",
                    format!("`n` is {n}: must be between 1 and {MAX_N}"),
                ))
            }
        };
        if let Some(b) = self.best_of {
            if b != n as i64 {
                return Err(ApiError::invalid(
                    "best_of",
                    format!("`best_of` {b} is not supported (only equal to `n`)"),
                ));
            }
        }
        let max_tokens = match self.max_tokens.or(self.max_completion_tokens) {
            None => default_max_tokens,
            Some(m) if m >= 1 && m <= u32::MAX as i64 => m as usize,
            Some(m) => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    format!("`max_tokens` is {m}: must be at least 1"),
                ))
            }
        };
        let temperature = match self.temperature {
            None => 1.0,
            Some(t) if t.is_finite() && t >= 0.0 => t,
            Some(t) => {
                return Err(ApiError::invalid(
                    "temperature",
                    format!("`temperature` is {t}: must be a number ≥ 0 (0 = greedy)"),
                ))
            }
        };
        let top_p = match self.top_p {
            None => 1.0,
            Some(p) if p > 0.0 && p <= 1.0 => p,
            Some(p) => {
                return Err(ApiError::invalid(
                    "top_p",
                    format!("`top_p` is {p}: must be in (0, 1]"),
                ))
            }
        };
        // OpenAI's seed is a signed 64-bit integer; its bits are the sampler's seed.
        let seed = self.seed.map(|s| s as u64);
        let stop = match self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s],
            Some(StopField::Many(v)) => v,
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(
                "stop",
                format!("{} stop strings: at most {MAX_STOP}", stop.len()),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop", "a stop string is empty"));
        }
        Ok(GenParams {
            prompt,
            max_tokens,
            temperature,
            top_p,
            n,
            seed,
            stop,
        })
    }
}

/// `logprobs` that asks for nothing: null, false or 0.
fn is_off(v: &Value) -> bool {
    v.is_null() || v == &Value::Bool(false) || v.as_i64() == Some(0)
}

/// Why a choice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// An end-of-text token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub finish_reason: Finish,
    pub logprobs: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionResponse {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: Usage,
}

#[derive(Clone, Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub finish_reason: Finish,
    pub logprobs: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatResponse {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// `GET /v1/models`.
pub fn models_body(name: &str, created: u64, max_context: usize) -> String {
    serde_json::json!({
        "object": "list",
        "data": [{
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "anchorscope",
            "max_model_len": max_context,
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(json: &str) -> Result<GenParams, ApiError> {
        parse_body::<CompletionRequest>(json.as_bytes())?.validate("m")
    }

    #[test]
    fn defaults_and_prompt_forms() {
        let p = completion(r#"{"prompt": "hi"}"#).unwrap();
        assert_eq!(p.prompt, Prompt::Text("hi".into()));
        assert_eq!((p.n, p.max_tokens, p.seed), (1, DEFAULT_MAX_TOKENS, None));
        assert_eq!((p.temperature, p.top_p), (1.0, 1.0));
        let p = completion(r#"{"prompt": ["one"], "model": "m", "seed": -1}"#).unwrap();
        assert_eq!(p.prompt, Prompt::Text("one".into()));
        assert_eq!(p.seed, Some(u64::MAX));
        let p = completion(r#"{"prompt": [5, 6, 7], "stop": "x", "n": 3}"#).unwrap();
        assert_eq!(p.prompt, Prompt::Tokens(vec![5, 6, 7]));
        assert_eq!((p.stop, p.n), (vec!["x".to_string()], 3));
        let p = completion(r#"{"prompt": "a", "stop": ["x", "yz"], "echo": false}"#).unwrap();
        assert_eq!(p.stop, vec!["x".to_string(), "yz".to_string()]);
    }

    #[test]
    fn bad_json_says_where() {
        let e = completion("{\n  \"prompt\": \"hi\",,\n}").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("line 2 column"), "{}", e.message);
        let e = completion("").unwrap_err();
        assert!(e.message.contains("empty request body"), "{}", e.message);
        let e = completion(r#"{"prompt": "a", "n": "three"}"#).unwrap_err();
        assert!(e.message.contains("line 1 column"), "{}", e.message);
    }

    #[test]
    fn out_of_range_fields_name_the_field() {
        for (json, param) in [
            (r#"{"max_tokens": 4}"#, "prompt"),
            (r#"{"prompt": ""}"#, "prompt"),
            (r#"{"prompt": ["a", "b"]}"#, "prompt"),
            (r#"{"prompt": [[1], [2]]}"#, "prompt"),
            (r#"{"prompt": "a", "n": 0}"#, "n"),
            (r#"{"prompt": "a", "n": 129}"#, "n"),
            (r#"{"prompt": "a", "max_tokens": 0}"#, "max_tokens"),
            (r#"{"prompt": "a", "temperature": -1}"#, "temperature"),
            (r#"{"prompt": "a", "top_p": 0}"#, "top_p"),
            (r#"{"prompt": "a", "echo": true}"#, "echo"),
            (r#"{"prompt": "a", "stream": true}"#, "stream"),
            (r#"{"prompt": "a", "logprobs": 5}"#, "logprobs"),
            (r#"{"prompt": "a", "stop": [""]}"#, "stop"),
        ] {
            let e = completion(json).unwrap_err();
            assert_eq!((e.status, e.param), (400, Some(param)), "{json}: {e:?}");
            let body: Value = serde_json::from_str(&e.body()).unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["param"], param);
        }
    }

    #[test]
    fn another_model_name_is_a_404() {
        let e = completion(r#"{"prompt": "a", "model": "gpt-4"}"#).unwrap_err();
        assert_eq!((e.status, e.code), (404, Some("model_not_found")));
        assert!(e.message.contains("gpt-4"), "{}", e.message);
    }

    #[test]
    fn chat_messages_and_parts() {
        let req: ChatRequest = parse_body(
            br#"{"messages": [{"role": "system", "content": "s"},
                 {"role": "user", "content": [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b"}]}],
                 "max_completion_tokens": 7}"#,
        )
        .unwrap();
        let (messages, p) = req.validate("m").unwrap();
        assert_eq!(messages[1], Message::new("user", "ab"));
        assert_eq!(p.max_tokens, 7);
        let req: ChatRequest = parse_body(br#"{"messages": []}"#).unwrap();
        assert_eq!(req.validate("m").unwrap_err().param, Some("messages"));
        let req: ChatRequest =
            parse_body(br#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#)
                .unwrap();
        assert!(req.validate("m").unwrap_err().message.contains("image_url"));
    }

    #[test]
    fn response_shapes() {
        let r = CompletionResponse {
            id: "cmpl-1".into(),
            object: "text_completion",
            created: 1,
            model: "m".into(),
            choices: vec![CompletionChoice {
                index: 0,
                text: "t".into(),
                finish_reason: Finish::Length,
                logprobs: None,
            }],
            usage: Usage {
                prompt_tokens: 2,
                completion_tokens: 3,
                total_tokens: 5,
            },
        };
        let v: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert!(v["choices"][0]["logprobs"].is_null());
        assert_eq!(v["usage"]["total_tokens"], 5);
        let m: Value = serde_json::from_str(&models_body("m", 1, 512)).unwrap();
        assert_eq!(m["data"][0]["owned_by"], "anchorscope");
    }
}
