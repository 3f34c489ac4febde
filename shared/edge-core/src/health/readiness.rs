//! Readiness: whether this instance can serve real traffic now.
//!
//! Three things must hold: its configuration is valid (otherwise the wrapper answers
//! [`misconfigured`] for it before any handler runs), a key-value round trip works (a random
//! probe key under [`super::PROBE_PREFIX`] is written, read back and deleted), and the proxy
//! is ready (its unsigned `GET /health/readiness`, which does a Postgres round trip). The two
//! dependency checks run at once, each with its own deadline, and the whole check is bounded
//! by [`DEADLINE_MS`]: a hanging dependency makes the answer `fail` in time, never a hang.
//!
//! `pass` is 200 with every check and its latency. `fail` is 503 with `Retry-After` and only
//! the failing components, each with a fixed word on why (`timed out`, `unavailable`, `not
//! ready`, ...); the cause goes to one log line per failure (`readiness_failed`), redacted.

use http::{header, HeaderValue};
use serde_json::Map;

use super::{
    join, kv_round_trip, report, respond, timed, with_retry_after, Check, Failure, Status,
};
use crate::log::Level;
use crate::ports::Platform;
use crate::{timeout, Bytes, Ctx, Request, Response};

/// The whole check's deadline, milliseconds.
pub const DEADLINE_MS: u64 = 2_000;

/// Each dependency's own deadline: they run at once, so both end within this, leaving the
/// rest of [`DEADLINE_MS`] for the work around them.
pub const CHECK_MS: u64 = 1_800;

const DESCRIPTION: &str = "readiness";

/// Runs the check for the request `ctx` serves (see the module docs).
pub async fn check<P: Platform>(ctx: &Ctx<'_, P>) -> Response {
    // On the heap: the two checks' futures (an outbound call with its deadline) are large,
    // and the adapter moves the request's future around (see comprehensive).
    let both = Box::pin(join(
        kv_round_trip(ctx, CHECK_MS),
        proxy_ready(ctx, CHECK_MS),
    ));
    // Each check has its own deadline; this one bounds the whole should either misbehave.
    let (kv, proxy) = timeout::within(ctx.platform.timer(), DEADLINE_MS, both)
        .await
        .unwrap_or_else(|| {
            let late = || Failure::new("timed out", format!("no answer within {DEADLINE_MS} ms"));
            (Err(late()), Err(late()))
        });
    let now = ctx.platform.clock().now_unix_ms();
    let mut checks = vec![Check::new("config", "valid", Status::Pass).value(true)];
    for (component, kind, result) in [("kv", "datastore", kv), ("proxy", "component", proxy)] {
        checks.push(match result {
            Ok(ms) => Check::new(component, "responseTime", Status::Pass)
                .kind(kind)
                .observed(ms, "ms"),
            Err(failure) => {
                let mut fields = Map::new();
                fields.insert("component".into(), component.into());
                fields.insert("cause".into(), failure.cause.into());
                ctx.event(Level::Warn, "readiness_failed", fields);
                Check::new(component, "responseTime", Status::Fail)
                    .kind(kind)
                    .output(failure.output)
            }
        });
    }
    let failing: Vec<Check> = checks
        .iter()
        .filter(|c| c.status() == Status::Fail)
        .cloned()
        .collect();
    if failing.is_empty() {
        let (status, top) = report(ctx.function, DESCRIPTION, &checks, now);
        respond(status, top)
    } else {
        let (status, top) = report(ctx.function, DESCRIPTION, &failing, now);
        with_retry_after(respond(status, top))
    }
}

/// The answer of a readiness function whose configuration is invalid (see
/// [`super::misconfigured`]).
pub fn misconfigured(function: &str, now_ms: u64) -> Response {
    super::misconfigured(function, DESCRIPTION, now_ms)
}

