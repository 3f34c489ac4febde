//! Per-client rate limiting on atomic counters, exact under concurrency.
//!
//! Policy "P per minute with burst B" is enforced as at most B requests per window of
//! `B × 60 s / P` (50/min, burst 10 → 10 requests per 12 s). Each request is one atomic
//! `increment` of the client's counter for the current window; never get-then-set, which loses
//! updates under load. The burst passes, the next request in the window gets 429, and the whole
//! burst returns when the window ends (`Retry-After` says when).
//!
//! Storage stays bounded: counters carry an expiry two windows ahead, which the Durable
//! Object's alarm enforces on Workers and [`crate::expiry`] on Spin (no scan of the store).
//!
//! Where one instance serves many requests (Workers), non-authentication routes may take their
//! counts in **leases** ([`check_leased`]): one increment of up to [`LEASE_MAX`] reserves that
//! many consecutive counts for the instance, which hands them out locally. Every count is still
//! allocated by the atomic store, so a client is **never admitted beyond the limit**; the error
//! is one-sided: counts leased to an instance that ends, to a window that ends, or to a lease a
//! concurrent one replaced, go unused, so a client can get 429 early by at most the unused
//! counts of the leases outstanding for it (≤ [`LEASE_MAX`] − 1 per instance serving it, and
//! leases shrink to one count as the limit nears). A client over the limit is answered from
//! the instance until its window ends. Authentication routes stay exact: one increment per
//! request.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::expiry;
use crate::ports::{KeyValue, PortError};

/// Counter-key prefix of every rate counter.
pub const PREFIX: &str = "ctr:rl:";

/// A rate-limit policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Sustained requests per minute (≥ 1).
    pub per_minute: u32,
    /// Requests allowed at once (≥ 1).
    pub burst: u32,
}

impl Default for Policy {
    /// 50 per minute, burst 10.
    fn default() -> Self {
        Self {
            per_minute: 50,
            burst: 10,
        }
    }
}

impl Policy {
    /// Window length: the time `burst` requests take at the sustained rate (at least 1 s).
    pub fn window_ms(&self) -> u64 {
        (u64::from(self.burst.max(1)) * 60_000 / u64::from(self.per_minute.max(1))).max(1_000)
    }
}

/// The outcome for one request, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests allowed per window (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in this window (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Whole seconds until the window ends (`RateLimit-Reset`, and `Retry-After` on 429).
    pub reset_s: u64,
    /// Window length in seconds (for `RateLimit-Policy`).
    pub window_s: u64,
}

/// The counter of one client's current window.
struct Window {
    index: u64,
    end_ms: u64,
    /// When the store may drop the counter: a window after this one ends.
    expires_ms: u64,
    key: String,
}

impl Window {
    fn at(policy: &Policy, scope: &str, client: &str, now_ms: u64) -> Self {
        let window_ms = policy.window_ms();
        let index = now_ms / window_ms;
        let end_ms = (index + 1) * window_ms;
        Self {
            index,
            end_ms,
            expires_ms: end_ms + window_ms,
            key: format!("{PREFIX}{scope}:{client}:{index}"),
        }
    }
}

/// Counts this request for `client` under `scope` (the function name) and decides.
pub async fn check<K: KeyValue>(
    kv: &K,
    policy: &Policy,
    scope: &str,
    client: &str,
    now_ms: u64,
) -> Result<Decision, PortError> {
    let w = Window::at(policy, scope, client, now_ms);
    let count = expiry::increment(kv, &w.key, 1, w.expires_ms).await?;
    Ok(decide(policy, count, w.end_ms, now_ms))
}

/// The decision for the request that holds count `count` of its window.
fn decide(policy: &Policy, count: i64, window_end: u64, now_ms: u64) -> Decision {
    let count = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
    Decision {
        allowed: count <= policy.burst,
        limit: policy.burst,
        remaining: policy.burst.saturating_sub(count),
        reset_s: window_end.saturating_sub(now_ms).div_ceil(1000),
        window_s: policy.window_ms() / 1000,
    }
}

/// Largest lease: the counts one store increment reserves for an instance.
pub const LEASE_MAX: i64 = 16;
/// A lease takes at most this fraction of what is left of the limit, so leases shrink to a
/// single count as the limit nears and few counts can sit unused elsewhere.
const LEASE_SHARE: i64 = 4;
/// Windows remembered per instance before ended ones are dropped (then all, if still over).
const LEASES_KEPT: usize = 4096;

/// Counts an instance holds for one client's window: the next to hand out and the last it
/// holds. `next > last` means the lease is used up (the last count tells the next lease's
/// size).
#[derive(Debug, Clone, Copy)]
struct Lease {
    window: u64,
    next: i64,
    last: i64,
}

