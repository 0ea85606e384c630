//! Copying text: one arboard clipboard kept alive for the whole run (some platforms drop the
//! selection when the owner goes away), created lazily; when there is no display (SSH without
//! X/Wayland) fall back to OSC 52, which asks the terminal itself to set its clipboard.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use crossterm::clipboard::CopyToClipboard;

/// Where yanked text goes. Injectable so tests never touch the real clipboard.
pub trait ClipboardSink {
    /// Copy `text`; Ok carries the message for the status line, Err says why nothing was copied.
    fn copy(&mut self, text: &str) -> Result<String, String>;
}

/// The system clipboard with the OSC 52 fallback.
#[derive(Default)]
pub struct SystemClipboard {
    clipboard: Option<arboard::Clipboard>,
}

impl ClipboardSink for SystemClipboard {
    fn copy(&mut self, text: &str) -> Result<String, String> {
        let arboard_error = match self.arboard() {
            Ok(cb) => match cb.set_text(text.to_string()) {
                Ok(()) => return Ok("copied to clipboard".to_string()),
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        if std::io::stdout().is_terminal()
            && crossterm::execute!(std::io::stdout(), CopyToClipboard::to_clipboard_from(text))
                .is_ok()
        {
            return Ok("copied via OSC 52 (terminal clipboard)".to_string());
        }
        Err(format!("no clipboard available: {arboard_error}"))
    }
}

impl SystemClipboard {
    fn arboard(&mut self) -> Result<&mut arboard::Clipboard, String> {
        if self.clipboard.is_none() {
            self.clipboard = Some(arboard::Clipboard::new().map_err(|e| e.to_string())?);
        }
        self.clipboard
            .as_mut()
            .ok_or_else(|| "clipboard not initialised".to_string())
    }
}

/// A clipboard for tests: records what was copied; `fail` makes every copy fail.
#[derive(Clone, Default)]
pub struct MemoryClipboard {
    pub copied: Arc<Mutex<Vec<String>>>,
    pub fail: bool,
}

impl ClipboardSink for MemoryClipboard {
    fn copy(&mut self, text: &str) -> Result<String, String> {
        if self.fail {
            return Err("no clipboard available: test clipboard refuses".to_string());
        }
        if let Ok(mut v) = self.copied.lock() {
            v.push(text.to_string());
        }
        Ok("copied to clipboard".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc52_sets_the_clipboard_with_base64() {
        use crossterm::Command as _;
        let mut sequence = String::new();
        CopyToClipboard::to_clipboard_from("hi")
            .write_ansi(&mut sequence)
            .unwrap();
        assert_eq!(sequence, "\x1b]52;c;aGk=\x1b\\");
    }

    #[test]
    fn memory_clipboard_records() {
        let mut m = MemoryClipboard::default();
        m.copy("a").unwrap();
        assert_eq!(m.copied.lock().unwrap().as_slice(), ["a"]);
    }
}
