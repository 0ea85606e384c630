//! The explorer's state in plain structs, and [`App::apply`], the one place that changes it.
//! Rendering (in `view/`) reads this state and never changes it.

use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, MouseButton, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::action::Action;
use super::clipboard::{ClipboardSink, SystemClipboard};
use super::engine_hook::EngineHook;
use super::event::AppEvent;
use super::jobs::Jobs;
use super::keymap::KeyMap;
use super::theme::Theme;
use anchorscope_core::analysis::{AnalysisOptions, ImportanceKind};
use anchorscope_core::behavior::scope::{label_continuations, JudgeScope};
use anchorscope_core::behavior::user::label_stored;
use anchorscope_core::behavior::BehaviorSet;
use anchorscope_core::export::{export_to_file, ExportFormat};
use anchorscope_core::loaded::{runs_of, LoadOutcome, LoadedTrace};
use anchorscope_core::store::runs::{PoolMode, SamplingConfig};
use anchorscope_core::trace::LabelValue;
use anchorscope_engine::{EngineStatus, ModelIdentity};

mod adaptive;
mod compare;
mod entry;
mod intervene;
mod list_order;
mod overlays;
mod sampling;

pub use adaptive::{base_behavior, plan_behavior};
pub use compare::CompareView;
pub use entry::{anchors, largest_shown, top_anchors, TraceEntry};
pub use list_order::{anchor_count, largest_delta, SortColumn};
pub use overlays::{
    rollout_text, Confirm, LabelFilter, RolloutBrowser, RolloutFilter, RolloutKind,
};

/// The message shown when resampling is asked for without an engine.
pub const NO_ENGINE: &str =
    "resampling needs the engine: started without it (--no-engine); run without that flag";
/// Rollouts per position requested by `r` / `R` (the interactive default of METHOD.md).
pub const INTERACTIVE_ROLLOUTS: usize = 16;
/// Export formats in the order the export popup lists them.
pub const EXPORT_FORMATS: [ExportFormat; 4] = [
    ExportFormat::Json,
    ExportFormat::Markdown,
    ExportFormat::Html,
    ExportFormat::Csv,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    List,
    Trace,
    /// Two traces side by side ([`compare::CompareView`]).
    Compare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Text,
    Chart,
    Detail,
}

/// What covers the screen, taking the keys until closed.
#[derive(Clone, Debug, PartialEq)]
pub enum Popup {
    Help {
        scroll: u16,
    },
    Export {
        selected: usize,
    },
    /// The trace's context: system prompt, user turn, final output (`p`).
    Context {
        scroll: u16,
        expanded: bool,
    },
    /// Every rollout of the selected sentence (`o`).
    Rollouts(RolloutBrowser),
    /// Running and queued jobs (`J`).
    Jobs {
        selected: usize,
    },
    /// A question that needs a yes before anything happens.
    Confirm(Confirm),
}

/// The prompt line while it is open; `restore` is what Esc goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub input: String,
    restore_selected: usize,
    restore_filter: String,
    pub purpose: PromptPurpose,
}

/// What the prompt line is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptPurpose {
    /// `/`: search sentences (filter the list).
    Search,
    /// `w`: the new text of sentence `sentence` (an intervention).
    Rewrite { sentence: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    pub is_error: bool,
    /// Said by the engine (loading, installing…): a later engine message may replace it, but
    /// it never replaces a message answering the user.
    pub from_engine: bool,
}

/// Where things were drawn last frame: for mouse hits and page sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    /// Screen rectangles covered by each sentence (several per wrapped sentence).
    pub sentences: Vec<(Rect, usize)>,
    /// List rows: rectangle → index into `App::traces`.
    pub list_rows: Vec<(Rect, usize)>,
    pub text: Rect,
    pub chart: Rect,
    pub detail: Rect,
    /// The text pane's first visible line after keeping the selection in view.
    pub text_scroll: usize,
    /// Sentences visible in the text pane (a page for PageUp/PageDown).
    pub visible_sentences: usize,
    pub detail_height: u16,
    /// The detail pane's last useful scroll offset (its text's end at the bottom); None until
    /// drawn.
    pub detail_max_scroll: Option<u16>,
    /// The open scrollable popup's effective first line and last useful offset.
    pub popup_scroll: u16,
    pub popup_max_scroll: Option<u16>,
}

/// What the status bar says about the engine: the model, or why there is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineView {
    /// Whether the explorer was started with an engine at all.
    pub attached: bool,
    /// The engine's last state report.
    pub state: Option<EngineStatus>,
    /// "model on device", once it was ready.
    pub ready: Option<String>,
    /// Which model samples (for the other-model warning).
    pub identity: Option<ModelIdentity>,
}

