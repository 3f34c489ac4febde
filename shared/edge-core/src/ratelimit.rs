//! Per-client rate limiting on atomic counters, exact under concurrency.
//!
//! Policy "P per minute with burst B" is enforced as at most B requests per window of
//! `B × 60 s / P` (50/min, burst 10 → 10 requests per 12 s). Each request is one atomic
//! `increment` of the client's counter for the current window; never get-then-set, which loses
//! updates under load. The burst passes, the next request in the window gets 429, and the whole
//! burst returns when the window ends (`Retry-After` says when).
//!
//! Storage stays bounded: counters carry an expiry two windows ahead (Workers delete them with
//! an alarm) and, for stores without expiry (Spin), about one request in [`SWEEP_ONE_IN`]
//! sweeps counters of windows that have ended.

use crate::ports::{KeyValue, PortError, Random};

/// Counter-key prefix of every rate counter.
pub const PREFIX: &str = "ctr:rl:";
/// One request in this many sweeps ended windows (Spin only; free on Workers).
pub const SWEEP_ONE_IN: u8 = 128;

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

fn window_of_key(key: &str) -> Option<u64> {
    key.rsplit(':').next()?.parse().ok()
}

/// Counts this request for `client` under `scope` (the function name) and decides.
pub async fn check<K: KeyValue>(
    kv: &K,
    random: &dyn Random,
    policy: &Policy,
    scope: &str,
    client: &str,
    now_ms: u64,
) -> Result<Decision, PortError> {
    let window_ms = policy.window_ms();
    let window = now_ms / window_ms;
    let window_end = (window + 1) * window_ms;
    let key = format!("{PREFIX}{scope}:{client}:{window}");
    let count = kv.increment(&key, 1, Some(window_end + window_ms)).await?;
    let count = u32::try_from(count.max(0)).unwrap_or(u32::MAX);

    let mut coin = [0u8; 1];
    if random.fill(&mut coin).is_ok() && coin[0] % SWEEP_ONE_IN == 0 {
        // Best effort: a failed sweep must not fail the request it piggybacks on.
        // Only this scope's counters: another function's windows have another length, so
        // judging them by this window index would reset their live counters.
        let scope_prefix = format!("{PREFIX}{scope}:");
        let _ = kv
            .sweep_counters(&scope_prefix, &|k: &str| {
                window_of_key(k).is_some_and(|w| w + 1 < window)
            })
            .await;
    }

    Ok(Decision {
        allowed: count <= policy.burst,
        limit: policy.burst,
        remaining: policy.burst.saturating_sub(count),
        reset_s: (window_end - now_ms).div_ceil(1000),
        window_s: window_ms / 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{block_on, FixedClock, MemoryKv, SeqRandom};
    use crate::ports::Clock;

    thread_local! {
        // One sequence per test thread, so the sweep coin varies between requests.
        static RANDOM: SeqRandom = SeqRandom::default();
    }

    fn run(kv: &MemoryKv, clock: &FixedClock, policy: &Policy, client: &str) -> Decision {
        let decision = RANDOM.with(|random| {
            block_on(check(
                kv,
                random,
                policy,
                "login",
                client,
                clock.now_unix_ms(),
            ))
        });
        decision.unwrap_or_else(|e| panic!("store failed: {e}"))
    }

    /// A clock at the start of a window, so window arithmetic in tests is exact.
    fn window_start(policy: &Policy) -> FixedClock {
        let w = policy.window_ms();
        FixedClock::at((1_767_225_600_000 / w + 1) * w)
    }

    #[test]
    fn the_default_is_50_per_minute_with_burst_10_in_12_second_windows() {
        assert_eq!(Policy::default().window_ms(), 12_000);
    }

    #[test]
    fn the_burst_passes_and_the_next_request_is_limited() {
        let policy = Policy::default();
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
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
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
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
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
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
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
        assert!(run(&kv, &clock, &policy, "a").allowed);
        assert!(!run(&kv, &clock, &policy, "a").allowed);
        assert!(run(&kv, &clock, &policy, "b").allowed);
    }

    #[test]
    fn the_sustained_rate_holds_over_a_minute() {
        let policy = Policy::default();
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
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
        let clock = window_start(&policy);
        let kv = MemoryKv::with_clock(clock.clone());
        // 2,000 distinct clients over 2,000 windows: without sweeping, 2,000 counters remain.
        for i in 0..2_000 {
            run(&kv, &clock, &policy, &format!("client-{i}"));
            clock.advance(1_000);
        }
        assert!(kv.len() < 200, "{} counters left", kv.len());
    }

    #[test]
    fn a_down_store_is_reported_not_hidden() {
        let kv = MemoryKv::default();
        kv.down.set(true);
        let r = block_on(check(
            &kv,
            &SeqRandom::default(),
            &Policy::default(),
            "f",
            "c",
            0,
        ));
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
        let random = SeqRandom::default();
        let slow_check = |kv: &MemoryKv| {
            block_on(check(kv, &random, &slow, "slow", "c", clock.now_unix_ms()))
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
}
