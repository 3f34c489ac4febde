//! The edge-core ports on Spin: key-value store (values in an expiry envelope, counters through
//! `wasi:keyvalue/atomics`), variables, wall clock, randomness, outbound HTTP and stdout logs.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use edge_core::kv::{self, Envelope};
use edge_core::ports::{
    Clock, HttpClient, KeyValue, LogSink, Platform, PortError, Random, Timer, Variables,
};
use edge_core::{Request, Response};
use spin_sdk::experimental::wasi::keyvalue::{atomics, store as wkv};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FromResponse, IntoRequest};
use spin_sdk::key_value::Store;
use spin_sdk::wasip3::http::client;

/// Label of the store in `spin.toml` (`key_value_stores = ["default"]`); runtime-config maps it
/// to SQLite locally or Redis in production.
const STORE: &str = "default";

thread_local! {
    /// The store handles of this instance, opened by the first request that needs them and
    /// kept for the instance's later requests (opening is a host call).
    static STORE_HANDLE: OnceCell<Rc<Store>> = const { OnceCell::new() };
    static BUCKET_HANDLE: OnceCell<Rc<wkv::Bucket>> = const { OnceCell::new() };
}

/// The ports for one Spin request. The instance may serve many requests (WASIp3 reuse); what
/// outlives a request is only the store handles above and the configuration.
pub struct SpinPlatform {
    kv: SpinKv,
    http: SpinHttp,
    vars: SpinVars,
}

impl SpinPlatform {
    /// Ports for the current request (the variables port empty: configuration comes from
    /// `crate::config`).
    pub fn new() -> Self {
        Self::with_variables(Fetched::new())
    }

    /// The ports with `vars` (from [`fetch_variables`]) behind the variables port: what the
    /// configuration loader reads.
    pub(crate) fn with_variables(vars: Fetched) -> Self {
        Self {
            kv: SpinKv,
            http: SpinHttp,
            vars: SpinVars { fetched: vars },
        }
    }
}

impl Default for SpinPlatform {
    fn default() -> Self {
        Self::new()
    }
}

/// Variables as fetched: each name's value (`None` when unset or empty) or Spin's failure.
pub(crate) type Fetched = HashMap<String, Result<Option<String>, PortError>>;

/// Fetches each of `names` from Spin's variables (async host calls), each once.
pub(crate) async fn fetch_variables(names: &[String]) -> Fetched {
    let mut out = HashMap::with_capacity(names.len());
    for name in names {
        let value = match spin_sdk::variables::get(name).await {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) => Ok(Some(value)),
            // Undefined: not declared for this component, or declared without a value.
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            Err(err) => Err(unavailable("variables", err)),
        };
        out.insert(name.clone(), value);
    }
    out
}

fn unavailable(what: &str, err: impl std::fmt::Debug) -> PortError {
    PortError::Unavailable(format!("spin {what}: {err:?}"))
}

/// Key-value on Spin's store. Values carry their expiry in an [`Envelope`]; counters live only
/// under [`kv::COUNTER_PREFIX`] and are touched only by `atomics::increment` (a counter holds 8
/// little-endian bytes; writing text to it would break the store until Spin restarts).
#[derive(Default)]
pub struct SpinKv;

/// This instance's handle of the store (`spin:key-value`), opened on first use.
async fn store() -> Result<Rc<Store>, PortError> {
    if let Some(store) = STORE_HANDLE.with(|h| h.get().cloned()) {
        return Ok(store);
    }
    let store = Rc::new(
        Store::open(STORE)
            .await
            .map_err(|e| unavailable("open store", e))?,
    );
    Ok(STORE_HANDLE.with(|h| h.get_or_init(|| store).clone()))
}

/// This instance's handle of the same store for `wasi:keyvalue/atomics`, opened on first use.
fn bucket() -> Result<Rc<wkv::Bucket>, PortError> {
    if let Some(bucket) = BUCKET_HANDLE.with(|h| h.get().cloned()) {
        return Ok(bucket);
    }
    let bucket = Rc::new(wkv::open(STORE).map_err(|e| unavailable("open bucket", e))?);
    Ok(BUCKET_HANDLE.with(|h| h.get_or_init(|| bucket).clone()))
}

impl KeyValue for SpinKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        kv::check_value_key(key)?;
        let store = store().await?;
        let Some(bytes) = store.get(key).await.map_err(|e| unavailable("get", e))? else {
            return Ok(None);
        };
        let env = Envelope::decode(&bytes)?;
        if env.is_expired(SpinClock.now_unix_ms()) {
            // Spin's store has no expiry of its own: expired entries go when read.
            store
                .delete(key)
                .await
                .map_err(|e| unavailable("delete", e))?;
            return Ok(None);
        }
        Ok(Some(env.payload))
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), PortError> {
        kv::check_value_key(key)?;
        kv::check_value(value)?;
        let env = Envelope {
            expires_at_ms,
            payload: value.to_vec(),
        };
        store()
            .await?
            .set(key, env.encode())
            .await
            .map_err(|e| unavailable("set", e))
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        kv::check_value_key(key).or_else(|_| kv::check_counter_key(key))?;
        store()
            .await?
            .delete(key)
            .await
            .map_err(|e| unavailable("delete", e))
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        _expires_at_ms: Option<u64>,
    ) -> Result<i64, PortError> {
        kv::check_counter_key(key)?;
        // No expiry in Spin's store: `edge_core::expiry` indexes and sweeps counters.
        atomics::increment(&*bucket()?, key, delta).map_err(|e| unavailable("increment", e))
    }

    async fn counter(&self, key: &str) -> Result<i64, PortError> {
        kv::check_counter_key(key)?;
        // A plain read of the atomics' value: `increment(key, 0)` would create the counter.
        match store()
            .await?
            .get(key)
            .await
            .map_err(|e| unavailable("get", e))?
        {
            None => Ok(0),
            Some(bytes) => kv::counter_from_bytes(&bytes)
                .ok_or_else(|| PortError::Unavailable("stored counter is not an integer".into())),
        }
    }
}

