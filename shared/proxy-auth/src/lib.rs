//! Request signing between the edge functions and the Postgres proxy (`services/pg-proxy`).
//!
//! The edge **signs** every request it sends to the proxy with [`sign_v2`]; the proxy
//! **verifies** it with [`verify_request`]. The crate owns the canonical strings, the header
//! names, the key type and the verification rules. It has no clock, no randomness and no
//! async runtime: the caller passes the unix timestamp, a fresh random nonce and the
//! proxy's audience. It builds for native targets, `wasm32-unknown-unknown` and
//! `wasm32-wasip2`.
//!
//! # Signing a call (edge side, format V2)
//!
//! ```
//! use proxy_auth::{nonce_hex, sign_v2, Call, SigningKey};
//! # let secret = "ab".repeat(32);
//! # let (now_unix, random_16_bytes, body) = (1_763_784_000, [7u8; 16], b"{}".to_vec());
//! let key = SigningKey::from_hex(&secret)?; // PROXY_HMAC_KEY, >= 32 bytes; Debug = [redacted]
//! let nonce = nonce_hex(&random_16_bytes)?;  // 16..=32 fresh random bytes per call
//! let signed = sign_v2(&key, &Call {
//!     method: "POST",
//!     path_and_query: "/v1/messages",     // exactly what goes on the request line
//!     audience: "proxy.example.com",      // the proxy's host: PROXY_AUDIENCE on both sides
//!     timestamp: now_unix,
//!     nonce: &nonce,
//!     request_id: "edge-7f3a",            // correlation id; may repeat within one inbound request
//!     body: &body,
//! })?;
//! for (name, value) in signed.pairs() {
//!     // req.headers_mut().insert(name, value.parse()?);
//!     # let _ = (name, value);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every call needs a **new nonce** (a retry too): the proxy refuses a nonce it has seen in
//! the last 2 × [`DEFAULT_WINDOW_SECS`] for every operation that changes state. The request
//! id is only for correlation (logs, audit records) and may be the inbound request's
//! `X-Request-ID`, repeated across the proxy calls that one inbound request makes.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | [`HEADER_TIMESTAMP`] `x-proxy-timestamp` | unix seconds, ASCII decimal, e.g. `1763784000` |
//! | [`HEADER_NONCE`] `x-proxy-nonce` | 32–64 lowercase hex chars (128–256 random bits), new per call (V2) |
//! | [`HEADER_REQUEST_ID`] `x-proxy-request-id` | 1–128 chars of `A-Z a-z 0-9 . _ : -` |
//! | [`HEADER_SIGNATURE`] `x-proxy-signature` | `v2=` (or `v1=`) followed by 64 lowercase hex chars |
//!
//! # Canonical string, V2
//!
//! The signature is `HMAC-SHA256(key, canonical)` in lowercase hex, where `canonical` is
//! eight lines joined by `\n` (no trailing newline):
//!
//! ```text
//! PROXY-HMAC-SHA256-V2
//! <METHOD>                  upper case, e.g. POST
//! <audience>                the proxy's host, lower case, no scheme or port: proxy.example.com
//! <path and query>          exactly as sent on the request line, e.g. /v1/audit?from=1&to=2
//! <timestamp>               the x-proxy-timestamp value
//! <nonce>                   the x-proxy-nonce value
//! <request id>              the x-proxy-request-id value
//! <hex sha256 of body>      lowercase; the empty body hashes to e3b0c442...b855
//! ```
//!
//! The audience binds a signature to one deployment: a request signed for staging does not
//! verify on production even if both share a key. The path is signed byte for byte as it
//! appears on the wire (percent-encoding included), so the signer must sign the same string
//! it puts in the URL.
//!
//! # V1 (accepted during the rotation to V2 only)
//!
//! Six lines, `PROXY-HMAC-SHA256-V1`, method, path and query, timestamp, request id, body
//! hash; signature `v1=<hex>`; no nonce and no audience, so the request id doubles as the
//! replay nonce. [`sign_v1`] exists for tests and for clients not yet moved. A verifier
//! refuses V1 with [`VerifyError::VersionRefused`] once [`Expect::accept_v1`] is false.
//!
//! # Rules the verifier applies
//!
//! * all headers of the signature's version present and well formed, else
//!   [`VerifyError::Missing`] / [`VerifyError::Malformed`];
//! * `|now - timestamp| <= window` (the proxy uses [`DEFAULT_WINDOW_SECS`] = 300), else
//!   [`VerifyError::OutOfWindow`];
//! * the MAC (V2: including the verifier's own audience) matches under the current key or,
//!   during a key rotation, the previous key; both are always tried and compared in constant
//!   time ([`hmac::Mac::verify_slice`]).
//!
//! Replay protection needs shared state and is the proxy's job; [`Verified::replay_key`] is
//! the value it stores (the nonce; for V1 the request id).
//!
//! # Keys
//!
//! A key is at least [`MIN_KEY_BYTES`] (32) bytes, given as hex (`openssl rand -hex 32`).
//! [`SigningKey`] prints `[redacted]` in `Debug` and has no `Display`.
//!
//! ```
//! use proxy_auth::*;
//! let key = SigningKey::from_hex(&"ab".repeat(32)).unwrap();
//! let nonce = nonce_hex(&[9u8; 16]).unwrap();
//! let call = Call {
//!     method: "POST", path_and_query: "/v1/messages", audience: "proxy.example.com",
//!     timestamp: 1_763_784_000, nonce: &nonce, request_id: "req-1", body: b"{}",
//! };
//! let signed = sign_v2(&key, &call).unwrap();
//! let headers = SignatureHeaders {
//!     timestamp: Some(&signed.timestamp),
//!     nonce: signed.nonce.as_deref(),
//!     request_id: Some(&signed.request_id),
//!     signature: Some(&signed.signature),
//! };
//! let keys = Keys { current: &key, previous: None };
//! let expect = Expect { audience: "proxy.example.com", accept_v1: false, window_secs: DEFAULT_WINDOW_SECS };
//! let ok = verify_request(&keys, &expect, "POST", "/v1/messages", &headers, b"{}", 1_763_784_010).unwrap();
//! assert_eq!((ok.version, ok.replay_key(), ok.request_id.as_str()), (Version::V2, nonce.as_str(), "req-1"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the unix timestamp (seconds) the request was signed at.
pub const HEADER_TIMESTAMP: &str = "x-proxy-timestamp";
/// Header carrying the caller's correlation id (logs, audit records). In V1 it is also the
/// replay nonce.
pub const HEADER_REQUEST_ID: &str = "x-proxy-request-id";
/// Header carrying the per-call random nonce (V2).
pub const HEADER_NONCE: &str = "x-proxy-nonce";
/// Header carrying `v2=<hex hmac>` (or `v1=<hex hmac>`).
pub const HEADER_SIGNATURE: &str = "x-proxy-signature";
/// First line of the V1 canonical string.
pub const SCHEME_V1: &str = "PROXY-HMAC-SHA256-V1";
/// First line of the V2 canonical string.
pub const SCHEME_V2: &str = "PROXY-HMAC-SHA256-V2";
/// Prefix of a V1 signature header value.
pub const SIGNATURE_PREFIX_V1: &str = "v1=";
/// Prefix of a V2 signature header value.
pub const SIGNATURE_PREFIX_V2: &str = "v2=";
/// Minimum key length in bytes: HMAC-SHA256 gets its full strength from a 256-bit key.
pub const MIN_KEY_BYTES: usize = 32;
/// Allowed clock skew in seconds, either way. Short enough to bound the replay cache.
pub const DEFAULT_WINDOW_SECS: i64 = 300;
/// Longest accepted request id: bounds the log line and the audit record.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Fewest random bytes in a nonce (128 bits: no collision between honest calls, no guessing).
pub const MIN_NONCE_BYTES: usize = 16;
/// Most random bytes in a nonce: bounds the replay-cache row.
pub const MAX_NONCE_BYTES: usize = 32;
/// Longest audience (a DNS name is at most 253 characters).
pub const MAX_AUDIENCE_LEN: usize = 253;

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

    fn tag(&self, canonical: &str) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(canonical.as_bytes());
        mac.finalize().into_bytes().into()
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

