//! The login and logout flows on the memory ports, with the proxy's answers scripted.

use super::*;
use crate::config::{load, EdgeConfig};
use crate::memory::{block_on, MemoryPlatform};
use crate::ports::PortError;
use http::Method;

const KEY: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";
const HMAC: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";

fn platform() -> MemoryPlatform {
    let p = MemoryPlatform::default();
    for (k, v) in [
        ("environment", "development"),
        ("jwt_secret_key", KEY),
        ("proxy_url", "http://localhost:8790"),
        ("proxy_hmac_key", HMAC),
        ("cors_origins", "https://app.example.test"),
    ] {
        p.vars.set(k, v);
    }
    p
}

fn cfg(p: &MemoryPlatform, function: &str) -> EdgeConfig {
    load(p, function, &[]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn reply(p: &MemoryPlatform, status: u16, body: Value) {
    let mut r = Response::new(Bytes::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    p.http.replies.borrow_mut().push_back(Ok(r));
}

fn user_ok(p: &MemoryPlatform) {
    reply(
        p,
        200,
        json!({"valid": true, "user": {"id": 42, "username": "ana", "role": "admin"}}),
    );
}

fn audit_ok(p: &MemoryPlatform) {
    reply(p, 201, json!({"id": 1, "at": 0}));
}

fn request(method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut r = Request::new(Bytes::from(body.to_owned()));
    *r.method_mut() = method;
    *r.uri_mut() = path.parse().unwrap_or_default();
    for (k, v) in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

fn login_req(username: &str, password: &str) -> Request {
    request(
        Method::POST,
        "/api/v1/auth/login",
        &[
            ("content-type", "application/json"),
            ("user-agent", "tests"),
        ],
        &json!({"username": username, "password": password}).to_string(),
    )
}

/// Runs one request through a route function and its deferred work.
fn run(p: &MemoryPlatform, function: &str, req: Request) -> Result<Response, Error> {
    let c = cfg(p, function);
    let ctx = Ctx::new(p, "req-1".into(), "login", &c).with_client("203.0.113.9".into());
    let out = block_on(async {
        if function == "login" {
            login_routes(req, &ctx).await
        } else {
            logout_routes(req, &ctx).await
        }
    });
    for work in ctx.take_deferred() {
        block_on(work);
    }
    out
}

fn token_of(resp: &Response) -> String {
    let v: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    v["access_token"].as_str().unwrap_or_default().to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn login_ok(p: &MemoryPlatform) -> String {
    user_ok(p);
    audit_ok(p);
    let resp = run(p, "login", login_req("Ana", "correct horse battery"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    token_of(&resp)
}

fn paths(p: &MemoryPlatform) -> Vec<String> {
    p.http
        .sent
        .borrow()
        .iter()
        .map(|r| r.uri().path().to_owned())
        .collect()
}

#[test]
fn a_login_returns_a_bearer_token_and_the_same_token_as_a_host_cookie() {
    let p = platform();
    user_ok(&p);
    audit_ok(&p);
    let resp = run(&p, "login", login_req("Ana", "correct horse battery"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v["expires_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap_or_default();
    assert!(cookie.starts_with(&format!(
        "__Host-session={}",
        v["access_token"].as_str().unwrap_or("?")
    )));
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert_eq!(paths(&p), ["/v1/users/verify", "/v1/audit"]);
    let sent = p.http.sent.borrow();
    let verify: Value = serde_json::from_slice(sent[0].body()).unwrap_or_default();
    assert_eq!(
        verify["username"], "ana",
        "usernames are compared lower-cased"
    );
    let audit: Value = serde_json::from_slice(sent[1].body()).unwrap_or_default();
    assert_eq!(audit["action"], "login.success");
    assert_eq!(audit["actor"], "42");
    assert!(audit["details"]["ip_hash"]
        .as_str()
        .is_some_and(|h| h.len() == 32));
    assert!(
        !audit.to_string().contains("203.0.113.9"),
        "the address is hashed"
    );
}

#[test]
fn the_session_route_shows_user_role_and_expiry() {
    let p = platform();
    let token = login_ok(&p);
    let resp = run(
        &p,
        "login",
        request(
            Method::GET,
            "/api/v1/auth/session",
            &[("authorization", &bearer(&token))],
            "",
        ),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let v: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    assert_eq!(
        (v["user"]["username"].as_str(), v["role"].as_str()),
        (Some("ana"), Some("admin"))
    );
    assert!(v["session"]["expires_at"].is_string());
}

#[test]
fn a_wrong_password_and_an_unknown_user_are_the_same_401() {
    let p = platform();
    reply(&p, 200, json!({"valid": false}));
    let wrong = run(&p, "login", login_req("ana", "nope")).err();
    reply(&p, 200, json!({"valid": false}));
    let unknown = run(&p, "login", login_req("nobody", "nope")).err();
    assert_eq!(wrong, Some(Error::Unauthorized));
    assert_eq!(unknown, Some(Error::Unauthorized));
}

#[test]
fn a_disabled_user_gets_the_same_401() {
    let p = platform();
    reply(
        &p,
        200,
        json!({"valid": true, "user": {"id": 7, "username": "old", "role": "staff", "disabled": true}}),
    );
    assert_eq!(
        run(&p, "login", login_req("old", "pw")).err(),
        Some(Error::Unauthorized)
    );
}

#[test]
fn the_sixth_bad_password_is_429_without_asking_the_proxy() {
    let p = platform();
    for _ in 0..5 {
        reply(&p, 200, json!({"valid": false}));
        assert_eq!(
            run(&p, "login", login_req("ana", "bad")).err(),
            Some(Error::Unauthorized)
        );
    }
    let verifies =
        |p: &MemoryPlatform| paths(p).iter().filter(|x| *x == "/v1/users/verify").count();
    assert_eq!(verifies(&p), 5);
    match run(&p, "login", login_req("ana", "bad")) {
        Err(Error::RateLimited { retry_after_s }) => assert!((1..=900).contains(&retry_after_s)),
        other => panic!("{other:?}"),
    }
    assert_eq!(verifies(&p), 5, "no argon2 work for a locked-out name");
    let audits: Vec<Value> = p
        .http
        .sent
        .borrow()
        .iter()
        .filter(|r| r.uri().path() == "/v1/audit")
        .map(|r| serde_json::from_slice(r.body()).unwrap_or_default())
        .collect();
    assert_eq!(
        audits
            .iter()
            .filter(|a| a["action"] == "login.failure")
            .count(),
        5
    );
    assert_eq!(
        audits
            .iter()
            .filter(|a| a["action"] == "login.lockout")
            .count(),
        1
    );
    assert!(
        audits.iter().all(|a| !a.to_string().contains("\"ana\"")),
        "usernames are hashed"
    );
    // The window's end frees the name.
    p.clock.advance(15 * 60_000);
    reply(&p, 200, json!({"valid": false}));
    assert_eq!(
        run(&p, "login", login_req("ana", "bad")).err(),
        Some(Error::Unauthorized)
    );
}

#[test]
fn a_login_without_failures_creates_no_failure_counter() {
    let p = platform();
    login_ok(&p);
    let counters = p.kv.counter_keys();
    assert!(
        !counters
            .iter()
            .any(|k| k.starts_with(FAILURE_PREFIX) || k.starts_with("ctr:exp:")),
        "reading the failure counters created or registered them: {counters:?}"
    );
    assert!(p.kv.value_keys().iter().all(|k| !k.starts_with("exp:")));
}

#[test]
fn a_successful_login_resets_the_username_counter() {
    let p = platform();
    for _ in 0..4 {
        reply(&p, 200, json!({"valid": false}));
        let _ = run(&p, "login", login_req("ana", "bad"));
    }
    login_ok(&p);
    for _ in 0..4 {
        reply(&p, 200, json!({"valid": false}));
        assert_eq!(
            run(&p, "login", login_req("ana", "bad")).err(),
            Some(Error::Unauthorized)
        );
    }
}

#[test]
fn bad_input_is_refused_before_any_network_call() {
    let p = platform();
    let long = "x".repeat(65);
    assert!(matches!(
        run(&p, "login", login_req(&long, "pw")),
        Err(Error::BadRequest { .. })
    ));
    let huge = "x".repeat(1025);
    assert!(matches!(
        run(&p, "login", login_req("ana", &huge)),
        Err(Error::BadRequest { .. })
    ));
    let form = request(
        Method::POST,
        "/api/v1/auth/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "username=a",
    );
    assert!(matches!(
        run(&p, "login", form),
        Err(Error::UnsupportedMediaType { .. })
    ));
    let broken = request(
        Method::POST,
        "/api/v1/auth/login",
        &[("content-type", "application/json")],
        "{\"username\":",
    );
    assert!(matches!(
        run(&p, "login", broken),
        Err(Error::BadRequest { .. })
    ));
    assert!(p.http.sent.borrow().is_empty());
}

#[test]
fn a_proxy_outage_is_503_not_401_and_an_audit_failure_withdraws_the_session() {
    let p = platform();
    for _ in 0..2 {
        p.http
            .replies
            .borrow_mut()
            .push_back(Err(PortError::Unavailable("refused".into())));
    }
    assert!(matches!(
        run(&p, "login", login_req("ana", "pw")),
        Err(Error::Unavailable { .. })
    ));
    user_ok(&p);
    reply(&p, 503, json!({}));
    assert!(matches!(
        run(&p, "login", login_req("ana", "pw")),
        Err(Error::Unavailable { .. })
    ));
    // Counters and their expiry index (`exp:`) only: no session record.
    let values = p.kv.value_keys();
    assert!(
        values.iter().all(|k| k.starts_with("exp:")),
        "no session record left behind: {values:?}"
    );
}

#[test]
fn logout_kills_the_token_at_once_and_is_idempotent() {
    let p = platform();
    let token = login_ok(&p);
    let auth = bearer(&token);
    for _ in 0..2 {
        reply(&p, 200, json!({"revoked": true}));
        audit_ok(&p);
        let resp = run(
            &p,
            "logout",
            request(
                Method::POST,
                "/api/v1/auth/logout",
                &[("authorization", &auth)],
                "",
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(resp.headers()["clear-site-data"], "\"cookies\"");
        assert!(resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap_or_default()
            .contains("Max-Age=0"));
    }
    let session = run(
        &p,
        "login",
        request(
            Method::GET,
            "/api/v1/auth/session",
            &[("authorization", &auth)],
            "",
        ),
    );
    assert_eq!(session.err(), Some(Error::Unauthorized));
    assert!(paths(&p).iter().any(|x| x == "/v1/sessions/revoke"));
}

#[test]
fn logout_without_a_token_is_401_and_a_cookie_post_needs_an_allowed_origin() {
    let p = platform();
    assert_eq!(
        run(
            &p,
            "logout",
            request(Method::POST, "/api/v1/auth/logout", &[], "")
        )
        .err(),
        Some(Error::Unauthorized)
    );
    let token = login_ok(&p);
    let cookie = format!("__Host-session={token}");
    assert_eq!(
        run(
            &p,
            "logout",
            request(
                Method::POST,
                "/api/v1/auth/logout",
                &[("cookie", &cookie), ("origin", "https://evil.example")],
                ""
            )
        )
        .err(),
        Some(Error::Forbidden)
    );
    let ok = run(
        &p,
        "logout",
        request(
            Method::POST,
            "/api/v1/auth/logout",
            &[("cookie", &cookie), ("origin", "https://app.example.test")],
            "",
        ),
    );
    assert_eq!(ok.map(|r| r.status()).ok(), Some(StatusCode::NO_CONTENT));
}

#[test]
fn logout_all_kills_every_session_of_the_user() {
    let p = platform();
    let a = login_ok(&p);
    let b = login_ok(&p);
    reply(&p, 200, json!({"user_id": 42, "generation": 1}));
    audit_ok(&p);
    let resp = run(
        &p,
        "logout",
        request(
            Method::POST,
            "/api/v1/auth/logout-all",
            &[("authorization", &bearer(&a))],
            "",
        ),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        let r = run(
            &p,
            "login",
            request(
                Method::GET,
                "/api/v1/auth/session",
                &[("authorization", &bearer(t))],
                "",
            ),
        );
        assert_eq!(r.err(), Some(Error::Unauthorized));
    }
    let c = login_ok(&p);
    assert!(run(
        &p,
        "login",
        request(
            Method::GET,
            "/api/v1/auth/session",
            &[("authorization", &bearer(&c))],
            ""
        )
    )
    .is_ok());
}

#[test]
fn refresh_issues_a_new_token_and_revokes_the_old_one_at_once() {
    let p = platform();
    let old = login_ok(&p);
    audit_ok(&p);
    reply(&p, 200, json!({"revoked": true}));
    let resp = run(
        &p,
        "login",
        request(
            Method::POST,
            "/api/v1/auth/refresh",
            &[("authorization", &bearer(&old))],
            "",
        ),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let new = token_of(&resp);
    assert_ne!(new, old);
    let check = |t: &str| {
        run(
            &p,
            "login",
            request(
                Method::GET,
                "/api/v1/auth/session",
                &[("authorization", &bearer(t))],
                "",
            ),
        )
    };
    assert_eq!(check(&old).err(), Some(Error::Unauthorized));
    assert!(check(&new).is_ok());
}
