//! In-memory implementations of every port, for native tests. They obey the contracts written
//! on the traits in [`crate::ports`] (key rules, expiry on the platform clock, atomic counters),
//! so a test that passes here exercises the same rules the adapters enforce.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::kv::{self, Envelope};
use crate::ports::{
    Clock, HttpClient, KeyValue, LogSink, Platform, PortError, Random, Timer, Variables,
};
use crate::{Request, Response};

/// A clock that only moves when told to. Cloning shares the time.
#[derive(Debug, Clone)]
pub struct FixedClock(Rc<Cell<u64>>);

impl FixedClock {
    /// A clock reading `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Self(Rc::new(Cell::new(now_ms)))
    }
    /// Moves time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Default for FixedClock {
    /// 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::at(1_767_225_600_000)
    }
}

impl Clock for FixedClock {
    fn now_unix_ms(&self) -> u64 {
        self.0.get()
    }
}

/// Deterministic "randomness" for tests: a counter run through a mixing function. Never use
/// outside tests: it is predictable by design.
#[derive(Debug, Default)]
pub struct SeqRandom(Cell<u64>);

impl Random for SeqRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), PortError> {
        for byte in buf.iter_mut() {
            let n = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.0.set(n);
            let mut z = n;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *byte = (z ^ (z >> 31)) as u8;
        }
        Ok(())
    }
}

/// Key-value store in memory, with expiry read from a shared [`FixedClock`].
#[derive(Debug, Default)]
pub struct MemoryKv {
    values: RefCell<HashMap<String, Vec<u8>>>,
    counters: RefCell<HashMap<String, (i64, Option<u64>)>>,
    clock: FixedClock,
    /// When set, every operation fails as if the backend were down.
    pub down: Cell<bool>,
}

impl MemoryKv {
    /// A store reading expiry from `clock`.
    pub fn with_clock(clock: FixedClock) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    fn check_up(&self) -> Result<(), PortError> {
        if self.down.get() {
            Err(PortError::Unavailable("memory store marked down".into()))
        } else {
            Ok(())
        }
    }

    /// Number of keys held (values and counters), expired ones included until removed.
    pub fn len(&self) -> usize {
        self.values.borrow().len() + self.counters.borrow().len()
    }

    /// The keys of the values held (not counters), sorted.
    pub fn value_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.values.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The keys of the counters held, sorted.
    pub fn counter_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.counters.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Whether the store holds no keys at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KeyValue for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.check_up()?;
        kv::check_value_key(key)?;
        let stored = self.values.borrow().get(key).cloned();
        match stored {
            None => Ok(None),
            Some(bytes) => {
                let env = Envelope::decode(&bytes)?;
                if env.is_expired(self.clock.now_unix_ms()) {
                    self.values.borrow_mut().remove(key);
                    Ok(None)
                } else {
                    Ok(Some(env.payload))
                }
            }
        }
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), PortError> {
        self.check_up()?;
        kv::check_value_key(key)?;
        kv::check_value(value)?;
        let env = Envelope {
            expires_at_ms,
            payload: value.to_vec(),
        };
        self.values
            .borrow_mut()
            .insert(key.to_owned(), env.encode());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.check_up()?;
        self.values.borrow_mut().remove(key);
        self.counters.borrow_mut().remove(key);
        Ok(())
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expires_at_ms: Option<u64>,
    ) -> Result<i64, PortError> {
        self.check_up()?;
        kv::check_counter_key(key)?;
        let now = self.clock.now_unix_ms();
        let mut counters = self.counters.borrow_mut();
        let entry = counters.entry(key.to_owned()).or_insert((0, expires_at_ms));
        if entry.1.is_some_and(|at| now >= at) {
            *entry = (0, expires_at_ms);
        }
        entry.0 += delta;
        if expires_at_ms.is_some() {
            entry.1 = expires_at_ms;
        }
        Ok(entry.0)
    }

    async fn counter(&self, key: &str) -> Result<i64, PortError> {
        self.check_up()?;
        kv::check_counter_key(key)?;
        let now = self.clock.now_unix_ms();
        Ok(match self.counters.borrow().get(key) {
            Some((value, expires)) if !expires.is_some_and(|at| now >= at) => *value,
            _ => 0,
        })
    }
}

