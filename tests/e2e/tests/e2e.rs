//! The end-to-end cases, run against every runtime named in `E2E_RUNTIMES` (default
//! `wrangler,spin`). A runtime that is not installed here is reported as ignored under each
//! case's name with the reason, never counted as passed. A runtime that fails to start fails
//! every one of its cases.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{client, Kind, Runtime};
use libtest_mimic::{Arguments, Failed, Trial};

type Case = fn(&Runtime) -> Result<(), Failed>;
/// One runtime instance, started by the first case that needs it.
type Slot = Arc<Mutex<Option<Result<Runtime, String>>>>;

const CASES: &[(&str, Case)] = &[
    ("health_paths_answer_pass", health_paths_answer_pass),
    (
        "health_other_methods_get_405_with_allow",
        health_other_methods_get_405,
    ),
    (
        "health_head_has_headers_and_no_body",
        health_head_has_no_body,
    ),
    (
        "security_headers_on_success_and_error",
        security_headers_everywhere,
    ),
    (
        "request_id_is_echoed_or_replaced",
        request_id_echoed_or_replaced,
    ),
    ("unknown_function_path_is_404", unknown_function_path_is_404),
    (
        "access_log_is_json_without_query",
        access_log_is_json_without_query,
    ),
    (
        "kv_values_round_trip_and_delete",
        kv_values_round_trip_and_delete,
    ),
    (
        "kv_expired_values_read_as_absent",
        kv_expired_values_read_as_absent,
    ),
    (
        "kv_counters_exact_under_32_concurrent_clients",
        kv_counters_exact_under_concurrency,
    ),
    (
        "kv_value_and_counter_namespaces_never_mix",
        kv_namespaces_never_mix,
    ),
];

fn ensure(cond: bool, msg: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg.into().into())
    }
}

struct Resp {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Result<serde_json::Value, Failed> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", self.body).into())
    }
}

fn call(rt: &Runtime, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Resp, Failed> {
    send(&rt.url(path), method, headers, "")
}

fn send(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Result<Resp, Failed> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.to_owned()).map_err(|e| e.to_string())?;
    let mut resp = client()
        .run(req)
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Ok(Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body,
    })
}

fn health_paths_answer_pass(rt: &Runtime) -> Result<(), Failed> {
    for path in ["/health", "/api/v1/health"] {
        let r = call(rt, "GET", path, &[])?;
        ensure(r.status == 200, format!("{path}: status {}", r.status))?;
        ensure(
            r.header("content-type") == "application/health+json",
            format!("{path}: content-type {:?}", r.header("content-type")),
        )?;
        let body = r.json()?;
        ensure(body["status"] == "pass", format!("{path}: {body}"))?;
        ensure(
            body["version"].is_string(),
            format!("{path}: no version: {body}"),
        )?;
        ensure(
            body["serviceId"] == "assistant-edge-health",
            format!("{path}: serviceId {body}"),
        )?;
    }
    Ok(())
}

fn health_other_methods_get_405(rt: &Runtime) -> Result<(), Failed> {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = call(rt, method, "/health", &[])?;
        ensure(r.status == 405, format!("{method}: status {}", r.status))?;
        ensure(
            r.header("allow") == "GET, HEAD",
            format!("{method}: allow {:?}", r.header("allow")),
        )?;
        let body = r.json()?;
        ensure(
            body["error"]["code"] == "method_not_allowed",
            format!("{method}: {body}"),
        )?;
        ensure(
            body["error"]["request_id"] == r.header("x-request-id"),
            format!("{method}: body request_id differs from header: {body}"),
        )?;
    }
    Ok(())
}

fn health_head_has_no_body(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "HEAD", "/api/v1/health", &[])?;
    ensure(r.status == 200, format!("status {}", r.status))?;
    ensure(r.body.is_empty(), format!("HEAD body: {:?}", r.body))?;
    ensure(
        r.header("content-type") == "application/health+json",
        "HEAD keeps the content type",
    )
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-xss-protection", "0"),
    ("cache-control", "no-store"),
];

