//! Unit tests of secrets health, through the real wrapper with the memory ports and the
//! fixed clock (2026-01-01).

use super::*;
use crate::memory::{block_on, MemoryPlatform};
use crate::serve::{serve, Function};
use crate::Bytes;
use http::{header, HeaderValue, StatusCode};

const ADMIN: &str = "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c";
const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";
const HMAC: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";
const OPENAI: &str = "sk-proj-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";
/// Passes the 32-byte key-material check (raw text, varied characters) but scores weak: it is
/// made of alphabet and digit runs.
const WEAK: &str = "abcd.efgh.ijkl.mnop.qrst.uvwx.yz12.3456";

struct Secrets;
impl Function for Secrets {
    const NAME: &'static str = "health-secrets";
    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        report(&req, ctx).await
    }
}

fn platform(vars: &[(&str, &str)]) -> MemoryPlatform {
    let p = MemoryPlatform::default();
    for (k, v) in vars {
        p.vars.set(&k.to_ascii_lowercase(), v);
    }
    p
}

fn production(extra: &[(&'static str, &'static str)]) -> MemoryPlatform {
    let mut vars = vec![
        ("ENVIRONMENT", "production"),
        ("TRUSTED_HOSTS", "api.example.test"),
        ("ADMIN_TOKEN", ADMIN),
    ];
    vars.extend_from_slice(extra);
    platform(&vars)
}

fn get(p: &MemoryPlatform, bearer: Option<&str>) -> (Response, Value) {
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = "https://api.example.test/health/secrets"
        .parse()
        .unwrap_or_default();
    if let Some(token) = bearer {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .unwrap_or(HeaderValue::from_static("x")),
        );
    }
    let config = crate::config::load(p, "health-secrets", &[]);
    let resp = block_on(serve::<Secrets, _>(p, &config, req, None));
    let body = serde_json::from_slice(resp.body()).unwrap_or_default();
    (resp, body)
}

fn days_ago(days: i64) -> String {
    let today = today(crate::ports::Clock::now_unix_ms(
        &crate::memory::FixedClock::default(),
    ));
    Date::from_days_since_epoch(today.days_since_epoch() - days).to_string()
}

#[test]
fn production_without_the_admin_token_gets_the_plain_401_and_with_it_200() {
    let p = production(&[]);
    for bearer in [None, Some("wrong"), Some(JWT)] {
        let (resp, body) = get(&p, bearer);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bearer:?}");
        let plain = Error::Unauthorized.into_response("x");
        let plain: Value = serde_json::from_slice(plain.body()).unwrap_or_default();
        assert_eq!(body["error"]["code"], plain["error"]["code"]);
        assert_eq!(body["error"]["message"], plain["error"]["message"]);
    }
    let (resp, body) = get(&p, Some(ADMIN));
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/health+json"
    );
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    assert!(body["checks"]["ADMIN_TOKEN:status"].is_array(), "{body}");
}

#[test]
fn development_is_open_and_no_value_prefix_or_length_appears() {
    let p = platform(&[
        ("ENVIRONMENT", "development"),
        ("ADMIN_TOKEN", ADMIN),
        ("JWT_SECRET_KEY", JWT),
        ("OPENAI_API_KEY", OPENAI),
        ("PROXY_HMAC_KEY", HMAC),
    ]);
    let (resp, body) = get(&p, None);
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    let text = String::from_utf8_lossy(resp.body()).to_string();
    for value in [ADMIN, JWT, OPENAI, HMAC] {
        assert!(
            !text.contains(&value[..12]),
            "a prefix of a value is in {text}"
        );
    }
    assert!(!text.contains("\"length\""), "{text}");
    let openai = &body["checks"]["OPENAI_API_KEY:status"][0];
    assert_eq!(openai["configured"], true);
    assert_eq!(openai["formatValid"], true);
    assert_eq!(openai["category"], "ai_provider");
    assert_eq!(openai["rotationPeriodDays"], 90);
    assert_eq!(
        openai["strength"],
        Value::Null,
        "provider keys are judged by format"
    );
    let jwt = &body["checks"]["JWT_SECRET_KEY:status"][0];
    assert_eq!(jwt["strengthClass"], "strong");
    assert!(jwt["strength"].as_u64().is_some_and(|s| s >= 80));
    let logs = p.log.lines().join("\n");
    for value in [ADMIN, JWT, OPENAI, HMAC] {
        assert!(!logs.contains(value), "{logs}");
    }
    assert!(logs.contains("secrets_health_read") && logs.contains("development-open"));
}

