//! Stand-ins for the health functions' dependencies, on free loopback ports:
//!
//! - [`StubServer`]: an HTTP server that records every request and answers with the status,
//!   body and delay set for the longest matching path prefix (so it can play an AI provider's
//!   `GET /v1/models`, Evolution's connection state, or a proxy that never answers in time);
//!   one thread per connection, so a delayed answer holds up nobody else.
//! - [`FailingRedis`]: a Redis that accepts connections and the client's handshake, then
//!   answers every data command with an error, as a Redis does when it is out of memory, a
//!   read-only replica or unable to persist: Spin's key-value calls then fail at once. (A
//!   Redis that refuses connections does not make them fail: Spin's client retries, and the
//!   guest's synchronous call waits for minutes.)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Recorded;

/// One answer of a [`StubServer`].
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// `status` with `body` at once.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// No answer for `delay` (then 200 `{}`): a dependency that hangs.
    pub fn hang(delay: Duration) -> Self {
        Self {
            status: 200,
            body: "{}".into(),
            delay,
        }
    }
}

type Routes = Arc<Mutex<BTreeMap<String, Answer>>>;

/// A recording HTTP stub (see the module docs). Lives until the test process exits.
pub struct StubServer {
    /// Port it listens on.
    pub port: u16,
    routes: Routes,
    received: Arc<Mutex<Vec<Recorded>>>,
}

impl StubServer {
    /// Starts a stub answering 200 `{}` until told otherwise.
    pub fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let routes: Routes = Arc::default();
        let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (r, log) = (routes.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, log) = (r.clone(), log.clone());
                std::thread::spawn(move || serve_one(stream, &r, &log));
            }
        });
        Ok(Self {
            port,
            routes,
            received,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers requests whose path starts with `prefix` with `answer` (the longest matching
    /// prefix wins; `""` matches everything).
    pub fn route(&self, prefix: &str, answer: Answer) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(prefix.to_owned(), answer);
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        if let Ok(mut r) = self.received.lock() {
            r.clear();
        }
    }
}

fn serve_one(mut stream: TcpStream, routes: &Routes, log: &Mutex<Vec<Recorded>>) {
    let Some(recorded) = crate::read_request(&mut stream) else {
        return;
    };
    let path = recorded.path.clone();
    let answer = routes
        .lock()
        .ok()
        .and_then(|r| {
            r.iter()
                .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, a)| a.clone())
        })
        .unwrap_or_else(|| Answer::json(200, "{}"));
    if let Ok(mut all) = log.lock() {
        all.push(recorded);
    }
    std::thread::sleep(answer.delay);
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        answer.status,
        answer.body.len(),
        answer.body
    );
}

/// A Redis that answers the handshake and fails every data command (see the module docs).
pub struct FailingRedis {
    /// Port it listens on.
    pub port: u16,
}

impl FailingRedis {
    /// Starts listening; lives until the test process exits.
    pub fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || redis_session(stream));
            }
        });
        Ok(Self { port })
    }

    /// A Spin runtime config putting the `default` store on this Redis, written to `path`.
    pub fn write_spin_runtime_config(&self, path: &std::path::Path) -> Result<(), String> {
        std::fs::write(
            path,
            format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
                self.port
            ),
        )
        .map_err(|e| e.to_string())
    }
}

/// Reads RESP commands (arrays of bulk strings, or inline) and answers each one.
fn redis_session(stream: TcpStream) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if matches!(reader.read_line(&mut line), Ok(0) | Err(_)) {
            return;
        }
        let command = if let Some(n) = line.strip_prefix('*') {
            let n: usize = n.trim().parse().unwrap_or(0);
            let mut args = Vec::with_capacity(n);
            for _ in 0..n {
                let mut len = String::new();
                if reader.read_line(&mut len).is_err() {
                    return;
                }
                let len: usize = len.trim().trim_start_matches('$').parse().unwrap_or(0);
                let mut arg = vec![0u8; len + 2];
                if reader.read_exact(&mut arg).is_err() {
                    return;
                }
                args.push(String::from_utf8_lossy(&arg[..len]).to_string());
            }
            args.into_iter().next().unwrap_or_default()
        } else {
            line.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let reply: &[u8] = match command.to_ascii_uppercase().as_str() {
            "PING" => b"+PONG\r\n",
            "CLIENT" | "SELECT" | "AUTH" => b"+OK\r\n",
            _ => b"-ERR simulated outage: every command refused (e2e)\r\n",
        };
        if out.write_all(reply).is_err() {
            return;
        }
    }
}
