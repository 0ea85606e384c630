//! What the main loop receives: terminal input and, once the engine exists, its events.

use ratatui::crossterm::event::{Event, KeyEvent, KeyEventKind, MouseEvent};

use anchorscope_engine::EngineEvent;

#[derive(Clone, Debug, PartialEq)]
pub enum AppEvent {
    Terminal(Event),
    Engine(EngineEvent),
    /// The process was asked to end (SIGTERM, SIGHUP): quit now, restoring the terminal.
    Terminate,
}

impl From<Event> for AppEvent {
    fn from(e: Event) -> Self {
        AppEvent::Terminal(e)
    }
}

impl From<KeyEvent> for AppEvent {
    fn from(k: KeyEvent) -> Self {
        AppEvent::Terminal(Event::Key(KeyEvent {
            kind: KeyEventKind::Press,
            ..k
        }))
    }
}

impl From<MouseEvent> for AppEvent {
    fn from(m: MouseEvent) -> Self {
        AppEvent::Terminal(Event::Mouse(m))
    }
}
