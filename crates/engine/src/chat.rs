//! Chat templates per model family: the prompt messages rendered the way the model saw
//! conversations in training, ending with the assistant turn's opener so that the trace's
//! response text (reasoning included) continues it.
//!
//! Deliberately no default system prompt: SmolLM2's Jinja template inserts "You are a helpful AI
//! assistant named SmolLM…" when there is no system message, but a resampled trace must see
//! exactly the trace's own prompt, so nothing is added that the trace does not hold.

use anchorscope_core::trace::{Message, Trace};

/// How a family formats a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n…<|im_end|>\n` (SmolLM2, Qwen2/2.5/3).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>` (Llama 3).
    Llama3,
    /// `<｜begin▁of▁sentence｜>system<｜User｜>…<｜Assistant｜>` (DeepSeek-R1 and its Qwen/Llama
    /// distills, whatever their architecture).
    DeepSeekR1,
}

/// DeepSeek's markers use fullwidth bars (U+FF5C) and the SentencePiece space (U+2581).
const DS_BOS: &str = "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>";
const DS_EOS: &str = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>";
const DS_USER: &str = "<\u{ff5c}User\u{ff5c}>";
const DS_ASSISTANT: &str = "<\u{ff5c}Assistant\u{ff5c}>";

impl ChatTemplate {
    /// The template for a model from its architecture (`general.architecture` or config.json's
    /// `model_type`) and name. Llama-architecture models are ChatML when named SmolLM and
    /// Llama 3 when named so; unknown families default to ChatML, the most common.
    pub fn for_model(arch: &str, name: &str) -> Self {
        let arch = arch.to_ascii_lowercase();
        let name = name.to_ascii_lowercase();
        // DeepSeek-V3.x writes the same `<｜User｜>…<｜Assistant｜>` turns as R1 (its thinking
        // mode opens `<think>` after the assistant marker, as R1 does).
        let r1_names = [
            "deepseek-r1",
            "deepseek r1",
            "deepseek_r1",
            "deepseek-v3",
            "deepseek_v3",
        ];
        if r1_names.iter().any(|n| name.contains(n)) {
            return ChatTemplate::DeepSeekR1;
        }
        if arch.starts_with("qwen") || name.contains("smollm") || name.contains("qwen") {
            return ChatTemplate::ChatMl;
        }
        let llama3_names = ["llama-3", "llama3", "llama 3", "llama_3"];
        if arch == "llama" && llama3_names.iter().any(|n| name.contains(n)) {
            return ChatTemplate::Llama3;
        }
        ChatTemplate::ChatMl
    }

    /// The family of a Jinja chat template (GGUF `tokenizer.chat_template`,
    /// tokenizer_config.json's `chat_template`), by the markers it writes.
    pub fn from_jinja(template: &str) -> Option<Self> {
        if template.contains(DS_USER) {
            Some(ChatTemplate::DeepSeekR1)
        } else if template.contains("<|im_start|>") {
            Some(ChatTemplate::ChatMl)
        } else if template.contains("<|start_header_id|>") {
            Some(ChatTemplate::Llama3)
        } else {
            None
        }
    }

    /// The template from the file's own Jinja template when it tells, else from arch and name.
    pub fn detect(arch: &str, name: &str, jinja: Option<&str>) -> Self {
        jinja
            .and_then(Self::from_jinja)
            .unwrap_or_else(|| Self::for_model(arch, name))
    }

