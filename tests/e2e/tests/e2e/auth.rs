//! Login, the session check and logout on the running wasm, against a real pg-proxy and
//! Postgres (issue 9). Every case creates its own user, so cases never share lockout
//! counters or sessions.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// The session key of the `auth` profile, and the one it replaced (random; no deployment uses
/// them).
pub const JWT_KEY: &str = "3b1d8f0e6a2c4e7f9d1b3a5c7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f";
pub const OLD_JWT_KEY: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
const PASSWORD: &str = "correct horse battery staple";

fn user() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "staff{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn new_user(rt: &Runtime, role: &str) -> Result<String, Failed> {
    let name = user();
    rt.proxy().create_user(&name, PASSWORD, role)?;
    Ok(name)
}

fn json_post(
    rt: &Runtime,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, Failed> {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(&rt.url(path), "POST", &h, body)
}

fn login(
    rt: &Runtime,
    name: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, Failed> {
    json_post(
        rt,
        "/api/v1/auth/login",
        headers,
        &serde_json::json!({"username": name, "password": password}).to_string(),
    )
}

fn token(r: &Resp) -> Result<String, Failed> {
    r.json()?["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no access_token: {} {}", r.status, r.body).into())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn session_status(rt: &Runtime, t: &str) -> Result<u16, Failed> {
    Ok(call(
        rt,
        "GET",
        "/api/v1/auth/session",
        &[("authorization", &bearer(t))],
    )?
    .status)
}

fn logged_in(rt: &Runtime, name: &str) -> Result<String, Failed> {
    let r = login(rt, name, PASSWORD, &[])?;
    ensure(r.status == 200, format!("login: {} {}", r.status, r.body))?;
    token(&r)
}

pub fn login_session_logout_then_401_everywhere(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "admin")?;
    let r = login(rt, &name, PASSWORD, &[])?;
    ensure(r.status == 200, format!("login: {} {}", r.status, r.body))?;
    let body = r.json()?;
    ensure(
        body["token_type"] == "Bearer" && body["expires_in"].as_u64().is_some(),
        format!("{body}"),
    )?;
    ensure(
        r.header("cache-control") == "no-store",
        "login answers no-store",
    )?;
    let cookie = r.header("set-cookie");
    ensure(
        cookie.starts_with("__Host-session=")
            && ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"]
                .iter()
                .all(|a| cookie.contains(a)),
        format!("cookie {cookie:?}"),
    )?;
    let t = token(&r)?;
    let s = call(
        rt,
        "GET",
        "/api/v1/auth/session",
        &[("authorization", &bearer(&t))],
    )?;
    ensure(s.status == 200, format!("session: {} {}", s.status, s.body))?;
    let sb = s.json()?;
    ensure(
        sb["user"]["username"] == name.as_str() && sb["role"] == "admin",
        format!("{sb}"),
    )?;
    // The cookie alone authenticates a GET too.
    let c = call(
        rt,
        "GET",
        "/api/v1/auth/session",
        &[("cookie", &format!("__Host-session={t}"))],
    )?;
    ensure(c.status == 200, format!("cookie session: {}", c.status))?;

    let out = call(
        rt,
        "POST",
        "/api/v1/auth/logout",
        &[("authorization", &bearer(&t))],
    )?;
    ensure(
        out.status == 204,
        format!("logout: {} {}", out.status, out.body),
    )?;
    ensure(
        out.header("clear-site-data") == "\"cookies\"",
        "Clear-Site-Data",
    )?;
    ensure(
        out.header("set-cookie").contains("Max-Age=0"),
        "expired cookie",
    )?;
    // Dead at once, on login's route and on the logout function's protected route.
    ensure(session_status(rt, &t)? == 401, "session after logout")?;
    let all = call(
        rt,
        "POST",
        "/api/v1/auth/logout-all",
        &[("authorization", &bearer(&t))],
    )?;
    ensure(
        all.status == 401,
        format!("logout-all with a revoked token: {}", all.status),
    )?;
    // Idempotent.
    let again = call(
        rt,
        "POST",
        "/api/v1/auth/logout",
        &[("authorization", &bearer(&t))],
    )?;
    ensure(
        again.status == 204,
        format!("second logout: {}", again.status),
    )?;
    // The revocation is durable in the proxy.
    let mut revoked = Vec::new();
    for _ in 0..40 {
        revoked = rt.proxy().query("SELECT count(*) FROM revoked_sessions")?;
        if revoked.first().is_some_and(|n| n != "0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure(
        revoked.first().is_some_and(|n| n != "0"),
        format!("no durable revocation: {revoked:?}"),
    )
}

pub fn logout_all_kills_every_session(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let a = logged_in(rt, &name)?;
    let b = logged_in(rt, &name)?;
    ensure(
        session_status(rt, &a)? == 200 && session_status(rt, &b)? == 200,
        "both live",
    )?;
    let r = call(
        rt,
        "POST",
        "/api/v1/auth/logout-all",
        &[("authorization", &bearer(&a))],
    )?;
    ensure(
        r.status == 204,
        format!("logout-all: {} {}", r.status, r.body),
    )?;
    ensure(
        session_status(rt, &a)? == 401,
        "first session after logout-all",
    )?;
    ensure(
        session_status(rt, &b)? == 401,
        "second session after logout-all",
    )?;
    let gen = rt.proxy().query(&format!(
        "SELECT generation FROM users WHERE username = '{name}'"
    ))?;
    ensure(
        gen.first().is_some_and(|g| g != "0"),
        format!("durable generation: {gen:?}"),
    )?;
    let c = logged_in(rt, &name)?;
    ensure(
        session_status(rt, &c)? == 200,
        "a new login works after logout-all",
    )
}

pub fn refresh_revokes_the_old_token(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let old = logged_in(rt, &name)?;
    let r = call(
        rt,
        "POST",
        "/api/v1/auth/refresh",
        &[("authorization", &bearer(&old))],
    )?;
    ensure(r.status == 200, format!("refresh: {} {}", r.status, r.body))?;
    let new = token(&r)?;
    ensure(new != old, "a new token")?;
    ensure(session_status(rt, &old)? == 401, "old token after refresh")?;
    ensure(session_status(rt, &new)? == 200, "new token")
}

pub fn wrong_password_and_unknown_user_are_byte_identical_401s(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let id = [("x-request-id", "e2e-same-id-0001")];
    let wrong = login(rt, &name, "not the password at all", &id)?;
    let unknown = login(rt, &user(), PASSWORD, &id)?;
    ensure(
        wrong.status == 401 && unknown.status == 401,
        format!("{} / {}", wrong.status, unknown.status),
    )?;
    ensure(
        wrong.body == unknown.body,
        format!("bodies differ:\n{}\n{}", wrong.body, unknown.body),
    )
}

pub fn sixth_bad_password_is_429_without_a_proxy_call(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let verifies = |rt: &Runtime| rt.proxy().log_text().matches("/v1/users/verify").count();
    let before = verifies(rt);
    // Different client addresses: the per-username limit is what stops the sixth attempt.
    for i in 0..5 {
        let xff = format!("198.51.100.{}", 10 + i);
        let r = login(rt, &name, "wrong password", &[("x-forwarded-for", &xff)])?;
        ensure(
            r.status == 401,
            format!("attempt {}: {} {}", i + 1, r.status, r.body),
        )?;
    }
    let r = login(
        rt,
        &name,
        "wrong password",
        &[("x-forwarded-for", "198.51.100.99")],
    )?;
    ensure(
        r.status == 429,
        format!("sixth attempt: {} {}", r.status, r.body),
    )?;
    let retry: u64 = r.header("retry-after").parse().unwrap_or(0);
    ensure((1..=900).contains(&retry), format!("retry-after {retry}"))?;
    // Even the right password is refused while locked, and the proxy did no argon2 work.
    let right = login(rt, &name, PASSWORD, &[("x-forwarded-for", "198.51.100.98")])?;
    ensure(
        right.status == 429,
        format!("locked-out right password: {}", right.status),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    ensure(
        verifies(rt) - before == 5,
        format!("proxy verified {} times", verifies(rt) - before),
    )?;
    let mut lockouts = Vec::new();
    for _ in 0..40 {
        lockouts = rt
            .proxy()
            .query("SELECT count(*) FROM audit_events WHERE action = 'login.lockout'")?;
        if lockouts.first().is_some_and(|n| n != "0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure(
        lockouts.first().is_some_and(|n| n != "0"),
        "the lockout is audited",
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header and claims, HMAC-SHA256-signed with `key` by hand.
fn forge(header: &str, claims: &serde_json::Value, key: &str) -> String {
    use hmac::Mac as _;
    let signing = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(signing.as_bytes());
    format!("{signing}.{}", b64(&mac.finalize().into_bytes()))
}

pub fn forged_and_invalid_tokens_are_401(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "admin")?;
    let real = logged_in(rt, &name)?;
    // The real token's claims (its session exists), re-signed or altered.
    let payload = real.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap_or_default();
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
    };
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    ensure(
        session_status(rt, &forge(hs, &claims, JWT_KEY))? == 200,
        "re-signed with the right key is valid",
    )?;
    let now = claims["iat"].as_u64().unwrap_or(0);
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims.clone();
        c[field] = value;
        c
    };
    let without = |field: &str| {
        let mut c = claims.clone();
        c.as_object_mut().map(|o| o.remove(field));
        c
    };
    let mut tampered = real.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), payload),
        ),
        (
            "HS384 header",
            forge(r#"{"alg":"HS384","typ":"JWT"}"#, &claims, JWT_KEY),
        ),
        (
            "RS256 header",
            forge(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, JWT_KEY),
        ),
        (
            "tampered signature",
            String::from_utf8(tampered).unwrap_or_default(),
        ),
        (
            "expired",
            forge(hs, &with("exp", (now - 120).into()), JWT_KEY),
        ),
        (
            "future nbf",
            forge(hs, &with("nbf", (now + 3600).into()), JWT_KEY),
        ),
        (
            "wrong iss",
            forge(hs, &with("iss", "someone-else".into()), JWT_KEY),
        ),
        (
            "wrong aud",
            forge(hs, &with("aud", "another-app".into()), JWT_KEY),
        ),
        ("missing jti", forge(hs, &without("jti"), JWT_KEY)),
        (
            "another key",
            forge(
                hs,
                &claims,
                "0000000000000000000000000000000000000000000000000000000000000001",
            ),
        ),
    ];
    for (why, t) in cases {
        let status = session_status(rt, &t)?;
        ensure(status == 401, format!("{why}: {status}"))?;
    }
    Ok(())
}

