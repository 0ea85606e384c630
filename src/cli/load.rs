//! The glue every command shares: load the traces at a path, pick one, analyse it.

use std::path::Path;

use anyhow::{bail, Context};

use anchorscope::analysis::{analyze_trace, TraceAnalysis};
use anchorscope::behavior::scope::{label_continuations, JudgeScope};
use anchorscope::behavior::user::label_stored;
use anchorscope::behavior::BehaviorSet;
use anchorscope::config::Config;
use anchorscope::loaded::{load_path, runs_of, LoadOutcome, LoadedTrace};
use anchorscope::store::runs::{pool, Pool, PoolMode, RunRecord};
use anchorscope::trace::split::SplitOptions;

use super::output::warn;

/// Load every trace at `path`. Fails, listing every per-file error, when no trace loads, so a
/// command never runs on nothing.
pub fn load(path: &Path, split: &SplitOptions) -> anyhow::Result<LoadOutcome> {
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    let outcome = load_path(path, split)?;
    if outcome.traces.is_empty() {
        if outcome.errors.is_empty() {
            bail!("{}: no traces found", path.display());
        }
        let list: Vec<String> = outcome.errors.iter().map(|e| format!("  {e}")).collect();
        bail!(
            "no trace could be loaded from {}:\n{}",
            path.display(),
            list.join("\n")
        );
    }
    Ok(outcome)
}

/// Add the interventions made on the loaded traces (`PARENT~….json` beside each, written by
/// `intervene` or the explorer) that the path did not already load, so their effects show with
/// their parents. One that fails to load is reported beside the others.
pub fn add_derived(outcome: &mut LoadOutcome, split: &SplitOptions) {
    use anchorscope::store::derived::derived_files_of;
    let mut found = Vec::new();
    for t in &outcome.traces {
        for path in derived_files_of(&t.path, &t.trace.id) {
            let known = outcome.traces.iter().any(|o| o.path == path) || found.contains(&path);
            if !known {
                found.push(path);
            }
        }
    }
    for path in found {
        match load_path(&path, split) {
            Ok(more) => {
                // Only derived traces: a user's own file that happens to share the prefix stays
                // out.
                outcome.traces.extend(
                    more.traces
                        .into_iter()
                        .filter(|t| t.trace.derived.is_some()),
                );
                outcome.errors.extend(more.errors);
            }
            Err(e) => outcome.errors.push(e),
        }
    }
}

/// Report what loaded with problems (bad files beside good ones, store warnings) on stderr.
pub fn warn_about(outcome: &LoadOutcome) {
    for e in &outcome.errors {
        warn(e);
    }
    for t in &outcome.traces {
        for w in &t.warnings {
            warn(format_args!("{}: {w}", t.path.display()));
        }
    }
}

/// The traces a command works on: the one named by `--trace ID`, else all of them.
pub fn select(traces: Vec<LoadedTrace>, id: Option<&str>) -> anyhow::Result<Vec<LoadedTrace>> {
    let Some(id) = id else {
        return Ok(traces);
    };
    let ids: Vec<String> = traces.iter().map(|t| t.trace.id.clone()).collect();
    match traces.into_iter().find(|t| t.trace.id == id) {
        Some(t) => Ok(vec![t]),
        None => bail!("no trace with id {id:?}; ids here: {}", list_ids(&ids)),
    }
}

/// Exactly one trace: the selected one, or the only one; otherwise an error listing the ids.
pub fn select_one(traces: Vec<LoadedTrace>, id: Option<&str>) -> anyhow::Result<LoadedTrace> {
    let mut picked = select(traces, id)?;
    if picked.len() > 1 {
        let ids: Vec<String> = picked.iter().map(|t| t.trace.id.clone()).collect();
        bail!(
            "this path holds {} traces; pick one with --trace ID (ids: {})",
            picked.len(),
            list_ids(&ids)
        );
    }
    picked.pop().context("no trace loaded")
}

/// At most a screenful of ids, so a directory of thousands does not flood the terminal.
fn list_ids(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(", … ({} more)", ids.len() - SHOWN));
    }
    s
}

/// Behavior names in display order: built-ins, then the config's user behaviors.
pub fn behavior_names(config: &Config) -> anyhow::Result<Vec<String>> {
    Ok(BehaviorSet::with_user(&config.behaviors)
        .context("in the config's [[behavior]] tables")?
        .names())
}

/// The config with `--judge-scope` applied when given.
pub fn with_judge_scope(config: &Config, flag: Option<JudgeScope>) -> Config {
    let mut config = config.clone();
    if let Some(scope) = flag {
        config.analysis.judge_scope = scope;
    }
    config
}

/// The runs of a trace and which of them its rates pool.
pub struct Pooled {
    pub pool: Pool,
    pub runs: Vec<RunRecord>,
}

/// Prepare a loaded trace for rates: label every stored rollout with the config's user
/// behaviors (in memory), read the run manifest beside its store, and decide the pool (`flag`
/// over the config's `[sampling] pool`).
pub fn pool_runs(
    loaded: &mut LoadedTrace,
    config: &Config,
    flag: Option<PoolMode>,
) -> anyhow::Result<Pooled> {
    label_stored(&config.behaviors, &loaded.trace, &mut loaded.rollouts)
        .context("in the config's [[behavior]] tables")?;
    if config.analysis.judge_scope == JudgeScope::Continuation {
        let set = BehaviorSet::with_user(&config.behaviors)
            .context("in the config's [[behavior]] tables")?;
        label_continuations(&set, &loaded.trace, &mut loaded.rollouts);
    }
    let runs = runs_of(loaded)?;
    let mode = flag.unwrap_or(config.sampling.pool);
    let pool = pool(&loaded.rollouts, &runs, mode);
    Ok(Pooled { pool, runs })
}

