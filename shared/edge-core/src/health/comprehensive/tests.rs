//! Unit tests of comprehensive health, through the real wrapper with the memory ports, the
//! fixed clock (2026-01-01) and scripted outbound answers.

use super::*;
use crate::memory::{block_on, MemoryPlatform};
use crate::ports::PortError;
use crate::serve::{serve, Function};
use secrets_catalog::Date;

const ADMIN: &str = "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c";
const HMAC: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";
const OPENAI: &str = "sk-proj-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";
const ANTHROPIC: &str = "sk-ant-api03-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";
const EVOLUTION_KEY: &str = "evo-key-7Hq2mZ9xWv4pL1sK8dN3";
/// Valid 32-byte key material that scores weak (alphabet and digit runs).
const WEAK: &str = "abcd.efgh.ijkl.mnop.qrst.uvwx.yz12.3456";
const BUILD: Build = Build {
    version: "9.9.9",
    commit: "abc1234",
};

struct Comprehensive;
impl Function for Comprehensive {
    const NAME: &'static str = "health-comprehensive";
    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        report(&req, ctx, BUILD).await
    }
}

fn platform(env: &str, extra: &[(&str, &str)]) -> MemoryPlatform {
    let p = MemoryPlatform::default();
    for (k, v) in [
        ("environment", env),
        ("trusted_hosts", "api.example.test"),
        ("admin_token", ADMIN),
        ("proxy_url", "https://proxy.example.test"),
        ("proxy_hmac_key", HMAC),
    ] {
        p.vars.set(k, v);
    }
    for (k, v) in extra {
        p.vars.set(&k.to_ascii_lowercase(), v);
    }
    p
}

fn reply(status: u16, body: &str) -> Result<Response, PortError> {
    let mut r = Response::new(Bytes::from(body.to_owned()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok(r)
}

fn ping(in_use: u64) -> Result<Response, PortError> {
    reply(
        200,
        &json!({"status": "pass", "db_time": 1, "db_ms": 1.25, "pool": {
            "size": 20, "idle": 20 - in_use.min(20), "in_use": in_use, "waiting": 0,
            "overflow_open": in_use.saturating_sub(20), "min_size": 5, "max_size": 20, "max_overflow": 40
        }})
        .to_string(),
    )
}

fn get(p: &MemoryPlatform, query: &str, bearer: Option<&str>) -> (Response, Value) {
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = format!("https://api.example.test/health/comprehensive{query}")
        .parse()
        .unwrap_or_default();
    if let Some(token) = bearer {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .unwrap_or(HeaderValue::from_static("x")),
        );
    }
    let config = crate::config::load(p, "health-comprehensive", &[]);
    let resp = block_on(serve::<Comprehensive, _>(p, &config, req, None));
    let body = serde_json::from_slice(resp.body()).unwrap_or_default();
    (resp, body)
}

fn check<'a>(body: &'a Value, key: &str, id: Option<&str>) -> &'a Value {
    let list = body["checks"][key].as_array();
    list.and_then(|l| {
        l.iter()
            .find(|c| id.is_none_or(|id| c["componentId"] == id))
    })
    .unwrap_or(&Value::Null)
}

#[test]
fn everything_up_passes_with_every_component_measured_in_the_draft_shape() {
    let p = platform(
        "production",
        &[
            ("EVOLUTION_API_URL", "https://evolution.example.test"),
            ("EVOLUTION_INSTANCE", "centre"),
            ("EVOLUTION_API_KEY", EVOLUTION_KEY),
        ],
    );
    p.http.replies.borrow_mut().push_back(ping(3));
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/health+json"
    );
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(body["status"], "pass", "{body}");
    assert_eq!(body["version"], "9.9.9");
    assert_eq!(body["releaseId"], "abc1234");
    assert_eq!(body["serviceId"], "assistant-edge-health-comprehensive");
    for (key, id) in [
        ("kv:responseTime", None),
        ("proxy:responseTime", None),
        ("postgres:responseTime", None),
        ("proxy:connections", Some("in_use")),
        ("proxy:connections", Some("idle")),
        ("proxy:connections", Some("waiting")),
        ("proxy:connections", Some("overflow")),
        ("proxy:utilization", None),
        ("config:secrets", Some("valid")),
        ("openai:configured", None),
        ("evolution:configured", None),
        ("build:info", None),
    ] {
        let c = check(&body, key, id);
        assert_eq!(c["status"], "pass", "{key} {id:?}: {body}");
        assert!(c["time"].is_string(), "{key}: time");
    }
    assert_eq!(
        check(&body, "postgres:responseTime", None)["observedValue"],
        1.3
    );
    assert_eq!(
        check(&body, "proxy:connections", Some("in_use"))["observedValue"],
        3
    );
    assert_eq!(check(&body, "kv:responseTime", None)["observedUnit"], "ms");
    assert!(check(&body, "kv:responseTime", None)["durationMs"].is_u64());
    assert_eq!(
        check(&body, "build:info", None)["observedValue"],
        json!({"version": "9.9.9", "commit": "abc1234", "runtime": "memory"})
    );
    assert_eq!(
        check(&body, "openai:configured", None)["observedValue"],
        false
    );
    let sent = p.http.sent.borrow();
    assert_eq!(sent.len(), 1, "no probe without ?probe=true");
    assert_eq!(sent[0].uri(), "https://proxy.example.test/v1/ping");
    assert!(sent[0].headers().contains_key("x-proxy-signature"));
}

