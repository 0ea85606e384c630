//! Adaptive resampling (docs/METHOD.md, "Adaptive resampling"): sample in rounds and stop each
//! position once the sentences it feeds are decided, instead of a fixed n everywhere.
//!
//! - [`settings`]: the knobs and their defaults;
//! - [`boundary`]: the z of each look, so repeated looks keep the error rate at α;
//! - [`futility`]: the chance a sentence still ends significant;
//! - [`counts`]: what the policy reads per position;
//! - [`policy`]: the state machine the worker and the simulation both drive;
//! - [`simulate`]: fixed against adaptive on the same random streams (`bench adaptive`).

pub mod boundary;
pub mod counts;
pub mod futility;
pub mod policy;
pub mod settings;
pub mod simulate;
#[cfg(test)]
mod tests;

pub use boundary::Boundary;
pub use counts::{count_rollouts, PositionCounts};
pub use policy::{AdaptivePolicy, PositionState, Resolution, Round, SentenceState};
pub use settings::AdaptiveSettings;
