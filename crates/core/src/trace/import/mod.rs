//! Importers: native, Thought Anchors folders, alignment-faking transcripts, chat JSON/JSONL,
//! and directories of any of these.
//!
//! Formats are recognised by content, not by extension:
//! - an object with `"format": "anchorscope-trace"` is a native trace ([`native`]);
//! - an object with `"messages"` is an OpenAI-style chat ([`chat`]);
//! - an object with a prompt and a response/completion/output/conversation is an
//!   alignment-faking style transcript ([`transcript`]);
//! - a folder holding `base_solution.json` or `chunks_labeled.json` is one Thought Anchors
//!   problem ([`thought_anchors`]); pointing at one of those files opens its folder;
//! - a JSON array holds several traces of the above kinds; a file whose lines are JSON objects
//!   (`.jsonl`, or any file that parses line by line) holds one trace per line.
//!
//! Parsing only: each trace comes back with where it was read from and, for a file holding
//! several traces, its member key (the trace's own `id` when the object has one, otherwise
//! `line<N>` (JSONL) or `item<N>` (array)). Joining a trace with its rollout store is the job
//! of [`crate::loaded`], which sits above both `trace` and `store`.

mod chat;
pub mod json;
mod native;
mod ta_realign;
mod thought_anchors;
pub use thought_anchors::SCENARIO_META;
mod transcript;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use self::json::{Node, Problem};
use super::model::{Message, Rollout, Trace};
use super::split::{split_response, SplitOptions};

/// A trace parsed from a file or folder, with where it came from; its rollout store is not
/// attached yet (see [`crate::loaded`]).
#[derive(Debug)]
pub struct SourcedTrace {
    pub trace: Trace,
    /// Rollouts that came with the source (e.g. Thought Anchors `chunk_i/solutions.json`).
    pub rollouts: Vec<Rollout>,
    /// The file (or folder) the trace was read from.
    pub path: PathBuf,
    /// The trace's key inside a file holding several traces; `None` when it is the whole file
    /// (or folder).
    pub member: Option<String>,
    /// Non-fatal problems met while parsing.
    pub warnings: Vec<String>,
}

/// An import failure that names the file and the place in it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {place}{message}")]
pub struct ImportError {
    pub path: PathBuf,
    /// e.g. "line 3, column 7: " or "$.messages[2].content: "; empty when not applicable.
    pub place: String,
    pub message: String,
}

impl ImportError {
    pub fn new(path: &Path, place: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            place: place.into(),
            message: message.into(),
        }
    }

    fn from_problem(path: &Path, problem: Problem) -> Self {
        Self::new(path, problem.place, problem.message)
    }
}

/// What parsing a path produced.
#[derive(Debug, Default)]
pub struct ParseOutcome {
    pub traces: Vec<SourcedTrace>,
    pub errors: Vec<ImportError>,
}

/// How deep a directory scan descends (a Thought Anchors tree is model/kind/problem_N).
const MAX_DEPTH: usize = 4;

/// Parse every trace at `path`: a file (one or more traces, e.g. JSONL), a Thought Anchors
/// problem folder, or a directory scanned for any of these. Per-file failures inside a directory
/// are returned beside the traces that did load, so one bad file never hides the rest.
/// A single file that yields no trace at all is an error.
pub fn parse_path(path: &Path, opts: &SplitOptions) -> Result<ParseOutcome, ImportError> {
    let meta = fs::metadata(path).map_err(|e| ImportError::new(path, "", e.to_string()))?;
    if meta.is_dir() {
        if thought_anchors::is_problem_folder(path) {
            let trace = thought_anchors::load(path, opts)?;
            return Ok(ParseOutcome {
                traces: vec![trace],
                errors: Vec::new(),
            });
        }
        let mut outcome = ParseOutcome::default();
        scan_dir(path, 0, opts, &mut outcome);
        return Ok(outcome);
    }
    if let Some(folder) = thought_anchors::folder_of_member_file(path) {
        let trace = thought_anchors::load(&folder, opts)?;
        return Ok(ParseOutcome {
            traces: vec![trace],
            errors: Vec::new(),
        });
    }
    let mut outcome = load_file(path, opts, Exports::Refuse)?;
    if outcome.traces.is_empty() && outcome.errors.len() == 1 {
        // A file holding one broken trace: report it as the error it is.
        if let Some(e) = outcome.errors.pop() {
            return Err(e);
        }
    }
    Ok(outcome)
}

