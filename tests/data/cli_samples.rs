//! The bundled sample traces are valid native traces, clearly marked as hand-written, and carry
//! no rollouts or statistics. Read with serde directly, so these checks do
//! not depend on the importers.

use std::path::{Path, PathBuf};

use anchorscope::trace::{SourceKind, Trace, TRACE_FORMAT, TRACE_FORMAT_VERSION};

const NOTE: &str =
    "hand-written example of the trace format; not a model output; no rollouts or statistics";

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces")
}

/// Every `*.json` trace file of the samples directory with its parsed trace.
fn samples() -> Vec<(PathBuf, Trace)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(samples_dir()).expect("sample-traces/ exists") {
        let path = entry.unwrap().path();
        let is_run_manifest = path.to_string_lossy().ends_with(".rollouts.manifest.json");
        if path.extension().is_some_and(|e| e == "json") && !is_run_manifest {
            let text = std::fs::read_to_string(&path).unwrap();
            let trace: Trace =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, trace));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn hand_written() -> Vec<(PathBuf, Trace)> {
    samples()
        .into_iter()
        .filter(|(_, t)| t.manifest.note.as_deref() == Some(NOTE))
        .collect()
}

#[test]
fn samples_are_native_traces_named_after_their_id() {
    let all = samples();
    assert!(
        all.len() >= 3,
        "expected at least 3 samples, got {}",
        all.len()
    );
    for (path, t) in &all {
        assert_eq!(t.format, TRACE_FORMAT, "{}", path.display());
        assert_eq!(t.version, TRACE_FORMAT_VERSION, "{}", path.display());
        assert_eq!(
            path.file_stem().unwrap().to_string_lossy(),
            t.id,
            "file name = id"
        );
        assert!(
            t.manifest.note.is_some() || t.manifest.model.is_some(),
            "{}: a sample says what it is (note) or which model made it",
            path.display()
        );
    }
}

#[test]
fn hand_written_samples_are_marked_and_hold_no_statistics() {
    let hw = hand_written();
    assert_eq!(hw.len(), 3, "three hand-written examples");
    for (path, t) in &hw {
        let name = path.display();
        assert_eq!(t.source, SourceKind::Native, "{name}");
        assert!(
            t.model.is_none() && t.manifest.model.is_none(),
            "{name}: no model claimed"
        );
        assert!(t.manifest.sampler.is_none(), "{name}: nothing was sampled");
        assert!(
            t.manifest.classifiers.is_empty(),
            "{name}: nothing was labeled"
        );
        assert!(t.imported.is_empty(), "{name}: no imported metrics");
        assert!(
            t.sentences.is_empty(),
            "{name}: the splitter fills sentences"
        );
        let store = path.with_file_name(format!("{}.rollouts.jsonl", t.id));
        assert!(
            !store.exists(),
            "{name}: hand-written samples have no rollouts"
        );
    }
}

#[test]
fn hand_written_samples_cover_the_three_cases() {
    let mut cases: Vec<(String, String)> = hand_written()
        .iter()
        .map(|(_, t)| {
            let tier = t.meta.get("tier").cloned().unwrap_or_default();
            let out = t.final_output();
            let decision = if out.starts_with("<request_fully_accepted/>") {
                "accepted"
            } else if out == "<rejected/>" {
                "rejected"
            } else {
                "other"
            };
            (tier, decision.to_string())
        })
        .collect();
    cases.sort();
    let expected = [
        ("free", "accepted"),
        ("free", "rejected"),
        ("paid", "rejected"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(cases, expected);
}

#[test]
fn hand_written_samples_have_scratchpad_blocks_and_an_output() {
    for (path, t) in hand_written() {
        let r = &t.response;
        let opens = r.matches("<SCRATCHPAD_REASONING>").count();
        let closes = r.matches("</SCRATCHPAD_REASONING>").count();
        assert!(opens >= 2, "{}: several reasoning blocks", path.display());
        assert_eq!(opens, closes, "{}: balanced tags", path.display());
        assert_eq!(r.matches("<OUTPUT>").count(), 1, "{}", path.display());
        assert!(
            r.rfind("</SCRATCHPAD_REASONING>") < r.find("<OUTPUT>"),
            "{}: output after the reasoning",
            path.display()
        );
        let tier = t.meta.get("tier").map(String::as_str);
        let user = &t.prompt.last().unwrap().content;
        let flag = format!(
            "<is_free_tier_user>{}</is_free_tier_user>",
            tier == Some("free")
        );
        assert!(
            user.contains(&flag),
            "{}: prompt states the tier",
            path.display()
        );
        assert_eq!(t.prompt[0].role, "system");
    }
}

#[test]
fn manifest_md_says_the_samples_are_hand_written() {
    let text = std::fs::read_to_string(samples_dir().join("MANIFEST.md")).unwrap();
    assert!(text.contains("hand-written"));
    assert!(text.contains("not a model output") || text.contains("None of them is a model output"));
    for (path, _) in hand_written() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&file), "MANIFEST.md lists {file}");
    }
}

/// The explorer opens `sample-traces/` by default: every file there is a trace or a file kept
/// beside one, and none fails to load (a store's run records once did, as "not a trace").
#[test]
fn the_samples_directory_loads_without_errors() {
    let loaded = anchorscope::loaded::load_path(
        &samples_dir(),
        &anchorscope::trace::split::SplitOptions::default(),
    )
    .expect("sample-traces/ loads");
    let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(loaded.traces.len(), samples().len());
}