/// The whole explorer state.
pub struct App {
    pub traces: Vec<TraceEntry>,
    /// Files that failed to load, "path: place: message".
    pub errors: Vec<String>,
    /// Whether a list screen exists (several traces, or a directory with errors).
    pub has_list: bool,
    pub screen: Screen,
    pub list_selected: usize,
    pub list_filter: String,
    /// Index into `traces` of the open trace.
    pub current: usize,
    pub selected: usize,
    /// (position, index) of the rollout marked in the detail pane; another position means 0.
    rollout_cursor: (usize, usize),
    /// Index into the open trace's `analysis.behaviors`.
    pub behavior: usize,
    /// The second behavior of the two-behavior view (index into the analysis).
    pub pair_second: Option<usize>,
    pub importance: ImportanceKind,
    pub two_behavior: bool,
    /// The trace list's sort column and the behavior its columns describe (index into the
    /// configured behaviors).
    pub sort: SortColumn,
    pub list_behavior: usize,
    /// The trace marked in the list for a side-by-side comparison (index into `traces`).
    pub marked: Option<usize>,
    /// Traces whose other-model warning was answered with yes (asked once per trace).
    model_confirmed: std::collections::HashSet<usize>,
    pub engine_view: EngineView,
    /// The open side-by-side comparison.
    pub compare: Option<CompareView>,
    /// Where `e` writes exports.
    pub export_dir: PathBuf,
    pub focus: Pane,
    pub text_scroll: usize,
    pub detail_scroll: u16,
    pub prompt: Option<Prompt>,
    /// The last confirmed sentence search.
    pub query: String,
    pub popup: Option<Popup>,
    pub status: Option<StatusMessage>,
    pub should_quit: bool,
    pub keymap: KeyMap,
    pub theme: Theme,
    pub hits: Hits,
    pub jobs: Jobs,
    options: AnalysisOptions,
    pool_mode: PoolMode,
    /// `[sampling]`: whether `R` is adaptive, and the adaptive sweeps' settings.
    sampling: SamplingConfig,
    behavior_names: Vec<String>,
    /// The offline classifiers that label continuations alone (judge scope `continuation`).
    scope_set: Option<BehaviorSet>,
    /// The user's behaviors (labels of stored rollouts of a trace added later) and the
    /// offline classifiers (its own outcome).
    behaviors_config: anchorscope_core::behavior::BehaviorsConfig,
    outcome_set: BehaviorSet,
    /// The rewrite text the loop should hand to `$EDITOR` (`Ctrl-E` in the rewrite prompt).
    editor_request: Option<String>,
    clipboard: Box<dyn ClipboardSink>,
    engine: Option<Box<dyn EngineHook>>,
}