fn scan_dir(dir: &Path, depth: usize, opts: &SplitOptions, outcome: &mut ParseOutcome) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            outcome.errors.push(ImportError::new(
                dir,
                "",
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if thought_anchors::is_problem_folder(&path) {
                match thought_anchors::load(&path, opts) {
                    Ok(t) => outcome.traces.push(t),
                    Err(e) => outcome.errors.push(e),
                }
            } else if depth + 1 < MAX_DEPTH {
                scan_dir(&path, depth + 1, opts, outcome);
            }
            continue;
        }
        // Rollout stores, their run manifests (`NAME.rollouts.manifest.json`) and the files
        // kept beside a store (run records, similarities, human labels) sit beside the traces;
        // they are read with their trace, never as traces of their own.
        if name.ends_with(".rollouts.jsonl")
            || name.ends_with(".rollouts.manifest.json")
            || crate::store::is_beside_store(&path)
            || !(name.ends_with(".json") || name.ends_with(".jsonl"))
        {
            continue;
        }
        // Our own JSON exports often sit beside the traces they were made from.
        match load_file(&path, opts, Exports::Skip) {
            Ok(mut o) => {
                outcome.traces.append(&mut o.traces);
                outcome.errors.append(&mut o.errors);
            }
            Err(e) => outcome.errors.push(e),
        }
    }
}

/// Read a file as JSON (one object or an array) or as JSON lines.
/// What to do with one of our own JSON exports: skipped in a directory scan, an error naming
/// it when it is the file asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exports {
    Skip,
    Refuse,
}

fn load_file(
    path: &Path,
    opts: &SplitOptions,
    exports: Exports,
) -> Result<ParseOutcome, ImportError> {
    let bytes = fs::read(path).map_err(|e| ImportError::new(path, "", e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ImportError::new(
            path,
            format!("byte {}: ", e.utf8_error().valid_up_to()),
            "not UTF-8 text",
        )
    })?;
    let is_jsonl_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    if is_jsonl_name {
        return Ok(load_jsonl(path, &text, opts));
    }
    match json::parse(&text) {
        Ok(value) if value.get("format").and_then(Value::as_str) == Some(super::EXPORT_FORMAT) => {
            match exports {
                Exports::Skip => Ok(ParseOutcome::default()),
                Exports::Refuse => Err(ImportError::new(
                    path,
                    "",
                    "this is an anchorscope export (a trace with its analysis), not a trace: \
                     open the trace it was exported from",
                )),
            }
        }
        Ok(value) => load_json_value(path, &text, &value, opts),
        Err(problem) => {
            if looks_like_jsonl(&text) {
                Ok(load_jsonl(path, &text, opts))
            } else {
                Err(ImportError::from_problem(path, problem))
            }
        }
    }
}

/// More than one non-empty line, and the first parses as a JSON object on its own.
fn looks_like_jsonl(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first_is_object = lines
        .next()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .is_some_and(|v| v.is_object());
    first_is_object && lines.next().is_some()
}

fn load_json_value(
    path: &Path,
    text: &str,
    value: &Value,
    opts: &SplitOptions,
) -> Result<ParseOutcome, ImportError> {
    let root = Node::root(value);
    let mut outcome = ParseOutcome::default();
    match value {
        Value::Array(_) => {
            let items = root
                .items()
                .map_err(|p| ImportError::from_problem(path, p))?;
            if items.is_empty() {
                return Err(ImportError::new(path, "$: ", "empty array: no traces"));
            }
            for (index, item) in items.iter().enumerate() {
                let default_id = format!("{}[{index}]", file_stem(path));
                match parse_trace(item, &default_id) {
                    Ok(parsed) => {
                        let key = explicit_id(item).unwrap_or_else(|| format!("item{index}"));
                        outcome.traces.push(finish(parsed, path, Some(key), opts));
                    }
                    Err(p) => outcome.errors.push(ImportError::from_problem(path, p)),
                }
            }
        }
        _ => {
            let parsed = match parse_trace(&root, &file_stem(path)) {
                Ok(parsed) => parsed,
                Err(p) if native::is_native(value) => {
                    // Re-read with serde for a line/column when the structure is wrong.
                    return Err(ImportError::from_problem(
                        path,
                        native::locate_error(text, p),
                    ));
                }
                Err(p) => return Err(ImportError::from_problem(path, p)),
            };
            outcome.traces.push(finish(parsed, path, None, opts));
        }
    }
    Ok(outcome)
}

