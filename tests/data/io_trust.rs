//! Numbers a researcher can trust: Thought Anchors folders indexed by `chunk_idx`
//! and realigned, behavior names from the data, tags and dependencies; full folders with their
//! rollouts ("ours" next to "theirs"); the store under faults; export clobbering.
//!
//! The real folders in ../shared are read when present (a note and skip locally when absent,
//! a failure under CI=true); every other fixture is written by the tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorscope::analysis::{analyze_trace, AnalysisOptions, MetricSource};
use anchorscope::loaded::{load_path, LoadedTrace};
use anchorscope::trace::split::SplitOptions;
use serde_json::{json, Value};

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/thought-anchors")
        .join(rel);
    if p.is_dir() {
        return Some(p);
    }
    crate::prereq::missing(&p.display().to_string());
    None
}

fn load_one(dir: &Path) -> LoadedTrace {
    let mut o = load_path(dir, &SplitOptions::default()).unwrap();
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(o.traces.len(), 1);
    o.traces.remove(0)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// For every record of a real folder: our sentence p carries record p's rate; the resampling
/// importance is n/a or equals rate[p+1] − rate[p] (so it sits on its own sentence); the
/// counterfactual is minus theirs or n/a; tags and summary are carried; `depends_on` names
/// sentences by their chunk_idx.
fn check_real_folder(rel: &str, behavior: &str, rate_key: &str) {
    let Some(dir) = shared(rel) else { return };
    let records: Vec<Value> =
        serde_json::from_value(read_json(&dir.join("chunks_labeled.json"))).unwrap();
    let loaded = load_one(&dir);
    let t = &loaded.trace;
    assert_eq!(t.sentences.len(), records.len());
    assert_eq!(t.imported.len(), 1);
    let imp = &t.imported[0];
    assert_eq!(imp.behavior, behavior);
    assert!(imp.note.contains(rate_key), "{}", imp.note);
    // Their depends_on numbers records by position in the list (see the importer).
    let position_of = |idx: u64| Some(idx as usize);
    let mut na = 0;
    for (p, (m, r)) in imp.sentences.iter().zip(&records).enumerate() {
        assert_eq!(
            m.chunk_idx,
            r["chunk_idx"].as_u64().map(|i| i as usize),
            "S{p}"
        );
        assert_eq!(m.rate, r[rate_key].as_f64(), "S{p}");
        match m.resampling_importance {
            Some(d) => {
                let next = records[p + 1][rate_key].as_f64().unwrap();
                let now = r[rate_key].as_f64().unwrap();
                assert!(
                    (d - (next - now)).abs() < 1e-9,
                    "S{p}: {d} vs {}",
                    next - now
                );
            }
            None => na += 1,
        }
        let theirs = r[format!("counterfactual_importance_{rate_key}")]
            .as_f64()
            .unwrap();
        if let Some(ours) = m.counterfactual_importance {
            assert_eq!(ours, -theirs, "S{p}: our sign is theirs negated");
        } else {
            assert!(
                theirs == 0.0 || p + 1 == records.len(),
                "S{p}: only placeholders are n/a"
            );
        }
        let tags: Vec<String> = serde_json::from_value(r["function_tags"].clone()).unwrap();
        assert_eq!(m.tags, tags, "S{p}");
        assert_eq!(m.summary.as_deref(), r["summary"].as_str(), "S{p}");
        let deps: Vec<usize> = r["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| position_of(d.as_str().unwrap().parse().unwrap()))
            .collect();
        assert_eq!(m.depends_on, deps, "S{p}");
    }
    // The last record has nothing after it: n/a, not 0.
    assert!(imp
        .sentences
        .last()
        .unwrap()
        .resampling_importance
        .is_none());
    assert!(na >= 1);
    // The analysis shows the folder's behavior.
    let a = analyze_trace(t, &loaded.rollouts, &[], &AnalysisOptions::default());
    assert_eq!(a.behavior_names(), vec![behavior]);
}

#[test]
fn real_blackmail_folder_with_gaps_in_chunk_idx() {
    check_real_folder(
        "qwq-32b/yes_base_solution_blackmail/scenario_1",
        "blackmail",
        "blackmail_rate",
    );
    let Some(dir) = shared("qwq-32b/yes_base_solution_blackmail/scenario_1") else {
        return;
    };
    let t = load_one(&dir).trace;
    // Their record for chunk_idx 5 precedes a gap (6 is missing): its stored 0 is a placeholder.
    let five = t.imported[0]
        .sentences
        .iter()
        .find(|m| m.chunk_idx == Some(5))
        .unwrap();
    assert_eq!(five.resampling_importance, None);
    assert_eq!(
        t.meta.get("base_contains_blackmail").map(String::as_str),
        Some("true")
    );
}

#[test]
fn real_whistleblowing_and_math_folders() {
    check_real_folder(
        "qwq-32b/yes_base_solution_whistleblow/scenario_0",
        "whistleblowing",
        "whistleblowing_rate",
    );
    check_real_folder(
        "deepseek-r1-distill-llama-8b/incorrect_base_solution/problem_330",
        "correct",
        "accuracy",
    );
}

/// A folder written by the test: chunks with a gap in chunk_idx (3 is missing).
fn write_folder(dir: &Path, records: &[Value], solution: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("base_solution.json"),
        json!({"prompt": "Solve it.", "solution": solution, "is_correct": true}).to_string(),
    )
    .unwrap();
    fs::write(
        dir.join("chunks_labeled.json"),
        Value::Array(records.to_vec()).to_string(),
    )
    .unwrap();
}

const SOLUTION: &str = "First we add the numbers. Then we carry the one. 2. \
                        Next we check the sum. After that we divide it. Finally we answer.";
const CHUNKS: [&str; 5] = [
    "First we add the numbers.",
    "Then we carry the one.",
    "Next we check the sum.",
    "After that we divide it.",
    "Finally we answer.",
];
const IDX: [u64; 5] = [0, 1, 2, 4, 5];
const RATES: [f64; 5] = [0.2, 0.5, 0.4, 0.9, 0.6];

fn record(p: usize, metrics_of: Option<usize>) -> Value {
    // The metrics the record at `p` holds: those of record `metrics_of` (its own when aligned).
    let (ri, cf) = match metrics_of {
        Some(q) if q + 1 < RATES.len() => (RATES[q + 1] - RATES[q], -(0.1 * (q as f64 + 1.0))),
        _ => (0.0, 0.0),
    };
    json!({
        "chunk": CHUNKS[p],
        "chunk_idx": IDX[p],
        "function_tags": [format!("tag{p}")],
        // Positions in the labelled list, as their labeller writes them.
        "depends_on": if p > 0 { vec![(p - 1).to_string()] } else { vec![] },
        "accuracy": RATES[p],
        "resampling_importance_accuracy": ri,
        "counterfactual_importance_accuracy": cf,
        "different_trajectories_fraction": 0.5,
        "summary": format!("step {p}"),
    })
}

#[test]
fn metrics_stored_one_record_late_after_a_gap_are_realigned_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m/incorrect_base_solution/problem_1");
    // Records 0..=2 aligned; from record 3 (the first after the gap) each holds its
    // predecessor's metrics, as their positional pipeline wrote them.
    let records: Vec<Value> = (0..5)
        .map(|p| record(p, if p < 3 { Some(p) } else { Some(p - 1) }))
        .collect();
    write_folder(&folder, &records, SOLUTION);
    let t = load_one(&folder).trace;
    let imp = &t.imported[0];
    for p in 0..4 {
        let want = RATES[p + 1] - RATES[p];
        let got = imp.sentences[p].resampling_importance.unwrap();
        assert!((got - want).abs() < 1e-12, "S{p}: {got} vs {want}");
        assert!(
            (imp.sentences[p].counterfactual_importance.unwrap() - 0.1 * (p as f64 + 1.0)).abs()
                < 1e-12
        );
    }
    // The last sentence's own metrics were never stored.
    assert_eq!(imp.sentences[4].resampling_importance, None);
    assert!(
        imp.notes.iter().any(|n| n.starts_with("realigned")),
        "{:?}",
        imp.notes
    );
    // Dependencies are positions: record 3 (chunk 4) depends on record 2.
    assert_eq!(imp.sentences[3].depends_on, vec![2]);
    // Tags stay with their own sentence.
    assert_eq!(imp.sentences[3].tags, vec!["tag3".to_string()]);
}

