//! Staff authentication flows on top of [`crate::session`]: login, refresh and the session
//! route (function `login`), logout and logout-all (function `logout`), with brute-force
//! lockouts and an audit event for each through the proxy.
//!
//! - **Login** `POST /api/v1/auth/login` `{"username","password"}` (JSON only, ≤ 8 KiB,
//!   lengths checked before any network call). Per-username (keyed hash, never the raw name)
//!   and per-client failure counters: at the limit, 429 with `Retry-After` and no proxy call
//!   (no argon2 work for attackers). The proxy verifies (argon2id, equal time for unknown
//!   users). One 401 body for every cause. Success: a session ([`session::create`]), the
//!   username counter reset, and an audit event written before the token leaves (an audit
//!   failure is a 503: no unaudited sessions).
//! - **Refresh** `POST /api/v1/auth/refresh`: a live session gets a new token (new `jti`); the
//!   old record is deleted at once and its revocation recorded in the proxy.
//! - **Session** `GET /api/v1/auth/session`: the caller's user, role and expiry.
//! - **Logout** `POST /api/v1/auth/logout`: deletes the record (the token dies at once),
//!   records the revocation durably, clears the cookie. Idempotent: an already revoked or
//!   expired token is 204 too.
//! - **Logout-all** `POST /api/v1/auth/logout-all`: raises the user's session generation in
//!   KV (immediate) and in the proxy (durable); every older token is refused.

use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::expiry;
use crate::log::{self, Level};
use crate::ports::{KeyValue, Platform};
use crate::proxy::{self, ProxyCall, ProxyTarget};
use crate::session::{self, Session};
use crate::{respond, Bytes, Ctx, Error, Request, Response};

/// Largest login body (the 8 KiB).
pub const MAX_LOGIN_BODY: usize = 8 * 1024;
/// Usernames the proxy can hold: 3–64 bytes.
const USERNAME_MAX: usize = 64;
/// Passwords the proxy verifies: at most 1024 bytes.
const PASSWORD_MAX: usize = 1024;
/// User agents are cut to this many characters in audit records.
const USER_AGENT_MAX: usize = 160;

/// The login body: exactly `username` and `password`, both strings. Read through
/// `serde_json::Value` (already in every artifact) rather than a derive, to keep the login
/// artifact small.
struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    fn parse(body: &Value) -> Result<Self, Error> {
        let object = body.as_object().ok_or_else(|| {
            Error::bad_request(
                "invalid_json",
                "JSON does not match the expected shape: an object.",
            )
        })?;
        if let Some(extra) = object.keys().find(|k| *k != "username" && *k != "password") {
            // Field names from our schema only; the caller's own key is not echoed.
            let _ = extra;
            return Err(Error::bad_request(
                "invalid_json",
                "JSON does not match the expected shape: only `username` and `password`.",
            ));
        }
        let field = |name: &'static str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::bad_request(
                        "invalid_json",
                        format!("JSON does not match the expected shape: missing field `{name}` (a string)."),
                    )
                })
        };
        Ok(Self {
            username: field("username")?,
            password: field("password")?,
        })
    }
}

/// A user as the proxy's `/v1/users/verify` returns it (`{"valid", "user": {"id",
/// "username", "role", "generation", "disabled"?}}`).
#[derive(Debug)]
struct User {
    id: i64,
    username: String,
    role: String,
    generation: i64,
    disabled: bool,
}

impl User {
    fn from_reply(reply: &Value) -> Result<Option<Self>, Error> {
        if reply["valid"] != Value::Bool(true) {
            return Ok(None);
        }
        let u = &reply["user"];
        let bad = || Error::Unexpected {
            cause: "proxy /v1/users/verify: valid without a readable user".into(),
        };
        Ok(Some(Self {
            id: u["id"].as_i64().ok_or_else(bad)?,
            username: u["username"].as_str().ok_or_else(bad)?.to_owned(),
            role: u["role"].as_str().ok_or_else(bad)?.to_owned(),
            generation: u["generation"].as_i64().unwrap_or(0),
            disabled: u["disabled"].as_bool().unwrap_or(false),
        }))
    }
}

/// Routes of the `login` function.
pub async fn login_routes<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    match req.uri().path() {
        "/api/v1/auth/login" => {
            respond::require_post(&req)?;
            login(&req, ctx).await
        }
        "/api/v1/auth/refresh" => {
            respond::require_post(&req)?;
            refresh(&req, ctx).await
        }
        "/api/v1/auth/session" => {
            respond::require_get(&req)?;
            let s = session::check(ctx, &req).await?;
            Ok(session_body(&s))
        }
        _ => Err(Error::NotFound),
    }
}

