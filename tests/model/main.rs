//! The engine: our decoder against candle's reference on tiny random-weight models (and the real
//! default model when installed), tokenizers and the embedder, the worker's jobs, installs and the
//! benchmark command.
//!
//! One test binary per area, so the release build links candle a few times instead of once
//! per file. Each module below was a test file of its own; its doc says what it covers.

// Test code may unwrap (the workspace denies it elsewhere): a panic here is a failing test.
#![allow(clippy::unwrap_used)]

mod bench_cli;
mod engine_tiny;
mod lm_errors;
mod lm_exact;
mod lm_load;
mod lm_real;
mod lm_speed;
#[path = "../common/prereq.rs"]
mod prereq;
mod real;
mod tok_embed;
mod tok_install;
mod tok_real;
mod tok_tokenizer;
mod worker_cli;
mod worker_model;
