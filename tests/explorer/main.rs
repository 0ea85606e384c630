//! The explorer: screens rendered on ratatui's TestBackend (snapshots) and the real binary driven
//! under tmux.
//!
//! One test binary per area, so the release build links candle a few times instead of once
//! per file. Each module below was a test file of its own; its doc says what it covers.

// Test code may unwrap (the workspace denies it elsewhere): a panic here is a failing test.
#![allow(clippy::unwrap_used)]

#[path = "../common/prereq.rs"]
mod prereq;
mod tui_support;

mod e2e_tmux;
mod researcher_panes;
mod tui_snapshots;
