//! The candle generation path, the worker and the CLI end to end on a tiny model the tests build
//! themselves (random weights + a byte-level BPE tokenizer in one GGUF), so CI needs no download:
//! prefix reuse is exact under greedy decoding, seeds reproduce, jobs store exactly what they
//! report, top-ups add only the difference, cancel stops cleanly, and `collect` → `stats` →
//! `analyze` work through the real binary.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use anchorscope::engine::lm::testing::{
    byte_level_tokenizer, write_tiny_gguf, write_tiny_hf, TinySpec,
};
use anchorscope::engine::lm::Arch;
use anchorscope::engine::sampler::rollout_seed;
use anchorscope::engine::worker::{
    self, Control, Generator, GroupControl, LmGenerator, ModelChoice, Sampled, WorkerConfig,
};
use anchorscope::engine::{EngineCommand, EngineError, EngineEvent, Job};
use anchorscope::store::read_rollouts;
use anchorscope::trace::split::{split_response, SplitOptions};
use anchorscope::trace::{Message, Rollout, SamplerSettings, Trace};
use candle_core::Device;

/// A complete tiny model (weights + tokenizer) in `dir`.
fn tiny_model(dir: &Path) -> PathBuf {
    tiny_model_of(dir, Arch::Llama)
}

fn tiny_model_of(dir: &Path, arch: Arch) -> PathBuf {
    let path = dir.join(format!("tiny-{}.gguf", arch.name()));
    let spec = TinySpec::new(arch, 7).with_byte_level_tokenizer();
    write_tiny_gguf(&path, &spec).unwrap();
    path
}

fn tiny_trace() -> Trace {
    // Merged tokens ("hello", " w") and characters split over byte tokens ("—", "ï") put
    // sentence cuts inside and beside multi-byte tokens.
    let response = "<SCRATCHPAD_REASONING>The user asks for a greeting — hello world. \
                    A naïve greeting is harmless.\n\nSo I will say hello.\
                    </SCRATCHPAD_REASONING>\n\n<OUTPUT>hello world</OUTPUT>";
    let mut trace = Trace::new(
        "tiny-trace",
        vec![Message::new("user", "Say hello.")],
        response,
    );
    trace.sentences = split_response(&trace.response, &SplitOptions::default());
    assert!(trace.sentences.len() >= 3, "{:?}", trace.sentences);
    trace
}

/// Greedy decoding (the seed does not matter) of at most `max_new_tokens`.
fn greedy(max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens,
    }
}

fn load(path: &Path) -> LmGenerator {
    LmGenerator::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

/// Collects what a generator hands over; never cancels, never stops early.
#[derive(Default)]
struct Collect(Vec<Sampled>);

impl Control for Collect {
    fn cancelled(&mut self) -> bool {
        false
    }
    fn tokens(&mut self, _n: usize) {}
    fn decided(&self, _continuation: &str) -> bool {
        false
    }
    fn finished(&mut self, sampled: Sampled) -> Result<(), EngineError> {
        self.0.push(sampled);
        Ok(())
    }
}

/// (seed, text, tokens) per row, in seed order.
fn sample(
    generator: &mut LmGenerator,
    trace: &Trace,
    position: usize,
    seeds: &[u64],
    settings: &SamplerSettings,
) -> Vec<(u64, String, u32)> {
    let mut control = Collect::default();
    generator
        .sample(trace, position, seeds, settings, &mut control)
        .unwrap_or_else(|e| panic!("position {position}: {e}"));
    assert_eq!(control.0.len(), seeds.len(), "one continuation per seed");
    let mut out: Vec<_> = control
        .0
        .into_iter()
        .map(|s| (s.seed, s.text, s.tokens))
        .collect();
    out.sort();
    out
}

#[test]
fn greedy_continuations_are_the_same_with_and_without_prefix_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let trace = tiny_trace();
    let greedy = greedy(12);
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let path = tiny_model_of(dir.path(), arch);
        let mut reuse = load(&path);
        let mut scratch = load(&path);
        scratch.prefix_reuse = false;
        assert!(reuse.prefix_reuse, "reuse is the default");
        let mut generated = 0;
        let mut texts = HashSet::new();
        for position in 0..trace.positions() {
            let a = sample(&mut reuse, &trace, position, &[1, 2], &greedy);
            let b = sample(&mut scratch, &trace, position, &[1, 2], &greedy);
            assert_eq!(a, b, "{arch:?} position {position}");
            // Greedy ignores the seed: both rows are the same continuation.
            assert_eq!((&a[0].1, a[0].2), (&a[1].1, a[1].2), "position {position}");
            generated += a[0].2;
            texts.insert(a[0].1.clone());
        }
        assert!(generated > 0, "{arch:?}: the tiny model generated nothing");
        // The continuation depends on the prefix (so equal texts above mean something).
        assert!(texts.len() > 1, "{arch:?}: {texts:?}");
    }
}