pub fn the_previous_key_still_verifies_after_a_rotation(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let before = logged_in(rt, &name)?;
    rt.restart_with(&[
        ("JWT_SECRET_KEY", Some(OLD_JWT_KEY)),
        ("JWT_SECRET_KEY_PREVIOUS", Some(JWT_KEY)),
    ])?;
    let during = session_status(rt, &before)?;
    let fresh = logged_in(rt, &name)?;
    let fresh_ok = session_status(rt, &fresh)?;
    // Back to the profile's keys; the token made under the rotated key is now unknown.
    rt.restart_with(&[
        ("JWT_SECRET_KEY", Some(JWT_KEY)),
        ("JWT_SECRET_KEY_PREVIOUS", None),
    ])?;
    ensure(
        during == 200,
        format!("a token of the previous key after rotation: {during}"),
    )?;
    ensure(
        fresh_ok == 200,
        format!("a token of the new key: {fresh_ok}"),
    )?;
    ensure(
        session_status(rt, &fresh)? == 401,
        "a key no longer configured does not verify",
    )?;
    ensure(
        session_status(rt, &before)? == 200,
        "the original key's token again",
    )
}

pub fn bad_login_input_is_415_400_413(rt: &Runtime) -> Result<(), Failed> {
    let form = send(
        &rt.url("/api/v1/auth/login"),
        "POST",
        &[("content-type", "application/x-www-form-urlencoded")],
        "username=a&password=b",
    )?;
    ensure(
        form.status == 415,
        format!("form body: {} {}", form.status, form.body),
    )?;
    ensure(
        form.json()?["error"]["code"] == "unsupported_media_type",
        "415 code",
    )?;
    let broken = json_post(rt, "/api/v1/auth/login", &[], "{\"username\": ")?;
    ensure(
        broken.status == 400,
        format!("malformed: {}", broken.status),
    )?;
    // Deep nesting at serde_json's limit (128 levels) and past it: a 400, never a trap (500)
    // of a stack too small.
    let at_limit = format!("{}1{}", "{\"a\":".repeat(126), "}".repeat(126));
    let past_it = format!("{}1{}", "[".repeat(4000), "]".repeat(4000));
    for (what, value) in [
        ("126 nested objects", at_limit),
        ("4000 nested arrays", past_it),
    ] {
        let body = format!("{{\"username\":{value},\"password\":\"b\"}}");
        let r = json_post(rt, "/api/v1/auth/login", &[], &body)?;
        ensure(
            r.status == 400 && r.json()?["error"]["code"].is_string(),
            format!("{what}: {} {}", r.status, r.body),
        )?;
    }
    let missing = json_post(rt, "/api/v1/auth/login", &[], "{\"username\":\"a\"}")?;
    ensure(
        missing.status == 400,
        format!("missing field: {}", missing.status),
    )?;
    let big = format!(
        "{{\"username\":\"a\",\"password\":\"{}\"}}",
        "x".repeat(9000)
    );
    let large = json_post(rt, "/api/v1/auth/login", &[], &big)?;
    ensure(large.status == 413, format!("9 KB body: {}", large.status))?;
    let long = json_post(
        rt,
        "/api/v1/auth/login",
        &[],
        &format!(
            "{{\"username\":\"a\",\"password\":\"{}\"}}",
            "x".repeat(1100)
        ),
    )?;
    ensure(
        long.status == 400,
        format!("1100-byte password: {}", long.status),
    )?;
    let get = call(rt, "GET", "/api/v1/auth/login", &[])?;
    ensure(
        get.status == 405 && get.header("allow") == "POST",
        format!("GET: {}", get.status),
    )
}

