//! Readiness, comprehensive and secrets health on the running wasm (issue 11): a real
//! pg-proxy on a fresh database, recording stubs of OpenAI, Anthropic and Evolution, a proxy
//! that hangs, and (Spin) a Redis that fails every command.

use std::sync::OnceLock;
use std::time::Instant;

use e2e::stubs::{Answer, FailingRedis, StubServer};
use serde_json::Value;

use super::*;

/// Values configured in the `health` profile (random or shaped like the real thing; no
/// deployment uses them). Every one is searched for in every body and log line.
pub const OPENAI_KEY: &str = "sk-proj-HealthE2eOpenAiKey0123456789abcdefghij";
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-HealthE2eAnthropicKey0123456789abcdef";
pub const EVOLUTION_KEY: &str = "evo-health-e2e-key-5d1f8a2c9b7e";
pub const JWT_KEY: &str = "4063fbfdbf36252a1f373fa63b42dab0ea7e4a1fc7a49aa130fd6f98cde2df98";
pub const SECRET_KEY: &str = "4e6c25210441c086b2c95600038ecf7c3334721c6cb661704da230ba2cee2e63";
pub const WEBHOOK_TOKEN: &str = "38caafed4b347fcd6fc6083b5a0b483c8b681bfd974418191dc5d1c43567d9bf";
/// Valid 32-byte key material whose strength scores weak (alphabet and digit runs).
pub const WEAK_KEY: &str = "abcd.efgh.ijkl.mnop.qrst.uvwx.yz12.3456";
pub const INSTANCE: &str = "centro-health";

/// The readiness deadline (2 s) plus room for the router hop and a busy machine.
const READINESS_BOUND: Duration = Duration::from_millis(3_500);

struct Stubs {
    openai: StubServer,
    anthropic: StubServer,
    evolution: StubServer,
    /// A proxy that accepts and never answers in time.
    hanging: StubServer,
    /// Spin's store for the `health-broken` profile.
    redis: FailingRedis,
}

static STUBS: OnceLock<Result<Stubs, String>> = OnceLock::new();

fn stubs() -> Result<&'static Stubs, Failed> {
    STUBS
        .get_or_init(|| {
            let s = Stubs {
                openai: StubServer::start()?,
                anthropic: StubServer::start()?,
                evolution: StubServer::start()?,
                hanging: StubServer::start()?,
                redis: FailingRedis::start()?,
            };
            s.openai.route(
                "/v1/models",
                Answer::json(200, r#"{"object":"list","data":[]}"#),
            );
            s.anthropic.route(
                "/v1/models",
                Answer::json(200, r#"{"data":[],"has_more":false}"#),
            );
            s.evolution.route(
                "/instance/connectionState/",
                Answer::json(
                    200,
                    &format!(r#"{{"instance":{{"instanceName":"{INSTANCE}","state":"open"}}}}"#),
                ),
            );
            s.hanging.route("", Answer::hang(Duration::from_secs(30)));
            Ok(s)
        })
        .as_ref()
        .map_err(|e| format!("health stubs: {e}").into())
}

/// A date `days` before today (UTC), as `<NAME>_ROTATED_AT` takes it.
fn days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let today = secrets_catalog::Date::from_unix_seconds(now);
    secrets_catalog::Date::from_days_since_epoch(today.days_since_epoch() - days).to_string()
}

/// What a health profile adds at start.
#[derive(Default)]
pub struct Setup {
    /// Variables (the stubs' URLs, today's rotation dates).
    pub vars: Vec<(String, String)>,
    /// `scripts/dev` arguments (a Spin runtime config).
    pub dev_args: Vec<String>,
}

/// Extra variables and `scripts/dev` arguments of the health profiles, decided at start (the
/// stubs' ports, today's dates); nothing for other profiles.
pub fn setup(profile: &str) -> Result<Setup, String> {
    if !profile.starts_with("health") {
        return Ok(Setup::default());
    }
    let s = stubs().map_err(|e| format!("{e:?}"))?;
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut args = Vec::new();
    match profile {
        "health" => {
            vars.push(("OPENAI_BASE_URL".into(), format!("{}/v1", s.openai.url())));
            vars.push(("ANTHROPIC_BASE_URL".into(), s.anthropic.url()));
            vars.push(("EVOLUTION_API_URL".into(), s.evolution.url()));
            // A secret only health-secrets reads, 20 days past its 180-day period; the admin
            // token rotated recently (comprehensive stays `pass`).
            vars.push(("WEBHOOK_TOKEN_ROTATED_AT".into(), days_ago(200)));
            vars.push(("ADMIN_TOKEN_ROTATED_AT".into(), days_ago(10)));
        }
        "health-hang" | "health-broken" => {
            vars.push(("PROXY_URL".into(), s.hanging.url()));
            vars.push(("PROXY_HMAC_KEY".into(), ProxyServer::HMAC_KEY.into()));
            if profile == "health-broken" {
                let path = std::env::temp_dir().join(format!(
                    "assistant-edge-e2e-failing-redis-{}.toml",
                    std::process::id()
                ));
                s.redis.write_spin_runtime_config(&path)?;
                args.push("--spin-runtime-config".into());
                args.push(path.display().to_string());
            }
        }
        _ => {}
    }
    Ok(Setup {
        vars,
        dev_args: args,
    })
}

fn get(rt: &Runtime, path: &str, bearer: Option<&str>) -> Result<Resp, Failed> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    call(rt, "GET", path, &headers)
}