#[test]
fn a_hugging_face_directory_continues_like_the_gguf_of_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let trace = tiny_trace();
    let greedy = greedy(12);
    for arch in [Arch::Llama, Arch::Qwen2] {
        let gguf = tiny_model_of(dir.path(), arch);
        let hf = dir.path().join(format!("hf-{}", arch.name()));
        write_tiny_hf(&hf, &TinySpec::new(arch, 7).with_byte_level_tokenizer()).unwrap();
        byte_level_tokenizer()
            .unwrap()
            .save(hf.join("tokenizer.json"), false)
            .unwrap();
        let (mut a, mut b) = (load(&gguf), load(&hf));
        assert_eq!(a.template, b.template);
        for position in 0..trace.positions() {
            assert_eq!(
                sample(&mut a, &trace, position, &[1], &greedy),
                sample(&mut b, &trace, position, &[1], &greedy),
                "{arch:?} position {position}"
            );
        }
    }
}

#[test]
fn sampled_continuations_reproduce_by_seed_and_differ_across_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path());
    let trace = tiny_trace();
    let settings = SamplerSettings {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 10,
    };
    let seeds = [11, 12, 13, 14];
    let position = 2;
    let first = sample(&mut load(&path), &trace, position, &seeds, &settings);
    // A fresh model, and a warm one whose cache holds another position first.
    let second = sample(&mut load(&path), &trace, position, &seeds, &settings);
    let mut warm = load(&path);
    sample(&mut warm, &trace, 0, &[99], &settings);
    let third = sample(&mut warm, &trace, position, &seeds, &settings);
    assert_eq!(first, second);
    assert_eq!(first, third);
    let texts: HashSet<&str> = first.iter().map(|(_, t, _)| t.as_str()).collect();
    assert!(texts.len() > 1, "every seed gave the same text: {first:?}");
}

/// The worker on the tiny model: events go to a channel.
fn start(model: &Path) -> (worker::WorkerHandle, Receiver<EngineEvent>) {
    let (tx, rx) = mpsc::channel();
    let config = WorkerConfig {
        model: ModelChoice::Path(model.to_path_buf()),
        device: "cpu".into(),
        embedder: false,
        ..WorkerConfig::default()
    };
    let handle = worker::spawn(config, move |e| {
        let _ = tx.send(e);
    });
    (handle, rx)
}

/// Every event up to and including `job`'s Finished.
fn until_finished(rx: &Receiver<EngineEvent>, job: u64) -> Vec<EngineEvent> {
    let mut events = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("job {job} did not finish; events so far: {events:?}"));
        let done = matches!(e, EngineEvent::Finished { job: j, .. } if j == job);
        events.push(e);
        if done {
            return events;
        }
    }
}

fn rollouts(events: &[EngineEvent]) -> Vec<Rollout> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Rollout { rollout, .. } => Some((**rollout).clone()),
            _ => None,
        })
        .collect()
}

