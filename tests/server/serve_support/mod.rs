//! Shared by the `serve_*` tests: start the real `anchorscope serve` binary on port 0 with a
//! tiny random-weight model, and talk HTTP/1.1 to it over std::net (no client crate).

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorscope::engine::lm::testing::{write_tiny_gguf, TinySpec};
use anchorscope::engine::lm::Arch;
use serde_json::Value;

/// A tiny Llama with the byte-level tokenizer (context 512) written into `dir`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    let spec = TinySpec::new(Arch::Llama, 11).with_byte_level_tokenizer();
    write_tiny_gguf(&path, &spec).expect("writing the tiny model");
    path
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub model: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `anchorscope serve --model TINY --device cpu --port 0 EXTRA…` with `env` set.
    pub fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorscope"));
        cmd.args(["serve", "--model"])
            .arg(&model)
            .args(["--device", "cpu", "--port", "0"])
            .args(extra)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env_remove("ANCHORSCOPE_SERVE_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the binary starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let out_pipe = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = stderr.lock().unwrap().join("\n");
                panic!("the server printed no `listening on` line; stderr:\n{log}");
            }
        };
        let port = line
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        Server {
            child,
            port,
            model,
            stderr,
            _dir: dir,
        }
    }

    /// The lines the server wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (up to 10 s) for a stderr line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        for _ in 0..200 {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        request(self.port, "POST", path, &[], body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header lines as `name: value`, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The choices' texts (completions) or message contents (chat).
    pub fn texts(&self) -> Vec<String> {
        self.json()["choices"]
            .as_array()
            .unwrap_or_else(|| panic!("no choices: {}", self.body))
            .iter()
            .map(|c| {
                c["text"]
                    .as_str()
                    .or_else(|| c["message"]["content"].as_str())
                    .unwrap_or_else(|| panic!("a choice without text: {c}"))
                    .to_string()
            })
            .collect()
    }
}

/// Send one request on a fresh connection (`Connection: close`) and read the whole answer.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server refusing the body (413) may answer before reading it all: read the answer anyway.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the answer");
    parse_reply(&raw)
}

/// Parse a whole HTTP/1.1 answer (the body is what follows the blank line).
pub fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line after the headers: {text}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert_eq!(len, body.len(), "Content-Length does not match the body");
    }
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Assert an OpenAI-shaped error with `status`; its message.
pub fn expect_error(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{}", reply.body);
    let v = reply.json();
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {}", reply.body));
    assert!(v["error"]["type"].is_string(), "{}", reply.body);
    message.to_string()
}

/// Send requests one after another on one kept-alive connection; each answer is read by its
/// Content-Length.
pub fn keep_alive_exchange(port: u16, bodies: &[String]) -> Vec<Reply> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    bodies
        .iter()
        .map(|body| {
            write!(
                writer,
                "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("reading a header line");
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push(line);
            }
            let length: usize = head
                .iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length header");
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let mut raw = head.concat().into_bytes();
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&body);
            parse_reply(&raw)
        })
        .collect()
}
