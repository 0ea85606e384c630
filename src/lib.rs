//! anchorscope: explore which reasoning sentences cause a model's decision, in the terminal.
//!
//! Data flows one way: files → [`trace`] + [`store`] → pure [`analysis`] → [`tui`] and [`export`].

pub mod analysis;
pub mod behavior;
pub mod bench;
pub mod choice;
pub mod config;
pub mod engine;
pub mod export;
pub mod loaded;
pub mod serve;
pub mod store;
pub mod trace;
pub mod tui;