/// Routes of the `logout` function.
pub async fn logout_routes<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    match req.uri().path() {
        "/api/v1/auth/logout" => {
            respond::require_post(&req)?;
            logout(&req, ctx).await
        }
        "/api/v1/auth/logout-all" => {
            respond::require_post(&req)?;
            logout_all(&req, ctx).await
        }
        _ => Err(Error::NotFound),
    }
}

/// A keyed hash (HMAC-SHA256, first 128 bits in hex) of `value` under `purpose`, with
/// `SECRET_KEY` (else the JWT key): usernames and client addresses in counters and audit
/// records are never stored raw, and cannot be reversed by someone holding the store alone.
pub fn keyed_hash(cfg: &crate::config::EdgeConfig, purpose: &str, value: &str) -> String {
    use hmac::Mac as _;
    let key = cfg
        .secret("SECRET_KEY")
        .or_else(|| cfg.secret("JWT_SECRET_KEY"))
        .map(|s| s.expose().as_bytes().to_vec())
        .unwrap_or_default();
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Lockout {
    per_user: i64,
    per_ip: i64,
    window_ms: u64,
}

impl Lockout {
    fn from(cfg: &crate::config::EdgeConfig) -> Self {
        let n = |name: &str, default: i64| {
            cfg.text(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Self {
            per_user: n("LOGIN_MAX_FAILURES_PER_USER", 5),
            per_ip: n("LOGIN_MAX_FAILURES_PER_IP", 20),
            window_ms: n("LOGIN_LOCKOUT_MINUTES", 15).max(1) as u64 * 60_000,
        }
    }
}

/// Prefix of the failure counters (swept by window on stores without expiry).
const FAILURE_PREFIX: &str = "ctr:login:";

async fn login<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let creds = Credentials::parse(&respond::json_body::<Value>(req)?)?;
    let username = creds.username.trim().to_ascii_lowercase();
    if username.is_empty() || username.len() > USERNAME_MAX {
        return Err(Error::bad_request(
            "invalid_username",
            "username must be 1 to 64 bytes.",
        ));
    }
    if creds.password.is_empty() || creds.password.len() > PASSWORD_MAX {
        return Err(Error::bad_request(
            "invalid_password",
            "password must be 1 to 1024 bytes.",
        ));
    }
    let cfg = ctx.config;
    let kv = ctx.platform.kv();
    let limits = Lockout::from(cfg);
    let now = ctx.platform.clock().now_unix_ms();
    let window = now / limits.window_ms;
    let retry_after_s = ((window + 1) * limits.window_ms - now).div_ceil(1000);
    let user_hash = keyed_hash(cfg, "login-user", &username);
    let user_key = format!("{FAILURE_PREFIX}u:{user_hash}:{window}");
    let ip_key = format!("{FAILURE_PREFIX}ip:{}:{window}", ctx.client);
    let expires = (window + 2) * limits.window_ms;
    // Reads that create nothing: most logins have no failures to count.
    let (user_failures, ip_failures) = (kv.counter(&user_key).await?, kv.counter(&ip_key).await?);
    if user_failures >= limits.per_user || ip_failures >= limits.per_ip {
        ctx.event(Level::Warn, "login_locked_out", Map::new());
        return Err(Error::RateLimited { retry_after_s });
    }

    let target = ProxyTarget::from_config(cfg)?;
    let call = ProxyCall::post(
        "/v1/users/verify",
        &json!({"username": username, "password": creds.password}),
    )?;
    let (_, reply): (_, Value) = proxy::json(ctx, &target, &call, &[]).await?;
    let user = match User::from_reply(&reply)? {
        Some(user) if !user.disabled => user,
        other => {
            let reason = match other {
                Some(_) => "user_disabled",
                None => "bad_credentials",
            };
            let u = expiry::increment(kv, &user_key, 1, expires).await?;
            let ip = expiry::increment(kv, &ip_key, 1, expires).await?;
            let lockout = u == limits.per_user || ip == limits.per_ip;
            audit_later(
                ctx,
                "login.failure",
                None,
                Some(&user_hash),
                req,
                json!({"reason": reason}),
            );
            if lockout {
                audit_later(
                    ctx,
                    "login.lockout",
                    None,
                    Some(&user_hash),
                    req,
                    json!({"by": if u == limits.per_user { "username" } else { "client" }, "window_minutes": limits.window_ms / 60_000}),
                );
            }
            return Err(Error::Unauthorized);
        }
    };

    kv.delete(&user_key).await?;
    let settings = session::Settings::from_config(cfg)?;
    let issued = session::create(
        ctx,
        &settings,
        &user.id.to_string(),
        &user.username,
        &user.role,
        user.generation,
    )
    .await?;
    // No unaudited sessions: if the audit write fails, the session is withdrawn and the
    // login answers 503.
    let audited = audit(
        ctx,
        &target,
        "login.success",
        Some(&user.id.to_string()),
        Some(&issued.jti),
        req,
        json!({"role": user.role}),
    )
    .await;
    if let Err(e) = audited {
        let _ = kv.delete(&session::record_key(&issued.jti)).await;
        return Err(e);
    }
    Ok(token_response(ctx, &issued))
}

async fn refresh<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let old = session::check(ctx, req).await?;
    let settings = session::Settings::from_config(ctx.config)?;
    let r = &old.record;
    let generation = session::generation(ctx.platform.kv(), &r.sub).await?;
    let issued = session::create(ctx, &settings, &r.sub, &r.username, &r.role, generation).await?;
    let target = ProxyTarget::from_config(ctx.config)?;
    let audited = audit(
        ctx,
        &target,
        "session.refresh",
        Some(&r.sub),
        Some(&issued.jti),
        req,
        json!({"replaced": old.jti}),
    )
    .await;
    if let Err(e) = audited {
        let _ = ctx
            .platform
            .kv()
            .delete(&session::record_key(&issued.jti))
            .await;
        return Err(e);
    }
    ctx.platform
        .kv()
        .delete(&session::record_key(&old.jti))
        .await?;
    revoke_later(ctx, &old.jti, old.record.expires_ms);
    Ok(token_response(ctx, &issued))
}

async fn logout<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let (token, from_cookie) = session::token_of(req).ok_or(Error::Unauthorized)?;
    let settings = session::Settings::from_config(ctx.config)?;
    let now = ctx.platform.clock().now_unix_ms();
    let verified = settings.verify_allowing_expired(&token, now / 1000)?;
    session::check_origin(req, ctx.config, from_cookie)?;
    ctx.platform
        .kv()
        .delete(&session::record_key(&verified.jti))
        .await?;
    revoke_later(ctx, &verified.jti, verified.exp_s * 1000);
    let (target, sub, jti) = (
        ProxyTarget::from_config(ctx.config),
        verified.sub.clone(),
        verified.jti.clone(),
    );
    if let Ok(target) = target {
        let owned = OwnedAudit::of(ctx, req);
        let platform = ctx.platform;
        let config = ctx.config;
        let request_id = ctx.request_id.clone();
        let function = ctx.function;
        ctx.defer(async move {
            let ctx = Ctx::new(platform, request_id, function, config);
            owned
                .write(
                    &ctx,
                    &target,
                    "session.logout",
                    Some(&sub),
                    Some(&jti),
                    json!({}),
                )
                .await;
        });
    }
    Ok(logged_out())
}

