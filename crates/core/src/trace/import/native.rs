//! The native format: `{"format": "anchorscope-trace", "version": 1, …}` (see `model::Trace`).

use serde::Deserialize;
use serde_json::Value;

use super::json::{syntax_problem, Node, Problem};
use super::Parsed;
use crate::trace::model::{Trace, TRACE_FORMAT, TRACE_FORMAT_VERSION};

pub fn is_native(value: &Value) -> bool {
    value.get("format").and_then(Value::as_str) == Some(TRACE_FORMAT)
}

pub fn parse(node: &Node<'_>) -> Result<Parsed, Problem> {
    let format = node.require("format")?;
    let name = format.str()?;
    if name != TRACE_FORMAT {
        return Err(format.problem(format!(
            "unknown format \"{name}\" (this build reads \"{TRACE_FORMAT}\")"
        )));
    }
    let version = node.require("version")?;
    match version.value.as_u64() {
        Some(v) if v > u64::from(TRACE_FORMAT_VERSION) => {
            return Err(version.problem(format!(
                "format version {v} is newer than this build reads ({TRACE_FORMAT_VERSION}); \
                 update anchorscope"
            )))
        }
        Some(_) => {}
        None => return Err(version.problem("expected a whole number")),
    }
    let trace = Trace::deserialize(node.value).map_err(|e| node.problem(e.to_string()))?;
    check_sentences(node, &trace)?;
    Ok(Parsed::new(trace))
}

/// Sentences must be ordered byte ranges on char boundaries whose text is the response slice:
/// everything downstream cuts prefixes by these offsets.
fn check_sentences(node: &Node<'_>, trace: &Trace) -> Result<(), Problem> {
    let mut last_end = 0;
    for (i, s) in trace.sentences.iter().enumerate() {
        let place = || Problem::at(format!("{}.sentences[{i}]: ", node.path()), "");
        let bad = |message: String| {
            let mut p = place();
            p.message = message;
            p
        };
        if s.start > s.end || s.end > trace.response.len() {
            return Err(bad(format!(
                "range {}..{} is outside the response ({} bytes)",
                s.start,
                s.end,
                trace.response.len()
            )));
        }
        if s.start < last_end {
            return Err(bad(format!(
                "range {}..{} overlaps the previous sentence",
                s.start, s.end
            )));
        }
        match trace.response.get(s.start..s.end) {
            None => return Err(bad("range is not on character boundaries".into())),
            Some(slice) if slice != s.text => {
                return Err(bad("text does not match response[start..end]".into()))
            }
            Some(_) => {}
        }
        last_end = s.end;
    }
    Ok(())
}

/// For a single-object file whose structure serde rejects, serde's own message carries the
/// line and column; prefer it over the bare `$` path.
pub fn locate_error(text: &str, fallback: Problem) -> Problem {
    match serde_json::from_str::<Trace>(text) {
        Err(e) if fallback.place == "$: " => syntax_problem(&e),
        _ => fallback,
    }
}
