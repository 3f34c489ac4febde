//! Request signing between the edge functions and the Postgres proxy (`services/pg-proxy`).
//!
//! The edge **signs** every request it sends to the proxy with [`sign`]; the proxy
//! **verifies** it with [`verify`]. The crate owns the canonical string, the header names,
//! the key type and the verification rules; it has no clock, no randomness and no async
//! runtime, so the caller passes the unix timestamp and a fresh request id. It builds for
//! native targets, `wasm32-unknown-unknown` and `wasm32-wasip2`.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | [`HEADER_TIMESTAMP`] `x-proxy-timestamp` | unix seconds, ASCII decimal, e.g. `1763784000` |
//! | [`HEADER_REQUEST_ID`] `x-proxy-request-id` | 1–128 chars of `A-Z a-z 0-9 . _ : -` |
//! | [`HEADER_SIGNATURE`] `x-proxy-signature` | `v1=` followed by 64 lowercase hex chars |
//!
//! # Canonical string
//!
//! The signature is `HMAC-SHA256(key, canonical)` in lowercase hex, where `canonical` is
//! six lines joined by `\n` (no trailing newline):
//!
//! ```text
//! PROXY-HMAC-SHA256-V1
//! <METHOD>                  upper case, e.g. POST
//! <path and query>          exactly as sent on the request line, e.g. /v1/audit?from=1&to=2
//! <timestamp>               the x-proxy-timestamp value
//! <request id>              the x-proxy-request-id value
//! <hex sha256 of body>      lowercase; the empty body hashes to e3b0c442...b855
//! ```
//!
//! The path is signed byte for byte as it appears on the wire (percent-encoding included),
//! so the signer must sign the same string it puts in the URL.
//!
//! # Rules the verifier applies
//!
//! * all three headers present and well formed, else [`VerifyError::Missing`] /
//!   [`VerifyError::Malformed`];
//! * `|now - timestamp| <= window` (the proxy uses [`DEFAULT_WINDOW_SECS`] = 300), else
//!   [`VerifyError::OutOfWindow`];
//! * the MAC matches under the current key or, during a rotation, the previous key; the
//!   comparison is constant time ([`hmac::Mac::verify_slice`]).
//!
//! Replay protection (a request id seen before inside the window) needs shared state and is
//! the proxy's job; [`Verified::request_id`] is the key it stores.
//!
//! # Keys
//!
//! A key is at least [`MIN_KEY_BYTES`] (32) bytes, given as hex (`openssl rand -hex 32`).
//! [`SigningKey`] prints `[redacted]` in `Debug` and has no `Display`.
//!
//! ```
//! use proxy_auth::{sign, verify, SigningKey, Keys, SignatureHeaders, DEFAULT_WINDOW_SECS};
//! let key = SigningKey::from_hex(&"ab".repeat(32)).unwrap();
//! let signed = sign(&key, "POST", "/v1/messages", 1_763_784_000, "req-1", b"{}").unwrap();
//! let headers = SignatureHeaders {
//!     timestamp: Some(&signed.timestamp),
//!     request_id: Some(&signed.request_id),
//!     signature: Some(&signed.signature),
//! };
//! let keys = Keys { current: &key, previous: None };
//! let ok = verify(&keys, "POST", "/v1/messages", &headers, b"{}", 1_763_784_010, DEFAULT_WINDOW_SECS).unwrap();
//! assert_eq!(ok.request_id, "req-1");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the unix timestamp (seconds) the request was signed at.
pub const HEADER_TIMESTAMP: &str = "x-proxy-timestamp";
/// Header carrying the caller's request id; also used for log correlation and replay checks.
pub const HEADER_REQUEST_ID: &str = "x-proxy-request-id";
/// Header carrying `v1=<hex hmac>`.
pub const HEADER_SIGNATURE: &str = "x-proxy-signature";
/// First line of the canonical string; bump it (and the `v1=` prefix) to change the scheme.
pub const SCHEME: &str = "PROXY-HMAC-SHA256-V1";
/// Prefix of the signature header value.
pub const SIGNATURE_PREFIX: &str = "v1=";
/// Minimum key length in bytes: HMAC-SHA256 gets its full strength from a 256-bit key.
pub const MIN_KEY_BYTES: usize = 32;
/// Allowed clock skew in seconds, either way. Short enough to bound the replay cache.
pub const DEFAULT_WINDOW_SECS: i64 = 300;
/// Longest accepted request id: bounds the replay cache row and the log line.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A secret HMAC key. `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone)]
pub struct SigningKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not valid hex.
    NotHex,
    /// The decoded key is shorter than [`MIN_KEY_BYTES`]; carries the decoded length.
    TooShort(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotHex => f.write_str("key is not valid hex"),
            KeyError::TooShort(n) => write!(
                f,
                "key is {n} bytes after decoding; at least {MIN_KEY_BYTES} are required"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

impl SigningKey {
    /// Parses a hex key (surrounding whitespace ignored), at least [`MIN_KEY_BYTES`] decoded.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::NotHex)?;
        Self::from_bytes(&bytes)
    }

    /// Uses raw key bytes, at least [`MIN_KEY_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes keys of any length")
    }
}

