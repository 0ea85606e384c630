//! The speed benchmark: the same sampling jobs measured in anchorscope and in a peer
//! (Python `transformers`, or llama.cpp), with peak memory and a decode roofline.
//!
//! The pieces here are the library side: the shared inputs both sides read ([`inputs`]), the
//! measured job run through the worker's real job code ([`job`]), the model arithmetic
//! ([`flops`]), machine facts ([`machine`]), the printed tables ([`report`]), and what the
//! llama.cpp peer's programs take and print ([`batched_bench`], [`llama_server`]). The binary's
//! `bench` command (src/cli/bench.rs) runs each job in a child process so peak RSS is its own.

pub mod batched_bench;
pub mod flops;
pub mod inputs;
pub mod job;
pub mod llama_server;
pub mod machine;
pub mod report;

pub use inputs::{BenchInputs, PromptIds};
pub use job::{JobKind, JobReport};
