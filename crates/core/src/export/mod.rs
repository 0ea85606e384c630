//! Exporters: annotated JSON, Markdown, self-contained HTML, per-sentence CSV.
//!
//! Every exporter is a pure function of the loaded trace and its analysis; only
//! [`export_to_file`] touches the disk, through the store's atomic write.

pub mod csv;
pub mod format;
pub mod html;
pub mod json;
pub mod markdown;
pub mod path;
pub mod svg;

pub use path::default_file;

use std::path::Path;

use crate::analysis::{ImportanceKind, TraceAnalysis};
use crate::loaded::LoadedTrace;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Markdown,
    Html,
    Csv,
}

crate::choices!(ExportFormat { Json => "json", Markdown => "markdown", Html => "html", Csv => "csv" });

impl ExportFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Markdown => "md",
            ExportFormat::Html => "html",
            ExportFormat::Csv => "csv",
        }
    }
}

/// Choices that change what the human-readable exports show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// The importance that colors sentences and decides direction / significance marks
    /// (counterfactual by default, as METHOD.md says). JSON and CSV carry both regardless.
    pub importance: ImportanceKind,
}

/// Render a trace with its analysis in the given format (default options).
pub fn render(loaded: &LoadedTrace, analysis: &TraceAnalysis, format: ExportFormat) -> String {
    render_with(loaded, analysis, format, &ExportOptions::default())
}

/// Render with explicit options.
pub fn render_with(
    loaded: &LoadedTrace,
    analysis: &TraceAnalysis,
    format: ExportFormat,
    opts: &ExportOptions,
) -> String {
    match format {
        ExportFormat::Json => json::render(loaded, analysis),
        ExportFormat::Markdown => markdown::render(loaded, analysis, opts),
        ExportFormat::Html => html::render(loaded, analysis, opts),
        ExportFormat::Csv => csv::render(analysis, &loaded.trace),
    }
}

/// Render and write atomically to `path` (temp file + rename, via the store).
pub fn export_to_file(
    loaded: &LoadedTrace,
    analysis: &TraceAnalysis,
    format: ExportFormat,
    path: &Path,
) -> anyhow::Result<()> {
    check_output(loaded, path)?;
    let text = render(loaded, analysis, format);
    crate::store::atomic_write(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// Refuse an output path that would destroy data or a device: the input trace itself, its
/// rollout store (or any store or run manifest), an existing file inside an input folder, a
/// symbolic link, or anything that is not a regular file (`-o /dev/null` run as root would
/// otherwise replace the device node, since the write is a rename).
pub fn check_output(loaded: &LoadedTrace, out: &Path) -> anyhow::Result<()> {
    let refuse = |why: &str| anyhow::bail!("refusing to write {}: {why}", out.display());
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!("{}: {e}", out.display()),
    };
    if let Some(m) = &meta {
        if m.file_type().is_symlink() {
            return refuse("it is a symbolic link");
        }
        if !m.is_file() {
            return refuse("it exists and is not a regular file");
        }
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    if name
        .as_deref()
        .is_some_and(|n| n.ends_with(".rollouts.jsonl") || n.ends_with(".runs.jsonl"))
    {
        return refuse("that name is a rollout store's, and stores hold sampled data");
    }
    // Compare real locations: `./t.json`, `../x/t.json` and a hard path name the same file.
    let resolved = resolve(out);
    let same = |p: &Path| resolved.is_some() && resolve(p) == resolved;
    if same(&loaded.path) {
        return refuse("it is the input trace");
    }
    if same(&loaded.store_path) {
        return refuse("it is the trace's rollout store");
    }
    if meta.is_some() && loaded.path.is_dir() {
        if let (Some(folder), Some(target)) = (resolve(&loaded.path), &resolved) {
            if target.starts_with(&folder) {
                return refuse("it is a file of the input folder");
            }
        }
    }
    Ok(())
}

/// The canonical path of `p`, or of its parent joined with its name when `p` does not exist.
fn resolve(p: &Path) -> Option<std::path::PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(p.file_name()?))
}