#[test]
fn a_weak_secret_in_development_warns_and_names_it_there_only() {
    let p = platform(
        "development",
        &[("SECRET_KEY", WEAK), ("JWT_SECRET_KEY", WEAK)],
    );
    p.http.replies.borrow_mut().push_back(ping(3));
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body["status"], "warn", "{body}");
    let weak = check(&body, "config:secrets", Some("weak"));
    assert_eq!(weak["status"], "warn");
    assert_eq!(
        weak["observedValue"], 1,
        "comprehensive does not read SECRET_KEY"
    );
    assert_eq!(weak["output"], "weak: JWT_SECRET_KEY");
    let not_passing: Vec<String> = body["checks"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(key, list)| {
            list.as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] != "pass")
                .map(move |c| format!("{key} {}", c["componentId"]))
        })
        .collect();
    assert_eq!(
        not_passing,
        ["config:secrets \"weak\""],
        "only the weak secret warns"
    );
}

#[test]
fn in_production_only_counts_appear() {
    let now = crate::ports::Clock::now_unix_ms(&crate::memory::FixedClock::default());
    let rotated = Date::from_days_since_epoch(today(now).days_since_epoch() - 175).to_string();
    let p = platform("production", &[("ADMIN_TOKEN_ROTATED_AT", &rotated)]);
    p.http.replies.borrow_mut().push_back(ping(3));
    let (_, body) = get(&p, "", None);
    let due = check(&body, "config:secrets", Some("rotationDue"));
    assert_eq!(due["status"], "warn");
    assert_eq!(due["output"], "1 rotation due");
    assert!(!body.to_string().contains("ADMIN_TOKEN"), "{body}");
}

#[test]
fn a_pool_over_80_percent_warns() {
    let p = platform("production", &[]);
    p.http.replies.borrow_mut().push_back(ping(50));
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::OK);
    let u = check(&body, "proxy:utilization", None);
    assert_eq!(
        (u["status"].clone(), u["observedValue"].clone()),
        (json!("warn"), json!(83))
    );
    assert_eq!(body["status"], "warn");
}

#[test]
fn a_down_store_or_proxy_fails_with_503() {
    let p = platform("production", &[]);
    p.http.replies.borrow_mut().push_back(ping(3));
    p.kv.down.set(true);
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(check(&body, "kv:responseTime", None)["status"], "fail");

    let p = platform("production", &[]);
    p.http
        .replies
        .borrow_mut()
        .push_back(Err(PortError::Unavailable("refused".into())));
    p.http
        .replies
        .borrow_mut()
        .push_back(Err(PortError::Unavailable("refused".into())));
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        check(&body, "proxy:responseTime", None)["output"],
        "unreachable"
    );
    assert_eq!(
        p.http.sent.borrow().len(),
        2,
        "one ping (no retry) and one liveness call"
    );
}

#[test]
fn a_proxy_that_answers_without_its_database_is_up_and_postgres_fails() {
    let p = platform("production", &[]);
    p.http.replies.borrow_mut().push_back(reply(503, "{}"));
    p.http.replies.borrow_mut().push_back(ping(1));
    let (resp, body) = get(&p, "", None);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(check(&body, "proxy:responseTime", None)["status"], "pass");
    assert_eq!(
        check(&body, "postgres:responseTime", None)["output"],
        "unreachable"
    );
    assert_eq!(
        p.http.sent.borrow()[1].uri(),
        "https://proxy.example.test/api/v1/health"
    );
}

