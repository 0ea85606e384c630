//! anchorscope-core: the data and the science, with no model, terminal or command line.
//!
//! Owns: traces and their importers ([`trace`], with the one reasoning/output tag grammar),
//! the files beside a trace ([`store`]: rollouts, runs, human labels, similarity cache), the
//! join of the two ([`loaded`]), the statistics of METHOD.md ([`analysis`]), the classifiers
//! ([`behavior`]) and the export formats ([`export`]).
//!
//! May import: std, serde, serde_json, toml, regex, sha2, anyhow, thiserror. Never candle,
//! ratatui or clap: the engine, the explorer and the binary sit above this crate.
//!
//! Data flows one way: files → [`trace`] + [`store`] → [`loaded`] → pure [`analysis`] →
//! [`export`] (and the explorer above).

pub mod analysis;
pub mod behavior;
pub mod choice;
pub mod export;
pub mod loaded;
pub mod store;
pub mod trace;
