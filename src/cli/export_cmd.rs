//! `anchorscope export`: write one trace with its analysis to a file, or every trace of a
//! directory into one output directory.

use std::path::{Path, PathBuf};

use anyhow::Context;

use anchorscope::config::Config;
use anchorscope::export::json::render_with_runs;
use anchorscope::export::{check_output, default_file, export_to_file, ExportFormat};
use anchorscope::loaded::LoadedTrace;
use anchorscope::tui::app::DEFAULT_EXPORT_DIR;

use super::load;
use super::output::print;
use super::ExportArgs;

pub fn run(args: &ExportArgs, config: &Config) -> anyhow::Result<()> {
    let config = &load::with_judge_scope(config, args.judge_scope);
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let several = outcome.traces.len() > 1;
    if several && args.trace.is_none() {
        return export_all(args, config, outcome.traces);
    }
    let mut loaded = load::select_one(outcome.traces, args.trace.as_deref())?;
    load::fill_similarities(std::slice::from_mut(&mut loaded));
    // Default: `<name>.<ext>` in the current directory (a relative path, printed as such).
    let out = match &args.output {
        Some(p) => p.clone(),
        None => default_file(
            &loaded.path,
            &loaded.trace.id,
            several,
            args.format,
            Path::new(""),
        ),
    };
    export_one(loaded, &load::behavior_names(config)?, args, config, &out)?;
    print(&format!("{}\n", out.display()))
}

/// Every trace of a directory (or JSONL file) into `-o DIR` (default
/// ./anchorscope-exports), one `<trace-id>.<ext>` each. A trace that fails stops the run
/// with its id; the files already written stay (each is written atomically).
fn export_all(
    args: &ExportArgs,
    config: &Config,
    mut traces: Vec<LoadedTrace>,
) -> anyhow::Result<()> {
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_EXPORT_DIR));
    if dir.is_file() {
        anyhow::bail!(
            "-o {}: a file, but {} holds {} traces: give a directory to export them all, or \
             pick one with --trace ID",
            dir.display(),
            args.trace_path.display(),
            traces.len()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // One embedder load for all of them.
    load::fill_similarities(&mut traces);
    let behaviors = load::behavior_names(config)?;
    let mut written = String::new();
    for loaded in traces {
        let out = default_file(&loaded.path, &loaded.trace.id, true, args.format, &dir);
        export_one(loaded, &behaviors, args, config, &out)?;
        written.push_str(&format!("{}\n", out.display()));
    }
    print(&written)
}

/// Analyse one trace (similarities already filled) as `stats` does and write it.
fn export_one(
    mut loaded: LoadedTrace,
    behaviors: &[String],
    args: &ExportArgs,
    config: &Config,
    out: &Path,
) -> anyhow::Result<()> {
    let pooled = load::pool_runs(&mut loaded, config, args.pool)?;
    let analysis = load::analyze_pooled(&loaded, behaviors, config, &pooled);
    // Never over the input, its store, a device or a link (every format, checked once here).
    check_output(&loaded, out)?;
    let written = match args.format {
        // JSON carries every rollout (labels, run id), the run records and the pool.
        ExportFormat::Json => {
            let text = render_with_runs(&loaded, &analysis, &pooled.pool, &pooled.runs);
            anchorscope::store::atomic_write(out, text.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))
        }
        format => export_to_file(&loaded, &analysis, format, out),
    };
    written.with_context(|| format!("exporting trace {} to {}", loaded.trace.id, out.display()))
}
