//! Tests that need something a machine may lack (the real model or embedder, tmux, python3,
//! the shared data beside the clone). On a developer's machine a missing prerequisite skips
//! the test with a note; under `CI=true` it fails the test, because CI installs all of them
//! and a silent skip there would hide a broken set-up.

/// Report a missing prerequisite: panics under `CI=true`, else prints a note. Call it where the
/// test then returns early. The same rule as the engine's unit tests.
pub use anchorscope::engine::lm::testing::missing;

/// `found`, or the note (or CI failure) of [`missing`].
#[allow(dead_code)] // not every test crate looks for something optional
pub fn require<T>(found: Option<T>, what: &str) -> Option<T> {
    if found.is_none() {
        missing(what);
    }
    found
}
