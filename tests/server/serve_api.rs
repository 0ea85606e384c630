//! `anchorscope serve` through the real binary on loopback with a tiny random-weight model:
//! completions (n, seeds, stop strings, max_tokens), chat, /v1/models, errors, API key,
//! concurrent clients. The texts are whatever the tiny model generates; the tests check the
//! server's contract, not the words.

use crate::serve_support;

use anchorscope::engine::chat::ChatTemplate;
use anchorscope::engine::tokenizer::TextTokenizer;
use anchorscope::trace::Message;
use serde_json::{json, Value};
use serve_support::{expect_error, keep_alive_exchange, request, Server};

fn completion(server: &Server, body: Value) -> serve_support::Reply {
    server.post("/v1/completions", &body.to_string())
}

#[test]
fn serve_completion_n3_with_usage_and_reproducible_seeds() {
    let server = Server::start(&[], &[]);
    let body = json!({"prompt": "hello world", "max_tokens": 8, "n": 3, "seed": 7,
                      "temperature": 1.0});
    let first = completion(&server, body.clone());
    assert_eq!(first.status, 200, "{}", first.body);
    let v = first.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let mut lengths = 0;
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert!(c["logprobs"].is_null());
        match c["finish_reason"].as_str() {
            Some("length") => lengths += 1,
            Some("stop") => {}
            other => panic!("finish_reason {other:?}"),
        }
    }
    let usage = &v["usage"];
    let (prompt, completion_tokens, total) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
    );
    // "hello world" is [hello][ w][o][r][l][d] in the tiny vocabulary.
    assert_eq!(prompt, 6);
    assert_eq!(total, prompt + completion_tokens);
    assert!(
        completion_tokens >= 8 * lengths && completion_tokens <= 24,
        "{usage}"
    );

    let again = completion(&server, body.clone());
    assert_eq!(
        again.texts(),
        first.texts(),
        "the same seed gives the same texts"
    );
    let mut other = body;
    other["seed"] = json!(8);
    let other = completion(&server, other);
    assert_ne!(
        other.texts(),
        first.texts(),
        "another seed gives other texts"
    );
    // The repeat reused the cached prompt (all but the last token).
    assert!(
        server.wait_for_log("reused=5").is_some(),
        "{:?}",
        server.log()
    );
}

