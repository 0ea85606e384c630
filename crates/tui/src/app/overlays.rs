//! The popups' key handling: help, export, context, rollout browser, job list, confirmations.
//! Each takes every key while open; `Esc` closes it.

use super::{App, Popup};
use crate::action::Action;
use anchorscope_core::trace::intervention::compared_at;
use anchorscope_core::trace::{LabelValue, Rollout};
use anchorscope_engine::{AdaptivePlan, JobId};

/// Which rollouts of the selected sentence i the browser lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutFilter {
    #[default]
    All,
    /// At position i+1: S_i kept.
    Kept,
    /// At position i with T_i semantically different from S_i (cos below the threshold).
    ReplacedDifferent,
    /// At position i with T_i similar to S_i.
    ReplacedSimilar,
    /// Rollouts of the derived traces of interventions on S_i (`d`, `w`, `t`).
    Intervened,
}

impl RolloutFilter {
    fn next(self) -> Self {
        match self {
            Self::All => Self::Kept,
            Self::Kept => Self::ReplacedDifferent,
            Self::ReplacedDifferent => Self::ReplacedSimilar,
            Self::ReplacedSimilar => Self::Intervened,
            Self::Intervened => Self::All,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Kept => "kept (S_i kept, position i+1)",
            Self::ReplacedDifferent => "replaced, different meaning",
            Self::ReplacedSimilar => "replaced, similar meaning",
            Self::Intervened => "after an intervention on S_i",
        }
    }
}

/// How one listed rollout relates to the selected sentence i.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RolloutKind {
    Kept,
    Different(f32),
    Similar(f32),
    /// Replaced, but no similarity was recorded (no embedder, or the last position).
    Replaced,
    /// A rollout of the derived trace `child` (index into `App::traces`) of an intervention
    /// on S_i.
    Intervened {
        child: usize,
    },
}

/// The label filter of the browser, for the behavior coloring the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelFilter {
    #[default]
    Any,
    Yes,
    No,
    /// Invalid or missing.
    Unlabelled,
}

impl LabelFilter {
    fn next(self) -> Self {
        match self {
            Self::Any => Self::Yes,
            Self::Yes => Self::No,
            Self::No => Self::Unlabelled,
            Self::Unlabelled => Self::Any,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Any => "any label",
            Self::Yes => "yes",
            Self::No => "no",
            Self::Unlabelled => "invalid / none",
        }
    }

    fn accepts(self, value: Option<LabelValue>) -> bool {
        match self {
            Self::Any => true,
            Self::Yes => value == Some(LabelValue::Yes),
            Self::No => value == Some(LabelValue::No),
            Self::Unlabelled => !matches!(value, Some(LabelValue::Yes | LabelValue::No)),
        }
    }
}

/// The rollout browser's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutBrowser {
    /// Index into the filtered list.
    pub cursor: usize,
    pub scroll: u16,
    pub filter: RolloutFilter,
    pub label: LabelFilter,
}

/// A question the explorer asks before acting.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    /// Quit while jobs run or wait.
    Quit,
    /// Resample although the reasons say the numbers may not mean what they seem.
    Resample {
        positions: Vec<usize>,
        reasons: Vec<String>,
        /// The sweep is adaptive, on this plan.
        adaptive: Option<AdaptivePlan>,
    },
    /// Intervene although another model wrote the trace.
    Intervene {
        edit: anchorscope_core::trace::intervention::Edit,
        tier_positions: Vec<usize>,
        reasons: Vec<String>,
    },
}