#[test]
fn an_aligned_file_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("problem_2");
    let records: Vec<Value> = (0..5).map(|p| record(p, Some(p))).collect();
    write_folder(&folder, &records, SOLUTION);
    let t = load_one(&folder).trace;
    let imp = &t.imported[0];
    assert!(
        imp.notes.iter().all(|n| !n.starts_with("realigned")),
        "{:?}",
        imp.notes
    );
    for p in 0..4 {
        assert!(
            (imp.sentences[p].resampling_importance.unwrap() - (RATES[p + 1] - RATES[p])).abs()
                < 1e-12
        );
    }
}

/// A full folder: five records (chunk_idx 0, 1, 2, 4, 5) and the rollouts of chunks 4 and 5
/// (sentences 3 and 4), every replacement being "y"; one rollout of chunk 4 has no answer.
fn full_folder(parent: &Path) -> PathBuf {
    let folder = parent.join("problem_3");
    let records: Vec<Value> = (0..5).map(|p| record(p, Some(p))).collect();
    write_folder(&folder, &records, SOLUTION);
    // chunk_4 is sentence 3 (chunk 3 does not exist); one rollout has no answer.
    let sols = |correct: &[(bool, &str)]| {
        Value::Array(
            correct
                .iter()
                .map(|(c, a)| {
                    json!({"chunk_removed": "x", "chunk_resampled": "y", "rollout": "text",
                           "answer": a, "is_correct": c})
                })
                .collect(),
        )
        .to_string()
    };
    for (idx, body) in [
        (4, sols(&[(true, "3"), (true, "3"), (false, "")])),
        (5, sols(&[(false, "4"), (false, "4")])),
    ] {
        let d = folder.join(format!("chunk_{idx}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("solutions.json"), body).unwrap();
    }
    folder
}

#[test]
fn full_folder_rollouts_go_by_chunk_idx_and_theirs_stays_next_to_ours() {
    let dir = tempfile::tempdir().unwrap();
    let folder = full_folder(dir.path());
    let loaded = load_one(&folder);
    let positions: Vec<usize> = loaded.rollouts.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![3, 3, 3, 4, 4]);
    let a = analyze_trace(
        &loaded.trace,
        &loaded.rollouts,
        &[],
        &AnalysisOptions::default(),
    );
    assert_eq!(a.behavior_names(), vec!["correct", "correct (theirs)"]);
    let ours = a.behavior("correct").unwrap();
    assert!(matches!(ours.source, MetricSource::Rollouts));
    // The rollout without an answer left the denominator: 2 of 2 valid at sentence 3, 1 invalid.
    assert_eq!(ours.positions[3].k, 2);
    assert_eq!(ours.positions[3].m, 2);
    assert_eq!(ours.invalid[3], 1);
    // Ours: Δ_3 = rate_4 − rate_3 = 0 − 1.
    assert_eq!(ours.sentences[3].resampling.unwrap().value, -1.0);
    let theirs = a.behavior("correct (theirs)").unwrap();
    assert!((theirs.sentences[3].resampling.unwrap().value - (RATES[4] - RATES[3])).abs() < 1e-12);
}

/// Their solutions.json has the replacement but not its similarity, so our counterfactual
/// importance needs the embedder's similarities; once computed they are cached beside the
/// store and every later load uses them.
#[test]
fn cached_similarities_give_full_folders_our_counterfactual_importance() {
    use anchorscope::store::similarities::{
        append_cache, similarities_path_for, text_hash, CachedSimilarity, EMBEDDER,
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = full_folder(dir.path());
    let ours = |loaded: &LoadedTrace| {
        analyze_trace(
            &loaded.trace,
            &loaded.rollouts,
            &[],
            &AnalysisOptions::default(),
        )
        .behavior("correct")
        .unwrap()
        .clone()
    };
    let before = load_one(&folder);
    assert!(ours(&before).sentences[3].counterfactual.is_none());

    // "y" is unlike sentence 3 (0.2 < the 0.8 threshold): all its replacements are different.
    let original = before.trace.sentences[3].text.clone();
    append_cache(
        &similarities_path_for(&before.store_path),
        &[CachedSimilarity {
            embedder: EMBEDDER.into(),
            original: text_hash(&original),
            replacement: text_hash("y"),
            similarity: 0.2,
        }],
    )
    .unwrap();
    let after = load_one(&folder);
    let sims: Vec<Option<f32>> = after.rollouts.iter().map(|r| r.similarity).collect();
    assert_eq!(sims, [Some(0.2), Some(0.2), Some(0.2), None, None]);
    let b = ours(&after);
    // Δcf_3 = rate_4 − rate(D_3) = 0/2 − 2/2 (the rollout with no answer leaves D_3's count).
    let cf = b.sentences[3].counterfactual.unwrap();
    assert_eq!(cf.value, -1.0);
    assert_eq!(b.sentences[3].different_fraction, Some(1.0));
    assert!(
        b.sentences[4].counterfactual.is_none(),
        "sentence 4 has no cached similarity"
    );
}

/// The binary says why our counterfactual importance is n/a when no embedder is installed.
#[test]
fn stats_says_when_similarities_cannot_be_computed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = full_folder(dir.path());
    let out = run(dir.path(), &["stats", folder.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 stored replacement(s) have no similarity")
            && stderr.contains("anchorscope model install"),
        "{stderr}"
    );
}

/// With the real embedder installed (`anchorscope model install`), `stats` computes the
/// similarities once, caches them, and reports our counterfactual importance.
#[test]
fn stats_computes_and_caches_similarities_with_the_installed_embedder() {
    let embedder = anchorscope::engine::install::embedder_dir();
    if !embedder.join("model.safetensors").is_file() {
        crate::prereq::missing("the installed embedder (anchorscope model install)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = full_folder(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(["stats", "--json", folder.to_str().unwrap()])
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = stats["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["behavior"] == "correct")
        .unwrap();
    let s3 = &ours["sentences"][3];
    assert!(s3["different_fraction"].is_number(), "{s3}");
    let cache = folder.join("anchorscope.similarities.jsonl");
    assert_eq!(fs::read_to_string(&cache).unwrap().lines().count(), 2);
}

// ---- The binary under faults ----

fn run(cwd: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn sample(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces");
    for name in [
        "q-lockpicking-000-free.json",
        "q-lockpicking-000-free.rollouts.jsonl",
    ] {
        fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    dir.join("q-lockpicking-000-free.json")
}

#[test]
fn a_corrupt_middle_line_is_skipped_with_its_line_number_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let store = dir.path().join("q-lockpicking-000-free.rollouts.jsonl");
    let text = fs::read_to_string(&store).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 4);
    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    damaged[2] = "{\"position\": 1, \"seed\": 5, BROKEN".into();
    fs::write(&store, damaged.join("\n") + "\n").unwrap();
    let o = run(dir.path(), &["stats", trace.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rollouts"].as_u64().unwrap() as usize, lines.len() - 1);
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains(":3: skipped"), "{warnings}");
}

#[test]
fn export_refuses_to_clobber_its_input_its_store_devices_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let before = fs::read(&trace).unwrap();
    let t = trace.to_str().unwrap();
    for out in [
        t.to_string(),
        "./q-lockpicking-000-free.json".to_string(),
        "q-lockpicking-000-free.rollouts.jsonl".to_string(),
        "/dev/null".to_string(),
    ] {
        let o = run(dir.path(), &["export", t, "--format", "json", "-o", &out]);
        assert!(!o.status.success(), "{out} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("refusing to write"), "{out}: {err}");
    }
    #[cfg(unix)]
    {
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("link.json")).unwrap();
        let o = run(
            dir.path(),
            &["export", t, "--format", "json", "-o", "link.json"],
        );
        assert!(!o.status.success());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    }
    assert_eq!(fs::read(&trace).unwrap(), before, "the input is untouched");
    assert!(Path::new("/dev/null").exists());
    // A plain new file is fine.
    let o = run(
        dir.path(),
        &["export", t, "--format", "csv", "-o", "out.csv"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn stats_and_split_strip_terminal_escapes_from_trace_text() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&trace).unwrap()).unwrap();
    let first = v["sentences"][0].clone();
    let (start, end) = (
        first["start"].as_u64().unwrap() as usize,
        first["end"].as_u64().unwrap() as usize,
    );
    let response = v["response"].as_str().unwrap().to_string();
    // Same byte length, so every offset stays valid: replace the sentence's first 12 bytes.
    let evil = "\u{1b}]0;pwned\u{7}";
    assert_eq!(evil.len(), 10);
    let mut new = response[..start].to_string();
    new.push_str(evil);
    new.push_str(&response[start + evil.len()..]);
    v["response"] = Value::String(new.clone());
    v["sentences"][0]["text"] = Value::String(new[start..end].to_string());
    fs::write(&trace, v.to_string()).unwrap();
    for args in [vec!["stats"], vec!["split"]] {
        let mut all = args.clone();
        all.push(trace.to_str().unwrap());
        let o = run(dir.path(), &all);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stdout.contains(&0x1b), "{args:?} printed an escape");
    }
}

#[test]
fn every_export_format_says_which_runs_were_pooled() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample(dir.path());
    let t = trace.to_str().unwrap();
    for (format, file) in [
        ("markdown", "o.md"),
        ("html", "o.html"),
        ("csv", "o.csv"),
        ("json", "o.json"),
    ] {
        let o = run(dir.path(), &["export", t, "--format", format, "-o", file]);
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(
            text.contains("pooled runs: 1 of 1") || text.contains("\"pooled_runs\""),
            "{format} does not say which runs were pooled"
        );
    }
}
