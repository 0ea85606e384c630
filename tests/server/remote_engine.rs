//! `--engine openai` against a real `anchorscope serve` on loopback: rollouts stored with
//! labels, resumable top-ups, a 400 as a clear error, the API key never written anywhere, the
//! model check, and cancellation through the worker.

use crate::remote_support;

use remote_support::*;

#[test]
fn analyze_through_a_server_stores_n_rollouts_per_position_with_labels() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0..=2", "-n", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rollouts = stored(&trace);
    assert_eq!(
        per_position(&rollouts).into_iter().collect::<Vec<_>>(),
        vec![(0, 3), (1, 3), (2, 3)]
    );
    assert_unique_seeds(&rollouts);
    for r in &rollouts {
        assert!(r.labels.contains_key("compliance"), "{r:?}");
        assert!(r.labels.contains_key("alignment_faking"), "{r:?}");
        assert!(r.tokens <= 12, "{r:?}");
    }
    // The run manifest says which engine and server produced them.
    let manifest = std::fs::read_to_string(trace.with_extension("rollouts.manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["engine"], "openai");
    assert_eq!(m["server"], format!("http://127.0.0.1:{}", server.port));
    assert!(m["model"].as_str().unwrap().contains(SERVED), "{manifest}");
}

#[test]
fn a_rerun_adds_nothing_and_a_larger_n_tops_up() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "1", "-n", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stored(&trace);
    assert_eq!(first.len(), 2);
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "1", "-n", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 new rollouts"), "{}", stderr(&o));
    assert_eq!(stored(&trace), first, "a rerun changes nothing");
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "1", "-n", "5"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stored(&trace);
    assert_eq!(all.len(), 5);
    assert_eq!(
        &all[..2],
        &first[..],
        "stored rollouts are kept as they were"
    );
    assert_unique_seeds(&all);
}

#[test]
fn a_400_is_a_clear_error_quoting_the_server() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    // 600 new tokens do not fit the tiny model's 512-token context: the server answers 400.
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0", "-n", "2", "--max-new-tokens", "600"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("HTTP 400")
            && err.contains("context")
            && err.contains(&format!("http://127.0.0.1:{}/v1/completions", server.port)),
        "{err}"
    );
    assert!(stored(&trace).is_empty());
}

#[test]
fn an_unserved_model_is_named_with_the_served_ones() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let args = analyze_args(&trace, server.port, &["-n", "1"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let at = args.iter().position(|a| *a == SERVED).unwrap();
    args[at] = "deepseek-ai/DeepSeek-V3.1";
    let o = command(dir.path(), &args).output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("does not serve model \"deepseek-ai/DeepSeek-V3.1\"")
            && err.contains("it serves: tiny"),
        "{err}"
    );
}

#[test]
fn the_api_key_is_sent_but_never_written_or_printed() {
    const KEY: &str = "sk-remote-test-4f9a2c";
    let server = Server::start(&[], &[("ANCHORSCOPE_SERVE_API_KEY", KEY)]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(dir.path(), "[engine]\napi_key_env = \"REMOTE_TEST_KEY\"\n");
    // Without the variable: an error naming the variable, no request sent.
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0", "-n", "1"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("REMOTE_TEST_KEY"), "{}", stderr(&o));
    // A wrong key: the server's 401, and neither key in the output.
    let args = analyze_args(&trace, server.port, &["--positions", "0", "-n", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = command(dir.path(), &args)
        .env("REMOTE_TEST_KEY", "sk-wrong-key-77")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("sk-wrong-key-77"), "{err}");
    // The right key works; it appears in no file and no output.
    let o = command(dir.path(), &args)
        .env("REMOTE_TEST_KEY", KEY)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stored(&trace).len(), 1);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!printed.contains(KEY));
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn collect_through_a_server_writes_a_trace_naming_the_server() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("system.txt"), "Be brief.").unwrap();
    std::fs::write(dir.path().join("q.txt"), "Say hi.\n").unwrap();
    let out = dir.path().join("collected");
    let url = format!("http://127.0.0.1:{}", server.port);
    let o = command(
        dir.path(),
        &[
            "collect",
            "--prompt-file",
            dir.path().join("system.txt").to_str().unwrap(),
            "--queries",
            dir.path().join("q.txt").to_str().unwrap(),
            "--engine",
            "openai",
            "--url",
            &url,
            "--model",
            SERVED,
            "--max-new-tokens",
            "16",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let trace_path = out.join("q-000-free.json");
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let response = trace["response"].as_str().unwrap();
    assert!(response.starts_with("<SCRATCHPAD_REASONING>"), "{response}");
    let model = trace["manifest"]["model"].as_str().unwrap();
    assert_eq!(model, format!("{SERVED} (openai at {url})"));
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.starts_with("POST /v1/completions 200")),
        "{:?}",
        server.log()
    );
}

