//! Test harness: a fresh database per test, the service started in-process on port 0 (or
//! the real binary for signal and CLI tests), and a client that signs requests like the
//! edge does. Databases are dropped when the [`TestApp`] / [`TestDb`] is dropped, even if
//! the test panicked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pg_proxy::config::ServeConfig;
use pg_proxy::server::{self, Running};
use proxy_auth::SigningKey;
use serde_json::Value;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Admin connection string of the local Postgres (override with PG_PROXY_TEST_ADMIN_URL).
pub fn admin_url() -> String {
    std::env::var("PG_PROXY_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The admin URL with another database name.
pub fn url_for(db: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

async fn admin_exec(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the local Postgres (is it running?)");
    let handle = tokio::spawn(conn);
    client.batch_execute(sql).await.expect(sql);
    drop(client);
    let _ = handle.await;
}

/// A fresh, empty database, dropped on drop.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!(
            "pgproxy_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        admin_exec(&format!("CREATE DATABASE \"{name}\"")).await;
        Self { name }
    }

    pub fn url(&self) -> String {
        url_for(&self.name)
    }

    /// A direct connection to this database (not through the proxy).
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside a runtime; a separate thread with its own runtime avoids
        // blocking-in-async panics and works after a test panic too.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(admin_exec(&sql));
        })
        .join();
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn new_request_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t-{}-{n}-{nanos}", std::process::id())
}

/// The audience every test server is configured with (PROXY_AUDIENCE).
pub const AUDIENCE: &str = "proxy.test";

/// A fresh random 128-bit nonce, as the edge makes one per call.
pub fn new_nonce() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    proxy_auth::nonce_hex(&bytes).unwrap()
}

pub const KEY_HEX: &str = "4b6579466f7254657374734f6e6c792d4b6579466f7254657374734f6e6c7921";
pub const OLD_KEY_HEX: &str = "4f6c644b6579466f7254657374734f6e6c792d4f6c644b6579466f7254657374";

/// Settings a test may change before the server starts.
#[derive(Clone)]
pub struct Opts {
    pub env: Vec<(&'static str, String)>,
    /// Appended to the test database's URL, e.g. `?sslmode=require`.
    pub db_url_suffix: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            env: vec![
                ("DB_POOL_MIN_SIZE", "1".into()),
                ("DB_POOL_MAX_SIZE", "4".into()),
                ("DB_POOL_MAX_OVERFLOW", "4".into()),
                ("DB_POOL_TIMEOUT", "5".into()),
                ("PROXY_SHUTDOWN_GRACE_SECS", "5".into()),
            ],
            db_url_suffix: "",
        }
    }
}

impl Opts {
    pub fn db_url_suffix(mut self, suffix: &'static str) -> Self {
        self.db_url_suffix = suffix;
        self
    }

    pub fn set(mut self, name: &'static str, value: &str) -> Self {
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.to_owned()));
        self
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub key: SigningKey,
    running: Option<Running>,
    // Declared last: dropped after the server.
    pub db: TestDb,
}

pub fn serve_config(db: &TestDb, opts: &Opts) -> ServeConfig {
    let mut env: Vec<(&str, String)> = vec![
        (
            "DATABASE_URL",
            format!("{}{}", db.url(), opts.db_url_suffix),
        ),
        ("PROXY_HMAC_KEY", KEY_HEX.into()),
        ("PROXY_AUDIENCE", AUDIENCE.into()),
        ("PORT", "0".into()),
        ("PROXY_BIND", "127.0.0.1".into()),
    ];
    env.extend(opts.env.iter().cloned());
    let lookup = move |name: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    ServeConfig::from_env(&lookup).expect("valid test configuration")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Opts::default()).await
    }

    pub async fn spawn_with(opts: Opts) -> Self {
        let db = TestDb::create().await;
        let cfg = serve_config(&db, &opts);
        let running = server::start(cfg).await.expect("server starts");
        Self {
            addr: running.addr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            key: SigningKey::from_hex(KEY_HEX).unwrap(),
            running: Some(running),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A V2-signed request builder with a fresh request id and nonce.
    pub fn signed(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        self.signed_with(&self.key, method, path, body, unix_now(), &new_request_id())
    }

    /// A V2-signed request with the given key, timestamp and correlation id (fresh nonce).
    pub fn signed_with(
        &self,
        key: &SigningKey,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ts: i64,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        self.signed_v2(
            key,
            AUDIENCE,
            method,
            path,
            body,
            ts,
            &new_nonce(),
            request_id,
        )
    }

    /// A V2-signed request with every signed part chosen by the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn signed_v2(
        &self,
        key: &SigningKey,
        audience: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ts: i64,
        nonce: &str,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let signed = proxy_auth::sign_v2(
            key,
            &proxy_auth::Call {
                method,
                path_and_query: path,
                audience,
                timestamp: ts,
                nonce,
                request_id,
                body: &bytes,
            },
        )
        .unwrap();
        self.with_headers(method, path, bytes, body.is_some(), &signed)
    }

    /// A V2-signed request whose body is sent as given, under any content type.
    pub fn signed_raw(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> reqwest::RequestBuilder {
        let (nonce, rid) = (new_nonce(), new_request_id());
        let signed = proxy_auth::sign_v2(
            &self.key,
            &proxy_auth::Call {
                method,
                path_and_query: path,
                audience: AUDIENCE,
                timestamp: unix_now(),
                nonce: &nonce,
                request_id: &rid,
                body: &bytes,
            },
        )
        .unwrap();
        self.with_headers(method, path, Vec::new(), false, &signed)
            .header("content-type", content_type)
            .body(bytes)
    }

    /// A V1-signed request (the request id is the nonce).
    pub fn signed_v1(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let signed =
            proxy_auth::sign_v1(&self.key, method, path, unix_now(), request_id, &bytes).unwrap();
        self.with_headers(method, path, bytes, body.is_some(), &signed)
    }

    fn with_headers(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
        json: bool,
        signed: &proxy_auth::SignedHeaders,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method.parse().unwrap(), self.url(path));
        for (name, value) in signed.pairs() {
            rb = rb.header(name, value);
        }
        if json {
            rb = rb.header("content-type", "application/json").body(bytes);
        }
        rb
    }

    /// Sends a signed request and returns (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let resp = self
            .signed(method, path, body.as_ref())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let json = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, json)
    }

    pub async fn health(&self) -> Value {
        self.client
            .get(self.url("/api/v1/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls the health pool figures until `pred` holds, for at most `limit`.
    pub async fn wait_for_pool(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let pool = self.health().await["pool"].clone();
            if pred(&pool) {
                return pool;
            }
            assert!(
                started.elapsed() < limit,
                "pool never reached the expected state; last: {pool}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pool_stats(&self) -> pg_proxy::pool::PoolStats {
        self.running.as_ref().unwrap().pool.stats()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

/// Asserts the documented error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let e = &body["error"];
    assert!(e["message"].is_string(), "no message in {body}");
    assert!(e["request_id"].is_string(), "no request_id in {body}");
    e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
}

pub fn message(id: &str, contact: &str, body: &str, sent_at: i64) -> Value {
    serde_json::json!({
        "provider_message_id": id,
        "instance": "kumon-main",
        "contact": contact,
        "direction": "inbound",
        "body": body,
        "push_name": "Ana",
        "sent_at": sent_at,
    })
}
