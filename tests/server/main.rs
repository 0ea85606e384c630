//! `anchorscope serve` through the real binary on loopback, and the `--engine openai` client
//! against it: the API contract, attacks and faults, resampling and judging through a server.
//!
//! One test binary per area, so the release build links candle a few times instead of once
//! per file. Each module below was a test file of its own; its doc says what it covers.

// Test code may unwrap (the workspace denies it elsewhere): a panic here is a failing test.
#![allow(clippy::unwrap_used)]

mod fake_openai;
#[path = "../common/prereq.rs"]
mod prereq;
mod remote_support;
mod serve_support;

mod remote_accounting;
mod remote_engine;
mod remote_faults;
mod remote_worker;
mod serve_api;
mod serve_faults;
