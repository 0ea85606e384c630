//! `anchorscope export`: write one trace with its analysis to a file.

use anyhow::Context;

use anchorscope::config::Config;
use anchorscope::export::json::render_with_runs;
use anchorscope::export::{check_output, default_file, export_to_file, ExportFormat};

use super::load;
use super::output::print;
use super::ExportArgs;

pub fn run(args: &ExportArgs, config: &Config) -> anyhow::Result<()> {
    let config = &load::with_judge_scope(config, args.judge_scope);
    let outcome = load::load(&args.trace_path, &config.split)?;
    load::warn_about(&outcome);
    let several = outcome.traces.len() > 1;
    let mut loaded = load::select_one(outcome.traces, args.trace.as_deref())?;
    load::fill_similarities(std::slice::from_mut(&mut loaded));
    let behaviors = load::behavior_names(config)?;
    let pooled = load::pool_runs(&mut loaded, config, args.pool)?;
    let analysis = load::analyze_pooled(&loaded, &behaviors, config, &pooled);

    // Default: `<name>.<ext>` in the current directory (a relative path, printed as such).
    let out = match &args.output {
        Some(p) => p.clone(),
        None => default_file(
            &loaded.path,
            &loaded.trace.id,
            several,
            args.format,
            std::path::Path::new(""),
        ),
    };
    // Never over the input, its store, a device or a link (every format, checked once here).
    check_output(&loaded, &out)?;
    let written = match args.format {
        // JSON carries every rollout (labels, run id), the run records and the pool.
        ExportFormat::Json => {
            let text = render_with_runs(&loaded, &analysis, &pooled.pool, &pooled.runs);
            anchorscope::store::atomic_write(&out, text.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))
        }
        format => export_to_file(&loaded, &analysis, format, &out),
    };
    written.with_context(|| format!("exporting trace {} to {}", loaded.trace.id, out.display()))?;
    print(&format!("{}\n", out.display()))
}
