//! Thought Anchors problem folders (Bogdan et al. 2025, `interp-reasoning/thought-anchors`):
//!
//! ```text
//! MODEL/{correct,incorrect}_base_solution/problem_N/
//!   problem.json          {problem, level, type, gt_answer, …}
//!   base_solution.json    {prompt, solution, full_cot, answer, is_correct}
//!   chunks_labeled.json   [{chunk, chunk_idx, function_tags, accuracy,
//!                           resampling_importance_accuracy, counterfactual_importance_accuracy,
//!                           counterfactual_importance_kl, different_trajectories_fraction,
//!                           overdeterminedness, …}]
//!   chunks_resampled.json {"i": [T_i, …]}
//!   chunk_i/solutions.json [{chunk_resampled, rollout, is_correct, …}]
//! ```
//!
//! Mapping (behavior `correct`):
//! - response = `solution`. `full_cot` is `prompt + solution`, and the prompt ends with
//!   `<think>\n`, so the solution starts inside the reasoning and its `</think>` closes it.
//! - sentences = their chunks, located in the response (exact match searching forward from the
//!   previous chunk's end, else a whitespace-insensitive match, since their merge joins pieces
//!   with one space).
//! - rate = `accuracy` (the rate of correct answers with chunk i resampled, i.e. at position i);
//!   resampling importance = `resampling_importance_accuracy` (their acc_{i+1} − acc_i, our sign);
//!   counterfactual importance = −`counterfactual_importance_accuracy` (their code subtracts the
//!   other way round), left undefined where `different_trajectories_fraction` is 0: the set of
//!   different replacements was empty, and their code writes 0 for that.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json::{self, Node, Problem};
use super::ta_realign::{realign, Moved, Record};
use super::{finish, ImportError, Parsed, SourcedTrace};
use crate::trace::model::{
    FinishReason, ImportedMetrics, ImportedSentenceMetrics, Label, LabelValue, Message,
    ReasoningStyle, Rollout, Sentence, SourceKind, Trace,
};
use crate::trace::split::SplitOptions;

const BASE_SOLUTION: &str = "base_solution.json";
const CHUNKS_LABELED: &str = "chunks_labeled.json";
const CHUNKS_RESAMPLED: &str = "chunks_resampled.json";
const PROBLEM: &str = "problem.json";
const SCENARIO: &str = "scenario.json";
/// Prefix of the `meta` keys that hold `scenario.json`'s text fields.
pub const SCENARIO_META: &str = "scenario.";
/// The behavior their `accuracy` measures.
pub const BEHAVIOR: &str = "correct";
const CLASSIFIER: &str = "thought-anchors-is_correct";

pub fn is_problem_folder(dir: &Path) -> bool {
    dir.join(BASE_SOLUTION).is_file() || dir.join(CHUNKS_LABELED).is_file()
}

/// The problem folder when `file` is one of its files (the user pointed at a member file).
pub fn folder_of_member_file(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_str()?;
    if ![BASE_SOLUTION, CHUNKS_LABELED, CHUNKS_RESAMPLED].contains(&name) {
        return None;
    }
    let dir = file.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    is_problem_folder(dir).then(|| dir.to_path_buf())
}

/// Read a JSON file of the folder; `Ok(None)` when absent.
fn read_json(path: &Path) -> Result<Option<Value>, ImportError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImportError::new(path, "", e.to_string())),
    };
    json::parse(&text)
        .map(Some)
        .map_err(|p| ImportError::new(path, p.place, p.message))
}

fn at(path: &Path) -> impl Fn(Problem) -> ImportError + '_ {
    move |p| ImportError::new(path, p.place, p.message)
}