#[test]
fn rotation_overdue_due_soon_and_unknown_become_actions_and_warn() {
    let overdue = days_ago(180 + 12);
    let soon = days_ago(90 - 10);
    let p = platform(&[
        ("ENVIRONMENT", "development"),
        ("ADMIN_TOKEN", ADMIN),
        ("JWT_SECRET_KEY", JWT),
        ("OPENAI_API_KEY", OPENAI),
        ("PROXY_HMAC_KEY", HMAC),
    ]);
    p.vars.set("jwt_secret_key_rotated_at", &overdue);
    p.vars.set("openai_api_key_rotated_at", &soon);
    let (resp, body) = get(&p, None);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body["status"], "warn");
    let jwt = &body["checks"]["JWT_SECRET_KEY:status"][0];
    assert_eq!(jwt["status"], "warn");
    assert_eq!(jwt["overdueDays"], 12);
    assert_eq!(jwt["rotatedAt"], overdue.as_str());
    let actions: Vec<String> = body["summary"]["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert!(
        actions.contains(&"rotate JWT_SECRET_KEY, 12 days overdue".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"rotate OPENAI_API_KEY, due in 10 days".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions
            .contains(&"record ADMIN_TOKEN_ROTATED_AT (the date of its last rotation)".to_owned()),
        "{actions:?}"
    );
    assert_eq!(body["summary"]["rotationOverdue"], 1);
    assert_eq!(body["summary"]["rotationDueSoon"], 1);
    assert_eq!(body["checks"]["OPENAI_API_KEY:status"][0]["overdueDays"], 0);
}

#[test]
fn a_weak_secret_and_a_missing_required_one_warn_and_lower_the_score() {
    let p = platform(&[
        ("ENVIRONMENT", "development"),
        ("ADMIN_TOKEN", ADMIN),
        ("PROXY_HMAC_KEY", HMAC),
        ("SECRET_KEY", WEAK),
    ]);
    let (resp, body) = get(&p, None);
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    let weak = &body["checks"]["SECRET_KEY:status"][0];
    assert_eq!(weak["strengthClass"], "weak", "{weak}");
    assert_eq!(weak["formatValid"], true);
    assert_eq!(weak["status"], "warn");
    let jwt = &body["checks"]["JWT_SECRET_KEY:status"][0];
    assert_eq!(jwt["configured"], false);
    assert_eq!(jwt["requiredBy"], json!(["login", "logout"]));
    let summary = &body["summary"];
    assert_eq!(summary["weak"], 1);
    assert_eq!(summary["missingRequired"], 1);
    assert!(
        summary["score"].as_u64().is_some_and(|s| s < 80),
        "{summary}"
    );
    assert!(summary["actions"].as_array().is_some_and(|a| a
        .iter()
        .any(|x| x == "set JWT_SECRET_KEY (required by login, logout)")));
}

#[test]
fn each_read_is_audited_through_the_proxy_after_the_response() {
    let p = production(&[
        ("PROXY_URL", "https://proxy.example.test"),
        ("PROXY_HMAC_KEY", HMAC),
    ]);
    let (resp, _) = get(&p, Some(ADMIN));
    assert_eq!(resp.status(), StatusCode::OK);
    let sent = p.http.sent.borrow();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].uri(), "https://proxy.example.test/v1/audit");
    assert!(sent[0].headers().contains_key("x-proxy-signature"));
    let audit: Value = serde_json::from_slice(sent[0].body()).unwrap_or_default();
    assert_eq!(audit["action"], "health.secrets.read");
    assert_eq!(audit["actor"], "admin-token");
}

#[test]
fn an_audit_failure_is_logged_and_the_read_still_answers() {
    let p = production(&[
        ("PROXY_URL", "https://proxy.example.test"),
        ("PROXY_HMAC_KEY", HMAC),
    ]);
    p.http
        .replies
        .borrow_mut()
        .push_back(Err(crate::ports::PortError::Unavailable("down".into())));
    let (resp, _) = get(&p, Some(ADMIN));
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(p
        .log
        .lines()
        .iter()
        .any(|l| l.contains("audit_write_failed") && l.contains("health.secrets.read")));
    // Without a proxy at all the read still answers, and the log says why nothing was audited.
    let p = production(&[]);
    let (resp, _) = get(&p, Some(ADMIN));
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(p
        .log
        .lines()
        .iter()
        .any(|l| l.contains("audit_write_failed")));
}

#[test]
fn classes_and_scores() {
    assert_eq!(class(59), "weak");
    assert_eq!(class(60), "fair");
    assert_eq!(class(80), "strong");
    assert_eq!(score(&[]), 100);
}
