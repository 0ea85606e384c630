//! `anchorscope serve` through the real binary on loopback with a tiny random-weight model:
//! completions (n, seeds, stop strings, max_tokens), chat, /v1/models, errors, API key,
//! concurrent clients. The texts are whatever the tiny model generates; the tests check the
//! server's contract, not the words.

mod serve_support;

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