async fn logout_all<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let s: Session = session::check(ctx, req).await?;
    let kv = ctx.platform.kv();
    // Immediate: every token issued so far carries a generation below this one.
    let raised = kv
        .increment(&session::generation_key(&s.record.sub), 1, None)
        .await?;
    kv.delete(&session::record_key(&s.jti)).await?;
    // Durable: the proxy's generation survives a loss of the KV store.
    let target = ProxyTarget::from_config(ctx.config)?;
    let user_id: i64 = s.record.sub.parse().map_err(|_| Error::Unexpected {
        cause: "session subject is not a user id".into(),
    })?;
    let call = ProxyCall::post("/v1/users/logout-all", &json!({ "user_id": user_id }))?;
    let (_, durable): (_, Value) = proxy::json(ctx, &target, &call, &[]).await?;
    if let Some(g) = durable["generation"].as_i64() {
        if g > raised {
            session::raise_generation(kv, &s.record.sub, g).await?;
        }
    }
    audit_later(
        ctx,
        "session.logout_all",
        Some(&s.record.sub),
        Some(&s.jti),
        req,
        json!({}),
    );
    Ok(logged_out())
}

fn logged_out() -> Response {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::SET_COOKIE, session::clear_cookie());
    h.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    resp
}

fn token_response<P: Platform>(ctx: &Ctx<'_, P>, issued: &session::Issued) -> Response {
    let expires_at = log::rfc3339_ms(issued.record.expires_ms);
    let mut resp = respond::json(
        StatusCode::OK,
        &json!({
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in_s,
            "expires_at": expires_at,
        }),
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::cookie(&issued.token, issued.expires_in_s),
    );
    let _ = ctx;
    resp
}

