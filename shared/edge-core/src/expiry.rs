//! Counter expiry for stores that have none (Spin's key-value store, SQLite or Redis), at a
//! cost per request that does not depend on how many keys the store holds.
//!
//! Every counter is created with an expiry ([`increment`]). Where the store cannot expire it
//! ([`KeyValue::EXPIRES_COUNTERS`] false), the request that created it also registers its key
//! in an index of the five-minute bucket its expiry falls in: a slot number from the bucket's
//! counter (`ctr:exp:<bucket>`) and the key under `exp:<bucket>:<slot>`. About one request in
//! [`SWEEP_ONE_IN`] then runs [`sweep`] after its response: it continues from a cursor
//! (`exp:cursor`) through buckets that ended at least one bucket ago, reserving at most
//! [`SLOTS_PER_SWEEP`] slots of a bucket at a time with an atomic increment (concurrent
//! sweepers take disjoint slots), deleting each slot's counter and the slot. No scan of the
//! store: a request costs one increment, two more when it creates a counter, and a sweep a
//! bounded number of operations, whether the store holds ten keys or a million.
//!
//! Storage stays bounded by the traffic of the last buckets: a counter outlives its expiry by
//! at most two buckets plus the time sweeps need to reach it. Sweeps go through two slots per
//! request on average (32 per sweep, one sweep in 16 requests) and a request creates at most
//! two counters (a failed login: user and address), so they keep up. Registration is best
//! effort: a request that ends between creating a counter and registering it leaves that one
//! key behind.

use crate::ports::{KeyValue, PortError, Random};

/// Width of an index bucket, by counter expiry.
pub const BUCKET_MS: u64 = 300_000;
/// One request in this many sweeps (where the store has no expiry).
pub const SWEEP_ONE_IN: u8 = 16;
/// Slots one sweep deletes at most.
pub const SLOTS_PER_SWEEP: i64 = 32;
/// Buckets one sweep finishes at most (empty buckets cost a few operations each).
const BUCKETS_PER_SWEEP: u32 = 4;
const CURSOR: &str = "exp:cursor";

fn count_key(bucket: u64) -> String {
    format!("ctr:exp:{bucket}")
}

fn next_key(bucket: u64) -> String {
    format!("ctr:exp:{bucket}:next")
}

fn slot_key(bucket: u64, slot: i64) -> String {
    format!("exp:{bucket}:{slot}")
}

/// Adds `delta` to counter `key`, which the store may drop from `expires_at_ms` on, and
/// returns the new value. On a store without expiry, the increment that created the counter
/// (its result equals `delta`) registers the key for [`sweep`]; a registration that fails
/// leaves one key behind and is not an error of the increment.
pub async fn increment<K: KeyValue>(
    kv: &K,
    key: &str,
    delta: i64,
    expires_at_ms: u64,
) -> Result<i64, PortError> {
    let value = kv.increment(key, delta, Some(expires_at_ms)).await?;
    if !K::EXPIRES_COUNTERS && value == delta {
        let bucket = expires_at_ms / BUCKET_MS;
        if let Ok(slot) = kv.increment(&count_key(bucket), 1, None).await {
            let _ = kv.set(&slot_key(bucket, slot), key.as_bytes(), None).await;
        }
    }
    Ok(value)
}

/// Whether this request sweeps: never where the store expires counters itself, else about one
/// request in [`SWEEP_ONE_IN`].
pub fn sweep_due<K: KeyValue>(random: &dyn Random) -> bool {
    let mut coin = [0u8; 1];
    !K::EXPIRES_COUNTERS && random.fill(&mut coin).is_ok() && coin[0] % SWEEP_ONE_IN == 0
}