/// One outgoing proxy call, as [`sign_v2`] signs it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Upper-case method, e.g. `POST`.
    pub method: &'a str,
    /// Path and query exactly as put on the request line; starts with `/`.
    pub path_and_query: &'a str,
    /// The proxy's host name (lower case, no scheme, no port), e.g. `proxy.example.com`;
    /// see [`is_valid_audience`].
    pub audience: &'a str,
    /// The caller's current unix time in seconds.
    pub timestamp: i64,
    /// A fresh random nonce for this call, from [`nonce_hex`].
    pub nonce: &'a str,
    /// Correlation id (1–128 chars of `A-Za-z0-9._:-`); may repeat across calls.
    pub request_id: &'a str,
    /// The exact body bytes sent (empty for GET).
    pub body: &'a [u8],
}

/// The header values produced by [`sign_v2`] / [`sign_v1`]; put each under its header name,
/// e.g. with [`SignedHeaders::pairs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value for [`HEADER_TIMESTAMP`].
    pub timestamp: String,
    /// Value for [`HEADER_NONCE`] (V2 only).
    pub nonce: Option<String>,
    /// Value for [`HEADER_REQUEST_ID`].
    pub request_id: String,
    /// Value for [`HEADER_SIGNATURE`].
    pub signature: String,
}

