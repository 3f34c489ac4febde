//! Staff sessions: the JWT every protected route checks, and the server-side record that makes
//! logout real.
//!
//! A session is two things that must both hold:
//! - a **token** (jwt-simple, HS256 under `JWT_SECRET_KEY`; `JWT_SECRET_KEY_PREVIOUS`
//!   verifies only): `iss`, `aud`, `sub` (user id), `jti` (128 random bits), `iat`, `nbf`,
//!   `exp`, and custom `role`, `name` (username) and `gen` (the user's session generation);
//! - a **record** in KV under `sess:<jti>`: user, role, created, last seen, absolute expiry,
//!   idle timeout. Logout deletes it; a token without its record is dead at once.
//!
//! Logout-all raises the user's generation (`ctr:sgen:<user id>`, an atomic counter; durable
//! in the proxy too): every token carrying an older generation is refused.
//!
//! The check ([`check`]): algorithm pinned to HS256 by jwt-simple (`none`, `HS384`, `RS256`
//! ... are refused), signature under the current or previous key, `exp`/`nbf` with 30 s leeway,
//! `iss`/`aud`, `jti` and `exp` present, the record present and not idle, the generation
//! current. `last_seen` is refreshed at most once a minute, after the response. A KV outage is
//! 503, never "allowed". Cookie-authenticated unsafe methods also need an allowed `Origin`
//! (CSRF).

use std::collections::HashSet;

use http::{header, HeaderValue, Method};
use jwt_simple::prelude::{
    Audiences, Duration, HS256Key, JWTClaims, MACLike, UnixTimeStamp, VerificationOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::EdgeConfig;
use crate::log::Level;
use crate::ports::{KeyValue, Platform};
use crate::{Ctx, Error, Request};

/// Name of the session cookie: `__Host-` makes browsers insist on Secure, Path=/ and no
/// Domain, so no subdomain can set or read it.
pub const COOKIE: &str = "__Host-session";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_S: u64 = 30;
/// `last_seen` is written at most this often (a write per request would double the KV load).
pub const TOUCH_EVERY_MS: u64 = 60_000;
/// Longest token accepted (a few hundred bytes are normal; this bounds parsing work).
const MAX_TOKEN_LEN: usize = 4096;

/// The custom claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Custom {
    /// `staff` or `admin`.
    pub role: String,
    /// The username (for display; the user id is `sub`).
    pub name: String,
    /// The user's session generation when the token was issued.
    pub gen: i64,
}

/// The server-side record of one session (`sess:<jti>`), stored as nine lines (a version tag
/// and the fields below): hand-written, because a serde derive per stored type costs every
/// session-checking wasm artifact several KB, and every field here is a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// User id (the proxy's).
    pub sub: String,
    /// Username.
    pub username: String,
    /// Role.
    pub role: String,
    /// Session generation of the user at issue time.
    pub gen: i64,
    /// Created, unix ms.
    pub created_ms: u64,
    /// Last used, unix ms (refreshed at most once a minute).
    pub last_seen_ms: u64,
    /// Absolute expiry, unix ms (the token's `exp`).
    pub expires_ms: u64,
    /// Idle timeout, ms.
    pub idle_ms: u64,
}

impl Record {
    const TAG: &'static str = "sess1";

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            Self::TAG,
            self.sub,
            self.username,
            self.role,
            self.gen,
            self.created_ms,
            self.last_seen_ms,
            self.expires_ms,
            self.idle_ms
        )
        .into_bytes()
    }

    /// Reads the stored form; `None` for anything else (a record written by another version
    /// counts as absent: its session ends, it is never misread).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut f = text.split('\n');
        if f.next()? != Self::TAG {
            return None;
        }
        let (sub, username, role) = (f.next()?, f.next()?, f.next()?);
        let record = Self {
            sub: sub.to_owned(),
            username: username.to_owned(),
            role: role.to_owned(),
            gen: f.next()?.parse().ok()?,
            created_ms: f.next()?.parse().ok()?,
            last_seen_ms: f.next()?.parse().ok()?,
            expires_ms: f.next()?.parse().ok()?,
            idle_ms: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(record)
    }

    /// When the session ends if unused from now on: the earlier of idle and absolute expiry.
    pub fn idle_deadline_ms(&self) -> u64 {
        (self.last_seen_ms + self.idle_ms).min(self.expires_ms)
    }
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token's id (the record's key).
    pub jti: String,
    /// The record.
    pub record: Record,
    /// Whether the token came from the cookie (not the `Authorization` header).
    pub from_cookie: bool,
}