/// `GET path` once the function behind it answers: right after start the dev router can
/// answer before the Worker behind it has registered.
fn get_when_up(rt: &Runtime, path: &str, bearer: Option<&str>) -> Result<Resp, Failed> {
    for _ in 0..120 {
        let r = get(rt, path, bearer)?;
        if !r.header("x-request-id").is_empty() {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("{path}: the function never answered").into())
}

fn keys(body: &Value) -> Vec<String> {
    body["checks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn first<'a>(body: &'a Value, key: &str) -> &'a Value {
    &body["checks"][key][0]
}

/// The check objects that are not `pass`, as `key[componentId]`.
fn not_passing(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, list) in body["checks"].as_object().into_iter().flatten() {
        for c in list.as_array().into_iter().flatten() {
            if c["status"] != "pass" {
                out.push(format!(
                    "{key}[{}]",
                    c["componentId"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out
}

/// The response follows the IETF health-check draft: `application/health+json`, no caching,
/// `status` pass|warn|fail, `checks` keyed `component:measurement`, each an array of objects
/// with a valid `status`, an RFC 3339 `time`, `observedUnit` only beside `observedValue`, and
/// `output` whenever not passing.
fn ietf_shape(r: &Resp) -> Result<Value, Failed> {
    ensure(
        r.header("content-type") == "application/health+json",
        format!("content-type {:?}", r.header("content-type")),
    )?;
    ensure(
        r.header("cache-control") == "no-store",
        "Cache-Control: no-store",
    )?;
    let body = r.json()?;
    let statuses = ["pass", "warn", "fail"];
    let top = body["status"].as_str().unwrap_or("");
    ensure(statuses.contains(&top), format!("top status {body}"))?;
    ensure(
        (top == "fail") == (r.status == 503) && (r.status == 200 || r.status == 503),
        format!("HTTP {} for status {top}", r.status),
    )?;
    ensure(
        body["serviceId"]
            .as_str()
            .is_some_and(|s| s.starts_with("assistant-edge-health-")),
        format!("serviceId: {body}"),
    )?;
    let checks = body["checks"]
        .as_object()
        .ok_or_else(|| format!("no checks object: {body}"))?;
    for (key, list) in checks {
        let parts: Vec<&str> = key.split(':').collect();
        ensure(
            parts.len() == 2 && parts.iter().all(|p| !p.is_empty()),
            format!("key {key} is not component:measurement"),
        )?;
        let list = list
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("{key}: not a non-empty array"))?;
        for c in list {
            let status = c["status"].as_str().unwrap_or("");
            ensure(statuses.contains(&status), format!("{key}: status {c}"))?;
            let time = c["time"].as_str().unwrap_or("");
            ensure(
                time.len() >= 20 && time.as_bytes().get(10) == Some(&b'T') && time.ends_with('Z'),
                format!("{key}: time {time:?}"),
            )?;
            ensure(
                c.get("observedUnit").is_none() || c.get("observedValue").is_some(),
                format!("{key}: observedUnit without observedValue"),
            )?;
            ensure(
                status == "pass" || c["output"].is_string(),
                format!("{key}: {status} without output"),
            )?;
        }
    }
    Ok(body)
}

/// Every value configured in the `health` profile, with the proxy's key.
fn configured_values() -> [&'static str; 9] {
    [
        ADMIN_TOKEN,
        OPENAI_KEY,
        ANTHROPIC_KEY,
        EVOLUTION_KEY,
        JWT_KEY,
        SECRET_KEY,
        WEBHOOK_TOKEN,
        ProxyServer::HMAC_KEY,
        WEAK_KEY,
    ]
}

pub fn readiness_200_pass_with_everything_up(rt: &Runtime) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/readiness", None)?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    ensure(body["status"] == "pass", format!("{body}"))?;
    for key in ["config:valid", "kv:responseTime", "proxy:responseTime"] {
        ensure(
            first(&body, key)["status"] == "pass",
            format!("{key}: {body}"),
        )?;
    }
    ensure(
        first(&body, "proxy:responseTime")["observedUnit"] == "ms",
        "proxy latency in ms",
    )
}

pub fn readiness_503_in_time_with_the_proxy_stopped(rt: &Runtime) -> Result<(), Failed> {
    get_when_up(rt, "/health/readiness", None)?;
    rt.proxy().stop();
    let started = Instant::now();
    let r = get(rt, "/health/readiness", None);
    let took = started.elapsed();
    let resumed = rt.proxy().resume();
    let r = r?;
    resumed?;
    ensure(r.status == 503, format!("status {} {}", r.status, r.body))?;
    ensure(took < READINESS_BOUND, format!("answered after {took:?}"))?;
    ensure(
        r.header("retry-after").parse::<u64>().is_ok(),
        "Retry-After on 503",
    )?;
    let body = ietf_shape(&r)?;
    ensure(
        keys(&body) == ["proxy:responseTime"],
        format!("only the failing component is named: {body}"),
    )?;
    // Back to ready once the proxy is.
    for _ in 0..120 {
        if get(rt, "/health/readiness", None)?.status == 200 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err("readiness did not recover after the proxy came back".into())
}

pub fn readiness_503_in_time_when_the_proxy_hangs(rt: &Runtime) -> Result<(), Failed> {
    get_when_up(rt, "/health/readiness", None)?;
    let started = Instant::now();
    let r = get(rt, "/health/readiness", None)?;
    let took = started.elapsed();
    ensure(r.status == 503, format!("status {} {}", r.status, r.body))?;
    ensure(took < READINESS_BOUND, format!("answered after {took:?}"))?;
    let body = ietf_shape(&r)?;
    ensure(
        first(&body, "proxy:responseTime")["output"] == "timed out",
        format!("{body}"),
    )?;
    ensure(
        !keys(&body).contains(&"config:valid".to_owned()),
        format!("a passing component is named: {body}"),
    )?;
    if rt.kind == Kind::Wrangler {
        ensure(keys(&body) == ["proxy:responseTime"], format!("{body}"))?;
    }
    Ok(())
}

pub fn readiness_503_naming_kv_when_the_store_fails(rt: &Runtime) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/readiness", None)?;
    ensure(r.status == 503, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    ensure(
        first(&body, "kv:responseTime")["status"] == "fail"
            && first(&body, "kv:responseTime")["output"] == "unavailable",
        format!("{body}"),
    )
}

pub fn comprehensive_fails_in_time_when_the_proxy_hangs(rt: &Runtime) -> Result<(), Failed> {
    get_when_up(rt, "/health/readiness", None)?;
    let started = Instant::now();
    let r = get(rt, "/health/comprehensive", None)?;
    let took = started.elapsed();
    ensure(r.status == 503, format!("status {} {}", r.status, r.body))?;
    ensure(
        took < Duration::from_secs(5),
        format!("answered after {took:?}"),
    )?;
    let body = ietf_shape(&r)?;
    ensure(
        first(&body, "proxy:responseTime")["output"] == "unreachable",
        format!("{body}"),
    )
}

pub fn comprehensive_pass_in_the_draft_shape_with_pool_figures(rt: &Runtime) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/comprehensive", None)?;
    let body = ietf_shape(&r)?;
    // A slow store on a busy machine is a true warning; nothing else may be.
    let off: Vec<String> = not_passing(&body)
        .into_iter()
        .filter(|k| k != "kv:responseTime[]")
        .collect();
    ensure(off.is_empty(), format!("not passing: {off:?} in {body}"))?;
    ensure(r.status == 200, format!("status {}", r.status))?;
    for id in ["in_use", "idle", "waiting", "overflow"] {
        let found = body["checks"]["proxy:connections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["componentId"] == id && c["observedValue"].is_u64());
        ensure(found, format!("pool figure {id}: {body}"))?;
    }
    ensure(
        first(&body, "proxy:utilization")["observedUnit"] == "percent",
        "utilization",
    )?;
    ensure(
        first(&body, "postgres:responseTime")["observedValue"].is_number(),
        "postgres latency",
    )?;
    let runtime = if rt.kind == Kind::Spin {
        "spin"
    } else {
        "workers"
    };
    let build = &first(&body, "build:info")["observedValue"];
    ensure(
        build["runtime"] == runtime && build["version"].is_string() && build["commit"].is_string(),
        format!("build {build}"),
    )?;
    ensure(
        body["releaseId"] == build["commit"],
        "releaseId is the commit",
    )?;
    for provider in ["openai", "anthropic"] {
        ensure(
            first(&body, &format!("{provider}:configured"))["observedValue"] == true
                && first(&body, &format!("{provider}:keyFormat"))["observedValue"] == true,
            format!("{provider}: {body}"),
        )?;
    }
    ensure(
        first(&body, "config:secrets")["componentId"] == "valid",
        "secret counts",
    )?;
    ensure(
        !r.body.contains("OPENAI_API_KEY"),
        "no secret names outside development",
    )
}

pub fn comprehensive_is_cached_for_ten_seconds(rt: &Runtime) -> Result<(), Failed> {
    // Wait for a fresh measurement, then ask again within the 10 s window.
    let mut fresh = None;
    for _ in 0..60 {
        let r = get_when_up(rt, "/health/comprehensive", None)?;
        if r.header("age").is_empty() {
            fresh = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let fresh = fresh.ok_or("never a fresh report")?;
    let pings_before = rt.proxy().log_text().matches("/v1/ping").count();
    let again = get(rt, "/health/comprehensive", None)?;
    ensure(
        again.header("age").parse::<u64>().is_ok_and(|a| a < 10),
        format!("Age {:?}", again.header("age")),
    )?;
    let (a, b) = (fresh.json()?, again.json()?);
    ensure(
        a["checks"]["kv:responseTime"] == b["checks"]["kv:responseTime"],
        "the cached report is the same measurement",
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let pings_after = rt.proxy().log_text().matches("/v1/ping").count();
    ensure(
        pings_after == pings_before,
        format!("the cached answer pinged the proxy ({pings_before} -> {pings_after})"),
    )
}

pub fn comprehensive_probe_without_an_admin_is_ignored(rt: &Runtime) -> Result<(), Failed> {
    let s = stubs()?;
    for stub in [&s.openai, &s.anthropic, &s.evolution] {
        stub.clear();
    }
    for bearer in [None, Some("not-the-admin-token")] {
        let r = get_when_up(rt, "/health/comprehensive?probe=true", bearer)?;
        let body = ietf_shape(&r)?;
        for key in [
            "openai:responseTime",
            "anthropic:responseTime",
            "evolution:connectionState",
        ] {
            ensure(
                body["checks"].get(key).is_none(),
                format!("{key} present for {bearer:?}"),
            )?;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for (name, stub) in [
        ("openai", &s.openai),
        ("anthropic", &s.anthropic),
        ("evolution", &s.evolution),
    ] {
        ensure(
            stub.received().is_empty(),
            format!("{name} was called without an admin"),
        )?;
    }
    Ok(())
}

pub fn comprehensive_probe_for_an_admin_calls_each_provider(rt: &Runtime) -> Result<(), Failed> {
    let s = stubs()?;
    for stub in [&s.openai, &s.anthropic, &s.evolution] {
        stub.clear();
    }
    let r = get_when_up(rt, "/health/comprehensive?probe=true", Some(ADMIN_TOKEN))?;
    ensure(
        r.header("age").is_empty(),
        "a probing report is never cached",
    )?;
    let body = ietf_shape(&r)?;
    for key in ["openai:responseTime", "anthropic:responseTime"] {
        ensure(
            first(&body, key)["status"] == "pass",
            format!("{key}: {body}"),
        )?;
    }
    ensure(
        first(&body, "evolution:connectionState")["observedValue"] == "open",
        format!("{body}"),
    )?;
    let header = |r: &e2e::Recorded, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let openai = s.openai.received();
    ensure(openai.len() == 1, format!("openai calls: {}", openai.len()))?;
    ensure(
        openai[0].method == "GET" && openai[0].path == "/v1/models",
        format!("{} {}", openai[0].method, openai[0].path),
    )?;
    ensure(
        header(&openai[0], "authorization") == format!("Bearer {OPENAI_KEY}"),
        "OpenAI bearer",
    )?;
    let anthropic = s.anthropic.received();
    ensure(
        anthropic.len() == 1,
        format!("anthropic calls: {}", anthropic.len()),
    )?;
    ensure(anthropic[0].path == "/v1/models", anthropic[0].path.clone())?;
    ensure(
        header(&anthropic[0], "x-api-key") == ANTHROPIC_KEY,
        "x-api-key",
    )?;
    ensure(
        header(&anthropic[0], "anthropic-version") == "2023-06-01",
        "anthropic-version",
    )?;
    ensure(
        header(&anthropic[0], "authorization").is_empty(),
        "no bearer to Anthropic",
    )?;
    let evolution = s.evolution.received();
    ensure(
        evolution.len() == 1,
        format!("evolution calls: {}", evolution.len()),
    )?;
    ensure(
        evolution[0].method == "GET"
            && evolution[0].path == format!("/instance/connectionState/{INSTANCE}"),
        evolution[0].path.clone(),
    )?;
    ensure(
        header(&evolution[0], "apikey") == EVOLUTION_KEY,
        "apikey header",
    )
}

pub fn secrets_health_401_without_the_token_200_with_it(rt: &Runtime) -> Result<(), Failed> {
    for bearer in [None, Some("wrong-token"), Some(&ADMIN_TOKEN[..63])] {
        let r = get_when_up(rt, "/health/secrets", bearer)?;
        ensure(
            r.status == 401,
            format!("{bearer:?}: status {} {}", r.status, r.body),
        )?;
        let body = r.json()?;
        ensure(
            body["error"]["code"] == "unauthorized"
                && body["error"]["message"] == "Authentication required."
                && body["error"]["request_id"] == r.header("x-request-id"),
            format!("not the plain 401 body: {body}"),
        )?;
    }
    let r = get(rt, "/health/secrets", Some(ADMIN_TOKEN))?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    let admin = first(&body, "ADMIN_TOKEN:status");
    ensure(
        admin["configured"] == true && admin["strengthClass"] == "strong",
        format!("{admin}"),
    )?;
    ensure(
        body["summary"]["score"].is_u64() && body["summary"]["actions"].is_array(),
        format!("summary {}", body["summary"]),
    )?;
    ensure(!r.body.contains(ADMIN_TOKEN), "the token is in the body")
}

pub fn secrets_health_reports_rotation_and_is_audited(rt: &Runtime) -> Result<(), Failed> {
    let marker = format!("e2e-secrets-{}", std::process::id());
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = call(
        rt,
        "GET",
        "/health/secrets",
        &[("authorization", &auth), ("x-request-id", &marker)],
    )?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    ensure(body["status"] == "warn", format!("{body}"))?;
    let token = first(&body, "WEBHOOK_TOKEN:status");
    ensure(
        token["overdueDays"] == 20 && token["rotatedAt"] == days_ago(200).as_str(),
        format!("{token}"),
    )?;
    let actions = body["summary"]["actions"].to_string();
    ensure(
        actions.contains("rotate WEBHOOK_TOKEN, 20 days overdue"),
        format!("actions {actions}"),
    )?;
    ensure(
        first(&body, "ADMIN_TOKEN:status")["overdueDays"] == 0,
        "the admin token is not due",
    )?;
    // An event line now, an audit record once the deferred write has run.
    all_logs_after(rt, &marker)?;
    let mut rows = Vec::new();
    for _ in 0..40 {
        rows = rt.proxy().query(&format!(
            "SELECT action || '|' || coalesce(actor, '') FROM audit_events WHERE request_id = '{marker}'"
        ))?;
        if !rows.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure(
        rows == ["health.secrets.read|admin-token"],
        format!("audit rows {rows:?}"),
    )?;
    let line = rt
        .log_lines()
        .into_iter()
        .find(|l| l.contains(&marker) && l.contains("secrets_health_read"))
        .ok_or("no secrets_health_read event line")?;
    ensure(line.contains("admin-token"), line)
}

pub fn no_configured_secret_value_in_any_body_or_log(rt: &Runtime) -> Result<(), Failed> {
    let marker = format!("e2e-novalue-{}", std::process::id());
    let mut bodies = Vec::new();
    for (path, bearer) in [
        ("/health/readiness", None),
        ("/health/comprehensive", None),
        ("/health/comprehensive?probe=true", Some(ADMIN_TOKEN)),
        ("/health/secrets", Some(ADMIN_TOKEN)),
        ("/health/secrets", None),
    ] {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("x-request-id", marker.as_str())];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        let r = call(rt, "GET", path, &headers)?;
        bodies.push((path, r.body));
    }
    let logs = all_logs_after(rt, &marker)?;
    for value in configured_values() {
        for (path, body) in &bodies {
            ensure(
                !body.contains(value),
                format!("a configured value in the body of {path}"),
            )?;
        }
        ensure(
            !logs.contains(value),
            format!("a configured value ({}…) in the logs", &value[..6]),
        )?;
    }
    Ok(())
}

pub fn comprehensive_warns_for_a_weak_secret(rt: &Runtime) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/comprehensive", None)?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    ensure(body["status"] == "warn", format!("{body}"))?;
    let weak = body["checks"]["config:secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["componentId"] == "weak")
        .cloned()
        .unwrap_or_default();
    ensure(
        weak["status"] == "warn" && weak["observedValue"] == 1 && weak["observedUnit"] == "secrets",
        format!("{weak}"),
    )?;
    // In development the names are shown (never the value).
    ensure(weak["output"] == "weak: JWT_SECRET_KEY", format!("{weak}"))?;
    let off: Vec<String> = not_passing(&body)
        .into_iter()
        .filter(|k| k != "kv:responseTime[]" && k != "config:secrets[weak]")
        .collect();
    ensure(
        off.is_empty(),
        format!("only the weak secret warns: {off:?}"),
    )?;
    ensure(!r.body.contains(WEAK_KEY), "the weak value is in the body")
}

pub fn secrets_health_is_open_in_development(rt: &Runtime) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/secrets", None)?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    let body = ietf_shape(&r)?;
    let jwt = first(&body, "JWT_SECRET_KEY:status");
    ensure(
        jwt["strengthClass"] == "weak" && jwt["formatValid"] == true && jwt["status"] == "warn",
        format!("{jwt}"),
    )?;
    ensure(!r.body.contains(WEAK_KEY), "the weak value is in the body")
}

pub fn production_secrets_health_401_without_the_token_200_with_it(
    rt: &Runtime,
) -> Result<(), Failed> {
    let r = get_when_up(rt, "/health/secrets", None)?;
    ensure(r.status == 401, format!("status {} {}", r.status, r.body))?;
    ensure(
        r.json()?["error"]["code"] == "unauthorized",
        "the plain 401 body",
    )?;
    let r = get(rt, "/health/secrets", Some(ADMIN_TOKEN))?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    ietf_shape(&r)?;
    ensure(!r.body.contains(ADMIN_TOKEN), "the token is in the body")
}

/// Runs `scripts/validate-deployment --production` with the admin token in an environment
/// variable (never argv).
fn validate_deployment_with_admin(rt: &Runtime) -> Result<(bool, String), Failed> {
    let out = std::process::Command::new(e2e::repo_root().join("scripts/validate-deployment"))
        .args([
            rt.base.as_str(),
            "--production",
            "--admin-token-env",
            "E2E_ADMIN_TOKEN",
        ])
        .env("E2E_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .map_err(|e| format!("run scripts/validate-deployment: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

pub fn validate_deployment_passes_with_readiness_and_comprehensive(
    rt: &Runtime,
) -> Result<(), Failed> {
    get_when_up(rt, "/health/readiness", None)?;
    let (ok, text) = validate_deployment_with_admin(rt)?;
    ensure(
        ok && !text.contains("FAIL") && text.contains(" 0 failed"),
        format!("validate-deployment failed:\n{text}"),
    )?;
    for line in [
        "PASS  GET /health/readiness answers 200 pass",
        "GET /health/comprehensive reports pass",
        "PASS  GET /health/comprehensive?probe=true without a token probes nothing",
        "PASS  GET /health/secrets without a token is refused",
    ] {
        ensure(text.contains(line), format!("no line {line:?} in:\n{text}"))?;
    }
    ensure(!text.contains(ADMIN_TOKEN), "the token in the output")
}

pub fn validate_deployment_fails_readiness_without_a_proxy(rt: &Runtime) -> Result<(), Failed> {
    let (ok, text) = validate_deployment_with_admin(rt)?;
    ensure(
        !ok,
        format!("passed a deployment that is not ready:\n{text}"),
    )?;
    ensure(
        text.contains("FAIL  GET /health/readiness answers 200 pass"),
        format!("readiness is not named:\n{text}"),
    )
}