pub fn load(dir: &Path, opts: &SplitOptions) -> Result<SourcedTrace, ImportError> {
    let base_path = dir.join(BASE_SOLUTION);
    let chunks_path = dir.join(CHUNKS_LABELED);
    let base = read_json(&base_path)?;
    let chunks = read_json(&chunks_path)?;
    let mut warnings = Vec::new();

    let mut prompt = Vec::new();
    let mut meta = Vec::new();
    let response = match &base {
        Some(value) => {
            let root = Node::root(value);
            let solution = root.require("solution").map_err(at(&base_path))?;
            if let Some(p) = root.get("prompt") {
                prompt.push(Message::new("user", p.str().map_err(at(&base_path))?));
            }
            if let Some(a) = root
                .get("answer")
                .and_then(|a| a.value.as_str().map(String::from))
            {
                meta.push(("base_answer".to_string(), a));
            }
            if let Some(c) = root.get("is_correct") {
                if let Some(b) = c.opt_bool().map_err(at(&base_path))? {
                    meta.push(("base_is_correct".to_string(), b.to_string()));
                }
            }
            solution.str().map_err(at(&base_path))?.to_string()
        }
        None => {
            warnings.push(format!(
                "{}: missing, so the response was rebuilt from the chunks joined by blank lines",
                base_path.display()
            ));
            String::new()
        }
    };

    let chunk_nodes: Vec<(String, Node<'_>)> = match &chunks {
        Some(value) => {
            let root = Node::root(value);
            let mut out = Vec::new();
            for item in root.items().map_err(at(&chunks_path))? {
                let text = item
                    .require("chunk")
                    .and_then(|c| c.str().map(String::from))
                    .map_err(at(&chunks_path))?;
                out.push((text, item));
            }
            out
        }
        None => Vec::new(),
    };
    let response = if base.is_none() {
        let texts: Vec<&str> = chunk_nodes.iter().map(|(t, _)| t.as_str()).collect();
        texts.join("\n\n")
    } else {
        response
    };

    let mut trace = Trace::new(trace_id(dir), prompt, response);
    trace.source = SourceKind::ThoughtAnchors;
    trace.reasoning_style = if trace.response.contains(crate::trace::tags::THINK.close) {
        ReasoningStyle::Think
    } else {
        ReasoningStyle::Plain
    };
    trace.model = model_name(dir);
    trace.meta.extend(meta);
    if let Some(problem) = read_json(&dir.join(PROBLEM))? {
        for key in ["nickname", "level", "type", "gt_answer"] {
            if let Some(v) = problem.get(key).and_then(Value::as_str) {
                trace.meta.insert(key.to_string(), v.to_string());
            }
        }
    }
    trace.manifest.model = trace.model.clone();
    trace.manifest.note = Some(
        "imported from a Thought Anchors problem folder; their rollouts' seeds are unknown".into(),
    );
    trace
        .manifest
        .classifiers
        .insert(CLASSIFIER.into(), "imported".into());

    let measure = detect_measure(
        chunks
            .as_ref()
            .and_then(|c| c.as_array())
            .and_then(|a| a.first()),
        base.as_ref(),
    );
    if let Some(value) = &base {
        for flag in ["contains_blackmail", "contains_whistleblowing"] {
            if let Some(v) = value.get(flag) {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                trace
                    .meta
                    .insert(format!("base_{flag}"), text.to_lowercase());
            }
        }
    }
    if let Some(scenario) = read_json(&dir.join(SCENARIO))? {
        if let Some(name) = scenario.get("nickname").and_then(Value::as_str) {
            trace.meta.insert("scenario".into(), name.to_string());
        }
        // The scenario's own text (system prompt, the documents it shows the model), kept
        // for the explorer's context pane: the prompt alone often omits it.
        if let Some(fields) = scenario.as_object() {
            for (key, value) in fields {
                if matches!(key.as_str(), "nickname" | "scenario_id") {
                    continue;
                }
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                trace.meta.insert(format!("{SCENARIO_META}{key}"), text);
            }
        }
    }
    let mut chunk_positions = Vec::new();
    if !chunk_nodes.is_empty() {
        trace.sentences = locate_chunks(&trace.response, &chunk_nodes).map_err(at(&chunks_path))?;
        let resampled = read_json(&dir.join(CHUNKS_RESAMPLED))?;
        let records = chunk_nodes
            .iter()
            .enumerate()
            .map(|(i, (_, node))| read_record(node, i, &measure))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at(&chunks_path))?;
        chunk_positions = records.iter().map(|r| r.chunk_idx).collect();
        let (metrics, notes) = imported_metrics(records, resampled.as_ref());
        // The notes travel with the numbers (detail pane, stats, exports), not as load warnings:
        // they describe the data, nothing went wrong.
        trace.imported.push(ImportedMetrics {
            behavior: measure.behavior.clone(),
            note: format!(
                "Thought Anchors {CHUNKS_LABELED}: rate = their {} ({}); importance signs \
                 converted to ours (positive pushes toward {}); KL is theirs (between final-answer \
                 distributions), not ours; 0s written where nothing was measured are n/a",
                measure.rate_key, measure.description, measure.behavior
            ),
            notes,
            sentences: metrics,
        });
    }

    let mut parsed = Parsed::new(trace);
    parsed.warnings = warnings;
    parsed.rollouts = load_solutions(dir, &chunk_positions, &measure)?;
    Ok(finish(parsed, dir, None, opts))
}