pub fn cookie_logout_from_a_foreign_origin_is_403(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let t = logged_in(rt, &name)?;
    let cookie = format!("__Host-session={t}");
    let evil = call(
        rt,
        "POST",
        "/api/v1/auth/logout",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )?;
    ensure(
        evil.status == 403,
        format!("foreign origin: {}", evil.status),
    )?;
    ensure(session_status(rt, &t)? == 200, "still logged in")?;
    let ok = call(
        rt,
        "POST",
        "/api/v1/auth/logout",
        &[("cookie", &cookie), ("origin", "https://app.example.test")],
    )?;
    ensure(ok.status == 204, format!("own origin: {}", ok.status))?;
    ensure(session_status(rt, &t)? == 401, "logged out by cookie")
}

pub fn a_stopped_proxy_makes_login_503_not_401(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    rt.proxy().stop();
    let r = login(rt, &name, PASSWORD, &[]);
    let resumed = rt.proxy().resume();
    let r = r?;
    resumed?;
    ensure(
        r.status == 503,
        format!("login with the proxy down: {} {}", r.status, r.body),
    )?;
    ensure(r.json()?["error"]["code"] == "unavailable", "503 code")?;
    ensure(!r.header("retry-after").is_empty(), "Retry-After on 503")?;
    ensure(
        login(rt, &name, PASSWORD, &[])?.status == 200,
        "login once the proxy is back",
    )
}

