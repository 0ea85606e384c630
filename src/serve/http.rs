//! The little HTTP/1.1 that `serve` needs, on std::net: request line, headers, bodies by
//! Content-Length or chunked, `Expect: 100-continue`, keep-alive. Hand-written rather than a
//! crate because the engine queue needs the raw socket (to skip a request whose client left)
//! and limits (header size, body size) must answer with the right status, not a dropped socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Longest request line or header line.
const MAX_LINE: usize = 16 * 1024;
/// Most header lines.
const MAX_HEADERS: usize = 100;

/// One parsed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// How the body of a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// A request line and its headers, read before the body so that a request can be refused
/// (unknown path, wrong key, cross-site origin) without reading what it sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
    pub framing: Framing,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The request, once its body is read.
    pub fn with_body(self, body: Vec<u8>) -> Request {
        Request {
            method: self.method,
            path: self.path,
            headers: self.headers,
            body,
            keep_alive: self.keep_alive,
        }
    }
}

/// A request that cannot be read: answered with `status`, then the connection is closed.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

fn bad(status: u16, message: impl Into<String>) -> HttpError {
    HttpError {
        status,
        message: message.into(),
    }
}

/// Read one whole request (head, then body). `Ok(None)`: the client closed the connection (or
/// went idle past the read timeout) between requests.
pub fn read_request<R: Read>(
    reader: &mut BufReader<R>,
    max_body: usize,
    continue_to: &mut dyn Write,
) -> Result<Option<Request>, HttpError> {
    let Some(head) = read_head(reader, max_body)? else {
        return Ok(None);
    };
    let body = read_body(reader, &head, max_body, continue_to)?;
    Ok(Some(head.with_body(body)))
}

/// Read a request line and its headers. The framing is checked here: a body announced both
/// by `Content-Length` and chunked, or by two `Content-Length`s, is refused (400: the two ends
/// could disagree on where the request ends), as is a length above `max_body` (413).
pub fn read_head<R: Read>(
    reader: &mut BufReader<R>,
    max_body: usize,
) -> Result<Option<Head>, HttpError> {
    let line = match read_line(reader) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(None),
        Err(e) if e.status == 0 => return Ok(None),
        Err(e) => return Err(e),
    };
    // Tolerate blank lines between pipelined requests (RFC 9112 §2.2).
    let line = if line.is_empty() {
        match read_line(reader)? {
            Some(l) => l,
            None => return Ok(None),
        }
    } else {
        line
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, format!("malformed request line `{}`", cut(&line))));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(
            505,
            format!("unsupported HTTP version `{}`", cut(version)),
        ));
    }
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader)? else {
            return Err(bad(400, "connection closed inside the headers"));
        };
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad(431, format!("more than {MAX_HEADERS} header lines")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(400, format!("malformed header line `{}`", cut(&line))));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let connection = header(&headers, "connection").map(str::to_ascii_lowercase);
    let keep_alive = match version {
        "HTTP/1.0" => connection.as_deref() == Some("keep-alive"),
        _ => connection.as_deref() != Some("close"),
    };
    let framing = framing(&headers, max_body)?;
    Ok(Some(Head {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers,
        keep_alive,
        framing,
    }))
}

/// The body framing of a request's headers (RFC 9112 §6).
fn framing(headers: &[(String, String)], max_body: usize) -> Result<Framing, HttpError> {
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let codings: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    if lengths.len() > 1 {
        return Err(bad(400, "Content-Length given more than once"));
    }
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(bad(
                400,
                "both Content-Length and Transfer-Encoding: send one",
            ));
        }
        let only_chunked = codings.len() == 1 && codings[0].trim().eq_ignore_ascii_case("chunked");
        if !only_chunked {
            return Err(bad(
                501,
                format!(
                    "unsupported Transfer-Encoding `{}` (only chunked)",
                    cut(&codings.join(", "))
                ),
            ));
        }
        return Ok(Framing::Chunked);
    }
    let Some(text) = lengths.first() else {
        return Ok(Framing::None);
    };
    // Digits only: no sign, no spaces inside, no overflow.
    let n = text
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<usize>().ok())
        .flatten()
        .ok_or_else(|| {
            bad(
                400,
                format!("Content-Length `{}` is not a number", cut(text)),
            )
        })?;
    if n > max_body {
        return Err(bad(
            413,
            format!("request body of {n} bytes exceeds the limit of {max_body} bytes"),
        ));
    }
    Ok(Framing::Length(n))
}

