//! The remote backend: sampling through an OpenAI-compatible inference server (vLLM, SGLang,
//! `anchorscope serve`) instead of the local candle model.
//!
//! - [`settings`]: the `[engine]` and `[judge]` config sections and the API key (read from an
//!   environment variable, never printed).
//! - [`http`]: one JSON request with a timeout (ureq, blocking; no async runtime).
//! - [`retry`]: backoff with jitter on 429/5xx/timeouts/malformed replies; clear errors for 4xx.
//! - [`protocol`]: the request bodies and reply parsing of the OpenAI completions API.
//! - [`client`]: a server at a base URL: completions, chat completions, the model list.
//! - [`usage`]: how many tokens each choice of a reply took (the server's `usage` or ours).
//! - [`token_count`]: our count of a returned text's tokens (the model's tokenizer, or an
//!   estimate said to be one).
//! - [`duplicates`]: identical choices within one reply (a server reusing the seed).
//! - [`openai`]: [`OpenAiGenerator`], the [`crate::worker::Generator`] over a client.

pub mod client;
pub mod duplicates;
pub mod http;
pub mod judge;
pub mod openai;
pub mod protocol;
pub mod retry;
pub mod settings;
#[cfg(test)]
mod testing;
pub mod token_count;
pub mod usage;

pub use client::Client;
pub use openai::OpenAiGenerator;
pub use settings::{ApiKey, EngineKind, EngineSettings, JudgeSettings};
pub use token_count::TokenCounter;
