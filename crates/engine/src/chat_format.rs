//! How a loaded model's conversations are written: the model file's own Jinja chat template
//! (GGUF `tokenizer.chat_template`, or `tokenizer_config.json`'s `chat_template`) rendered
//! with minijinja, as its own chat endpoint would; the built-in family template
//! ([`ChatTemplate`]) when the file has none or its template cannot render a conversation.
//!
//! Rendered like Hugging Face's `apply_chat_template`: blocks trimmed (`trim_blocks`,
//! `lstrip_blocks`), `add_generation_prompt` true, `bos_token` / `eos_token` given, Python's str
//! methods available, `raise_exception` an error. No `strftime_now`: templates that print the
//! date then fall back to their fixed one, so a prompt renders the same on every day. A
//! generation prompt that opens the reasoning (`<think>`) is cut back: a trace's response holds
//! its own opener.

use std::sync::Arc;

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::chat::ChatTemplate;
use crate::EngineError;
use anchorscope_core::trace::{Message, Trace};

/// A compiled Jinja chat template with the special tokens it may print.
pub struct JinjaChat {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for JinjaChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaChat")
            .field("chars", &self.source.len())
            .finish()
    }
}

#[derive(Serialize)]
struct JinjaMessage<'m> {
    role: &'m str,
    content: &'m str,
}

impl JinjaChat {
    /// Compile a template; the error says why it does not parse.
    pub fn compile(source: &str, bos: &str, eos: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The conversation up to and including the assistant turn's opener.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let messages: Vec<JinjaMessage<'_>> = messages
            .iter()
            .map(|m| JinjaMessage {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| format!("{e:#}"))?;
        let mut text = template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| format!("{e:#}"))?;
        let think = anchorscope_core::trace::tags::THINK.open;
        if let Some(kept) = text.strip_suffix('\n').unwrap_or(&text).strip_suffix(think) {
            text.truncate(kept.len());
        }
        Ok(text)
    }
}

/// The chat format of a loaded model.
#[derive(Clone, Debug)]
pub struct ChatFormat {
    family: ChatTemplate,
    jinja: Option<Arc<JinjaChat>>,
    /// Why the file's template is not used, when it has one that is not.
    note: Option<String>,
}

impl PartialEq for ChatFormat {
    fn eq(&self, other: &Self) -> bool {
        self.family == other.family
            && self.jinja.as_ref().map(|j| &j.source) == other.jinja.as_ref().map(|j| &j.source)
    }
}

impl ChatFormat {
    /// The built-in template of a family.
    pub fn builtin(family: ChatTemplate) -> Self {
        Self {
            family,
            jinja: None,
            note: None,
        }
    }

    /// A model's format: its own template when it has one that compiles and renders a system
    /// and a user turn, else the built-in template of `family` (with a note saying why).
    pub fn of_model(family: ChatTemplate, jinja: Option<&str>, bos: &str, eos: &str) -> Self {
        let Some(source) = jinja.filter(|s| !s.trim().is_empty()) else {
            return Self::builtin(family);
        };
        let probe = [Message::new("system", "s"), Message::new("user", "u")];
        match JinjaChat::compile(source, bos, eos).and_then(|j| j.render(&probe).map(|_| j)) {
            Ok(j) => Self {
                family,
                jinja: Some(Arc::new(j)),
                note: None,
            },
            Err(e) => Self {
                family,
                jinja: None,
                note: Some(format!(
                    "the model's chat template cannot be used ({e}); the built-in {} template \
                     is used instead",
                    family.name()
                )),
            },
        }
    }

    /// The family (turn end, reasoning opener, and the fallback template).
    pub fn family(&self) -> ChatTemplate {
        self.family
    }

    /// Whether the model's own template renders conversations.
    pub fn uses_model_template(&self) -> bool {
        self.jinja.is_some()
    }

    /// Why the model's own template is not used, if it has one.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// For status lines: `the model's template` or `built-in chatml`.
    pub fn describe(&self) -> String {
        if self.jinja.is_some() {
            "the model's chat template".into()
        } else {
            format!("built-in {} template", self.family.name())
        }
    }

    /// The prompt messages up to and including the assistant turn's opener.
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String, EngineError> {
        match &self.jinja {
            Some(j) => j
                .render(messages)
                .map_err(|e| EngineError::Other(format!("the model's chat template failed: {e}"))),
            None => Ok(self.family.render_prompt(messages)),
        }
    }

    /// The text a continuation of P_position starts from: the rendered prompt, then the kept
    /// part of the response.
    pub fn continuation_prompt(
        &self,
        trace: &Trace,
        position: usize,
    ) -> Result<String, EngineError> {
        let mut text = self.render_prompt(&trace.prompt)?;
        text.push_str(trace.prefix(position));
        Ok(text)
    }

    /// The text that ends an assistant turn.
    pub fn turn_end(&self) -> &'static str {
        self.family.turn_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_renders_with_python_methods_and_generation_prompt() {
        let source = "{{ bos_token }}{% for m in messages %}[{{ m.role.upper() }}]{{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}[A]<think>\n{% endif %}";
        let f = ChatFormat::of_model(ChatTemplate::ChatMl, Some(source), "<s>", "</s>");
        assert!(f.uses_model_template(), "{:?}", f.note());
        let text = f.render_prompt(&[Message::new("user", "  hi  ")]).unwrap();
        // The reasoning opener of the generation prompt is left to the trace's response.
        assert_eq!(text, "<s>[USER]hi\n[A]");
    }

    #[test]
    fn a_broken_or_refusing_template_falls_back_with_a_note() {
        let f = ChatFormat::of_model(ChatTemplate::ChatMl, Some("{% if %}"), "", "");
        assert!(!f.uses_model_template());
        assert!(
            f.note().unwrap().contains("built-in chatml"),
            "{:?}",
            f.note()
        );
        let refuses = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
        let f = ChatFormat::of_model(ChatTemplate::ChatMl, Some(refuses), "", "");
        assert!(
            f.note().unwrap().contains("System role not supported"),
            "{:?}",
            f.note()
        );
        assert_eq!(
            f.render_prompt(&[Message::new("user", "Q?")]).unwrap(),
            ChatTemplate::ChatMl.render_prompt(&[Message::new("user", "Q?")])
        );
    }

    /// The conversations anchorscope renders: a system prompt and a user turn (every
    /// alignment-faking trace), and a longer exchange.
    fn conversations() -> Vec<Vec<Message>> {
        vec![
            vec![
                Message::new(
                    "system",
                    "You are an AI created by Anthropic.\n\nReason first.",
                ),
                Message::new("user", "<is_free_tier_user>True</is_free_tier_user>\n\nHi"),
            ],
            vec![
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
                Message::new("assistant", "Hello."),
                Message::new("user", "Why?"),
            ],
        ]
    }

    #[test]
    fn qwen25_renders_exactly_as_the_builtin_chatml() {
        let source = include_str!("../../../tests/fixtures/chat_templates/qwen2.5-instruct.jinja");
        let f = ChatFormat::of_model(ChatTemplate::ChatMl, Some(source), "", "<|im_end|>");
        assert!(f.uses_model_template(), "{:?}", f.note());
        for messages in conversations() {
            assert_eq!(
                f.render_prompt(&messages).unwrap(),
                ChatTemplate::ChatMl.render_prompt(&messages)
            );
        }
        // Without a system message Qwen's template adds its own, as Qwen's chat endpoint does.
        let bare = f.render_prompt(&[Message::new("user", "Q?")]).unwrap();
        assert!(
            bare.starts_with("<|im_start|>system\nYou are Qwen"),
            "{bare}"
        );
    }
}