/// Read the body `head` announces (answering `Expect: 100-continue` first).
pub fn read_body<R: Read>(
    reader: &mut BufReader<R>,
    head: &Head,
    max_body: usize,
    continue_to: &mut dyn Write,
) -> Result<Vec<u8>, HttpError> {
    let has_body = match head.framing {
        Framing::None => false,
        Framing::Length(n) => n > 0,
        Framing::Chunked => true,
    };
    if has_body
        && head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        continue_to
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| bad(400, format!("writing 100 Continue: {e}")))?;
    }
    match head.framing {
        Framing::None => Ok(Vec::new()),
        Framing::Chunked => read_chunked(reader, max_body),
        Framing::Length(n) => {
            let mut body = vec![0u8; n];
            reader
                .read_exact(&mut body)
                .map_err(|e| bad(400, format!("body shorter than Content-Length {n}: {e}")))?;
            Ok(body)
        }
    }
}

/// A body in chunked transfer coding (trailers are read and dropped). Sizes are checked
/// before any arithmetic: a size the limit cannot hold is a 413, whatever its digits.
fn read_chunked<R: Read>(reader: &mut BufReader<R>, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad(400, "connection closed in a chunk"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(400, format!("malformed chunk size `{}`", cut(&line))));
        }
        // Hex digits that do not fit 64 bits cannot be a size we accept.
        let Ok(size) = u64::from_str_radix(size_text, 16) else {
            return Err(too_large(max_body));
        };
        if size == 0 {
            // Trailers up to the blank line.
            while read_line(reader)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        let room = max_body.saturating_sub(body.len()) as u64;
        if size > room {
            return Err(too_large(max_body));
        }
        let start = body.len();
        // size <= room <= max_body: fits in usize.
        body.resize(start + size as usize, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| bad(400, format!("chunk shorter than its size: {e}")))?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .map_err(|e| bad(400, format!("missing CRLF after a chunk: {e}")))?;
    }
}

fn too_large(max_body: usize) -> HttpError {
    bad(
        413,
        format!("chunked request body exceeds the limit of {max_body} bytes"),
    )
}

/// One line without its CRLF; `None` at end of input before any byte. An I/O error before any
/// byte (an idle keep-alive connection timing out) reads as status 0: close quietly.
fn read_line<R: Read>(reader: &mut BufReader<R>) -> Result<Option<String>, HttpError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| bad(0, e.to_string()))?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(if buf.len() > MAX_LINE {
            bad(
                431,
                format!("a request line is longer than {MAX_LINE} bytes"),
            )
        } else {
            bad(400, "connection closed inside a line")
        });
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad(400, "request line or header is not UTF-8"))
}