/// The keys and rules of this deployment's sessions, from the configuration.
pub struct Settings {
    current: HS256Key,
    previous: Option<HS256Key>,
    /// `iss` issued and required.
    pub issuer: String,
    /// `aud` issued and required.
    pub audience: String,
    /// Token lifetime, seconds.
    pub ttl_s: u64,
    /// Idle timeout, ms.
    pub idle_ms: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("keys", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_s", &self.ttl_s)
            .field("idle_ms", &self.idle_ms)
            .finish()
    }
}

fn minutes(cfg: &EdgeConfig, name: &str, default: u64) -> u64 {
    cfg.text(name)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
}

impl Settings {
    /// From `JWT_SECRET_KEY` (+ `_PREVIOUS`), `JWT_ISSUER`, `JWT_AUDIENCE`,
    /// `JWT_EXPIRATION_MINUTES`, `SESSION_IDLE_MINUTES`. The key's bytes are its text as
    /// configured (the catalog has checked it carries ≥ 32 random bytes).
    pub fn from_config(cfg: &EdgeConfig) -> Result<Self, Error> {
        let key = |name: &str| {
            cfg.secret(name)
                .map(|s| HS256Key::from_bytes(s.expose().as_bytes()))
        };
        let current = key("JWT_SECRET_KEY").ok_or_else(|| Error::Misconfigured {
            problems: vec!["JWT_SECRET_KEY: is required by sessions but is not set".into()],
        })?;
        Ok(Self {
            current,
            previous: key("JWT_SECRET_KEY_PREVIOUS"),
            issuer: cfg
                .text("JWT_ISSUER")
                .unwrap_or("assistant-edge")
                .to_owned(),
            audience: cfg
                .text("JWT_AUDIENCE")
                .unwrap_or("assistant-edge-dashboard")
                .to_owned(),
            ttl_s: minutes(cfg, "JWT_EXPIRATION_MINUTES", 60) * 60,
            idle_ms: minutes(cfg, "SESSION_IDLE_MINUTES", 30) * 60_000,
        })
    }

    /// Signs a token for `custom` as `sub` with id `jti`, issued at `now_s`.
    pub fn sign(&self, sub: &str, jti: &str, custom: Custom, now_s: u64) -> Result<String, Error> {
        let now = UnixTimeStamp::from_secs(now_s);
        let claims = JWTClaims {
            issued_at: Some(now),
            expires_at: Some(now + Duration::from_secs(self.ttl_s)),
            invalid_before: Some(now),
            issuer: Some(self.issuer.clone()),
            subject: Some(sub.to_owned()),
            audiences: Some(Audiences::AsString(self.audience.clone())),
            jwt_id: Some(jti.to_owned()),
            nonce: None,
            custom,
        };
        self.current
            .authenticate(claims)
            .map_err(|e| Error::Unexpected {
                cause: format!("signing a session token: {e}"),
            })
    }

    /// Verifies `token` as of `now_s`: signature under the current key, else the previous
    /// one; every claim rule of the module docs. Any failure is [`Error::Unauthorized`].
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Verified, Error> {
        self.verify_with(token, now_s, false)
    }

    /// Like [`Settings::verify`] but accepting an expired token (logout of an expired session
    /// is still a clean 204).
    pub fn verify_allowing_expired(&self, token: &str, now_s: u64) -> Result<Verified, Error> {
        self.verify_with(token, now_s, true)
    }

