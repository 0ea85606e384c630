//! `anchorscope serve`: an OpenAI-compatible completions server backed by our own candle
//! engine, so several explorers (or the `--engine openai` client's tests) can share one model.
//!
//! Threads: one accepts connections, one per connection reads requests (keep-alive) and
//! writes answers, and one engine thread ([`engine`]) runs the model. Generation requests wait
//! in a bounded queue in arrival order; a full queue answers 429 with Retry-After.
//!
//! Endpoints: `GET /health`, `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions` (see [`wire`] for the fields).

pub mod engine;
pub mod faults;
pub mod http;
pub mod wire;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::{Engine, Generation, Task, Work};
use faults::{FaultConfig, Faults};
use http::{read_body, read_head, write_response, Head, Request, Response};
use wire::{
    parse_body, ApiError, AssistantMessage, ChatChoice, ChatRequest, ChatResponse,
    CompletionChoice, CompletionRequest, CompletionResponse, Usage,
};

/// The environment variable that, when set, makes every endpoint but `/health` require
/// `Authorization: Bearer <its value>`.
pub const API_KEY_ENV: &str = "ANCHORSCOPE_SERVE_API_KEY";
/// Largest request body accepted (413 beyond).
pub const DEFAULT_MAX_BODY: usize = 4 << 20;
/// A connection is closed after this long without the first byte of a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Once most connection slots are taken, a connection idle this long is closed instead, so
/// idle sockets cannot hold every slot.
const IDLE_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(1);
/// How often a waiting connection looks at the pressure.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// A request's head and body must arrive within this long of its first byte (a client that
/// trickles bytes cannot hold a slot forever).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// After refusing a request we could not read, discard at most this much of what the client
/// still sends, for at most this long, before closing.
const DRAIN_LIMIT: u64 = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Open connections beyond this are answered 503 at once (each holds a thread).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port ([`Server::local_addr`] tells which).
    pub port: u16,
    /// The `model` name clients see and may send (any other is a 404).
    pub model_name: String,
    /// Generation requests waiting beyond the running one; more get 429.
    pub max_queue: usize,
    pub api_key: Option<String>,
    pub max_body: usize,
    /// Open connections beyond this are answered 503 at once.
    pub max_connections: usize,
    pub faults: FaultConfig,
}

/// What the connection threads share.
struct Shared {
    name: String,
    max_context: usize,
    created: u64,
    queue: SyncSender<Task>,
    api_key: Option<String>,
    max_body: usize,
    faults: Faults,
    next_id: AtomicU64,
    connections: AtomicUsize,
    max_connections: usize,
    /// The bound address, for the `Host` check.
    local: SocketAddr,
}

/// One connection slot, released when dropped: whatever ends the connection's thread (an
/// answer, an error, a panic), or a thread that could not be spawned, gives it back.
struct Slot(Arc<Shared>);

impl Slot {
    /// Take a slot, or None when all are taken.
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let open = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let slot = Slot(Arc::clone(shared));
        (open <= shared.max_connections).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound server with its engine thread running.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Bind the address and start the engine thread.
    pub fn bind(config: ServeConfig, mut engine: Engine) -> std::io::Result<Server> {
        let listener = TcpListener::bind((config.host.as_str(), config.port))?;
        let local = listener.local_addr()?;
        let (queue, tasks) = mpsc::sync_channel(config.max_queue);
        let max_context = engine.max_context();
        engine.fault_delay = Duration::from_millis(config.faults.delay_ms);
        engine::spawn(engine, tasks)?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                name: config.model_name,
                max_context,
                created,
                queue,
                api_key: config.api_key,
                max_body: config.max_body,
                faults: Faults::new(config.faults),
                next_id: AtomicU64::new(0),
                connections: AtomicUsize::new(0),
                max_connections: config.max_connections.max(1),
                local,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections until the process ends (one thread each).
    pub fn run(self) -> std::io::Result<()> {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else {
                // Out of file descriptors and the like: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let Some(slot) = Slot::take(&self.shared) else {
                let mut stream = stream;
                let e = ApiError::new(503, "server_error", "too many open connections");
                let _ = write_response(
                    &mut stream,
                    &Response::json(503, e.body()).with_header("Retry-After", "1".into()),
                    false,
                );
                continue;
            };
            // A failed spawn drops the closure, and the slot with it.
            let _ = std::thread::Builder::new()
                .name("anchorscope-serve-conn".into())
                .spawn(move || serve_connection(stream, &slot.0));
        }
        Ok(())
    }
}

