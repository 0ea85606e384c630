//! The prompts both sides of the benchmark continue: real text from a sample trace, rendered by
//! the model's chat template and tokenized once here, so anchorscope and the peer see the same
//! token ids. Written to a JSON file that the child processes (ours and the Python peer) read.

use serde::{Deserialize, Serialize};

use crate::engine::worker::LmGenerator;
use crate::engine::EngineError;
use crate::trace::{Sentence, Trace};

/// One prompt: the trace position it continues and its token ids (prompt + kept reasoning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptIds {
    pub position: usize,
    pub ids: Vec<u32>,
}

/// Everything a measured job needs besides the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchInputs {
    /// The model file or directory both sides load.
    pub model_path: String,
    /// Where the text comes from.
    pub source: String,
    /// `--prefix-tokens` as asked; `single.ids.len()` is what was achieved.
    pub requested_prefix_tokens: usize,
    /// The single job's trace: the source trace, or a copy whose response is cut so that the
    /// prefix has the requested length (then it has one sentence and `single.position` is 1).
    pub single_trace: Trace,
    pub single: PromptIds,
    /// The sweep's trace (the source trace) and its positions, spread over the reasoning.
    pub sweep_trace: Trace,
    pub sweep: Vec<PromptIds>,
    pub temperature: f64,
    pub top_p: f64,
}

/// `count` positions spread evenly over `0..sentences` (each continues before a real sentence);
/// all of them when there are fewer sentences.
pub fn spread_positions(sentences: usize, count: usize) -> Vec<usize> {
    if sentences == 0 || count == 0 {
        return vec![0];
    }
    if count >= sentences {
        return (0..sentences).collect();
    }
    if count == 1 {
        return vec![0];
    }
    let last = (sentences - 1) as f64;
    let mut out: Vec<usize> = (0..count)
        .map(|k| (k as f64 * last / (count - 1) as f64).round() as usize)
        .collect();
    out.dedup();
    out
}

/// The token ids of P_position (rendered prompt + `trace.prefix(position)`).
fn prompt_ids(gen: &LmGenerator, trace: &Trace, position: usize) -> Result<Vec<u32>, EngineError> {
    let prompt = gen.template.render_prompt(&trace.prompt)?;
    gen.tokenizer
        .encode(&format!("{prompt}{}", trace.prefix(position)))
}

/// A copy of `trace` whose response is cut after the token that ends the `tokens`-th token of
/// the rendered text, with one sentence covering it; None when that cut falls inside the prompt
/// (the prompt alone is longer) or beyond the response.
fn cut_trace(
    gen: &LmGenerator,
    trace: &Trace,
    tokens: usize,
) -> Result<Option<Trace>, EngineError> {
    let prompt = gen.template.render_prompt(&trace.prompt)?;
    let full = format!("{prompt}{}", trace.response);
    let offsets = gen.tokenizer.encode_with_offsets(&full)?;
    let Some((_, range)) = tokens.checked_sub(1).and_then(|k| offsets.get(k)) else {
        return Ok(None);
    };
    let mut end = range.end.min(full.len());
    while end > 0 && !full.is_char_boundary(end) {
        end -= 1;
    }
    if end <= prompt.len() {
        return Ok(None);
    }
    let response = full[prompt.len()..end].to_string();
    let mut cut = trace.clone();
    cut.id = format!("{}#bench-prefix-{tokens}", trace.id);
    cut.sentences = vec![Sentence {
        start: 0,
        end: response.len(),
        text: response.clone(),
    }];
    cut.response = response;
    Ok(Some(cut))
}

/// Build the inputs from `trace`: a single prefix of about `prefix_tokens` tokens (exact when
/// the prompt is shorter and the re-tokenized cut agrees; otherwise the closest position, with
/// the real count in `single.ids`) and `positions` sweep positions.
pub fn build(
    gen: &LmGenerator,
    trace: &Trace,
    source: &str,
    prefix_tokens: usize,
    positions: usize,
    temperature: f64,
    top_p: f64,
) -> Result<BenchInputs, EngineError> {
    let mut best: Option<(Trace, PromptIds)> = None;
    let mut consider = |t: &Trace, position: usize, ids: Vec<u32>| {
        let distance = ids.len().abs_diff(prefix_tokens);
        if best
            .as_ref()
            .is_none_or(|(_, b)| distance < b.ids.len().abs_diff(prefix_tokens))
        {
            best = Some((t.clone(), PromptIds { position, ids }));
        }
    };
    if let Some(cut) = cut_trace(gen, trace, prefix_tokens)? {
        let ids = prompt_ids(gen, &cut, 1)?;
        consider(&cut, 1, ids);
    }
    for position in 0..trace.positions() {
        consider(trace, position, prompt_ids(gen, trace, position)?);
    }
    let (single_trace, single) =
        best.ok_or_else(|| EngineError::Other(format!("{source}: the trace has no positions")))?;
    let sweep = spread_positions(trace.sentences.len(), positions)
        .into_iter()
        .map(|position| prompt_ids(gen, trace, position).map(|ids| PromptIds { position, ids }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BenchInputs {
        model_path: gen.path.display().to_string(),
        source: source.to_string(),
        requested_prefix_tokens: prefix_tokens,
        single_trace,
        single,
        sweep_trace: trace.clone(),
        sweep,
        temperature,
        top_p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_spread_over_the_sentences() {
        assert_eq!(spread_positions(18, 8), vec![0, 2, 5, 7, 10, 12, 15, 17]);
        assert_eq!(spread_positions(3, 8), vec![0, 1, 2]);
        assert_eq!(spread_positions(10, 1), vec![0]);
        assert_eq!(spread_positions(0, 8), vec![0]);
        assert_eq!(spread_positions(9, 2), vec![0, 8]);
    }
}