impl SignedHeaders {
    /// `(header name, value)` pairs, ready to be added to an outgoing request: timestamp,
    /// nonce (V2), request id, signature.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        [
            Some((HEADER_TIMESTAMP, self.timestamp.as_str())),
            self.nonce.as_deref().map(|n| (HEADER_NONCE, n)),
            Some((HEADER_REQUEST_ID, self.request_id.as_str())),
            Some((HEADER_SIGNATURE, self.signature.as_str())),
        ]
        .into_iter()
        .flatten()
    }
}

/// The header values of an incoming request, as the verifier found them (`None` = absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// Value of [`HEADER_TIMESTAMP`].
    pub timestamp: Option<&'a str>,
    /// Value of [`HEADER_NONCE`].
    pub nonce: Option<&'a str>,
    /// Value of [`HEADER_REQUEST_ID`].
    pub request_id: Option<&'a str>,
    /// Value of [`HEADER_SIGNATURE`].
    pub signature: Option<&'a str>,
}

/// What the verifier requires beyond a valid MAC.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// This deployment's audience; V2 signatures made for any other do not verify.
    pub audience: &'a str,
    /// Whether V1 signatures (no audience, request id as nonce) are still accepted.
    pub accept_v1: bool,
    /// Allowed clock skew either way, seconds ([`DEFAULT_WINDOW_SECS`]).
    pub window_secs: i64,
}

/// Which configured key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    /// `PROXY_HMAC_KEY`.
    Current,
    /// `PROXY_HMAC_KEY_PREVIOUS`.
    Previous,
}

/// The signature format of a verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `v1=`: no audience, the request id is the nonce.
    V1,
    /// `v2=`: audience and a separate nonce.
    V2,
}

/// A request that passed [`verify_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signature format.
    pub version: Version,
    /// The caller's correlation id (validated charset and length).
    pub request_id: String,
    /// The V2 nonce (validated); `None` for V1.
    pub nonce: Option<String>,
    /// The signed timestamp.
    pub timestamp: i64,
    /// The key that matched.
    pub key: KeySlot,
}

