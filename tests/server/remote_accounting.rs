//! `--engine openai` against a fake server whose replies a real one of ours never sends: token
//! counts that are not per choice, and n identical choices for a seeded request.

use crate::fake_openai::{reply, FakeServer, FAKE_MODEL};
use crate::remote_support::{self, *};

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use anchorscope::engine::tokenizer::TextTokenizer;
use anchorscope::store::runs::{read_runs, runs_path_for};

/// `analyze TRACE --engine openai --url FAKE --model fake-model --no-embedder ARGS…`.
fn analyze_fake(home: &Path, trace: &Path, port: u16, extra: &[&str]) -> Output {
    let url = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "analyze",
        trace.to_str().unwrap(),
        "--engine",
        "openai",
        "--url",
        &url,
        "--model",
        FAKE_MODEL,
        "--no-embedder",
    ];
    args.extend_from_slice(extra);
    command(home, &args).output().expect("the binary runs")
}

/// Choice `index` of the request seeded `seed`: texts of different lengths within a reply.
fn text_of(seed: i64, index: usize) -> String {
    format!(" s{} {}", seed % 1000, "ab ".repeat(1 + index * 3))
}

/// Four choices per request; `usage` turns the true per-choice counts into the reply's
/// `usage.completion_tokens`. Returns the stored rollouts with their texts' true counts.
fn sample_with_usage(usage: fn(&[u64]) -> u64) -> Vec<(u32, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let model = remote_support::serve_support::tiny_model(dir.path());
    let tokenizer = Arc::new(TextTokenizer::from_gguf(&model).unwrap());
    let count = {
        let tokenizer = Arc::clone(&tokenizer);
        move |text: &str| tokenizer.encode(text).unwrap().len() as u64
    };
    let server = FakeServer::start(move |request| {
        let n = request["n"].as_u64().unwrap_or(1) as usize;
        let seed = request["seed"].as_i64().unwrap_or(0);
        let texts: Vec<String> = (0..n).map(|i| text_of(seed, i)).collect();
        let counts: Vec<u64> = texts.iter().map(|t| count(t)).collect();
        reply(&texts, usage(&counts))
    });
    let trace = write_trace(dir.path());
    write_config(
        dir.path(),
        &format!(
            "[engine]\nn_per_request = 4\nconcurrency = 1\ntokenizer = {:?}\n",
            model.to_str().unwrap()
        ),
    );
    let o = analyze_fake(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0..=1", "-n", "4", "--max-new-tokens", "100"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(server.ns().iter().all(|&n| n == 4), "{:?}", server.ns());
    let rollouts = stored(&trace);
    assert_eq!(rollouts.len(), 8);
    rollouts
        .iter()
        .map(|r| (r.tokens, tokenizer.encode(&r.text).unwrap().len() as u64))
        .collect()
}

#[test]
fn a_summed_usage_is_stored_per_rollout() {
    // vLLM's and SGLang's shape: the reply's usage is the sum over its choices.
    let got = sample_with_usage(|counts| counts.iter().sum());
    for (stored, truth) in &got {
        assert_eq!(u64::from(*stored), *truth, "{got:?}");
    }
    let distinct: HashSet<u32> = got.iter().map(|(s, _)| *s).collect();
    assert!(
        distinct.len() > 1,
        "an even split would give one count: {got:?}"
    );
}

#[test]
fn a_usage_that_is_not_the_sum_gives_way_to_counting_the_text() {
    // The llama-server: one choice's worth for the whole reply (an even split stored
    // a quarter of each rollout's tokens).
    let got = sample_with_usage(|counts| counts.iter().copied().max().unwrap_or(0));
    for (stored, truth) in &got {
        assert_eq!(u64::from(*stored), *truth, "{got:?}");
    }
}

#[test]
fn identical_choices_for_a_seed_fall_back_to_one_request_per_seed() {
    // A server that seeds every choice of a request alike: n copies of one continuation.
    let server = FakeServer::start(|request| {
        let n = request["n"].as_u64().unwrap_or(1) as usize;
        let text = format!(" the continuation of seed {}.", request["seed"]);
        reply(&vec![text; n], 8 * n as u64)
    });
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(dir.path(), "[engine]\nn_per_request = 4\nconcurrency = 1\n");
    let o = analyze_fake(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "0..=2", "-n", "4", "--max-new-tokens", "32"],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("identical")).collect();
    assert_eq!(warnings.len(), 1, "warned once:\n{err}");
    assert!(
        warnings[0].contains(&format!("127.0.0.1:{}", server.port))
            && warnings[0].contains("one continuation"),
        "{err}"
    );

    // Nothing duplicated was stored: one rollout per seed, each its own seed's text.
    let rollouts = stored(&trace);
    assert_eq!(
        per_position(&rollouts).into_iter().collect::<Vec<_>>(),
        vec![(0, 4), (1, 4), (2, 4)]
    );
    assert_unique_seeds(&rollouts);
    let texts: HashSet<(usize, &str)> = rollouts
        .iter()
        .map(|r| (r.position, r.text.as_str()))
        .collect();
    assert_eq!(
        texts.len(),
        rollouts.len(),
        "a text stored twice at a position"
    );
    for r in &rollouts {
        let wire = r.seed as i64;
        assert_eq!(r.text, format!(" the continuation of seed {wire}."));
    }

    // One request asked for 4; after its duplicates every request asked for one.
    assert_eq!(server.ns()[0], 4);
    assert!(
        server.ns()[1..].iter().all(|&n| n == 1),
        "{:?}",
        server.ns()
    );
    assert_eq!(server.ns().len(), 12);

    // The run's provenance: the fallback starts a run whose record says so, and only the
    // duplicated reply's first choice belongs to the run before it.
    let runs = read_runs(&runs_path_for(&store_of(&trace))).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs[0].notes.iter().any(|n| n.contains("ESTIMATED")),
        "{runs:?}"
    );
    assert!(!runs[0].notes.iter().any(|n| n.contains("identical")));
    assert!(
        runs[1].notes.iter().any(|n| n.contains("identical")),
        "{runs:?}"
    );
    assert_eq!(runs[0].difference(&runs[1]), None, "the two runs pool");
    let in_run = |id: &str| {
        rollouts
            .iter()
            .filter(|r| r.run.as_deref() == Some(id))
            .count()
    };
    assert_eq!((in_run(&runs[0].id), in_run(&runs[1].id)), (1, 11));
}
