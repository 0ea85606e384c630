//! For unit tests of the client's protocol handling: a loopback HTTP/1.1 server whose answer
//! to each JSON request is computed by a function (one request per connection). The
//! integration tests (tests/remote_*.rs) use the real `anchorscope serve` instead.

use std::io::{BufRead, BufReader, Read, Write};

/// Serve on 127.0.0.1 (a free port, returned) until the test process ends.
pub fn loopback_server(
    answer: impl Fn(&serde_json::Value) -> (u16, serde_json::Value) + Send + 'static,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    let port = listener.local_addr().expect("a local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(read_half);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let (status, reply) = answer(&request);
            let reply = reply.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    port
}