/// Compute the similarities that stored rollouts lack (imported Thought Anchors replacements),
/// once, with the installed sentence embedder, so counterfactual importance can be computed
/// from them; they are cached beside the store. Without the embedder, say what is missing and
/// how to get it: the importance stays n/a rather than guessed.
pub fn fill_similarities(traces: &mut [LoadedTrace]) {
    use anchorscope::engine::similarity_fill::{fill_missing, missing_pairs};
    use anchorscope::store::similarities::similarities_path_for;

    let missing: usize = traces
        .iter()
        .map(|t| missing_pairs(&t.trace, &t.rollouts))
        .sum();
    if missing == 0 {
        return;
    }
    let dir = anchorscope::engine::install::embedder_dir();
    let device = candle_core::Device::Cpu;
    let mut embedder = match anchorscope::engine::embed::SentenceEmbedder::load(&dir, &device) {
        Ok(e) => e,
        Err(e) => {
            warn(format_args!(
                "{missing} stored replacement(s) have no similarity to the sentence they \
                 replaced, so counterfactual importance from them is n/a; the sentence embedder \
                 computes them once (`anchorscope model install` installs it): {e}"
            ));
            return;
        }
    };
    for t in traces.iter_mut() {
        let todo = missing_pairs(&t.trace, &t.rollouts);
        if todo == 0 {
            continue;
        }
        let cache = similarities_path_for(&t.store_path);
        eprintln!(
            "{}: computing {todo} replacement similarities once (cached in {})",
            t.trace.id,
            cache.display()
        );
        let mut last = std::time::Instant::now();
        let mut progress = |done: usize, total: usize| {
            if last.elapsed().as_secs() >= 2 || done == total {
                eprintln!("  {done}/{total}");
                last = std::time::Instant::now();
            }
        };
        match fill_missing(
            &t.trace,
            &mut t.rollouts,
            &cache,
            &mut embedder,
            &mut progress,
        ) {
            Ok((_, Some(unsaved))) => warn(unsaved),
            Ok((_, None)) => {}
            Err(e) => warn(format_args!(
                "{}: similarities not computed: {e}",
                t.trace.id
            )),
        }
    }
}

/// The analysis of one loaded trace over its pooled rollouts only (and imported metrics).
pub fn analyze_pooled(
    loaded: &LoadedTrace,
    behaviors: &[String],
    config: &Config,
    pooled: &Pooled,
) -> TraceAnalysis {
    let rollouts = pooled.pool.filter(&loaded.rollouts);
    let mut analysis = analyze_trace(&loaded.trace, &rollouts, behaviors, &config.analysis);
    analysis.pooled = Some(pooled.pool.summary());
    analysis
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorscope::trace::{Message, Trace};
    use std::path::PathBuf;

    fn loaded(id: &str) -> LoadedTrace {
        LoadedTrace {
            trace: Trace::new(id, vec![Message::new("user", "q")], "r"),
            rollouts: Vec::new(),
            path: PathBuf::from(format!("{id}.json")),
            store_path: PathBuf::from(format!("{id}.rollouts.jsonl")),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn select_by_id_or_all() {
        let all = select(vec![loaded("a"), loaded("b")], None).unwrap();
        assert_eq!(all.len(), 2);
        let one = select(vec![loaded("a"), loaded("b")], Some("b")).unwrap();
        assert_eq!(one[0].trace.id, "b");
        let err = select(vec![loaded("a"), loaded("b")], Some("c")).unwrap_err();
        assert!(err.to_string().contains("a, b"), "{err}");
    }

    #[test]
    fn select_one_needs_an_id_when_several() {
        let err = select_one(vec![loaded("a"), loaded("b")], None).unwrap_err();
        assert!(err.to_string().contains("--trace"), "{err}");
        assert_eq!(select_one(vec![loaded("a")], None).unwrap().trace.id, "a");
    }

    #[test]
    fn id_list_is_capped() {
        let ids: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let s = list_ids(&ids);
        assert!(s.ends_with("(5 more)"), "{s}");
        assert!(!s.contains("21"), "{s}");
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let err = load(Path::new("/no/such/trace.json"), &SplitOptions::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/trace.json"), "{err}");
    }

    #[test]
    fn analysis_without_rollouts_has_the_builtin_behaviors_all_undefined() {
        let mut t = loaded("a");
        t.trace.sentences = vec![anchorscope::trace::Sentence {
            start: 0,
            end: 1,
            text: "r".into(),
        }];
        let names = behavior_names(&Config::default()).unwrap();
        let pooled = pool_runs(&mut t, &Config::default(), None).unwrap();
        let a = analyze_pooled(&t, &names, &Config::default(), &pooled);
        assert_eq!(a.behavior_names(), vec!["compliance", "alignment_faking"]);
        assert!(a.behaviors.iter().all(|b| b.rate_value(0).is_none()));
    }
}
