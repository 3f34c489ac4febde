//! Fakes of the webhook's third parties, as small HTTP servers on free loopback ports: the
//! Evolution API (`sendText`), an OpenAI-compatible API (`/v1/chat/completions`) and the
//! Anthropic Messages API (`/v1/messages`). Each records every request and answers from a
//! script (status, body, delay) before falling back to its kind's normal answer, one thread
//! per connection so a delayed answer does not hold up the others.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Recorded;

/// Which API a fake stands in for (decides its normal answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Evolution API v2: `201 {"key":{"id":...}}`.
    Evolution,
    /// OpenAI chat completions: the text [`OPENAI_TEXT`].
    OpenAi,
    /// Anthropic Messages: the text [`ANTHROPIC_TEXT`].
    Anthropic,
}

/// What the fake OpenAI answers.
pub const OPENAI_TEXT: &str = "Resposta do modelo OpenAI de teste.";
/// What the fake Anthropic answers.
pub const ANTHROPIC_TEXT: &str = "Resposta do modelo Anthropic de teste.";

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// Status code.
    pub status: u16,
    /// JSON body (`None`: the kind's normal answer with this status).
    pub body: Option<String>,
    /// Wait before answering.
    pub delay: Duration,
}

impl Scripted {
    /// Answer `status` with `{}` at once.
    pub fn fail(status: u16) -> Self {
        Self {
            status,
            body: Some("{\"error\":\"scripted\"}".into()),
            delay: Duration::ZERO,
        }
    }

    /// The normal answer after `delay`.
    pub fn delayed(delay: Duration) -> Self {
        Self {
            status: 0,
            body: None,
            delay,
        }
    }
}

/// A running fake.
pub struct Fake {
    /// Its kind.
    pub kind: Kind,
    /// Port it listens on.
    pub port: u16,
    received: Arc<Mutex<Vec<(Instant, Recorded)>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
}

fn normal(kind: Kind, n: u64) -> (u16, String) {
    match kind {
        Kind::Evolution => (
            201,
            format!("{{\"key\":{{\"remoteJid\":\"x\",\"fromMe\":true,\"id\":\"FAKEOUT{n}\"}},\"status\":\"PENDING\"}}"),
        ),
        Kind::OpenAi => (
            200,
            serde_json::json!({"id": "chatcmpl-fake", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": OPENAI_TEXT}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
            .to_string(),
        ),
        Kind::Anthropic => (
            200,
            serde_json::json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": ANTHROPIC_TEXT}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 100, "output_tokens": 10}})
            .to_string(),
        ),
    }
}

impl Fake {
    /// Starts a fake of `kind`; it lives until the test process exits.
    pub fn start(kind: Kind) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<VecDeque<Scripted>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (sink, queue) = (received.clone(), script.clone());
        let counter = Arc::new(AtomicU64::new(1));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (sink, queue, counter) = (sink.clone(), queue.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let Some(req) = crate::read_request(&mut stream) else {
                        return;
                    };
                    let at = Instant::now();
                    let scripted = queue.lock().ok().and_then(|mut q| q.pop_front());
                    if let Ok(mut all) = sink.lock() {
                        all.push((at, req));
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let (status, body) = match scripted {
                        Some(s) => {
                            std::thread::sleep(s.delay);
                            let (ns, nb) = normal(kind, n);
                            (
                                if s.status == 0 { ns } else { s.status },
                                s.body.unwrap_or(nb),
                            )
                        }
                        None => normal(kind, n),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes());
                });
            }
        });
        Ok(Self {
            kind,
            port,
            received,
            script,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues scripted answers, used in order by the next requests.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut q) = self.script.lock() {
            q.extend(answers);
        }
    }

    /// Drops any scripted answer not used yet.
    pub fn clear_script(&self) {
        if let Ok(mut q) = self.script.lock() {
            q.clear();
        }
    }

    /// Every request received so far whose body contains `needle`, with its arrival time.
    pub fn received_with(&self, needle: &str) -> Vec<(Instant, Recorded)> {
        self.received
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, x)| x.body.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}
