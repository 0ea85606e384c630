//! The OpenAI completions protocol as vLLM, SGLang and `anchorscope serve` speak it: request
//! bodies, and replies checked field by field (a reply that lacks a field is malformed, and the
//! message says which).

use serde_json::{json, Value};

use anchorscope_core::trace::{FinishReason, SamplerSettings};

/// One continuation of a completions reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Which of the request's n continuations (0-based).
    pub index: usize,
    pub text: String,
    pub finish: FinishReason,
    /// vLLM's `stop_reason`: the stop string matched, when one was.
    pub stop_string: Option<String>,
    /// `usage.completion_tokens` inside the choice, for servers that count per choice.
    pub completion_tokens: Option<u64>,
}

/// A completions reply: exactly n choices, indices 0..n.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub choices: Vec<Choice>,
    /// The reply's `usage.completion_tokens`, when the server reports it. Whether it counts
    /// one choice or all of them depends on the server: [`super::usage`] decides.
    pub completion_tokens: Option<u64>,
}

/// The seed as the wire's signed 64-bit integer (vLLM and OpenAI read `seed` as an int64 and
/// reject larger values): the same 64 bits, so `anchorscope serve` seeds its sampler exactly as
/// the local engine would. The rollout records the unsigned seed run_job gave.
pub fn wire_seed(seed: u64) -> i64 {
    seed as i64
}

/// The body of `POST /v1/completions`: continue `prompt` n times.
pub fn completion_body(
    model: &str,
    prompt: &str,
    n: usize,
    seed: u64,
    settings: &SamplerSettings,
    stop: &[&str],
) -> String {
    let mut body = json!({
        "model": model,
        "prompt": prompt,
        "n": n,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": wire_seed(seed),
        "stream": false,
    });
    if !stop.is_empty() {
        body["stop"] = json!(stop);
    }
    body.to_string()
}

/// The body of `POST /v1/chat/completions`.
pub fn chat_body(
    model: &str,
    messages: &[(&str, &str)],
    n: usize,
    seed: u64,
    max_tokens: u32,
    temperature: f64,
) -> String {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "n": n,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": wire_seed(seed),
        "stream": false,
    })
    .to_string()
}

fn finish_of(v: Option<&Value>) -> FinishReason {
    match v.and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        _ => FinishReason::Unknown,
    }
}

