//! The ports: everything a function needs from its platform, as traits with written contracts.
//!
//! Adapters implement them for Spin (`edge-spin`) and Cloudflare Workers (`edge-worker`);
//! [`crate::memory`] implements them in memory for native tests and obeys the same contracts.
//! Async methods carry no `Send` bound on purpose: Workers futures are not `Send`, and every
//! runtime here drives one request on one thread.
#![allow(async_fn_in_trait)]

use std::fmt;

use crate::{Request, Response};

/// Why a port operation failed. Carries a short, secret-free description for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// The backing service could not be reached or refused the operation. Callers treat this as
    /// "unavailable" (503): retrying later may succeed.
    Unavailable(String),
    /// The caller broke the port's contract (for example a counter key without the counter
    /// prefix). A bug, never a client error.
    Contract(String),
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "backend unavailable: {why}"),
            Self::Contract(why) => write!(f, "port contract violated: {why}"),
        }
    }
}

impl std::error::Error for PortError {}

/// Key-value storage for sessions and rate counters.
///
/// # Contract (every adapter, and [`crate::memory::MemoryKv`])
/// - Keys are 1..=[`crate::kv::MAX_KEY_LEN`] bytes of printable ASCII. Value keys must not
///   start with [`crate::kv::COUNTER_PREFIX`]; counter keys must. The two namespaces never mix:
///   on Spin, incrementing a key that holds a plain value panics inside the host and breaks the
///   store until restart, so adapters reject the mix with [`PortError::Contract`] before it
///   reaches the host ([`crate::kv::check_value_key`], [`crate::kv::check_counter_key`]).
/// - `get` never returns a value whose expiry (set by `set`) has passed, measured on the
///   adapter's clock. Expired entries are removed eventually, not necessarily at expiry.
/// - `increment` is atomic: N concurrent increments by 1 of the same key end at exactly N more
///   and each caller sees a distinct result. A counter that does not exist starts at 0.
/// - Counter expiry only bounds storage; correctness never depends on it, so callers use
///   time-windowed keys and create counters through [`crate::expiry::increment`]. Workers: an
///   alarm deletes the counter at its expiry ([`KeyValue::EXPIRES_COUNTERS`]). Spin (no expiry
///   in its store): [`crate::expiry`] indexes counters by expiry and sweeps them.
/// - Consistency: strong per key on both platforms. Spin: the key-value store of the instance
///   (SQLite locally, Redis in production), atomics via `wasi:keyvalue/atomics`. Workers: one
///   Durable Object per key, single-threaded, so reads see every completed write.
/// - Errors: [`PortError::Unavailable`] when the backend cannot be reached;
///   [`PortError::Contract`] for a malformed key or a value over [`crate::kv::MAX_VALUE_LEN`].
pub trait KeyValue {
    /// Whether the store deletes counters at their expiry itself (the Durable Object's alarm).
    /// Where it does not, [`crate::expiry`] keeps an index and sweeps them.
    const EXPIRES_COUNTERS: bool = false;
    /// The value stored under `key`, or `None` if absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;
    /// Stores `value` under `key`, replacing any earlier value. With `expires_at_ms` (unix
    /// milliseconds) the entry reads as absent from that instant on.
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), PortError>;
    /// Removes `key` (value or counter). Removing an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<(), PortError>;
    /// Atomically adds `delta` to the counter `key` and returns the new value. `expires_at_ms`
    /// (unix ms) allows the store to drop the counter from then on (see the contract above).
    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expires_at_ms: Option<u64>,
    ) -> Result<i64, PortError>;
    /// The value of the counter `key`: 0 when it does not exist or has expired. A read only:
    /// unlike `increment(key, 0, ..)` it never creates the counter, so reading a counter that
    /// no request has raised leaves nothing to expire or sweep.
    async fn counter(&self, key: &str) -> Result<i64, PortError>;
}