fn errors(events: &[EngineEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Error { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// The store's lines, each parsed on its own (a torn or invalid line fails the test).
fn store_lines(store: &Path) -> Vec<Rollout> {
    let text = std::fs::read_to_string(store).unwrap_or_default();
    let lines: Vec<Rollout> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (read, warnings) = read_rollouts(store).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(read, lines);
    lines
}

fn job(id: u64, trace: &Arc<Trace>, store: &Path, n: usize, sampler: &SamplerSettings) -> Job {
    Job {
        id,
        trace: trace.clone(),
        store_path: store.to_path_buf(),
        positions: (0..trace.positions()).collect(),
        n,
        sampler: sampler.clone(),
        adaptive: None,
    }
}

fn counts(rollouts: &[Rollout]) -> BTreeMap<usize, usize> {
    let mut c = BTreeMap::new();
    for r in rollouts {
        *c.entry(r.position).or_insert(0) += 1;
    }
    c
}

#[test]
fn worker_runs_stores_and_tops_up_jobs_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace = Arc::new(tiny_trace());
    let positions = trace.positions();
    let store = dir.path().join("tiny.rollouts.jsonl");
    let sampler = SamplerSettings {
        temperature: 0.6,
        top_p: 0.95,
        max_new_tokens: 8,
    };
    let (handle, rx) = start(&model);

    let tx = &handle.sender;
    tx.send(EngineCommand::Submit(job(1, &trace, &store, 2, &sampler)))
        .unwrap();
    let events = until_finished(&rx, 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::Status(s) if s.is_ready())),
        "{events:?}"
    );
    assert!(errors(&events).is_empty(), "{events:?}");
    let got = rollouts(&events);
    assert_eq!(got.len(), 2 * positions);
    assert!(events.iter().any(|e| matches!(
        e,
        EngineEvent::Progress { job: 1, done, total, .. } if *done == *total && *total == 2 * positions
    )));
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Finished {
            job: 1,
            cancelled: false
        })
    );
    let stored = store_lines(&store);
    assert_eq!(stored, got, "the store holds exactly the reported rollouts");
    let seeds: HashSet<u64> = stored.iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), stored.len(), "seeds are distinct");
    assert!(counts(&stored).values().all(|&c| c == 2));
    for r in &stored {
        assert!(r.tokens <= 8 && r.position < positions, "{r:?}");
        assert!(!r.labels.is_empty(), "every rollout is classified: {r:?}");
    }

    // Same job again: the worker counts the store itself, so nothing to do.
    let again = job(2, &trace, &store, 2, &sampler);
    tx.send(EngineCommand::Submit(again)).unwrap();
    let events = until_finished(&rx, 2);
    assert!(rollouts(&events).is_empty(), "{events:?}");
    assert!(events.contains(&EngineEvent::Progress {
        job: 2,
        done: 0,
        total: 0,
        tokens_per_s: 0.0
    }));
    assert_eq!(store_lines(&store).len(), 2 * positions);

    // n = 3: one more per position, with the next seed index.
    let more = job(3, &trace, &store, 3, &sampler);
    tx.send(EngineCommand::Submit(more)).unwrap();
    let events = until_finished(&rx, 3);
    assert!(errors(&events).is_empty(), "{events:?}");
    let added = rollouts(&events);
    assert_eq!(added.len(), positions);
    for r in &added {
        assert_eq!(r.seed, rollout_seed(&trace.id, r.position, 2), "{r:?}");
        assert!(!seeds.contains(&r.seed));
    }
    let all = store_lines(&store);
    assert_eq!(all.len(), 3 * positions);
    assert_eq!(&all[..stored.len()], &stored[..], "earlier lines untouched");
    assert!(counts(&all).values().all(|&c| c == 3));
    handle.shutdown();
}

#[test]
fn cancel_stops_the_job_and_stores_exactly_what_was_reported() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace = Arc::new(tiny_trace());
    let store = dir.path().join("cancel.rollouts.jsonl");
    let sampler = SamplerSettings {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 250,
    };
    let n = 40;
    let total = n * trace.positions();
    let (handle, rx) = start(&model);
    handle
        .sender
        .send(EngineCommand::Submit(job(7, &trace, &store, n, &sampler)))
        .unwrap();
    let mut events = Vec::new();
    loop {
        let e = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let first_rollout = matches!(e, EngineEvent::Rollout { .. });
        assert!(!matches!(e, EngineEvent::Finished { .. }), "{e:?}");
        events.push(e);
        if first_rollout {
            break;
        }
    }
    handle.sender.send(EngineCommand::Cancel(7)).unwrap();
    events.extend(until_finished(&rx, 7));
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Finished {
            job: 7,
            cancelled: true
        })
    );
    // Shutting down ends the thread: every event it ever sent is in the channel now.
    handle.shutdown();
    let late: Vec<EngineEvent> = rx.try_iter().collect();
    assert!(
        !late
            .iter()
            .any(|e| matches!(e, EngineEvent::Rollout { .. })),
        "rollouts after Finished: {late:?}"
    );
    assert!(errors(&events).is_empty(), "{events:?}");
    let reported = rollouts(&events);
    assert!(
        !reported.is_empty() && reported.len() < total,
        "{}",
        reported.len()
    );
    assert_eq!(store_lines(&store), reported);
}

