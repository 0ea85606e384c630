//! When to try a request again, and how long to wait first.
//!
//! Transient (retried with exponential backoff and jitter): 429 (waiting at least its
//! `Retry-After`), 408, any 5xx, timeouts, connection failures, and a 2xx reply whose JSON is
//! malformed (a proxy or server fault, not our request's). Fatal at once: every other 4xx — the
//! request itself is wrong, and the error quotes the server's message and the URL.

use std::time::Duration;

use super::http::{HttpReply, TransportError};
use super::protocol::server_message;

/// How many times and how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; doubled per retry.
    pub base: Duration,
    /// The largest backoff.
    pub cap: Duration,
    /// The longest `Retry-After` honoured (a server asking for an hour is not waited for).
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based). `jitter` in [0, 1) scales the
    /// exponential backoff into [½, 1) of itself so that many clients do not retry in lockstep;
    /// a `Retry-After` is a lower bound.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let backoff = exp.mul_f64(0.5 + 0.5 * jitter);
        match retry_after {
            Some(ra) => backoff.max(ra.min(self.retry_after_cap)),
            None => backoff,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub enum Attempt<T> {
    Done(T),
    /// Worth another try: `why` is kept for the final error.
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
    /// The request is wrong; retrying cannot help.
    Fatal {
        status: u16,
        message: String,
    },
}

/// A request that did not succeed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// A 4xx other than 408/429: the server's own message.
    #[error("{url}: the server refused the request (HTTP {status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// Transient failures until the retries ran out.
    #[error("{url}: {why} (gave up after {attempts} attempts)")]
    GaveUp {
        url: String,
        attempts: u32,
        why: String,
    },
    /// The job was cancelled while waiting.
    #[error("{url}: cancelled")]
    Cancelled { url: String },
    /// The reply was well-formed but not usable (e.g. a model that is not served).
    #[error("{url}: {message}")]
    Unusable { url: String, message: String },
}

/// Classify an HTTP outcome; `parse` turns a 2xx body into the value (its error = malformed).
pub fn classify<T>(
    outcome: Result<HttpReply, TransportError>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Attempt<T> {
    let reply = match outcome {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Transient {
                why: e.to_string(),
                retry_after: None,
            }
        }
    };
    match reply.status {
        200..=299 => match parse(&reply.body) {
            Ok(v) => Attempt::Done(v),
            Err(problem) => Attempt::Transient {
                why: format!("malformed JSON reply: {problem}"),
                retry_after: None,
            },
        },
        408 | 429 | 500..=599 => Attempt::Transient {
            why: format!("HTTP {}: {}", reply.status, server_message(&reply.body)),
            retry_after: reply.retry_after,
        },
        status => Attempt::Fatal {
            status,
            message: server_message(&reply.body),
        },
    }
}

/// Try `attempt` until it is done, fatal, out of retries, or `stopped()` says to give up.
/// `sleep` waits (the tests pass a recorder); `jitter()` gives a number in [0, 1).
pub fn with_retries<T>(
    policy: &RetryPolicy,
    url: &str,
    stopped: &dyn Fn() -> bool,
    sleep: &mut dyn FnMut(Duration),
    jitter: &mut dyn FnMut() -> f64,
    mut attempt: impl FnMut() -> Attempt<T>,
) -> Result<T, RemoteError> {
    let mut retry = 0u32;
    loop {
        if stopped() {
            return Err(RemoteError::Cancelled { url: url.into() });
        }
        match attempt() {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fatal { status, message } => {
                return Err(RemoteError::Refused {
                    url: url.into(),
                    status,
                    message,
                })
            }
            Attempt::Transient { why, retry_after } => {
                if retry >= policy.max_retries {
                    return Err(RemoteError::GaveUp {
                        url: url.into(),
                        attempts: retry + 1,
                        why,
                    });
                }
                sleep(policy.delay(retry, retry_after, jitter()));
                retry += 1;
            }
        }
    }
}