/// Deletes registered counters of buckets that ended at least one bucket before `now_ms`,
/// at most [`SLOTS_PER_SWEEP`] of them, and returns how many slots it went through. Safe to
/// run concurrently and to repeat: slots are reserved atomically and deletes are idempotent.
pub async fn sweep<K: KeyValue>(kv: &K, now_ms: u64) -> Result<usize, PortError> {
    let current = now_ms / BUCKET_MS;
    let cursor = match kv.get(CURSOR).await? {
        Some(text) => String::from_utf8_lossy(&text).trim().parse::<u64>().ok(),
        None => None,
    };
    let Some(mut bucket) = cursor else {
        // First sweep of this store: nothing before the last bucket was registered.
        kv.set(
            CURSOR,
            current.saturating_sub(1).to_string().as_bytes(),
            None,
        )
        .await?;
        return Ok(0);
    };
    let mut swept = 0;
    let mut finished = 0;
    while bucket + 2 <= current && finished < BUCKETS_PER_SWEEP {
        let registered = kv.counter(&count_key(bucket)).await?;
        let first = kv
            .increment(&next_key(bucket), SLOTS_PER_SWEEP, None)
            .await?
            - SLOTS_PER_SWEEP
            + 1;
        let last = (first + SLOTS_PER_SWEEP - 1).min(registered);
        for slot in first..=last {
            let slot_key = slot_key(bucket, slot);
            if let Some(key) = kv.get(&slot_key).await? {
                let key = String::from_utf8_lossy(&key);
                if crate::kv::check_counter_key(&key).is_ok() {
                    kv.delete(&key).await?;
                }
            }
            kv.delete(&slot_key).await?;
            swept += 1;
        }
        if first + SLOTS_PER_SWEEP - 1 < registered {
            // More slots than one sweep takes: a later sweep continues this bucket.
            break;
        }
        kv.delete(&count_key(bucket)).await?;
        kv.delete(&next_key(bucket)).await?;
        bucket += 1;
        finished += 1;
        kv.set(CURSOR, bucket.to_string().as_bytes(), None).await?;
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{block_on, FixedClock, MemoryKv};
    use crate::ports::Clock;

    fn sweep_all(kv: &MemoryKv, now: u64) -> usize {
        let mut total = 0;
        for _ in 0..10_000 {
            match block_on(sweep(kv, now)) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("sweep failed: {e}"),
            }
        }
        total
    }

    #[test]
    fn expired_counters_are_deleted_by_bucket_and_live_ones_kept() {
        let clock = FixedClock::at(1_767_225_600_000);
        let kv = MemoryKv::with_clock(clock.clone());
        let now = clock.now_unix_ms();
        assert_eq!(
            block_on(sweep(&kv, now)),
            Ok(0),
            "the first sweep sets the cursor"
        );
        for i in 0..100 {
            let key = format!("ctr:rl:health:c{i}:1");
            assert_eq!(block_on(increment(&kv, &key, 1, now + 60_000)), Ok(1));
            // A second increment of the same counter registers nothing more.
            assert_eq!(block_on(increment(&kv, &key, 1, now + 60_000)), Ok(2));
        }
        let live = "ctr:rl:health:late:9";
        assert_eq!(block_on(increment(&kv, live, 1, now + 3_600_000)), Ok(1));
        // Nothing has ended yet: nothing goes.
        assert_eq!(sweep_all(&kv, now + 60_000), 0);
        let before = kv.len();
        // Two buckets after the expiry, every counter of that bucket goes, 32 per sweep.
        let later = now + 60_000 + 2 * BUCKET_MS;
        assert_eq!(block_on(sweep(&kv, later)), Ok(32));
        assert_eq!(sweep_all(&kv, later), 68);
        assert!(kv.len() < before, "{} keys left of {before}", kv.len());
        // What is left: the live counter, its registration, the cursor and nothing else.
        assert_eq!(block_on(kv.increment(live, 0, None)), Ok(1));
        assert!(kv.len() <= 4, "{} keys left", kv.len());
    }

    #[test]
    fn storage_stays_bounded_under_steady_traffic_of_new_clients() {
        let clock = FixedClock::at(1_767_225_600_000);
        let kv = MemoryKv::with_clock(clock.clone());
        let random = crate::memory::SeqRandom::default();
        let mut peak = 0;
        // Two hours of one new client per request, 10 requests a second, 12 s windows.
        for i in 0..72_000u64 {
            clock.advance(100);
            let now = clock.now_unix_ms();
            let window_end = (now / 12_000 + 1) * 12_000;
            let key = format!("ctr:rl:health:c{i}:{}", now / 12_000);
            block_on(increment(&kv, &key, 1, window_end + 12_000)).unwrap_or_default();
            if sweep_due::<MemoryKv>(&random) {
                block_on(sweep(&kv, now)).unwrap_or_default();
            }
            if i > 36_000 {
                peak = peak.max(kv.len());
            }
        }
        // Ten minutes of counters (two buckets past expiry) is about 6,000 counters plus
        // their slots; without sweeping the store would hold 144,000 keys.
        assert!(peak < 20_000, "peak {peak} keys");
    }

    #[test]
    fn a_store_that_expires_counters_registers_and_sweeps_nothing() {
        struct Expiring(MemoryKv);
        impl KeyValue for Expiring {
            const EXPIRES_COUNTERS: bool = true;
            async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
                self.0.get(key).await
            }
            async fn set(&self, k: &str, v: &[u8], at: Option<u64>) -> Result<(), PortError> {
                self.0.set(k, v, at).await
            }
            async fn delete(&self, key: &str) -> Result<(), PortError> {
                self.0.delete(key).await
            }
            async fn increment(&self, k: &str, d: i64, at: Option<u64>) -> Result<i64, PortError> {
                self.0.increment(k, d, at).await
            }
            async fn counter(&self, key: &str) -> Result<i64, PortError> {
                self.0.counter(key).await
            }
        }
        let kv = Expiring(MemoryKv::default());
        assert_eq!(block_on(increment(&kv, "ctr:rl:x:1", 1, 60_000)), Ok(1));
        assert_eq!(kv.0.len(), 1, "only the counter itself");
        let random = crate::memory::SeqRandom::default();
        assert!((0..1_000).all(|_| !sweep_due::<Expiring>(&random)));
    }
}