#[test]
fn a_prefix_past_the_context_reports_its_true_token_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut generator = load(&tiny_model(dir.path()));
    // About one token per byte: a response of 40 sentences runs well past the 512-token context.
    let body: String = (0..40)
        .map(|i| format!("Sentence number {i} is here. "))
        .collect();
    let mut trace = Trace::new(
        "long",
        vec![Message::new("user", "Count.")],
        format!("<SCRATCHPAD_REASONING>{body}</SCRATCHPAD_REASONING>"),
    );
    trace.sentences = split_response(&trace.response, &SplitOptions::default());
    let settings = SamplerSettings {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens: 8,
    };
    let prompt = generator.template.render_prompt(&trace.prompt).unwrap();
    let (mut fits, mut overflows) = (0, 0);
    for reuse in [true, false] {
        generator.prefix_reuse = reuse;
        for position in (0..trace.positions()).step_by(5) {
            let mut control = Collect::default();
            let text = format!("{prompt}{}", trace.prefix(position));
            let want = generator.tokenizer.encode(&text).unwrap().len();
            match generator.sample(&trace, position, &[1], &settings, &mut control) {
                Ok(()) => {
                    assert!(want + 8 <= 512, "position {position}: {want} tokens fit?");
                    fits += 1;
                }
                Err(EngineError::ContextOverflow {
                    tokens,
                    max_new,
                    context,
                }) => {
                    assert_eq!((tokens, max_new, context), (want, 8, 512), "{position}");
                    overflows += 1;
                }
                Err(e) => panic!("position {position}: {e}"),
            }
        }
    }
    assert!(fits > 0 && overflows > 0, "{fits} {overflows}");
}

#[test]
fn a_new_job_supersedes_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace = Arc::new(tiny_trace());
    let store = dir.path().join("latest.rollouts.jsonl");
    let long = SamplerSettings {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 250,
    };
    let short = SamplerSettings {
        max_new_tokens: 6,
        ..long.clone()
    };
    let (handle, rx) = start(&model);
    handle
        .sender
        .send(EngineCommand::Submit(job(1, &trace, &store, 40, &long)))
        .unwrap();
    let mut first = Vec::new();
    while !matches!(first.last(), Some(EngineEvent::Rollout { .. })) {
        first.push(rx.recv_timeout(Duration::from_secs(60)).unwrap());
    }
    let mut second = job(2, &trace, &store, 1, &short);
    second.positions = vec![1];
    handle.sender.send(EngineCommand::Submit(second)).unwrap();
    let events = until_finished(&rx, 2);
    handle.shutdown();
    first.extend(events);
    let finished: Vec<&EngineEvent> = first
        .iter()
        .filter(|e| matches!(e, EngineEvent::Finished { .. }))
        .collect();
    assert_eq!(
        finished,
        [
            &EngineEvent::Finished {
                job: 1,
                cancelled: true
            },
            &EngineEvent::Finished {
                job: 2,
                cancelled: false
            }
        ]
    );
    assert!(errors(&first).is_empty(), "{first:?}");
    // Job 2 tops position 1 up to 1: it samples only if job 1 stored nothing there.
    let stored = store_lines(&store);
    assert_eq!(stored, rollouts(&first));
    assert!(counts(&stored).get(&1).is_some_and(|&c| c >= 1));
}

#[test]
fn a_token_cap_beyond_the_context_is_an_error_per_position_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace = Arc::new(tiny_trace());
    let store = dir.path().join("overflow.rollouts.jsonl");
    let sampler = SamplerSettings {
        temperature: 0.6,
        top_p: 0.95,
        max_new_tokens: 600, // the tiny context is 512
    };
    let (handle, rx) = start(&model);
    let mut j = job(9, &trace, &store, 1, &sampler);
    j.positions = vec![0, 1];
    handle.sender.send(EngineCommand::Submit(j)).unwrap();
    let events = until_finished(&rx, 9);
    handle.shutdown();
    let errors = errors(&events);
    assert_eq!(errors.len(), 2, "{events:?}");
    for (p, e) in errors.iter().enumerate() {
        assert!(
            e.contains(&format!("position {p}")) && e.contains("512"),
            "{e}"
        );
    }
    assert!(rollouts(&events).is_empty());
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Finished {
            job: 9,
            cancelled: false
        })
    );
    assert!(store_lines(&store).is_empty());
}