impl Verified {
    /// The value a replay cache must remember: the nonce (V2) or the request id (V1).
    pub fn replay_key(&self) -> &str {
        self.nonce.as_deref().unwrap_or(&self.request_id)
    }
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
    /// No configured key produces this signature (for V2: for this audience).
    BadSignature,
    /// A V1 signature while the verifier no longer accepts V1.
    VersionRefused,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Missing(h) => write!(f, "missing header {h}"),
            VerifyError::Malformed(h) => write!(f, "malformed header {h}"),
            VerifyError::OutOfWindow => f.write_str("timestamp outside the allowed window"),
            VerifyError::BadSignature => f.write_str("signature does not match"),
            VerifyError::VersionRefused => {
                f.write_str("signature version v1 is no longer accepted; sign with v2")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Errors from [`sign_v2`], [`sign_v1`] and [`nonce_hex`]: the inputs would produce headers
/// the verifier rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The request id is empty, too long or has characters outside `A-Za-z0-9._:-`.
    InvalidRequestId,
    /// The method is empty or not an upper-case token.
    InvalidMethod,
    /// The path does not start with `/` or contains whitespace or control characters.
    InvalidPath,
    /// The nonce is not 32–64 lowercase hex chars (or the random input not 16–32 bytes).
    InvalidNonce,
    /// The audience is empty, too long, or not a lower-case host name; see
    /// [`is_valid_audience`].
    InvalidAudience,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::InvalidRequestId => f.write_str("invalid request id"),
            SignError::InvalidMethod => f.write_str("invalid method"),
            SignError::InvalidPath => {
                f.write_str("path must start with '/' and contain no whitespace")
            }
            SignError::InvalidNonce => f.write_str(
                "nonce must be 16 to 32 random bytes (32 to 64 lowercase hex characters)",
            ),
            SignError::InvalidAudience => f.write_str(
                "audience must be the proxy's lower-case host name without scheme or port",
            ),
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

/// True if `nonce` is an even number, 32..=64, of lowercase hex chars.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (2 * MIN_NONCE_BYTES..=2 * MAX_NONCE_BYTES).contains(&nonce.len())
        && nonce.len() % 2 == 0
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True if `audience` is 1..=[`MAX_AUDIENCE_LEN`] chars of `a-z 0-9 . -` (a lower-case DNS
/// name or IPv4 address), or an IPv6 literal in brackets (`[::1]`). No scheme, no port: the
/// signer and the verifier must agree on the exact string.
pub fn is_valid_audience(audience: &str) -> bool {
    if audience.is_empty() || audience.len() > MAX_AUDIENCE_LEN {
        return false;
    }
    if let Some(inner) = audience.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b':' | b'.'));
    }
    audience
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

/// Lowercase hex of `random` (16..=[`MAX_NONCE_BYTES`] bytes from the caller's randomness
/// source), the form [`HEADER_NONCE`] carries.
pub fn nonce_hex(random: &[u8]) -> Result<String, SignError> {
    if (MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&random.len()) {
        Ok(hex::encode(random))
    } else {
        Err(SignError::InvalidNonce)
    }
}

fn is_valid_method(method: &str) -> bool {
    !method.is_empty() && method.len() <= 16 && method.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_valid_path(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
}

/// Lowercase hex SHA-256 of `body`.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn join_lines(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(part);
    }
    s
}

/// The exact V2 string that is MAC'd; see the crate docs.
pub fn canonical_string_v2(call: &Call<'_>) -> String {
    join_lines(&[
        SCHEME_V2,
        call.method,
        call.audience,
        call.path_and_query,
        &call.timestamp.to_string(),
        call.nonce,
        call.request_id,
        &body_hash(call.body),
    ])
}

/// The exact V1 string that is MAC'd; see the crate docs.
pub fn canonical_string_v1(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    request_id: &str,
    body: &[u8],
) -> String {
    join_lines(&[
        SCHEME_V1,
        method,
        path_and_query,
        &timestamp.to_string(),
        request_id,
        &body_hash(body),
    ])
}

fn check_common(method: &str, path: &str, request_id: &str) -> Result<(), SignError> {
    if !is_valid_method(method) {
        return Err(SignError::InvalidMethod);
    }
    if !is_valid_path(path) {
        return Err(SignError::InvalidPath);
    }
    if !is_valid_request_id(request_id) {
        return Err(SignError::InvalidRequestId);
    }
    Ok(())
}