fn load_jsonl(path: &Path, text: &str, opts: &SplitOptions) -> ParseOutcome {
    let mut outcome = ParseOutcome::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                let problem = Problem::at(
                    format!("line {number}, column {}: ", e.column()),
                    json::syntax_problem(&e).message,
                );
                outcome
                    .errors
                    .push(ImportError::from_problem(path, problem));
                continue;
            }
        };
        let node = Node::root(&value);
        let default_id = format!("{}:{number}", file_stem(path));
        match parse_trace(&node, &default_id) {
            Ok(parsed) => {
                let key = explicit_id(&node).unwrap_or_else(|| format!("line{number}"));
                outcome.traces.push(finish(parsed, path, Some(key), opts));
            }
            Err(p) => outcome
                .errors
                .push(ImportError::from_problem(path, p.on_line(number))),
        }
    }
    if outcome.traces.is_empty() && outcome.errors.is_empty() {
        outcome
            .errors
            .push(ImportError::new(path, "", "empty file: no traces"));
    }
    outcome
}

/// A trace parsed from one JSON document, before its store is attached.
pub(crate) struct Parsed {
    pub trace: Trace,
    /// Rollouts that came with the source (e.g. Thought Anchors `chunk_i/solutions.json`).
    pub rollouts: Vec<Rollout>,
    pub warnings: Vec<String>,
}

impl Parsed {
    pub fn new(trace: Trace) -> Self {
        Self {
            trace,
            rollouts: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Recognise one JSON object as a trace of any supported kind.
fn parse_trace(node: &Node<'_>, default_id: &str) -> Result<Parsed, Problem> {
    let object = node.object()?;
    if object.contains_key("format") {
        return native::parse(node);
    }
    if object.contains_key("messages") {
        return chat::parse(node, default_id);
    }
    if transcript::looks_like(object) {
        return transcript::parse(node, default_id);
    }
    if object.contains_key("solution") || object.contains_key("chunk") {
        return Err(node.problem(
            "this is a Thought Anchors file: open its problem folder (the one holding \
             base_solution.json)",
        ));
    }
    Err(node.problem(
        "not a trace: expected a native trace (\"format\": \"anchorscope-trace\"), a chat \
         object with \"messages\", or a transcript with a prompt and a \"response\"",
    ))
}

/// The object's own `id` (string or number), used to name its rollout store.
fn explicit_id(node: &Node<'_>) -> Option<String> {
    match node.value.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into())
}

/// Split when the source gave no sentences.
pub(crate) fn finish(
    parsed: Parsed,
    path: &Path,
    member: Option<String>,
    opts: &SplitOptions,
) -> SourcedTrace {
    let Parsed {
        mut trace,
        rollouts,
        warnings,
    } = parsed;
    if trace.sentences.is_empty() {
        trace.sentences = split_response(&trace.response, opts);
    }
    SourcedTrace {
        trace,
        rollouts,
        path: path.to_path_buf(),
        member,
        warnings,
    }
}

/// Text of a chat message `content`: a string, null (empty), or OpenAI content parts
/// (`[{"type": "text", "text": …}]`, text parts joined).
pub(crate) fn content_text(node: &Node<'_>) -> Result<String, Problem> {
    match node.value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(_) => {
            let mut text = String::new();
            for part in node.items()? {
                if let Some(t) = part.get("text") {
                    text.push_str(t.str()?);
                } else if part.value.is_string() {
                    text.push_str(part.str()?);
                }
            }
            Ok(text)
        }
        other => Err(node.problem(format!(
            "expected a string or a list of content parts, found {}",
            json::kind(other)
        ))),
    }
}

/// `free`/`paid` from an `is_free_tier_user` value or from the
/// `<is_free_tier_user>True</is_free_tier_user>` tag of the alignment-faking prompts.
pub(crate) fn tier_from(field: Option<&Value>, prompt: &[Message]) -> Option<String> {
    let as_tier = |free: bool| super::intervention::tier_name(free).to_string();
    match field {
        Some(Value::Bool(b)) => return Some(as_tier(*b)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "free" => return Some(as_tier(true)),
            "false" | "paid" => return Some(as_tier(false)),
            _ => {}
        },
        _ => {}
    }
    crate::trace::intervention::tier_of(prompt).map(as_tier)
}
