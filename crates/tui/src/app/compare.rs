//! Side by side: the marked trace and another one (filled in below).

use super::App;

impl App {
    /// Compare the marked trace with trace `other`.
    pub(crate) fn compare_with(&mut self, other: usize) {
        let _ = other;
        self.set_info("compare: not built yet".into());
    }
}