/// Signs a call in format V2 (audience, separate nonce). This is what the edge uses.
pub fn sign_v2(key: &SigningKey, call: &Call<'_>) -> Result<SignedHeaders, SignError> {
    check_common(call.method, call.path_and_query, call.request_id)?;
    if !is_valid_nonce(call.nonce) {
        return Err(SignError::InvalidNonce);
    }
    if !is_valid_audience(call.audience) {
        return Err(SignError::InvalidAudience);
    }
    let tag = key.tag(&canonical_string_v2(call));
    Ok(SignedHeaders {
        timestamp: call.timestamp.to_string(),
        nonce: Some(call.nonce.to_owned()),
        request_id: call.request_id.to_owned(),
        signature: format!("{SIGNATURE_PREFIX_V2}{}", hex::encode(tag)),
    })
}

/// Signs a request in format V1 (no audience; `request_id` must be unique per request as it
/// is the replay nonce). Accepted by the proxy only while `PROXY_ACCEPT_V1` is true.
pub fn sign_v1(
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    request_id: &str,
    body: &[u8],
) -> Result<SignedHeaders, SignError> {
    check_common(method, path_and_query, request_id)?;
    let tag = key.tag(&canonical_string_v1(
        method,
        path_and_query,
        timestamp,
        request_id,
        body,
    ));
    Ok(SignedHeaders {
        timestamp: timestamp.to_string(),
        nonce: None,
        request_id: request_id.to_owned(),
        signature: format!("{SIGNATURE_PREFIX_V1}{}", hex::encode(tag)),
    })
}

