//! `anchorscope bench` and its child `bench-job` through the real binary, on a tiny model the
//! tests build (random weights + byte-level tokenizer, no download, no Python): the child's
//! counts, the report with `--peer none`, and the errors for a missing or incomplete Python.
//! No timing is asserted: speed is the benchmark's business, not the tests'.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorscope::bench::{inputs, BenchInputs, JobReport};
use anchorscope::engine::lm::testing::{write_tiny_gguf, TinySpec};
use anchorscope::engine::lm::Arch;
use anchorscope::engine::worker::LmGenerator;
use anchorscope::trace::split::{split_response, SplitOptions};
use anchorscope::trace::{Message, Trace};
use candle_core::Device;

fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(
        &path,
        &TinySpec::new(Arch::Llama, 11).with_byte_level_tokenizer(),
    )
    .unwrap();
    path
}

fn tiny_trace() -> Trace {
    let response = "<SCRATCHPAD_REASONING>The user asks for a greeting. It is harmless. \
                    I will answer briefly. A short hello is enough.\n\nSo I will say hello.\
                    </SCRATCHPAD_REASONING>\n\n<OUTPUT>hello world</OUTPUT>";
    let mut trace = Trace::new(
        "bench-tiny",
        vec![Message::new("user", "Say hello.")],
        response,
    );
    trace.sentences = split_response(&trace.response, &SplitOptions::default());
    assert!(trace.sentences.len() >= 4, "{:?}", trace.sentences);
    trace
}

fn write_trace(dir: &Path) -> PathBuf {
    let path = dir.join("trace.json");
    std::fs::write(&path, serde_json::to_string(&tiny_trace()).unwrap()).unwrap();
    path
}

/// Run the binary with an isolated HOME / config / cache.
fn run(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bench_job_child_reports_every_row_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let gen = LmGenerator::load(&model, &Device::Cpu).unwrap();
    let bench_inputs: BenchInputs =
        inputs::build(&gen, &tiny_trace(), "tiny", 30, 3, 0.6, 0.95).unwrap();
    assert_eq!(bench_inputs.sweep.len(), 3);
    let path = dir.path().join("inputs.json");
    std::fs::write(&path, serde_json::to_string(&bench_inputs).unwrap()).unwrap();

    for (job, prompts) in [("single", 1usize), ("sweep", 3)] {
        let o = run(
            &[
                "bench-job",
                "--inputs",
                path.to_str().unwrap(),
                "--job",
                job,
                "--rows",
                "3",
                "--new-tokens",
                "5",
                "--device",
                "cpu",
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{job}: {}", stderr(&o));
        let report: JobReport = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{job}: {e}: {}", String::from_utf8_lossy(&o.stdout)));
        assert_eq!(report.side, "anchorscope");
        assert_eq!(report.job, job);
        assert_eq!((report.rows, report.new_tokens), (3, 5));
        assert_eq!(report.rollouts, 3 * prompts, "{report:?}");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.prefix_tokens.len(), prompts);
        assert_eq!(report.position_s.len(), prompts);
        // Like the peer's min_new_tokens, every rollout runs to the cap: rows × new tokens.
        assert_eq!(report.finish.get("length").copied(), Some(report.rollouts));
        assert_eq!(report.tokens_generated, (3 * 5 * prompts) as u64);
        assert!(report.tokens_per_s > 0.0);
        // What the engine did with the tiny F32 file's 9 matrices (2 layers × 4 + the head).
        assert_eq!(report.precision, "9 × f32 gemm");
        if cfg!(target_os = "linux") {
            let peak = report.peak_rss_bytes.expect("VmHWM on Linux");
            assert!(peak >= report.rss_after_load_bytes.unwrap());
            // The job's own peak (reset after the load) never exceeds the process's.
            if let Some(job_peak) = report.job_peak_rss_bytes {
                assert!(job_peak <= peak && job_peak > 0);
            }
        }
        // The rows' own KV: 3 rows × 5 tokens × 2 (K, V) × 2 layers × 2 KV heads × 16 × 4 bytes.
        assert_eq!(report.own_kv_bytes, Some(3 * 5 * 2 * 2 * 2 * 16 * 4));
    }
}

#[test]
fn bench_with_peer_none_prints_the_tables_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace = write_trace(dir.path());
    let json = dir.path().join("out.json");
    let o = run(
        &[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--device",
            "cpu",
            "--peer",
            "none",
            "--rows",
            "2",
            "--new-tokens",
            "4",
            "--prefix-tokens",
            "40",
            "--positions",
            "2",
            "--memory-rows",
            "1,2",
            "--trace",
            trace.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ours/peer") && out.contains("peak RSS MiB"),
        "{out}"
    );
    assert!(out.contains("memory (anchorscope"), "{out}");
    assert!(out.contains("roofline single anchorscope"), "{out}");
    assert!(out.contains("--peer none"), "{out}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let jobs = result["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{result}");
    assert_eq!(jobs[0]["job"], "single");
    assert_eq!(jobs[1]["job"], "sweep");
    assert!(jobs.iter().all(|j| j["side"] == "anchorscope"));
    assert_eq!(jobs[0]["rollouts"], 2);
    assert_eq!(jobs[1]["rollouts"], 4);
    let memory = result["memory"].as_array().unwrap();
    let rows: Vec<u64> = memory.iter().map(|m| m["rows"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![1, 2]);
    assert_eq!(result["matmul_candle"].as_array().unwrap().len(), 2);
    assert!(result["matmul_torch"].as_array().unwrap().is_empty());
    assert_eq!(result["roofline"].as_array().unwrap().len(), 2);
    assert!(result["machine"]["cores"].as_u64().unwrap() >= 1);
    // The prefix is real text: its token count is what the trace gives, reported as such.
    assert_eq!(
        result["single_prefix_tokens"].as_u64(),
        jobs[0]["prefix_tokens"][0].as_u64()
    );
}

#[test]
fn bench_with_a_missing_python_says_so_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-python");
    let o = run(
        &[
            "bench",
            "--model",
            "/nonexistent/model.gguf",
            "--python",
            missing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--python") && err.contains("no-such-python"),
        "{err}"
    );
    assert!(
        err.contains("cannot run it") && err.contains("--peer none"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn bench_with_a_python_lacking_torch_names_the_packages() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(
        &[
            "bench",
            "--model",
            "/nonexistent/model.gguf",
            "--python",
            fake.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("No module named 'torch'"), "{err}");
    assert!(
        err.contains("transformers") && err.contains("scripts/bench.sh"),
        "{err}"
    );
}

#[test]
fn bench_rejects_zero_rows_and_bad_memory_rows() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["bench", "--peer", "none", "--rows", "0"], dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--rows 0"), "{}", stderr(&o));
    let o = run(
        &["bench", "--peer", "none", "--memory-rows", "1,x"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--memory-rows"), "{}", stderr(&o));
}