impl App {
    /// The selected sentence's rollouts the browser lists: position i (replaced) then i+1
    /// (kept), filtered.
    pub fn browser_rollouts(&self, browser: &RolloutBrowser) -> Vec<(&Rollout, RolloutKind)> {
        let Some(entry) = self.entry() else {
            return Vec::new();
        };
        let i = self.selected;
        let threshold = self.analysis_options().similarity_threshold;
        let behavior = self.behavior_name();
        let kind_of = |r: &Rollout| {
            if r.position == i + 1 {
                RolloutKind::Kept
            } else {
                match r.similarity {
                    Some(s) if s < threshold => RolloutKind::Different(s),
                    Some(s) => RolloutKind::Similar(s),
                    None => RolloutKind::Replaced,
                }
            }
        };
        let mut out: Vec<(&Rollout, RolloutKind)> = entry
            .loaded
            .rollouts
            .iter()
            .filter(|r| r.position == i || r.position == i + 1)
            .map(|r| (r, kind_of(r)))
            .collect();
        // Replaced (position i) first, then kept; stored order within each.
        out.sort_by_key(|(r, _)| r.position);
        // Then each intervention on S_i: the derived trace's rollouts after the change.
        for child in crate::interventions::children(self, self.current) {
            let derived = &self.traces[child].loaded.trace;
            let positions: Vec<usize> = compared_at(derived, i).iter().map(|&(d, _)| d).collect();
            out.extend(
                self.traces[child]
                    .loaded
                    .rollouts
                    .iter()
                    .filter(|r| positions.contains(&r.position))
                    .map(|r| (r, RolloutKind::Intervened { child })),
            );
        }
        out.retain(|(r, k)| {
            let kind_ok = match browser.filter {
                RolloutFilter::All => true,
                RolloutFilter::Kept => matches!(k, RolloutKind::Kept),
                RolloutFilter::ReplacedDifferent => matches!(k, RolloutKind::Different(_)),
                RolloutFilter::ReplacedSimilar => matches!(k, RolloutKind::Similar(_)),
                RolloutFilter::Intervened => matches!(k, RolloutKind::Intervened { .. }),
            };
            kind_ok && browser.label.accepts(r.label(&behavior))
        });
        out
    }

    pub(crate) fn apply_popup(&mut self, popup: Popup, action: Action) {
        match popup {
            Popup::Help { scroll } => match action {
                Action::Back | Action::Help | Action::Open | Action::Quit => self.popup = None,
                other => {
                    let scroll = self.scrolled(scroll, &other);
                    self.popup = Some(Popup::Help { scroll });
                }
            },
            Popup::Export { selected } => self.apply_export_popup(selected, action),
            Popup::Context { scroll, expanded } => match action {
                Action::Back | Action::Context | Action::Quit => self.popup = None,
                Action::Open => {
                    self.popup = Some(Popup::Context {
                        scroll,
                        expanded: !expanded,
                    })
                }
                Action::YankTrace => {
                    if let Some(text) = self.entry().map(|e| super::whole_trace_text(&e.loaded)) {
                        self.copy(&text, "trace");
                    }
                }
                other => {
                    let scroll = self.scrolled(scroll, &other);
                    self.popup = Some(Popup::Context { scroll, expanded });
                }
            },
            Popup::Rollouts(browser) => self.apply_browser(browser, action),
            Popup::Jobs { selected } => self.apply_job_list(selected, action),
            Popup::Confirm(question) => self.apply_confirm(question, action),
        }
    }

    /// A scroll offset moved by a key, stopping at the end the last frame measured.
    fn scrolled(&self, scroll: u16, action: &Action) -> u16 {
        let page = self.hits.detail_height.max(10) as i32;
        let delta = match action {
            Action::MoveDown => 1,
            Action::MoveUp => -1,
            Action::PageDown => page,
            Action::PageUp => -page,
            Action::First => i32::MIN / 2,
            Action::Last => i32::MAX / 2,
            _ => 0,
        };
        let max = self
            .hits
            .popup_max_scroll
            .map_or(u16::MAX as i32, i32::from);
        (i32::from(scroll) + delta).clamp(0, max) as u16
    }