pub fn no_password_token_or_cookie_reaches_any_log(rt: &Runtime) -> Result<(), Failed> {
    let name = new_user(rt, "staff")?;
    let marker = format!("e2e-auth-logs-{}", std::process::id());
    let r = login(rt, &name, PASSWORD, &[("x-request-id", &marker)])?;
    let t = token(&r)?;
    call(
        rt,
        "GET",
        "/api/v1/auth/session",
        &[
            ("cookie", &format!("__Host-session={t}")),
            ("x-request-id", &marker),
        ],
    )?;
    call(
        rt,
        "POST",
        "/api/v1/auth/logout",
        &[("authorization", &bearer(&t)), ("x-request-id", &marker)],
    )?;
    let _ = login(
        rt,
        &name,
        "a-wrong-password-value",
        &[("x-request-id", &marker)],
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let edge = all_logs_after(rt, &marker)?;
    let proxy = rt.proxy().log_text();
    let signature = t.rsplit('.').next().unwrap_or("-");
    for (what, secret) in [
        ("password", PASSWORD),
        ("wrong password", "a-wrong-password-value"),
        ("token", t.as_str()),
        ("token signature", signature),
        ("username", name.as_str()),
        ("JWT key", JWT_KEY),
    ] {
        ensure(
            !edge.contains(secret),
            format!("the {what} is in the edge logs"),
        )?;
        ensure(
            !proxy.contains(secret) || what == "username",
            format!("the {what} is in the proxy log"),
        )?;
    }
    Ok(())
}