/// Sleep `d` in short slices, returning early once `stopped()` (a cancelled job must not wait
/// out a long backoff).
pub fn sleep_unless(d: Duration, stopped: &dyn Fn() -> bool) {
    let slice = Duration::from_millis(50);
    let end = std::time::Instant::now() + d;
    while !stopped() {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep(slice.min(end - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(
        status: u16,
        body: &str,
        retry_after: Option<u64>,
    ) -> Result<HttpReply, TransportError> {
        Ok(HttpReply {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: body.into(),
        })
    }

    fn parse_ok(body: &str) -> Result<String, String> {
        serde_json::from_str::<serde_json::Value>(body)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn backoff_doubles_within_bounds_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..40 {
            let exp = p
                .base
                .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
                .min(p.cap);
            let lo = p.delay(retry, None, 0.0);
            let hi = p.delay(retry, None, 0.999);
            assert_eq!(lo, exp / 2, "retry {retry}");
            assert!(hi < exp || exp == Duration::ZERO, "retry {retry}");
            assert!(hi <= p.cap);
        }
        assert_eq!(p.delay(0, None, 0.0), Duration::from_millis(250));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay(30, None, 0.0), Duration::from_secs(15));
        // Out-of-range jitter is clamped, never a panic or a negative wait.
        assert_eq!(p.delay(1, None, f64::NAN), Duration::from_millis(500));
    }

    #[test]
    fn retry_after_is_a_lower_bound_up_to_its_cap() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(7)), 0.5),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600)), 0.5),
            p.retry_after_cap
        );
        // A short Retry-After does not shorten the backoff.
        assert_eq!(
            p.delay(5, Some(Duration::from_millis(1)), 0.0),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(reply(429, "{}", Some(4)), parse_ok),
            Attempt::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(4)
        ));
        for s in [408, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(reply(s, "oops", None), parse_ok),
                    Attempt::Transient { .. }
                ),
                "{s}"
            );
        }
        let fatal = classify(
            reply(400, "{\"error\":{\"message\":\"n must be 1\"}}", None),
            parse_ok,
        );
        assert_eq!(
            fatal,
            Attempt::Fatal {
                status: 400,
                message: "n must be 1".into()
            }
        );
        assert!(matches!(
            classify(reply(200, "{\"a\":", None), parse_ok),
            Attempt::Transient { why, .. } if why.starts_with("malformed JSON reply")
        ));
        assert!(matches!(
            classify(Err(TransportError::Timeout("t".into())), parse_ok),
            Attempt::Transient { .. }
        ));
        assert_eq!(
            classify(reply(200, "{\"a\":1}", None), parse_ok),
            Attempt::Done("{\"a\":1}".into())
        );
    }

    #[test]
    fn retries_transient_then_gives_up_naming_the_url() {
        let p = RetryPolicy {
            max_retries: 3,
            ..Default::default()
        };
        let mut waits = Vec::new();
        let mut calls = 0;
        let r: Result<(), _> = with_retries(
            &p,
            "http://h/v1/completions",
            &|| false,
            &mut |d| waits.push(d),
            &mut || 0.0,
            || {
                calls += 1;
                Attempt::Transient {
                    why: "HTTP 503: busy".into(),
                    retry_after: None,
                }
            },
        );
        let err = r.unwrap_err();
        assert_eq!(calls, 4);
        assert_eq!(waits.len(), 3);
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("http://h/v1/completions")
                && msg.contains("503")
                && msg.contains("4 attempts"),
            "{msg}"
        );
    }

    #[test]
    fn succeeds_after_transient_failures_and_stops_at_fatal() {
        let p = RetryPolicy::default();
        let mut n = 0;
        let ok = with_retries(&p, "u", &|| false, &mut |_| {}, &mut || 0.5, || {
            n += 1;
            if n < 3 {
                Attempt::Transient {
                    why: "x".into(),
                    retry_after: None,
                }
            } else {
                Attempt::Done(n)
            }
        });
        assert_eq!(ok, Ok(3));
        let mut calls = 0;
        let err = with_retries::<()>(
            &p,
            "http://h/x",
            &|| false,
            &mut |_| {},
            &mut || 0.5,
            || {
                calls += 1;
                Attempt::Fatal {
                    status: 404,
                    message: "The model `m` does not exist.".into(),
                }
            },
        )
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(
            err.to_string().contains("does not exist") && err.to_string().contains("http://h/x")
        );
    }

    #[test]
    fn a_stopped_job_does_not_retry() {
        let p = RetryPolicy::default();
        let err = with_retries::<()>(&p, "u", &|| true, &mut |_| {}, &mut || 0.0, || {
            panic!("must not be called")
        })
        .unwrap_err();
        assert_eq!(err, RemoteError::Cancelled { url: "u".into() });
    }
}