    fn apply_browser(&mut self, mut b: RolloutBrowser, action: Action) {
        let count = self.browser_rollouts(&b).len();
        match action {
            Action::Back | Action::Rollouts | Action::Quit => {
                self.popup = None;
                return;
            }
            Action::MoveDown | Action::NextRollout => {
                b.cursor = (b.cursor + 1).min(count.saturating_sub(1))
            }
            Action::MoveUp | Action::PrevRollout => b.cursor = b.cursor.saturating_sub(1),
            Action::First => b.cursor = 0,
            Action::Last => b.cursor = count.saturating_sub(1),
            Action::PageDown | Action::PageUp => {
                // The view keeps the cursor's rollout in sight; paging scrolls its text.
                b.scroll = self.scrolled(self.hits.popup_scroll, &action);
                self.popup = Some(Popup::Rollouts(b));
                return;
            }
            Action::CycleFilter => {
                b.filter = b.filter.next();
                b.cursor = 0;
                self.set_info(format!("rollouts: {}", b.filter.describe()));
            }
            Action::CycleLabelFilter => {
                b.label = b.label.next();
                b.cursor = 0;
                let name = self.behavior_name();
                self.set_info(format!("rollouts: {name} {}", b.label.describe()));
            }
            Action::Yank => {
                let text = self
                    .browser_rollouts(&b)
                    .get(b.cursor)
                    .map(|(r, _)| rollout_text(r));
                match text {
                    Some(t) => self.copy(&t, "rollout"),
                    None => self.set_info("no rollout to copy".into()),
                }
            }
            Action::HumanLabel => {
                // Label the rollout under the cursor: the detail pane's cursor follows it.
                if let Some((r, kind)) = self.browser_rollouts(&b).get(b.cursor) {
                    let (position, seed) = (r.position, r.seed);
                    let trace = match kind {
                        RolloutKind::Intervened { child } => *child,
                        _ => self.current,
                    };
                    self.label_rollout_in(trace, position, seed);
                }
            }
            _ => {}
        }
        // A cursor move brings its rollout into view (the view puts it at the top).
        b.scroll = u16::MAX;
        self.popup = Some(Popup::Rollouts(b));
    }

    fn apply_job_list(&mut self, selected: usize, action: Action) {
        let listing: Vec<JobId> = self.jobs.listing().iter().map(|j| j.0).collect();
        let last = listing.len().saturating_sub(1);
        match action {
            Action::Back | Action::JobList => self.popup = None,
            Action::Quit => {
                self.popup = None;
                self.quit();
            }
            Action::MoveDown => {
                self.popup = Some(Popup::Jobs {
                    selected: (selected + 1).min(last),
                })
            }
            Action::MoveUp => {
                self.popup = Some(Popup::Jobs {
                    selected: selected.saturating_sub(1),
                })
            }
            Action::Cancel => match listing.get(selected.min(last)) {
                Some(&id) => self.cancel(id),
                None => self.set_info("no job to cancel".into()),
            },
            _ => {}
        }
    }

    fn apply_confirm(&mut self, question: Confirm, action: Action) {
        let yes = matches!(action, Action::Open | Action::Input('y'));
        // `q` twice quits: the second q answers the question.
        let again = matches!((&question, &action), (Confirm::Quit, Action::Quit));
        self.popup = None;
        if !(yes || again) {
            return self.set_info("nothing done".into());
        }
        match question {
            Confirm::Quit => self.should_quit = true,
            Confirm::Resample {
                positions,
                adaptive,
                ..
            } => {
                self.model_confirmed.insert(self.current);
                self.queue_resample(positions, adaptive);
            }
            Confirm::Intervene {
                edit,
                tier_positions,
                ..
            } => {
                self.model_confirmed.insert(self.current);
                self.intervene_now(edit, tier_positions);
            }
        }
    }

    /// Quit, or ask first when jobs would be lost.
    pub(crate) fn quit(&mut self) {
        if self.jobs.busy() {
            self.popup = Some(Popup::Confirm(Confirm::Quit));
        } else {
            self.should_quit = true;
        }
    }
}

/// What `y` copies of a rollout: its replacement and continuation, with where it came from.
pub fn rollout_text(r: &Rollout) -> String {
    format!(
        "[rollout seed {} at position {}]\n{}",
        r.seed, r.position, r.text
    )
}