/// Spin variables, as [`fetch_variables`] fetched them. Spin's variables are async host calls
/// on WASIp3 and this port is not, so only what was fetched is readable: the names
/// [`edge_core::config::variables_read`] lists, which are all the loader reads. Any other name
/// is a contract error, so that a new reader cannot silently see "unset".
#[derive(Default)]
struct SpinVars {
    fetched: Fetched,
}

impl Variables for SpinVars {
    fn get(&self, name: &str) -> Result<Option<String>, PortError> {
        match self.fetched.get(name) {
            Some(value) => value.clone(),
            None => Err(PortError::Contract(format!(
                "variable {name} was not fetched (edge_core::config::variables_read)"
            ))),
        }
    }
}

/// WASI wall clock.
struct SpinClock;

impl Clock for SpinClock {
    fn now_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// WASI random (`wasi:random`), through getrandom.
struct SpinRandom;

impl Random for SpinRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), PortError> {
        getrandom::fill(buf).map_err(|e| unavailable("random", e))
    }
}

/// Outbound HTTP through Spin; hosts must be in `allowed_outbound_hosts`.
pub struct SpinHttp;

impl HttpClient for SpinHttp {
    async fn send(&self, req: Request) -> Result<Response, PortError> {
        let (mut parts, body) = req.into_parts();
        // Always a length: without one the body goes out chunked, which some servers (and the
        // e2e suite's recording fakes of third-party APIs) do not take.
        let has_body = !body.is_empty() || parts.method == http::Method::POST;
        if has_body {
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
        }
        let req = http::Request::from_parts(parts, http_body_util::Full::new(body))
            .into_request()
            .map_err(|e| unavailable("outbound http", e))?;
        // Converting spawned the task that writes the body. Requests run in spawned tasks
        // (`crate::serve`), and wit-bindgen 0.51's executor queues a task spawned from a
        // spawned task without waking itself: with a `Content-Length` the host waits for the
        // body, the body writer waits to be polled, and the call hangs until its deadline
        // (seen on Spin 4.0.2). Yielding to the executor makes it take up and poll the writer.
        yield_to_executor().await;
        let resp = client::send(req)
            .await
            .and_then(spin_sdk::http::Response::from_response)
            .map_err(|e| unavailable("outbound http", e))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .bytes()
            .await
            .map_err(|e| unavailable("outbound http body", e))?;
        Ok(http::Response::from_parts(parts, body))
    }
}

/// Returns to the executor so that it takes up what was spawned meanwhile: `Pending` twice,
/// waking itself each time. Once is not enough: the executor keeps its tasks in a
/// `FuturesUnordered` (futures-util 0.3), which polls a task that woke itself again at once,
/// and hands control back (where wit-bindgen adds the spawned tasks) only after two such
/// wake-ups or a turn through every task.
async fn yield_to_executor() {
    let mut pending = 2;
    std::future::poll_fn(|cx| {
        if pending == 0 {
            return std::task::Poll::Ready(());
        }
        pending -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// Sleeps on WASI's monotonic clock (`wait-for`, a WASIp3 async host call on the same event
/// loop as outbound HTTP, so a deadline can race a request).
pub struct SpinTimer;

impl Timer for SpinTimer {
    async fn sleep(&self, ms: u64) {
        spin_sdk::wasip3::clocks::monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
    }
}

/// Log lines to stdout, which Spin collects per component.
struct SpinLog;

impl LogSink for SpinLog {
    fn write(&self, line: &str) {
        println!("{line}");
    }
}

impl Platform for SpinPlatform {
    const RUNTIME: &'static str = "spin";
    type Kv = SpinKv;
    type Http = SpinHttp;
    type Timer = SpinTimer;
    fn timer(&self) -> &SpinTimer {
        &SpinTimer
    }
    fn kv(&self) -> &SpinKv {
        &self.kv
    }
    fn vars(&self) -> &dyn Variables {
        &self.vars
    }
    fn clock(&self) -> &dyn Clock {
        &SpinClock
    }
    fn random(&self) -> &dyn Random {
        &SpinRandom
    }
    fn http(&self) -> &SpinHttp {
        &self.http
    }
    fn log(&self) -> &dyn LogSink {
        &SpinLog
    }
}