/// What one request did, for the log line.
#[derive(Default)]
struct Outcome {
    generation: Option<(usize, usize, usize)>,
    /// The request went through the engine queue.
    queued: bool,
    /// The error message answered, if any.
    failure: Option<String>,
}

/// The connection's socket for reading, with a deadline for the request being read.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

/// Wait for the first byte of the next request. False: the client closed, or stayed idle past
/// [`IDLE_TIMEOUT`] (or [`IDLE_TIMEOUT_UNDER_PRESSURE`] while most slots are taken).
fn wait_for_request(reader: &mut BufReader<DeadlineStream>, shared: &Shared) -> bool {
    reader.get_mut().deadline = None;
    if reader
        .get_ref()
        .stream
        .set_read_timeout(Some(IDLE_POLL))
        .is_err()
    {
        return false;
    }
    let idle_since = Instant::now();
    loop {
        match reader.fill_buf() {
            Ok(buf) => return !buf.is_empty(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let idle = idle_since.elapsed();
                let pressed =
                    shared.connections.load(Ordering::SeqCst) * 4 > shared.max_connections * 3;
                if idle >= IDLE_TIMEOUT || (pressed && idle >= IDLE_TIMEOUT_UNDER_PRESSURE) {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Read and answer requests on one connection until it closes.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(DeadlineStream {
        stream: read_half,
        deadline: None,
    });
    let mut writer = stream;
    loop {
        if !wait_for_request(&mut reader, shared) {
            return;
        }
        reader.get_mut().deadline = Some(Instant::now() + REQUEST_DEADLINE);
        let started = Instant::now();
        // The head first: a request refused for its path, origin or key is answered without
        // reading its body.
        let read = read_head(&mut reader, shared.max_body).and_then(|head| match head {
            None => Ok(None),
            Some(head) => match gate(&head, shared) {
                Some(refusal) => Ok(Some((head, Err(refusal)))),
                None => read_body(&mut reader, &head, shared.max_body, &mut writer)
                    .map(|body| Some((head.clone(), Ok(body)))),
            },
        });
        let (request, response, outcome, unread) = match read {
            Ok(None) => return,
            Ok(Some((head, Ok(body)))) => {
                let req = head.with_body(body);
                let (response, outcome) = route(&req, shared, &writer);
                (Some(req), response, outcome, false)
            }
            Ok(Some((head, Err((response, outcome))))) => {
                let unread = head.framing != http::Framing::None;
                (Some(head.with_body(Vec::new())), response, outcome, unread)
            }
            Err(e) => {
                let status = if e.status == 0 { 408 } else { e.status };
                let err = ApiError::new(status, "invalid_request_error", e.message);
                (
                    None,
                    Response::json(err.status, err.body()),
                    Outcome::default(),
                    true,
                )
            }
        };
        if !outcome.queued {
            // Generation requests had their delay on the engine thread.
            shared.faults.delay();
        }
        let keep_alive = !unread && request.as_ref().is_some_and(|r| r.keep_alive);
        let written = write_response(&mut writer, &response, keep_alive);
        log(
            request.as_ref(),
            &response,
            &outcome,
            started,
            written.is_ok(),
        );
        if unread {
            // A request whose body we did not read (refused, or unreadable): the client may
            // still be sending it, and closing with unread data would reset the connection
            // before it reads the answer. So stop writing and drain (bounded) first.
            let _ = writer.shutdown(std::net::Shutdown::Write);
            reader.get_mut().deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            let _ = std::io::copy(&mut reader.by_ref().take(DRAIN_LIMIT), &mut std::io::sink());
            return;
        }
        if !keep_alive || written.is_err() {
            return;
        }
    }
}

/// What is refused before the body is read: an unknown path (404), a cross-site browser
/// request when no API key is set (403), a missing or wrong key (401), a wrong method (405).
fn gate(head: &Head, shared: &Shared) -> Option<(Response, Outcome)> {
    let Some(endpoint) = Endpoint::of(&head.path) else {
        return Some(error(
            ApiError::new(
                404,
                "not_found_error",
                format!("no such endpoint: {}", head.path),
            )
            .with_code("not_found"),
        ));
    };
    if shared.api_key.is_none() {
        if let Some(why) = cross_site(head, shared.local) {
            return Some(error(
                ApiError::new(403, "permission_error", why).with_code("cross_site"),
            ));
        }
    }
    if endpoint != Endpoint::Health && !authorized(head.header("authorization"), shared) {
        return Some(error(
            ApiError::new(
                401,
                "authentication_error",
                "missing or wrong API key: send `Authorization: Bearer <key>`",
            )
            .with_code("invalid_api_key"),
        ));
    }
    let allowed = endpoint.method();
    if head.method != allowed {
        let (mut response, outcome) = error(ApiError::new(
            405,
            "invalid_request_error",
            format!(
                "{} {} is not allowed: use {allowed}",
                head.method, head.path
            ),
        ));
        response = response.with_header("Allow", allowed.into());
        return Some((response, outcome));
    }
    None
}

/// Why a request looks like a browser's on another site's behalf (without an API key the
/// server trusts whoever can reach it, so a web page must not be able to): an `Origin` that is
/// not a loopback address, or a `Host` that names neither the bound address nor loopback (a
/// DNS-rebinding page sends its own domain name). Clients that are not browsers send no
/// `Origin` and the address they connected to as `Host`.
fn cross_site(head: &Head, local: SocketAddr) -> Option<String> {
    if let Some(origin) = head.header("origin") {
        // "null" is what a sandboxed page or a file sends: never this machine's own page.
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin == "null" {
            return Some("a request with Origin `null` is refused".into());
        }
        if !is_loopback_host(host) {
            return Some(format!(
                "cross-site request from Origin `{}` refused (set {API_KEY_ENV} to allow \
                 other clients with a key)",
                http::cut(origin)
            ));
        }
    }
    if let Some(host) = head.header("host") {
        if !is_loopback_host(host) && !names_bound_address(host, local) {
            return Some(format!(
                "Host `{}` is not this server's address",
                http::cut(host)
            ));
        }
    }
    None
}

/// `host[:port]` (or `[v6]:port`) split into its name and port.
fn split_host(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, after)) => (ip, after.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (authority, None),
    }
}

fn is_loopback_host(authority: &str) -> bool {
    let (name, _) = split_host(authority);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `Host` names the address the server is bound to (any address of this machine when
/// bound to every interface: then an IP literal, never a domain name).
fn names_bound_address(authority: &str, local: SocketAddr) -> bool {
    let (name, port) = split_host(authority);
    let port_ok = port.is_none_or(|p| p.parse::<u16>() == Ok(local.port()));
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    port_ok && (local.ip().is_unspecified() || ip == local.ip())
}

/// One line per request on stderr: method, path, status, tokens, milliseconds. Never headers
/// (they may hold the API key) and never bodies.
fn log(
    request: Option<&Request>,
    response: &Response,
    outcome: &Outcome,
    started: Instant,
    written: bool,
) {
    let (method, path) = request.map_or(("-", "-"), |r| (r.method.as_str(), r.path.as_str()));
    let tokens = outcome
        .generation
        .map_or(String::new(), |(prompt, completion, reused)| {
            format!(" prompt_tokens={prompt} completion_tokens={completion} reused={reused}")
        });
    let lost = if written { "" } else { " (client gone)" };
    // Server-side failures carry their message (engine errors, panics): the operator needs it.
    let failure = match &outcome.failure {
        Some(message) if response.status >= 500 => format!(" error={message:?}"),
        _ => String::new(),
    };
    // The path is the client's text: no escape sequence of theirs reaches the operator's terminal.
    let (method, path) = (
        crate::trace::terminal::terminal_safe(method),
        crate::trace::terminal::terminal_safe(path),
    );
    eprintln!(
        "{method} {path} {}{tokens} ms={}{lost}{failure}",
        response.status,
        started.elapsed().as_millis()
    );
}

fn error(e: ApiError) -> (Response, Outcome) {
    let mut response = Response::json(e.status, e.body());
    if e.status == 429 || e.status == 503 {
        response = response.with_header("Retry-After", "1".into());
    }
    let outcome = Outcome {
        failure: Some(e.message),
        ..Outcome::default()
    };
    (response, outcome)
}

/// Answer a request that passed the [`gate`].
fn route(req: &Request, shared: &Shared, client: &TcpStream) -> (Response, Outcome) {
    match Endpoint::of(&req.path) {
        Some(Endpoint::Health) => (
            Response::json(200, r#"{"status":"ok"}"#.into()),
            Outcome::default(),
        ),
        Some(Endpoint::Models) => (
            Response::json(
                200,
                wire::models_body(&shared.name, shared.created, shared.max_context),
            ),
            Outcome::default(),
        ),
        Some(endpoint) => generate(req, endpoint, shared, client),
        None => error(ApiError::new(404, "not_found_error", "no such endpoint")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Health,
    Models,
    Completions,
    Chat,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/health" => Some(Endpoint::Health),
            "/v1/models" => Some(Endpoint::Models),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/chat/completions" => Some(Endpoint::Chat),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Endpoint::Health | Endpoint::Models => "GET",
            Endpoint::Completions | Endpoint::Chat => "POST",
        }
    }
}

fn authorized(authorization: Option<&str>, shared: &Shared) -> bool {
    let Some(key) = &shared.api_key else {
        return true;
    };
    let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    // Compare every byte so the time taken does not tell how much of the key was right.
    given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn generate(
    req: &Request,
    endpoint: Endpoint,
    shared: &Shared,
    client: &TcpStream,
) -> (Response, Outcome) {
    if let Some(code) = shared.faults.status_for_request() {
        return error(ApiError::new(
            code,
            if code == 429 {
                "rate_limit_error"
            } else {
                "server_error"
            },
            format!("injected fault (--fault-status-every): answering {code}"),
        ));
    }
    let work = match endpoint {
        Endpoint::Chat => parse_body::<ChatRequest>(&req.body)
            .and_then(|r| r.validate(&shared.name))
            .map(|(messages, params)| Work::Chat(messages, params)),
        _ => parse_body::<CompletionRequest>(&req.body)
            .and_then(|r| r.validate(&shared.name))
            .map(Work::Complete),
    };
    let work = match work {
        Ok(w) => w,
        Err(e) => return error(e),
    };
    let (reply, answer) = mpsc::channel();
    let task = Task {
        work,
        reply,
        client: client.try_clone().ok(),
    };
    match shared.queue.try_send(task) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return error(
                ApiError::new(
                    429,
                    "rate_limit_error",
                    "the request queue is full (--max-queue): retry later",
                )
                .with_code("queue_full"),
            )
        }
        Err(TrySendError::Disconnected(_)) => {
            return error(ApiError::server("the engine thread has stopped"))
        }
    }
    let queued = |(response, outcome): (Response, Outcome)| {
        (
            response,
            Outcome {
                queued: true,
                ..outcome
            },
        )
    };
    let generation = match answer.recv() {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return queued(error(e)),
        Err(_) => return queued(error(ApiError::server("the engine dropped the request"))),
    };
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let body = response_body(endpoint, &generation, shared, n);
    let body = shared.faults.body_for_completion(body);
    let outcome = Outcome {
        generation: Some((
            generation.prompt_tokens,
            generation.completion_tokens(),
            generation.reused_tokens,
        )),
        queued: true,
        failure: None,
    };
    (Response::json(200, body), outcome)
}

fn response_body(endpoint: Endpoint, g: &Generation, shared: &Shared, n: u64) -> String {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let usage = Usage {
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens(),
        total_tokens: g.prompt_tokens + g.completion_tokens(),
    };
    let id = format!("{:x}{n:06x}", shared.created);
    let body = if endpoint == Endpoint::Chat {
        serde_json::to_string(&ChatResponse {
            id: format!("chatcmpl-{id}"),
            object: "chat.completion",
            created,
            model: shared.name.clone(),
            choices: g
                .choices
                .iter()
                .enumerate()
                .map(|(index, c)| ChatChoice {
                    index,
                    message: AssistantMessage {
                        role: "assistant",
                        content: c.text.clone(),
                    },
                    finish_reason: c.finish,
                    logprobs: None,
                })
                .collect(),
            usage,
        })
    } else {
        serde_json::to_string(&CompletionResponse {
            id: format!("cmpl-{id}"),
            object: "text_completion",
            created,
            model: shared.name.clone(),
            choices: g
                .choices
                .iter()
                .enumerate()
                .map(|(index, c)| CompletionChoice {
                    index,
                    text: c.text.clone(),
                    finish_reason: c.finish,
                    logprobs: None,
                })
                .collect(),
            usage,
        })
    };
    // Serializing plain structs of strings and numbers cannot fail; say so if it ever does.
    body.unwrap_or_else(|e| ApiError::server(format!("serializing the response: {e}")).body())
}