fn security_headers_everywhere(rt: &Runtime) -> Result<(), Failed> {
    for (method, path) in [("GET", "/health"), ("DELETE", "/api/v1/health")] {
        let r = call(rt, method, path, &[])?;
        for (name, want) in SECURITY_HEADERS {
            ensure(
                r.header(name) == *want,
                format!(
                    "{method} {path} ({}): {name} = {:?}",
                    r.status,
                    r.header(name)
                ),
            )?;
        }
        ensure(
            r.header("permissions-policy").contains("camera=()"),
            "permissions-policy denies features",
        )?;
        ensure(
            r.headers.get("x-powered-by").is_none(),
            "no x-powered-by header",
        )?;
    }
    Ok(())
}

fn request_id_echoed_or_replaced(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "GET", "/health", &[("x-request-id", "e2e-req-000123")])?;
    ensure(
        r.header("x-request-id") == "e2e-req-000123",
        format!("safe id not echoed: {:?}", r.header("x-request-id")),
    )?;
    let r = call(rt, "GET", "/health", &[("x-request-id", "bad id <script>")])?;
    let id = r.header("x-request-id");
    ensure(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        format!("unsafe id not replaced by a generated one: {id:?}"),
    )
}

fn unknown_function_path_is_404(rt: &Runtime) -> Result<(), Failed> {
    // A path routed to no function: the runtime (Spin) or the router (wrangler) answers 404.
    let r = call(rt, "GET", "/no-such-function", &[])?;
    ensure(r.status == 404, format!("status {}", r.status))
}

fn access_log_is_json_without_query(rt: &Runtime) -> Result<(), Failed> {
    let marker = format!("e2e-log-{}", std::process::id());
    call(
        rt,
        "GET",
        "/health?token=query-secret-value",
        &[("x-request-id", &marker)],
    )?;
    // Log lines reach the files asynchronously; poll briefly (bounded).
    let mut line = None;
    for _ in 0..40 {
        line = rt
            .log_lines()
            .into_iter()
            .find(|l| l.contains(&marker) && l.trim_start().starts_with('{'));
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let line = line.ok_or("no JSON access line with the request id in the runtime logs")?;
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    for key in [
        "ts",
        "level",
        "fn",
        "request_id",
        "method",
        "path",
        "status",
        "duration_ms",
    ] {
        ensure(
            v.get(key).is_some(),
            format!("access line lacks {key}: {line}"),
        )?;
    }
    ensure(v["path"] == "/health", format!("path: {line}"))?;
    let all = rt.log_lines().join("\n");
    ensure(
        !all.contains("query-secret-value"),
        "a query-string value reached the logs",
    )
}

/// A key unique to this run and case, so reruns against persisted state start clean.
fn unique_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}e2e-{}-{nanos}", std::process::id())
}

fn probe(rt: &Runtime, method: &str, path_and_query: &str, body: &str) -> Result<Resp, Failed> {
    send(&format!("{}{path_and_query}", rt.probe), method, &[], body)
}

fn kv_values_round_trip_and_delete(rt: &Runtime) -> Result<(), Failed> {
    let key = unique_key("sess:");
    let r = probe(rt, "GET", &format!("/__kv/value?key={key}"), "")?;
    ensure(
        r.status == 404,
        format!("absent key: {} {}", r.status, r.body),
    )?;
    let r = probe(rt, "PUT", &format!("/__kv/value?key={key}"), "first")?;
    ensure(r.status == 204, format!("set: {} {}", r.status, r.body))?;
    let r = probe(rt, "PUT", &format!("/__kv/value?key={key}"), "second")?;
    ensure(
        r.status == 204,
        format!("overwrite: {} {}", r.status, r.body),
    )?;
    let r = probe(rt, "GET", &format!("/__kv/value?key={key}"), "")?;
    ensure(
        r.status == 200 && r.body == "second",
        format!("read back: {} {:?}", r.status, r.body),
    )?;
    let r = probe(rt, "DELETE", &format!("/__kv/value?key={key}"), "")?;
    ensure(r.status == 204, format!("delete: {}", r.status))?;
    let r = probe(rt, "GET", &format!("/__kv/value?key={key}"), "")?;
    ensure(r.status == 404, format!("after delete: {}", r.status))
}