#[test]
fn a_wrong_proxy_key_fails_naming_the_signature() {
    let p = platform("production", &[]);
    p.http
        .replies
        .borrow_mut()
        .push_back(reply(401, r#"{"error":{"code":"unauthorized"}}"#));
    let (_, body) = get(&p, "", None);
    assert!(check(&body, "proxy:responseTime", None)["output"]
        .as_str()
        .is_some_and(|o| o.contains("signature")));
}

#[test]
fn results_are_cached_for_ten_seconds() {
    let p = platform("production", &[]);
    p.http.replies.borrow_mut().push_back(ping(3));
    p.http.replies.borrow_mut().push_back(ping(4));
    let (first, a) = get(&p, "", None);
    assert!(!first.headers().contains_key(header::AGE));
    p.clock.advance(4_000);
    let (second, b) = get(&p, "", None);
    assert_eq!(second.headers()[header::AGE], "4");
    assert_eq!(a, b, "the same report");
    assert_eq!(p.http.sent.borrow().len(), 1, "one measurement");
    p.clock.advance(CACHE_MS);
    let (third, c) = get(&p, "", None);
    assert!(!third.headers().contains_key(header::AGE));
    assert_eq!(
        check(&c, "proxy:connections", Some("in_use"))["observedValue"],
        4
    );
    assert_eq!(p.http.sent.borrow().len(), 2);
}

fn with_providers() -> MemoryPlatform {
    platform(
        "production",
        &[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
            ("EVOLUTION_API_URL", "https://evolution.example.test/"),
            ("EVOLUTION_INSTANCE", "centre.1"),
            ("EVOLUTION_API_KEY", EVOLUTION_KEY),
        ],
    )
}

#[test]
fn probe_without_an_admin_is_ignored() {
    let p = with_providers();
    p.http.replies.borrow_mut().push_back(ping(3));
    let (resp, body) = get(&p, "?probe=true", Some("not-the-token"));
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert_eq!(p.http.sent.borrow().len(), 1, "the ping only");
    assert!(body["checks"].get("openai:responseTime").is_none());
}

#[test]
fn probe_for_an_admin_calls_each_provider_and_evolution_with_their_own_authentication() {
    let p = with_providers();
    for r in [
        ping(3),
        reply(200, r#"{"data":[]}"#),
        reply(401, r#"{"error":{"message":"bad key sk-ant-api03-QmCF"}}"#),
        reply(
            200,
            r#"{"instance":{"instanceName":"centre.1","state":"open"}}"#,
        ),
    ] {
        p.http.replies.borrow_mut().push_back(r);
    }
    let (resp, body) = get(&p, "?probe=true", Some(ADMIN));
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    let sent = p.http.sent.borrow();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[1].uri(), "https://api.openai.com/v1/models");
    assert_eq!(
        sent[1].headers()[header::AUTHORIZATION],
        format!("Bearer {OPENAI}").as_str()
    );
    assert_eq!(sent[2].uri(), "https://api.anthropic.com/v1/models");
    assert_eq!(sent[2].headers()["x-api-key"], ANTHROPIC);
    assert_eq!(sent[2].headers()["anthropic-version"], ANTHROPIC_VERSION);
    assert_eq!(
        sent[3].uri(),
        "https://evolution.example.test/instance/connectionState/centre.1"
    );
    assert_eq!(sent[3].headers()["apikey"], EVOLUTION_KEY);
    assert_eq!(check(&body, "openai:responseTime", None)["status"], "pass");
    let anthropic = check(&body, "anthropic:responseTime", None);
    assert_eq!(
        (anthropic["status"].clone(), anthropic["output"].clone()),
        (json!("warn"), json!("answered 401"))
    );
    assert_eq!(
        check(&body, "evolution:connectionState", None)["observedValue"],
        "open"
    );
    assert_eq!(body["status"], "warn");
    let text = String::from_utf8_lossy(resp.body()).to_string();
    let logs = p.log.lines().join("\n");
    for value in [
        ADMIN,
        HMAC,
        OPENAI,
        ANTHROPIC,
        EVOLUTION_KEY,
        "sk-ant-api03-QmCF",
    ] {
        assert!(!text.contains(value), "{value} in the body");
        assert!(!logs.contains(value), "{value} in the logs");
    }
    drop(sent);
    // A probing report is never cached: the next plain request measures again.
    p.http.replies.borrow_mut().push_back(ping(3));
    let (plain, _) = get(&p, "", None);
    assert!(!plain.headers().contains_key(header::AGE));
}

#[test]
fn an_invalid_configuration_answers_fail_for_config() {
    let resp = misconfigured("health-comprehensive", 0);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    assert_eq!(body["checks"]["config:valid"][0]["status"], "fail");
}

#[test]
fn an_instance_name_cannot_change_the_path() {
    assert_eq!(encode_segment("a b/../c%"), "a%20b%2F..%2Fc%25");
    assert_eq!(encode_segment("centre-1.x_y"), "centre-1.x_y");
}
