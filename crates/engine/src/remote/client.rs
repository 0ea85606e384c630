//! One OpenAI-compatible server: its base URL, the served model, the key, the retry policy.

use std::time::Duration;

use super::http::Http;
use super::protocol::{self, Completion};
use super::retry::{self, with_retries, RemoteError, RetryPolicy};
use super::settings::ApiKey;

/// A server and the model asked of it. Cheap to share between request threads (`Arc`).
#[derive(Debug)]
pub struct Client {
    http: Http,
    /// `scheme://host[:port][/prefix]` without a trailing `/` or `/v1`.
    base: String,
    pub model: String,
    pub policy: RetryPolicy,
}

impl Client {
    /// The server's base address, for run records.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `url`: `http(s)://host:port`, optionally ending in `/v1`.
    pub fn new(
        url: &str,
        model: &str,
        key: Option<ApiKey>,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self, String> {
        let base = normalize_base(url)?;
        Ok(Self {
            http: Http::new(timeout, key),
            base,
            model: model.to_string(),
            policy: RetryPolicy {
                max_retries,
                ..RetryPolicy::default()
            },
        })
    }

    /// The full URL of an API path (`/v1/completions`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `scheme://host:port` for manifests and status lines (no credentials, no path).
    pub fn origin(&self) -> String {
        origin_of(&self.base)
    }

    /// The models the server lists (`GET /v1/models`).
    pub fn models(&self, stopped: &dyn Fn() -> bool) -> Result<Vec<String>, RemoteError> {
        let url = self.endpoint("/v1/models");
        self.retrying(&url, stopped, || {
            retry::classify(self.http.get(&url), protocol::parse_models)
        })
    }

    /// One `GET /v1/models` without retries: is the server answering at all?
    pub fn probe(&self) -> Result<(), RemoteError> {
        let url = self.endpoint("/v1/models");
        let once = RetryPolicy {
            max_retries: 0,
            ..self.policy
        };
        with_retries(&once, &url, &|| false, &mut |_| {}, &mut || 0.0, || {
            retry::classify(self.http.get(&url), protocol::parse_models)
        })
        .map(|_| ())
    }

    /// Fails with a clear error when the server is unreachable or does not serve the model
    /// (listing the models it does serve).
    pub fn check_model(&self) -> Result<(), RemoteError> {
        let models = self.models(&|| false)?;
        if models.contains(&self.model) {
            Ok(())
        } else {
            Err(RemoteError::Unusable {
                url: self.endpoint("/v1/models"),
                message: format!(
                    "the server does not serve model {:?}; it serves: {}",
                    self.model,
                    if models.is_empty() {
                        "(none)".to_string()
                    } else {
                        models.join(", ")
                    }
                ),
            })
        }
    }

    /// `POST /v1/completions` with `body` asking for `n` continuations.
    pub fn complete(
        &self,
        body: &str,
        n: usize,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Completion, RemoteError> {
        let url = self.endpoint("/v1/completions");
        self.retrying(&url, stopped, || {
            retry::classify(self.http.post_json(&url, body), |b| {
                protocol::parse_completion(b, n)
            })
        })
    }

    /// `POST /v1/chat/completions` with `body` asking for `n` replies.
    pub fn chat(
        &self,
        body: &str,
        n: usize,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Vec<String>, RemoteError> {
        let url = self.endpoint("/v1/chat/completions");
        self.retrying(&url, stopped, || {
            retry::classify(self.http.post_json(&url, body), |b| {
                protocol::parse_chat(b, n)
            })
        })
    }

    fn retrying<T>(
        &self,
        url: &str,
        stopped: &dyn Fn() -> bool,
        attempt: impl FnMut() -> retry::Attempt<T>,
    ) -> Result<T, RemoteError> {
        let mut rng = crate::sampler::Rng::new(jitter_seed());
        with_retries(
            &self.policy,
            url,
            stopped,
            &mut |d| retry::sleep_unless(d, stopped),
            &mut || rng.next_f64(),
            attempt,
        )
    }
}

/// A seed for backoff jitter that differs between threads and calls.
fn jitter_seed() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .hash(&mut h);
    h.finish()
}

/// Check and trim a server URL: http(s) scheme, a host, no query; a trailing `/` or `/v1` is
/// dropped (the endpoints add `/v1/...`).
pub fn normalize_base(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("--url {url}: expected http://HOST:PORT or https://HOST"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("--url {url}: no host"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(format!(
            "--url {url}: give the server's base URL (no query or fragment)"
        ));
    }
    let mut base = url.trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/v1") {
        base = stripped.to_string();
    }
    Ok(base)
}

/// `scheme://host[:port]` of a base URL, without `user:password@`.
pub fn origin_of(base: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(normalize_base("http://h:8000").unwrap(), "http://h:8000");
        assert_eq!(
            normalize_base("http://h:8000/v1/").unwrap(),
            "http://h:8000"
        );
        assert_eq!(
            normalize_base("https://gw.example/llm/v1").unwrap(),
            "https://gw.example/llm"
        );
        assert!(normalize_base("h:8000").unwrap_err().contains("http://"));
        assert!(normalize_base("http://").is_err());
        assert!(normalize_base("http://h/?x=1").is_err());
    }

    #[test]
    fn origin_drops_credentials_and_path() {
        assert_eq!(
            origin_of("https://u:p@gw.example:443/llm"),
            "https://gw.example:443"
        );
        assert_eq!(origin_of("http://10.0.0.5:8000"), "http://10.0.0.5:8000");
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            "m",
            Some(ApiKey::new("sk-never-shown")),
            Duration::from_secs(2),
            1,
        )
        .unwrap();
        c.policy.base = Duration::from_millis(1);
        let err = c.check_model().unwrap_err().to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/v1/models"))
                && err.contains("connection failed")
                && err.contains("2 attempts"),
            "{err}"
        );
        assert!(!err.contains("sk-never-shown"));
        assert!(!format!("{c:?}").contains("sk-never-shown"));
    }
}
