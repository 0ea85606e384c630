//! `anchorscope bench adaptive` on the real Thought Anchors folders in ../shared (read from
//! there, never copied; a note and skip locally when absent, a failure under CI=true).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FOLDERS: [(&str, u64); 3] = [
    (
        "deepseek-r1-distill-llama-8b/incorrect_base_solution/problem_330",
        26,
    ),
    ("qwq-32b/yes_base_solution_whistleblow/scenario_0", 35),
    ("qwq-32b/yes_base_solution_blackmail/scenario_1", 156),
];

fn shared_folders() -> Option<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/thought-anchors");
    let dirs: Vec<PathBuf> = FOLDERS.iter().map(|(rel, _)| root.join(rel)).collect();
    if let Some(absent) = dirs.iter().find(|d| !d.is_dir()) {
        crate::prereq::missing(&absent.display().to_string());
        return None;
    }
    Some(dirs)
}

fn bench(dirs: &[PathBuf], extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_anchorscope"))
        .args(["bench", "adaptive"])
        .args(dirs)
        .args(extra)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .expect("the binary runs")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn share(v: &Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
    assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    x
}

#[test]
fn bench_adaptive_json_on_the_shared_folders() {
    let Some(dirs) = shared_folders() else { return };
    let out = json(&bench(&dirs, &["--json", "--reps", "40", "--seed", "3"]));
    // The fixed design is n_max at every position of every folder; the adaptive one never
    // uses more, and the savings are what the two counts say.
    let positions: u64 = FOLDERS.iter().map(|(_, p)| p).sum();
    assert_eq!(
        out["fixed_rollouts"].as_f64(),
        Some(100.0 * positions as f64)
    );
    let (fixed, adaptive) = (
        out["fixed_rollouts"].as_f64().unwrap(),
        out["adaptive_rollouts"].as_f64().unwrap(),
    );
    assert!(adaptive < fixed, "{adaptive} vs {fixed}");
    assert!((share(&out, "savings") - (1.0 - adaptive / fixed)).abs() < 1e-9);
    for key in ["recall", "precision", "sign_agreement"] {
        share(&out, key);
    }
    // The defaults keep what the fixed run finds (the README has the numbers: 0.987
    // pooled over 200 repetitions), and on these folders they save less than the clairvoyant
    // reference, which knows in advance which sentences the fixed run will find.
    assert!(share(&out, "recall") > 0.95, "{out}");
    assert!(
        share(&out, "oracle_savings") > share(&out, "savings"),
        "{out}"
    );
    let folders = out["folders"].as_array().unwrap();
    assert_eq!(folders.len(), 3);
    for (f, (_, positions)) in folders.iter().zip(FOLDERS) {
        assert_eq!(f["fixed_rollouts"].as_f64(), Some(100.0 * positions as f64));
        assert_eq!(f["sentences"].as_u64(), Some(positions - 1));
        assert!(f["adaptive_rollouts"].as_f64().unwrap() > 0.0);
    }
    // Deterministic for a seed.
    let again = json(&bench(&dirs, &["--json", "--reps", "40", "--seed", "3"]));
    assert_eq!(out, again);
}

#[test]
fn with_nothing_to_stop_early_adaptive_is_the_fixed_run() {
    // No interim α, no futility, no ε, no sparse phase: every position reaches n_max through
    // rounds, reading the fixed run's own draws, and the one look at n_max uses z = 1.96. The
    // two runs must then agree exactly: the simulation shares its random streams.
    let Some(dirs) = shared_folders() else { return };
    let out = json(&bench(
        &dirs,
        &[
            "--json",
            "--reps",
            "10",
            "--interim-alpha",
            "0",
            "--futility",
            "0",
            "--epsilon",
            "0",
            "--stride",
            "1",
        ],
    ));
    assert_eq!(share(&out, "savings"), 0.0, "{out}");
    assert_eq!(share(&out, "recall"), 1.0, "{out}");
    assert_eq!(share(&out, "precision"), 1.0, "{out}");
    assert_eq!(share(&out, "sign_agreement"), 1.0, "{out}");
}

#[test]
fn a_folder_without_chunk_rates_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(&[dir.path().to_path_buf()], &["--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