fn parse_timestamp(text: &str) -> Option<i64> {
    // Plain decimal only: no sign, no spaces, at most 12 digits (year 33658).
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_signature(text: &str) -> Option<(Version, [u8; 32])> {
    let (version, hex_part) = if let Some(h) = text.strip_prefix(SIGNATURE_PREFIX_V2) {
        (Version::V2, h)
    } else {
        (Version::V1, text.strip_prefix(SIGNATURE_PREFIX_V1)?)
    };
    if hex_part.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some((version, out))
}

/// Verifies an incoming request (V2, or V1 while `expect.accept_v1`); `now` is the
/// verifier's unix time in seconds. Does not check for replays: store
/// [`Verified::replay_key`] for that.
pub fn verify_request(
    keys: &Keys<'_>,
    expect: &Expect<'_>,
    method: &str,
    path_and_query: &str,
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
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
    let (version, tag) =
        parse_signature(sig_text).ok_or(VerifyError::Malformed(HEADER_SIGNATURE))?;
    let nonce = match version {
        Version::V1 if !expect.accept_v1 => return Err(VerifyError::VersionRefused),
        Version::V1 => None,
        Version::V2 => {
            let n = headers.nonce.ok_or(VerifyError::Missing(HEADER_NONCE))?;
            if !is_valid_nonce(n) {
                return Err(VerifyError::Malformed(HEADER_NONCE));
            }
            Some(n)
        }
    };
    if (now - timestamp).abs() > expect.window_secs {
        return Err(VerifyError::OutOfWindow);
    }
    let canonical = match nonce {
        Some(nonce) => canonical_string_v2(&Call {
            method,
            path_and_query,
            audience: expect.audience,
            timestamp,
            nonce,
            request_id,
            body,
        }),
        None => canonical_string_v1(method, path_and_query, timestamp, request_id, body),
    };
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
        version,
        request_id: request_id.to_owned(),
        nonce: nonce.map(str::to_owned),
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
    const AUD: &str = "proxy.example.com";
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn call<'a>(method: &'a str, path: &'a str, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            path_and_query: path,
            audience: AUD,
            timestamp: NOW,
            nonce: NONCE,
            request_id: "corr-1",
            body,
        }
    }

    fn headers(s: &SignedHeaders) -> SignatureHeaders<'_> {
        SignatureHeaders {
            timestamp: Some(&s.timestamp),
            nonce: s.nonce.as_deref(),
            request_id: Some(&s.request_id),
            signature: Some(&s.signature),
        }
    }

    fn expect(accept_v1: bool) -> Expect<'static> {
        Expect {
            audience: AUD,
            accept_v1,
            window_secs: DEFAULT_WINDOW_SECS,
        }
    }

    fn one(k: &SigningKey) -> Keys<'_> {
        Keys {
            current: k,
            previous: None,
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
        verify_request(keys, &expect(true), method, path, &headers(s), body, now)
    }

    #[test]
    fn a_v2_call_verifies_and_its_replay_key_is_the_nonce() {
        let k = key(1);
        let s = sign_v2(&k, &call("POST", "/v1/messages", b"{\"a\":1}")).unwrap();
        assert!(s.signature.starts_with("v2="));
        assert_eq!(s.nonce.as_deref(), Some(NONCE));
        let v = check(&one(&k), &s, "POST", "/v1/messages", b"{\"a\":1}", NOW).unwrap();
        assert_eq!(v.version, Version::V2);
        assert_eq!(v.request_id, "corr-1");
        assert_eq!(v.replay_key(), NONCE);
        assert_eq!(v.timestamp, NOW);
        assert_eq!(v.key, KeySlot::Current);
    }

    #[test]
    fn a_v2_signature_for_another_audience_does_not_verify() {
        let k = key(1);
        let mut staging = call("GET", "/v1/ping", b"");
        staging.audience = "proxy-staging.example.com";
        let s = sign_v2(&k, &staging).unwrap();
        assert_eq!(
            check(&one(&k), &s, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn the_request_id_may_repeat_across_calls_while_nonces_differ() {
        let k = key(1);
        let mut a = call("GET", "/v1/ping", b"");
        let other = "ffeeddccbbaa99887766554433221100";
        let s1 = sign_v2(&k, &a).unwrap();
        a.nonce = other;
        let s2 = sign_v2(&k, &a).unwrap();
        let v1 = check(&one(&k), &s1, "GET", "/v1/ping", b"", NOW).unwrap();
        let v2 = check(&one(&k), &s2, "GET", "/v1/ping", b"", NOW).unwrap();
        assert_eq!(v1.request_id, v2.request_id);
        assert_ne!(v1.replay_key(), v2.replay_key());
    }

    #[test]
    fn a_v1_request_verifies_while_accepted_and_is_refused_after() {
        let k = key(1);
        let s = sign_v1(&k, "POST", "/v1/messages", NOW, "abc-1", b"{}").unwrap();
        assert_eq!(s.nonce, None);
        let v = check(&one(&k), &s, "POST", "/v1/messages", b"{}", NOW).unwrap();
        assert_eq!(v.version, Version::V1);
        assert_eq!(v.replay_key(), "abc-1");
        assert_eq!(
            verify_request(
                &one(&k),
                &expect(false),
                "POST",
                "/v1/messages",
                &headers(&s),
                b"{}",
                NOW
            ),
            Err(VerifyError::VersionRefused)
        );
    }

    #[test]
    fn a_v2_signature_does_not_verify_as_v1_or_without_its_nonce() {
        let k = key(1);
        let s = sign_v2(&k, &call("GET", "/v1/ping", b"")).unwrap();
        let mut as_v1 = s.clone();
        as_v1.signature = s.signature.replacen("v2=", "v1=", 1);
        assert_eq!(
            check(&one(&k), &as_v1, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::BadSignature)
        );
        let mut no_nonce = s.clone();
        no_nonce.nonce = None;
        assert_eq!(
            check(&one(&k), &no_nonce, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::Missing(HEADER_NONCE))
        );
        let mut other_nonce = s.clone();
        other_nonce.nonce = Some("ffeeddccbbaa99887766554433221100".into());
        assert_eq!(
            check(&one(&k), &other_nonce, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_request_signed_with_the_previous_key_verifies_during_rotation() {
        let (old, new) = (key(1), key(2));
        let s = sign_v2(&old, &call("GET", "/v1/ping", b"")).unwrap();
        let keys = Keys {
            current: &new,
            previous: Some(&old),
        };
        assert_eq!(
            check(&keys, &s, "GET", "/v1/ping", b"", NOW).unwrap().key,
            KeySlot::Previous
        );
        assert_eq!(
            check(&one(&new), &s, "GET", "/v1/ping", b"", NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn any_change_to_a_signed_part_breaks_the_signature() {
        let k = key(3);
        let keys = one(&k);
        let s = sign_v2(&k, &call("POST", "/v1/audit?from=1", b"body")).unwrap();
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
        other_id.request_id = "corr-2".into();
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
        let s = sign_v2(&k, &call("GET", "/", b"")).unwrap();
        assert!(check(&one(&k), &s, "GET", "/", b"", NOW + 300).is_ok());
        assert!(check(&one(&k), &s, "GET", "/", b"", NOW - 300).is_ok());
        assert_eq!(
            check(&one(&k), &s, "GET", "/", b"", NOW + 301),
            Err(VerifyError::OutOfWindow)
        );
        assert_eq!(
            check(&one(&k), &s, "GET", "/", b"", NOW - 301),
            Err(VerifyError::OutOfWindow)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let k = key(5);
        let s = sign_v2(&k, &call("GET", "/", b"")).unwrap();
        let mut h = headers(&s);
        let v = |h: &SignatureHeaders<'_>| {
            verify_request(&one(&k), &expect(true), "GET", "/", h, b"", NOW)
        };
        h.signature = None;
        assert_eq!(v(&h), Err(VerifyError::Missing(HEADER_SIGNATURE)));
        h.request_id = None;
        assert_eq!(v(&h), Err(VerifyError::Missing(HEADER_REQUEST_ID)));
        h.timestamp = None;
        assert_eq!(v(&h), Err(VerifyError::Missing(HEADER_TIMESTAMP)));
    }

    #[test]
    fn malformed_headers_are_rejected_before_any_mac_work() {
        let k = key(6);
        let s = sign_v2(&k, &call("GET", "/", b"")).unwrap();
        let upper = NONCE.to_uppercase();
        let cases: [(&str, &str, &str, &str, &'static str); 8] = [
            ("-1", NONCE, "x", &s.signature, HEADER_TIMESTAMP),
            ("17637840e1", NONCE, "x", &s.signature, HEADER_TIMESTAMP),
            (
                &s.timestamp,
                NONCE,
                "bad id",
                &s.signature,
                HEADER_REQUEST_ID,
            ),
            (&s.timestamp, NONCE, "x", "deadbeef", HEADER_SIGNATURE),
            (
                &s.timestamp,
                NONCE,
                "x",
                &s.signature[3..],
                HEADER_SIGNATURE,
            ),
            (&s.timestamp, NONCE, "x", "v2=zz", HEADER_SIGNATURE),
            (&s.timestamp, "abc", "x", &s.signature, HEADER_NONCE),
            (&s.timestamp, &upper, "x", &s.signature, HEADER_NONCE),
        ];
        for (ts, nonce, id, sig, name) in cases {
            let h = SignatureHeaders {
                timestamp: Some(ts),
                nonce: Some(nonce),
                request_id: Some(id),
                signature: Some(sig),
            };
            assert_eq!(
                verify_request(&one(&k), &expect(true), "GET", "/", &h, b"", NOW),
                Err(VerifyError::Malformed(name)),
                "{ts} {nonce} {id} {sig}"
            );
        }
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
        let with = |f: &dyn Fn(&mut Call<'_>)| {
            let mut c = call("POST", "/", b"");
            f(&mut c);
            sign_v2(&k, &c)
        };
        let long_id: &'static str = Box::leak("a".repeat(129).into_boxed_str());
        assert_eq!(
            with(&|c| c.request_id = ""),
            Err(SignError::InvalidRequestId)
        );
        assert_eq!(
            with(&|c| c.request_id = long_id),
            Err(SignError::InvalidRequestId)
        );
        assert_eq!(with(&|c| c.method = "post"), Err(SignError::InvalidMethod));
        assert_eq!(
            with(&|c| c.path_and_query = "v1"),
            Err(SignError::InvalidPath)
        );
        assert_eq!(
            with(&|c| c.path_and_query = "/v1\nx"),
            Err(SignError::InvalidPath)
        );
        assert_eq!(with(&|c| c.nonce = "abcd"), Err(SignError::InvalidNonce));
        assert_eq!(
            with(&|c| c.audience = "Proxy.Example.com"),
            Err(SignError::InvalidAudience)
        );
        assert_eq!(
            with(&|c| c.audience = "https://proxy.example.com"),
            Err(SignError::InvalidAudience)
        );
        assert_eq!(
            with(&|c| c.audience = "a\nb"),
            Err(SignError::InvalidAudience)
        );
        assert_eq!(
            sign_v1(&k, "POST", "/", NOW, "", b""),
            Err(SignError::InvalidRequestId)
        );
    }

    #[test]
    fn nonces_are_16_to_32_random_bytes_in_lowercase_hex() {
        assert_eq!(nonce_hex(&[0xab; 16]).unwrap(), "ab".repeat(16));
        assert!(is_valid_nonce(&nonce_hex(&[1; 32]).unwrap()));
        assert_eq!(nonce_hex(&[1; 15]), Err(SignError::InvalidNonce));
        assert_eq!(nonce_hex(&[1; 33]), Err(SignError::InvalidNonce));
        assert!(!is_valid_nonce(&"a".repeat(33)));
    }

    #[test]
    fn audiences_are_lower_case_hosts_without_scheme_or_port() {
        for ok in [
            "proxy.example.com",
            "pg-proxy.up.railway.app",
            "127.0.0.1",
            "[::1]",
        ] {
            assert!(is_valid_audience(ok), "{ok}");
        }
        for bad in [
            "",
            "Proxy.example.com",
            "proxy.example.com:443",
            "a/b",
            "[]",
            "x y",
        ] {
            assert!(!is_valid_audience(bad), "{bad}");
        }
    }

    #[test]
    fn the_canonical_strings_match_the_documented_layout() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut c = call("POST", "/v1/x?a=1", b"");
        c.timestamp = 42;
        c.request_id = "rid";
        assert_eq!(
            canonical_string_v2(&c),
            format!("PROXY-HMAC-SHA256-V2\nPOST\nproxy.example.com\n/v1/x?a=1\n42\n{NONCE}\nrid\n{empty}")
        );
        assert_eq!(
            canonical_string_v1("POST", "/v1/x?a=1", 42, "rid", b""),
            format!("PROXY-HMAC-SHA256-V1\nPOST\n/v1/x?a=1\n42\nrid\n{empty}")
        );
    }

    #[test]
    fn known_vectors_stay_stable() {
        // Computed independently with: printf '%s' "$canonical" |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:<32 x 0x01>
        let mut c = call("POST", "/v1/x?a=1", b"");
        c.timestamp = 42;
        c.request_id = "rid";
        assert_eq!(
            sign_v2(&key(1), &c).unwrap().signature,
            "v2=8169ab559adb93858fc3ed6acb817a7887defabb01d0dd1003c6be6f22463a06"
        );
        assert_eq!(
            sign_v1(&key(1), "POST", "/v1/x?a=1", 42, "rid", b"")
                .unwrap()
                .signature,
            "v1=ffc3b45284909affa84373c9656bf9a8a27767a4960f66d17a943f5d61e59626"
        );
    }

    #[test]
    fn signed_headers_list_the_nonce_only_for_v2() {
        let k = key(1);
        let v2 = sign_v2(&k, &call("GET", "/", b"")).unwrap();
        let names: Vec<_> = v2.pairs().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                HEADER_TIMESTAMP,
                HEADER_NONCE,
                HEADER_REQUEST_ID,
                HEADER_SIGNATURE
            ]
        );
        let v1 = sign_v1(&k, "GET", "/", NOW, "r", b"").unwrap();
        assert_eq!(v1.pairs().count(), 3);
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