/// Variables from a map; records every lookup, so tests can assert what was read. Names marked
/// with [`MemoryVars::fail`] answer as a platform failure.
#[derive(Debug, Default)]
pub struct MemoryVars(
    pub RefCell<HashMap<String, String>>,
    RefCell<Vec<String>>,
    RefCell<Vec<String>>,
);

impl MemoryVars {
    /// Makes reading `name` fail as the platform would (a provider down).
    pub fn fail(&self, name: &str) {
        self.2.borrow_mut().push(name.to_owned());
    }

    /// Sets `name` to `value`.
    pub fn set(&self, name: &str, value: &str) {
        self.0
            .borrow_mut()
            .insert(name.to_owned(), value.to_owned());
    }

    /// Every name looked up so far, in order.
    pub fn looked_up(&self) -> Vec<String> {
        self.1.borrow().clone()
    }
}

impl Variables for MemoryVars {
    fn get(&self, name: &str) -> Result<Option<String>, PortError> {
        self.1.borrow_mut().push(name.to_owned());
        if self.2.borrow().iter().any(|n| n == name) {
            return Err(PortError::Unavailable(format!("cannot read {name}")));
        }
        Ok(self.0.borrow().get(name).filter(|v| !v.is_empty()).cloned())
    }
}

/// A timer that never waits: it records each sleep and moves its clock forward by it.
#[derive(Debug, Default)]
pub struct MemoryTimer {
    clock: FixedClock,
    slept: RefCell<Vec<u64>>,
}

impl MemoryTimer {
    /// A timer advancing `clock`.
    pub fn with_clock(clock: FixedClock) -> Self {
        Self {
            clock,
            slept: RefCell::default(),
        }
    }

    /// Every sleep requested so far, in milliseconds.
    pub fn slept(&self) -> Vec<u64> {
        self.slept.borrow().clone()
    }
}

impl Timer for MemoryTimer {
    async fn sleep(&self, ms: u64) {
        self.slept.borrow_mut().push(ms);
        self.clock.advance(ms);
    }
}

/// One scripted answer of [`MemoryHttp`].
#[derive(Debug)]
pub enum Reply {
    /// Answer this (or fail like this).
    Now(Result<Response, PortError>),
    /// Never answer (a hung server): only a deadline ends the call.
    Hang,
}

/// Outbound HTTP that records every request and answers from a queue (404 when empty).
#[derive(Debug, Default)]
pub struct MemoryHttp {
    /// Requests sent, in order.
    pub sent: RefCell<Vec<Request>>,
    /// Responses to give, in order.
    pub replies: RefCell<VecDeque<Result<Response, PortError>>>,
    /// Scripted answers taking precedence over `replies` (hangs included).
    pub script: RefCell<VecDeque<Reply>>,
}

