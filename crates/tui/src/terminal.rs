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

/// Forwards SIGTERM and SIGHUP to the main loop as [`AppEvent::Terminate`], so that a `kill` or a
/// closed terminal ends the explorer through its normal exit, which restores the terminal.
/// Dropping it stops the forwarding.
pub struct SignalForwarder {
    #[cfg(unix)]
    handle: Option<signal_hook::iterator::Handle>,
}

impl SignalForwarder {
    pub fn spawn(tx: Sender<AppEvent>) -> Self {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGTERM};
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]) else {
                return Self { handle: None };
            };
            let handle = signals.handle();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    let _ = tx.send(AppEvent::Terminate);
                }
            });
            Self {
                handle: Some(handle),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tx;
            Self {}
        }
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(h) = self.handle.take() {
            h.close();
        }
    }
}

/// Reads terminal input on a thread and forwards it; stops when `stop` is set or the
/// receiver is gone.
pub struct InputThread {
    stop: Arc<AtomicBool>,
    /// Set while another program (`$EDITOR`) owns the terminal; `idle` says the thread has
    /// stopped reading.
    paused: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InputThread {
    pub fn spawn(tx: Sender<AppEvent>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (pause_flag, idle_flag) = (paused.clone(), idle.clone());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if pause_flag.load(Ordering::Acquire) {
                    idle_flag.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                idle_flag.store(false, Ordering::Release);
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
            paused,
            idle,
            handle: Some(handle),
        }
    }

    /// Stop reading input (the thread finishes its current poll, at most 100 ms) so another
    /// program gets every key.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while !self.idle.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }
}

/// Hand `text` to `$VISUAL` / `$EDITOR` (else `vi`) in a temporary file, with the explorer's
/// screen set aside and its input thread paused, and return what was saved. The screen is
/// set up again whatever happens.
pub fn edit_externally(
    term: &mut CrosstermTerminal,
    input: &InputThread,
    text: &str,
) -> Result<String, String> {
    let path = std::env::temp_dir().join(format!("anchorscope-rewrite-{}.txt", std::process::id()));
    std::fs::write(&path, format!("{text}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    let editor = std::env::var("VISUAL")
        .ok()
        .or_else(|| std::env::var("EDITOR").ok())
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    input.pause();
    restore();
    // Through the shell, so an EDITOR with arguments (`code --wait`) works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("anchorscope-editor")
        .arg(&path)
        .status();
    let back = enable_raw_mode()
        .and_then(|()| execute!(stdout(), EnterAlternateScreen, EnableMouseCapture))
        .and_then(|()| term.clear());
    input.resume();
    let result = match (status, back) {
        (_, Err(e)) => Err(format!("the screen could not be set up again: {e}")),
        (Err(e), _) => Err(format!("{editor} did not start: {e}")),
        (Ok(s), _) if !s.success() => Err(format!("{editor} ended with {s}; text unchanged")),
        (Ok(_), _) => {
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
    };
    let _ = std::fs::remove_file(&path);
    result
}

impl Drop for InputThread {
    /// Ask the thread to stop, without waiting for it. Why not join: when the terminal is
    /// gone (a closed window, `tmux kill-server`), crossterm's poll on the hung-up tty never
    /// returns, so a join would keep the process alive, spinning, after SIGHUP had ended the
    /// explorer. The thread only reads input; the process exiting ends it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.handle.take());
    }
}
