//! Everything the user can ask for, as one serde enum: config strings (`move_down`) map to
//! variants, and [`crate::app::App::apply`] is the one place that carries them out.

use serde::{Deserialize, Serialize};

/// A user intent. Variants marked `serde(skip)` come from the mouse or from typing in a prompt,
/// not from the key map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Quit,
    Back,
    Open,
    MoveDown,
    MoveUp,
    First,
    Last,
    PageDown,
    PageUp,
    FocusNext,
    FocusPrev,
    NextBehavior,
    TwoBehavior,
    ToggleImportance,
    Search,
    NextMatch,
    PrevMatch,
    Yank,
    YankTrace,
    Export,
    Resample,
    ResampleAll,
    AdaptiveAll,
    DeleteSentence,
    RewriteSentence,
    SwapTier,
    SwapTierAll,
    Cancel,
    NextRollout,
    PrevRollout,
    HumanLabel,
    NextAnchor,
    PrevAnchor,
    SortList,
    JobList,
    Context,
    Rollouts,
    CycleFilter,
    CycleLabelFilter,
    PairNext,
    MarkTrace,
    Compare,
    Help,
    /// A character typed into the search or export prompt.
    #[serde(skip)]
    Input(char),
    #[serde(skip)]
    Backspace,
    /// `Ctrl-E` in the rewrite prompt: edit the text in `$EDITOR`.
    #[serde(skip)]
    ExternalEditor,
    #[serde(skip)]
    Click {
        column: u16,
        row: u16,
    },
    #[serde(skip)]
    ScrollDown {
        column: u16,
        row: u16,
    },
    #[serde(skip)]
    ScrollUp {
        column: u16,
        row: u16,
    },
}

impl Action {
    /// Actions that can be bound to keys, in the order the help popup lists them.
    pub const BINDABLE: [Action; 43] = [
        Action::MoveDown,
        Action::MoveUp,
        Action::First,
        Action::Last,
        Action::PageDown,
        Action::PageUp,
        Action::Open,
        Action::Back,
        Action::Quit,
        Action::FocusNext,
        Action::FocusPrev,
        Action::NextAnchor,
        Action::PrevAnchor,
        Action::NextBehavior,
        Action::TwoBehavior,
        Action::PairNext,
        Action::ToggleImportance,
        Action::Search,
        Action::NextMatch,
        Action::PrevMatch,
        Action::Yank,
        Action::YankTrace,
        Action::Export,
        Action::Resample,
        Action::ResampleAll,
        Action::AdaptiveAll,
        Action::DeleteSentence,
        Action::RewriteSentence,
        Action::SwapTier,
        Action::SwapTierAll,
        Action::Cancel,
        Action::NextRollout,
        Action::PrevRollout,
        Action::HumanLabel,
        Action::Context,
        Action::Rollouts,
        Action::CycleFilter,
        Action::CycleLabelFilter,
        Action::JobList,
        Action::SortList,
        Action::MarkTrace,
        Action::Compare,
        Action::Help,
    ];

    /// The config name of a bindable action (`move_down`); None for mouse/prompt input.
    pub fn name(&self) -> Option<String> {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Parse a config name (`move_down`).
    pub fn from_name(name: &str) -> Option<Action> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }

    /// One line for the help popup.
    pub fn describe(&self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Back => "back to the list / close popup / cancel search",
            Action::Open => "open the selected trace",
            Action::MoveDown => "next sentence (or list row)",
            Action::MoveUp => "previous sentence (or list row)",
            Action::First => "first sentence",
            Action::Last => "last sentence",
            Action::PageDown => "page down (focused pane)",
            Action::PageUp => "page up (focused pane)",
            Action::FocusNext => "cycle focus: text → chart → detail",
            Action::FocusPrev => "cycle focus backwards",
            Action::NextAnchor => "next significant sentence (anchor) of the behavior",
            Action::PrevAnchor => "previous significant sentence (anchor)",
            Action::SortList => "trace list: cycle the sort column",
            Action::JobList => "jobs: running and queued, with progress (x cancels one)",
            Action::Context => "context: system prompt, user turn, final output",
            Action::Rollouts => "rollout browser for the selected sentence",
            Action::CycleFilter => {
                "rollout browser: kept / replaced-different / -similar / intervened / all"
            }
            Action::CycleLabelFilter => "rollout browser: filter by label (yes / no / invalid)",
            Action::PairNext => "two-behavior view: cycle the second behavior",
            Action::MarkTrace => "trace list: mark a trace to compare",
            Action::Compare => "compare the marked trace with this one, side by side",
            Action::NextBehavior => "cycle the behavior that colors the text",
            Action::TwoBehavior => "two-behavior view (this behavior | a second one)",
            Action::ToggleImportance => "counterfactual ↔ resampling importance",
            Action::Search => "search sentences (filter in the list)",
            Action::NextMatch => "next match",
            Action::PrevMatch => "previous match",
            Action::Yank => "copy the selected sentence",
            Action::YankTrace => "copy the whole trace (prompt + response)",
            Action::Export => "export (json / md / html / csv)",
            Action::Resample => "resample the selected sentence (queued behind a running job)",
            Action::ResampleAll => {
                "resample every position (adaptive if [sampling] adaptive = true)"
            }
            Action::AdaptiveAll => {
                "adaptive sweep of every position: rounds until each sentence is decided"
            }
            Action::DeleteSentence => {
                "intervene: delete the sentence, sample what follows without it"
            }
            Action::RewriteSentence => {
                "intervene: rewrite the sentence (Ctrl-E: $EDITOR), sample after it"
            }
            Action::SwapTier => "intervene: other tier, same reasoning (positions i, i+1)",
            Action::SwapTierAll => "intervene: other tier at every position (both curves)",
            Action::Cancel => "cancel the running job (in the job list: the selected one)",
            Action::NextRollout => "next rollout in the detail pane",
            Action::PrevRollout => "previous rollout in the detail pane",
            Action::HumanLabel => "your label for the marked rollout: yes → no → invalid → none",
            Action::Help => "this help",
            Action::Input(_)
            | Action::Backspace
            | Action::ExternalEditor
            | Action::Click { .. }
            | Action::ScrollDown { .. }
            | Action::ScrollUp { .. } => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Action::BINDABLE {
            let name = a.name().unwrap();
            assert_eq!(Action::from_name(&name), Some(a.clone()), "{name}");
            assert!(!a.describe().is_empty());
        }
        assert_eq!(Action::MoveDown.name().as_deref(), Some("move_down"));
        assert_eq!(Action::from_name("no_such_action"), None);
    }
}