/// At most 80 characters of client text, for error messages.
pub fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        499 => "Client Closed Request",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A response ready to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Self {
        Response {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Write `response` (JSON); `Connection: close` when the connection ends after it.
pub fn write_response(
    out: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(response.body.as_bytes());
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, max_body: usize) -> (Result<Option<Request>, HttpError>, Vec<u8>) {
        let mut reader = BufReader::new(raw.as_bytes());
        let mut sent = Vec::new();
        (read_request(&mut reader, max_body, &mut sent), sent)
    }

    #[test]
    fn content_length_body_and_keep_alive() {
        let (r, sent) = parse(
            "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
            100,
        );
        let r = r.unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/completions")
        );
        assert_eq!(r.body, b"abcd");
        assert!(r.keep_alive);
        assert_eq!(r.header("host"), Some("a"));
        assert!(sent.is_empty());
        let (r, _) = parse("GET / HTTP/1.0\r\n\r\n", 100);
        assert!(!r.unwrap().unwrap().keep_alive);
        let (r, _) = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 100);
        assert!(!r.unwrap().unwrap().keep_alive);
    }

    #[test]
    fn chunked_body_and_expect_continue() {
        let (r, sent) = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
             3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
            100,
        );
        assert_eq!(r.unwrap().unwrap().body, b"abcde");
        assert_eq!(sent, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn limits_and_malformed_requests_have_statuses() {
        let (r, _) = parse("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100);
        assert_eq!(r.unwrap_err().status, 413);
        let (r, _) = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n80\r\n",
            100,
        );
        assert_eq!(r.unwrap_err().status, 413);
        let (r, _) = parse("GARBAGE\r\n\r\n", 100);
        assert_eq!(r.unwrap_err().status, 400);
        let (r, _) = parse("GET / SPDY/3\r\n\r\n", 100);
        assert_eq!(r.unwrap_err().status, 505);
        let (r, _) = parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 100);
        assert_eq!(r.unwrap_err().status, 400);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE + 10));
        let (r, _) = parse(&long, 100);
        assert_eq!(r.unwrap_err().status, 431);
        let (r, _) = parse("", 100);
        assert_eq!(r.unwrap(), None);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let (r, _) = parse(
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            100,
        );
        assert_eq!(r.unwrap_err().status, 400);
        let (r, _) = parse(
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            100,
        );
        assert_eq!(r.unwrap_err().status, 400);
        let (r, _) = parse("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 100);
        assert_eq!(r.unwrap_err().status, 400);
        let (r, _) = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            100,
        );
        assert_eq!(r.unwrap_err().status, 501);
    }

    #[test]
    fn huge_chunk_sizes_are_413_not_a_panic() {
        for size in [
            "ffffffffffffffff",
            "fffffffffffffffff",
            "10000000000000000000000",
        ] {
            let raw = format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n{size}\r\nx"
            );
            let (r, _) = parse(&raw, 100);
            assert_eq!(r.unwrap_err().status, 413, "{size}");
        }
        let (r, _) = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100,
        );
        assert_eq!(r.unwrap_err().status, 400);
    }

    #[test]
    fn the_head_is_read_without_the_body() {
        let raw = "POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let mut reader = BufReader::new(raw.as_bytes());
        let head = read_head(&mut reader, 100).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Length(5));
        // The body is still unread.
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "hello");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        const VALID: &[&str] = &[
            "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: v\r\n\r\n",
            "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];

        /// Every outcome is a request within the limit, the end of input, or a refusal with
        /// one of the statuses the server sends; never a panic.
        fn check(raw: &[u8]) {
            let mut reader = BufReader::new(raw);
            let mut sent = Vec::new();
            match read_request(&mut reader, 64, &mut sent) {
                Ok(Some(r)) => assert!(r.body.len() <= 64),
                Ok(None) => {}
                Err(e) => assert!([0, 400, 413, 431, 501, 505].contains(&e.status), "{e:?}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
                check(&raw);
            }

            #[test]
            fn mutated_requests(
                which in 0..VALID.len(),
                edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
            ) {
                let mut raw = VALID[which].as_bytes().to_vec();
                for (at, byte, op) in edits {
                    let at = at % (raw.len() + 1);
                    match op {
                        0 => raw.insert(at, byte),
                        1 if at < raw.len() => raw[at] = byte,
                        _ if at < raw.len() => { raw.remove(at); }
                        _ => raw.push(byte),
                    }
                }
                check(&raw);
            }

            #[test]
            fn chunk_sizes(size in "[0-9a-fA-F]{1,24}", ext in "(;[a-z]=[0-9])?") {
                let raw = format!(
                    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}{ext}\r\nabc\r\n0\r\n\r\n"
                );
                check(raw.as_bytes());
            }
        }
    }
}