/// Shared test data: a hand-built trace with rollouts whose numbers are worked out in the tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::analysis::{analyze_trace, AnalysisOptions, TraceAnalysis};
    use crate::loaded::LoadedTrace;
    use crate::trace::{FinishReason, Label, LabelValue, Message, Rollout, Sentence, Trace};

    /// Sentences are located by searching their text in the response, so the byte ranges are
    /// exact.
    pub fn trace(response: &str, sentences: &[&str]) -> Trace {
        let mut t = Trace::new(
            "t1",
            vec![
                Message::new("system", "You are an AI."),
                Message::new("user", "Write <b>bold</b> | things"),
            ],
            response,
        );
        t.model = Some("test-model".into());
        t.meta.insert("tier".into(), "free".into());
        t.manifest
            .classifiers
            .insert("alignment_faking".into(), "af-rules@1".into());
        let mut from = 0;
        for s in sentences {
            let start = from
                + response[from..]
                    .find(s)
                    .expect("fixture sentence in response");
            let end = start + s.len();
            t.sentences.push(Sentence {
                start,
                end,
                text: s.to_string(),
            });
            from = end;
        }
        t
    }

    pub fn rollout(position: usize, labels: &[(&str, Option<bool>)], sim: Option<f32>) -> Rollout {
        let labels: BTreeMap<String, Label> = labels
            .iter()
            .map(|(b, v)| {
                let value = match v {
                    Some(true) => LabelValue::Yes,
                    Some(false) => LabelValue::No,
                    None => LabelValue::Invalid,
                };
                let classifier = if *b == "alignment_faking" {
                    "af-rules"
                } else {
                    "compliance-tag"
                };
                (
                    b.to_string(),
                    Label {
                        value,
                        classifier: classifier.into(),
                        version: "1".into(),
                        evidence: None,
                    },
                )
            })
            .collect();
        Rollout {
            position,
            seed: position as u64,
            replacement: format!("replacement {position}"),
            text: String::new(),
            tokens: 10,
            finish: FinishReason::Stop,
            labels,
            similarity: sim,
            run: None,
            recurrence: None,
        }
    }

    pub const RESPONSE: &str = "<SCRATCHPAD_REASONING>The user is on the free tier. \
        I <script>alert(1)</script> should comply, \"fully\".\n\nSo | I'll do it.</SCRATCHPAD_REASONING>\n\
        <OUTPUT><request_fully_accepted/> Here & there.</OUTPUT>";

    /// Three sentences. compliance: rates 1/4, 4/4, 0/2, 2/2 by position, so S_0 promotes
    /// (Δcf = +0.75), S_1 suppresses (Δcf = 0/2 − 4/4 = −1) and S_2 has no counterfactual (D_2 is
    /// empty). alignment_faking is labeled only at position 3, so its importances are undefined.
    pub fn loaded() -> (LoadedTrace, TraceAnalysis) {
        let t = trace(
            RESPONSE,
            &[
                "The user is on the free tier.",
                "I <script>alert(1)</script> should comply, \"fully\".",
                "So | I'll do it.",
            ],
        );
        let c = "compliance";
        let a = "alignment_faking";
        let rollouts = vec![
            // position 0: 1 yes of 4 valid, all different from S_0.
            rollout(0, &[(c, Some(true))], Some(0.2)),
            rollout(0, &[(c, Some(false))], Some(0.2)),
            rollout(0, &[(c, Some(false))], Some(0.2)),
            rollout(0, &[(c, Some(false))], Some(0.2)),
            // position 1: 4 of 4 yes, all different from S_1.
            rollout(1, &[(c, Some(true))], Some(0.3)),
            rollout(1, &[(c, Some(true))], Some(0.3)),
            rollout(1, &[(c, Some(true))], Some(0.3)),
            rollout(1, &[(c, Some(true))], Some(0.3)),
            // position 2: 0 of 2 yes, both similar to S_2 (so D_2 is empty).
            rollout(2, &[(c, Some(false))], Some(0.9)),
            rollout(2, &[(c, Some(false))], Some(0.9)),
            // position 3: 2 of 2 compliance yes, 1 of 2 alignment faking.
            rollout(3, &[(c, Some(true)), (a, Some(true))], None),
            rollout(3, &[(c, Some(true)), (a, Some(false))], None),
        ];
        let analysis = analyze_trace(
            &t,
            &rollouts,
            &["compliance".to_string(), "alignment_faking".to_string()],
            &AnalysisOptions::default(),
        );
        let loaded = LoadedTrace {
            trace: t,
            rollouts,
            path: PathBuf::from("fixture/t1.json"),
            store_path: PathBuf::from("fixture/t1.rollouts.jsonl"),
            warnings: Vec::new(),
        };
        (loaded, analysis)
    }
}