/// Run the binary with an isolated HOME / config / cache (no installed model can leak in).
fn run(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("ANCHORSCOPE_MODEL")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn collect_then_stats_then_analyze_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let prompt = dir.path().join("system.txt");
    std::fs::write(&prompt, "Be brief.\n").unwrap();
    let queries = dir.path().join("q.txt");
    std::fs::write(&queries, "Say hello.\n").unwrap();
    let out_dir = dir.path().join("traces");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (model_s, prompt_s, queries_s, out_s) = (s(&model), s(&prompt), s(&queries), s(&out_dir));
    run(&[
        "collect",
        "--prompt-file",
        &prompt_s,
        "--queries",
        &queries_s,
        "--model",
        &model_s,
        "--device",
        "cpu",
        "--max-new-tokens",
        "24",
        "--tier",
        "both",
        "--output",
        &out_s,
    ]);
    let paid: Trace =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("q-000-paid.json")).unwrap())
            .unwrap();
    assert!(
        paid.prompt[1].content.contains(">false<"),
        "{:?}",
        paid.prompt
    );
    let trace_path = out_dir.join("q-000-free.json");
    let saved: Trace = serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", trace_path.display()));
    assert!(saved.response.starts_with("<SCRATCHPAD_REASONING>"));
    assert!(saved.response.len() > "<SCRATCHPAD_REASONING>".len());
    assert!(!saved.sentences.is_empty(), "{:?}", saved.response);
    assert!(saved.manifest.model_hash.is_some());
    assert!(saved.prompt[1].content.contains("Say hello."));
    assert!(saved.prompt[1].content.contains(">true<"));
    assert_ne!(
        saved.meta.get("seed"),
        paid.meta.get("seed"),
        "one seed per tier"
    );
    let trace_s = s(&trace_path);

    let stats = run(&["stats", &trace_s, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(v.to_string().contains("q-000-free"), "{v}");

    let analyze = run(&[
        "analyze",
        &trace_s,
        "--model",
        &model_s,
        "--device",
        "cpu",
        "-n",
        "2",
        "--positions",
        "0..2",
        "--max-new-tokens",
        "16",
        "--no-embedder",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap_or_else(|e| {
        panic!(
            "analyze --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&analyze.stdout)
        )
    });
    assert!(v.is_object() || v.is_array(), "{v}");
    assert_eq!(json_rollouts(&v), 4, "{v}");
    let store = anchorscope::store::store_path_for(&trace_path);
    let stored = store_lines(&store);
    assert_eq!(stored.len(), 4);
    assert_eq!(counts(&stored), BTreeMap::from([(0, 2), (1, 2)]));
    let manifest = store.with_extension("manifest.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(m["n"], 2, "{m}");
    assert_eq!(m["sampler"]["max_new_tokens"], 16, "{m}");

    // Asking for 3 tops up by one per position; the stored four are kept as they are.
    let again = run(&[
        "analyze",
        &trace_s,
        "--model",
        &model_s,
        "--device",
        "cpu",
        "-n",
        "3",
        "--positions",
        "0..2",
        "--max-new-tokens",
        "16",
        "--no-embedder",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json_rollouts(&v), 6, "{v}");
    let all = store_lines(&store);
    assert_eq!(&all[..4], &stored[..]);
    assert_eq!(counts(&all), BTreeMap::from([(0, 3), (1, 3)]));
}

/// `rollouts` of `stats --json` (an object, or an array of one per trace).
fn json_rollouts(v: &serde_json::Value) -> u64 {
    let one = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    one["rollouts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rollout count in {v}"))
}

#[test]
fn killing_analyze_mid_job_keeps_whole_lines_and_a_rerun_tops_up() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace_path = dir.path().join("tiny-trace.json");
    anchorscope::store::save_trace(&trace_path, &tiny_trace()).unwrap();
    let store = anchorscope::store::store_path_for(&trace_path);
    let home = tempfile::tempdir().unwrap();
    let analyze = |n: &str, cap: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_anchorscope"));
        c.arg("analyze")
            .arg(&trace_path)
            .arg("--model")
            .arg(&model)
            .args(["--device", "cpu", "--no-embedder", "--temperature", "1"])
            .args(["-n", n, "--max-new-tokens", cap])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env_remove("ANCHORSCOPE_MODEL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    // Far more work than the test waits for: killed once the first rollouts are stored.
    let mut child = analyze("200", "250").spawn().unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&store)
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no rollout stored"
        );
        assert!(child.try_wait().unwrap().is_none(), "analyze ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(text.ends_with('\n'), "a torn last line");
    let before = store_lines(&store);
    assert!(before.len() >= 2 && before.len() < 200, "{}", before.len());

    // n = 1 per position: positions that already have one are not sampled again.
    let status = analyze("1", "8").status().unwrap();
    assert!(status.success());
    let after = store_lines(&store);
    assert_eq!(&after[..before.len()], &before[..]);
    let had = counts(&before);
    for r in &after[before.len()..] {
        assert!(!had.contains_key(&r.position), "resampled {}", r.position);
    }
    let seeds: HashSet<u64> = after.iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), after.len());
    let positions = tiny_trace().positions();
    assert_eq!(counts(&after).len(), positions);
}

#[test]
fn analyze_adaptive_on_the_tiny_model_stays_under_n_max_and_records_its_plan() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace_path = dir.path().join("tiny-trace.json");
    anchorscope::store::save_trace(&trace_path, &tiny_trace()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (trace_s, model_s) = (s(&trace_path), s(&model));
    let out = run(&[
        "analyze",
        &trace_s,
        "--model",
        &model_s,
        "--device",
        "cpu",
        "--no-embedder",
        "--max-new-tokens",
        "8",
        "--adaptive",
        "--n-max",
        "4",
        "--round",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adaptive: "), "{stderr}");
    // Without an embedder the resampling importance decides, and the run says so.
    assert!(stderr.contains("no sentence embedder"), "{stderr}");
    let store = anchorscope::store::store_path_for(&trace_path);
    let stored = store_lines(&store);
    let per = counts(&stored);
    let positions = tiny_trace().positions();
    assert_eq!(per.len(), positions, "every position gets its first round");
    assert!(per.values().all(|&n| (2..=4).contains(&n)), "{per:?}");
    let seeds: HashSet<u64> = stored.iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), stored.len());
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.with_extension("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["n"], 4, "{m}");
    assert_eq!(m["adaptive"]["behavior"], "compliance", "{m}");
    assert_eq!(m["adaptive"]["settings"]["round"], 2, "{m}");
    assert_eq!(m["adaptive"]["rollouts_used"], stored.len() as u64, "{m}");
    assert_eq!(m["adaptive"]["rollouts_fixed"], 4 * positions as u64, "{m}");
}

#[test]
fn intervene_delete_and_swap_tier_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut trace = tiny_trace();
    trace.prompt = vec![Message::new(
        "user",
        "<is_free_tier_user>true</is_free_tier_user>\n<user_input>Say hello.</user_input>",
    )];
    let trace_path = dir.path().join("tiny-trace.json");
    anchorscope::store::save_trace(&trace_path, &trace).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (trace_s, model_s) = (s(&trace_path), s(&model));
    let common = [
        "--model",
        &model_s,
        "--device",
        "cpu",
        "--no-embedder",
        "--max-new-tokens",
        "8",
        "-n",
        "2",
        "--json",
    ];
    let seeds =
        |path: &Path| -> HashSet<u64> { store_lines(path).iter().map(|r| r.seed).collect() };

    // Delete S1: the derived trace is written beside the parent and sampled after the cut;
    // the parent is sampled at position 2 (S1 kept).
    let mut args = vec!["intervene", trace_s.as_str(), "--delete", "1"];
    args.extend(common);
    let out = run(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["derived"], "tiny-trace~del1", "{v}");
    assert_eq!(v["edit"]["kind"], "delete", "{v}");
    assert_eq!(v["rollouts_stored"], 4, "{v}");
    let derived_path = dir.path().join("tiny-trace~del1.json");
    let derived: Trace =
        serde_json::from_str(&std::fs::read_to_string(&derived_path).unwrap()).unwrap();
    let derivation = derived
        .derived
        .as_ref()
        .expect("the derivation is recorded");
    assert_eq!(derivation.parent, "tiny-trace");
    assert_eq!(derived.sentences.len(), 1);
    let derived_store = anchorscope::store::store_path_for(&derived_path);
    assert_eq!(
        counts(&store_lines(&derived_store)),
        BTreeMap::from([(1, 2)])
    );
    let parent_store = anchorscope::store::store_path_for(&trace_path);
    assert_eq!(
        counts(&store_lines(&parent_store)),
        BTreeMap::from([(2, 2)])
    );
    assert!(seeds(&derived_store).is_disjoint(&seeds(&parent_store)));
    // Every labelled behavior has one row comparing position 1 after the edit with 2.
    let effects = v["effects"].as_array().unwrap();
    assert!(!effects.is_empty(), "{v}");
    for e in effects {
        assert_eq!(e["rows"][0]["position"], 1, "{e}");
        assert_eq!(e["rows"][0]["parent_position"], 2, "{e}");
    }
    // Without the embedder no rollout was compared with the deleted sentence: no resilience
    // is claimed, and a note says why.
    assert!(v.get("resilience").is_none(), "{v}");
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("no resilience")),
        "{v}"
    );
    assert!(store_lines(&derived_store)
        .iter()
        .all(|r| r.recurrence.is_none()));
    // Run again: the derived trace is reused and nothing is resampled.
    let again = run(&args);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["rollouts_stored"], 0, "{v}");

    // Swap the tier (`analyze --swap-tier` is `intervene --swap-tier`): every position of
    // both traces, the prompt changed in the tag only.
    let mut args = vec!["analyze", trace_s.as_str(), "--swap-tier"];
    args.extend(common);
    let out = run(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["derived"], "tiny-trace~tier-paid", "{v}");
    let swapped: Trace = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("tiny-trace~tier-paid.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        swapped.prompt[0].content,
        trace.prompt[0].content.replace(">true<", ">false<")
    );
    assert_eq!(swapped.response, trace.response);
    let swapped_store =
        anchorscope::store::store_path_for(&dir.path().join("tiny-trace~tier-paid.json"));
    let per = counts(&store_lines(&swapped_store));
    assert_eq!(per.len(), trace.positions());
    assert!(per.values().all(|&n| n == 2), "{per:?}");
    assert!(seeds(&swapped_store).is_disjoint(&seeds(&parent_store)));
    let rows = v["effects"][0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), trace.positions());
}