/// The leases of one instance (see the module documentation). Lives as long as the instance;
/// on runtimes that instantiate per request there is nothing to keep, so they use [`check`].
#[derive(Debug, Default)]
pub struct Leases {
    held: RefCell<HashMap<String, Lease>>,
}

impl Leases {
    /// Takes the next count of `key`'s lease, if one is left; or `Some(last)` of a client
    /// already over the limit (every later count of the window is over it too).
    fn take(&self, key: &str, burst: i64) -> Option<i64> {
        let mut held = self.held.borrow_mut();
        let lease = held.get_mut(key)?;
        if lease.next <= lease.last {
            lease.next += 1;
            return Some(lease.next - 1);
        }
        (lease.last > burst).then_some(lease.last)
    }

    /// How many counts the next increment of `key` reserves: one when nothing is known of the
    /// window, else a share of what is left, between 1 and [`LEASE_MAX`].
    fn size(&self, key: &str, burst: i64) -> i64 {
        self.held.borrow().get(key).map_or(1, |lease| {
            ((burst - lease.last) / LEASE_SHARE).clamp(1, LEASE_MAX)
        })
    }

    /// Records the counts `first..=last` just reserved, of which `first` is used now. A lease
    /// still holding more counts is kept instead (the fewer counts go unused).
    fn store(&self, key: &str, window: u64, first: i64, last: i64) {
        let mut held = self.held.borrow_mut();
        if held.len() >= LEASES_KEPT && !held.contains_key(key) {
            held.retain(|_, lease| lease.window >= window);
            if held.len() >= LEASES_KEPT {
                held.clear();
            }
        }
        let fresh = Lease {
            window,
            next: first + 1,
            last,
        };
        match held.get_mut(key) {
            // Never merged: the counts between two leases belong to other instances.
            Some(old) if old.last - old.next > fresh.last - fresh.next => {}
            Some(old) => *old = fresh,
            None => {
                held.insert(key.to_owned(), fresh);
            }
        }
    }

    /// Counts reserved for this instance and not yet handed out (tests, diagnostics).
    pub fn unused(&self) -> i64 {
        self.held
            .borrow()
            .values()
            .map(|l| (l.last - l.next + 1).max(0))
            .sum()
    }
}

