//! Side by side (`m` marks a trace in the list, `c` compares it with another): the two traces'
//! sentences aligned by similarity, both importances and their difference A − B per aligned
//! row, both rate curves on one axis. The numbers are `anchorscope compare`'s.

use super::{App, Screen};
use crate::action::Action;
use anchorscope_core::analysis::compare::{
    compare, CompareOptions, CompareSide, Comparison, SimilarityChoice, DEFAULT_MIN_SIMILARITY,
};
use anchorscope_engine::compare_similarity::sentence_similarities;

/// The open comparison.
#[derive(Clone, Debug)]
pub struct CompareView {
    pub comparison: Comparison,
    /// Index into `comparison.behaviors`.
    pub behavior: usize,
    /// The selected aligned row.
    pub row: usize,
    /// The screen to go back to.
    pub back: Screen,
}

impl App {
    /// Compare the marked trace (A) with trace `other` (B). The sentence embedder is loaded
    /// for it (about a second, once per comparison); without it the similarity is lexical,
    /// and the header says so.
    pub(crate) fn compare_with(&mut self, other: usize) {
        let Some(marked) = self.marked else {
            return self.set_info(format!(
                "mark a trace in the list with {} first",
                self.keymap.hint(&Action::MarkTrace)
            ));
        };
        if marked == other {
            return self.set_info("mark one trace and compare it with another".into());
        }
        self.refresh();
        let (Some(a), Some(b)) = (self.traces.get(marked), self.traces.get(other)) else {
            return;
        };
        let texts = |e: &super::TraceEntry| -> Vec<String> {
            e.loaded
                .trace
                .sentences
                .iter()
                .map(|s| s.text.clone())
                .collect()
        };
        let (ta, tb) = (texts(a), texts(b));
        let ra: Vec<&str> = ta.iter().map(String::as_str).collect();
        let rb: Vec<&str> = tb.iter().map(String::as_str).collect();
        let sims = match sentence_similarities(&ra, &rb, SimilarityChoice::Auto) {
            Ok(s) => s,
            Err(e) => return self.set_error(format!("compare: {e}")),
        };
        fn side(e: &super::TraceEntry) -> CompareSide<'_> {
            CompareSide {
                trace: &e.loaded.trace,
                analysis: &e.analysis,
                rollouts: e.pool.filter_count(&e.loaded.rollouts),
            }
        }
        let options = CompareOptions {
            min_similarity: DEFAULT_MIN_SIMILARITY,
            importance: self.importance,
        };
        match compare(side(a), side(b), &sims.matrix, sims.method, &options) {
            Ok(comparison) => {
                let shown = self.behavior_name();
                let behavior = comparison
                    .behaviors
                    .iter()
                    .position(|b| b.behavior == shown)
                    .unwrap_or(0);
                let note = comparison.similarity.describe();
                self.compare = Some(CompareView {
                    comparison,
                    behavior,
                    row: 0,
                    back: self.screen,
                });
                self.screen = Screen::Compare;
                self.set_info(format!("aligned by {note}"));
            }
            Err(e) => self.set_error(format!("compare: {e}")),
        }
    }

    pub(crate) fn apply_compare(&mut self, action: Action) {
        let Some(view) = self.compare.as_mut() else {
            self.screen = Screen::List;
            return;
        };
        let last = view.comparison.pairs.len().saturating_sub(1);
        match action {
            Action::MoveDown => view.row = (view.row + 1).min(last),
            Action::MoveUp => view.row = view.row.saturating_sub(1),
            Action::First => view.row = 0,
            Action::Last => view.row = last,
            Action::PageDown => view.row = (view.row + 10).min(last),
            Action::PageUp => view.row = view.row.saturating_sub(10),
            Action::NextBehavior => {
                let n = view.comparison.behaviors.len().max(1);
                view.behavior = (view.behavior + 1) % n;
                let name = view
                    .comparison
                    .behaviors
                    .get(view.behavior)
                    .map_or("none".to_string(), |b| b.behavior.clone());
                self.set_info(format!("behavior: {name}"));
            }
            Action::Yank => {
                let pair = view.comparison.pairs.get(view.row).copied();
                let text = pair.map(|p| {
                    let get = |s: &[String], i: Option<usize>| {
                        i.and_then(|i| s.get(i))
                            .cloned()
                            .unwrap_or_else(|| "–".into())
                    };
                    format!(
                        "A {}: {}\nB {}: {}",
                        view.comparison.a.id,
                        get(&view.comparison.a.sentences, p.a),
                        view.comparison.b.id,
                        get(&view.comparison.b.sentences, p.b)
                    )
                });
                if let Some(t) = text {
                    self.copy(&t, "aligned row");
                }
            }
            Action::Back => {
                self.screen = view.back;
                self.compare = None;
            }
            _ => self.set_info(format!(
                "side by side: {}/{} rows · {} behavior · {} back",
                self.keymap.hint(&Action::MoveDown),
                self.keymap.hint(&Action::MoveUp),
                self.keymap.hint(&Action::NextBehavior),
                self.keymap.hint(&Action::Back)
            )),
        }
    }
}
