//! The `anchorscope` binary, driven as a user would: help, split, stats, export, and errors.
//! Every run gets an empty HOME / XDG_CONFIG_HOME so a developer's own config cannot leak in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorscope::trace::Trace;

const SAMPLE: &str = "example-free-tier-complies";

fn sample_path(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-traces")
        .join(format!("{id}.json"))
}

fn sample_trace(id: &str) -> Trace {
    let text = std::fs::read_to_string(sample_path(id)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Run the binary in `cwd` with an isolated config home.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
}

fn run(args: &[&str]) -> Output {
    run_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run that reported a user error: non-zero exit, `error:` first, no panic.
fn assert_user_error(o: &Output) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure; stdout: {}",
        stdout(o)
    );
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert!(!err.contains("stack backtrace"), "stderr: {err}");
    err
}

/// `[i] start..end  text` → (i, start, end, text with `\n` unescaped).
fn parse_split_line(line: &str) -> (usize, usize, usize, String) {
    let (idx, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let (range, text) = rest.split_once("  ").unwrap();
    let (a, b) = range.split_once("..").unwrap();
    let text = text.replace("\\r", "\r").replace("\\n", "\n");
    (
        idx.parse().unwrap(),
        a.parse().unwrap(),
        b.parse().unwrap(),
        text,
    )
}

/// Ranges are in order, disjoint, on char boundaries, inside the reasoning, and index `text`.
fn check_ranges(response: &str, rows: &[(usize, usize, usize, String)]) {
    let reasoning_end = response.find("<OUTPUT>").unwrap_or(response.len());
    let mut last_end = 0;
    for (n, (i, start, end, text)) in rows.iter().enumerate() {
        assert_eq!(*i, n, "indices count up from 0");
        assert!(
            start < end && *start >= last_end,
            "ordered, disjoint: {rows:?}"
        );
        assert!(*end <= reasoning_end, "sentence {i} lies in the reasoning");
        assert!(response.is_char_boundary(*start) && response.is_char_boundary(*end));
        assert_eq!(
            &response[*start..*end],
            text,
            "sentence {i} is its byte range"
        );
        assert!(
            !text.contains("SCRATCHPAD_REASONING>"),
            "tags are not sentences"
        );
        last_end = *end;
    }
}

// ---- help and usage (no dependency on other modules) ----

#[test]
fn help_lists_every_command() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for cmd in ["open", "split", "stats", "export", "--config"] {
        assert!(out.contains(cmd), "--help mentions {cmd}:\n{out}");
    }
}

#[test]
fn every_command_has_help_with_its_options() {
    let cases: [(&str, &[&str]); 4] = [
        ("open", &["PATH"]),
        (
            "split",
            &[
                "--text",
                "--min-chars",
                "--no-blank-lines",
                "--json",
                "--trace",
            ],
        ),
        (
            "stats",
            &[
                "--behavior",
                "--importance",
                "counterfactual",
                "--json",
                "--trace",
            ],
        ),
        (
            "export",
            &["--format", "html", "csv", "markdown", "--output", "--trace"],
        ),
    ];
    for (cmd, options) in cases {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        let out = stdout(&o);
        for opt in options {
            assert!(out.contains(opt), "{cmd} --help mentions {opt}:\n{out}");
        }
    }
}

#[test]
fn unknown_option_is_a_usage_error() {
    let o = run(&["stats", "x.json", "--importance", "bogus"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bogus"));
}

#[test]
fn path_before_a_command_is_rejected() {
    let o = run(&["somewhere", "stats", "x.json"]);
    assert!(!o.status.success());
}

// ---- errors (no dependency on other modules) ----

#[test]
fn missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let o = run(&["stats", missing.to_str().unwrap()]);
    let err = assert_user_error(&o);
    assert!(err.contains("nope.json"), "{err}");
}

#[test]
fn malformed_trace_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-trace.json");
    std::fs::write(
        &bad,
        "{\"format\": \"anchorscope-trace\", \"version\": 1,\n  \"id\": ",
    )
    .unwrap();
    for cmd in ["split", "stats", "export"] {
        let mut args = vec![cmd, bad.to_str().unwrap()];
        if cmd == "export" {
            args.extend(["--format", "json"]);
        }
        let o = run_in(dir.path(), &args);
        let err = assert_user_error(&o);
        assert!(err.contains("bad-trace.json"), "{cmd}: {err}");
    }
}