/// `model/kind_base_solution/problem_N` when the folder sits in their tree, else its name.
fn trace_id(dir: &Path) -> String {
    let names: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [.., model, kind, problem] if kind.contains("base_solution") => {
            format!("{model}/{kind}/{problem}")
        }
        [.., problem] => problem.clone(),
        [] => "thought-anchors".into(),
    }
}

fn model_name(dir: &Path) -> Option<String> {
    let kind = dir.parent()?;
    if !kind
        .file_name()?
        .to_string_lossy()
        .contains("base_solution")
    {
        return None;
    }
    Some(kind.parent()?.file_name()?.to_string_lossy().into_owned())
}

/// Byte ranges of the chunks in the response, searching forward from the previous chunk.
fn locate_chunks(response: &str, chunks: &[(String, Node<'_>)]) -> Result<Vec<Sentence>, Problem> {
    let mut sentences = Vec::with_capacity(chunks.len());
    let mut from = 0;
    for (i, (text, _)) in chunks.iter().enumerate() {
        let found = find_exact(response, from, text.trim())
            .or_else(|| find_normalized(response, from, text));
        let Some((start, end)) = found else {
            return Err(Problem::at(
                format!("$[{i}].chunk: "),
                "chunk not found in base_solution.json's solution after the previous chunk",
            ));
        };
        sentences.push(Sentence {
            start,
            end,
            text: response[start..end].to_string(),
        });
        from = end;
    }
    Ok(sentences)
}

fn find_exact(response: &str, from: usize, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let start = from + response.get(from..)?.find(needle)?;
    Some((start, start + needle.len()))
}

/// The chunk's words separated by any whitespace (their merge joins pieces with one space).
fn find_normalized(response: &str, from: usize, needle: &str) -> Option<(usize, usize)> {
    let words: Vec<String> = needle.split_whitespace().map(regex::escape).collect();
    if words.is_empty() {
        return None;
    }
    let re = regex::Regex::new(&words.join(r"\s+")).ok()?;
    let m = re.find_at(response, from)?;
    Some((m.start(), m.end()))
}

/// What a folder's rate measures, read from the data (docs/METHOD.md): the behavior's name,
/// the suffix of its metric keys and a note for the UI.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    pub behavior: String,
    /// `accuracy`, `blackmail_rate`, …: the rate key, also the suffix of the importance keys.
    pub rate_key: String,
    pub description: String,
}

/// Known rate keys, most specific first; any other `X_rate` with a matching
/// `resampling_importance_X_rate` is taken as behavior `X`.
const KNOWN: [(&str, &str, &str); 3] = [
    (
        "blackmail_rate",
        "blackmail",
        "share of rollouts that blackmail",
    ),
    (
        "whistleblowing_rate",
        "whistleblowing",
        "share of rollouts that whistleblow",
    ),
    ("accuracy", BEHAVIOR, "share of correct answers"),
];

/// The measure of a folder from its first chunk record's keys, else from `base_solution.json`'s
/// `contains_*` flag, else `correct` (the older math format).
pub fn detect_measure(first_chunk: Option<&Value>, base: Option<&Value>) -> Measure {
    let make = |key: &str, behavior: &str, what: &str| Measure {
        behavior: behavior.to_string(),
        rate_key: key.to_string(),
        description: what.to_string(),
    };
    if let Some(obj) = first_chunk.and_then(Value::as_object) {
        for (key, behavior, what) in KNOWN {
            if obj.contains_key(key) {
                return make(key, behavior, what);
            }
        }
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort();
        for key in keys {
            if let Some(name) = key.strip_suffix("_rate") {
                if obj.contains_key(&format!("resampling_importance_{key}")) {
                    return make(key, name, &format!("share of rollouts with {name}"));
                }
            }
        }
    }
    if let Some(obj) = base.and_then(Value::as_object) {
        if obj.contains_key("contains_blackmail") {
            let (k, b, w) = KNOWN[0];
            return make(k, b, w);
        }
        if obj.contains_key("contains_whistleblowing") {
            let (k, b, w) = KNOWN[1];
            return make(k, b, w);
        }
    }
    let (k, b, w) = KNOWN[2];
    make(k, b, w)
}

/// One chunk record as read, before realignment.
struct ChunkRecord {
    chunk_idx: usize,
    rate: Option<f64>,
    metrics: Moved,
    tags: Vec<String>,
    depends_on: Vec<usize>,
    summary: Option<String>,
}

fn read_record(
    node: &Node<'_>,
    position: usize,
    measure: &Measure,
) -> Result<ChunkRecord, Problem> {
    let num = |key: &str| -> Result<Option<f64>, Problem> {
        match node.get(key) {
            Some(n) => Ok(n.opt_f64()?.filter(|x| x.is_finite())),
            None => Ok(None),
        }
    };
    let key = &measure.rate_key;
    // Their counterfactual and forced metrics subtract the other way round from ours (checked on
    // the released data, older and newer format alike: where every resample differed, their
    // counterfactual importance is minus their resampling importance), so both are negated.
    let negate = |x: Option<f64>| x.map(|v| if v == 0.0 { 0.0 } else { -v });
    let chunk_idx = match node.get("chunk_idx") {
        Some(n) => match n.value.as_u64() {
            Some(i) => i as usize,
            None => return Err(n.problem("chunk_idx must be a non-negative integer")),
        },
        None => position,
    };
    let mut tags = Vec::new();
    if let Some(t) = node.get("function_tags") {
        for tag in t.items()? {
            tags.push(tag.str()?.to_string());
        }
    }
    let mut depends_on = Vec::new();
    if let Some(d) = node.get("depends_on") {
        for dep in d.items()? {
            let parsed = match dep.value {
                Value::String(s) => s.trim().parse::<usize>().ok(),
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                _ => None,
            };
            match parsed {
                Some(i) => depends_on.push(i),
                None => return Err(dep.problem("depends_on entries must be chunk indices")),
            }
        }
    }
    let summary = match node.get("summary") {
        Some(s) => Some(s.str()?.to_string()).filter(|s| !s.trim().is_empty()),
        None => None,
    };
    Ok(ChunkRecord {
        chunk_idx,
        rate: num(key)?,
        metrics: Moved {
            resampling: num(&format!("resampling_importance_{key}"))?,
            counterfactual: negate(num(&format!("counterfactual_importance_{key}"))?),
            kl: num("counterfactual_importance_kl")?,
            forced: negate(num(&format!("forced_importance_{key}"))?),
            different_fraction: num("different_trajectories_fraction")?,
            overdeterminedness: num("overdeterminedness")?,
        },
        tags,
        depends_on,
        summary,
    })
}

/// The imported metrics of every sentence, indexed by `chunk_idx`, realigned, with notes.
fn imported_metrics(
    records: Vec<ChunkRecord>,
    resampled: Option<&Value>,
) -> (Vec<ImportedSentenceMetrics>, Vec<String>) {
    let plain: Vec<Record> = records
        .iter()
        .map(|r| Record {
            chunk_idx: r.chunk_idx,
            rate: r.rate,
            metrics: r.metrics,
        })
        .collect();
    let realigned = realign(&plain);
    let position_of: std::collections::HashMap<usize, usize> = records
        .iter()
        .enumerate()
        .map(|(p, r)| (r.chunk_idx, p))
        .collect();
    // Their labeller numbers chunks by place in the labelled list, not by chunk_idx (in the
    // released blackmail folder, chunk_idx 8 depends on "6", which is no chunk_idx but the
    // record just before it). Read them as positions when every entry points back to an
    // earlier record, else as chunk indices.
    let as_positions = records
        .iter()
        .enumerate()
        .all(|(p, r)| r.depends_on.iter().all(|&d| d < p));
    let position_of = |d: &usize| -> Option<usize> {
        if as_positions {
            Some(*d)
        } else {
            position_of.get(d).copied()
        }
    };
    let mut notes = realigned.notes;
    let mut unknown_deps = 0;
    let metrics = records
        .into_iter()
        .zip(realigned.metrics)
        .map(|(r, m)| {
            let depends_on = r
                .depends_on
                .iter()
                .filter_map(|idx| {
                    let p = position_of(idx);
                    unknown_deps += usize::from(p.is_none());
                    p
                })
                .collect();
            let replacements = resampled
                .and_then(|v| v.get(r.chunk_idx.to_string()))
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            ImportedSentenceMetrics {
                rate: r.rate,
                resampling_importance: m.resampling,
                counterfactual_importance: m.counterfactual,
                counterfactual_kl: m.kl,
                forced_importance: m.forced,
                different_trajectories_fraction: m.different_fraction,
                overdeterminedness: m.overdeterminedness,
                tags: r.tags,
                chunk_idx: Some(r.chunk_idx),
                depends_on,
                summary: r.summary,
                replacements,
            }
        })
        .collect();
    if unknown_deps > 0 {
        notes.push(format!(
            "{unknown_deps} depends_on entr(ies) name a chunk_idx with no record; not shown"
        ));
    }
    (metrics, notes)
}

/// Rollouts of `chunk_{idx}/solutions.json`, put at the sentence whose `chunk_idx` is idx (the
/// folders are named by chunk index, which can have gaps) and labelled with the folder's
/// behavior. The pipeline's rule: a rollout without an answer leaves the denominator (invalid).
/// Without chunk records, folder i is sentence i.
fn load_solutions(
    dir: &Path,
    chunk_positions: &[usize],
    measure: &Measure,
) -> Result<Vec<Rollout>, ImportError> {
    let folders: Vec<(usize, usize)> = if chunk_positions.is_empty() {
        (0..)
            .take_while(|i| dir.join(format!("chunk_{i}")).is_dir())
            .map(|i| (i, i))
            .collect()
    } else {
        chunk_positions
            .iter()
            .enumerate()
            .map(|(position, &idx)| (position, idx))
            .collect()
    };
    let flag = match measure.behavior.as_str() {
        "blackmail" => "contains_blackmail",
        "whistleblowing" => "contains_whistleblowing",
        _ => "is_correct",
    };
    let mut rollouts = Vec::new();
    for (position, idx) in folders {
        let path = dir.join(format!("chunk_{idx}")).join("solutions.json");
        let Some(value) = read_json(&path)? else {
            continue;
        };
        let root = Node::root(&value);
        for item in root.items().map_err(at(&path))? {
            // Entries their sampler recorded as failed carry no rollout text: skip them.
            let Some(text) = item.get("rollout") else {
                continue;
            };
            let text = text.str().map_err(at(&path))?.to_string();
            let replacement = match item.get("chunk_resampled") {
                Some(r) => r.str().map_err(at(&path))?.to_string(),
                None => String::new(),
            };
            let answer = item
                .get("answer")
                .and_then(|a| a.value.as_str())
                .map(str::trim)
                .unwrap_or("");
            let verdict = match item.get(flag) {
                Some(c) => flag_value(c.value).ok_or_else(|| {
                    ImportError::new(&path, c.path(), format!("{flag} must be true or false"))
                })?,
                None => None,
            };
            // Math folders: no answer means no verdict (their denominators skip it).
            let needs_answer = flag == "is_correct";
            let value = match verdict {
                Some(_) if needs_answer && answer.is_empty() => LabelValue::Invalid,
                Some(true) => LabelValue::Yes,
                Some(false) => LabelValue::No,
                None => LabelValue::Invalid,
            };
            let mut labels = std::collections::BTreeMap::new();
            labels.insert(
                measure.behavior.clone(),
                Label {
                    value,
                    classifier: CLASSIFIER.into(),
                    version: "imported".into(),
                    evidence: (!answer.is_empty()).then(|| format!("answer: {answer}")),
                },
            );
            rollouts.push(Rollout {
                position,
                seed: 0,
                replacement,
                text,
                tokens: 0,
                finish: FinishReason::Unknown,
                labels,
                similarity: None,
                run: Some(crate::trace::IMPORTED_RUN.into()),
                recurrence: None,
            });
        }
    }
    Ok(rollouts)
}

/// `true`, `false`, `"True"`, `"false"` (their files hold both); `None` for null.
fn flag_value(value: &Value) -> Option<Option<bool>> {
    match value {
        Value::Bool(b) => Some(Some(*b)),
        Value::Null => Some(None),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Some(true)),
            "false" => Some(Some(false)),
            "" | "none" | "null" => Some(None),
            _ => None,
        },
        _ => None,
    }
}