    /// A template by its config name: `chatml`, `llama3` or `deepseek-r1` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "chatml" => Some(ChatTemplate::ChatMl),
            "llama3" | "llama-3" => Some(ChatTemplate::Llama3),
            "deepseek-r1" | "deepseek" => Some(ChatTemplate::DeepSeekR1),
            _ => None,
        }
    }

    /// The text a continuation of P_position starts from: the rendered prompt, then the kept
    /// part of the response (`trace.prefix(position)`). Local and remote engines both continue
    /// exactly this text.
    pub fn continuation_prompt(&self, trace: &Trace, position: usize) -> String {
        let mut text = self.render_prompt(&trace.prompt);
        text.push_str(trace.prefix(position));
        text
    }

    /// The prompt messages rendered up to and including the assistant turn's opener, so that
    /// appending the trace's response prefix continues the assistant's own text.
    pub fn render_prompt(&self, messages: &[Message]) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl => {
                for m in messages {
                    out.push_str("<|im_start|>");
                    out.push_str(&m.role);
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                out.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Llama3 => {
                // The official template starts with the bos token and trims each message.
                out.push_str("<|begin_of_text|>");
                for m in messages {
                    out.push_str(&Self::llama3_header(&m.role));
                    out.push_str(m.content.trim());
                    out.push_str("<|eot_id|>");
                }
                out.push_str(&Self::llama3_header("assistant"));
            }
            ChatTemplate::DeepSeekR1 => {
                // System text goes right after bos, unmarked (several are joined by a blank
                // line); the official generation prompt's `<think>\n` is left to the trace's
                // response, which holds the reasoning opener itself.
                out.push_str(DS_BOS);
                let system: Vec<&str> = messages
                    .iter()
                    .filter(|m| m.role == "system")
                    .map(|m| m.content.as_str())
                    .collect();
                out.push_str(&system.join("\n\n"));
                for m in messages {
                    match m.role.as_str() {
                        "system" => {}
                        "assistant" => {
                            out.push_str(DS_ASSISTANT);
                            out.push_str(&m.content);
                            out.push_str(DS_EOS);
                        }
                        _ => {
                            out.push_str(DS_USER);
                            out.push_str(&m.content);
                        }
                    }
                }
                out.push_str(DS_ASSISTANT);
            }
        }
        out
    }

    fn llama3_header(role: &str) -> String {
        format!("<|start_header_id|>{role}<|end_header_id|>\n\n")
    }

    /// The config name of the template.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::DeepSeekR1 => "deepseek-r1",
        }
    }

    /// The text that ends an assistant turn (what the sampler may stop on).
    pub fn turn_end(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "<|im_end|>",
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::DeepSeekR1 => DS_EOS,
        }
    }

    /// What the family's reasoning starts with when the template opens it (DeepSeek-R1's
    /// generation prompt ends with it); `None` where the model writes its own opener.
    pub fn reasoning_opener(&self) -> Option<&'static str> {
        match self {
            ChatTemplate::DeepSeekR1 => Some("<think>\n"),
            ChatTemplate::ChatMl | ChatTemplate::Llama3 => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<Message> {
        vec![
            Message::new("system", "You are an AI."),
            Message::new("user", "Hi\nthere"),
        ]
    }

    #[test]
    fn chatml_renders_messages_and_the_assistant_opener() {
        assert_eq!(
            ChatTemplate::ChatMl.render_prompt(&conversation()),
            "<|im_start|>system\nYou are an AI.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_adds_no_default_system_prompt() {
        assert_eq!(
            ChatTemplate::ChatMl.render_prompt(&[Message::new("user", "Q?")]),
            "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_renders_headers_and_trims() {
        let mut msgs = conversation();
        msgs[1].content = "  Hi  \n".into();
        assert_eq!(
            ChatTemplate::Llama3.render_prompt(&msgs),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are an AI.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn families_are_detected_from_arch_name_and_template() {
        assert_eq!(
            ChatTemplate::for_model("llama", "SmolLM2-135M-Instruct"),
            ChatTemplate::ChatMl
        );
        assert_eq!(
            ChatTemplate::for_model("qwen2", "Qwen2.5 Coder 0.5B"),
            ChatTemplate::ChatMl
        );
        assert_eq!(ChatTemplate::for_model("qwen3", ""), ChatTemplate::ChatMl);
        assert_eq!(
            ChatTemplate::for_model("llama", "Meta-Llama-3.1-8B-Instruct"),
            ChatTemplate::Llama3
        );
        assert_eq!(
            ChatTemplate::from_jinja("{{ '<|start_header_id|>' }}"),
            Some(ChatTemplate::Llama3)
        );
        assert_eq!(ChatTemplate::from_jinja("{% for m in messages %}"), None);
        assert_eq!(
            ChatTemplate::detect("llama", "Llama-3-x", Some("<|im_start|>{{ m }}")),
            ChatTemplate::ChatMl
        );
        assert_eq!(ChatTemplate::Llama3.turn_end(), "<|eot_id|>");
        assert_eq!(
            ChatTemplate::for_model("qwen2", "DeepSeek R1 Distill Qwen 7B"),
            ChatTemplate::DeepSeekR1
        );
        assert_eq!(
            ChatTemplate::from_jinja("{{'<\u{ff5c}User\u{ff5c}>' + message['content']}}"),
            Some(ChatTemplate::DeepSeekR1)
        );
    }

    #[test]
    fn deepseek_r1_puts_system_after_bos_and_ends_with_the_assistant_marker() {
        let msgs = vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Why?"),
        ];
        assert_eq!(
            ChatTemplate::DeepSeekR1.render_prompt(&msgs),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello.<｜end▁of▁sentence｜>\
             <｜User｜>Why?<｜Assistant｜>"
        );
        assert_eq!(
            ChatTemplate::DeepSeekR1.reasoning_opener(),
            Some("<think>\n")
        );
        assert_eq!(ChatTemplate::ChatMl.reasoning_opener(), None);
    }
}