/// The proxy's unsigned readiness (`{PROXY_URL}/health/readiness`): 200 means it reached
/// Postgres. Returns the elapsed milliseconds.
async fn proxy_ready<P: Platform>(ctx: &Ctx<'_, P>, deadline_ms: u64) -> Result<u64, Failure> {
    let Some(base) = ctx
        .config
        .settings
        .as_ref()
        .and_then(|s| s.proxy_url.as_ref())
    else {
        return Err(Failure::new("not configured", "PROXY_URL is not set"));
    };
    let url = format!("{}/health/readiness", base.as_str().trim_end_matches('/'));
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = url
        .parse()
        .map_err(|_| Failure::new("not configured", "PROXY_URL is not a URI"))?;
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static(super::MEDIA_TYPE));
    let platform = ctx.platform;
    let call = timeout::within(platform.timer(), deadline_ms, ctx.send(req));
    match timed(platform.clock(), call).await {
        (None, _) => Err(Failure::new(
            "timed out",
            format!("proxy readiness: no answer within {deadline_ms} ms"),
        )),
        (Some(Err(e)), _) => Err(Failure::new("unreachable", format!("proxy readiness: {e}"))),
        (Some(Ok(resp)), ms) if resp.status().is_success() => Ok(ms),
        (Some(Ok(resp)), _) => Err(Failure::new(
            "not ready",
            format!("proxy readiness answered {}", resp.status().as_u16()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, EdgeConfig};
    use crate::memory::{block_on, MemoryPlatform, Reply};
    use crate::ports::PortError;
    use http::StatusCode;
    use serde_json::Value;

    fn platform() -> MemoryPlatform {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        p.vars.set("proxy_url", "http://127.0.0.1:8790");
        p
    }

    fn ready_reply() -> Reply {
        let mut r = Response::new(Bytes::from_static(br#"{"status":"pass"}"#));
        *r.status_mut() = StatusCode::OK;
        Reply::Now(Ok(r))
    }

    fn run(p: &MemoryPlatform) -> (Response, Value) {
        let cfg = load(p, "health-readiness", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        run_with(p, &cfg)
    }

    fn run_with(p: &MemoryPlatform, cfg: &EdgeConfig) -> (Response, Value) {
        let ctx = Ctx::new(p, "req-ready-1".into(), "health-readiness", cfg);
        let resp = block_on(check(&ctx));
        let body = serde_json::from_slice(resp.body()).unwrap_or_default();
        (resp, body)
    }

    #[test]
    fn everything_up_is_200_pass_with_each_latency() {
        let p = platform();
        p.http.script.borrow_mut().push_back(ready_reply());
        let (resp, body) = run(&p);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body["status"], "pass");
        for key in ["config:valid", "kv:responseTime", "proxy:responseTime"] {
            assert_eq!(body["checks"][key][0]["status"], "pass", "{key}: {body}");
        }
        assert_eq!(body["checks"]["kv:responseTime"][0]["observedUnit"], "ms");
        let sent = p.http.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].uri(), "http://127.0.0.1:8790/health/readiness");
        assert!(
            !sent[0].headers().contains_key("x-proxy-signature"),
            "the proxy's readiness is unsigned"
        );
        assert!(p.kv.is_empty(), "no probe key left behind");
    }

    #[test]
    fn a_hanging_proxy_fails_in_time_naming_only_the_proxy() {
        let p = platform();
        p.http.script.borrow_mut().push_back(Reply::Hang);
        let (resp, body) = run(&p);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(body["status"], "fail");
        let checks = body["checks"].as_object().cloned().unwrap_or_default();
        assert_eq!(checks.keys().collect::<Vec<_>>(), ["proxy:responseTime"]);
        assert_eq!(checks["proxy:responseTime"][0]["output"], "timed out");
        assert!(
            p.timer.slept().iter().all(|ms| *ms <= DEADLINE_MS),
            "{:?}",
            p.timer.slept()
        );
        assert!(p
            .log
            .lines()
            .iter()
            .any(|l| l.contains("readiness_failed") && l.contains("proxy")));
    }

    #[test]
    fn a_proxy_that_is_down_or_not_ready_fails() {
        let p = platform();
        p.http
            .script
            .borrow_mut()
            .push_back(Reply::Now(Err(PortError::Unavailable("refused".into()))));
        let (resp, body) = run(&p);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body["checks"]["proxy:responseTime"][0]["output"],
            "unreachable"
        );
        let mut not_ready = Response::new(Bytes::new());
        *not_ready.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        p.http
            .script
            .borrow_mut()
            .push_back(Reply::Now(Ok(not_ready)));
        let (_, body) = run(&p);
        assert_eq!(
            body["checks"]["proxy:responseTime"][0]["output"],
            "not ready"
        );
    }

    #[test]
    fn a_broken_store_fails_naming_only_the_store() {
        let p = platform();
        p.http.script.borrow_mut().push_back(ready_reply());
        p.kv.down.set(true);
        let (resp, body) = run(&p);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let checks = body["checks"].as_object().cloned().unwrap_or_default();
        assert_eq!(checks.keys().collect::<Vec<_>>(), ["kv:responseTime"]);
        assert_eq!(checks["kv:responseTime"][0]["output"], "unavailable");
        assert!(
            !resp.body().windows(6).any(|w| w == b"memory"),
            "no cause in the body"
        );
    }

    #[test]
    fn without_a_proxy_url_it_is_not_ready() {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        let (resp, body) = run(&p);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body["checks"]["proxy:responseTime"][0]["output"],
            "not configured"
        );
    }

    #[test]
    fn an_invalid_configuration_is_a_503_naming_config_only() {
        let resp = misconfigured("health-readiness", 1_767_225_600_000);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        let body: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["status"], "fail");
        assert_eq!(
            body["checks"]["config:valid"][0]["output"],
            "invalid configuration"
        );
        assert_eq!(body["checks"].as_object().map(|c| c.len()), Some(1));
    }
}
