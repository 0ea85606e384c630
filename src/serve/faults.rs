//! Fault injection, FOR TESTS ONLY: the `--engine openai` client's fault tests start a real
//! `anchorscope serve` with these (hidden) flags to see slow answers, malformed bodies and
//! error statuses. The text the server returns stays really generated: a malformed body is a
//! real completion cut short, never canned text.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `--fault-status-every K:CODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusEvery {
    pub every: u64,
    pub code: u16,
}

impl FromStr for StatusEvery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, code) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected K:CODE, e.g. 3:503"))?;
        let every: u64 = k
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: K `{k}` is not a whole number"))?;
        let code: u16 = code
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: CODE `{code}` is not an HTTP status"))?;
        if every == 0 {
            return Err(format!("`{s}`: K must be at least 1"));
        }
        if !(400..=599).contains(&code) {
            return Err(format!("`{s}`: CODE must be an error status (400-599)"));
        }
        Ok(StatusEvery { every, code })
    }
}

/// The configured faults (all off by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Sleep this long before answering each request: generation requests sleep on the engine
    /// thread (a slow model: they queue behind each other), the others on their connection.
    pub delay_ms: u64,
    /// Every K-th successful completion (either endpoint) has its body truncated.
    pub malformed_every: Option<u64>,
    /// Every K-th generation request (completions or chat) answers CODE without generating.
    pub status_every: Option<StatusEvery>,
}

/// The faults with their counters, shared by the connection threads.
#[derive(Debug, Default)]
pub struct Faults {
    pub config: FaultConfig,
    generation_requests: AtomicU64,
    completions: AtomicU64,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            config,
            ..Default::default()
        }
    }

    /// Before answering any request.
    pub fn delay(&self) {
        if self.config.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.delay_ms));
        }
    }

    /// Counts a generation request; the status to answer instead when it is the K-th.
    pub fn status_for_request(&self) -> Option<u16> {
        let f = self.config.status_every?;
        let n = self.generation_requests.fetch_add(1, Ordering::SeqCst) + 1;
        n.is_multiple_of(f.every).then_some(f.code)
    }

    /// Counts a successful completion body; the body to send (cut in half when it is the K-th).
    pub fn body_for_completion(&self, body: String) -> String {
        let Some(every) = self.config.malformed_every else {
            return body;
        };
        let n = self.completions.fetch_add(1, Ordering::SeqCst) + 1;
        if !n.is_multiple_of(every.max(1)) {
            return body;
        }
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body[..cut].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_every_parses_and_refuses_nonsense() {
        assert_eq!(
            "3:503".parse::<StatusEvery>(),
            Ok(StatusEvery {
                every: 3,
                code: 503
            })
        );
        for bad in ["3", "0:503", "x:503", "3:200", "3:abc"] {
            assert!(bad.parse::<StatusEvery>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_kth_request_and_body() {
        let f = Faults::new(FaultConfig {
            delay_ms: 0,
            malformed_every: Some(2),
            status_every: Some(StatusEvery {
                every: 3,
                code: 429,
            }),
        });
        let statuses: Vec<_> = (0..6).map(|_| f.status_for_request()).collect();
        assert_eq!(
            statuses,
            [None, None, Some(429), None, None, Some(429)].to_vec()
        );
        let body = r#"{"a": "bcdefgh"}"#.to_string();
        assert_eq!(f.body_for_completion(body.clone()), body);
        let cut = f.body_for_completion(body.clone());
        assert!(cut.len() < body.len());
        assert!(serde_json::from_str::<serde_json::Value>(&cut).is_err());
        let off = Faults::default();
        assert_eq!(off.status_for_request(), None);
        assert_eq!(off.body_for_completion(body.clone()), body);
    }
}
