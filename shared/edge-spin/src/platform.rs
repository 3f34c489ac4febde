//! The edge-core ports on Spin: key-value store (values in an expiry envelope, counters through
//! `wasi:keyvalue/atomics`), variables, wall clock, randomness, outbound HTTP and stdout logs.

use std::cell::OnceCell;
use std::time::{SystemTime, UNIX_EPOCH};

use edge_core::kv::{self, Envelope};
use edge_core::ports::{
    Clock, HttpClient, KeyValue, LogSink, Platform, PortError, Random, Timer, Variables,
};
use edge_core::{Bytes, Request, Response};
use spin_sdk::key_value::Store;
use spin_sdk::wit::wasi::keyvalue::{atomics, store as wkv};

/// Label of the store in `spin.toml` (`key_value_stores = ["default"]`); runtime-config maps it
/// to SQLite locally or Redis in production.
const STORE: &str = "default";

/// The ports for one Spin request. Spin instantiates the component per request, so nothing
/// here outlives the request; stores are opened on first use only.
pub struct SpinPlatform {
    kv: SpinKv,
    http: SpinHttp,
}

impl SpinPlatform {
    /// Ports for the current request.
    pub fn new() -> Self {
        Self {
            kv: SpinKv::default(),
            http: SpinHttp,
        }
    }
}

impl Default for SpinPlatform {
    fn default() -> Self {
        Self::new()
    }
}

fn unavailable(what: &str, err: impl std::fmt::Debug) -> PortError {
    PortError::Unavailable(format!("spin {what}: {err:?}"))
}

/// Key-value on Spin's store. Values carry their expiry in an [`Envelope`]; counters live only
/// under [`kv::COUNTER_PREFIX`] and are touched only by `atomics::increment` (a counter holds 8
/// little-endian bytes; writing text to it would break the store until Spin restarts).
#[derive(Default)]
pub struct SpinKv {
    store: OnceCell<Store>,
    bucket: OnceCell<wkv::Bucket>,
}

impl SpinKv {
    fn store(&self) -> Result<&Store, PortError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let store = Store::open(STORE).map_err(|e| unavailable("open store", e))?;
        Ok(self.store.get_or_init(|| store))
    }

    fn bucket(&self) -> Result<&wkv::Bucket, PortError> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket);
        }
        let bucket = wkv::open(STORE).map_err(|e| unavailable("open bucket", e))?;
        Ok(self.bucket.get_or_init(|| bucket))
    }
}

impl KeyValue for SpinKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        kv::check_value_key(key)?;
        let store = self.store()?;
        let Some(bytes) = store.get(key).map_err(|e| unavailable("get", e))? else {
            return Ok(None);
        };
        let env = Envelope::decode(&bytes)?;
        if env.is_expired(SpinClock.now_unix_ms()) {
            // Spin's store has no expiry of its own: expired entries go when read.
            store.delete(key).map_err(|e| unavailable("delete", e))?;
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
        self.store()?
            .set(key, &env.encode())
            .map_err(|e| unavailable("set", e))
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        kv::check_value_key(key).or_else(|_| kv::check_counter_key(key))?;
        self.store()?
            .delete(key)
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
        atomics::increment(self.bucket()?, key, delta).map_err(|e| unavailable("increment", e))
    }

    async fn counter(&self, key: &str) -> Result<i64, PortError> {
        kv::check_counter_key(key)?;
        // A plain read of the atomics' value: `increment(key, 0)` would create the counter.
        match self.store()?.get(key).map_err(|e| unavailable("get", e))? {
            None => Ok(0),
            Some(bytes) => kv::counter_from_bytes(&bytes)
                .ok_or_else(|| PortError::Unavailable("stored counter is not an integer".into())),
        }
    }
}

/// Spin variables. Core names are lower snake case, which is what Spin requires.
struct SpinVars;

impl Variables for SpinVars {
    fn get(&self, name: &str) -> Result<Option<String>, PortError> {
        match spin_sdk::variables::get(name) {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) => Ok(Some(value)),
            // Undefined: not declared for this component, or declared without a value.
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            Err(err) => Err(unavailable("variables", err)),
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
        // Always a length: without one spin-sdk streams the body chunked, which some servers
        // (and the e2e suite's recording fakes of third-party APIs) do not take.
        let has_body = !body.is_empty() || parts.method == http::Method::POST;
        if has_body {
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
        }
        let req = http::Request::from_parts(parts, body.to_vec());
        let resp: http::Response<Vec<u8>> = spin_sdk::http::send(req)
            .await
            .map_err(|e| unavailable("outbound http", e))?;
        let (parts, body) = resp.into_parts();
        Ok(http::Response::from_parts(parts, Bytes::from(body)))
    }
}

/// Sleeps on WASI's monotonic clock, driven by spin-sdk's executor (the same event loop that
/// drives outbound HTTP, so a deadline can race a request).
pub struct SpinTimer;

impl Timer for SpinTimer {
    async fn sleep(&self, ms: u64) {
        use wasi::clocks::monotonic_clock;
        let deadline = monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000));
        let mut token: Option<spin_executor::CancelToken> = None;
        std::future::poll_fn(|cx| {
            if monotonic_clock::now() >= deadline {
                if let Some(t) = token.take() {
                    t.cancel();
                }
                return std::task::Poll::Ready(());
            }
            let pollable = monotonic_clock::subscribe_instant(deadline);
            if let Some(t) = token.replace(spin_executor::push_waker_and_get_token(
                pollable,
                cx.waker().clone(),
            )) {
                t.cancel();
            }
            std::task::Poll::Pending
        })
        .await;
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
    const INSTANCE_PER_REQUEST: bool = true;
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
        &SpinVars
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