/// Collects a group's rows per slot; never cancels, never stops early.
#[derive(Default)]
struct CollectGroup {
    rows: Vec<(usize, Sampled)>,
    failed: Vec<(usize, String)>,
    steps: usize,
}

impl GroupControl for CollectGroup {
    fn cancelled(&mut self) -> bool {
        false
    }
    fn tokens(&mut self, _n: usize) {
        self.steps += 1;
    }
    fn decided(&self, _slot: usize, _continuation: &str) -> bool {
        false
    }
    fn finished(&mut self, slot: usize, sampled: Sampled) -> Result<(), EngineError> {
        self.rows.push((slot, sampled));
        Ok(())
    }
    fn failed(&mut self, slot: usize, error: EngineError) {
        self.failed.push((slot, error.to_string()));
    }
}

#[test]
fn a_sweep_decoded_as_one_batch_equals_sampling_each_position_alone() {
    let dir = tempfile::tempdir().unwrap();
    let trace = tiny_trace();
    for settings in [
        SamplerSettings {
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens: 10,
        },
        SamplerSettings {
            temperature: 0.6,
            top_p: 0.95,
            max_new_tokens: 10,
        },
    ] {
        for arch in [Arch::Llama, Arch::Qwen3] {
            let path = tiny_model_of(dir.path(), arch);
            let mut generator = load(&path);
            assert!(
                generator.group_rows(&settings) > 1,
                "the candle path batches"
            );
            let work: Vec<(usize, Vec<u64>)> = (0..trace.positions())
                .map(|p| (p, vec![10 + p as u64, 20 + p as u64, 30 + p as u64]))
                .collect();
            let mut group = CollectGroup::default();
            generator
                .sample_group(&trace, &work, &settings, &mut group)
                .unwrap_or_else(|e| panic!("{arch:?}: {e}"));
            assert!(group.failed.is_empty(), "{:?}", group.failed);
            assert_eq!(group.rows.len(), 3 * trace.positions());
            // All positions decoded in the same steps, not one after another.
            assert!(group.steps <= 10 + 1, "{} steps", group.steps);
            for (slot, (position, seeds)) in work.iter().enumerate() {
                let mut batched: Vec<(u64, String, u32)> = group
                    .rows
                    .iter()
                    .filter(|(s, _)| *s == slot)
                    .map(|(_, r)| (r.seed, r.text.clone(), r.tokens))
                    .collect();
                batched.sort();
                let alone = sample(&mut generator, &trace, *position, seeds, &settings);
                assert_eq!(batched, alone, "{arch:?} position {position}");
            }
        }
    }
}

