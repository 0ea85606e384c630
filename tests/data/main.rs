//! Reading, judging and exporting traces, and the commands that do it: importers on every format
//! and on malformed input, the rollout store's guarantees, behaviors and the offline judges,
//! exports, `label`, `compare`, and the CLI on the bundled samples.
//!
//! One test binary per area, so the release build links candle a few times instead of once
//! per file. Each module below was a test file of its own; its doc says what it covers.

// Test code may unwrap (the workspace denies it elsewhere): a panic here is a failing test.
#![allow(clippy::unwrap_used)]

mod af_judge_dev;
mod be_behavior;
mod be_export;
mod bench_adaptive;
mod cli_commands;
mod cli_samples;
mod compare_cmd;
mod io_import;
mod io_props;
mod io_trust;
mod label_cmd;
#[path = "../common/prereq.rs"]
mod prereq;
