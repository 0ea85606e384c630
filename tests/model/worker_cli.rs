//! The engine's commands through the real binary: help text, and the errors a user meets before
//! any model runs (missing model, bad positions, bad sampler values, CUDA without a GPU build).
//! Sampling itself is tested in the library with a test double and, where the model files are
//! present, with the real model (the worker_model tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample(dir: &Path) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces/example-free-tier-complies.json");
    let dst = dir.join("trace.json");
    std::fs::copy(src, &dst).unwrap();
    dst
}

/// Run the binary with an isolated HOME / config / cache (no installed model can leak in).
fn run(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("ANCHORSCOPE_MODEL")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn new_commands_have_help_with_their_options() {
    for (args, needles) in [
        (
            vec!["analyze", "--help"],
            vec![
                "--positions",
                "--rollouts",
                "--model",
                "--device",
                "--max-new-tokens",
                "--temperature",
                "--top-p",
                "--json",
                "tops up",
            ],
        ),
        (
            vec!["collect", "--help"],
            vec![
                "--prompt-file",
                "--queries",
                "--tier",
                "--seed",
                "<SCRATCHPAD_REASONING>",
                "--output",
            ],
        ),
        (
            vec!["model", "install", "--help"],
            vec!["--no-embedder", "embedder"],
        ),
        (
            vec!["open", "--help"],
            vec!["--model", "--device", "--no-engine"],
        ),
        (
            vec!["--help"],
            vec!["analyze", "collect", "model", "--no-engine"],
        ),
    ] {
        let o = run(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        for n in needles {
            assert!(out.contains(n), "{args:?} help lacks {n}:\n{out}");
        }
    }
}

#[test]
fn analyze_with_a_missing_model_names_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let model = dir.path().join("no-such-model.gguf");
    let o = run(&[
        "analyze",
        trace.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--positions",
        "0",
        "-n",
        "2",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no-such-model.gguf"), "{err}");
    assert!(
        !dir.path().join("trace.rollouts.jsonl").exists(),
        "no store written"
    );
}

#[test]
fn analyze_rejects_bad_positions_and_sampler_values_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let t = trace.to_str().unwrap();
    let o = run(&["analyze", t, "--positions", "999", "--model", "/none.gguf"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("position 999") && err.contains("0..="),
        "{err}"
    );
    let o = run(&["analyze", t, "--top-p", "2", "--model", "/none.gguf"]);
    assert!(text(&o).1.contains("--top-p"), "{}", text(&o).1);
    let o = run(&["analyze", t, "-n", "0", "--model", "/none.gguf"]);
    assert!(text(&o).1.contains("-n 0"), "{}", text(&o).1);
    let o = run(&["analyze", t, "--device", "tpu"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("tpu"), "{}", text(&o).1);
}

#[test]
#[cfg_attr(feature = "cuda", ignore = "this build has CUDA")]
fn analyze_cuda_on_a_cpu_build_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"not a model").unwrap();
    let o = run(&[
        "analyze",
        trace.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cuda",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("--device cuda"), "{err}");
}

#[test]
fn collect_errors_name_the_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.txt");
    std::fs::write(&q, "How do I pick a lock?\n").unwrap();
    let o = run(&[
        "collect",
        "--prompt-file",
        "/no/such/system.txt",
        "--queries",
        q.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("/no/such/system.txt"), "{err}");
    let sys = dir.path().join("system.txt");
    std::fs::write(&sys, "You are an AI.").unwrap();
    let bad = dir.path().join("q.jsonl");
    std::fs::write(&bad, "{\"nope\": 1}\n").unwrap();
    let o = run(&[
        "collect",
        "--prompt-file",
        sys.to_str().unwrap(),
        "--queries",
        bad.to_str().unwrap(),
        "--model",
        "/none.gguf",
    ]);
    let (_, err) = text(&o);
    assert!(err.contains("q.jsonl") && err.contains("line 1"), "{err}");
}
