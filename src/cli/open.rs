//! `anchorscope [PATH]` / `anchorscope open [PATH]`: load traces and start the explorer.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::bail;

use anchorscope::config::Config;

use super::engine_opts::EngineArgs;
use super::load;
use super::ExplorerArgs;

/// The bundled examples, looked up in the current directory (the repository root).
const DEFAULT_DIR: &str = "sample-traces";

pub fn run(
    path: Option<&Path>,
    engine: &EngineArgs,
    explorer: &ExplorerArgs,
    config: Config,
) -> anyhow::Result<()> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => default_path()?,
    };
    // Load before touching the terminal, so load errors print as plain lines.
    let mut outcome = load::load(&path, &config.split)?;
    let loaded_by_path = outcome.traces.len();
    load::add_derived(&mut outcome, &config.split);
    if !std::io::stdout().is_terminal() {
        bail!(
            "the explorer needs a terminal, but stdout is not one; for output to a file or pipe use `anchorscope stats {}` or `anchorscope export {} --format …`",
            path.display(),
            path.display()
        );
    }
    load::fill_similarities(&mut outcome.traces);
    // A directory of traces opens on the trace list even when it holds a single trace; a
    // directory that is itself one trace (a Thought Anchors problem folder) opens that trace.
    let is_one_trace_folder = outcome.traces[..loaded_by_path]
        .iter()
        .all(|t| t.path == path);
    let force_list = path.is_dir() && !is_one_trace_folder;
    let options = anchorscope::tui::RunOptions {
        force_list,
        // One trace asked for, listed with its interventions: it opens, Esc lists them all.
        open_first: !force_list && loaded_by_path == 1,
        engine: engine.worker_config(&config)?,
    };
    let mut settings = config.explorer();
    if let Some(dir) = &explorer.export_dir {
        settings.export_dir = Some(dir.clone());
    }
    anchorscope::tui::run_with_options(outcome, settings, options)
}

fn default_path() -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(DEFAULT_DIR);
    if p.is_dir() {
        return Ok(p);
    }
    bail!(
        "no PATH given and there is no ./{DEFAULT_DIR} directory here\n\
         hint: run `anchorscope PATH` with a trace file or a directory of traces, \
         or run `anchorscope` from the repository root to open the bundled samples"
    )
}