/// Configuration variables and secrets.
///
/// # Contract
/// `Ok(None)` when the variable is not set (or set to the empty string: platforms differ in
/// whether an empty variable can exist, so the core treats both alike). `Err` only when the
/// platform itself failed. Values may be secrets: callers never log them.
pub trait Variables {
    /// The value of variable `name` (lower snake case, as Spin requires; adapters map it to
    /// their own naming).
    fn get(&self, name: &str) -> Result<Option<String>, PortError>;
}

/// Wall-clock time.
///
/// # Contract
/// Unix time in milliseconds. Not guaranteed monotonic; on Workers it only advances across
/// I/O, so durations measured with it are coarse.
pub trait Clock {
    /// Milliseconds since the unix epoch.
    fn now_unix_ms(&self) -> u64;
}

/// Waiting.
///
/// # Contract
/// `sleep(ms)` completes after at least `ms` milliseconds of the platform's time (Spin: the
/// monotonic clock; Workers: `setTimeout`, which only advances across I/O; tests: at once,
/// moving the fixed clock forward). Dropping the future cancels the wait. Used for deadlines
/// ([`crate::timeout`]) and retry jitter, never to poll.
pub trait Timer {
    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: u64);
}

/// Cryptographically secure randomness.
///
/// # Contract
/// Fills `buf` entirely from a CSPRNG, or fails with [`PortError::Unavailable`]; never returns
/// predictable bytes.
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), PortError>;
}

/// Outbound HTTP.
///
/// # Contract
/// Sends the request as given (absolute URI) and returns whatever status the server answered:
/// a 4xx or 5xx is `Ok`. `Err(PortError::Unavailable)` for connection failures, timeouts and
/// hosts the platform does not allow (Spin's `allowed_outbound_hosts`). A request body is
/// sent with a `Content-Length`, never chunked. No deadline of its own: callers bound it
/// with [`crate::timeout::within`], and dropping the future abandons the request.
pub trait HttpClient {
    /// Sends `req` and returns the full response.
    async fn send(&self, req: Request) -> Result<Response, PortError>;
}

/// Where log lines go.
///
/// # Contract
/// One call, one line (the sink adds the newline). Lines are already redacted JSON; the sink
/// never fails (a logging failure must not fail a request).
pub trait LogSink {
    /// Writes one complete log line.
    fn write(&self, line: &str);
}

/// Everything a function gets from its platform.
pub trait Platform {
    /// Which runtime this is (`spin`, `workers`; `memory` in tests), for build information in
    /// health reports. Never used to branch behaviour: that is what the ports are for.
    const RUNTIME: &'static str;
    /// Whether every request runs in a fresh instance (as Spin ran WASIp2 components): work
    /// meant to happen once per instance then happens on every request, so instance-level
    /// reports (configuration warnings) are sampled rather than repeated on every request.
    /// Both adapters here reuse instances (Workers isolates; Spin's WASIp3 instances).
    const INSTANCE_PER_REQUEST: bool = false;
    /// The key-value adapter.
    type Kv: KeyValue;
    /// The outbound HTTP adapter.
    type Http: HttpClient;
    /// The timer adapter.
    type Timer: Timer;
    /// Key-value storage.
    fn kv(&self) -> &Self::Kv;
    /// Variables and secrets.
    fn vars(&self) -> &dyn Variables;
    /// Wall clock.
    fn clock(&self) -> &dyn Clock;
    /// Randomness.
    fn random(&self) -> &dyn Random;
    /// Outbound HTTP.
    fn http(&self) -> &Self::Http;
    /// Log output.
    fn log(&self) -> &dyn LogSink;
    /// Waiting (deadlines, jitter).
    fn timer(&self) -> &Self::Timer;
    /// The rate-limit leases of this instance, where an instance serves many requests
    /// (Workers): non-authentication routes then take their counts in leases
    /// ([`crate::ratelimit::check_leased`]). `None` (the default): one exact increment per
    /// request.
    fn rate_leases(&self) -> Option<&crate::ratelimit::Leases> {
        None
    }
}