    fn verify_with(&self, token: &str, now_s: u64, expired_ok: bool) -> Result<Verified, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::Unauthorized);
        }
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([self.audience.clone()])),
            time_tolerance: Some(Duration::from_secs(LEEWAY_S)),
            // An expired token is judged as of just before its expiry when that is allowed;
            // the signature and every other claim still have to hold.
            artificial_time: Some(UnixTimeStamp::from_secs(now_s)),
            required_signature_type: Some("JWT".into()),
            max_token_length: Some(MAX_TOKEN_LEN),
            ..Default::default()
        };
        let attempt = |key: &HS256Key, options: VerificationOptions| {
            key.verify_token::<Custom>(token, Some(options))
        };
        let mut result = attempt(&self.current, options.clone());
        if result.is_err() {
            if let Some(previous) = &self.previous {
                result = attempt(previous, options.clone());
            }
        }
        if result.is_err() && expired_ok {
            // Re-judge as of the token's own expiry (read from the unverified claims only to
            // pick the instant; the MAC is still checked).
            if let Some(exp) = unverified_exp(token) {
                let mut at_expiry = options.clone();
                at_expiry.artificial_time = Some(UnixTimeStamp::from_secs(exp.min(now_s)));
                result = attempt(&self.current, at_expiry.clone());
                if result.is_err() {
                    if let Some(previous) = &self.previous {
                        result = attempt(previous, at_expiry);
                    }
                }
            }
        }
        let claims = result.map_err(|_| Error::Unauthorized)?;
        let (Some(jti), Some(sub), Some(exp)) = (claims.jwt_id, claims.subject, claims.expires_at)
        else {
            return Err(Error::Unauthorized);
        };
        if jti.len() != 32 || !jti.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Unauthorized);
        }
        Ok(Verified {
            jti,
            sub,
            exp_s: exp.as_secs(),
            custom: claims.custom,
        })
    }
}

/// `exp` of a token without verifying it (only to choose the instant an expired token is
/// judged at).
fn unverified_exp(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `jti`.
    pub jti: String,
    /// `sub`.
    pub sub: String,
    /// `exp`, unix seconds.
    pub exp_s: u64,
    /// role, name, generation.
    pub custom: Custom,
}

/// The token a request carries: `Authorization: Bearer`, else the session cookie; with
/// whether it came from the cookie.
pub fn token_of(req: &Request) -> Option<(String, bool)> {
    if let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = auth.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_owned(), false));
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| (value.to_owned(), true))
        })
}

