//! A progress line for headless runs: redrawn in place (`\r`) when stderr is a terminal, plain
//! lines at every tenth otherwise (logs stay readable).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct ProgressLine {
    /// What the line is about: `analyze`, `intervene t1~del3`.
    what: String,
    tty: bool,
    started: Instant,
    last_tenth: usize,
    drawn: bool,
}

impl ProgressLine {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_tenth: 0,
            drawn: false,
        }
    }

    /// Show `done/total` with tokens/s and an ETA at the pace so far.
    pub fn update(&mut self, done: usize, total: usize, tokens_per_s: f64) {
        let line = format_line(
            &self.what,
            done,
            total,
            tokens_per_s,
            self.started.elapsed().as_secs_f64(),
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            let tenth = (done * 10).checked_div(total).unwrap_or(10);
            if tenth > self.last_tenth || (done == total && !self.drawn) {
                self.last_tenth = tenth;
                self.drawn = done == total;
                eprintln!("{line}");
            }
        }
    }

    /// A message on its own line (the progress line is redrawn after it).
    pub fn say(&mut self, message: &str) {
        if self.tty && self.drawn {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{message}");
    }

    /// End the in-place line.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `analyze: 12/300 rollouts (4%) · 153 tok/s · ETA 2m10s`
pub fn format_line(
    what: &str,
    done: usize,
    total: usize,
    tokens_per_s: f64,
    elapsed_s: f64,
) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let mut line = format!("{what}: {done}/{total} rollouts ({pct}%) · {tokens_per_s:.0} tok/s");
    if done > 0 && done < total && elapsed_s > 0.0 {
        let eta = elapsed_s / done as f64 * (total - done) as f64;
        line.push_str(&format!(
            " · ETA {}",
            anchorscope::tui::engine_hook::format_eta(eta)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_counts_rate_and_eta() {
        assert_eq!(
            format_line("analyze", 10, 40, 151.2, 20.0),
            "analyze: 10/40 rollouts (25%) · 151 tok/s · ETA 1m00s"
        );
        assert_eq!(
            format_line("analyze", 0, 0, 0.0, 0.0),
            "analyze: 0/0 rollouts (100%) · 0 tok/s"
        );
    }
}
