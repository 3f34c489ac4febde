//! Health responses in the shape of the IETF "Health Check Response Format for HTTP APIs"
//! draft (`application/health+json`), shared by every health function: liveness here, and the
//! check model the other health functions answer with ([`Check`], [`Status`], [`report`]).
//!
//! A report is `{"status": "pass"|"warn"|"fail", "serviceId", "description", "checks": {...}}`
//! where each key of `checks` is `component:measurement` and holds an array of check objects
//! (`componentType`, `observedValue`, `observedUnit`, `status`, `time`, `output` when not
//! passing, and `durationMs`, what the check itself took). `pass` and `warn` answer 200,
//! `fail` 503, as the draft maps them.
//!
//! * [`readiness`]: can this instance serve real traffic now (configuration, key-value store,
//!   proxy), within a deadline.
//! * [`comprehensive`]: every dependency with a measured value, cached briefly; outbound
//!   probes for an admin.
//! * [`secrets`]: the status of every edge secret, without values; admin only when deployed.

pub mod comprehensive;
pub mod readiness;
pub mod secrets;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::log::rfc3339_ms;
use crate::ports::{Clock, KeyValue, Platform};
use crate::{respond, timeout, Ctx, Response};

/// Media type of every health response.
pub const MEDIA_TYPE: &str = "application/health+json";

/// Product name; service ids are `assistant-edge-<function>`.
pub const PRODUCT: &str = "assistant-edge";

/// Prefix of the key-value round trip's probe keys: their own namespace, so a probe can never
/// touch a session or a counter.
pub const PROBE_PREFIX: &str = "health:probe:";

/// How long a probe key may outlive a check that died between its write and its delete.
const PROBE_TTL_MS: u64 = 60_000;

/// Liveness: the function runs and answers. `version` is the release (crate version);
/// `service_id` names the function.
pub fn liveness(function: &str, version: &str) -> Response {
    let body = json!({
        "status": "pass",
        "version": version,
        "releaseId": version,
        "serviceId": format!("{PRODUCT}-{function}"),
        "description": format!("{PRODUCT} {function}: liveness"),
    });
    respond::json_as(StatusCode::OK, &body, MEDIA_TYPE)
}