/// [`check`] with counts taken from `leases` where one is held: at most one store increment
/// per [`LEASE_MAX`] requests of a client well below its limit, one per request near it, none
/// for a client over it. Never admits beyond the limit (module documentation).
pub async fn check_leased<K: KeyValue>(
    kv: &K,
    leases: &Leases,
    policy: &Policy,
    scope: &str,
    client: &str,
    now_ms: u64,
) -> Result<Decision, PortError> {
    let w = Window::at(policy, scope, client, now_ms);
    let burst = i64::from(policy.burst);
    if let Some(count) = leases.take(&w.key, burst) {
        return Ok(decide(policy, count, w.end_ms, now_ms));
    }
    let size = leases.size(&w.key, burst);
    let last = expiry::increment(kv, &w.key, size, w.expires_ms).await?;
    let first = last - size + 1;
    leases.store(&w.key, w.index, first, last);
    Ok(decide(policy, first, w.end_ms, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{block_on, FixedClock, MemoryKv, SeqRandom};
    use crate::ports::{Clock, Random};

    thread_local! {
        // One sequence per test thread, so the sweep coin varies between requests.
        static RANDOM: SeqRandom = SeqRandom::default();
    }

    fn run(kv: &MemoryKv, clock: &FixedClock, policy: &Policy, client: &str) -> Decision {
        let now = clock.now_unix_ms();
        let decision = block_on(check(kv, policy, "login", client, now));
        // As the wrapper does after the response.
        if RANDOM.with(|random| expiry::sweep_due::<MemoryKv>(random)) {
            block_on(expiry::sweep(kv, now)).unwrap_or_else(|e| panic!("sweep failed: {e}"));
        }
        decision.unwrap_or_else(|e| panic!("store failed: {e}"))
    }

    /// A clock at the start of a window, so window arithmetic in tests is exact.
    fn window_start(policy: &Policy) -> FixedClock {
        let w = policy.window_ms();
        FixedClock::at((1_767_225_600_000 / w + 1) * w)
    }

    /// An empty store and its clock at the start of one of `policy`'s windows.
    fn fresh(policy: &Policy) -> (FixedClock, MemoryKv) {
        let clock = window_start(policy);
        let kv = MemoryKv::with_clock(clock.clone());
        (clock, kv)
    }

    #[test]
    fn the_default_is_50_per_minute_with_burst_10_in_12_second_windows() {
        assert_eq!(Policy::default().window_ms(), 12_000);
    }

    #[test]
    fn the_burst_passes_and_the_next_request_is_limited() {
        let policy = Policy::default();
        let (clock, kv) = fresh(&policy);
        for i in 0..10 {
            let d = run(&kv, &clock, &policy, "203.0.113.7");
            assert!(d.allowed, "request {i} within the burst");
            assert_eq!(d.remaining, 9 - i);
        }
        let d = run(&kv, &clock, &policy, "203.0.113.7");
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_s, 12);
    }

    #[test]
    fn retry_after_counts_down_to_the_window_end() {
        let policy = Policy::default();
        let (clock, kv) = fresh(&policy);
        for _ in 0..10 {
            run(&kv, &clock, &policy, "c");
        }
        clock.advance(4_500);
        let d = run(&kv, &clock, &policy, "c");
        assert!(!d.allowed);
        assert_eq!(d.reset_s, 8, "7.5 s left rounds up");
    }

    #[test]
    fn tokens_return_when_the_window_ends() {
        let policy = Policy::default();
        let (clock, kv) = fresh(&policy);
        for _ in 0..11 {
            run(&kv, &clock, &policy, "c");
        }
        clock.advance(12_000);
        assert!(run(&kv, &clock, &policy, "c").allowed);
    }

    #[test]
    fn clients_are_counted_separately() {
        let policy = Policy {
            per_minute: 60,
            burst: 1,
        };
        let (clock, kv) = fresh(&policy);
        assert!(run(&kv, &clock, &policy, "a").allowed);
        assert!(!run(&kv, &clock, &policy, "a").allowed);
        assert!(run(&kv, &clock, &policy, "b").allowed);
    }

    #[test]
    fn the_sustained_rate_holds_over_a_minute() {
        let policy = Policy::default();
        let (clock, kv) = fresh(&policy);
        let mut allowed = 0;
        // One request every 100 ms for a minute: 600 tries.
        for _ in 0..600 {
            if run(&kv, &clock, &policy, "c").allowed {
                allowed += 1;
            }
            clock.advance(100);
        }
        assert_eq!(allowed, 50);
    }

    #[test]
    fn ended_windows_are_swept_so_counters_do_not_pile_up() {
        let policy = Policy {
            per_minute: 60,
            burst: 1,
        };
        let (clock, kv) = fresh(&policy);
        // 6,000 distinct clients over 6,000 one-second windows: without sweeping, 6,000
        // counters remain (and as many index entries); swept, about ten minutes' worth.
        for i in 0..6_000 {
            run(&kv, &clock, &policy, &format!("client-{i}"));
            clock.advance(1_000);
        }
        assert!(kv.len() < 2_000, "{} keys left", kv.len());
    }

    #[test]
    fn a_down_store_is_reported_not_hidden() {
        let kv = MemoryKv::default();
        kv.down.set(true);
        let r = block_on(check(&kv, &Policy::default(), "f", "c", 0));
        assert!(matches!(r, Err(PortError::Unavailable(_))));
    }

    #[test]
    fn a_sweep_never_touches_another_scopes_counters() {
        // "login" sweeps with 1 s windows; "slow" counts in 600 s windows whose index is far
        // smaller, so judged by login's index it would look long ended.
        let fast = Policy {
            per_minute: 60,
            burst: 1,
        };
        let slow = Policy {
            per_minute: 1,
            burst: 10,
        };
        let clock = window_start(&fast);
        let kv = MemoryKv::with_clock(clock.clone());
        let slow_check = |kv: &MemoryKv| {
            block_on(check(kv, &slow, "slow", "c", clock.now_unix_ms()))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        slow_check(&kv);
        for i in 0..1_000 {
            run(&kv, &clock, &fast, &format!("client-{i}"));
        }
        assert_eq!(
            slow_check(&kv).remaining,
            8,
            "the slow scope kept its count"
        );
    }

    /// The in-memory store, counting the increments that reach it (Durable Object calls).
    struct Counting<'a> {
        kv: &'a MemoryKv,
        increments: std::cell::Cell<usize>,
    }

    impl<'a> Counting<'a> {
        fn new(kv: &'a MemoryKv) -> Self {
            Self {
                kv,
                increments: std::cell::Cell::new(0),
            }
        }
    }

    impl KeyValue for Counting<'_> {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
            self.kv.get(key).await
        }
        async fn set(&self, key: &str, value: &[u8], at: Option<u64>) -> Result<(), PortError> {
            self.kv.set(key, value, at).await
        }
        async fn delete(&self, key: &str) -> Result<(), PortError> {
            self.kv.delete(key).await
        }
        async fn increment(
            &self,
            key: &str,
            delta: i64,
            at: Option<u64>,
        ) -> Result<i64, PortError> {
            // Rate counters only, not the expiry index's own.
            if key.starts_with(PREFIX) {
                self.increments.set(self.increments.get() + 1);
            }
            self.kv.increment(key, delta, at).await
        }
        async fn counter(&self, key: &str) -> Result<i64, PortError> {
            self.kv.counter(key).await
        }
    }

    fn leased(
        kv: &Counting<'_>,
        leases: &Leases,
        clock: &FixedClock,
        policy: &Policy,
        client: &str,
    ) -> Decision {
        let decision = block_on(check_leased(
            kv,
            leases,
            policy,
            "health",
            client,
            clock.now_unix_ms(),
        ));
        decision.unwrap_or_else(|e| panic!("store failed: {e}"))
    }

    #[test]
    fn leases_never_admit_beyond_the_limit_and_lose_at_most_the_documented_bound() {
        for instances in [1usize, 2, 5, 12] {
            let policy = Policy {
                per_minute: 1_000,
                burst: 200,
            };
            let (clock, store) = fresh(&policy);
            let kv = Counting::new(&store);
            let leases: Vec<Leases> = (0..instances).map(|_| Leases::default()).collect();
            let pick = SeqRandom::default();
            let mut admitted = 0i64;
            let mut first_refusal = None;
            for i in 0..1_000 {
                let mut b = [0u8; 1];
                pick.fill(&mut b).unwrap_or_default();
                let d = leased(
                    &kv,
                    &leases[usize::from(b[0]) % instances],
                    &clock,
                    &policy,
                    "c",
                );
                if d.allowed {
                    admitted += 1;
                } else if first_refusal.is_none() {
                    first_refusal = Some(admitted);
                }
                assert!(
                    admitted <= 200,
                    "{instances} instances: admitted {admitted} at {i}"
                );
            }
            // Every count up to the limit was either used or still sits unused in a lease.
            let unused_below_limit: i64 = leases.iter().map(Leases::unused).sum::<i64>().min(200);
            assert!(
                admitted + unused_below_limit >= 200,
                "{instances}: {admitted} admitted"
            );
            // The documented bound: a refused client lost at most LEASE_MAX - 1 counts to
            // each other instance.
            let bound = 200 - (instances as i64 - 1) * (LEASE_MAX - 1);
            let at_refusal = first_refusal.unwrap_or(0);
            assert!(
                at_refusal >= bound,
                "{instances} instances: first 429 after {at_refusal} admissions (bound {bound})"
            );
            if instances == 1 {
                assert_eq!(admitted, 200, "one instance is exact");
            }
        }
    }

    #[test]
    fn far_below_the_limit_one_store_call_serves_a_lease_of_requests() {
        let policy = Policy {
            per_minute: 1_000_000,
            burst: 100_000,
        };
        let (clock, store) = fresh(&policy);
        let kv = Counting::new(&store);
        let leases = Leases::default();
        for _ in 0..1_600 {
            assert!(leased(&kv, &leases, &clock, &policy, "c").allowed);
        }
        // The first call knows nothing of the window (one count); then LEASE_MAX each.
        assert_eq!(
            kv.increments.get(),
            1 + 1_599_usize.div_ceil(LEASE_MAX as usize)
        );
        // Figures in the headers come from the request's own count.
        let d = leased(&kv, &leases, &clock, &policy, "c");
        assert_eq!(d.remaining, 100_000 - 1_601);
    }

    #[test]
    fn a_client_over_the_limit_is_answered_locally_until_its_window_ends() {
        let policy = Policy::default();
        let (clock, store) = fresh(&policy);
        let kv = Counting::new(&store);
        let leases = Leases::default();
        let allowed = (0..30)
            .filter(|_| leased(&kv, &leases, &clock, &policy, "c").allowed)
            .count();
        assert_eq!(allowed, 10, "one instance is exact");
        let calls = kv.increments.get();
        for _ in 0..50 {
            assert!(!leased(&kv, &leases, &clock, &policy, "c").allowed);
        }
        assert_eq!(
            kv.increments.get(),
            calls,
            "no store call once over the limit"
        );
        clock.advance(policy.window_ms());
        assert!(leased(&kv, &leases, &clock, &policy, "c").allowed);
        assert!(
            kv.increments.get() > calls,
            "a new window asks the store again"
        );
    }

    #[test]
    fn an_instance_remembers_a_bounded_number_of_windows() {
        let policy = Policy::default();
        let (clock, store) = fresh(&policy);
        let kv = Counting::new(&store);
        let leases = Leases::default();
        for i in 0..(LEASES_KEPT + 10) {
            assert!(leased(&kv, &leases, &clock, &policy, &format!("c{i}")).allowed);
        }
        assert!(leases.held.borrow().len() <= LEASES_KEPT);
    }
}