/// The keys a verifier accepts: the current one and, during a rotation, the previous one.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// The key new requests are signed with.
    pub current: &'a SigningKey,
    /// The key being rotated out; accepted until it is removed from the configuration.
    pub previous: Option<&'a SigningKey>,
}

/// The three header values produced by [`sign`]; put each under its header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value for [`HEADER_TIMESTAMP`].
    pub timestamp: String,
    /// Value for [`HEADER_REQUEST_ID`].
    pub request_id: String,
    /// Value for [`HEADER_SIGNATURE`].
    pub signature: String,
}

impl SignedHeaders {
    /// `(header name, value)` pairs, ready to be added to an outgoing request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_REQUEST_ID, &self.request_id),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// The header values of an incoming request, as the verifier found them (`None` = absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// Value of [`HEADER_TIMESTAMP`].
    pub timestamp: Option<&'a str>,
    /// Value of [`HEADER_REQUEST_ID`].
    pub request_id: Option<&'a str>,
    /// Value of [`HEADER_SIGNATURE`].
    pub signature: Option<&'a str>,
}

/// Which configured key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    /// `PROXY_HMAC_KEY`.
    Current,
    /// `PROXY_HMAC_KEY_PREVIOUS`.
    Previous,
}

/// A request that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The caller's request id (validated charset and length).
    pub request_id: String,
    /// The signed timestamp.
    pub timestamp: i64,
    /// The key that matched.
    pub key: KeySlot,
}

/// Why a request was rejected. The `Display` text is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A header is absent; carries its name.
    Missing(&'static str),
    /// A header is present but not in the documented format; carries its name.
    Malformed(&'static str),
    /// The timestamp is further than the window from `now`.
    OutOfWindow,
    /// No configured key produces this signature.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Missing(h) => write!(f, "missing header {h}"),
            VerifyError::Malformed(h) => write!(f, "malformed header {h}"),
            VerifyError::OutOfWindow => f.write_str("timestamp outside the allowed window"),
            VerifyError::BadSignature => f.write_str("signature does not match"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Errors from [`sign`]: the inputs would produce headers the verifier rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The request id is empty, too long or has characters outside `A-Za-z0-9._:-`.
    InvalidRequestId,
    /// The method is empty or not an upper-case token.
    InvalidMethod,
    /// The path does not start with `/`.
    InvalidPath,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::InvalidRequestId => f.write_str("invalid request id"),
            SignError::InvalidMethod => f.write_str("invalid method"),
            SignError::InvalidPath => f.write_str("path must start with '/'"),
        }
    }
}

impl std::error::Error for SignError {}

/// True if `id` is 1..=[`MAX_REQUEST_ID_LEN`] chars of `A-Za-z0-9._:-`.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn is_valid_method(method: &str) -> bool {
    !method.is_empty() && method.len() <= 16 && method.bytes().all(|b| b.is_ascii_uppercase())
}

