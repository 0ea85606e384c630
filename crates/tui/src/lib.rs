//! anchorscope-tui, the terminal explorer: a trace list and a trace view (colored sentences,
//! rate chart, sentence detail).
//!
//! Owns: the screen, the keys and the theme. May import: anchorscope-core, anchorscope-engine
//! (to start the worker and read its events), ratatui/crossterm. It never reads the config
//! file (the binary hands it [`ExplorerSettings`]) and computes no statistics (those come from
//! `anchorscope_core::analysis`).
//!
//! Architecture (ratatui's component pattern): state in plain structs ([`app::App`]), input
//! mapped to [`action::Action`]s applied in one place ([`app::App::apply`]), rendering as pure
//! functions of the state ([`view::draw`]). The loop ([`run_app`]) is generic over the ratatui
//! `Backend`, so tests drive the real loop on `TestBackend`.

pub mod action;
pub mod adaptive;
pub mod app;
pub mod clipboard;
pub mod engine_hook;
pub mod event;
pub mod interventions;
pub mod jobs;
pub mod keymap;
pub mod terminal;
pub mod theme;
pub mod view;

use std::sync::mpsc::{self, Receiver};

use ratatui::backend::Backend;
use ratatui::Terminal;

pub use app::App;
pub use event::AppEvent;

use anchorscope_core::analysis::AnalysisOptions;
use anchorscope_core::behavior::BehaviorsConfig;
use anchorscope_core::loaded::LoadOutcome;
use anchorscope_core::store::runs::SamplingConfig;
use anchorscope_engine::worker::{self, WorkerConfig};

/// What the explorer takes from the user's config file. The binary reads the file and builds
/// this; the explorer never reads configuration itself.
#[derive(Clone, Debug, Default)]
pub struct ExplorerSettings {
    pub keys: keymap::KeyOverrides,
    pub theme: theme::ThemeOverrides,
    pub behaviors: BehaviorsConfig,
    pub analysis: AnalysisOptions,
    pub sampling: SamplingConfig,
    /// Where `e` writes exports (None: [`app::DEFAULT_EXPORT_DIR`] in the working directory).
    pub export_dir: Option<std::path::PathBuf>,
}

/// Run the explorer on the loaded traces until the user quits. The terminal is restored on
/// every exit path (errors and panics included).
pub fn run(outcome: LoadOutcome, config: ExplorerSettings) -> anyhow::Result<()> {
    run_with_options(outcome, config, RunOptions::default())
}

/// How the explorer starts.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Start on the trace list even when only one trace loaded (a directory was opened).
    pub force_list: bool,
    /// Open the first trace at once even when others are listed (a single trace was asked for
    /// and its interventions were loaded with it).
    pub open_first: bool,
    /// Start the sampling engine with this model (None: no engine, `r` says so).
    pub engine: Option<WorkerConfig>,
}

/// [`run`] with options (e.g. the CLI opened a directory holding a single trace).
pub fn run_with_options(
    outcome: LoadOutcome,
    config: ExplorerSettings,
    options: RunOptions,
) -> anyhow::Result<()> {
    if outcome.traces.is_empty() && outcome.errors.is_empty() {
        anyhow::bail!("no trace to show");
    }
    // Config problems (bad key names, colors, regexes) surface before the screen changes.
    let mut app = App::new(outcome, &config)?;
    if options.force_list {
        app.show_list();
    } else if options.open_first {
        app.open(0);
    }
    let (tx, rx) = mpsc::channel();
    // The worker loads the model on its own thread (installing it first if needed); its
    // messages arrive on the same channel as the keys, so the loop never blocks on it.
    let worker = options.engine.map(|config| {
        let engine_tx = tx.clone();
        let handle = worker::spawn(config, move |e| {
            let _ = engine_tx.send(AppEvent::Engine(e));
        });
        app.set_engine(Box::new(handle.sender.clone()));
        handle
    });
    let mut term = terminal::setup()?;
    let signals = terminal::SignalForwarder::spawn(tx.clone());
    let input = terminal::InputThread::spawn(tx);
    let mut editor = |term: &mut terminal::CrosstermTerminal, text: &str| {
        terminal::edit_externally(term, &input, text)
    };
    let result = run_app_with_editor(&mut term, &mut app, &rx, &mut editor);
    drop(input);
    drop(signals);
    terminal::restore();
    // Ask the worker to stop after its in-flight step; not joined, because it may be busy
    // installing a model, and quitting must not wait for that (stored rollouts are synced).
    if let Some(w) = worker {
        let _ = w.sender.send(anchorscope_engine::EngineCommand::Shutdown);
    }
    result
}

/// The main loop: draw, then block for an event, drain everything queued, apply it all, draw
/// once. Returns when the app quits or every sender is gone.
pub fn run_app<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &Receiver<AppEvent>,
) -> anyhow::Result<()> {
    let mut no_editor =
        |_: &mut Terminal<B>, _: &str| Err("no external editor in this terminal".to_string());
    run_app_with_editor(terminal, app, events, &mut no_editor)
}

/// Hands a text to an external editor and returns the edited text (the real terminal's
/// [`terminal::edit_externally`]).
pub type ExternalEditor<'a, B> = dyn FnMut(&mut Terminal<B>, &str) -> Result<String, String> + 'a;

/// [`run_app`] with `editor` for the rewrite prompt's `Ctrl-E`.
pub fn run_app_with_editor<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &Receiver<AppEvent>,
    editor: &mut ExternalEditor<'_, B>,
) -> anyhow::Result<()> {
    draw(terminal, app)?;
    while !app.should_quit {
        let Ok(first) = events.recv() else { break };
        app.handle(first);
        while !app.should_quit {
            let Ok(more) = events.try_recv() else { break };
            app.handle(more);
        }
        if app.should_quit {
            break;
        }
        if let Some(text) = app.take_editor_request() {
            let edited = editor(terminal, &text);
            app.editor_finished(edited);
        }
        draw(terminal, app)?;
    }
    Ok(())
}

/// Render one frame and keep where things landed for the mouse and paging.
pub fn draw<B: Backend>(terminal: &mut Terminal<B>, app: &mut App) -> anyhow::Result<()> {
    // Rollouts that arrived since the last frame are analysed once, here.
    app.refresh();
    let mut hits = app::Hits::default();
    terminal
        .draw(|frame| hits = view::draw(frame, app))
        .map_err(|e| anyhow::anyhow!("drawing the screen failed: {e}"))?;
    app.after_draw(hits);
    Ok(())
}