#[test]
fn no_path_and_no_samples_dir_gives_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &[]);
    let err = assert_user_error(&o);
    assert!(err.contains("sample-traces"), "{err}");
    assert!(err.contains("hint"), "{err}");
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let o = run(&["--config", "/no/such/anchorscope.toml", "split", "x"]);
    let err = assert_user_error(&o);
    assert!(err.contains("/no/such/anchorscope.toml"), "{err}");
}

// ---- these need the importers and the splitter (trace-io helper) ----

#[test]
fn malformed_trace_error_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-trace.json");
    std::fs::write(
        &bad,
        "{\"format\": \"anchorscope-trace\", \"version\": 1,\n  \"id\": ",
    )
    .unwrap();
    let o = run(&["stats", bad.to_str().unwrap()]);
    let err = assert_user_error(&o);
    assert!(err.contains("line"), "error names the line: {err}");
}

#[test]
fn split_prints_sentences_with_byte_ranges_into_the_response() {
    let trace = sample_trace(SAMPLE);
    let path = sample_path(SAMPLE);
    let o = run(&["split", path.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let rows: Vec<_> = stdout(&o).lines().map(parse_split_line).collect();
    assert!(rows.len() >= 5, "at least 5 sentences, got {}", rows.len());
    check_ranges(&trace.response, &rows);
    assert!(
        rows.iter()
            .any(|r| r.3.contains("free tier") || r.3.contains("is_free_tier_user")),
        "the tier sentence is found: {rows:?}"
    );
}

#[test]
fn split_json_matches_the_text_output() {
    let trace = sample_trace(SAMPLE);
    let path = sample_path(SAMPLE);
    let o = run(&["split", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let rows: Vec<(usize, usize, usize, String)> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            assert_eq!(r["trace"], SAMPLE);
            (
                r["index"].as_u64().unwrap() as usize,
                r["start"].as_u64().unwrap() as usize,
                r["end"].as_u64().unwrap() as usize,
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(rows.len() >= 5);
    check_ranges(&trace.response, &rows);
    let text = run(&["split", path.to_str().unwrap()]);
    let text_rows: Vec<_> = stdout(&text).lines().map(parse_split_line).collect();
    assert_eq!(rows, text_rows);
}

#[test]
fn split_text_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    let body =
        "Ok. This sentence is long enough.\n\nA paragraph without a final stop\nthat goes on";
    std::fs::write(&file, body).unwrap();
    let f = file.to_str().unwrap();

    let o = run(&["split", "--text", f, "--json"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    // "Ok." is shorter than 10 characters, so it merges into the next sentence; the blank line
    // ends that sentence; the tail without a stop is kept.
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        let (s, e) = (
            r["start"].as_u64().unwrap() as usize,
            r["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&body[s..e], r["text"].as_str().unwrap());
        assert!(r.get("trace").is_none());
    }
    assert!(rows[0]["text"].as_str().unwrap().starts_with("Ok."));
    assert!(rows[1]["text"].as_str().unwrap().ends_with("goes on"));

    let count = |args: &[&str]| -> usize {
        let o = run(args);
        assert!(o.status.success(), "stderr: {}", stderr(&o));
        stdout(&o).lines().count()
    };
    assert_eq!(count(&["split", "--text", f, "--min-chars", "1"]), 3);

    // Only the blank line separates these two chunks.
    let para = dir.path().join("para.txt");
    std::fs::write(
        &para,
        "First part without a stop\n\nsecond part also without",
    )
    .unwrap();
    let p = para.to_str().unwrap();
    assert_eq!(count(&["split", "--text", p]), 2);
    assert_eq!(count(&["split", "--text", p, "--no-blank-lines"]), 1);
}

#[test]
fn stats_json_parses_and_shows_no_statistics_for_samples() {
    let path = sample_path(SAMPLE);
    let o = run(&["stats", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["trace"], SAMPLE);
    assert_eq!(v["rollouts"], 0);
    let behaviors = v["behaviors"].as_array().unwrap();
    let names: Vec<&str> = behaviors
        .iter()
        .map(|b| b["behavior"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"compliance") && names.contains(&"alignment_faking"),
        "{names:?}"
    );
    for b in behaviors {
        let sentences = b["sentences"].as_array().unwrap();
        assert!(sentences.len() >= 5);
        for s in sentences {
            // Hand-written samples have no rollouts: every importance is undefined, never 0.
            assert!(
                s["counterfactual"].is_null() && s["resampling"].is_null(),
                "{s}"
            );
            assert_eq!(s["n"], 0);
        }
    }
}

#[test]
fn stats_table_marks_undefined_values_and_filters_behavior() {
    let path = sample_path(SAMPLE);
    let o = run(&["stats", path.to_str().unwrap(), "--behavior", "compliance"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("no rollouts stored"), "{out}");
    assert!(
        out.contains("hand-written example"),
        "manifest note shown: {out}"
    );
    assert!(out.contains("n/a"), "{out}");
    assert!(
        !out.contains("\nalignment_faking\n"),
        "filtered to one behavior: {out}"
    );

    let o = run(&["stats", path.to_str().unwrap(), "--behavior", "nope"]);
    let err = assert_user_error(&o);
    assert!(
        err.contains("compliance"),
        "lists the known behaviors: {err}"
    );
}

#[test]
fn stats_on_a_directory_prints_every_trace_or_the_selected_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces");
    let o = run(&["stats", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array().is_some_and(|a| a.len() >= 3),
        "an array of traces"
    );

    let o = run(&[
        "stats",
        dir.to_str().unwrap(),
        "--json",
        "--trace",
        "example-paid-tier-refuses",
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trace"], "example-paid-tier-refuses");
}

#[test]
fn open_without_a_terminal_refuses_after_loading() {
    let o = run(&["open", "sample-traces"]);
    let err = assert_user_error(&o);
    assert!(err.contains("terminal"), "{err}");
}

#[test]
fn empty_directory_has_no_traces() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["stats", dir.path().to_str().unwrap()]);
    let err = assert_user_error(&o);
    assert!(err.contains("no trace"), "{err}");
}

// ---- these also need the exporters and atomic writes (export and trace-io helpers) ----

#[test]
fn export_writes_the_file_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let path = sample_path(SAMPLE);
    let o = run(&[
        "export",
        path.to_str().unwrap(),
        "--format",
        "html",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), out.to_str().unwrap());
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("<html") || html.contains("<!DOCTYPE"),
        "an HTML page"
    );
    assert!(
        html.contains("pin tumbler"),
        "the trace text is in the page"
    );
}

#[test]
fn export_defaults_to_the_stem_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_path(SAMPLE);
    let o = run_in(
        dir.path(),
        &["export", path.to_str().unwrap(), "--format", "markdown"],
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let expected = format!("{SAMPLE}.md");
    assert_eq!(stdout(&o).trim(), expected);
    let md = std::fs::read_to_string(dir.path().join(&expected)).unwrap();
    assert!(md.contains("pin tumbler"), "{md}");
}

#[test]
fn export_csv_has_a_row_per_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.csv");
    let path = sample_path(SAMPLE);
    let o = run(&[
        "export",
        path.to_str().unwrap(),
        "-f",
        "csv",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let split = run(&["split", path.to_str().unwrap()]);
    let sentences = stdout(&split).lines().count();
    let csv = std::fs::read_to_string(&out).unwrap();
    // A header, then at least one row per sentence (one per behavior and sentence is fine too).
    assert!(csv.lines().count() > sentences, "{csv}");
}

#[test]
fn export_of_a_directory_writes_every_trace_into_one_output_directory() {
    let traces = tempfile::tempdir().unwrap();
    for id in [SAMPLE, "example-paid-tier-refuses"] {
        std::fs::copy(sample_path(id), traces.path().join(format!("{id}.json"))).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().join("exports");
    let o = run(&[
        "export",
        traces.path().to_str().unwrap(),
        "-f",
        "json",
        "-o",
        outdir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out_text = stdout(&o);
    let printed: Vec<&str> = out_text.lines().map(str::trim).collect();
    assert_eq!(printed.len(), 2, "{printed:?}");
    for id in [SAMPLE, "example-paid-tier-refuses"] {
        let file = outdir.join(format!("{id}.json"));
        assert!(printed.contains(&file.to_str().unwrap()), "{printed:?}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(json["trace"]["id"], id, "{file:?}");
    }
    // Nothing was written beside the traces, and a second load of that directory is clean:
    // the exports are elsewhere, and would be skipped anyway.
    assert_eq!(std::fs::read_dir(traces.path()).unwrap().count(), 2);
    // -o naming a file for several traces is refused with what to do instead.
    let file = out.path().join("one.json");
    std::fs::write(&file, "{}").unwrap();
    let o = run(&[
        "export",
        traces.path().to_str().unwrap(),
        "-f",
        "json",
        "-o",
        file.to_str().unwrap(),
    ]);
    let err = assert_user_error(&o);
    assert!(
        err.contains("holds 2 traces") && err.contains("--trace"),
        "{err}"
    );
}