/// Lowercase hex SHA-256 of `body`.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The exact string that is MAC'd; see the crate docs.
pub fn canonical_string(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    request_id: &str,
    body: &[u8],
) -> String {
    let mut s = String::with_capacity(160 + path_and_query.len());
    for part in [SCHEME, method, path_and_query] {
        s.push_str(part);
        s.push('\n');
    }
    s.push_str(&timestamp.to_string());
    s.push('\n');
    s.push_str(request_id);
    s.push('\n');
    s.push_str(&body_hash(body));
    s
}

/// Signs a request. `timestamp` is the caller's current unix time in seconds and
/// `request_id` a fresh unique id (a UUID or 16+ random bytes in hex are fine).
pub fn sign(
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    request_id: &str,
    body: &[u8],
) -> Result<SignedHeaders, SignError> {
    if !is_valid_method(method) {
        return Err(SignError::InvalidMethod);
    }
    if !path_and_query.starts_with('/') {
        return Err(SignError::InvalidPath);
    }
    if !is_valid_request_id(request_id) {
        return Err(SignError::InvalidRequestId);
    }
    let mut mac = key.mac();
    mac.update(canonical_string(method, path_and_query, timestamp, request_id, body).as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(SignedHeaders {
        timestamp: timestamp.to_string(),
        request_id: request_id.to_owned(),
        signature: format!("{SIGNATURE_PREFIX}{}", hex::encode(tag)),
    })
}

fn parse_timestamp(text: &str) -> Option<i64> {
    // Plain decimal only: no sign, no spaces, at most 12 digits (year 33658).
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_signature(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix(SIGNATURE_PREFIX)?;
    if hex_part.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Verifies an incoming request; `now` is the verifier's unix time in seconds and
/// `window_secs` the allowed skew either way. Does not check for replays.
pub fn verify(
    keys: &Keys<'_>,
    method: &str,
    path_and_query: &str,
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<Verified, VerifyError> {
    let ts_text = headers
        .timestamp
        .ok_or(VerifyError::Missing(HEADER_TIMESTAMP))?;
    let request_id = headers
        .request_id
        .ok_or(VerifyError::Missing(HEADER_REQUEST_ID))?;
    let sig_text = headers
        .signature
        .ok_or(VerifyError::Missing(HEADER_SIGNATURE))?;
    let timestamp = parse_timestamp(ts_text).ok_or(VerifyError::Malformed(HEADER_TIMESTAMP))?;
    if !is_valid_request_id(request_id) {
        return Err(VerifyError::Malformed(HEADER_REQUEST_ID));
    }
    let tag = parse_signature(sig_text).ok_or(VerifyError::Malformed(HEADER_SIGNATURE))?;
    if (now - timestamp).abs() > window_secs {
        return Err(VerifyError::OutOfWindow);
    }
    let canonical = canonical_string(method, path_and_query, timestamp, request_id, body);
    let matches = |key: &SigningKey| {
        let mut mac = key.mac();
        mac.update(canonical.as_bytes());
        mac.verify_slice(&tag).is_ok()
    };
    // Both keys are always tried so the time taken does not tell which slot matched.
    let current = matches(keys.current);
    let previous = keys.previous.map(matches).unwrap_or(false);
    let slot = if current {
        KeySlot::Current
    } else if previous {
        KeySlot::Previous
    } else {
        return Err(VerifyError::BadSignature);
    };
    Ok(Verified {
        request_id: request_id.to_owned(),
        timestamp,
        key: slot,
    })
}

/// Constant-time equality for byte strings of equal length (different lengths are unequal).
/// Exposed for callers that compare other secrets, e.g. API keys.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_784_000;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn headers(s: &SignedHeaders) -> SignatureHeaders<'_> {
        SignatureHeaders {
            timestamp: Some(&s.timestamp),
            request_id: Some(&s.request_id),
            signature: Some(&s.signature),
        }
    }

    fn check(
        keys: &Keys<'_>,
        s: &SignedHeaders,
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        verify(
            keys,
            method,
            path,
            &headers(s),
            body,
            now,
            DEFAULT_WINDOW_SECS,
        )
    }

    #[test]
    fn a_signed_request_verifies_under_the_current_key() {
        let k = key(1);
        let s = sign(&k, "POST", "/v1/messages", NOW, "abc-1", b"{\"a\":1}").unwrap();
        let keys = Keys {
            current: &k,
            previous: None,
        };
        let v = check(&keys, &s, "POST", "/v1/messages", b"{\"a\":1}", NOW).unwrap();
        assert_eq!(v.request_id, "abc-1");
        assert_eq!(v.timestamp, NOW);
        assert_eq!(v.key, KeySlot::Current);
    }

    #[test]
    fn a_request_signed_with_the_previous_key_verifies_during_rotation() {
        let (old, new) = (key(1), key(2));
        let s = sign(&old, "GET", "/v1/ping", NOW, "r", b"").unwrap();
        let keys = Keys {
            current: &new,
            previous: Some(&old),
        };
        assert_eq!(
            check(&keys, &s, "GET", "/v1/ping", b"", NOW).unwrap().key,
            KeySlot::Previous
        );
        let no_previous = Keys {
            current: &new,
            previous: None,
        };
        assert_eq!(
            check(&no_previous, &s, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn any_change_to_a_signed_part_breaks_the_signature() {
        let k = key(3);
        let keys = Keys {
            current: &k,
            previous: None,
        };
        let s = sign(&k, "POST", "/v1/audit?from=1", NOW, "id", b"body").unwrap();
        let bad = Err(VerifyError::BadSignature);
        assert_eq!(
            check(&keys, &s, "PUT", "/v1/audit?from=1", b"body", NOW),
            bad
        );
        assert_eq!(
            check(&keys, &s, "POST", "/v1/audit?from=2", b"body", NOW),
            bad
        );
        assert_eq!(check(&keys, &s, "POST", "/v1/audit", b"body", NOW), bad);
        assert_eq!(
            check(&keys, &s, "POST", "/v1/audit?from=1", b"bodY", NOW),
            bad
        );
        let mut other_id = s.clone();
        other_id.request_id = "id2".into();
        assert_eq!(
            check(&keys, &other_id, "POST", "/v1/audit?from=1", b"body", NOW),
            bad
        );
        let mut other_ts = s.clone();
        other_ts.timestamp = (NOW + 1).to_string();
        assert_eq!(
            check(&keys, &other_ts, "POST", "/v1/audit?from=1", b"body", NOW),
            bad
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected_on_both_sides() {
        let k = key(4);
        let keys = Keys {
            current: &k,
            previous: None,
        };
        let s = sign(&k, "GET", "/", NOW, "x", b"").unwrap();
        assert!(check(&keys, &s, "GET", "/", b"", NOW + 300).is_ok());
        assert!(check(&keys, &s, "GET", "/", b"", NOW - 300).is_ok());
        assert_eq!(
            check(&keys, &s, "GET", "/", b"", NOW + 301),
            Err(VerifyError::OutOfWindow)
        );
        assert_eq!(
            check(&keys, &s, "GET", "/", b"", NOW - 301),
            Err(VerifyError::OutOfWindow)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let k = key(5);
        let keys = Keys {
            current: &k,
            previous: None,
        };
        let s = sign(&k, "GET", "/", NOW, "x", b"").unwrap();
        let mut h = headers(&s);
        h.signature = None;
        assert_eq!(
            verify(&keys, "GET", "/", &h, b"", NOW, 300),
            Err(VerifyError::Missing(HEADER_SIGNATURE))
        );
        h.request_id = None;
        assert_eq!(
            verify(&keys, "GET", "/", &h, b"", NOW, 300),
            Err(VerifyError::Missing(HEADER_REQUEST_ID))
        );
        h.timestamp = None;
        assert_eq!(
            verify(&keys, "GET", "/", &h, b"", NOW, 300),
            Err(VerifyError::Missing(HEADER_TIMESTAMP))
        );
    }

    #[test]
    fn malformed_headers_are_rejected_before_any_mac_work() {
        let k = key(6);
        let keys = Keys {
            current: &k,
            previous: None,
        };
        let s = sign(&k, "GET", "/", NOW, "x", b"").unwrap();
        let cases: [(&str, &str, &str, &'static str); 6] = [
            ("-1", "x", &s.signature, HEADER_TIMESTAMP),
            ("17637840e1", "x", &s.signature, HEADER_TIMESTAMP),
            (&s.timestamp, "bad id", &s.signature, HEADER_REQUEST_ID),
            (&s.timestamp, "x", "deadbeef", HEADER_SIGNATURE),
            (&s.timestamp, "x", &s.signature[3..], HEADER_SIGNATURE),
            (&s.timestamp, "x", "v1=zz", HEADER_SIGNATURE),
        ];
        for (ts, id, sig, name) in cases {
            let h = SignatureHeaders {
                timestamp: Some(ts),
                request_id: Some(id),
                signature: Some(sig),
            };
            assert_eq!(
                verify(&keys, "GET", "/", &h, b"", NOW, 300),
                Err(VerifyError::Malformed(name)),
                "{ts} {id} {sig}"
            );
        }
    }

    #[test]
    fn a_signature_from_another_key_is_rejected() {
        let s = sign(&key(7), "GET", "/", NOW, "x", b"").unwrap();
        let k = key(8);
        let keys = Keys {
            current: &k,
            previous: None,
        };
        assert_eq!(
            check(&keys, &s, "GET", "/", b"", NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn keys_shorter_than_32_bytes_or_not_hex_are_refused() {
        assert_eq!(
            SigningKey::from_hex(&"ab".repeat(31)).unwrap_err(),
            KeyError::TooShort(31)
        );
        assert_eq!(SigningKey::from_hex("zz").unwrap_err(), KeyError::NotHex);
        assert!(SigningKey::from_hex(&format!(" {}\n", "0f".repeat(32))).is_ok());
    }

    #[test]
    fn key_debug_output_is_redacted() {
        let k = SigningKey::from_hex(&"ab".repeat(32)).unwrap();
        let shown = format!(
            "{k:?} {:?}",
            Keys {
                current: &k,
                previous: Some(&k)
            }
        );
        assert!(!shown.contains("ab"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn sign_rejects_inputs_the_verifier_would_refuse() {
        let k = key(9);
        assert_eq!(
            sign(&k, "POST", "/", NOW, "", b""),
            Err(SignError::InvalidRequestId)
        );
        assert_eq!(
            sign(&k, "POST", "/", NOW, &"a".repeat(129), b""),
            Err(SignError::InvalidRequestId)
        );
        assert_eq!(
            sign(&k, "post", "/", NOW, "a", b""),
            Err(SignError::InvalidMethod)
        );
        assert_eq!(
            sign(&k, "POST", "v1", NOW, "a", b""),
            Err(SignError::InvalidPath)
        );
    }

    #[test]
    fn the_canonical_string_matches_the_documented_layout() {
        let c = canonical_string("POST", "/v1/x?a=1", 42, "rid", b"");
        assert_eq!(
            c,
            "PROXY-HMAC-SHA256-V1\nPOST\n/v1/x?a=1\n42\nrid\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_known_vector_stays_stable() {
        // Computed independently with: printf '%s' "$canonical" |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:<32 x 0x01>
        let s = sign(&key(1), "POST", "/v1/x?a=1", 42, "rid", b"").unwrap();
        assert_eq!(s.signature, format!("v1={}", KNOWN_VECTOR));
    }

    const KNOWN_VECTOR: &str = "ffc3b45284909affa84373c9656bf9a8a27767a4960f66d17a943f5d61e59626";

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
