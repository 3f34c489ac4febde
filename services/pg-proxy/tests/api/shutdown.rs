//! The real binary: a request in flight when SIGTERM arrives completes, new connections are
//! refused, the process exits 0, and no secret reaches the logs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy_auth::SigningKey;

use crate::helpers::{message, new_nonce, new_request_id, unix_now, TestDb, AUDIENCE, KEY_HEX};

/// Password in the DATABASE_URL: local trust auth ignores it, the redactor must hide it.
const DB_PASSWORD: &str = "Sup3rSecretDbPassw0rd";

fn with_password(url: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_request_completes_after_sigterm_and_the_process_exits_cleanly() {
    let db = TestDb::create().await;
    assert!(
        db.url().starts_with("postgres://postgres@"),
        "test expects the default admin URL shape"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-proxy"))
        .arg("serve")
        .env("DATABASE_URL", with_password(&db.url()))
        .env("PROXY_HMAC_KEY", KEY_HEX)
        .env("PROXY_AUDIENCE", AUDIENCE)
        .env("PORT", "0")
        .env("PROXY_BIND", "127.0.0.1")
        .env("DB_POOL_MIN_SIZE", "1")
        .env("DB_POOL_MAX_SIZE", "2")
        .env("PROXY_SHUTDOWN_GRACE_SECS", "15")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    {
        let stdout = child.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = addr_tx.send(v["addr"].as_str().unwrap().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the service logs its address");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let key = SigningKey::from_hex(KEY_HEX).unwrap();

    // A caller still on signature format V1 is served, and leaves a warning event.
    let v1 =
        proxy_auth::sign_v1(&key, "GET", "/v1/ping", unix_now(), "legacy-caller-1", b"").unwrap();
    let mut rb = client.get(format!("{base}/v1/ping"));
    for (n, v) in v1.pairs() {
        rb = rb.header(n, v);
    }
    assert_eq!(rb.send().await.unwrap().status(), 200);

    // Hold the request inside the handler with a table lock.
    let locker = db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let body = serde_json::to_vec(&message(
        "SIGTERM1",
        "5511966660000@s.whatsapp.net",
        "x",
        unix_now(),
    ))
    .unwrap();
    let nonce = new_nonce();
    let rid = new_request_id();
    let signed = proxy_auth::sign_v2(
        &key,
        &proxy_auth::Call {
            method: "POST",
            path_and_query: "/v1/messages",
            audience: AUDIENCE,
            timestamp: unix_now(),
            nonce: &nonce,
            request_id: &rid,
            body: &body,
        },
    )
    .unwrap();
    let mut rb = client
        .post(format!("{base}/v1/messages"))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in signed.pairs() {
        rb = rb.header(n, v);
    }
    let in_flight = tokio::spawn(async move { rb.send().await.map(|r| r.status().as_u16()) });

    // Wait until the request holds a pooled connection.
    let started = Instant::now();
    loop {
        let h: serde_json::Value = client
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["pool"]["in_use"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "request never reached the pool"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // New connections are refused once the listener is closed (bounded wait).
    let started = Instant::now();
    loop {
        let fresh = reqwest::Client::new();
        if fresh
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    locker.batch_execute("ROLLBACK").await.unwrap();
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(status, 201);

    let started = Instant::now();
    let exit = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(exit.success(), "{exit:?}");

    // The message was stored.
    let n: i64 = locker
        .query_one(
            "SELECT count(*) FROM messages WHERE provider_message_id = 'SIGTERM1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // Logs: JSON lines, request id propagated, no secrets.
    std::thread::sleep(Duration::from_millis(100));
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{lines:?}"
    );
    let text = lines.join("\n");
    assert!(text.contains("\"stopped\""), "{text}");
    assert!(text.contains("\"request_id\":\"t-"), "{text}");
    let v1_warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"signature_v1\""))
        .collect();
    assert_eq!(v1_warnings.len(), 1, "{text}");
    assert!(v1_warnings[0].contains("\"level\":\"WARN\""), "{text}");
    assert!(v1_warnings[0].contains("legacy-caller-1"), "{text}");
    assert!(
        !text.contains(DB_PASSWORD),
        "database password leaked: {text}"
    );
    assert!(!text.contains(KEY_HEX), "HMAC key leaked: {text}");
}
