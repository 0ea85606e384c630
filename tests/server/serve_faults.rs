//! The server under strain and its test-only fault flags, through the real binary: injected
//! statuses, truncated bodies, delays, a full queue (429), a client that leaves before its
//! turn, a server killed while a client waits.

use crate::serve_support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use serve_support::{expect_error, request, Server};

fn small() -> String {
    json!({"prompt": "hello", "max_tokens": 4, "seed": 1}).to_string()
}

#[test]
fn serve_fault_status_every_kth_generation_request() {
    let server = Server::start(&["--fault-status-every", "2:503"], &[]);
    let statuses: Vec<u16> = (0..4)
        .map(|_| server.post("/v1/completions", &small()).status)
        .collect();
    assert_eq!(statuses, [200, 503, 200, 503]);
    let r = server.post("/v1/completions", &small());
    assert_eq!(r.status, 200);
    let r = server.post("/v1/completions", &small());
    assert!(expect_error(&r, 503).contains("injected"));
    assert_eq!(r.header("retry-after"), Some("1"));
    // The log line of a server-side failure carries its message.
    let line = server
        .wait_for_log("POST /v1/completions 503")
        .expect("a 503 log line");
    assert!(line.contains("error=\"injected fault"), "{line}");
    // Other endpoints are not counted.
    assert_eq!(server.get("/v1/models").status, 200);
}

#[test]
fn serve_fault_malformed_every_kth_body_is_cut_real_text() {
    let server = Server::start(&["--fault-malformed-every", "2"], &[]);
    let good = server.post("/v1/completions", &small());
    assert_eq!(good.status, 200);
    let good_text = good.texts().remove(0);
    let bad = server.post("/v1/completions", &small());
    assert_eq!(bad.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&bad.body).is_err());
    // The cut body is the start of a real completion, not canned text.
    assert!(bad.body.starts_with("{\"id\":\"cmpl-"), "{}", bad.body);
    let third = server.post("/v1/completions", &small());
    assert_eq!(third.texts(), vec![good_text], "same seed, same text");
}

#[test]
fn serve_fault_delay_slows_every_answer() {
    let server = Server::start(&["--fault-delay-ms", "300"], &[]);
    for path in ["/health", "/v1/completions"] {
        let started = Instant::now();
        let r = if path == "/health" {
            server.get(path)
        } else {
            server.post(path, &small())
        };
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{path} answered in {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn serve_full_queue_answers_429_with_retry_after() {
    // Each generation holds the engine for 800 ms; one may wait behind it.
    let server = Server::start(&["--max-queue", "1", "--fault-delay-ms", "800"], &[]);
    let port = server.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                request(port, "POST", "/v1/completions", &[], small().as_bytes())
            })
        })
        .collect();
    let replies: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let full: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(ok >= 1 && !full.is_empty(), "{replies:?}");
    assert_eq!(ok + full.len(), 4, "{replies:?}");
    assert!(expect_error(full[0], 429).contains("--max-queue"));
    assert_eq!(full[0].header("retry-after"), Some("1"));
}

#[test]
fn serve_client_that_leaves_before_its_turn_is_skipped() {
    let server = Server::start(&["--fault-delay-ms", "1000"], &[]);
    let port = server.port;
    let first = std::thread::spawn(move || {
        request(port, "POST", "/v1/completions", &[], small().as_bytes())
    });
    std::thread::sleep(Duration::from_millis(300));
    // The second client sends its request and hangs up while the first is being served.
    let body = small();
    let mut leaver = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        leaver,
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(leaver);
    assert_eq!(first.join().unwrap().status, 200);
    let line = server
        .wait_for_log(" 499")
        .unwrap_or_else(|| panic!("no 499 line: {:?}", server.log()));
    assert!(line.starts_with("POST /v1/completions 499"), "{line}");
    // Skipped without running: it did not wait out its own 1 s delay behind the first.
    let ms: u64 = line
        .rsplit("ms=")
        .next()
        .and_then(|m| m.split(' ').next())
        .and_then(|m| m.parse().ok())
        .unwrap();
    assert!(ms < 1900, "{line}");
    assert_eq!(server.post("/v1/completions", &small()).status, 200);
}

#[test]
fn serve_killed_mid_request_closes_the_connection() {
    let mut server = Server::start(&["--fault-delay-ms", "2000"], &[]);
    let port = server.port;
    let waiting = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = small();
        write!(
            stream,
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = Vec::new();
        let read = std::io::Read::read_to_end(&mut stream, &mut answer);
        (read.is_ok(), answer.len())
    });
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let (_, bytes) = waiting.join().unwrap();
    // The client sees end of file or a reset, never a partial HTTP answer.
    assert_eq!(bytes, 0);
}
