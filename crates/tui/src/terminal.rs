//! Everything that touches the real terminal: raw mode, the alternate screen, mouse capture,
//! the input thread, and restoring all of it on every exit path, panics included.

use std::io::stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

use super::event::AppEvent;

pub type CrosstermTerminal = Terminal<CrosstermBackend<std::io::Stdout>>;

static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Enter raw mode + alternate screen + mouse capture, after installing a panic hook that
/// restores the terminal. The hook restores only when the panic is on the thread that set the
/// terminal up: a panic in a worker thread must not tear the screen down under a live UI.
pub fn setup() -> anyhow::Result<CrosstermTerminal> {
    let _ = MAIN_THREAD.set(std::thread::current().id());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if MAIN_THREAD.get() == Some(&std::thread::current().id()) {
            restore();
        }
        previous(info);
    }));
    let setup = || -> std::io::Result<CrosstermTerminal> {
        enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Terminal::new(CrosstermBackend::new(stdout()))
    };
    setup().map_err(|e| {
        restore();
        anyhow::anyhow!("cannot set up the terminal: {e}")
    })
}

/// Leave the alternate screen, stop mouse capture, leave raw mode. Safe to call twice.
pub fn restore() {
    let _ = execute!(
        stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Reads terminal input on a thread and forwards it; stops when `stop` is set or the
/// receiver is gone.
pub struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InputThread {
    pub fn spawn(tx: Sender<AppEvent>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => match event::read() {
                        Ok(e) => {
                            if tx.send(AppEvent::Terminal(e)).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
