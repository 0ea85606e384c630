//! anchorscope, the binary's crate: the command line (`src/cli`, in the binary target), the
//! config file ([`config`]), the OpenAI-compatible server ([`serve`]) and the benchmarks
//! ([`bench`]).
//!
//! The work lives in the library crates under `crates/`, re-exported here under their
//! module names so the commands and the integration tests read `anchorscope::trace`,
//! `anchorscope::engine`, … The walls between them are Cargo dependencies, checked by the
//! compiler:
//! - `anchorscope-core` ([`trace`], [`store`], [`loaded`], [`analysis`], [`behavior`],
//!   [`export`]): no candle, ratatui or clap;
//! - `anchorscope-engine` ([`engine`]): core + candle + tokenizers + an HTTP client;
//! - `anchorscope-tui` ([`tui`]): core + engine + ratatui; it never reads the config file;
//! - this crate: all of the above + clap.

pub use anchorscope_core::{analysis, behavior, choice, export, loaded, store, trace};
pub use anchorscope_engine as engine;
pub use anchorscope_tui as tui;

pub mod bench;
pub mod config;
pub mod serve;