#[test]
fn a_failing_position_in_a_group_is_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let trace = tiny_trace();
    let path = tiny_model(dir.path());
    let mut generator = load(&path);
    let context = generator.lm.info().max_context;
    // The prompt and prefix plus this many new tokens overflow the context at every position,
    // so ask for a cap that overflows only the later positions.
    let prompt_len = generator
        .tokenizer
        .encode(&generator.template.render_prompt(&trace.prompt).unwrap())
        .unwrap()
        .len();
    let last = trace.positions() - 1;
    let full_len = generator
        .tokenizer
        .encode(&format!(
            "{}{}",
            generator.template.render_prompt(&trace.prompt).unwrap(),
            trace.prefix(last)
        ))
        .unwrap()
        .len();
    let cap = context - full_len + 1; // the last position overflows by one token
    assert!(context > prompt_len + cap, "position 0 must still fit");
    let settings = SamplerSettings {
        temperature: 0.6,
        top_p: 0.95,
        max_new_tokens: cap as u32,
    };
    // Two tokens is enough to see both slots decode; stop the run early by cancelling.
    let work = vec![(0, vec![1]), (last, vec![2])];
    let mut group = CollectGroup::default();
    generator
        .sample_group(&trace, &work, &settings, &mut group)
        .unwrap();
    assert_eq!(group.failed.len(), 1, "{:?}", group.failed);
    assert_eq!(group.failed[0].0, 1);
    assert!(
        group.failed[0].1.contains("context"),
        "{}",
        group.failed[0].1
    );
    assert_eq!(group.rows.len(), 1);
    assert_eq!(group.rows[0].0, 0);
}