fn kv_expired_values_read_as_absent(rt: &Runtime) -> Result<(), Failed> {
    let live = unique_key("sess:live-");
    let r = probe(
        rt,
        "PUT",
        &format!("/__kv/value?key={live}&expires_in_ms=600000"),
        "x",
    )?;
    ensure(r.status == 204, format!("set live: {}", r.status))?;
    let r = probe(rt, "GET", &format!("/__kv/value?key={live}"), "")?;
    ensure(
        r.status == 200,
        format!("unexpired value must read back: {}", r.status),
    )?;
    let dead = unique_key("sess:dead-");
    let r = probe(
        rt,
        "PUT",
        &format!("/__kv/value?key={dead}&expires_in_ms=-1000"),
        "x",
    )?;
    ensure(r.status == 204, format!("set expired: {}", r.status))?;
    let r = probe(rt, "GET", &format!("/__kv/value?key={dead}"), "")?;
    ensure(
        r.status == 404,
        format!("expired value must read as absent: {}", r.status),
    )
}

fn kv_counters_exact_under_concurrency(rt: &Runtime) -> Result<(), Failed> {
    const CLIENTS: usize = 32;
    const EACH: usize = 20;
    let key = unique_key("ctr:");
    let url = format!("{}/__kv/incr?key={key}&delta=1", rt.probe);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<Vec<i64>, String> {
                let mut seen = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    let r = send(&url, "POST", &[], "").map_err(|e| format!("{e:?}"))?;
                    if r.status != 200 {
                        return Err(format!("increment answered {}: {}", r.status, r.body));
                    }
                    let v: serde_json::Value =
                        serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
                    seen.push(v["value"].as_i64().ok_or("no value")?);
                }
                Ok(seen)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "client thread panicked")??);
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=(CLIENTS * EACH) as i64).collect();
    ensure(
        all == expected,
        format!(
            "{} increments must return each of 1..={} exactly once; got {} distinct, max {:?}",
            CLIENTS * EACH,
            CLIENTS * EACH,
            {
                let mut d = all.clone();
                d.dedup();
                d.len()
            },
            all.last()
        ),
    )
}

fn kv_namespaces_never_mix(rt: &Runtime) -> Result<(), Failed> {
    let r = probe(
        rt,
        "PUT",
        &format!("/__kv/value?key={}", unique_key("ctr:")),
        "text",
    )?;
    ensure(
        r.status == 422,
        format!("set on a counter key: {} {}", r.status, r.body),
    )?;
    let r = probe(
        rt,
        "POST",
        &format!("/__kv/incr?key={}", unique_key("sess:")),
        "",
    )?;
    ensure(
        r.status == 422,
        format!("increment of a value key: {} {}", r.status, r.body),
    )
}

fn main() {
    let args = Arguments::from_args();
    let wanted = std::env::var("E2E_RUNTIMES").unwrap_or_else(|_| "wrangler,spin".into());
    let mut trials = Vec::new();
    let mut started: Vec<Slot> = Vec::new();
    for name in wanted.split(',').filter(|n| !n.trim().is_empty()) {
        let Some(kind) = Kind::parse(name) else {
            eprintln!("E2E_RUNTIMES: unknown runtime {name:?} (use wrangler, spin)");
            std::process::exit(2);
        };
        if let Some(reason) = kind.unavailable_reason() {
            for (case, _) in CASES {
                trials.push(
                    Trial::test(
                        format!("{}::{case} (skipped: {reason})", kind.name()),
                        || Ok(()),
                    )
                    .with_ignored_flag(true),
                );
            }
            eprintln!("e2e: {} skipped: {reason}", kind.name());
            continue;
        }
        let slot: Slot = Arc::new(Mutex::new(None));
        started.push(slot.clone());
        for (case, run) in CASES {
            let slot = slot.clone();
            let run = *run;
            trials.push(Trial::test(format!("{}::{case}", kind.name()), move || {
                // Cases of one runtime run one at a time on one shared instance.
                let mut guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let rt = guard
                    .get_or_insert_with(|| Runtime::start(kind, &[], Duration::from_secs(240)));
                match rt {
                    Ok(rt) => run(rt),
                    Err(why) => Err(format!("runtime failed to start: {why}").into()),
                }
            }));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Tear every runtime down before exiting, whatever the outcome.
    for slot in started {
        let runtime = slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(Ok(mut rt)) = runtime {
            if conclusion.has_failed() {
                rt.keep_files();
            }
            drop(rt);
        }
    }
    conclusion.exit();
}