/// CSRF: a cookie-authenticated request with an unsafe method must come from an allowed
/// `Origin` (browsers send it on every cross-site POST). Bearer tokens need no such check: a
/// browser never attaches them on its own.
pub fn check_origin(req: &Request, cfg: &EdgeConfig, from_cookie: bool) -> Result<(), Error> {
    if !from_cookie || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if cfg.cors.allows(o) => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

/// KV key of a session record.
pub fn record_key(jti: &str) -> String {
    format!("sess:{jti}")
}

/// KV counter holding a user's session generation.
pub fn generation_key(sub: &str) -> String {
    format!("ctr:sgen:{sub}")
}

/// The user's current session generation (0 when never raised).
pub async fn generation<K: KeyValue>(kv: &K, sub: &str) -> Result<i64, Error> {
    Ok(kv.counter(&generation_key(sub)).await?)
}

/// Raises the user's generation to at least `at_least` (the proxy's durable value) and
/// returns the new value. Concurrent raises may overshoot; the check only compares "not
/// older than", so overshooting never revives a token and tokens are issued with the value
/// read afterwards.
pub async fn raise_generation<K: KeyValue>(kv: &K, sub: &str, at_least: i64) -> Result<i64, Error> {
    let now = generation(kv, sub).await?;
    if now >= at_least {
        return Ok(now);
    }
    Ok(kv
        .increment(&generation_key(sub), at_least - now, None)
        .await?)
}

/// Full check of the request's session (see the module docs). `Unauthorized` for every
/// failure a client can cause, `Forbidden` for a cookie POST from a foreign origin,
/// `Unavailable` when the store is down.
pub async fn check<'a, P: Platform>(ctx: &Ctx<'a, P>, req: &Request) -> Result<Session, Error> {
    let (token, from_cookie) = token_of(req).ok_or(Error::Unauthorized)?;
    let settings = Settings::from_config(ctx.config)?;
    let now_ms = ctx.platform.clock().now_unix_ms();
    let verified = settings.verify(&token, now_ms / 1000)?;
    check_origin(req, ctx.config, from_cookie)?;
    let kv = ctx.platform.kv();
    let key = record_key(&verified.jti);
    // Both reads at once: on Workers each is a round trip to its own Durable Object. The
    // record decides first, so a missing record is Unauthorized whatever the other read gave.
    let (raw, current_generation) =
        crate::health::join(kv.get(&key), generation(kv, &verified.sub)).await;
    let raw = raw?.ok_or(Error::Unauthorized)?;
    let record = Record::decode(&raw).ok_or(Error::Unauthorized)?;
    if record.sub != verified.sub {
        return Err(Error::Unauthorized);
    }
    if now_ms > record.idle_deadline_ms() {
        // Ended by idleness: remove it now rather than wait for its absolute expiry.
        kv.delete(&key).await?;
        return Err(Error::Unauthorized);
    }
    if verified.custom.gen < current_generation? {
        return Err(Error::Unauthorized);
    }
    if now_ms.saturating_sub(record.last_seen_ms) >= TOUCH_EVERY_MS {
        let mut touched = record.clone();
        touched.last_seen_ms = now_ms;
        let platform = ctx.platform;
        let redactor = &ctx.config.redactor;
        let (function, request_id) = (ctx.function, ctx.request_id.clone());
        ctx.defer(async move {
            let value = touched.encode();
            if let Err(e) = platform
                .kv()
                .set(&key, &value, Some(touched.expires_ms))
                .await
            {
                let sink = crate::redact::RedactingSink::new(platform.log(), redactor);
                let mut fields = Map::new();
                fields.insert("cause".into(), e.to_string().into());
                crate::log::event(
                    &sink,
                    platform.clock().now_unix_ms(),
                    Level::Warn,
                    function,
                    &request_id,
                    "session_touch_failed",
                    fields,
                );
            }
        });
    }
    Ok(Session {
        jti: verified.jti,
        record,
        from_cookie,
    })
}

/// A new session for a user the proxy has just verified: a token and its record (stored
/// before the token leaves). `generation` is the proxy's durable generation of the user.
pub async fn create<P: Platform>(
    ctx: &Ctx<'_, P>,
    settings: &Settings,
    sub: &str,
    username: &str,
    role: &str,
    generation: i64,
) -> Result<Issued, Error> {
    let mut id = [0u8; 16];
    ctx.platform.random().fill(&mut id)?;
    let jti: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let kv = ctx.platform.kv();
    let gen = raise_generation(kv, sub, generation).await?;
    let now_ms = ctx.platform.clock().now_unix_ms();
    let now_s = now_ms / 1000;
    let record = Record {
        sub: sub.to_owned(),
        username: username.to_owned(),
        role: role.to_owned(),
        gen,
        created_ms: now_ms,
        last_seen_ms: now_ms,
        expires_ms: (now_s + settings.ttl_s) * 1000,
        idle_ms: settings.idle_ms,
    };
    let token = settings.sign(
        sub,
        &jti,
        Custom {
            role: role.to_owned(),
            name: username.to_owned(),
            gen,
        },
        now_s,
    )?;
    let value = record.encode();
    kv.set(&record_key(&jti), &value, Some(record.expires_ms))
        .await?;
    Ok(Issued {
        token,
        jti,
        expires_in_s: settings.ttl_s,
        record,
    })
}

/// A freshly issued session.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Its id.
    pub jti: String,
    /// Seconds until it expires.
    pub expires_in_s: u64,
    /// The stored record.
    pub record: Record,
}

