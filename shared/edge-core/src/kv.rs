//! Key rules and the value envelope shared by every key-value adapter.
//!
//! Spin's store and the Durable Object have no native expiry that fits both, so adapters store
//! values inside an [`Envelope`] that carries the expiry, and check it on read. Keeping the
//! encoding here means every adapter (and the in-memory one) treats expiry identically.

use crate::ports::PortError;

/// Prefix that marks counter keys. Counters and values never share a key (see
/// [`crate::ports::KeyValue`]): on Spin a counter is 8 little-endian bytes that `set` must not
/// overwrite with text.
pub const COUNTER_PREFIX: &str = "ctr:";

/// Longest key accepted. Redis and SQLite take far more; 256 keeps Durable Object names and
/// log lines bounded.
pub const MAX_KEY_LEN: usize = 256;

/// Largest value accepted: sessions are a few hundred bytes; 64 KiB leaves room without letting
/// a bug fill the store.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

fn check_key_shape(key: &str) -> Result<(), PortError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(PortError::Contract(format!(
            "key length {} outside 1..={MAX_KEY_LEN}",
            key.len()
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PortError::Contract(
            "key must be printable ASCII without spaces".into(),
        ));
    }
    Ok(())
}

/// Accepts a key for `get` / `set`: well-formed and outside the counter namespace.
pub fn check_value_key(key: &str) -> Result<(), PortError> {
    check_key_shape(key)?;
    if key.starts_with(COUNTER_PREFIX) {
        return Err(PortError::Contract(format!(
            "value key must not start with {COUNTER_PREFIX}"
        )));
    }
    Ok(())
}

/// Accepts a key for `increment`: well-formed and inside the counter namespace.
pub fn check_counter_key(key: &str) -> Result<(), PortError> {
    check_key_shape(key)?;
    if !key.starts_with(COUNTER_PREFIX) {
        return Err(PortError::Contract(format!(
            "counter key must start with {COUNTER_PREFIX}"
        )));
    }
    Ok(())
}

