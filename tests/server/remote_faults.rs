//! Fault tests of `--engine openai` against a real `anchorscope serve` started with its hidden
//! fault flags: the server killed mid-job, slow answers, malformed JSON, 429/503.

use crate::remote_support;

use std::time::{Duration, Instant};

use remote_support::*;

/// One request at a time, one rollout per request, one quick retry: faults show up exactly.
const ONE_BY_ONE: &str =
    "[engine]\nconcurrency = 1\nn_per_request = 1\nmax_retries = 1\ntimeout_s = 30\n";

#[test]
fn a_server_killed_mid_job_leaves_whole_lines_and_a_rerun_completes_without_duplicates() {
    let mut server = Server::start(&["--fault-delay-ms", "150"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(dir.path(), ONE_BY_ONE);
    let child = spawn_analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0..=2", "-n", "4"],
    );
    let started = Instant::now();
    while stored(&trace).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no rollout stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("http://127.0.0.1:{}/v1/completions", server.port))
            && err.contains("connection failed"),
        "{err}"
    );
    // Later positions probe the server once instead of waiting out every retry again.
    assert!(err.contains("still unreachable"), "{err}");
    let partial = stored(&trace);
    assert!(
        partial.len() >= 2 && partial.len() < 12,
        "{}",
        partial.len()
    );

    let fresh = Server::start(&[], &[]);
    let o = analyze(
        dir.path(),
        &trace,
        fresh.port,
        &["--positions", "0..=2", "-n", "4"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stored(&trace);
    assert_eq!(all.len(), 12);
    assert_eq!(&all[..partial.len()], &partial[..]);
    assert_unique_seeds(&all);
}

#[test]
fn slow_answers_time_out_and_are_retried_then_succeed_with_a_longer_timeout() {
    let server = Server::start(&["--fault-delay-ms", "1500"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    // The model check itself is slow too: a 0.5 s timeout fails there, after one retry.
    write_config(dir.path(), "[engine]\nmax_retries = 1\ntimeout_s = 0.5\n");
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0", "-n", "1"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("timed out") && err.contains("2 attempts"),
        "{err}"
    );
    assert!(stored(&trace).is_empty());
    write_config(dir.path(), "[engine]\nmax_retries = 1\ntimeout_s = 20\n");
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0", "-n", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stored(&trace).len(), 2);
}

#[test]
fn malformed_json_is_retried_and_the_job_completes() {
    let server = Server::start(&["--fault-malformed-every", "2"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(
        dir.path(),
        "[engine]\nconcurrency = 1\nn_per_request = 1\nmax_retries = 3\n",
    );
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0..=1", "-n", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stored(&trace);
    assert_eq!(all.len(), 6);
    assert_unique_seeds(&all);
    // Every other completion was cut short: 6 whole answers took 11 completions.
    let answered = || {
        server
            .log()
            .iter()
            .filter(|l| l.starts_with("POST /v1/completions 200"))
            .count()
    };
    let started = Instant::now();
    while answered() < 11 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answered(), 11, "server log: {:?}", server.log());
}

#[test]
fn status_429_and_503_are_retried() {
    for code in ["429", "503"] {
        let server = Server::start(&["--fault-status-every", &format!("2:{code}")], &[]);
        let dir = tempfile::tempdir().unwrap();
        let trace = write_trace(dir.path());
        write_config(
            dir.path(),
            "[engine]\nconcurrency = 2\nn_per_request = 2\nmax_retries = 3\n",
        );
        let o = analyze(
            dir.path(),
            &trace,
            server.port,
            &["--positions", "0..=1", "-n", "4"],
        );
        assert!(o.status.success(), "{code}: {}", stderr(&o));
        let all = stored(&trace);
        assert_eq!(all.len(), 8, "{code}");
        assert_unique_seeds(&all);
    }
}

#[test]
fn a_persistent_503_gives_up_with_a_clear_error() {
    let server = Server::start(&["--fault-status-every", "1:503"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(dir.path(), "[engine]\nmax_retries = 1\n");
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0", "-n", "2"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("HTTP 503") && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    assert!(stored(&trace).is_empty());
}
