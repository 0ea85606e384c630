//! A fake OpenAI-compatible server on loopback, for the client's handling of reply shapes a
//! real server of ours never sends (summed usage that is not per choice, duplicated choices):
//! `GET /v1/models` lists one model, `POST /v1/completions` answers with a function of the
//! request body. One request per connection; every completions request is kept for the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The model the fake serves.
pub const FAKE_MODEL: &str = "fake-model";

pub struct FakeServer {
    pub port: u16,
    /// The bodies of the completions requests so far, in arrival order.
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeServer {
    /// Serve until the test process ends; `answer` turns a completions request into a reply.
    pub fn start(answer: impl Fn(&Value) -> Value + Send + 'static) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Ok(read_half) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(read_half);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let reply = if request_line.starts_with("GET /v1/models") {
                    json!({"object": "list", "data": [{"id": FAKE_MODEL, "object": "model"}]})
                } else {
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    log.lock().unwrap().push(request.clone());
                    answer(&request)
                };
                let reply = reply.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        FakeServer { port, requests }
    }

    /// The `n` of every completions request so far.
    pub fn ns(&self) -> Vec<u64> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r["n"].as_u64().unwrap_or(1))
            .collect()
    }
}

/// A completions reply with these choice texts and `usage.completion_tokens`.
pub fn reply(texts: &[String], completion_tokens: u64) -> Value {
    let choices: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"index": i, "text": t, "logprobs": null, "finish_reason": "length"}))
        .collect();
    json!({
        "id": "cmpl-fake",
        "object": "text_completion",
        "model": FAKE_MODEL,
        "choices": choices,
        "usage": {"prompt_tokens": 50, "completion_tokens": completion_tokens,
                  "total_tokens": 50 + completion_tokens},
    })
}