/// A health status, ordered so that the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Serving, but degraded or needing attention.
    Warn,
    /// Cannot serve.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    /// Parses `pass`, `warn` or `fail`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pass" => Some(Self::Pass),
            "warn" => Some(Self::Warn),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }

    /// The HTTP status the draft gives it: 200 for `pass` and `warn`, 503 for `fail`.
    pub fn http(self) -> StatusCode {
        match self {
            Self::Pass | Self::Warn => StatusCode::OK,
            Self::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One check object under `checks["component:measurement"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    key: String,
    status: Status,
    fields: Map<String, Value>,
}

impl Check {
    /// A check of `measurement` on `component` (e.g. `kv`, `responseTime`).
    pub fn new(component: &str, measurement: &str, status: Status) -> Self {
        Self {
            key: format!("{component}:{measurement}"),
            status,
            fields: Map::new(),
        }
    }

    /// `component:measurement`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The value measured, with its unit (`ms`, `percent`, `connections`...).
    pub fn observed(self, value: impl Into<Value>, unit: &str) -> Self {
        self.field("observedValue", value)
            .field("observedUnit", unit)
    }

    /// The value measured, when it has no unit (a flag, a state, an object).
    pub fn value(self, value: impl Into<Value>) -> Self {
        self.field("observedValue", value)
    }

    /// `componentType`: `datastore`, `component`, `system`...
    pub fn kind(self, component_type: &str) -> Self {
        self.field("componentType", component_type)
    }

    /// `componentId`, for one of several instances under the same key.
    pub fn id(self, component_id: &str) -> Self {
        self.field("componentId", component_id)
    }

    /// `output`: why it is not passing. Callers pass fixed, caller-safe text only: this goes
    /// into a response, never a cause chain or a value.
    pub fn output(self, text: impl Into<String>) -> Self {
        self.field("output", text.into())
    }

    /// `durationMs`: what the check itself took.
    pub fn took(self, ms: u64) -> Self {
        self.field("durationMs", ms)
    }

    /// `time`: when it was measured (defaults to the report's time).
    pub fn at(self, now_ms: u64) -> Self {
        self.field("time", rfc3339_ms(now_ms))
    }

    /// Any other member of the check object.
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }
}

/// The worst status of `checks` (`pass` when there are none).
pub fn worst(checks: &[Check]) -> Status {
    checks
        .iter()
        .map(Check::status)
        .max()
        .unwrap_or(Status::Pass)
}

/// The report of `function` made of `checks` (grouped by key, in order), measured at
/// `now_ms`: its status and the top-level object, to which callers may add members.
pub fn report(
    function: &str,
    description: &str,
    checks: &[Check],
    now_ms: u64,
) -> (Status, Map<String, Value>) {
    let status = worst(checks);
    let mut grouped = Map::new();
    for check in checks {
        let mut object = check.fields.clone();
        object.insert("status".into(), check.status.as_str().into());
        object
            .entry("time")
            .or_insert_with(|| rfc3339_ms(now_ms).into());
        match grouped
            .entry(check.key.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(list) => list.push(Value::Object(object)),
            _ => unreachable!("every entry is an array"),
        }
    }
    let mut top = Map::new();
    top.insert("status".into(), status.as_str().into());
    top.insert("serviceId".into(), format!("{PRODUCT}-{function}").into());
    top.insert(
        "description".into(),
        format!("{PRODUCT} {function}: {description}").into(),
    );
    top.insert("checks".into(), Value::Object(grouped));
    (status, top)
}

/// The response for a report: `status`'s HTTP status, `application/health+json`.
pub fn respond(status: Status, top: Map<String, Value>) -> Response {
    respond::json_as(status.http(), &Value::Object(top), MEDIA_TYPE)
}

/// `Retry-After` of a health check's 503, seconds: it recovers as soon as its dependency does.
pub const RETRY_AFTER_S: u64 = 5;

/// `resp` with `Retry-After: RETRY_AFTER_S`.
pub fn with_retry_after(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(RETRY_AFTER_S),
    );
    resp
}

/// The answer of a health function whose configuration is invalid: 503 `fail` with
/// `Retry-After`, one check `config:valid`. Which key and why are in the instance's
/// `config_invalid` log line, never here.
pub fn misconfigured(function: &str, description: &str, now_ms: u64) -> Response {
    let checks = [Check::new("config", "valid", Status::Fail)
        .value(false)
        .output("invalid configuration")];
    let (status, top) = report(function, description, &checks, now_ms);
    with_retry_after(respond(status, top))
}

/// Runs both futures at once and returns both outputs. Health checks of independent
/// dependencies overlap, so the report takes the slowest one's time, not their sum.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        match (out_a.take(), out_b.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                out_a = x;
                out_b = y;
                Poll::Pending
            }
        }
    })
    .await
}

/// `fut`'s output and how long it took on `clock`, in milliseconds.
pub async fn timed<F: Future>(clock: &dyn Clock, fut: F) -> (F::Output, u64) {
    let started = clock.now_unix_ms();
    let out = fut.await;
    (out, clock.now_unix_ms().saturating_sub(started))
}

/// Why a dependency check failed, in words safe to show anyone (the cause goes to the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Caller-safe text for the check's `output`.
    pub output: &'static str,
    /// The cause, for the log line only (redacted there).
    pub cause: String,
}

impl Failure {
    pub(crate) fn new(output: &'static str, cause: impl Into<String>) -> Self {
        Self {
            output,
            cause: cause.into(),
        }
    }
}

/// One key-value round trip within `deadline_ms`: writes a random probe key under
/// [`PROBE_PREFIX`] (expiring on its own should the delete never run), reads it back,
/// deletes it. Returns the elapsed milliseconds, or why it failed.
pub async fn kv_round_trip<P: Platform>(
    ctx: &Ctx<'_, P>,
    deadline_ms: u64,
) -> Result<u64, Failure> {
    let platform = ctx.platform;
    let work = async {
        let mut nonce = [0u8; 16];
        platform
            .random()
            .fill(&mut nonce)
            .map_err(|e| Failure::new("unavailable", e.to_string()))?;
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("{PROBE_PREFIX}{hex}");
        let kv = platform.kv();
        let expires = platform.clock().now_unix_ms() + PROBE_TTL_MS;
        let down = |op: &str, e: crate::ports::PortError| {
            Failure::new("unavailable", format!("{op}: {e}"))
        };
        kv.set(&key, hex.as_bytes(), Some(expires))
            .await
            .map_err(|e| down("set", e))?;
        let read = kv.get(&key).await.map_err(|e| down("get", e))?;
        kv.delete(&key).await.map_err(|e| down("delete", e))?;
        if read.as_deref() != Some(hex.as_bytes()) {
            return Err(Failure::new(
                "read back a different value",
                "the probe key did not read back as written",
            ));
        }
        Ok(())
    };
    match timed(
        platform.clock(),
        timeout::within(platform.timer(), deadline_ms, work),
    )
    .await
    {
        (Some(Ok(())), ms) => Ok(ms),
        (Some(Err(failure)), _) => Err(failure),
        (None, _) => Err(Failure::new(
            "timed out",
            format!("no answer within {deadline_ms} ms"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{block_on, MemoryPlatform};

    #[test]
    fn liveness_passes_with_version_and_service_id() {
        let resp = liveness("health", "1.2.3");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[http::header::CONTENT_TYPE], MEDIA_TYPE);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["status"], "pass");
        assert_eq!(body["version"], "1.2.3");
        assert_eq!(body["serviceId"], "assistant-edge-health");
    }

    #[test]
    fn the_report_takes_the_worst_status_and_groups_checks_by_key() {
        let checks = [
            Check::new("kv", "responseTime", Status::Pass).observed(3, "ms"),
            Check::new("proxy", "connections", Status::Pass)
                .id("in_use")
                .observed(2, "connections"),
            Check::new("proxy", "connections", Status::Warn)
                .id("waiting")
                .observed(5, "connections")
                .output("requests are waiting for a connection"),
        ];
        let (status, top) = report("health-x", "test", &checks, 1_767_225_600_000);
        assert_eq!(status, Status::Warn);
        assert_eq!(status.http(), StatusCode::OK);
        let body = Value::Object(top);
        assert_eq!(body["status"], "warn");
        assert_eq!(body["serviceId"], "assistant-edge-health-x");
        assert_eq!(
            body["checks"]["proxy:connections"].as_array().map(Vec::len),
            Some(2)
        );
        let kv = &body["checks"]["kv:responseTime"][0];
        assert_eq!(kv["observedValue"], 3);
        assert_eq!(kv["observedUnit"], "ms");
        assert_eq!(kv["status"], "pass");
        assert_eq!(kv["time"], "2026-01-01T00:00:00.000Z");
        assert_eq!(Status::Fail.http(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn join_returns_both_outputs() {
        assert_eq!(block_on(join(async { 1 }, async { "two" })), (1, "two"));
    }

    #[test]
    fn the_kv_round_trip_leaves_no_key_behind_and_fails_when_the_store_is_down() {
        let p = MemoryPlatform::default();
        let cfg = crate::config::EdgeConfig::default();
        let ctx = Ctx::new(&p, "req-kv-1".into(), "health-x", &cfg);
        assert!(block_on(kv_round_trip(&ctx, 1_000)).is_ok());
        assert!(p.kv.is_empty(), "the probe key is deleted");
        p.kv.down.set(true);
        let failure = block_on(kv_round_trip(&ctx, 1_000)).err();
        assert_eq!(failure.map(|f| f.output), Some("unavailable"));
    }
}
