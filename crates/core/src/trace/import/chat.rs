//! OpenAI-style chat objects: `{"messages": [{"role", "content"}, …]}` (one per JSONL line).
//!
//! The messages before the answer are the prompt; the answer is the last assistant turn. When
//! an alignment-faking run continued with `<NEXT/>` user turns, the assistant turns after the
//! last real user message are joined with a newline, so every scratchpad block is kept.
//! A `reasoning_content` (or `reasoning`) field becomes `<think>\n{reasoning}\n</think>\n\n
//! {content}` so that sentence offsets still point into one response string.

use serde_json::Value;

use super::json::{Node, Problem};
use super::{content_text, tier_from, Parsed};
use crate::trace::model::{Message, ReasoningStyle, SourceKind, Trace};
use crate::trace::tags::style_of;

const CONTINUE_TURN: &str = "<NEXT/>";

pub fn parse(node: &Node<'_>, default_id: &str) -> Result<Parsed, Problem> {
    let messages = node.require("messages")?;
    let (prompt, response, style) = split_conversation(&messages)?;
    let mut trace = Trace::new(id_of(node, default_id), prompt, response);
    trace.source = SourceKind::Chat;
    trace.reasoning_style = style;
    trace.model = node
        .get("model")
        .and_then(|m| m.value.as_str().map(String::from));
    if let Some(tier) = tier_from(node.value.get("is_free_tier_user"), &trace.prompt) {
        trace.meta.insert("tier".into(), tier);
    }
    Ok(Parsed::new(trace))
}

pub fn id_of(node: &Node<'_>, default_id: &str) -> String {
    match node.value.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default_id.to_string(),
    }
}

/// Prompt messages, response text and its reasoning style from a list of role messages.
pub fn split_conversation(
    messages: &Node<'_>,
) -> Result<(Vec<Message>, String, ReasoningStyle), Problem> {
    let items = messages.items()?;
    let mut turns = Vec::with_capacity(items.len());
    for item in &items {
        let role = item.require("role")?.str()?.to_string();
        let content = match item.get("content") {
            Some(c) => content_text(&c)?,
            None => String::new(),
        };
        let reasoning = match item
            .get("reasoning_content")
            .or_else(|| item.get("reasoning"))
        {
            Some(r) if !r.value.is_null() => Some(r.str()?.to_string()),
            _ => None,
        };
        turns.push((role, content, reasoning));
    }
    let last_assistant = turns
        .iter()
        .rposition(|(role, _, _)| role == "assistant")
        .ok_or_else(|| messages.problem("no assistant message: nothing to explore"))?;
    // The answer starts after the last user turn that is not a bare `<NEXT/>`.
    let answer_start = turns[..last_assistant]
        .iter()
        .rposition(|(role, content, _)| role != "assistant" && content.trim() != CONTINUE_TURN)
        .map_or(0, |i| i + 1);
    let prompt = turns[..answer_start]
        .iter()
        .map(|(role, content, _)| Message::new(role.clone(), content.clone()))
        .collect();
    let answer: Vec<&(String, String, Option<String>)> = turns[answer_start..=last_assistant]
        .iter()
        .filter(|(role, _, _)| role == "assistant")
        .collect();
    let mut response = String::new();
    let mut style = ReasoningStyle::Plain;
    for (i, (_, content, reasoning)) in answer.iter().enumerate() {
        if i > 0 {
            response.push('\n');
        }
        let tagged = style_of(content) != ReasoningStyle::Plain;
        match reasoning {
            Some(r) if !r.trim().is_empty() && !tagged => {
                response.push_str(&format!("<think>\n{r}\n</think>\n\n{content}"));
                style = ReasoningStyle::Think;
            }
            _ => response.push_str(content),
        }
    }
    if style == ReasoningStyle::Plain {
        style = style_of(&response);
    }
    Ok((prompt, response, style))
}
