//! The explorer's state in plain structs, and [`App::apply`], the one place that changes it.
//! Rendering (in `view/`) reads this state and never changes it.

use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, MouseButton, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::action::Action;
use super::clipboard::{ClipboardSink, SystemClipboard};
use super::engine_hook::{EngineHook, JobProgress, Jobs};
use super::event::AppEvent;
use super::keymap::KeyMap;
use super::theme::Theme;
use anchorscope_core::analysis::{analyze_trace, AnalysisOptions, ImportanceKind, TraceAnalysis};
use anchorscope_core::behavior::scope::{label_continuations, JudgeScope};
use anchorscope_core::behavior::user::label_stored;
use anchorscope_core::behavior::{BehaviorSet, ALIGNMENT_FAKING, COMPLIANCE};
use anchorscope_core::export::{export_to_file, ExportFormat};
use anchorscope_core::loaded::{runs_of, LoadOutcome, LoadedTrace};
use anchorscope_core::store::runs::{pool, Pool, PoolMode, RunRecord};
use anchorscope_core::trace::LabelValue;
use anchorscope_engine::{EngineCommand, EngineEvent};

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

/// A loaded trace with its analysis (recomputed whenever rollouts change).
#[derive(Clone, Debug)]
pub struct TraceEntry {
    pub loaded: LoadedTrace,
    pub analysis: TraceAnalysis,
    /// The run records of the trace's store (read at load, re-read when a new run appears).
    pub runs: Vec<RunRecord>,
    /// Which runs the rates pool, as `stats` and the exports decide it.
    pub pool: Pool,
}

impl TraceEntry {
    /// Analyse the pooled rollouts only, exactly as `stats` and `export` do, so the explorer
    /// never shows a rate that mixes runs with other settings.
    fn reanalyze(&mut self, names: &[String], options: &AnalysisOptions, mode: PoolMode) {
        self.pool = pool(&self.loaded.rollouts, &self.runs, mode);
        let counted = self.pool.filter(&self.loaded.rollouts);
        self.analysis = analyze_trace(&self.loaded.trace, &counted, names, options);
    }