/// The `Set-Cookie` value carrying `token` for `max_age_s` seconds.
pub fn cookie(token: &str, max_age_s: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Max-Age={max_age_s}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| clear_cookie())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure; HttpOnly; SameSite=Strict",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::memory::{block_on, MemoryPlatform};
    use crate::ports::Clock;
    use crate::Bytes;

    const KEY: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";
    const OLD_KEY: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";

    fn platform(extra: &[(&str, &str)]) -> MemoryPlatform {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        p.vars.set("jwt_secret_key", KEY);
        p.vars.set("cors_origins", "https://app.example.test");
        for (k, v) in extra {
            p.vars.set(k, v);
        }
        p
    }

    fn cfg(p: &MemoryPlatform) -> EdgeConfig {
        load(p, "login", &[]).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn req(
        method: Method,
        auth: Option<&str>,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Request {
        let mut r = Request::new(Bytes::new());
        *r.method_mut() = method;
        for (name, value) in [
            (header::AUTHORIZATION, auth),
            (header::COOKIE, cookie),
            (header::ORIGIN, origin),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }

    fn issue(p: &MemoryPlatform, c: &EdgeConfig) -> Issued {
        let ctx = Ctx::new(p, "r".into(), "login", c);
        let settings = Settings::from_config(c).unwrap_or_else(|e| panic!("{e:?}"));
        block_on(create(&ctx, &settings, "42", "ana", "admin", 0))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn check_bearer(p: &MemoryPlatform, c: &EdgeConfig, token: &str) -> Result<Session, Error> {
        let ctx = Ctx::new(p, "r".into(), "login", c);
        let bearer = format!("Bearer {token}");
        let r = block_on(check(&ctx, &req(Method::GET, Some(&bearer), None, None)));
        for work in ctx.take_deferred() {
            block_on(work);
        }
        r
    }

    /// A token with any header and claims, signed with `key` as HMAC-SHA256 by hand (to build
    /// the forgeries jwt-simple itself would never produce).
    fn forge(header: &str, claims: &Value, key: &str) -> String {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing = format!("{}.{}", b64.encode(header), b64.encode(claims.to_string()));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        mac.update(signing.as_bytes());
        format!("{signing}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    fn claims(now_s: u64) -> Value {
        serde_json::json!({
            "iss": "assistant-edge", "aud": "assistant-edge-dashboard", "sub": "42",
            "jti": "0123456789abcdef0123456789abcdef", "iat": now_s, "nbf": now_s,
            "exp": now_s + 600, "role": "admin", "name": "ana", "gen": 0
        })
    }

    #[test]
    fn an_issued_token_checks_and_carries_user_role_and_expiry() {
        let p = platform(&[]);
        let c = cfg(&p);
        let issued = issue(&p, &c);
        let s = check_bearer(&p, &c, &issued.token).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (s.record.username.as_str(), s.record.role.as_str()),
            ("ana", "admin")
        );
        assert_eq!(s.jti, issued.jti);
        assert_eq!(issued.expires_in_s, 3600);
        let header = issued.token.split('.').next().unwrap_or_default();
        use base64::Engine as _;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap_or_default();
        let header: Value = serde_json::from_slice(&header).unwrap_or_default();
        assert_eq!(
            (header["alg"].as_str(), header["typ"].as_str()),
            (Some("HS256"), Some("JWT"))
        );
    }

    #[test]
    fn a_deleted_record_kills_the_token_at_once() {
        let p = platform(&[]);
        let c = cfg(&p);
        let issued = issue(&p, &c);
        block_on(p.kv.delete(&record_key(&issued.jti))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            check_bearer(&p, &c, &issued.token),
            Err(Error::Unauthorized)
        );
    }

    #[test]
    fn a_raised_generation_kills_older_tokens_only() {
        let p = platform(&[]);
        let c = cfg(&p);
        let old = issue(&p, &c);
        block_on(raise_generation(&p.kv, "42", 1)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(check_bearer(&p, &c, &old.token), Err(Error::Unauthorized));
        let new = issue(&p, &c);
        assert!(check_bearer(&p, &c, &new.token).is_ok());
    }

    #[test]
    fn an_idle_session_ends_and_last_seen_is_refreshed_at_most_once_a_minute() {
        let p = platform(&[("session_idle_minutes", "5")]);
        let c = cfg(&p);
        let issued = issue(&p, &c);
        p.clock.advance(30_000);
        assert!(check_bearer(&p, &c, &issued.token).is_ok());
        let stored = |p: &MemoryPlatform| -> Record {
            let raw = block_on(p.kv.get(&record_key(&issued.jti)))
                .ok()
                .flatten()
                .unwrap_or_default();
            Record::decode(&raw).unwrap_or_else(|| panic!("unreadable record"))
        };
        assert_eq!(
            stored(&p).last_seen_ms,
            issued.record.created_ms,
            "not touched within a minute"
        );
        p.clock.advance(4 * 60_000);
        assert!(check_bearer(&p, &c, &issued.token).is_ok());
        assert_eq!(stored(&p).last_seen_ms, issued.record.created_ms + 270_000);
        p.clock.advance(5 * 60_000 + 1);
        assert_eq!(
            check_bearer(&p, &c, &issued.token),
            Err(Error::Unauthorized)
        );
    }

    #[test]
    fn forged_algorithms_and_bad_signatures_are_refused() {
        let p = platform(&[]);
        let c = cfg(&p);
        let now = p.clock.now_unix_ms() / 1000;
        let cl = claims(now);
        // Store a record so only the token decides.
        let issued = issue(&p, &c);
        let _ = issued;
        for (why, token) in [
            ("alg none", {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!(
                    "{}.{}.",
                    b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                    b64.encode(cl.to_string())
                )
            }),
            (
                "HS384 header",
                forge(r#"{"alg":"HS384","typ":"JWT"}"#, &cl, KEY),
            ),
            (
                "RS256 header",
                forge(r#"{"alg":"RS256","typ":"JWT"}"#, &cl, KEY),
            ),
            (
                "another key",
                forge(r#"{"alg":"HS256","typ":"JWT"}"#, &cl, OLD_KEY),
            ),
            ("tampered", {
                let t = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &cl, KEY);
                let mut t = t.into_bytes();
                let last = t.len() - 2;
                t[last] = if t[last] == b'A' { b'B' } else { b'A' };
                String::from_utf8(t).unwrap_or_default()
            }),
        ] {
            let s = Settings::from_config(&c).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(s.verify(&token, now), Err(Error::Unauthorized), "{why}");
        }
    }

    #[test]
    fn claims_are_enforced_with_30_seconds_of_leeway() {
        let p = platform(&[]);
        let c = cfg(&p);
        let s = Settings::from_config(&c).unwrap_or_else(|e| panic!("{e:?}"));
        let now = p.clock.now_unix_ms() / 1000;
        let good = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(now), KEY);
        assert!(s.verify(&good, now).is_ok());
        assert!(
            s.verify(&good, now + 600 + 29).is_ok(),
            "within leeway after exp"
        );
        assert_eq!(
            s.verify(&good, now + 600 + 31),
            Err(Error::Unauthorized),
            "expired"
        );
        let mut future = claims(now);
        future["nbf"] = (now + 120).into();
        future["iat"] = (now + 120).into();
        let t = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &future, KEY);
        assert_eq!(s.verify(&t, now), Err(Error::Unauthorized), "future nbf");
        for (field, value) in [("iss", "someone-else"), ("aud", "another-app")] {
            let mut cl = claims(now);
            cl[field] = value.into();
            let t = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &cl, KEY);
            assert_eq!(s.verify(&t, now), Err(Error::Unauthorized), "wrong {field}");
        }
        for missing in ["jti", "exp", "sub"] {
            let mut cl = claims(now);
            cl.as_object_mut().map(|o| o.remove(missing));
            let t = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &cl, KEY);
            assert_eq!(
                s.verify(&t, now),
                Err(Error::Unauthorized),
                "missing {missing}"
            );
        }
        let t = forge(r#"{"alg":"HS256"}"#, &claims(now), KEY);
        assert_eq!(s.verify(&t, now), Err(Error::Unauthorized), "no typ");
        let expired = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(now - 3600), KEY);
        assert!(
            s.verify_allowing_expired(&expired, now).is_ok(),
            "logout of an expired token"
        );
        let foreign = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims(now - 3600),
            OLD_KEY,
        );
        assert!(s.verify_allowing_expired(&foreign, now).is_err());
    }

    #[test]
    fn the_previous_key_still_verifies_but_never_signs() {
        let p = platform(&[("jwt_secret_key_previous", OLD_KEY)]);
        let c = cfg(&p);
        let s = Settings::from_config(&c).unwrap_or_else(|e| panic!("{e:?}"));
        let now = p.clock.now_unix_ms() / 1000;
        let by_old = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(now), OLD_KEY);
        assert!(s.verify(&by_old, now).is_ok());
        let mine = s
            .sign(
                "42",
                "0123456789abcdef0123456789abcdef",
                Custom {
                    role: "staff".into(),
                    name: "x".into(),
                    gen: 0,
                },
                now,
            )
            .unwrap_or_default();
        let only_old = Settings::from_config(&cfg(&platform(&[("jwt_secret_key", OLD_KEY)])))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            only_old.verify(&mine, now).is_err(),
            "signed with the current key"
        );
    }

    #[test]
    fn cookie_posts_need_an_allowed_origin_and_bearer_tokens_do_not() {
        let p = platform(&[]);
        let c = cfg(&p);
        let issued = issue(&p, &c);
        let ctx = Ctx::new(&p, "r".into(), "login", &c);
        let cookie = format!("{COOKIE}={}", issued.token);
        let post = |origin| block_on(check(&ctx, &req(Method::POST, None, Some(&cookie), origin)));
        assert_eq!(post(None).err(), Some(Error::Forbidden));
        assert_eq!(
            post(Some("https://evil.example")).err(),
            Some(Error::Forbidden)
        );
        assert!(post(Some("https://app.example.test")).is_ok());
        let bearer = format!("Bearer {}", issued.token);
        assert!(block_on(check(&ctx, &req(Method::POST, Some(&bearer), None, None))).is_ok());
        assert!(block_on(check(&ctx, &req(Method::GET, None, Some(&cookie), None))).is_ok());
    }

    #[test]
    fn a_down_store_is_503_never_allowed() {
        let p = platform(&[]);
        let c = cfg(&p);
        let issued = issue(&p, &c);
        p.kv.down.set(true);
        assert!(matches!(
            check_bearer(&p, &c, &issued.token),
            Err(Error::Unavailable { .. })
        ));
    }

    #[test]
    fn no_token_is_401() {
        let p = platform(&[]);
        let c = cfg(&p);
        let ctx = Ctx::new(&p, "r".into(), "login", &c);
        assert_eq!(
            block_on(check(&ctx, &req(Method::GET, None, None, None))),
            Err(Error::Unauthorized)
        );
        assert_eq!(
            block_on(check(
                &ctx,
                &req(Method::GET, Some("Basic abc"), None, None)
            )),
            Err(Error::Unauthorized)
        );
    }

    #[test]
    fn a_record_round_trips_and_anything_else_reads_as_absent() {
        let r = Record {
            sub: "42".into(),
            username: "ana@centro".into(),
            role: "admin".into(),
            gen: 3,
            created_ms: 1,
            last_seen_ms: 2,
            expires_ms: 3,
            idle_ms: 4,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        assert_eq!(Record::decode(b"{\"sub\":\"42\"}"), None);
        let mut extra = r.encode();
        extra.extend_from_slice(b"\nmore");
        assert_eq!(Record::decode(&extra), None);
    }
}
