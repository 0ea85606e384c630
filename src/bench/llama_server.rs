//! llama.cpp's `llama-server` as the peer of the sweep job: its command line, the request for
//! one position (llama.cpp's own `/completion` endpoint: the prompt as our token ids, `n_cmpl`
//! rows sharing it) and its reply.
//!
//! Tokens are counted per choice from the reply's `tokens_predicted` (each choice is one result
//! object with its own count). The OpenAI-style `/v1/completions` reply is not used for
//! counting: there llama-server merges the n results into one object and keeps only the first
//! one's `usage`, so `usage.completion_tokens` is not the total.

use serde_json::{json, Value};

/// What the server needs to run a whole sweep at once: one slot per row of every position,
/// and a unified KV cache big enough for each position's prompt (shared by its rows) plus
/// every row's new tokens.
pub fn args(
    model: &str,
    port: u16,
    prefixes: &[usize],
    rows: usize,
    new_tokens: usize,
    threads: usize,
) -> Vec<String> {
    let slots = (prefixes.len() * rows).max(1);
    let context = context_cells(prefixes, rows, new_tokens);
    [
        "-m",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "-np",
        &slots.to_string(),
        "-kvu",
        "-c",
        &context.to_string(),
        "-t",
        &threads.to_string(),
        "-tb",
        &threads.to_string(),
        "--no-webui",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// KV cells for the sweep: each prompt once, each row's new tokens, and room for one more
/// copy of the longest prompt (a slot may hold its prompt apart until it is shared).
pub fn context_cells(prefixes: &[usize], rows: usize, new_tokens: usize) -> usize {
    let prompts: usize = prefixes.iter().sum();
    let longest = prefixes.iter().copied().max().unwrap_or(0);
    prompts + longest + prefixes.len() * rows * new_tokens + 256
}

/// The body of `POST /completion`: `rows` continuations of the token ids `prompt`, exactly
/// `new_tokens` each (`ignore_eos`, as our rows run to the cap), temperature and top-p as ours
/// with llama.cpp's other samplers off (top-k 40 and min-p 0.05 by default).
pub fn completion_body(
    prompt: &[u32],
    rows: usize,
    new_tokens: usize,
    temperature: f64,
    top_p: f64,
    seed: u64,
) -> String {
    json!({
        "prompt": prompt,
        "n_cmpl": rows,
        "n_predict": new_tokens,
        "ignore_eos": true,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": 0,
        "min_p": 0.0,
        "seed": seed,
        "stream": false,
    })
    .to_string()
}

/// One choice of a `/completion` reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerChoice {
    pub tokens: u64,
    /// `limit` (ran to n_predict), `eos`, `word`, …
    pub stop_type: String,
    /// The server's own generation time for this choice (`timings.predicted_ms`), seconds.
    pub predicted_s: Option<f64>,
}

/// Parse a `/completion` reply for `rows` choices: an array of result objects, or one object
/// when `rows` is 1.
pub fn parse_reply(body: &str, rows: usize) -> Result<Vec<ServerChoice>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(message) = v.get("error").and_then(|e| e.get("message")) {
        return Err(format!("server error: {message}"));
    }
    let items = match v {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("neither an object nor an array".into()),
    };
    if items.len() != rows {
        return Err(format!("{} results for n_cmpl = {rows}", items.len()));
    }
    items
        .iter()
        .map(|item| {
            let tokens = item
                .get("tokens_predicted")
                .and_then(Value::as_u64)
                .ok_or("a result without `tokens_predicted`")?;
            Ok(ServerChoice {
                tokens,
                stop_type: item
                    .get("stop_type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                predicted_s: item
                    .get("timings")
                    .and_then(|t| t.get("predicted_ms"))
                    .and_then(Value::as_f64)
                    .map(|ms| ms / 1000.0),
            })
        })
        .collect()
}

/// Our finish names for llama-server's stop types (`limit` is our `length`).
pub fn finish_name(stop_type: &str) -> &str {
    match stop_type {
        "limit" => "length",
        "eos" | "word" => "stop",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a real llama-server reply to n_cmpl = 2 (one object per choice).
    const REPLY: &str = r#"[
      {"index": 0, "content": " The", "tokens": [], "id_slot": 3, "stop": true,
       "tokens_predicted": 64, "tokens_evaluated": 335, "stop_type": "limit",
       "timings": {"prompt_n": 335, "prompt_ms": 410.2, "predicted_n": 64, "predicted_ms": 2875.5}},
      {"index": 1, "content": " So", "tokens": [], "id_slot": 4, "stop": true,
       "tokens_predicted": 12, "tokens_evaluated": 335, "stop_type": "eos",
       "timings": {"prompt_n": 0, "prompt_ms": 0.0, "predicted_n": 12, "predicted_ms": 600.0}}
    ]"#;

    #[test]
    fn counts_tokens_per_choice() {
        let choices = parse_reply(REPLY, 2).unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0].tokens, 64);
        assert_eq!(choices[1].tokens, 12);
        assert_eq!(finish_name(&choices[0].stop_type), "length");
        assert_eq!(finish_name(&choices[1].stop_type), "stop");
        assert_eq!(choices[1].predicted_s, Some(0.6));
    }

    #[test]
    fn one_row_is_one_object() {
        let one = r#"{"tokens_predicted": 64, "stop_type": "limit"}"#;
        let choices = parse_reply(one, 1).unwrap();
        assert_eq!(choices[0].tokens, 64);
        assert_eq!(choices[0].predicted_s, None);
    }

    #[test]
    fn wrong_counts_and_errors_are_refused() {
        assert!(parse_reply(REPLY, 3).unwrap_err().contains("2 results"));
        let err = parse_reply(r#"{"error": {"code": 400, "message": "context full"}}"#, 1);
        assert!(err.unwrap_err().contains("context full"));
        assert!(parse_reply(r#"[{"content": "x"}]"#, 1).is_err());
        assert!(parse_reply("nope", 1).is_err());
    }

    #[test]
    fn the_body_turns_llama_cpp_samplers_off_and_runs_to_the_cap() {
        let body: Value =
            serde_json::from_str(&completion_body(&[1, 2, 3], 16, 64, 0.6, 0.95, 7)).unwrap();
        assert_eq!(body["prompt"], json!([1, 2, 3]));
        assert_eq!(body["n_cmpl"], 16);
        assert_eq!(body["n_predict"], 64);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["top_k"], 0);
        assert_eq!(body["min_p"], 0.0);
        assert_eq!(body["top_p"], 0.95);
    }

    #[test]
    fn the_server_gets_a_slot_per_row_and_room_for_the_sweep() {
        let a = args("m.gguf", 8080, &[300, 400], 16, 64, 2);
        let at = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(at("-np"), "32");
        assert_eq!(at("--port"), "8080");
        assert_eq!(at("-t"), "2");
        assert!(a.contains(&"-kvu".to_string()));
        assert_eq!(context_cells(&[300, 400], 16, 64), 700 + 400 + 2048 + 256);
    }
}
