//! Alignment-faking style transcripts (Greenblatt et al. 2024 and the traces built on them).
//!
//! Shapes accepted (keys looked up in this order):
//! - prompt: `prompt` (a string, or a list of role messages), else `user_input`; a system
//!   prompt from `system_prompt` / `system`;
//! - response: `response` / `completion` / `output` (a string), else `conversation`: a list
//!   of strings alternating user / model (`[prompt, model turn, "<NEXT/>", model turn, …]`, as
//!   their sampling loop builds it; the model turns are joined with a newline), or a list of
//!   role messages;
//! - optional `is_free_tier_user` (or the `<is_free_tier_user>` tag in the user text) → meta
//!   `tier`, `model` / `model_id` → model, `id`.

use serde_json::{Map, Value};

use super::chat::{id_of, split_conversation};
use super::json::{Node, Problem};
use super::{content_text, tier_from, Parsed};
use crate::trace::model::{Message, SourceKind, Trace};
use crate::trace::tags::style_of;

const RESPONSE_KEYS: [&str; 3] = ["response", "completion", "output"];

pub fn looks_like(object: &Map<String, Value>) -> bool {
    RESPONSE_KEYS.iter().any(|k| object.contains_key(*k)) || object.contains_key("conversation")
}

pub fn parse(node: &Node<'_>, default_id: &str) -> Result<Parsed, Problem> {
    let mut prompt = Vec::new();
    if let Some(system) = node.get("system_prompt").or_else(|| node.get("system")) {
        prompt.push(Message::new("system", system.str()?));
    }
    let response_node = RESPONSE_KEYS.iter().find_map(|k| node.get(k));
    let response = match response_node {
        Some(r) => {
            prompt.extend(prompt_messages(node)?);
            r.str()?.to_string()
        }
        None => {
            let conversation = node.require("conversation")?;
            let (conv_prompt, response) = from_conversation(&conversation)?;
            if conv_prompt.is_empty() {
                prompt.extend(prompt_messages(node)?);
            }
            prompt.extend(conv_prompt);
            response
        }
    };
    if prompt.iter().all(|m| m.role == "system") {
        return Err(
            node.problem("no prompt: expected \"prompt\" or \"user_input\" (or a conversation)")
        );
    }
    let mut trace = Trace::new(id_of(node, default_id), prompt, response);
    trace.source = SourceKind::AfTranscript;
    trace.reasoning_style = style_of(&trace.response);
    trace.model = node
        .get("model")
        .or_else(|| node.get("model_id"))
        .and_then(|m| m.value.as_str().map(String::from));
    if let Some(tier) = tier_from(node.value.get("is_free_tier_user"), &trace.prompt) {
        trace.meta.insert("tier".into(), tier);
    }
    Ok(Parsed::new(trace))
}

/// The user side from `prompt` (string or messages) or `user_input`.
fn prompt_messages(node: &Node<'_>) -> Result<Vec<Message>, Problem> {
    let Some(p) = node.get("prompt").or_else(|| node.get("user_input")) else {
        return Ok(Vec::new());
    };
    if p.value.is_array() {
        let mut out = Vec::new();
        for m in p.items()? {
            let role = m.require("role")?.str()?.to_string();
            let content = match m.get("content") {
                Some(c) => content_text(&c)?,
                None => String::new(),
            };
            out.push(Message::new(role, content));
        }
        return Ok(out);
    }
    Ok(vec![Message::new("user", p.str()?)])
}

/// A `conversation`: strings alternating user/model, or role messages.
fn from_conversation(conversation: &Node<'_>) -> Result<(Vec<Message>, String), Problem> {
    let items = conversation.items()?;
    if items.iter().any(|i| i.value.is_object()) {
        let (prompt, response, _) = split_conversation(conversation)?;
        return Ok((prompt, response));
    }
    let mut prompt = Vec::new();
    let mut model_turns = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = item.str()?;
        if i == 0 {
            prompt.push(Message::new("user", text));
        } else if i % 2 == 1 {
            model_turns.push(text);
        }
    }
    if model_turns.is_empty() {
        return Err(conversation.problem("no model turn (expected [prompt, response, …])"));
    }
    Ok((prompt, model_turns.join("\n")))
}