fn choices_of(body: &str, n: usize) -> Result<(Vec<Value>, Option<u64>), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` array")?
        .clone();
    if choices.len() != n {
        return Err(format!("{} choices for n = {n}", choices.len()));
    }
    let tokens = v
        .get("usage")
        .and_then(|u| u.get("completion_tokens"))
        .and_then(Value::as_u64);
    Ok((choices, tokens))
}

/// Place each choice by its `index` (0..n, each once; absent = its position in the array).
fn by_index<T>(items: Vec<(Option<u64>, T)>, n: usize) -> Result<Vec<(usize, T)>, String> {
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for (k, (index, item)) in items.into_iter().enumerate() {
        let index = index.map_or(k, |i| i as usize);
        if index >= n || seen[index] {
            return Err(format!("choice index {index} is out of range or repeated"));
        }
        seen[index] = true;
        out.push((index, item));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// Parse a completions reply for a request of `n`.
pub fn parse_completion(body: &str, n: usize) -> Result<Completion, String> {
    let (choices, completion_tokens) = choices_of(body, n)?;
    let mut items = Vec::with_capacity(n);
    for (k, c) in choices.iter().enumerate() {
        let text = c
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("choice {k} has no string `text`"))?;
        let stop_string = c
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        let tokens = c
            .get("usage")
            .and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_u64);
        items.push((
            c.get("index").and_then(Value::as_u64),
            (
                text.to_string(),
                finish_of(c.get("finish_reason")),
                stop_string,
                tokens,
            ),
        ));
    }
    let choices = by_index(items, n)?
        .into_iter()
        .map(
            |(index, (text, finish, stop_string, completion_tokens))| Choice {
                index,
                text,
                finish,
                stop_string,
                completion_tokens,
            },
        )
        .collect();
    Ok(Completion {
        choices,
        completion_tokens,
    })
}

/// Parse a chat completions reply: the n message contents in index order.
pub fn parse_chat(body: &str, n: usize) -> Result<Vec<String>, String> {
    let (choices, _) = choices_of(body, n)?;
    let mut items = Vec::with_capacity(n);
    for (k, c) in choices.iter().enumerate() {
        let content = c
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("choice {k} has no string `message.content`"))?;
        items.push((c.get("index").and_then(Value::as_u64), content.to_string()));
    }
    Ok(by_index(items, n)?.into_iter().map(|(_, c)| c).collect())
}

/// The model ids of a `GET /v1/models` reply.
pub fn parse_models(body: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no `data` array")?;
    data.iter()
        .enumerate()
        .map(|(k, m)| {
            m.get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("model {k} has no string `id`"))
        })
        .collect()
}

/// The server's explanation in an error body: `{"error":{"message"}}` (OpenAI, vLLM),
/// `{"message"}` or `{"detail"}` (FastAPI), else the body itself, shortened.
pub fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let candidates = [
            v.get("error").and_then(|e| e.get("message")),
            v.get("error"),
            v.get("message"),
            v.get("detail"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str() {
                return s.to_string();
            }
        }
    }
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".into();
    }
    match body.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}

/// Whether a 400's message is about `n` (servers that only sample one continuation per request).
pub fn rejects_n(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let re = regex::Regex::new(r"(^|[^a-z0-9_])n([^a-z0-9_]|$)").expect("constant regex");
    re.is_match(&lower) || lower.contains("best_of") || lower.contains("multiple choices")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_request_carries_every_setting() {
        let s = SamplerSettings {
            max_new_tokens: 64,
            temperature: 0.6,
            top_p: 0.95,
        };
        let body = completion_body("m", "<p>x", 4, u64::MAX, &s, &["</OUTPUT>"]);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["model"], "m");
        assert_eq!(v["prompt"], "<p>x");
        assert_eq!(v["n"], 4);
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["temperature"], 0.6);
        assert_eq!(v["top_p"], 0.95);
        assert_eq!(v["seed"], -1);
        assert_eq!(v["stop"], json!(["</OUTPUT>"]));
        assert_eq!(v["stream"], false);
        let none: Value = serde_json::from_str(&completion_body("m", "p", 1, 7, &s, &[])).unwrap();
        assert!(none.get("stop").is_none());
        assert_eq!(none["seed"], 7);
    }

    #[test]
    fn completion_reply_is_parsed_in_index_order() {
        let body = r#"{"id":"c","object":"text_completion","choices":[
            {"index":1,"text":" b","finish_reason":"length"},
            {"index":0,"text":" a","finish_reason":"stop","stop_reason":"</OUTPUT>"}],
            "usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#;
        let c = parse_completion(body, 2).unwrap();
        assert_eq!(c.completion_tokens, Some(9));
        assert_eq!(c.choices[0].text, " a");
        assert_eq!(c.choices[0].finish, FinishReason::Stop);
        assert_eq!(c.choices[0].stop_string.as_deref(), Some("</OUTPUT>"));
        assert_eq!(c.choices[1].finish, FinishReason::Length);
        assert_eq!(c.choices[1].stop_string, None);
        assert_eq!(c.choices[0].completion_tokens, None);
        let per_choice = r#"{"choices":[{"index":0,"text":"a","usage":{"completion_tokens":4}}],
            "usage":{"completion_tokens":4}}"#;
        assert_eq!(
            parse_completion(per_choice, 1).unwrap().choices[0].completion_tokens,
            Some(4)
        );
    }

    #[test]
    fn malformed_replies_say_what_is_wrong() {
        assert!(parse_completion("{\"choices\":[", 1).is_err());
        assert_eq!(parse_completion("{}", 1).unwrap_err(), "no `choices` array");
        let few = r#"{"choices":[{"index":0,"text":"a"}]}"#;
        assert!(parse_completion(few, 2).unwrap_err().contains("1 choices"));
        let dup = r#"{"choices":[{"index":0,"text":"a"},{"index":0,"text":"b"}]}"#;
        assert!(parse_completion(dup, 2).unwrap_err().contains("repeated"));
        let no_text = r#"{"choices":[{"index":0,"text":3}]}"#;
        assert!(parse_completion(no_text, 1).unwrap_err().contains("text"));
        // finish_reason null / unknown is not malformed: recorded as unknown.
        let odd = r#"{"choices":[{"index":0,"text":"a","finish_reason":null}]}"#;
        assert_eq!(
            parse_completion(odd, 1).unwrap().choices[0].finish,
            FinishReason::Unknown
        );
    }

    #[test]
    fn chat_and_models_replies() {
        let chat = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"{}"}}]}"#;
        assert_eq!(parse_chat(chat, 1).unwrap(), vec!["{}".to_string()]);
        assert!(parse_chat(r#"{"choices":[{"index":0,"message":{}}]}"#, 1).is_err());
        let models = r#"{"object":"list","data":[{"id":"a","object":"model"},{"id":"b"}]}"#;
        assert_eq!(parse_models(models).unwrap(), vec!["a", "b"]);
        assert!(parse_models("{\"data\":[{}]}").is_err());
        let body = chat_body("m", &[("user", "hi")], 3, 1, 10, 0.5);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(v["n"], 3);
    }

    #[test]
    fn server_messages_and_n_rejections() {
        assert_eq!(
            server_message(r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#),
            "bad"
        );
        assert_eq!(server_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(server_message(""), "(empty body)");
        assert_eq!(server_message(&"x".repeat(1000)).chars().count(), 301);
        assert!(rejects_n("n must be 1 when using greedy sampling"));
        assert!(rejects_n("Invalid value for 'n': only n=1 is supported"));
        assert!(rejects_n("best_of must be 1"));
        assert!(!rejects_n("maximum context length is 4096 tokens"));
        assert!(!rejects_n("The model `nano` does not exist"));
    }
}
