//! One HTTP exchange with JSON bodies and a timeout. Status codes are returned, not raised: the
//! retry policy decides what a 429 or a 503 means. The API key goes only into the
//! `Authorization` header; nothing here formats it.

use std::io::ErrorKind;
use std::time::Duration;

use super::settings::ApiKey;

/// Largest reply body read (n completions of a long reasoning fit easily).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// A reply with any status.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// No reply: the request did not complete. Always worth a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No reply within the timeout.
    Timeout(String),
    /// The connection could not be made or broke (server down, reset, refused).
    Connection(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Timeout(m) => write!(f, "timed out ({m})"),
            TransportError::Connection(m) => write!(f, "connection failed ({m})"),
        }
    }
}

/// A blocking HTTP client for one server (connections are pooled and reused).
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    key: Option<ApiKey>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("key", &self.key).finish()
    }
}

impl Http {
    /// `timeout`: the whole exchange (connect, send, generate, read the reply).
    pub fn new(timeout: Duration, key: Option<ApiKey>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            key,
        }
    }

    /// POST `body` (JSON text) to `url`.
    pub fn post_json(&self, url: &str, body: &str) -> Result<HttpReply, TransportError> {
        let mut request = self
            .agent
            .post(url)
            .header("Accept", "application/json")
            .content_type("application/json");
        if let Some(key) = &self.key {
            request = request.header("Authorization", key.bearer());
        }
        Self::reply(request.send(body))
    }

    /// GET `url`.
    pub fn get(&self, url: &str) -> Result<HttpReply, TransportError> {
        let mut request = self.agent.get(url).header("Accept", "application/json");
        if let Some(key) = &self.key {
            request = request.header("Authorization", key.bearer());
        }
        Self::reply(request.call())
    }

    fn reply(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<HttpReply, TransportError> {
        let mut response = result.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(transport_error)?;
        Ok(HttpReply {
            status,
            retry_after,
            body,
        })
    }
}

/// `Retry-After: <seconds>` (the HTTP-date form is ignored: the backoff applies then).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn transport_error(e: ureq::Error) -> TransportError {
    match &e {
        ureq::Error::Timeout(_) => TransportError::Timeout(e.to_string()),
        ureq::Error::Io(io) if io.kind() == ErrorKind::TimedOut => {
            TransportError::Timeout(e.to_string())
        }
        _ => TransportError::Connection(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn refused_connection_is_a_transport_error() {
        // Bind then drop: the port is (almost surely) closed now.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = Http::new(Duration::from_secs(2), None);
        let err = http
            .get(&format!("http://127.0.0.1:{port}/v1/models"))
            .unwrap_err();
        assert!(matches!(err, TransportError::Connection(_)), "{err:?}");
    }

    #[test]
    fn sends_the_key_as_bearer_and_reads_status_and_retry_after() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("{}") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let body = "{\"error\":{\"message\":\"slow down\"}}";
            write!(
                s,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        let http = Http::new(Duration::from_secs(5), Some(ApiKey::new("k-123")));
        let reply = http
            .post_json(&format!("http://127.0.0.1:{port}/v1/completions"), "{}")
            .unwrap();
        let request = server.join().unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.retry_after, Some(Duration::from_secs(2)));
        assert!(reply.body.contains("slow down"));
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer k-123"),
            "{request}"
        );
        assert!(!format!("{http:?}").contains("k-123"));
    }
}
