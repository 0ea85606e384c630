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
use super::{finish, ImportError, LoadedTrace, Parsed};
use crate::store;
use crate::trace::model::{
    FinishReason, ImportedMetrics, ImportedSentenceMetrics, Label, LabelValue, Message,
    ReasoningStyle, Rollout, Sentence, SourceKind, Trace,
};
use crate::trace::split::SplitOptions;

const BASE_SOLUTION: &str = "base_solution.json";
const CHUNKS_LABELED: &str = "chunks_labeled.json";
const CHUNKS_RESAMPLED: &str = "chunks_resampled.json";
const PROBLEM: &str = "problem.json";
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

pub fn load(dir: &Path, opts: &SplitOptions) -> Result<LoadedTrace, ImportError> {
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
    trace.reasoning_style = if trace.response.contains("</think>") {
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

    if !chunk_nodes.is_empty() {
        trace.sentences = locate_chunks(&trace.response, &chunk_nodes).map_err(at(&chunks_path))?;
        let resampled = read_json(&dir.join(CHUNKS_RESAMPLED))?;
        let metrics = chunk_nodes
            .iter()
            .enumerate()
            .map(|(i, (_, node))| chunk_metrics(node, i, resampled.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at(&chunks_path))?;
        trace.imported.push(ImportedMetrics {
            behavior: BEHAVIOR.into(),
            note: format!(
                "Thought Anchors {CHUNKS_LABELED}: rate = their accuracy (share of correct \
                 answers); counterfactual importance sign flipped to ours (positive pushes \
                 toward a correct answer), undefined where no resample differed"
            ),
            sentences: metrics,
        });
    }

    let mut parsed = Parsed::new(trace);
    parsed.warnings = warnings;
    let positions = parsed.trace.positions();
    parsed.rollouts = load_solutions(dir, positions)?;
    let store_path = store::store_path_for(dir);
    Ok(finish(parsed, dir, store_path, opts))
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
        [.., model, kind, problem] if kind.ends_with("_base_solution") => {
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
        .ends_with("_base_solution")
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

fn chunk_metrics(
    node: &Node<'_>,
    index: usize,
    resampled: Option<&Value>,
) -> Result<ImportedSentenceMetrics, Problem> {
    let num = |key: &str| -> Result<Option<f64>, Problem> {
        match node.get(key) {
            Some(n) => Ok(n.opt_f64()?.filter(|x| x.is_finite())),
            None => Ok(None),
        }
    };
    let different = num("different_trajectories_fraction")?;
    let no_different_resample = different == Some(0.0);
    let counterfactual = num("counterfactual_importance_accuracy")?
        .filter(|_| !no_different_resample)
        .map(|x| -x);
    let mut tags = Vec::new();
    if let Some(t) = node.get("function_tags") {
        for tag in t.items()? {
            tags.push(tag.str()?.to_string());
        }
    }
    let replacements = resampled
        .and_then(|r| r.get(index.to_string()))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(ImportedSentenceMetrics {
        rate: num("accuracy")?,
        resampling_importance: num("resampling_importance_accuracy")?,
        counterfactual_importance: counterfactual,
        counterfactual_kl: num("counterfactual_importance_kl")?.filter(|_| !no_different_resample),
        different_trajectories_fraction: different,
        overdeterminedness: num("overdeterminedness")?,
        tags,
        replacements,
    })
}

/// Rollouts of `chunk_i/solutions.json`, labeled `correct` from their `is_correct`.
fn load_solutions(dir: &Path, positions: usize) -> Result<Vec<Rollout>, ImportError> {
    let mut rollouts = Vec::new();
    for position in 0..positions {
        let path = dir.join(format!("chunk_{position}")).join("solutions.json");
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
            let value = match item.get("is_correct") {
                Some(c) => match c.opt_bool().map_err(at(&path))? {
                    Some(true) => LabelValue::Yes,
                    Some(false) => LabelValue::No,
                    None => LabelValue::Invalid,
                },
                None => LabelValue::Invalid,
            };
            let mut labels = std::collections::BTreeMap::new();
            labels.insert(
                BEHAVIOR.to_string(),
                Label {
                    value,
                    classifier: CLASSIFIER.into(),
                    version: "imported".into(),
                    evidence: item
                        .get("answer")
                        .and_then(|a| a.value.as_str())
                        .map(|a| format!("answer: {a}")),
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
                run: None,
            });
        }
    }
    Ok(rollouts)
}