/// Accepts a value for `set`.
pub fn check_value(value: &[u8]) -> Result<(), PortError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(PortError::Contract(format!(
            "value of {} bytes exceeds {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    Ok(())
}

/// A stored value with its expiry. Encoded as one version byte, eight little-endian bytes of
/// expiry in unix milliseconds (0 = never), then the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unix milliseconds from which the value reads as absent; `None` = never.
    pub expires_at_ms: Option<u64>,
    /// The caller's bytes.
    pub payload: Vec<u8>,
}

const ENVELOPE_V1: u8 = 1;
const HEADER_LEN: usize = 9;

impl Envelope {
    /// Encodes for storage.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.push(ENVELOPE_V1);
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes stored bytes; `Err` for bytes not written by [`Envelope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PortError> {
        if bytes.len() < HEADER_LEN || bytes[0] != ENVELOPE_V1 {
            return Err(PortError::Contract(
                "stored value is not an envelope".into(),
            ));
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&bytes[1..HEADER_LEN]);
        let expires_at_ms = match u64::from_le_bytes(expiry) {
            0 => None,
            ms => Some(ms),
        };
        Ok(Self {
            expires_at_ms,
            payload: bytes[HEADER_LEN..].to_vec(),
        })
    }

    /// Whether the value reads as absent at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// The value of a counter as a store that implements `wasi:keyvalue/atomics` keeps it, read
/// back with a plain `get`: Spin's SQLite store writes the `i64` as 8 little-endian bytes,
/// its Redis store (`INCRBY`) as decimal text. Decimal is tried first: 8 ASCII digits read as
/// little-endian would be a count above 3.4 × 10¹⁸, which no counter here reaches. `None` for
/// bytes that are neither (not a counter).
pub fn counter_from_bytes(bytes: &[u8]) -> Option<i64> {
    let decimal = !bytes.is_empty()
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && *b == b'-'));
    if decimal {
        if let Some(n) = std::str::from_utf8(bytes).ok().and_then(|t| t.parse().ok()) {
            return Some(n);
        }
    }
    <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes)
}

/// What a store that expires entries by alarm (the Durable Object) leaves armed after a sweep
/// has deleted the expired entries, from what remains.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterSweep {
    /// Nothing is left: delete all storage, so the instance costs nothing.
    DeleteAll,
    /// An alarm at the earliest remaining expiry, `in_ms` from now. An increment may have
    /// moved a counter's expiry past the alarm that was set for it; without a new alarm that
    /// entry would outlive it and never be deleted.
    Alarm {
        /// Milliseconds from now (0 when the earliest expiry has passed already).
        in_ms: i64,
    },
    /// Only entries without expiry are left.
    NoAlarm,
}

/// See [`AfterSweep`]: `rows` left after the sweep, the earliest expiry among them (unix ms).
pub fn after_sweep(rows: i64, earliest_expiry_ms: Option<i64>, now_ms: i64) -> AfterSweep {
    match (rows, earliest_expiry_ms) {
        (0, _) => AfterSweep::DeleteAll,
        (_, Some(at)) => AfterSweep::Alarm {
            in_ms: (at - now_ms).max(0),
        },
        (_, None) => AfterSweep::NoAlarm,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_counter_whose_expiry_moved_later_gets_a_new_alarm() {
        // Set at t=0 with expiry 1 000 (alarm at 1 000), incremented later with expiry 61 000:
        // the alarm at 1 000 deletes nothing and must re-arm for the entry that is left.
        assert_eq!(
            super::after_sweep(1, Some(61_000), 1_000),
            super::AfterSweep::Alarm { in_ms: 60_000 }
        );
    }

    #[test]
    fn an_overdue_expiry_fires_at_once_and_an_empty_store_is_deleted() {
        use super::{after_sweep, AfterSweep};
        assert_eq!(
            after_sweep(3, Some(500), 1_000),
            AfterSweep::Alarm { in_ms: 0 }
        );
        assert_eq!(after_sweep(0, None, 1_000), AfterSweep::DeleteAll);
        assert_eq!(after_sweep(2, None, 1_000), AfterSweep::NoAlarm);
    }

    use super::*;

    #[test]
    fn counters_read_back_in_both_spin_encodings() {
        // SQLite: 8 bytes little-endian.
        assert_eq!(counter_from_bytes(&5i64.to_le_bytes()), Some(5));
        assert_eq!(counter_from_bytes(&0i64.to_le_bytes()), Some(0));
        assert_eq!(counter_from_bytes(&(-2i64).to_le_bytes()), Some(-2));
        assert_eq!(counter_from_bytes(&300_000i64.to_le_bytes()), Some(300_000));
        // Redis INCRBY: decimal text.
        assert_eq!(counter_from_bytes(b"5"), Some(5));
        assert_eq!(counter_from_bytes(b"12345678"), Some(12_345_678));
        assert_eq!(counter_from_bytes(b"-3"), Some(-3));
        // Neither.
        assert_eq!(counter_from_bytes(b""), None);
        assert_eq!(counter_from_bytes(b"abc"), None);
        assert_eq!(counter_from_bytes(b"-"), None);
    }

    #[test]
    fn envelope_round_trips_with_and_without_expiry() {
        for expires_at_ms in [None, Some(1_700_000_000_000)] {
            let env = Envelope {
                expires_at_ms,
                payload: b"session".to_vec(),
            };
            assert_eq!(Envelope::decode(&env.encode()), Ok(env));
        }
    }

    #[test]
    fn envelope_expires_exactly_at_its_instant() {
        let env = Envelope {
            expires_at_ms: Some(1_000),
            payload: vec![],
        };
        assert!(!env.is_expired(999));
        assert!(env.is_expired(1_000));
    }

    #[test]
    fn foreign_bytes_are_not_an_envelope() {
        assert!(Envelope::decode(b"plain text").is_err());
        assert!(Envelope::decode(&[1, 2]).is_err());
    }

    #[test]
    fn value_and_counter_namespaces_never_mix() {
        assert!(check_value_key("sess:abc").is_ok());
        assert!(check_value_key("ctr:rl:1").is_err());
        assert!(check_counter_key("ctr:rl:1").is_ok());
        assert!(check_counter_key("sess:abc").is_err());
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert!(check_value_key("").is_err());
        assert!(check_value_key("has space").is_err());
        assert!(check_value_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(check_value_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn oversized_values_are_rejected() {
        assert!(check_value(&vec![0; MAX_VALUE_LEN]).is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_LEN + 1]).is_err());
    }
}