impl HttpClient for MemoryHttp {
    async fn send(&self, req: Request) -> Result<Response, PortError> {
        self.sent.borrow_mut().push(req);
        let scripted = self.script.borrow_mut().pop_front();
        match scripted {
            Some(Reply::Now(r)) => return r,
            Some(Reply::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        self.replies.borrow_mut().pop_front().unwrap_or_else(|| {
            let mut resp = Response::new(crate::Bytes::new());
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
            Ok(resp)
        })
    }
}

/// Captured log lines.
#[derive(Debug, Default)]
pub struct MemoryLog(RefCell<Vec<String>>);

impl MemoryLog {
    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// Forgets the lines written so far (benchmarks call it to keep memory flat).
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

impl LogSink for MemoryLog {
    fn write(&self, line: &str) {
        self.0.borrow_mut().push(line.to_owned());
    }
}

/// Every port in memory, sharing one clock.
#[derive(Debug)]
pub struct MemoryPlatform {
    /// Key-value store.
    pub kv: MemoryKv,
    /// Variables.
    pub vars: MemoryVars,
    /// Clock shared with `kv`.
    pub clock: FixedClock,
    /// Randomness.
    pub random: SeqRandom,
    /// Outbound HTTP.
    pub http: MemoryHttp,
    /// Log lines.
    pub log: MemoryLog,
    /// Timer sharing `clock`.
    pub timer: MemoryTimer,
    /// Rate-limit leases, as on Workers; `None` (the default): exact counting as on Spin.
    pub leases: Option<crate::ratelimit::Leases>,
}

impl Default for MemoryPlatform {
    fn default() -> Self {
        Self::with_clock(FixedClock::default())
    }
}

impl MemoryPlatform {
    /// A platform whose store, timer and clock share `clock`.
    pub fn with_clock(clock: FixedClock) -> Self {
        Self {
            kv: MemoryKv::with_clock(clock.clone()),
            timer: MemoryTimer::with_clock(clock.clone()),
            clock,
            vars: MemoryVars::default(),
            random: SeqRandom::default(),
            http: MemoryHttp::default(),
            log: MemoryLog::default(),
            leases: None,
        }
    }
}

impl Platform for MemoryPlatform {
    const RUNTIME: &'static str = "memory";
    type Kv = MemoryKv;
    type Http = MemoryHttp;
    type Timer = MemoryTimer;
    fn timer(&self) -> &MemoryTimer {
        &self.timer
    }
    fn kv(&self) -> &MemoryKv {
        &self.kv
    }
    fn vars(&self) -> &dyn Variables {
        &self.vars
    }
    fn clock(&self) -> &dyn Clock {
        &self.clock
    }
    fn random(&self) -> &dyn Random {
        &self.random
    }
    fn http(&self) -> &MemoryHttp {
        &self.http
    }
    fn log(&self) -> &dyn LogSink {
        &self.log
    }
    fn rate_leases(&self) -> Option<&crate::ratelimit::Leases> {
        self.leases.as_ref()
    }
}

/// Drives a future to completion on the current thread. The in-memory ports never wait, so a
/// no-op waker suffices; a future that stays pending is a test bug and panics.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete: in-memory ports never wait");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_until_they_expire() {
        let clock = FixedClock::at(1_000);
        let kv = MemoryKv::with_clock(clock.clone());
        block_on(kv.set("sess:a", b"v", Some(2_000))).unwrap_or_default();
        assert_eq!(block_on(kv.get("sess:a")), Ok(Some(b"v".to_vec())));
        clock.advance(1_000);
        assert_eq!(block_on(kv.get("sess:a")), Ok(None));
        assert!(kv.is_empty(), "expired entries are removed on read");
    }

    #[test]
    fn counters_start_at_zero_and_add() {
        let kv = MemoryKv::default();
        assert_eq!(block_on(kv.increment("ctr:x", 1, None)), Ok(1));
        assert_eq!(block_on(kv.increment("ctr:x", 2, None)), Ok(3));
        block_on(kv.delete("ctr:x")).unwrap_or_default();
        assert_eq!(block_on(kv.increment("ctr:x", 1, None)), Ok(1));
    }

    #[test]
    fn reading_a_counter_never_creates_it() {
        let clock = FixedClock::at(1_000);
        let kv = MemoryKv::with_clock(clock.clone());
        assert_eq!(block_on(kv.counter("ctr:x")), Ok(0));
        assert!(kv.is_empty(), "a read of an absent counter created it");
        assert_eq!(block_on(kv.increment("ctr:x", 4, Some(2_000))), Ok(4));
        assert_eq!(block_on(kv.counter("ctr:x")), Ok(4));
        clock.advance(1_000);
        assert_eq!(
            block_on(kv.counter("ctr:x")),
            Ok(0),
            "expired counters read 0"
        );
        assert!(matches!(
            block_on(kv.counter("sess:x")),
            Err(PortError::Contract(_))
        ));
    }

    #[test]
    fn the_memory_store_enforces_the_namespace_contract() {
        let kv = MemoryKv::default();
        assert!(matches!(
            block_on(kv.set("ctr:x", b"text", None)),
            Err(PortError::Contract(_))
        ));
        assert!(matches!(
            block_on(kv.increment("sess:x", 1, None)),
            Err(PortError::Contract(_))
        ));
    }

    #[test]
    fn a_down_store_reports_unavailable() {
        let kv = MemoryKv::default();
        kv.down.set(true);
        assert!(matches!(
            block_on(kv.get("k")),
            Err(PortError::Unavailable(_))
        ));
    }

    #[test]
    fn empty_variables_read_as_unset() {
        let vars = MemoryVars::default();
        vars.set("a", "");
        vars.set("b", "x");
        assert_eq!(vars.get("a"), Ok(None));
        assert_eq!(vars.get("b"), Ok(Some("x".into())));
        assert_eq!(vars.get("c"), Ok(None));
    }

    #[test]
    fn seq_random_fills_every_byte_and_differs_between_calls() {
        let r = SeqRandom::default();
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        r.fill(&mut a).unwrap_or_default();
        r.fill(&mut b).unwrap_or_default();
        assert_ne!(a, b);
    }
}
