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
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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

/// Read one request. `Ok(None)`: the client closed the connection (or went idle past the read
/// timeout) between requests.
pub fn read_request<R: Read>(
    reader: &mut BufReader<R>,
    max_body: usize,
    continue_to: &mut dyn Write,
) -> Result<Option<Request>, HttpError> {
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
    let mut req = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        keep_alive: false,
        headers,
        body: Vec::new(),
    };
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    req.keep_alive = match version {
        "HTTP/1.0" => connection.as_deref() == Some("keep-alive"),
        _ => connection.as_deref() != Some("close"),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| bad(400, format!("Content-Length `{}` is not a number", cut(v))))?,
        ),
    };
    if length.is_some_and(|n| n > max_body) {
        return Err(bad(
            413,
            format!(
                "request body of {} bytes exceeds the limit of {max_body} bytes",
                length.unwrap_or(0)
            ),
        ));
    }
    let has_body = chunked || length.is_some_and(|n| n > 0);
    if has_body
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        continue_to
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| bad(400, format!("writing 100 Continue: {e}")))?;
    }
    if chunked {
        req.body = read_chunked(reader, max_body)?;
    } else if let Some(n) = length {
        let mut body = vec![0u8; n];
        reader
            .read_exact(&mut body)
            .map_err(|e| bad(400, format!("body shorter than Content-Length {n}: {e}")))?;
        req.body = body;
    }
    Ok(Some(req))
}

/// A body in chunked transfer coding (trailers are read and dropped).
fn read_chunked<R: Read>(reader: &mut BufReader<R>, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad(400, "connection closed in a chunk"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(400, format!("malformed chunk size `{}`", cut(&line))))?;
        if size == 0 {
            // Trailers up to the blank line.
            while read_line(reader)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        if body.len() + size > max_body {
            return Err(bad(
                413,
                format!("chunked request body exceeds the limit of {max_body} bytes"),
            ));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| bad(400, format!("chunk shorter than its size: {e}")))?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .map_err(|e| bad(400, format!("missing CRLF after a chunk: {e}")))?;
    }
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
fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
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
}
