//! End-to-end harness: starts a real runtime (`wrangler dev` or `spin up`) serving the built
//! wasm through `scripts/dev`, on a free port, waits until it answers, and stops every process
//! it started when dropped, whether the cases passed or not. Cases speak HTTP only.

pub mod fakes;
pub mod stubs;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a runtime may take to start: longer than `scripts/dev`'s own start budget
/// (`--start-timeout`, 300 s by default), so a slow start ends with its report of what hung.
pub const START_TIMEOUT: Duration = Duration::from_secs(330);

/// Lines of `scripts/dev`'s stderr kept for a failure report.
const STDERR_KEPT: usize = 80;
/// Lines of each process log quoted in a failure report.
const LOG_TAIL: usize = 12;

/// Runtimes the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cloudflare's local runtime (`wrangler dev`, workerd).
    Wrangler,
    /// Fermyon/SpinKube's `spin up`.
    Spin,
}

impl Kind {
    /// Parses `wrangler` or `spin`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "wrangler" => Some(Self::Wrangler),
            "spin" => Some(Self::Spin),
            _ => None,
        }
    }

    /// The name used on the command line and in case names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wrangler => "wrangler",
            Self::Spin => "spin",
        }
    }

    /// `Some(reason)` when this runtime cannot run here, so its cases are reported skipped.
    pub fn unavailable_reason(self) -> Option<String> {
        let root = repo_root();
        match self {
            Self::Spin if !on_path("spin") => Some("spin not on PATH".into()),
            Self::Spin if !root.join("dist/spin/health.wasm").exists() => {
                Some("dist/spin not built (run scripts/build spin)".into())
            }
            Self::Wrangler if !root.join("node_modules/.bin/wrangler").exists() => {
                Some("wrangler not installed (run scripts/bootstrap)".into())
            }
            Self::Wrangler if !root.join("dist/workers/health/index.js").exists() => {
                Some("dist/workers not built (run scripts/build worker)".into())
            }
            _ => None,
        }
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// A running runtime. Dropping it stops the whole process group it started.
pub struct Runtime {
    /// Which runtime.
    pub kind: Kind,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Where this run's logs are written (one file per process).
    pub logs: PathBuf,
    /// Base URL of the test-only key-value probe (`tests/kv-probe`).
    pub probe: String,
    /// The real pg-proxy this runtime's functions use, for profiles that need one.
    pub proxy: Option<std::sync::Mutex<ProxyServer>>,
    /// Key-value state of this run (a temporary directory).
    state: PathBuf,
    /// Keep logs and state after teardown (set by [`Runtime::keep_files`]).
    keep: bool,
    child: std::sync::Mutex<Child>,
    /// How it was started, for [`Runtime::restart_with`].
    launch: Launch,
    /// The last lines `scripts/dev` wrote to stderr, each with the seconds since it started.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The arguments a runtime was started with.
#[derive(Clone)]
struct Launch {
    port: u16,
    vars: Vec<(String, String)>,
    with_probe: bool,
    dev_args: Vec<String>,
}

impl Runtime {
    /// Starts `kind` through `scripts/dev --no-build --no-proxy [--with-probe] [dev_args]` on a
    /// free port, with extra environment `vars`, and waits up to `timeout` for it to serve
    /// `/health`.
    pub fn start(
        kind: Kind,
        vars: &[(&str, &str)],
        with_probe: bool,
        dev_args: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let state = std::env::temp_dir().join(format!("assistant-edge-e2e-{port}"));
        let launch = Launch {
            port,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            with_probe,
            dev_args: dev_args.iter().map(|a| a.to_string()).collect(),
        };
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (child, rx) = Self::spawn(kind, &launch, &state, &stderr)?;
        let runtime = Self {
            kind,
            base: format!("http://127.0.0.1:{port}"),
            logs: repo_root().join(format!(".dev/run-{port}/logs")),
            probe: String::new(),
            proxy: None,
            state,
            keep: false,
            child: std::sync::Mutex::new(child),
            launch,
            stderr,
        };
        let deadline = Instant::now() + timeout;
        Self::wait_ready(runtime, rx, deadline, timeout)
    }

    fn spawn(
        kind: Kind,
        launch: &Launch,
        state: &Path,
        stderr_kept: &Arc<Mutex<VecDeque<String>>>,
    ) -> Result<(Child, mpsc::Receiver<String>), String> {
        let root = repo_root();
        let mut cmd = Command::new(root.join("scripts/dev"));
        cmd.args(["--runtime", kind.name(), "--port", &launch.port.to_string()])
            .args(["--no-build", "--no-proxy"])
            .args(launch.with_probe.then_some("--with-probe"))
            .args(&launch.dev_args)
            .env("EDGE_STATE_DIR", state)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &launch.vars {
            cmd.env(k, v);
        }
        // Its own process group, so teardown reaches wrangler's node and workerd children.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| format!("spawn scripts/dev: {e}"))?;
        let stdout = child.stdout.take();
        // Its progress and errors, timed, for the report of a start that fails (CI keeps no
        // files of the run, so the report is all there is).
        if let Some(stderr) = child.stderr.take() {
            let kept = Arc::clone(stderr_kept);
            let started = Instant::now();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() == STDERR_KEPT {
                        kept.pop_front();
                    }
                    kept.push_back(format!("{:6.1}s {line}", started.elapsed().as_secs_f64()));
                }
            });
        }
        // scripts/dev prints `PROBE <url>` then `READY <url>` on stdout once everything answers.
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut probe = String::new();
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("PROBE ") {
                        probe = url.trim().to_owned();
                    }
                    if line.starts_with("READY ") {
                        let _ = tx.send(std::mem::take(&mut probe));
                    }
                }
            });
        }
        Ok((child, rx))
    }

    /// Stops the runtime and starts it again on the same port and the same key-value state,
    /// with `changes` applied to its variables (`None` removes one). For cases that need a
    /// configuration change across a restart, such as a key rotation.
    pub fn restart_with(&self, changes: &[(&str, Option<&str>)]) -> Result<(), String> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stop_group(&mut child);
        let mut launch = self.launch.clone();
        for (name, value) in changes {
            launch.vars.retain(|(k, _)| k != name);
            if let Some(v) = value {
                launch.vars.push((name.to_string(), v.to_string()));
            }
        }
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let (next, rx) = Self::spawn(self.kind, &launch, &self.state, &self.stderr)?;
        *child = next;
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "{} did not come back after a restart{}",
                self.kind.name(),
                self.failure_report()
            )),
        }
    }

    fn wait_ready(
        mut runtime: Self,
        rx: mpsc::Receiver<String>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Self, String> {
        loop {
            if let Ok(probe) = rx.recv_timeout(Duration::from_millis(250)) {
                runtime.probe = probe;
                return Ok(runtime);
            }
            let exited = runtime
                .child
                .lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                runtime.keep = true;
                return Err(format!(
                    "scripts/dev exited with {status} before ready{}",
                    runtime.failure_report()
                ));
            }
            if Instant::now() > deadline {
                runtime.keep = true;
                return Err(format!(
                    "{} did not become ready within {timeout:?}{}",
                    runtime.kind.name(),
                    runtime.failure_report()
                ));
            }
        }
    }

    /// What a failed start leaves to go on: where the logs are, `scripts/dev`'s last stderr
    /// lines (timed) and the last lines of each process log.
    fn failure_report(&self) -> String {
        let mut report = format!("; logs in {}", self.logs.display());
        let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        report.push_str("\n--- scripts/dev stderr (seconds since start)");
        for line in stderr.iter() {
            report.push_str("\n  ");
            report.push_str(line);
        }
        for file in self.log_files() {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            report.push_str(&format!(
                "\n--- {name} (last {LOG_TAIL} of {} lines)",
                lines.len()
            ));
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                report.push_str("\n  ");
                report.push_str(line);
            }
        }
        report
    }

    /// The proxy of this runtime; panics in a profile that has none (a suite bug).
    pub fn proxy(&self) -> std::sync::MutexGuard<'_, ProxyServer> {
        match &self.proxy {
            Some(p) => p.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            None => panic!("this profile runs without a proxy"),
        }
    }

    /// Keep this run's logs and state on disk after teardown (for a failed run).
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// Full URL of `path` on this runtime.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The runtime's process logs (one file per process), by name.
    fn log_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Every log line written so far by the runtime's processes.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for file in self.log_files() {
            if let Ok(text) = std::fs::read_to_string(file) {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            stop_group(&mut child);
        }
        if self.keep {
            eprintln!(
                "e2e: {} logs kept in {}",
                self.kind.name(),
                self.logs.display()
            );
        } else {
            if let Some(run_dir) = self.logs.parent() {
                let _ = std::fs::remove_dir_all(run_dir);
            }
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

/// Stops a `scripts/dev` process group: TERM, up to 10 s, then KILL.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever of the group outlived its leader; usually nothing is left, and kill's
    // "No such process" would only be noise in the test output.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// A port nothing listens on right now, picked at random below the kernel's ephemeral range
/// (32768+), where outbound connections cannot take it before the runtime binds it (ports from
/// `bind(0)` are ephemeral ones, and workerd failed to start on one that had been taken).
fn free_port() -> Result<u16, String> {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..500 {
        let mut h = seed.build_hasher();
        h.write_u32(attempt);
        let port = 10_000 + (h.finish() % 22_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port in 10000-32000".into())
}

/// An HTTP client that returns 4xx/5xx as responses, not errors.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One request a [`FakeServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request line method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes as text.
    pub body: String,
}

/// Reads one HTTP/1.1 request (Content-Length or chunked framing: a real server takes both,
/// and the body recorded is the decoded one); `None` when the connection ends first.
pub(crate) fn read_request(stream: &mut std::net::TcpStream) -> Option<Recorded> {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let mut raw = buf[end + 4..].to_vec();
    let body = loop {
        if chunked {
            if let Some(d) = decode_chunked(&raw) {
                break d;
            }
        } else if raw.len() >= length {
            break raw;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break raw,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    };
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Decodes a complete chunked body, or `None` while the terminating chunk has not arrived.
fn decode_chunked(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + raw.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(at..at + size)?);
        at += size + 2;
    }
}

/// A tiny HTTP server on a free loopback port that records every request and answers 200 `{}`:
/// the stand-in for a third-party API (Sentry here), so tests assert on what really went out.
pub struct FakeServer {
    /// Port it listens on.
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Starts listening; the server lives until the test process exits.
    pub fn start() -> Result<Self, String> {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let Some(recorded) = read_request(&mut stream) else {
                    continue;
                };
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
                if let Ok(mut all) = sink.lock() {
                    all.push(recorded);
                }
            }
        });
        Ok(Self { port, received })
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A real pg-proxy (`services/pg-proxy/target/debug/pg-proxy`, built by `scripts/build
/// --proxy`) on a free loopback port with a fresh Postgres database of its own, started and
/// stopped by the suite itself so cases can take it away and bring it back. The functions
/// reach it through `PROXY_URL` and sign with [`ProxyServer::HMAC_KEY`].
pub struct ProxyServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its database (dropped when the server is dropped).
    pub database: String,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl ProxyServer {
    /// The suite's signing key (random, used by no deployment).
    pub const HMAC_KEY: &'static str =
        "5b1f0d6e0c3a4e7d9b2f81a6c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5";

    fn binary() -> PathBuf {
        repo_root().join("services/pg-proxy/target/debug/pg-proxy")
    }

    /// Why a proxy cannot run here, if it cannot.
    pub fn unavailable_reason() -> Option<String> {
        if !Self::binary().exists() {
            return Some("pg-proxy not built (run scripts/build --proxy)".into());
        }
        let ok = Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
            .status()
            .is_ok_and(|s| s.success());
        (!ok).then(|| "PostgreSQL not answering on 127.0.0.1:5432".into())
    }

    fn admin_url(db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{db}")
    }

    /// Creates a fresh database and starts the proxy on it.
    pub fn start() -> Result<Self, String> {
        let port = free_port()?;
        let database = format!("e2e_proxy_{}_{port}", std::process::id());
        psql("postgres", &format!("CREATE DATABASE \"{database}\""))?;
        let log = std::env::temp_dir().join(format!("assistant-edge-e2e-proxy-{port}.log"));
        let mut server = Self {
            url: format!("http://127.0.0.1:{port}"),
            database,
            port,
            log,
            child: None,
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts the process again after [`ProxyServer::stop`] (same port, same database).
    pub fn resume(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(Self::binary())
            .arg("serve")
            .env("DATABASE_URL", Self::admin_url(&self.database))
            .env("PROXY_HMAC_KEY", Self::HMAC_KEY)
            .env("PORT", self.port.to_string())
            .env("PROXY_BIND", "127.0.0.1")
            .env("PROXY_AUDIENCE", "127.0.0.1")
            .env("ENVIRONMENT", "development")
            .env("DB_POOL_MIN_SIZE", "2")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn pg-proxy: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if client()
                .get(format!("{}/api/v1/health", self.url))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "pg-proxy did not answer within 60 s; log {}",
            self.log.display()
        ))
    }

    /// Stops the process (SIGKILL: an outage, not a shutdown); the database stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the proxy's `create-user` (password on stdin, never argv).
    pub fn create_user(&self, username: &str, password: &str, role: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new(Self::binary())
            .args([
                "create-user",
                "--username",
                username,
                "--role",
                role,
                "--password-stdin",
            ])
            .env("DATABASE_URL", Self::admin_url(&self.database))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn pg-proxy create-user: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}").map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "create-user {username}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// One SQL query on the proxy's database, rows as `|`-separated text (for assertions on
    /// what was stored, e.g. audit events).
    pub fn query(&self, sql: &str) -> Result<Vec<String>, String> {
        psql(&self.database, sql)
    }

    /// The proxy's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop();
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database),
        );
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs `sql` with psql as the postgres user on `db`; rows as `|`-separated lines.
fn psql(db: &str, sql: &str) -> Result<Vec<String>, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-AtX",
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}
