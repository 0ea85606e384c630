//! Shared by the `remote_*` tests: a real `anchorscope serve` on loopback (`serve_support`),
//! a short scratchpad trace that fits the tiny model's context, and `anchorscope analyze
//! --engine openai` run as a child process with an isolated HOME and config.

#![allow(dead_code)] // each test file uses a different part

pub(crate) use crate::serve_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anchorscope::store::{read_rollouts, save_trace};
use anchorscope::trace::split::{split_response, SplitOptions};
use anchorscope::trace::{Message, Rollout, Trace};

pub use serve_support::Server;

/// The name `anchorscope serve` gives the tiny model (its file stem).
pub const SERVED: &str = "tiny";

/// A scratchpad trace short enough for the tiny model's 512-token context (byte tokenizer),
/// written to `dir/trace.json`.
pub fn write_trace(dir: &Path) -> PathBuf {
    let path = dir.join("trace.json");
    save_trace(&path, &tiny_trace()).unwrap();
    path
}

/// The trace [`write_trace`] writes.
pub fn tiny_trace() -> Trace {
    let response = "<SCRATCHPAD_REASONING>The user asks for a greeting. It is harmless.\n\n\
                    So I will say hello.</SCRATCHPAD_REASONING>\n\n\
                    <OUTPUT><request_fully_accepted/> hello</OUTPUT>";
    let mut trace = Trace::new(
        "tiny-remote",
        vec![Message::new("user", "Say hi.")],
        response,
    );
    trace.sentences = split_response(&trace.response, &SplitOptions::default());
    assert!(trace.sentences.len() >= 3, "{:?}", trace.sentences);
    trace
}

/// The rollout store beside a trace file.
pub fn store_of(trace: &Path) -> PathBuf {
    trace.with_extension("rollouts.jsonl")
}

/// The stored rollouts; panics on a torn or unreadable line (the store must hold whole lines).
pub fn stored(trace: &Path) -> Vec<Rollout> {
    let path = store_of(trace);
    if !path.exists() {
        return Vec::new();
    }
    let (rollouts, warnings) = read_rollouts(&path).unwrap();
    assert!(warnings.is_empty(), "torn store lines: {warnings:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a half-written last line"
    );
    rollouts
}

/// A command for the binary with HOME, config and cache in `home` (config.toml there is used).
pub fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorscope"));
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Write `HOME/anchorscope/config.toml` (the XDG location under the isolated home).
pub fn write_config(home: &Path, text: &str) {
    let dir = home.join("anchorscope");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// `analyze TRACE --engine openai --url … --model tiny --no-embedder ARGS…` (with
/// `--max-new-tokens 12` unless ARGS set it).
pub fn analyze_args(trace: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "analyze",
        trace.to_str().unwrap(),
        "--engine",
        "openai",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--model",
        SERVED,
        "--no-embedder",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--max-new-tokens") {
        args.extend(["--max-new-tokens".to_string(), "12".to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub fn analyze(home: &Path, trace: &Path, port: u16, extra: &[&str]) -> Output {
    let args = analyze_args(trace, port, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(home, &args).output().expect("the binary runs")
}

pub fn spawn_analyze(home: &Path, trace: &Path, port: u16, extra: &[&str]) -> Child {
    let args = analyze_args(trace, port, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(home, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rollouts per position.
pub fn per_position(rollouts: &[Rollout]) -> std::collections::BTreeMap<usize, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rollouts {
        *m.entry(r.position).or_insert(0) += 1;
    }
    m
}

/// No seed twice at one position.
pub fn assert_unique_seeds(rollouts: &[Rollout]) {
    let mut seen = std::collections::HashSet::new();
    for r in rollouts {
        assert!(
            seen.insert((r.position, r.seed)),
            "seed {} twice at position {}",
            r.seed,
            r.position
        );
    }
}

/// A server over a tiny model with a longer context (the judge prompt is ~2,500 byte tokens):
/// `anchorscope serve --model DIR/tiny.gguf --port 0`, killed when dropped.
pub struct LongServer {
    child: Child,
    pub port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl LongServer {
    pub fn start() -> LongServer {
        use anchorscope::engine::lm::testing::{write_tiny_gguf, TinySpec};
        use anchorscope::engine::lm::Arch;
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        let mut spec = TinySpec::new(Arch::Llama, 11).with_byte_level_tokenizer();
        spec.context = 4096;
        write_tiny_gguf(&model, &spec).unwrap();
        let mut child = command(
            dir.path(),
            &[
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--device",
                "cpu",
                "--port",
                "0",
            ],
        )
        .env_remove("ANCHORSCOPE_SERVE_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&log);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        std::thread::spawn(move || for _ in lines {});
        let port = first
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}: {:?}", log.lock()));
        LongServer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for LongServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