impl App {
    /// Build the state from what was loaded; errors in the config's key map or theme, or an
    /// invalid user behavior, are reported here (before the terminal is touched).
    pub fn new(outcome: LoadOutcome, config: &super::ExplorerSettings) -> anyhow::Result<Self> {
        let keymap = KeyMap::new(&config.keys).map_err(anyhow::Error::msg)?;
        let theme =
            Theme::new(&config.theme, Theme::no_color_from_env()).map_err(anyhow::Error::msg)?;
        // One set of the offline classifiers: its names, the trace's own outcome (did its
        // response comply?) for the list's column, and with judge scope `continuation` the
        // labels of each continuation alone (stored rollouts now, arriving ones later).
        let outcome_set = BehaviorSet::with_user(&config.behaviors)?;
        let behavior_names = outcome_set.names();
        let scope_set =
            (config.analysis.judge_scope == JudgeScope::Continuation).then(|| outcome_set.clone());
        let pool_mode = config.sampling.pool;
        let mut traces: Vec<TraceEntry> = Vec::with_capacity(outcome.traces.len());
        for loaded in outcome.traces {
            traces.push(new_entry(
                loaded,
                &config.behaviors,
                &outcome_set,
                scope_set.as_ref(),
                &behavior_names,
                &config.analysis,
                pool_mode,
            )?);
        }
        let errors: Vec<String> = outcome.errors.iter().map(ToString::to_string).collect();
        let has_list = traces.len() != 1 || !errors.is_empty();
        let mut app = Self {
            traces,
            errors,
            has_list,
            screen: Screen::List,
            list_selected: 0,
            list_filter: String::new(),
            current: 0,
            selected: 0,
            rollout_cursor: (0, 0),
            behavior: 0,
            pair_second: None,
            importance: ImportanceKind::Counterfactual,
            two_behavior: false,
            sort: SortColumn::default(),
            list_behavior: 0,
            marked: None,
            model_confirmed: Default::default(),
            engine_view: EngineView::default(),
            compare: None,
            export_dir: config
                .export_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_EXPORT_DIR)),
            focus: Pane::Text,
            text_scroll: 0,
            detail_scroll: 0,
            prompt: None,
            query: String::new(),
            popup: None,
            status: None,
            should_quit: false,
            keymap,
            theme,
            hits: Hits::default(),
            jobs: Jobs::default(),
            options: config.analysis.clone(),
            pool_mode,
            sampling: config.sampling.clone(),
            behavior_names,
            scope_set,
            behaviors_config: config.behaviors.clone(),
            outcome_set,
            editor_request: None,
            clipboard: Box::new(SystemClipboard::default()),
            engine: None,
        };
        if !app.has_list {
            app.open(0);
        }
        let warnings: Vec<String> = app
            .traces
            .iter()
            .flat_map(|t| t.loaded.warnings.iter().cloned())
            .collect();
        if let Some(w) = warnings.first() {
            app.set_error(format!("warning: {w}"));
        }
        Ok(app)
    }

    /// Replace the clipboard (tests inject a [`super::clipboard::MemoryClipboard`]).
    pub fn with_clipboard(mut self, clipboard: Box<dyn ClipboardSink>) -> Self {
        self.clipboard = clipboard;
        self
    }

    /// Plug in an engine: `r`/`R`/`x` then send jobs to it.
    pub fn with_engine(mut self, engine: Box<dyn EngineHook>) -> Self {
        self.set_engine(engine);
        self
    }

    /// [`App::with_engine`] on an existing app.
    pub fn set_engine(&mut self, engine: Box<dyn EngineHook>) {
        self.engine = Some(engine);
        self.engine_view.attached = true;
    }

    /// Bring every trace's analysis up to date with the rollouts that arrived: the loop calls
    /// it once per frame, however many rollouts came in since the last one.
    pub fn refresh(&mut self) {
        for entry in &mut self.traces {
            entry.refresh(&self.behavior_names, &self.options, self.pool_mode);
        }
    }

    /// Keep what the last frame measured: where things were drawn, and scroll offsets clamped
    /// to where their text ends (so scrolling back up answers at once).
    pub fn after_draw(&mut self, hits: Hits) {
        self.text_scroll = hits.text_scroll;
        if let Some(max) = hits.detail_max_scroll {
            self.detail_scroll = self.detail_scroll.min(max);
        }
        match &mut self.popup {
            Some(Popup::Help { scroll } | Popup::Context { scroll, .. }) => {
                *scroll = hits.popup_scroll
            }
            Some(Popup::Rollouts(b)) => b.scroll = hits.popup_scroll,
            _ => {}
        }
        self.hits = hits;
    }

    /// The behaviors the configured classifiers label (what new rollouts will carry).
    pub fn labelable(&self) -> &[String] {
        &self.behavior_names
    }

    /// Replace the theme (tests force NO_COLOR without touching the environment).
    pub fn with_theme(mut self, theme: Theme) -> Self {
        self.theme = theme;
        self
    }

    /// Start on the trace list even with a single trace (a directory was opened).
    pub fn show_list(&mut self) {
        self.has_list = true;
        self.screen = Screen::List;
    }

    // ----- queries used by the views -----

    /// The analysis settings (similarity threshold, KL smoothing) from the config.
    /// Which runs rates pool (`[sampling] pool`).
    pub fn pool_mode(&self) -> PoolMode {
        self.pool_mode
    }

    pub fn analysis_options(&self) -> &AnalysisOptions {
        &self.options
    }

    /// The marked rollout's index among the selected position's rollouts (clamped).
    pub fn rollout_cursor(&self) -> usize {
        let (position, index) = self.rollout_cursor;
        if position != self.selected {
            return 0;
        }
        let count = self.entry().map_or(0, |e| {
            e.loaded
                .rollouts
                .iter()
                .filter(|r| r.position == self.selected)
                .count()
        });
        index.min(count.saturating_sub(1))
    }

    pub fn entry(&self) -> Option<&TraceEntry> {
        self.traces.get(self.current)
    }

    /// Indices into `traces` that pass the list filter (case-insensitive substring), in the
    /// order of the sort column.
    pub fn visible_traces(&self) -> Vec<usize> {
        let needle = self.list_filter.to_lowercase();
        let mut visible: Vec<usize> = (0..self.traces.len())
            .filter(|&i| needle.is_empty() || list_haystack(&self.traces[i]).contains(&needle))
            .collect();
        let name = self.list_behavior_name();
        list_order::sort(
            &mut visible,
            &self.traces,
            self.sort,
            &name,
            self.importance,
        );
        visible
    }

    pub fn sentence_count(&self) -> usize {
        self.entry().map_or(0, |e| e.loaded.trace.sentences.len())
    }

    /// The behavior coloring the text (index into the analysis), clamped.
    pub fn behavior_index(&self) -> usize {
        let n = self.entry().map_or(0, |e| e.analysis.behaviors.len());
        if n == 0 {
            0
        } else {
            self.behavior % n
        }
    }

    /// The two behaviors of the two-behavior view: the one coloring the text, and a second
    /// one (`V` cycles it; by default the next behavior of the trace).
    pub fn behavior_pair(&self) -> (usize, usize) {
        let n = self.entry().map_or(0, |e| e.analysis.behaviors.len());
        let first = self.behavior_index();
        if n < 2 {
            return (first, first);
        }
        let second = self
            .pair_second
            .filter(|&s| s < n && s != first)
            .unwrap_or((first + 1) % n);
        (first, second)
    }

    /// Sentences whose text contains `query` (case-insensitive).
    pub fn matches(&self, query: &str) -> Vec<usize> {
        let Some(e) = self.entry() else {
            return Vec::new();
        };
        if query.is_empty() {
            return Vec::new();
        }
        let q = query.to_lowercase();
        e.loaded
            .trace
            .sentences
            .iter()
            .enumerate()
            .filter(|(_, s)| s.text.to_lowercase().contains(&q))
            .map(|(i, _)| i)
            .collect()
    }

    // ----- input -----

    /// Map one input event to an action given the current mode (prompt, popup, key map).
    pub fn action_for(&self, event: &Event) -> Option<Action> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                if self.prompt.is_some() {
                    let ctrl = key
                        .modifiers
                        .contains(ratatui::crossterm::event::KeyModifiers::CONTROL);
                    return match key.code {
                        KeyCode::Char('e') if ctrl => Some(Action::ExternalEditor),
                        KeyCode::Enter => Some(Action::Open),
                        KeyCode::Esc => Some(Action::Back),
                        KeyCode::Backspace => Some(Action::Backspace),
                        KeyCode::Char(c)
                            if !key
                                .modifiers
                                .contains(ratatui::crossterm::event::KeyModifiers::CONTROL) =>
                        {
                            Some(Action::Input(c))
                        }
                        _ => None,
                    };
                }
                if let (Some(Popup::Export { .. }), KeyCode::Char(c @ '1'..='4')) =
                    (&self.popup, key.code)
                {
                    return Some(Action::Input(c));
                }
                // A question is answered with y / Enter (yes) or anything else (no).
                if let Some(Popup::Confirm(_)) = &self.popup {
                    return match key.code {
                        KeyCode::Char('y') | KeyCode::Enter => Some(Action::Input('y')),
                        _ => self.keymap.action_for(key).or(Some(Action::Back)),
                    };
                }
                self.keymap.action_for(key)
            }
            Event::Mouse(m) => match m.kind {
                MouseEventKind::Down(MouseButton::Left) => Some(Action::Click {
                    column: m.column,
                    row: m.row,
                }),
                MouseEventKind::ScrollDown => Some(Action::ScrollDown {
                    column: m.column,
                    row: m.row,
                }),
                MouseEventKind::ScrollUp => Some(Action::ScrollUp {
                    column: m.column,
                    row: m.row,
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// Handle one event from the loop (terminal input or an engine message).
    pub fn handle(&mut self, event: AppEvent) {
        match event {
            AppEvent::Terminal(e) => {
                if let Some(a) = self.action_for(&e) {
                    self.apply(a);
                }
            }
            AppEvent::Engine(e) => self.on_engine_event(e),
            AppEvent::Terminate => self.should_quit = true,
        }
    }

    /// The one place that changes state in response to the user.
    pub fn apply(&mut self, action: Action) {
        if self.prompt.is_some() {
            return self.apply_prompt(action);
        }
        if let Some(popup) = self.popup.clone() {
            return self.apply_popup(popup, action);
        }
        match action {
            Action::Quit => self.quit(),
            Action::Help => self.popup = Some(Popup::Help { scroll: 0 }),
            Action::JobList => self.popup = Some(Popup::Jobs { selected: 0 }),
            Action::Click { column, row } => self.click(column, row),
            Action::ScrollDown { column, row } => self.scroll(column, row, 3),
            Action::ScrollUp { column, row } => self.scroll(column, row, -3),
            _ => match self.screen {
                Screen::List => self.apply_list(action),
                Screen::Trace => self.apply_trace(action),
                Screen::Compare => self.apply_compare(action),
            },
        }
    }

    fn apply_list(&mut self, action: Action) {
        let visible = self.visible_traces();
        let last = visible.len().saturating_sub(1);
        match action {
            Action::MoveDown => self.list_selected = (self.list_selected + 1).min(last),
            Action::MoveUp => self.list_selected = self.list_selected.saturating_sub(1),
            Action::First => self.list_selected = 0,
            Action::Last => self.list_selected = last,
            Action::PageDown => self.list_selected = (self.list_selected + 10).min(last),
            Action::PageUp => self.list_selected = self.list_selected.saturating_sub(10),
            Action::Open => match visible.get(self.list_selected) {
                Some(&i) => self.open(i),
                None => self.set_error("no trace to open".into()),
            },
            Action::Back => {
                if !self.list_filter.is_empty() {
                    self.list_filter.clear();
                    self.list_selected = 0;
                }
            }
            Action::Search => self.open_prompt(),
            Action::SortList => {
                self.sort = self.sort.next();
                self.set_info(format!("sorted by {}", self.sort.describe()));
            }
            Action::NextBehavior => {
                let n = self.behavior_names.len().max(1);
                self.list_behavior = (self.list_behavior + 1) % n;
                let name = self.list_behavior_name();
                self.set_info(format!("list columns describe: {name}"));
            }
            Action::MarkTrace => match visible.get(self.list_selected) {
                Some(&i) if self.marked == Some(i) => {
                    self.marked = None;
                    self.set_info("mark cleared".into());
                }
                Some(&i) => {
                    self.marked = Some(i);
                    let id = self.traces[i].loaded.trace.id.clone();
                    self.set_info(format!(
                        "marked {id}: open another trace with {} to compare the two",
                        self.keymap.hint(&Action::Compare)
                    ));
                }
                None => {}
            },
            Action::Compare => match visible.get(self.list_selected) {
                Some(&i) => self.compare_with(i),
                None => self.set_error("no trace to compare".into()),
            },
            Action::Resample | Action::ResampleAll | Action::AdaptiveAll => self.set_info(format!(
                "open a trace first ({} opens the selected row)",
                self.keymap.hint(&Action::Open)
            )),
            Action::Cancel => self.cancel_job(),
            _ => self.set_info(format!(
                "open a trace first ({} opens the selected row)",
                self.keymap.hint(&Action::Open)
            )),
        }
    }

    /// The behavior the trace list's columns describe.
    pub fn list_behavior_name(&self) -> String {
        self.behavior_names
            .get(self.list_behavior)
            .cloned()
            .unwrap_or_else(|| "none".into())
    }

    fn apply_trace(&mut self, action: Action) {
        let n = self.sentence_count();
        let last = n.saturating_sub(1);
        match action {
            Action::MoveDown | Action::MoveUp if self.focus == Pane::Detail => {
                let d: i32 = if action == Action::MoveDown { 1 } else { -1 };
                self.scroll_detail(d);
            }
            Action::MoveDown => self.select(self.selected + 1),
            Action::MoveUp => self.select(self.selected.saturating_sub(1)),
            Action::First => self.select(0),
            Action::Last => self.select(last),
            Action::PageDown | Action::PageUp => {
                let down = action == Action::PageDown;
                if self.focus == Pane::Detail {
                    let page = self.hits.detail_height.max(2) as i32 - 1;
                    self.scroll_detail(if down { page } else { -page });
                } else {
                    let page = match self.focus {
                        Pane::Chart => (n / 10).max(1),
                        _ => self.hits.visible_sentences.max(1),
                    };
                    if down {
                        self.select(self.selected + page);
                    } else {
                        self.select(self.selected.saturating_sub(page));
                    }
                }
            }
            Action::FocusNext => {
                self.focus = match self.focus {
                    Pane::Text => Pane::Chart,
                    Pane::Chart => Pane::Detail,
                    Pane::Detail => Pane::Text,
                }
            }
            Action::FocusPrev => {
                self.focus = match self.focus {
                    Pane::Text => Pane::Detail,
                    Pane::Chart => Pane::Text,
                    Pane::Detail => Pane::Chart,
                }
            }
            Action::NextAnchor | Action::PrevAnchor => {
                self.jump_to_anchor(action == Action::NextAnchor)
            }
            Action::PairNext => {
                let n = self.entry().map_or(0, |e| e.analysis.behaviors.len());
                if n >= 2 {
                    let (first, second) = self.behavior_pair();
                    let mut next = (second + 1) % n;
                    if next == first {
                        next = (next + 1) % n;
                    }
                    self.pair_second = Some(next);
                    self.two_behavior = true;
                } else {
                    self.set_info("the trace has only one behavior".into());
                }
            }
            Action::Context => {
                self.popup = Some(Popup::Context {
                    scroll: 0,
                    expanded: false,
                })
            }
            Action::Rollouts => {
                self.popup = Some(Popup::Rollouts(RolloutBrowser::default()));
            }
            Action::Compare => match self.marked {
                Some(m) if m != self.current => self.compare_with(self.current),
                _ => self.set_info(format!(
                    "mark a trace in the list with {} first, then compare it with this one",
                    self.keymap.hint(&Action::MarkTrace)
                )),
            },
            Action::NextBehavior => {
                let count = self.entry().map_or(0, |e| e.analysis.behaviors.len());
                if count > 0 {
                    self.behavior = (self.behavior_index() + 1) % count;
                    let name = self.behavior_name();
                    self.set_info(format!("behavior: {name}"));
                }
            }
            Action::TwoBehavior => self.two_behavior = !self.two_behavior,
            Action::ToggleImportance => {
                self.importance = match self.importance {
                    ImportanceKind::Counterfactual => ImportanceKind::Resampling,
                    ImportanceKind::Resampling => ImportanceKind::Counterfactual,
                };
                self.set_info(format!("importance: {}", importance_label(self.importance)));
            }
            Action::Search => self.open_prompt(),
            Action::NextMatch | Action::PrevMatch => {
                self.jump_to_match(action == Action::NextMatch)
            }
            Action::Yank => {
                let text = self
                    .entry()
                    .and_then(|e| e.loaded.trace.sentences.get(self.selected))
                    .map(|s| s.text.clone());
                match text {
                    Some(t) => self.copy(&t, "sentence"),
                    None => self.set_error("no sentence to copy".into()),
                }
            }
            Action::YankTrace => {
                if let Some(text) = self.entry().map(|e| whole_trace_text(&e.loaded)) {
                    self.copy(&text, "trace");
                }
            }
            Action::Export => self.popup = Some(Popup::Export { selected: 0 }),
            // Position i (S_i resampled) and i+1 (S_i kept): what the importance of S_i needs.
            Action::Resample => self.resample(vec![self.selected, self.selected + 1]),
            // `[sampling] adaptive = true` makes a full sweep adaptive, as `A` always is.
            Action::ResampleAll if self.adaptive_by_default() => self.resample_adaptive(),
            Action::ResampleAll => self.resample((0..=n).collect()),
            Action::AdaptiveAll => self.resample_adaptive(),
            Action::DeleteSentence => self.delete_sentence(),
            Action::RewriteSentence => self.open_rewrite(),
            Action::SwapTier => self.swap_tier(false),
            Action::SwapTierAll => self.swap_tier(true),
            Action::Cancel => self.cancel_job(),
            Action::NextRollout => {
                let cursor = self.rollout_cursor();
                self.rollout_cursor = (self.selected, cursor + 1);
            }
            Action::PrevRollout => {
                let cursor = self.rollout_cursor();
                self.rollout_cursor = (self.selected, cursor.saturating_sub(1));
            }
            Action::HumanLabel => {
                let marked = self.entry().and_then(|e| {
                    e.loaded
                        .rollouts
                        .iter()
                        .filter(|r| r.position == self.selected)
                        .nth(self.rollout_cursor())
                        .map(|r| (r.position, r.seed))
                });
                match marked {
                    Some((position, seed)) => self.label_rollout(position, seed),
                    None => self.set_info(format!(
                        "no rollouts at position {} to label",
                        self.selected
                    )),
                }
            }
            Action::Back => {
                if self.has_list {
                    self.screen = Screen::List;
                } else if !self.query.is_empty() {
                    self.query.clear();
                }
            }
            _ => {}
        }
    }

    fn apply_prompt(&mut self, action: Action) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        match action {
            Action::Input(c) => prompt.input.push(c),
            Action::Backspace => {
                prompt.input.pop();
            }
            Action::ExternalEditor => return self.request_editor(),
            Action::Open => {
                let input = prompt.input.clone();
                let purpose = prompt.purpose;
                self.prompt = None;
                if let PromptPurpose::Rewrite { sentence } = purpose {
                    return self.rewrite_sentence(sentence, input);
                }
                if self.screen == Screen::Trace {
                    self.query = input;
                    let count = self.matches(&self.query).len();
                    if self.query.is_empty() {
                        self.set_info("search cleared".into());
                    } else if count == 0 {
                        self.set_error(format!("no sentence matches {:?}", self.query));
                    } else {
                        self.set_info(format!(
                            "{count} match{} for {:?} ({} / {} to move)",
                            if count == 1 { "" } else { "es" },
                            self.query,
                            self.keymap.hint(&Action::NextMatch),
                            self.keymap.hint(&Action::PrevMatch)
                        ));
                    }
                }
                return;
            }
            Action::Back => {
                let p = prompt.clone();
                self.prompt = None;
                match self.screen {
                    Screen::Trace | Screen::Compare => self.selected = p.restore_selected,
                    Screen::List => {
                        self.list_filter = p.restore_filter;
                        self.list_selected = p.restore_selected;
                    }
                }
                return;
            }
            _ => return,
        }
        if prompt.purpose != PromptPurpose::Search {
            return;
        }
        // Incremental: the list filters as you type; the text jumps to the first match.
        let input = prompt.input.clone();
        let start = prompt.restore_selected;
        match self.screen {
            Screen::List => {
                self.list_filter = input;
                self.list_selected = 0;
            }
            Screen::Trace | Screen::Compare => {
                let m = self.matches(&input);
                if let Some(&i) = m.iter().find(|&&i| i >= start).or(m.first()) {
                    self.select(i);
                }
            }
        }
    }

    pub(crate) fn apply_export_popup(&mut self, selected: usize, action: Action) {
        let last = EXPORT_FORMATS.len() - 1;
        match action {
            Action::MoveDown => {
                self.popup = Some(Popup::Export {
                    selected: (selected + 1).min(last),
                })
            }
            Action::MoveUp => {
                self.popup = Some(Popup::Export {
                    selected: selected.saturating_sub(1),
                })
            }
            Action::Input(c @ '1'..='4') => {
                self.popup = None;
                self.export((c as u8 - b'1') as usize);
            }
            Action::Open => {
                self.popup = None;
                self.export(selected);
            }
            Action::Back | Action::Export => self.popup = None,
            Action::Quit => {
                self.popup = None;
                self.quit();
            }
            _ => {}
        }
    }

    fn open_prompt(&mut self) {
        self.prompt = Some(Prompt {
            input: String::new(),
            restore_selected: match self.screen {
                Screen::List => self.list_selected,
                Screen::Trace | Screen::Compare => self.selected,
            },
            restore_filter: self.list_filter.clone(),
            purpose: PromptPurpose::Search,
        });
    }

    /// Open trace `i` (index into `traces`).
    pub fn open(&mut self, i: usize) {
        if i >= self.traces.len() {
            return;
        }
        self.current = i;
        self.screen = Screen::Trace;
        self.selected = 0;
        self.text_scroll = 0;
        self.detail_scroll = 0;
        self.query.clear();
        self.pair_second = None;
        // Color by the first behavior that has any importance, so the text is not all neutral.
        let kind = self.importance;
        self.behavior = self.traces[i]
            .analysis
            .behaviors
            .iter()
            .position(|b| b.max_magnitude(kind) > 0.0)
            .unwrap_or(0);
    }

    fn select(&mut self, i: usize) {
        let n = self.sentence_count();
        let new = i.min(n.saturating_sub(1));
        if new != self.selected {
            self.detail_scroll = 0;
        }
        self.selected = new;
    }

    /// Scroll the detail pane; it stops where its last line reaches the bottom.
    fn scroll_detail(&mut self, delta: i32) {
        let max = self
            .hits
            .detail_max_scroll
            .map_or(u16::MAX as i32, i32::from);
        self.detail_scroll = (self.detail_scroll as i32 + delta).clamp(0, max) as u16;
    }

    fn jump_to_match(&mut self, forward: bool) {
        let m = self.matches(&self.query);
        if self.query.is_empty() {
            let key = self.keymap.hint(&Action::Search);
            return self.set_info(format!("no search yet ({key} to search)"));
        }
        let next = if forward {
            m.iter().find(|&&i| i > self.selected).or(m.first())
        } else {
            m.iter().rev().find(|&&i| i < self.selected).or(m.last())
        };
        match next.copied() {
            Some(i) => {
                let k = m.iter().position(|&x| x == i).unwrap_or(0) + 1;
                self.select(i);
                self.set_info(format!("match {k}/{} for {:?}", m.len(), self.query));
            }
            None => self.set_error(format!("no sentence matches {:?}", self.query)),
        }
    }

    /// Move to the next / previous significant sentence of the coloring behavior.
    fn jump_to_anchor(&mut self, forward: bool) {
        let Some(e) = self.entry() else { return };
        let Some(b) = e.analysis.behaviors.get(self.behavior_index()) else {
            return self.set_info("no behavior to find anchors for".into());
        };
        let found = anchors(b, self.importance, &e.analysis.rule);
        let name = b.behavior.clone();
        let next = if forward {
            found.iter().find(|&&i| i > self.selected).or(found.first())
        } else {
            found
                .iter()
                .rev()
                .find(|&&i| i < self.selected)
                .or(found.last())
        };
        match next.copied() {
            Some(i) => {
                let k = found.iter().position(|&x| x == i).unwrap_or(0) + 1;
                self.select(i);
                self.set_info(format!("anchor {k}/{} for {name}", found.len()));
            }
            None => self.set_info(format!(
                "no significant sentence for {name} ({} importance) yet",
                importance_label(self.importance)
            )),
        }
    }

    fn click(&mut self, column: u16, row: u16) {
        let p = Position::new(column, row);
        match self.screen {
            Screen::List => {
                let visible = self.visible_traces();
                if let Some(&(_, i)) = self.hits.list_rows.iter().find(|(r, _)| r.contains(p)) {
                    if let Some(pos) = visible.iter().position(|&v| v == i) {
                        if pos == self.list_selected {
                            self.open(i);
                        } else {
                            self.list_selected = pos;
                        }
                    }
                }
            }
            Screen::Trace => {
                if let Some(&(_, i)) = self.hits.sentences.iter().find(|(r, _)| r.contains(p)) {
                    self.focus = Pane::Text;
                    self.select(i);
                } else if self.hits.chart.contains(p) {
                    self.focus = Pane::Chart;
                } else if self.hits.detail.contains(p) {
                    self.focus = Pane::Detail;
                } else if self.hits.text.contains(p) {
                    self.focus = Pane::Text;
                }
            }
            Screen::Compare => {}
        }
    }

    fn scroll(&mut self, column: u16, row: u16, delta: i32) {
        let p = Position::new(column, row);
        match self.screen {
            Screen::List => {
                let a = if delta > 0 {
                    Action::MoveDown
                } else {
                    Action::MoveUp
                };
                self.apply_list(a);
            }
            Screen::Trace => {
                if self.hits.detail.contains(p) {
                    self.scroll_detail(delta);
                } else if delta > 0 {
                    self.select(self.selected + delta as usize);
                } else {
                    self.select(self.selected.saturating_sub(delta.unsigned_abs() as usize));
                }
            }
            Screen::Compare => self.apply_compare(if delta > 0 {
                Action::MoveDown
            } else {
                Action::MoveUp
            }),
        }
    }

    pub(crate) fn copy(&mut self, text: &str, what: &str) {
        match self.clipboard.copy(text) {
            Ok(msg) => self.set_info(format!("{what}: {msg} ({} chars)", text.chars().count())),
            Err(e) => self.set_error(e),
        }
    }

    fn export(&mut self, format_index: usize) {
        let Some(format) = EXPORT_FORMATS.get(format_index).copied() else {
            return;
        };
        let Some(entry) = self.entry() else {
            return self.set_error("no trace to export".into());
        };
        let path = export_path(
            &self.export_dir,
            &entry.loaded.path,
            &entry.loaded.trace.id,
            format,
        );
        if let Err(e) = std::fs::create_dir_all(&self.export_dir) {
            return self.set_error(format!(
                "export directory {}: {e}",
                self.export_dir.display()
            ));
        }
        match export_to_file(&entry.loaded, &entry.analysis, format, &path) {
            // The file name first: on a narrow status line the directory is what gets cut.
            Ok(()) => self.set_info(format!(
                "exported {} (in {})",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                self.export_dir.display()
            )),
            Err(e) => self.set_error(format!("export to {} failed: {e:#}", path.display())),
        }
    }

    pub fn behavior_name(&self) -> String {
        self.entry()
            .and_then(|e| e.analysis.behaviors.get(self.behavior_index()))
            .map_or_else(|| "none".to_string(), |b| b.behavior.clone())
    }

    /// Cycle a person's label of one rollout (by position and seed) for the selected
    /// behavior (yes → no → invalid → none). It is appended to the trace's human-label file
    /// and never replaces the classifier's label; rates use it where present.
    pub(crate) fn label_rollout(&mut self, position: usize, seed: u64) {
        self.label_rollout_in(self.current, position, seed)
    }

    /// [`App::label_rollout`] on a rollout of trace `trace` (an intervention's derived trace,
    /// from the open trace's rollout browser), for the behavior shown on the open trace.
    pub(crate) fn label_rollout_in(&mut self, trace: usize, position: usize, seed: u64) {
        use anchorscope_core::store::human::{
            append_verdict, human_label, human_path_for, HumanVerdict,
        };
        let shown = self.behavior_name();
        let Some(entry) = self.traces.get_mut(trace) else {
            return;
        };
        let Some(shown) = entry
            .analysis
            .behaviors
            .iter()
            .find(|b| b.behavior == shown)
        else {
            let id = entry.loaded.trace.id.clone();
            return self.set_info(format!("no {shown} to label on {id}"));
        };
        if shown
            .behavior
            .ends_with(anchorscope_core::analysis::THEIRS_SUFFIX)
        {
            return self.set_info("imported numbers have no rollouts to label".into());
        }
        let behavior = shown
            .behavior
            .strip_suffix(anchorscope_core::behavior::scope::CONTINUATION_SUFFIX)
            .unwrap_or(&shown.behavior)
            .to_string();
        let Some(rollout) = entry
            .loaded
            .rollouts
            .iter_mut()
            .find(|r| r.position == position && r.seed == seed)
        else {
            return self.set_info(format!(
                "no rollout with seed {seed} at {position} to label"
            ));
        };
        let next = match rollout.human_label(&behavior).map(|l| l.value) {
            None => Some(LabelValue::Yes),
            Some(LabelValue::Yes) => Some(LabelValue::No),
            Some(LabelValue::No) => Some(LabelValue::Invalid),
            Some(LabelValue::Invalid) => None,
        };
        let verdict = HumanVerdict {
            position: rollout.position,
            seed: rollout.seed,
            behavior: behavior.clone(),
            value: next,
            time: anchorscope_core::store::runs::now_utc(),
        };
        let path = human_path_for(&entry.loaded.store_path);
        if let Err(e) = append_verdict(&path, &verdict) {
            return self.set_error(format!("{}: human label not saved: {e}", path.display()));
        }
        let key = format!("{behavior}{}", anchorscope_core::trace::HUMAN_SUFFIX);
        match next {
            Some(value) => {
                rollout
                    .labels
                    .insert(key, human_label(value, &verdict.time));
            }
            None => {
                rollout.labels.remove(&key);
            }
        }
        let seed = rollout.seed;
        entry.invalidate();
        let said = match next {
            Some(LabelValue::Yes) => "yes",
            Some(LabelValue::No) => "no",
            Some(LabelValue::Invalid) => "invalid",
            None => "cleared (the classifier's label counts again)",
        };
        self.set_info(format!(
            "your {behavior} label for seed {seed} at {position}: {said}"
        ));
    }

    pub(crate) fn set_info(&mut self, text: String) {
        self.status = Some(StatusMessage {
            text,
            is_error: false,
            from_engine: false,
        });
    }

    pub(crate) fn set_error(&mut self, text: String) {
        self.status = Some(StatusMessage {
            text,
            is_error: true,
            from_engine: false,
        });
    }
}

/// A loaded trace as the explorer keeps it: user behaviors label its stored rollouts, judge
/// scope `continuation` labels each continuation alone, its run records are read, and the
/// offline classifiers give its own outcome.
fn new_entry(
    mut loaded: LoadedTrace,
    user: &anchorscope_core::behavior::BehaviorsConfig,
    outcome_set: &BehaviorSet,
    scope_set: Option<&BehaviorSet>,
    names: &[String],
    options: &AnalysisOptions,
    mode: PoolMode,
) -> anyhow::Result<TraceEntry> {
    label_stored(user, &loaded.trace, &mut loaded.rollouts)?;
    if let Some(set) = scope_set {
        label_continuations(set, &loaded.trace, &mut loaded.rollouts);
    }
    let runs = match runs_of(&loaded) {
        Ok(runs) => runs,
        Err(e) => {
            loaded.warnings.push(format!("run records not read: {e}"));
            Vec::new()
        }
    };
    let outcome = outcome_set.classify(&loaded.trace.response);
    Ok(TraceEntry::new(loaded, runs, outcome, names, options, mode))
}

pub fn importance_label(kind: ImportanceKind) -> &'static str {
    match kind {
        ImportanceKind::Counterfactual => "counterfactual",
        ImportanceKind::Resampling => "resampling",
    }
}