/// The GPU path computes what the CPU path computes: greedy continuations of every position of
/// the tiny trace are the same tokens on CUDA as on the CPU, for each architecture. Only in
/// CUDA builds (scripts/gpu-check.sh runs it on a GPU machine); without a GPU it skips locally.
#[cfg(feature = "cuda")]
#[test]
fn greedy_continuations_on_cuda_equal_the_cpu() {
    let gpu = match anchorscope::engine::device::select("cuda") {
        Ok(device) => device,
        Err(e) => {
            crate::prereq::missing(&format!("a CUDA GPU ({e})"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let trace = tiny_trace();
    let greedy = greedy(12);
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let path = tiny_model_of(dir.path(), arch);
        let mut cpu = load(&path);
        let mut cuda = LmGenerator::load(&path, &gpu).unwrap_or_else(|e| panic!("{e}"));
        for position in 0..trace.positions() {
            assert_eq!(
                sample(&mut cpu, &trace, position, &[1], &greedy),
                sample(&mut cuda, &trace, position, &[1], &greedy),
                "{arch:?} position {position}"
            );
        }
    }
}

/// Without sampler flags, `analyze` samples with the settings of the run the trace's rates
/// already pool (here a token cap of 6 from an earlier run), so its rollouts join them rather
/// than start a run the pool would leave out.
#[test]
fn analyze_without_flags_samples_with_the_pooled_runs_settings() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let trace_path = dir.path().join("tiny-trace.json");
    anchorscope::store::save_trace(&trace_path, &tiny_trace()).unwrap();
    let (trace_s, model_s) = (
        trace_path.to_str().unwrap().to_string(),
        model.to_str().unwrap().to_string(),
    );
    let common = [
        "analyze",
        trace_s.as_str(),
        "--model",
        model_s.as_str(),
        "--device",
        "cpu",
        "--no-embedder",
        "--positions",
        "0",
        "--json",
    ];
    let mut first = common.to_vec();
    first.extend(["-n", "1", "--max-new-tokens", "6", "--temperature", "1"]);
    assert!(run(&first).status.success());
    let mut second = common.to_vec();
    second.extend(["-n", "3"]);
    let out = run(&second);
    assert!(out.status.success());
    let store = anchorscope::store::store_path_for(&trace_path);
    let runs =
        anchorscope::store::runs::read_runs(&anchorscope::store::runs::runs_path_for(&store))
            .unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].max_tokens, Some(6));
    assert_eq!(runs[1].temperature, Some(1.0));
    assert_eq!(runs[1].difference(&runs[0]), None, "the two runs pool");
    assert_eq!(store_lines(&store).len(), 3);
}