#[test]
fn one_continuation_per_request_reproduces_the_local_engine() {
    // The server runs the same tiny model; with n = 1 each request's seed is the rollout's, so
    // local and remote rollouts must agree text for text and label for label.
    let server = Server::start(&[], &[]);
    let local_dir = tempfile::tempdir().unwrap();
    let local_trace = write_trace(local_dir.path());
    let model = serve_support::tiny_model(local_dir.path());
    let o = command(
        local_dir.path(),
        &[
            "analyze",
            local_trace.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--device",
            "cpu",
            "--no-embedder",
            "--max-new-tokens",
            "12",
            "--positions",
            "0..=3",
            "-n",
            "2",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let remote_dir = tempfile::tempdir().unwrap();
    let remote_trace = write_trace(remote_dir.path());
    write_config(remote_dir.path(), "[engine]\nn_per_request = 1\n");
    let o = analyze(
        remote_dir.path(),
        &remote_trace,
        server.port,
        &["--positions", "0..=3", "-n", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let key = |r: &anchorscope::trace::Rollout| (r.position, r.seed);
    let mut local = stored(&local_trace);
    let mut remote = stored(&remote_trace);
    local.sort_by_key(key);
    remote.sort_by_key(key);
    assert_eq!(local.len(), 8);
    for (l, r) in local.iter().zip(&remote) {
        assert_eq!((l.position, l.seed), (r.position, r.seed));
        assert_eq!(l.text, r.text, "position {} seed {}", l.position, l.seed);
        assert_eq!(l.tokens, r.tokens);
        assert_eq!(l.labels, r.labels);
        assert_eq!(l.finish, r.finish);
    }
    let texts: std::collections::HashSet<&str> = local.iter().map(|r| r.text.as_str()).collect();
    assert!(texts.len() > 1, "the seeds drew different texts: {texts:?}");
}

#[test]
fn the_commands_that_sample_offer_engine_and_url() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["open", "--help"],
        vec!["analyze", "--help"],
        vec!["collect", "--help"],
    ] {
        let o = command(dir.path(), &args).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{args:?}");
        for flag in ["--engine <KIND>", "--url <URL>", "openai"] {
            assert!(out.contains(flag), "{args:?} help lacks {flag}:\n{out}");
        }
    }
    // --url without the openai engine is a mistake, said before anything runs.
    let trace = write_trace(dir.path());
    let o = command(
        dir.path(),
        &[
            "analyze",
            trace.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:9",
        ],
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--engine openai"), "{}", stderr(&o));
}

#[test]
fn intervene_samples_through_the_remote_engine() {
    // The edit changes only the text sent; the derived trace's rollouts come from the server
    // like any others.
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let mut args = analyze_args(&trace, server.port, &["--delete", "1", "-n", "2", "--json"]);
    args[0] = "intervene".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = command(dir.path(), &args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["derived"], "tiny-remote~del1", "{v}");
    let derived = dir.path().join("tiny-remote~del1.json");
    let after = stored(&derived);
    assert_eq!(per_position(&after), [(1, 2)].into_iter().collect());
    assert_eq!(
        per_position(&stored(&trace)),
        [(2, 2)].into_iter().collect()
    );
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.starts_with("POST /v1/completions 200")),
        "{:?}",
        server.log()
    );
}