#[test]
fn serve_token_id_prompt_and_one_string_list() {
    let server = Server::start(&[], &[]);
    let ids = completion(
        &server,
        json!({"prompt": [40, 41, 42, 43], "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(ids.status, 200, "{}", ids.body);
    assert_eq!(ids.json()["usage"]["prompt_tokens"], 4);
    let listed = completion(
        &server,
        json!({"prompt": ["hello"], "max_tokens": 2, "temperature": 0}),
    );
    let plain = completion(
        &server,
        json!({"prompt": "hello", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(listed.texts(), plain.texts());
    assert_eq!(listed.json()["usage"]["prompt_tokens"], 1);
}

#[test]
fn serve_stop_strings_end_a_choice_before_the_stop() {
    let server = Server::start(&[], &[]);
    // Find a seed whose continuation is long enough to hold a stop string in its middle.
    let (seed, text) = (0..20)
        .find_map(|seed| {
            let r = completion(
                &server,
                json!({"prompt": "hello", "max_tokens": 24, "seed": seed}),
            );
            let text = r.texts().remove(0);
            (text.chars().count() >= 8).then_some((seed, text))
        })
        .expect("some seed gives 8 characters");
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[4..6].iter().collect();
    let expected = &text[..text.find(&stop).unwrap()];
    let r = completion(
        &server,
        json!({"prompt": "hello", "max_tokens": 24, "seed": seed, "stop": [stop, "\u{1}never"]}),
    );
    let v = r.json();
    assert_eq!(v["choices"][0]["text"], expected, "full text {text:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // One string is accepted too.
    let r = completion(
        &server,
        json!({"prompt": "hello", "max_tokens": 24, "seed": seed, "stop": stop}),
    );
    assert_eq!(r.texts()[0], expected);
}

#[test]
fn serve_max_tokens_ends_with_length() {
    let server = Server::start(&[], &[]);
    let r = completion(
        &server,
        json!({"prompt": "hello", "max_tokens": 1, "n": 16, "seed": 3}),
    );
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    let lengths = choices
        .iter()
        .filter(|c| c["finish_reason"] == "length")
        .count();
    // A choice either stopped at once (end of text) or took exactly one token.
    assert!(lengths >= 1, "{}", r.body);
    assert_eq!(v["usage"]["completion_tokens"], lengths);
    for c in choices.iter().filter(|c| c["finish_reason"] == "length") {
        let text = c["text"].as_str().unwrap();
        assert!(!text.is_empty() && text.len() <= 5, "one token: {text:?}");
    }
}

#[test]
fn serve_models_and_model_names() {
    let server = Server::start(&["--served-model-name", "tiny-test"], &[]);
    let v = server.get("/v1/models").json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny-test");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "anchorscope");
    assert_eq!(server.get("/health").status, 200);
    let ok = completion(
        &server,
        json!({"model": "tiny-test", "prompt": "hello", "max_tokens": 1}),
    );
    assert_eq!(ok.json()["model"], "tiny-test");
    let wrong = completion(
        &server,
        json!({"model": "gpt-4", "prompt": "hello", "max_tokens": 1}),
    );
    let message = expect_error(&wrong, 404);
    assert!(
        message.contains("gpt-4") && message.contains("tiny-test"),
        "{message}"
    );
    assert_eq!(wrong.json()["error"]["code"], "model_not_found");
}

#[test]
fn serve_chat_completion_renders_the_template() {
    let server = Server::start(&[], &[]);
    let messages = [
        Message::new("system", "be brief"),
        Message::new("user", "hello"),
    ];
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": "hello"}],
                "max_tokens": 6, "seed": 1})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["message"]["content"].is_string());
    // The prompt counted is the ChatML rendering with the assistant opener.
    let tok = TextTokenizer::from_gguf(&server.model).unwrap();
    let rendered = ChatTemplate::ChatMl.render_prompt(&messages);
    assert!(rendered.ends_with("<|im_start|>assistant\n"));
    assert_eq!(
        v["usage"]["prompt_tokens"],
        tok.encode(&rendered).unwrap().len()
    );
}

#[test]
fn serve_bad_requests_get_openai_errors() {
    let server = Server::start(&[], &[]);
    let bad_json = server.post("/v1/completions", "{\n  \"prompt\": \"hi\",,\n}");
    let m = expect_error(&bad_json, 400);
    assert!(m.contains("line 2 column"), "{m}");

    let missing = completion(&server, json!({"max_tokens": 3}));
    let m = expect_error(&missing, 400);
    assert!(m.contains("prompt"), "{m}");
    assert_eq!(missing.json()["error"]["param"], "prompt");

    let n = completion(&server, json!({"prompt": "a", "n": 1000}));
    assert!(expect_error(&n, 400).contains("`n`"));
    let mt = completion(&server, json!({"prompt": "a", "max_tokens": 0}));
    assert!(expect_error(&mt, 400).contains("max_tokens"));

    // 500 prompt tokens + 100 new exceed the tiny model's context of 512.
    let long = completion(&server, json!({"prompt": vec![40; 500], "max_tokens": 100}));
    let m = expect_error(&long, 400);
    assert!(
        m.contains("500") && m.contains("100") && m.contains("512"),
        "{m}"
    );
    assert_eq!(long.json()["error"]["code"], "context_length_exceeded");
    let vocab = completion(&server, json!({"prompt": [100000], "max_tokens": 1}));
    assert!(expect_error(&vocab, 400).contains("vocabulary"));

    assert!(expect_error(&server.get("/v1/nothing"), 404).contains("/v1/nothing"));
    let wrong_method = server.get("/v1/completions");
    expect_error(&wrong_method, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    // Content-Length over the 4 MiB limit: refused before the body is read.
    let big = vec![b' '; (4 << 20) + 1];
    let too_big = request(server.port, "POST", "/v1/completions", &[], &big);
    assert!(expect_error(&too_big, 413).contains("exceeds"));

    // The server is still up and answering after all that.
    let ok = completion(&server, json!({"prompt": "hello", "max_tokens": 2}));
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn serve_api_key_is_required_when_set_and_never_logged() {
    let key = "sk-test-secret-123";
    let server = Server::start(&[], &[("ANCHORSCOPE_SERVE_API_KEY", key)]);
    let none = server.get("/v1/models");
    expect_error(&none, 401);
    let wrong = request(
        server.port,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sk-wrong")],
        b"",
    );
    expect_error(&wrong, 401);
    let bearer = format!("Bearer {key}");
    let right = request(
        server.port,
        "GET",
        "/v1/models",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(right.status, 200, "{}", right.body);
    let gen = request(
        server.port,
        "POST",
        "/v1/completions",
        &[("Authorization", &bearer)],
        json!({"prompt": "hello", "max_tokens": 2})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(gen.status, 200, "{}", gen.body);
    expect_error(&server.post("/v1/completions", r#"{"prompt": "a"}"#), 401);
    // Health checks need no key.
    assert_eq!(server.get("/health").status, 200);
    assert!(server.wait_for_log("/v1/completions 200").is_some());
    let log = server.log().join("\n");
    assert!(!log.contains(key) && !log.contains("sk-wrong"), "{log}");
}

#[test]
fn serve_two_clients_at_once_both_get_answers() {
    let server = Server::start(&[], &[]);
    let port = server.port;
    let clients: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"prompt": "hello", "max_tokens": 16, "n": 4, "seed": i});
                request(
                    port,
                    "POST",
                    "/v1/completions",
                    &[],
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.texts().len(), 4);
    }
}

#[test]
fn serve_help_lists_the_options_but_not_the_faults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model",
        "--device",
        "--host",
        "--port",
        "--served-model-name",
        "--max-queue",
        "ANCHORSCOPE_SERVE_API_KEY",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(!help.contains("--fault"), "{help}");
}

#[test]
fn serve_keep_alive_connection_answers_several_requests() {
    let server = Server::start(&[], &[]);
    let bodies: Vec<String> = (0..3)
        .map(|seed| json!({"prompt": "hello", "max_tokens": 3, "seed": seed}).to_string())
        .collect();
    let replies = keep_alive_exchange(server.port, &bodies);
    assert_eq!(replies.len(), 3);
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("connection"), None, "kept open");
        assert_eq!(r.texts().len(), 1);
    }
}

#[test]
fn serve_start_errors_name_the_model_or_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(["serve", "--device", "cpu", "--port", "0", "--model"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.gguf"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "no `listening on` line without a model"
    );

    // A port already taken is an error naming the address.
    let server = Server::start(&[], &[]);
    let port = server.port.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(["serve", "--device", "cpu", "--port", &port, "--model"])
        .arg(&server.model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Raw bytes on a fresh connection; the whole answer (the server closes after it).
fn raw_exchange(port: u16, raw: &[u8]) -> serve_support::Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("an answer, then close");
    serve_support::parse_reply(&answer)
}

#[test]
fn serve_survives_the_attacks_that_took_it_down() {
    // A few slots, so that leaking them would show within a handful of requests.
    let server = Server::start(&["--max-connections", "8"], &[]);
    let port = server.port;
    // A chunk size of 2^64 - 1 after a first chunk: once a panic that leaked a slot.
    for _ in 0..24 {
        let raw = format!(
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nffffffffffffffff\r\nxyz"
        );
        expect_error(&raw_exchange(port, raw.as_bytes()), 413);
    }
    // Content-Length twice, or with chunked: refused and closed.
    for framing in [
        "Content-Length: 2\r\nContent-Length: 2\r\n",
        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let raw =
            format!("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{framing}\r\n{{}}");
        let reply = raw_exchange(port, raw.as_bytes());
        expect_error(&reply, 400);
        assert_eq!(reply.header("connection"), Some("close"));
    }
    // Every slot is still there: health checks and a generation answer.
    for _ in 0..16 {
        assert_eq!(server.get("/health").status, 200);
    }
    let ok = completion(&server, json!({"prompt": "hello", "max_tokens": 2}));
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn serve_idle_sockets_cannot_hold_every_slot() {
    let server = Server::start(&["--max-connections", "8"], &[]);
    // Take every slot with sockets that never send a byte.
    let idle: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    // Under pressure idle connections are closed within about a second: a health check gets
    // through well before the 30 s idle timeout.
    // A refused attempt (503, or a reset while the server closes) is retried.
    let try_health = || -> Option<u16> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        let raw = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            server.port
        );
        s.write_all(raw.as_bytes()).ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).ok()?;
        Some(serve_support::parse_reply(&answer).status)
    };
    let started = std::time::Instant::now();
    let status = loop {
        let status = try_health();
        if status == Some(200) || started.elapsed() > std::time::Duration::from_secs(20) {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(
        status,
        Some(200),
        "health still refused after {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn serve_refuses_cross_site_browser_requests_without_a_key() {
    let server = Server::start(&[], &[]);
    let port = server.port;
    let body = json!({"prompt": "hello", "max_tokens": 2}).to_string();
    let evil = request(
        port,
        "POST",
        "/v1/completions",
        &[("Origin", "https://evil.example")],
        body.as_bytes(),
    );
    let message = expect_error(&evil, 403);
    assert!(message.contains("evil.example"), "{message}");
    // A DNS-rebinding page: its own name as Host, no Origin on a simple GET.
    let raw = "GET /v1/models HTTP/1.1\r\nHost: rebind.example:8000\r\nConnection: close\r\n\r\n";
    expect_error(&raw_exchange(port, raw.as_bytes()), 403);
    // A page on this machine, and clients that send no Origin, get through.
    let local = request(
        port,
        "POST",
        "/v1/completions",
        &[("Origin", "http://localhost:3000")],
        body.as_bytes(),
    );
    assert_eq!(local.status, 200, "{}", local.body);
    let raw =
        format!("GET /v1/models HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_exchange(port, raw.as_bytes()).status, 200);

    // With a key, the key decides: a browser that holds it may call from anywhere.
    let keyed = Server::start(&[], &[("ANCHORSCOPE_SERVE_API_KEY", "k1")]);
    let with_key = request(
        keyed.port,
        "POST",
        "/v1/completions",
        &[
            ("Origin", "https://app.example"),
            ("Authorization", "Bearer k1"),
        ],
        body.as_bytes(),
    );
    assert_eq!(with_key.status, 200, "{}", with_key.body);
}

#[test]
fn serve_checks_the_key_before_reading_the_body() {
    use std::io::{Read, Write};
    let server = Server::start(&[], &[("ANCHORSCOPE_SERVE_API_KEY", "k2")]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    // Announce a large body and send none of it: the answer comes from the head alone.
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 4000000\r\n\r\n",
        server.port
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let reply = serve_support::parse_reply(&answer);
    expect_error(&reply, 401);
    assert_eq!(reply.header("connection"), Some("close"));
}
