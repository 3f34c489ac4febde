//! Slow clients (issue 13, item 1): connections that never finish a request head, trickle a
//! body, or sit idle cannot hold the connection cap; a health check queued behind them is
//! served once their deadlines pass, and each of them is closed by the server.
//!
//! Raw TCP clients, because an HTTP client library would not misbehave on purpose.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{Opts, TestApp};

/// One-second deadlines so the test is quick; the cap is what the slow clients fill.
fn tight(cap: usize) -> Opts {
    Opts::default()
        .set("PROXY_MAX_CONNECTIONS", &cap.to_string())
        .set("PROXY_HEADER_READ_TIMEOUT_SECS", "1")
        .set("PROXY_KEEPALIVE_IDLE_SECS", "1")
        .set("PROXY_BODY_READ_TIMEOUT_SECS", "1")
}

/// What a slow client saw: when the server closed the connection (if it did within
/// `limit`) and what it answered before closing.
struct Outcome {
    closed_after: Option<Duration>,
    answer: String,
}

/// Connects, sends `head` at once, then one byte of `trickle` every 200 ms until the server
/// closes the connection or `limit` passes.
async fn slow_client(
    addr: std::net::SocketAddr,
    head: &'static str,
    trickle: u8,
    limit: Duration,
) -> Outcome {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return (started.elapsed(), seen),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });
    if !head.is_empty() {
        let _ = wr.write_all(head.as_bytes()).await;
    }
    let writer = tokio::spawn(async move {
        if trickle == 0 {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(&[trickle]).await.is_err() {
                return;
            }
        }
    });
    let outcome = match tokio::time::timeout(limit, reader).await {
        Ok(Ok((at, seen))) => Outcome {
            closed_after: Some(at),
            answer: String::from_utf8_lossy(&seen).into_owned(),
        },
        _ => Outcome {
            closed_after: None,
            answer: String::new(),
        },
    };
    writer.abort();
    outcome
}

const HEADER_TRICKLE: &str = "GET /api/v1/health HTTP/1.1\r\nHost: proxy\r\nX-Slow: ";
const BODY_TRICKLE: &str = "POST /v1/messages HTTP/1.1\r\nHost: proxy\r\n\
    Content-Type: application/json\r\nContent-Length: 65536\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_do_not_block_a_health_check_and_are_closed_after_the_deadlines() {
    let cap = 6;
    let app = TestApp::spawn_with(tight(cap)).await;
    let limit = Duration::from_secs(15);
    // Fill every slot: two clients that never finish their headers (a byte every 200 ms),
    // two that announce a 64 KiB body and trickle it, two that send nothing at all.
    let mut slow = Vec::new();
    for (head, trickle) in [
        (HEADER_TRICKLE, b'a'),
        (HEADER_TRICKLE, b'a'),
        (BODY_TRICKLE, b' '),
        (BODY_TRICKLE, b' '),
        ("", 0),
        ("", 0),
    ] {
        let addr = app.addr;
        slow.push(tokio::spawn(slow_client(addr, head, trickle, limit)));
    }
    // Let them all be accepted, so the health check below queues behind a full cap.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(app.url("/api/v1/health"))
        .send()
        .await;
    let waited = started.elapsed();
    let health = health.expect("the health check was served despite the slow clients");
    assert_eq!(health.status(), 200);
    // It had to wait for a slot (the cap was full) but not for long: the deadlines are 1 s.
    assert!(waited < Duration::from_secs(8), "health waited {waited:?}");

    for (i, task) in slow.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        let closed = outcome
            .closed_after
            .unwrap_or_else(|| panic!("slow client {i} was never closed by the server"));
        // Closed by a deadline, not at once (each deadline is 1 s) and not much later.
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_secs(8),
            "slow client {i} closed after {closed:?}"
        );
        if i == 2 || i == 3 {
            // The body deadline answers 408 before any signature work, then closes.
            assert!(
                outcome.answer.starts_with("HTTP/1.1 408"),
                "client {i}: {:?}",
                outcome.answer
            );
            assert!(
                outcome.answer.contains("request_timeout"),
                "{}",
                outcome.answer
            );
        } else {
            assert!(
                outcome.answer.is_empty(),
                "client {i}: {:?}",
                outcome.answer
            );
        }
    }
}

/// Sends one health request on `stream` and reads the whole response (it has a
/// Content-Length).
async fn health_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-response");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if seen.len() >= end + 4 + len {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_serves_requests_while_active_and_is_closed_once_idle() {
    let app = TestApp::spawn_with(tight(4).set("PROXY_KEEPALIVE_IDLE_SECS", "1.5")).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // Several requests on one connection, each pause shorter than the idle deadline.
    for _ in 0..3 {
        assert!(health_on(&mut stream).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(health_on(&mut stream).await.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the idle connection was closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1400) && idle < Duration::from_secs(8),
        "closed after {idle:?} idle"
    );
}
