//! End to end: the real binary in a real terminal (tmux). Open a trace, move, switch behavior,
//! export from the explorer, quit, and check the screen, the exit status and the exported file.
//!
//! Needs `tmux` (CI installs it). Without it the test is skipped with a note, except under CI,
//! where a missing tmux is a failure so the end-to-end check can never silently vanish.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_anchorscope");

/// A tmux server of our own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `name` keeps the servers of tests running in parallel apart.
    fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let socket = format!("anchorscope-e2e-{}-{name}", std::process::id());
        let tmux = Tmux { socket };
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "e2e", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("start tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c.env_remove("NO_COLOR");
        c
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .cmd()
                .args(["send-keys", "-t", "e2e", k])
                .status()
                .expect("send-keys")
                .success();
            assert!(ok, "send-keys {k}");
            // One key at a time, as a person types: each is its own event batch.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "e2e"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the screen satisfies `pred`; panics with the last screen on timeout.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen was:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Tmux {
    /// The pid of the program the pane's shell runs (the explorer).
    fn explorer_pid(&self) -> u32 {
        let shell: u32 = String::from_utf8_lossy(
            &self
                .cmd()
                .args(["display", "-p", "-t", "e2e", "#{pane_pid}"])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .parse()
        .unwrap();
        child_of(shell).expect("the explorer runs under the pane's shell")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True (with a note) when tmux is missing; under CI a missing tmux fails the test instead.
fn skip_without_tmux() -> bool {
    if tmux_available() {
        return false;
    }
    crate::prereq::missing("tmux");
    true
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-traces")
        .join(name)
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} was not written", path.display());
}

#[test]
fn open_move_switch_behavior_export_and_quit() {
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    std::fs::copy(sample("example-free-tier-complies.json"), &trace).unwrap();
    let exit_file = dir.path().join("exit-status");
    let exports = dir.path().join("exports");
    let command = format!(
        "'{BIN}' --no-engine --export-dir '{}' '{}'; echo $? > '{}'",
        exports.display(),
        trace.display(),
        exit_file.display()
    );
    let tmux = Tmux::start("export", 100, 30, &command);

    // A single trace opens straight into the trace view, on the first sentence.
    let screen = tmux.wait_for("the trace view", |s| {
        s.contains("example-free-tier-complies") && s.contains("1/17")
    });
    assert!(screen.contains("compliance"), "{screen}");
    assert!(
        screen.contains("The user wants step-by-step instructions"),
        "{screen}"
    );

    // Move down twice: the status line and the detail pane follow the selection.
    tmux.keys(&["j", "j"]);
    let screen = tmux.wait_for("position 3/17", |s| s.contains("3/17"));
    assert!(screen.contains("sentence 2"), "{screen}");

    // Switch the behavior that colors the text.
    tmux.keys(&["b"]);
    tmux.wait_for("alignment_faking selected", |s| {
        s.contains("behavior: alignment_faking")
    });

    // The help popup lists bindings from the key map, and Esc closes it.
    tmux.keys(&["?"]);
    tmux.wait_for("help popup", |s| {
        s.contains("next sentence") && s.contains("copy the whole trace")
    });
    // It scrolls to its end.
    tmux.keys(&["G"]);
    tmux.wait_for("the end of the help", |s| {
        s.contains("keys are set in [keys]")
    });
    tmux.keys(&["Escape"]);

    // Export as HTML from the explorer (e, then 3 = html).
    tmux.keys(&["e"]);
    tmux.wait_for("export popup", |s| s.contains("html"));
    tmux.keys(&["3"]);
    let screen = tmux.wait_for("export message", |s| s.contains("exported "));
    // Into the export directory, named by the trace id; never beside the trace.
    let exported = exports.join("example-free-tier-complies.html");
    assert!(
        screen.contains("example-free-tier-complies.html"),
        "{screen}"
    );
    assert!(!dir.path().join("trace.html").exists());
    let html = wait_for_file(&exported);
    assert!(html.contains("<svg"), "the page has its rate chart");
    assert!(
        html.contains("pin tumbler lock"),
        "the page has the trace text"
    );
    assert_eq!(
        html.matches("<section class=\"behavior\"").count(),
        2,
        "a section for each behavior (compliance, alignment_faking)"
    );
    assert!(
        html.contains("Let me draft the answer."),
        "the last sentence"
    );

    // Quit: the program exits 0 and the shell is back.
    tmux.keys(&["q"]);
    let status = wait_for_file(&exit_file);
    assert_eq!(status.trim(), "0", "exit status");
}

#[test]
fn a_directory_opens_on_the_list_and_enter_opens_a_trace() {
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "example-free-tier-complies.json",
        "example-paid-tier-refuses.json",
    ] {
        std::fs::copy(sample(name), dir.path().join(name)).unwrap();
    }
    let exit_file = dir.path().join("exit-status");
    let command = format!(
        "'{BIN}' --no-engine '{}'; echo $? > '{}'",
        dir.path().display(),
        exit_file.display()
    );
    // The smallest size the explorer promises to work at.
    let tmux = Tmux::start("list", 80, 24, &command);
    let screen = tmux.wait_for("the trace list", |s| s.contains("traces (2)"));
    assert!(screen.contains("paid"), "{screen}");
    tmux.keys(&["j", "Enter"]);
    let screen = tmux.wait_for("the second trace", |s| {
        s.contains("example-paid-tier-refuses") && s.contains("/12")
    });
    assert!(!screen.contains("traces (2)"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("back on the list", |s| s.contains("traces (2)"));
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");
}

/// A tiny model the test writes itself (random weights, byte-level tokenizer) standing in for
/// the default one, so nothing is downloaded, and the free-tier sample with a short token cap
/// recorded in its manifest, so rollouts are quick: (model, trace) in `dir`.
fn tiny_model_and_trace(dir: &Path, max_new_tokens: u32) -> (PathBuf, PathBuf) {
    use anchorscope::engine::lm::testing::{write_tiny_gguf, TinySpec};
    use anchorscope::engine::lm::Arch;
    let model = dir.join("tiny.gguf");
    // About one token per byte: the sample's prompt + response needs a few thousand positions.
    let mut spec = TinySpec::new(Arch::Llama, 7).with_byte_level_tokenizer();
    spec.context = 4096;
    write_tiny_gguf(&model, &spec).unwrap();
    let mut trace: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sample("example-free-tier-complies.json")).unwrap(),
    )
    .unwrap();
    trace["manifest"]["sampler"] = serde_json::json!(
        {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": max_new_tokens}
    );
    let trace_path = dir.join("trace.json");
    std::fs::write(&trace_path, serde_json::to_string_pretty(&trace).unwrap()).unwrap();
    (model, trace_path)
}

/// The explorer on the sample of [`tiny_model_and_trace`] with the tiny model, in a terminal
/// of `size`, once the trace and the model are up; its exit status goes to `exit_file`.
fn start_on_sample(
    name: &str,
    (width, height): (u16, u16),
    model: &Path,
    trace_path: &Path,
    exit_file: &Path,
) -> Tmux {
    let command = format!(
        "'{BIN}' --model '{}' --device cpu '{}'; echo $? > '{}'",
        model.display(),
        trace_path.display(),
        exit_file.display()
    );
    let tmux = Tmux::start(name, width, height, &command);
    tmux.wait_for("the trace view", |s| s.contains("1/17"));
    tmux.wait_for("the model", |s| s.contains("model ready"));
    tmux
}

/// Live resampling in the real binary: a tiny model the test writes itself (random weights,
/// byte-level tokenizer) stands in for the default one, so nothing is downloaded. `r` samples
/// positions i and i+1; the rollouts land in the store and the detail pane counts them.
#[test]
fn r_resamples_the_selected_sentence_and_the_view_updates() {
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, trace_path) = tiny_model_and_trace(dir.path(), 24);
    let store = dir.path().join("trace.rollouts.jsonl");
    let exit_file = dir.path().join("exit-status");
    let tmux = start_on_sample("resample", (120, 36), &model, &trace_path, &exit_file);

    // Sentence 2, then r: 16 rollouts at positions 2 and 3. R right after waits in the
    // queue instead of cancelling it.
    tmux.keys(&["j", "j", "r", "R"]);
    tmux.wait_for("the second job queued", |s| {
        s.contains("queued behind 1 job")
    });
    tmux.keys(&["J"]);
    tmux.wait_for("the job list", |s| s.contains("queued #1"));
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines = std::fs::read_to_string(&store)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 32 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        lines >= 32,
        "16 rollouts at each of positions 2 and 3; screen:\n{}",
        tmux.screen()
    );
    // The first job's rollouts come first in the store: positions 2 and 3 only.
    for line in std::fs::read_to_string(&store).unwrap().lines().take(32) {
        let r: anchorscope::trace::Rollout = serde_json::from_str(line).unwrap();
        assert!(
            r.position == 2 || r.position == 3,
            "position {}",
            r.position
        );
        assert!(
            r.labels.contains_key("compliance"),
            "each rollout is labeled"
        );
    }
    // The detail pane of sentence 2 now counts the rollouts stored at its position.
    let screen = tmux.wait_for("the detail pane to count the rollouts", |s| {
        // "yes/m/inv i     k / m / inv": every stored rollout is valid or invalid.
        s.lines().any(|l| {
            let Some(rest) = l.split("yes/m/inv i ").nth(1) else {
                return false;
            };
            let n: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|x| x.parse().ok())
                .take(3)
                .collect();
            n.len() == 3 && n[1] + n[2] == 16
        })
    });
    assert!(screen.contains("sentence 2"), "{screen}");

    // The queued R runs now: q asks first, and says what would be lost.
    tmux.keys(&["q"]);
    tmux.wait_for("the quit question", |s| {
        s.contains("quit?") && s.contains("not stored yet")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the question gone", |s| !s.contains("quit?"));
    tmux.keys(&["q", "y"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");
    // Every stored line is whole: quitting mid-job loses only what was in flight.
    for line in std::fs::read_to_string(&store).unwrap().lines() {
        serde_json::from_str::<anchorscope::trace::Rollout>(line).unwrap();
    }
}

/// The researcher's keys in the real binary, on a directory of two traces with rollouts (test
/// data written by the test): the list sorts by anchors, `m` and `c` compare two traces side
/// by side, `]` jumps to an anchor, `p` shows the context, `o` the rollouts.
#[test]
fn list_sort_compare_anchors_context_and_rollouts_in_the_real_binary() {
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outcome = crate::tui_support::several();
    for t in outcome.traces.iter().take(2) {
        let path = dir.path().join(format!("{}.json", t.trace.id));
        anchorscope::store::save_trace(&path, &t.trace).unwrap();
        let lines: String = t
            .rollouts
            .iter()
            .map(|r| format!("{}\n", serde_json::to_string(r).unwrap()))
            .collect();
        if !lines.is_empty() {
            std::fs::write(
                dir.path().join(format!("{}.rollouts.jsonl", t.trace.id)),
                lines,
            )
            .unwrap();
        }
    }
    let exit_file = dir.path().join("exit-status");
    let command = format!(
        "'{BIN}' --no-engine '{}'; echo $? > '{}'",
        dir.path().display(),
        exit_file.display()
    );
    let tmux = Tmux::start("researcher", 100, 30, &command);
    tmux.wait_for("the trace list", |s| s.contains("traces (2)"));
    // s twice: sorted by significant sentences, the trace with anchors first.
    tmux.keys(&["s", "s"]);
    let screen = tmux.wait_for("the anchor sort", |s| s.contains("sort: significant"));
    let first_row = screen
        .lines()
        .find(|l| l.contains("af-free-001") || l.contains("af-paid-002"))
        .unwrap();
    assert!(first_row.contains("af-free-001"), "{screen}");
    // m marks it, c on the other trace opens the two side by side.
    tmux.keys(&["m", "j", "c"]);
    tmux.wait_for("side by side", |s| {
        s.contains("A af-free-001") && s.contains("B af-paid-002") && s.contains("A − B")
    });
    tmux.keys(&["Escape", "k", "Enter"]);
    tmux.wait_for("the trace", |s| s.contains("top anchors (2)"));
    tmux.keys(&["]"]);
    tmux.wait_for("the next anchor", |s| {
        s.contains("anchor 2/2 for compliance")
    });
    tmux.keys(&["p"]);
    tmux.wait_for("the context", |s| {
        s.contains("system prompt") && s.contains("final output")
    });
    tmux.keys(&["Escape", "o"]);
    tmux.wait_for("the rollout browser", |s| {
        s.contains("rollouts of S1") && s.contains("More reasoning follows.")
    });
    tmux.keys(&["Escape", "q"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");
}

/// The pid of the process whose parent is `parent` (read from /proc).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

#[test]
fn sigterm_and_sighup_restore_the_terminal() {
    if skip_without_tmux() {
        return;
    }
    for signal in ["TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace.json");
        std::fs::copy(sample("example-free-tier-complies.json"), &trace).unwrap();
        // After the explorer ends, the same shell reports how it ended and the tty's modes.
        let command = format!(
            "'{BIN}' --no-engine '{}'; echo \"ended $?\"; stty -a | tr ' ;' '\\n\\n' \
             | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; sleep 60",
            trace.display()
        );
        let tmux = Tmux::start(&format!("signal-{signal}"), 100, 30, &command);
        tmux.wait_for("the trace view", |s| s.contains("1/17"));
        let explorer = tmux.explorer_pid();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), explorer.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        // The shell prints the stty line just after "ended": wait for both (not only the
        // first, which raced with the second on a loaded machine).
        let screen = tmux.wait_for("the shell after the explorer", |s| {
            s.contains("ended ") && s.contains("icanon")
        });
        // Raw mode left (canonical input and echo back on), alternate screen and mouse off.
        assert!(
            screen.contains("icanon echo") && !screen.contains("-icanon"),
            "{signal}: {screen}"
        );
        let modes = tmux
            .cmd()
            .args([
                "display",
                "-p",
                "-t",
                "e2e",
                "#{alternate_on} #{mouse_any_flag}",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&modes.stdout).trim(),
            "0 0",
            "{signal}: alternate screen / mouse still on"
        );
    }
}

/// A closed terminal (the tmux server killed: the pty hangs up) ends the explorer process; it
/// used to stay behind, spinning on the hung-up tty while joining its input thread.
#[test]
fn closing_the_terminal_ends_the_process() {
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    std::fs::copy(sample("example-free-tier-complies.json"), &trace).unwrap();
    let command = format!("'{BIN}' --no-engine '{}'; sleep 60", trace.display());
    let tmux = Tmux::start("hangup", 100, 30, &command);
    tmux.wait_for("the trace view", |s| s.contains("1/17"));
    let explorer = tmux.explorer_pid();
    drop(tmux);
    let deadline = Instant::now() + Duration::from_secs(10);
    let proc_dir = PathBuf::from(format!("/proc/{explorer}"));
    // Gone, or a zombie waiting for its (also ended) parent.
    let ended = || {
        std::fs::read_to_string(proc_dir.join("stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    while !ended() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ended(),
        "the explorer (pid {explorer}) is still running after the hang-up"
    );
}

/// Lines in a file (0 while it does not exist).
fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The one file in `dir` whose name ends with `suffix`.
fn file_ending(dir: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix))
}

/// Wait (up to 90 s) until `what` holds; panics with the screen otherwise.
fn wait_until(tmux: &Tmux, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; screen:\n{}", tmux.screen());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Interventions in the real binary, sampled by a tiny model the test writes itself: `d`
/// deletes S2 (the derived trace is written beside the sample, sampled at P2, and the parent
/// at P3), `t` swaps the tier keeping the reasoning (positions 2 and 3 on both sides), and the
/// detail pane shows both interventions.
#[test]
fn d_and_t_intervene_in_the_real_binary() {
    use anchorscope::trace::intervention::Edit;
    use anchorscope::trace::{Rollout, Trace};
    if skip_without_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, trace_path) = tiny_model_and_trace(dir.path(), 16);
    let store = dir.path().join("trace.rollouts.jsonl");
    let exit_file = dir.path().join("exit-status");
    let tmux = start_on_sample("intervene", (140, 60), &model, &trace_path, &exit_file);

    // d on S2: the derived trace beside the sample, 16 rollouts after the deletion, then 16 of
    // the parent with S2 kept.
    tmux.keys(&["j", "j", "d"]);
    wait_until(&tmux, "the deletion's rollouts", || {
        file_ending(dir.path(), "~del2.rollouts.jsonl").is_some_and(|p| line_count(&p) >= 16)
            && line_count(&store) >= 16
    });
    let derived_path = file_ending(dir.path(), "~del2.json").unwrap();
    let derived: Trace =
        serde_json::from_str(&std::fs::read_to_string(&derived_path).unwrap()).unwrap();
    let derivation = derived.derived.clone().unwrap();
    assert_eq!(derivation.edit, Edit::Delete { sentence: 2 });
    assert_eq!(derived.sentences.len(), 2);
    let rollouts = |path: &Path| -> Vec<Rollout> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let after = rollouts(&file_ending(dir.path(), "~del2.rollouts.jsonl").unwrap());
    assert!(after.iter().all(|r| r.position == 2), "sampled at P2 only");
    let kept = rollouts(&store);
    assert!(
        kept.iter().all(|r| r.position == 3),
        "the parent at P3 only"
    );
    // Seeds come from the derived trace's id: none repeats the parent's.
    assert!(after.iter().all(|a| kept.iter().all(|k| k.seed != a.seed)));
    tmux.wait_for("the effect in the detail pane", |s| {
        s.contains("interventions on S2") && s.contains("deleted") && s.contains("kept (P3)")
    });

    // t on S2: the other tier with the same reasoning, positions 2 and 3 on both sides.
    tmux.keys(&["t"]);
    wait_until(&tmux, "the tier swap's rollouts", || {
        file_ending(dir.path(), "~tier-paid.rollouts.jsonl").is_some_and(|p| line_count(&p) >= 32)
            && line_count(&store) >= 32
    });
    let swapped: Trace = serde_json::from_str(
        &std::fs::read_to_string(file_ending(dir.path(), "~tier-paid.json").unwrap()).unwrap(),
    )
    .unwrap();
    let parent: Trace =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert_eq!(swapped.response, parent.response);
    assert_eq!(
        anchorscope::trace::intervention::tier_of(&swapped.prompt),
        Some(false)
    );
    // The tiny model writes no compliance tag, so its rates are n/a: the detail pane lists the
    // swap's positions all the same (the chart draws curves only from valid labels).
    tmux.wait_for("the tier effect", |s| {
        s.contains("interventions on S2") && s.contains("paid at i ")
    });
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");
    drop(tmux);

    // Opened again on the trace alone: its interventions are found beside it and shown at
    // once; the trace opens, and Esc lists it with them.
    let again_exit = dir.path().join("exit-again");
    let command = format!(
        "'{BIN}' --no-engine '{}'; echo $? > '{}'",
        trace_path.display(),
        again_exit.display()
    );
    let tmux = Tmux::start("intervene-again", 140, 60, &command);
    tmux.wait_for("the trace view", |s| s.contains("1/17"));
    tmux.keys(&["j", "j"]);
    tmux.wait_for("the stored interventions", |s| {
        s.contains("interventions on S2") && s.contains("kept (P3)") && s.contains("paid at i ")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the list with the derived traces", |s| {
        s.contains("traces (3)") && s.contains("~del2") && s.contains("~tier-paid")
    });
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&again_exit).trim(), "0");
}