    /// Whether the pool line is worth showing: more than one run, or one left out.
    pub fn pool_summary(&self) -> Option<String> {
        (self.pool.included.len() + self.pool.excluded.len() > 1).then(|| self.pool.summary())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    List,
    Trace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Text,
    Chart,
    Detail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Popup {
    Help,
    Export { selected: usize },
}

/// The `/` prompt while it is open; `restore` is what Esc goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub input: String,
    restore_selected: usize,
    restore_filter: String,
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
    pub importance: ImportanceKind,
    pub two_behavior: bool,
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
    behavior_names: Vec<String>,
    /// The offline classifiers that label continuations alone (judge scope `continuation`).
    scope_set: Option<BehaviorSet>,
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
        let behavior_names = BehaviorSet::with_user(&config.behaviors)?.names();
        // Judge scope `continuation`: the offline classifiers also judge each continuation
        // alone, for every stored rollout now and for each one that arrives.
        let scope_set = (config.analysis.judge_scope == JudgeScope::Continuation)
            .then(|| BehaviorSet::with_user(&config.behaviors))
            .transpose()?;
        let pool_mode = config.sampling.pool;
        let mut traces: Vec<TraceEntry> = Vec::with_capacity(outcome.traces.len());
        for mut loaded in outcome.traces {
            // User regex behaviors label every stored rollout, not only those sampled since.
            label_stored(&config.behaviors, &loaded.trace, &mut loaded.rollouts)?;
            if let Some(set) = &scope_set {
                label_continuations(set, &loaded.trace, &mut loaded.rollouts);
            }
            let runs = match runs_of(&loaded) {
                Ok(runs) => runs,
                Err(e) => {
                    loaded.warnings.push(format!("run records not read: {e}"));
                    Vec::new()
                }
            };
            let mut entry = TraceEntry {
                pool: pool(&loaded.rollouts, &runs, pool_mode),
                loaded,
                analysis: TraceAnalysis {
                    behaviors: Vec::new(),
                    rule: config.analysis.shade_rule(),
                    pooled: None,
                },
                runs,
            };
            entry.reanalyze(&behavior_names, &config.analysis, pool_mode);
            traces.push(entry);
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
            importance: ImportanceKind::Counterfactual,
            two_behavior: false,
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
            behavior_names,
            scope_set,
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
        self.engine = Some(engine);
        self
    }

    /// [`App::with_engine`] on an existing app.
    pub fn set_engine(&mut self, engine: Box<dyn EngineHook>) {
        self.engine = Some(engine);
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

    /// Indices into `traces` that pass the list filter (case-insensitive substring).
    pub fn visible_traces(&self) -> Vec<usize> {
        let needle = self.list_filter.to_lowercase();
        (0..self.traces.len())
            .filter(|&i| needle.is_empty() || list_haystack(&self.traces[i]).contains(&needle))
            .collect()
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

    /// The two behaviors of the two-behavior view: alignment faking, then compliance (or the
    /// first two behaviors when those are absent).
    pub fn behavior_pair(&self) -> (usize, usize) {
        let Some(e) = self.entry() else { return (0, 0) };
        let find = |name: &str| e.analysis.behaviors.iter().position(|b| b.behavior == name);
        let n = e.analysis.behaviors.len();
        let first = find(ALIGNMENT_FAKING).unwrap_or(0);
        let second = find(COMPLIANCE)
            .filter(|&c| c != first)
            .unwrap_or(if first == 0 {
                1.min(n.saturating_sub(1))
            } else {
                0
            });
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
                    return match key.code {
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
        match &self.popup {
            Some(Popup::Help) => {
                // `q` closes the help like Esc does: a person reading it wants the explorer
                // back, not gone.
                if matches!(
                    action,
                    Action::Back | Action::Help | Action::Open | Action::Quit
                ) {
                    self.popup = None;
                }
                return;
            }
            Some(Popup::Export { selected }) => return self.apply_export_popup(*selected, action),
            None => {}
        }
        match action {
            Action::Quit => self.should_quit = true,
            Action::Help => self.popup = Some(Popup::Help),
            Action::Click { column, row } => self.click(column, row),
            Action::ScrollDown { column, row } => self.scroll(column, row, 3),
            Action::ScrollUp { column, row } => self.scroll(column, row, -3),
            _ => match self.screen {
                Screen::List => self.apply_list(action),
                Screen::Trace => self.apply_trace(action),
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
            _ => self.set_info(format!(
                "open a trace first ({} opens the selected row)",
                self.keymap.hint(&Action::Open)
            )),
        }
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
            Action::NextBehavior => {
                let count = self.entry().map_or(0, |e| e.analysis.behaviors.len());
                if count > 0 {
                    self.behavior = (self.behavior_index() + 1) % count;
                    self.two_behavior = false;
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
            Action::ResampleAll => self.resample((0..=n).collect()),
            Action::Cancel => self.cancel_job(),
            Action::NextRollout => {
                let cursor = self.rollout_cursor();
                self.rollout_cursor = (self.selected, cursor + 1);
            }
            Action::PrevRollout => {
                let cursor = self.rollout_cursor();
                self.rollout_cursor = (self.selected, cursor.saturating_sub(1));
            }
            Action::HumanLabel => self.human_label(),
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
            Action::Open => {
                let input = prompt.input.clone();
                self.prompt = None;
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
                    Screen::Trace => self.selected = p.restore_selected,
                    Screen::List => {
                        self.list_filter = p.restore_filter;
                        self.list_selected = p.restore_selected;
                    }
                }
                return;
            }
            _ => return,
        }
        // Incremental: the list filters as you type; the text jumps to the first match.
        let input = prompt.input.clone();
        let start = prompt.restore_selected;
        match self.screen {
            Screen::List => {
                self.list_filter = input;
                self.list_selected = 0;
            }
            Screen::Trace => {
                let m = self.matches(&input);
                if let Some(&i) = m.iter().find(|&&i| i >= start).or(m.first()) {
                    self.select(i);
                }
            }
        }
    }

    fn apply_export_popup(&mut self, selected: usize, action: Action) {
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
            Action::Quit => self.should_quit = true,
            _ => {}
        }
    }

    fn open_prompt(&mut self) {
        self.prompt = Some(Prompt {
            input: String::new(),
            restore_selected: match self.screen {
                Screen::List => self.list_selected,
                Screen::Trace => self.selected,
            },
            restore_filter: self.list_filter.clone(),
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

    fn scroll_detail(&mut self, delta: i32) {
        self.detail_scroll = (self.detail_scroll as i32 + delta).clamp(0, u16::MAX as i32) as u16;
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
        }
    }

    fn copy(&mut self, text: &str, what: &str) {
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
        let path = export_path(&entry.loaded.path, &entry.loaded.trace.id, format);
        match export_to_file(&entry.loaded, &entry.analysis, format, &path) {
            Ok(()) => self.set_info(format!("exported to {}", path.display())),
            Err(e) => self.set_error(format!("export to {} failed: {e:#}", path.display())),
        }
    }

    fn resample(&mut self, positions: Vec<usize>) {
        if self.engine.is_none() {
            return self.set_info(NO_ENGINE.to_string());
        }
        let Some(entry) = self.entry() else {
            return;
        };
        let template = anchorscope_engine::Job {
            id: 0,
            trace: std::sync::Arc::new(entry.loaded.trace.clone()),
            store_path: entry.loaded.store_path.clone(),
            positions,
            n: INTERACTIVE_ROLLOUTS,
            sampler: entry
                .loaded
                .trace
                .manifest
                .sampler
                .clone()
                .unwrap_or_default(),
        };
        let count = template.positions.len();
        let job = self.jobs.start(template);
        self.jobs.trace_of.insert(job.id, self.current);
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        match engine.send(EngineCommand::Submit(job)) {
            Ok(()) => self.set_info(format!(
                "sampling {INTERACTIVE_ROLLOUTS} rollouts at {count} position(s)…"
            )),
            Err(e) => {
                self.jobs.running = None;
                self.set_error(e)
            }
        }
    }

    fn cancel_job(&mut self) {
        let (Some(engine), Some(job)) = (self.engine.as_mut(), self.jobs.running) else {
            let msg = if self.engine.is_none() {
                NO_ENGINE
            } else {
                "no job running"
            };
            return self.set_info(msg.to_string());
        };
        match engine.send(EngineCommand::Cancel(job)) {
            Ok(()) => self.set_info("cancelling…".into()),
            Err(e) => self.set_error(e),
        }
    }

    /// An engine message. Rollouts join the trace their job sampled (they are stored data, even
    /// from a superseded job) and its analysis is recomputed; progress, errors and the end of
    /// superseded jobs are dropped.
    pub fn on_engine_event(&mut self, event: EngineEvent) {
        match event {
            // Never hide a message that answers the user's last key.
            EngineEvent::Status(state) if self.status.as_ref().is_none_or(|s| s.from_engine) => {
                self.status = Some(StatusMessage {
                    text: state.to_string(),
                    is_error: state.is_error(),
                    from_engine: true,
                });
            }
            EngineEvent::Status(_) => {}
            EngineEvent::Rollout { job, rollout } => {
                let Some(&index) = self.jobs.trace_of.get(&job) else {
                    return;
                };
                if let Some(entry) = self.traces.get_mut(index) {
                    // A rollout of a run not seen yet: its record was appended before it.
                    let known = rollout
                        .run
                        .as_ref()
                        .is_none_or(|id| entry.runs.iter().any(|r| &r.id == id));
                    if !known {
                        if let Ok(runs) = runs_of(&entry.loaded) {
                            entry.runs = runs;
                        }
                    }
                    let mut rollout = *rollout;
                    if let Some(set) = &self.scope_set {
                        label_continuations(
                            set,
                            &entry.loaded.trace,
                            std::slice::from_mut(&mut rollout),
                        );
                    }
                    entry.loaded.rollouts.push(rollout);
                    entry.reanalyze(&self.behavior_names, &self.options, self.pool_mode);
                }
            }
            EngineEvent::Progress {
                job,
                done,
                total,
                tokens_per_s,
            } if self.jobs.is_current(job) => {
                let elapsed = self.jobs.elapsed_s();
                self.jobs.progress = Some(JobProgress::new(done, total, tokens_per_s, elapsed));
            }
            EngineEvent::Error { job, message } if self.jobs.is_current(job) => {
                self.set_error(format!("engine: {message}"));
            }
            EngineEvent::Finished { job, cancelled } => {
                self.jobs.trace_of.remove(&job);
                if !self.jobs.is_current(job) {
                    return;
                }
                let done = self.jobs.progress.as_ref().map(|p| (p.done, p.total));
                self.jobs.running = None;
                self.jobs.progress = None;
                self.jobs.started = None;
                let keep_error = self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.is_error && !s.from_engine);
                let text = match (cancelled, done) {
                    (true, Some((d, t))) => format!("job cancelled ({d}/{t} rollouts stored)"),
                    (true, None) => "job cancelled".to_string(),
                    (false, Some((d, t))) if d < t => format!("job ended with {d}/{t} rollouts"),
                    (false, Some((_, 0))) => {
                        "nothing to sample: every position has enough rollouts".to_string()
                    }
                    (false, Some((d, _))) => format!("job finished: {d} rollouts"),
                    (false, None) => "job finished".to_string(),
                };
                // An error of this job (e.g. the model is missing) stays visible.
                if !keep_error {
                    self.set_info(text);
                }
            }
            _ => {}
        }
    }

    pub fn behavior_name(&self) -> String {
        self.entry()
            .and_then(|e| e.analysis.behaviors.get(self.behavior_index()))
            .map_or_else(|| "none".to_string(), |b| b.behavior.clone())
    }

    /// Cycle a person's label of the marked rollout for the selected behavior (yes → no →
    /// invalid → none). It is appended to the trace's human-label file and never replaces the
    /// classifier's label; rates use it where present.
    fn human_label(&mut self) {
        use anchorscope_core::store::human::{
            append_verdict, human_label, human_path_for, HumanVerdict,
        };
        let behavior_index = self.behavior_index();
        let cursor = self.rollout_cursor();
        let selected = self.selected;
        let Some(entry) = self.traces.get_mut(self.current) else {
            return;
        };
        let Some(shown) = entry.analysis.behaviors.get(behavior_index) else {
            return self.set_info("no behavior to label".into());
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
            .filter(|r| r.position == selected)
            .nth(cursor)
        else {
            return self.set_info(format!("no rollouts at position {selected} to label"));
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
        entry.reanalyze(&self.behavior_names, &self.options, self.pool_mode);
        let said = match next {
            Some(LabelValue::Yes) => "yes",
            Some(LabelValue::No) => "no",
            Some(LabelValue::Invalid) => "invalid",
            None => "cleared (the classifier's label counts again)",
        };
        self.set_info(format!(
            "your {behavior} label for seed {seed} at {selected}: {said}"
        ));
    }

    fn set_info(&mut self, text: String) {
        self.status = Some(StatusMessage {
            text,
            is_error: false,
            from_engine: false,
        });
    }

    fn set_error(&mut self, text: String) {
        self.status = Some(StatusMessage {
            text,
            is_error: true,
            from_engine: false,
        });
    }
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

/// `<trace-stem>.<ext>` beside the trace file (or beside a trace folder); when that would be
/// the trace file itself (a native `.json` exported as JSON), `<stem>.export.<ext>`.
pub fn export_path(trace_path: &Path, trace_id: &str, format: ExportFormat) -> PathBuf {
    let dir = trace_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    anchorscope_core::export::default_file(trace_path, trace_id, false, format, &dir)
}

#[cfg(test)]
mod tests;