/// What the list filter matches against: id, source, model, tier, path.
fn list_haystack(e: &TraceEntry) -> String {
    let t = &e.loaded.trace;
    format!(
        "{} {} {} {} {}",
        t.id,
        t.source.label(),
        t.model.as_deref().unwrap_or(""),
        t.meta.get("tier").map_or("", String::as_str),
        e.loaded.path.display()
    )
    .to_lowercase()
}

/// Prompt messages then the raw response, as copied by `Y`.
pub fn whole_trace_text(loaded: &LoadedTrace) -> String {
    let mut out = String::new();
    for m in &loaded.trace.prompt {
        out.push_str(&format!("[{}]\n{}\n\n", m.role, m.content));
    }
    out.push_str("[assistant]\n");
    out.push_str(&loaded.trace.response);
    out
}

/// Where exports go when neither `--export-dir` nor the config's `export_dir` says.
pub const DEFAULT_EXPORT_DIR: &str = "anchorscope-exports";

/// `<dir>/<trace-id>.<ext>`: every export of a session in one directory, named by the trace
/// id (unique among loaded traces), never beside the trace where a later load would meet it.
pub fn export_path(dir: &Path, trace_path: &Path, trace_id: &str, format: ExportFormat) -> PathBuf {
    anchorscope_core::export::default_file(trace_path, trace_id, true, format, dir)
}

#[cfg(test)]
mod tests;