fn session_body(s: &Session) -> Response {
    let r = &s.record;
    respond::json(
        StatusCode::OK,
        &json!({
            "user": {"id": r.sub, "username": r.username},
            "role": r.role,
            "session": {
                "created_at": log::rfc3339_ms(r.created_ms),
                "expires_at": log::rfc3339_ms(r.expires_ms),
                "idle_expires_at": log::rfc3339_ms(r.idle_deadline_ms()),
            },
        }),
    )
}

/// The request facts an audit record carries, copied so a deferred write owns them.
struct OwnedAudit {
    ip_hash: String,
    user_agent: String,
}

impl OwnedAudit {
    fn of<P: Platform>(ctx: &Ctx<'_, P>, req: &Request) -> Self {
        let user_agent: String = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(USER_AGENT_MAX)
            .collect();
        Self {
            ip_hash: keyed_hash(ctx.config, "audit-ip", &ctx.client),
            user_agent,
        }
    }

    fn body(
        &self,
        action: &str,
        actor: Option<&str>,
        subject: Option<&str>,
        mut details: Value,
    ) -> Value {
        if let Some(d) = details.as_object_mut() {
            d.insert("ip_hash".into(), self.ip_hash.clone().into());
            d.insert("user_agent".into(), self.user_agent.clone().into());
        }
        let mut body = json!({"action": action, "details": details});
        if let Some(a) = actor {
            body["actor"] = a.into();
        }
        if let Some(s) = subject {
            body["subject"] = s.into();
        }
        body
    }

    /// Writes the event; a failure is logged (the caller has already answered).
    async fn write<P: Platform>(
        &self,
        ctx: &Ctx<'_, P>,
        target: &ProxyTarget,
        action: &str,
        actor: Option<&str>,
        subject: Option<&str>,
        details: Value,
    ) {
        let body = self.body(action, actor, subject, details);
        let result = match ProxyCall::post("/v1/audit", &body) {
            Ok(call) => proxy::json::<P, Value>(ctx, target, &call, &[])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let mut fields = Map::new();
            fields.insert("action".into(), action.into());
            fields.insert("cause".into(), e.to_string().into());
            ctx.event(Level::Error, "audit_write_failed", fields);
        }
    }
}

/// Writes an audit event now; its failure fails the request (503).
async fn audit<P: Platform>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    action: &str,
    actor: Option<&str>,
    subject: Option<&str>,
    req: &Request,
    details: Value,
) -> Result<(), Error> {
    let body = OwnedAudit::of(ctx, req).body(action, actor, subject, details);
    let call = ProxyCall::post("/v1/audit", &body)?;
    proxy::json::<P, Value>(ctx, target, &call, &[])
        .await
        .map(|_| ())
}

/// Writes an audit event after the response; a failure is logged.
fn audit_later<P: Platform>(
    ctx: &Ctx<'_, P>,
    action: &'static str,
    actor: Option<&str>,
    subject: Option<&str>,
    req: &Request,
    details: Value,
) {
    let Ok(target) = ProxyTarget::from_config(ctx.config) else {
        return;
    };
    let owned = OwnedAudit::of(ctx, req);
    let (actor, subject) = (actor.map(str::to_owned), subject.map(str::to_owned));
    let (platform, config, request_id, function) = (
        ctx.platform,
        ctx.config,
        ctx.request_id.clone(),
        ctx.function,
    );
    ctx.defer(async move {
        let ctx = Ctx::new(platform, request_id, function, config);
        owned
            .write(
                &ctx,
                &target,
                action,
                actor.as_deref(),
                subject.as_deref(),
                details,
            )
            .await;
    });
}

/// Records a revocation in the proxy after the response (the KV record is already gone, so
/// the token is dead either way; this is the durable trail).
fn revoke_later<P: Platform>(ctx: &Ctx<'_, P>, jti: &str, expires_ms: u64) {
    let Ok(target) = ProxyTarget::from_config(ctx.config) else {
        return;
    };
    let (platform, config, request_id, function) = (
        ctx.platform,
        ctx.config,
        ctx.request_id.clone(),
        ctx.function,
    );
    let body = json!({"token_id": jti, "expires_at": expires_ms / 1000});
    ctx.defer(async move {
        let ctx = Ctx::new(platform, request_id, function, config);
        let result = match ProxyCall::post("/v1/sessions/revoke", &body) {
            Ok(call) => proxy::json::<P, Value>(&ctx, &target, &call, &[])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let mut fields = Map::new();
            fields.insert("cause".into(), e.to_string().into());
            ctx.event(Level::Error, "revocation_record_failed", fields);
        }
    });
}

#[cfg(test)]
mod tests;
