//! Comprehensive health (`GET /health/comprehensive`): every component with a measured value.
//!
//! | key | what | `warn` | `fail` |
//! |---|---|---|---|
//! | `kv:responseTime` | a probe-key round trip (write, read, delete) | over [`KV_WARN_MS`] | error or timeout |
//! | `proxy:responseTime` | the signed `GET /v1/ping` round trip (key and audience checked too) | | unreachable, refused |
//! | `postgres:responseTime` | the proxy's own database time in that ping | | unreachable |
//! | `proxy:connections` | pool figures: `in_use`, `idle`, `waiting`, `overflow` | | |
//! | `proxy:utilization` | `in_use` of the pool's most (size + overflow), percent | over [`POOL_WARN_PERCENT`] | |
//! | `config:secrets` | counts of this function's secrets: `valid`, `invalid`, `weak`, `rotationDue` (overdue or due within 14 days) | any but `valid` | |
//! | `<provider>:configured`, `<provider>:keyFormat` | each AI provider (openai, anthropic, groq, google) | malformed key | |
//! | `evolution:configured` | URL, instance and key set | unset outside development | |
//! | `build:info` | crate version, git commit, runtime | | |
//!
//! Names of secrets appear only in development (`output` of `config:secrets`); elsewhere only
//! counts. `fail` means serving is impossible (store or proxy/database down): 503; `pass` and
//! `warn` are 200. Every check carries its own `durationMs`.
//!
//! With `?probe=true`, and only for an admin ([`crate::admin`]; anyone else's `probe` is
//! ignored), it also makes one cheap authenticated call to each configured provider (list the
//! models) and to Evolution (the instance's connection state): `<provider>:responseTime`,
//! `evolution:connectionState`; a failing probe is `warn` (the assistant falls back to its
//! built-in responder). Without it nothing paid or rate-limited is called.
//!
//! Results without probes are cached for [`CACHE_MS`] in the key-value store (one value key,
//! expiring through the port), so monitors polling every second cost one measurement per
//! window; a cached answer carries `Age`.

use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use super::secrets::{statuses, today, SecretStatus};
use super::{join, kv_round_trip, report as health_report, respond, timed, Check, Status};
use crate::config::{catalog_function, Environment};
use crate::log::Level;
use crate::ports::{KeyValue, Platform};
use crate::proxy::{self, ProxyCall, ProxyTarget};
use crate::{admin, timeout, Bytes, Ctx, Error, Request, Response};

/// Where the last report without probes is kept (a value key, outside the counter namespace).
pub const CACHE_KEY: &str = "health:comprehensive";
/// How long a report is served from the cache, milliseconds.
pub const CACHE_MS: u64 = 10_000;
/// A key-value round trip slower than this is `warn`.
pub const KV_WARN_MS: u64 = 250;
/// A pool more used than this (percent of size + overflow) is `warn`.
pub const POOL_WARN_PERCENT: u64 = 80;
/// Deadline of the key-value round trip.
pub const KV_MS: u64 = 1_500;
/// Deadline of the proxy ping (and of the liveness call that tells a down proxy from a down
/// database).
pub const PROXY_MS: u64 = 2_000;
/// Deadline of each outbound probe.
pub const PROBE_MS: u64 = 3_000;
/// The `anthropic-version` header Anthropic's API requires.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What this build is.
#[derive(Debug, Clone, Copy)]
pub struct Build {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// The git commit it was built from (`unknown` outside a checkout).
    pub commit: &'static str,
}

const DESCRIPTION: &str = "comprehensive";

/// The answer of a comprehensive-health function whose configuration is invalid (see
/// [`super::misconfigured`]).
pub fn misconfigured(function: &str, now_ms: u64) -> Response {
    super::misconfigured(function, DESCRIPTION, now_ms)
}

/// Answers `GET /health/comprehensive` for the request `ctx` serves (see the module docs).
pub async fn report<P: Platform>(
    req: &Request,
    ctx: &Ctx<'_, P>,
    build: Build,
) -> Result<Response, Error> {
    let probe = wants_probe(req) && matches!(admin::check(ctx, req).await, Ok(Some(_)));
    if !probe {
        if let Some(resp) = cached(ctx).await {
            return Ok(resp);
        }
    }
    let clock = ctx.platform.clock();
    // The measurements run at once. Their futures (each outbound call with its deadline) are
    // large, so they live on the heap: kept inline, the request's future outgrew the Workers
    // stack when the adapter moved it (memory access out of bounds, measured).
    let measured = Box::pin(join(
        join(kv_check(ctx), Box::pin(proxy_checks(ctx))),
        async {
            if probe {
                Box::pin(probe_checks(ctx)).await
            } else {
                Vec::new()
            }
        },
    ));
    let ((kv, proxy), probes) = measured.await;
    let mut checks = kv;
    checks.extend(proxy);
    let (secrets, ms) = timed(clock, async {
        statuses(
            ctx.config,
            catalog_function(ctx.function),
            today(clock.now_unix_ms()),
        )
    })
    .await;
    checks.extend(config_checks(&secrets, ctx.config.environment, ms));
    checks.extend(provider_checks(&secrets));
    checks.push(evolution_configured(ctx));
    checks.extend(probes);
    checks.push(
        Check::new("build", "info", Status::Pass)
            .kind("system")
            .value(
                json!({"version": build.version, "commit": build.commit, "runtime": P::RUNTIME}),
            ),
    );
    let now = clock.now_unix_ms();
    let (status, mut top) = health_report(ctx.function, DESCRIPTION, &checks, now);
    top.insert("version".into(), build.version.into());
    top.insert("releaseId".into(), build.commit.into());
    if !probe {
        store(ctx, now, &top);
    }
    Ok(respond(status, top))
}

/// Whether the query asks for `probe=true`.
fn wants_probe(req: &Request) -> bool {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "probe=true")
}

/// The cached report, while fresh, as a response with `Age`. Stored as `{"at", "body"}`;
/// read through `Value` (a serde derive per type costs every artifact several KB).
async fn cached<P: Platform>(ctx: &Ctx<'_, P>) -> Option<Response> {
    let bytes = ctx.platform.kv().get(CACHE_KEY).await.ok()??;
    let Value::Object(mut stored) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    let at = stored.get("at")?.as_u64()?;
    let Some(Value::Object(body)) = stored.remove("body") else {
        return None;
    };
    let status = Status::parse(body.get("status")?.as_str()?)?;
    let age_s = ctx.platform.clock().now_unix_ms().saturating_sub(at) / 1000;
    let mut resp = respond(status, body);
    resp.headers_mut()
        .insert(header::AGE, HeaderValue::from(age_s));
    Some(resp)
}

/// Keeps `top` for [`CACHE_MS`], after the response (the caller does not wait for it).
fn store<P: Platform>(ctx: &Ctx<'_, P>, now: u64, top: &Map<String, Value>) {
    let value = json!({"at": now, "body": top}).to_string();
    let (platform, config, request_id, function) = (
        ctx.platform,
        ctx.config,
        ctx.request_id.clone(),
        ctx.function,
    );
    ctx.defer(async move {
        if let Err(e) = platform
            .kv()
            .set(CACHE_KEY, value.as_bytes(), Some(now + CACHE_MS))
            .await
        {
            // Only the next request pays: it measures again.
            let ctx = Ctx::new(platform, request_id, function, config);
            let mut fields = Map::new();
            fields.insert("cause".into(), e.to_string().into());
            ctx.event(Level::Warn, "health_cache_write_failed", fields);
        }
    });
}

async fn kv_check<P: Platform>(ctx: &Ctx<'_, P>) -> Vec<Check> {
    let at = ctx.platform.clock().now_unix_ms();
    let check = match kv_round_trip(ctx, KV_MS).await {
        Ok(ms) if ms > KV_WARN_MS => Check::new("kv", "responseTime", Status::Warn)
            .observed(ms, "ms")
            .took(ms)
            .output(format!("slower than {KV_WARN_MS} ms")),
        Ok(ms) => Check::new("kv", "responseTime", Status::Pass)
            .observed(ms, "ms")
            .took(ms),
        Err(failure) => {
            log_failure(ctx, "kv", &failure.cause);
            Check::new("kv", "responseTime", Status::Fail).output(failure.output)
        }
    };
    vec![check.kind("datastore").at(at)]
}

/// The proxy's pool figures (`pool` of `/v1/ping` and `/api/v1/health`).
struct Pool {
    idle: u64,
    in_use: u64,
    waiting: u64,
    overflow_open: u64,
    max_size: u64,
    max_overflow: u64,
}

impl Pool {
    /// From the `pool` member of a proxy answer; `None` when a figure is missing.
    fn of(answer: &Value) -> Option<Self> {
        let pool = answer.get("pool")?;
        let n = |name: &str| pool.get(name).and_then(Value::as_u64);
        Some(Self {
            idle: n("idle")?,
            in_use: n("in_use")?,
            waiting: n("waiting")?,
            overflow_open: n("overflow_open")?,
            max_size: n("max_size")?,
            max_overflow: n("max_overflow")?,
        })
    }
}

/// The proxy and, through it, Postgres: one signed ping (no retry: a health check reports
/// the first answer). When the ping fails, an unsigned liveness call tells a down proxy from
/// a down database.
async fn proxy_checks<P: Platform>(ctx: &Ctx<'_, P>) -> Vec<Check> {
    let clock = ctx.platform.clock();
    let at = clock.now_unix_ms();
    let fail = |component: &str, output: &str| {
        Check::new(component, "responseTime", Status::Fail)
            .kind(if component == "postgres" {
                "datastore"
            } else {
                "component"
            })
            .output(output.to_owned())
            .at(at)
    };
    let target = match ProxyTarget::from_config(ctx.config) {
        Ok(t) => t,
        Err(e) => {
            log_failure(ctx, "proxy", &e.to_string());
            return vec![
                fail("proxy", "not configured"),
                fail("postgres", "not checked: no proxy"),
            ];
        }
    };
    let call = ProxyCall {
        method: Method::GET,
        path_and_query: "/v1/ping",
        body: None,
        idempotent: false,
        timeout_ms: PROXY_MS,
    };
    let (answer, ms) = timed(clock, proxy::send(ctx, &target, &call)).await;
    match answer {
        Ok(resp) if resp.status.is_success() => match serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| Some((v.get("db_ms")?.as_f64()?, Pool::of(&v)?)))
        {
            Some((db_ms, pool)) => {
                let mut checks = vec![
                    Check::new("proxy", "responseTime", Status::Pass)
                        .kind("component")
                        .observed(ms, "ms")
                        .took(ms)
                        .at(at),
                    Check::new("postgres", "responseTime", Status::Pass)
                        .kind("datastore")
                        .observed((db_ms * 10.0).round() / 10.0, "ms")
                        .at(at),
                ];
                checks.extend(pool_checks(&pool, at));
                checks
            }
            None => {
                log_failure(ctx, "proxy", "ping body unreadable");
                vec![
                    fail("proxy", "unexpected answer"),
                    fail("postgres", "unknown"),
                ]
            }
        },
        Ok(resp) => {
            let status = resp.status.as_u16();
            log_failure(ctx, "proxy", &format!("ping answered {status}"));
            let output = if status == 401 {
                "refused our signature (PROXY_HMAC_KEY or audience)".to_owned()
            } else {
                format!("answered {status}")
            };
            vec![fail("proxy", &output), fail("postgres", "not checked")]
        }
        Err(e) => {
            log_failure(ctx, "proxy", &e.to_string());
            match proxy_alive(ctx, target.base()).await {
                Some(pool) => {
                    let mut checks = vec![
                        Check::new("proxy", "responseTime", Status::Pass)
                            .kind("component")
                            .observed(ms, "ms")
                            .took(ms)
                            .at(at),
                        fail("postgres", "unreachable"),
                    ];
                    checks.extend(pool.map(|p| pool_checks(&p, at)).unwrap_or_default());
                    checks
                }
                None => vec![
                    fail("proxy", "unreachable"),
                    fail("postgres", "not checked"),
                ],
            }
        }
    }
}

/// Whether the proxy itself answers its unsigned liveness, with its pool figures if readable.
async fn proxy_alive<P: Platform>(ctx: &Ctx<'_, P>, base: &str) -> Option<Option<Pool>> {
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = format!("{base}/api/v1/health").parse().ok()?;
    let resp = timeout::within(ctx.platform.timer(), PROXY_MS, ctx.send(req))
        .await?
        .ok()?;
    (resp.status() == StatusCode::OK).then(|| {
        serde_json::from_slice::<Value>(resp.body())
            .ok()
            .and_then(|v| Pool::of(&v))
    })
}

fn pool_checks(pool: &Pool, at: u64) -> Vec<Check> {
    let mut checks: Vec<Check> = [
        ("in_use", pool.in_use),
        ("idle", pool.idle),
        ("waiting", pool.waiting),
        ("overflow", pool.overflow_open),
    ]
    .into_iter()
    .map(|(id, n)| {
        Check::new("proxy", "connections", Status::Pass)
            .kind("component")
            .id(id)
            .observed(n, "connections")
            .at(at)
    })
    .collect();
    let capacity = (pool.max_size + pool.max_overflow).max(1);
    let percent = pool.in_use * 100 / capacity;
    let utilization = if percent > POOL_WARN_PERCENT {
        Check::new("proxy", "utilization", Status::Warn).output(format!(
            "more than {POOL_WARN_PERCENT} % of the pool in use"
        ))
    } else {
        Check::new("proxy", "utilization", Status::Pass)
    };
    checks.push(
        utilization
            .kind("component")
            .observed(percent, "percent")
            .at(at),
    );
    checks
}

/// `config:secrets`: counts (and, in development only, names) of this function's secrets.
fn config_checks(secrets: &[SecretStatus], env: Environment, ms: u64) -> Vec<Check> {
    let set: Vec<&SecretStatus> = secrets.iter().filter(|s| s.configured).collect();
    let groups: [(&str, Vec<&SecretStatus>, &str); 4] = [
        (
            "valid",
            set.iter()
                .copied()
                .filter(|s| s.format_valid == Some(true) && !s.weak)
                .collect(),
            "",
        ),
        (
            "invalid",
            set.iter()
                .copied()
                .filter(|s| s.format_valid == Some(false))
                .collect(),
            "malformed",
        ),
        (
            "weak",
            set.iter().copied().filter(|s| s.weak).collect(),
            "weak",
        ),
        (
            "rotationDue",
            set.iter()
                .copied()
                .filter(|s| s.overdue() || s.due_soon())
                .collect(),
            "rotation due",
        ),
    ];
    groups
        .into_iter()
        .map(|(id, members, word)| {
            let status = if id == "valid" || members.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            };
            let mut check = Check::new("config", "secrets", status)
                .kind("system")
                .id(id)
                .observed(members.len(), "secrets")
                .took(ms);
            if status == Status::Warn {
                check = check.output(if env == Environment::Development {
                    let names: Vec<&str> = members.iter().map(|s| s.name).collect();
                    format!("{word}: {}", names.join(", "))
                } else {
                    format!("{} {word}", members.len())
                });
            }
            check
        })
        .collect()
}

/// The AI providers: the variable of each one's key.
const PROVIDERS: [(&str, &str); 4] = [
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("groq", "GROQ_API_KEY"),
    ("google", "GOOGLE_API_KEY"),
];

fn provider_checks(secrets: &[SecretStatus]) -> Vec<Check> {
    let mut checks = Vec::new();
    for (provider, key) in PROVIDERS {
        let status = secrets.iter().find(|s| s.name == key);
        let configured = status.is_some_and(|s| s.configured);
        checks.push(
            Check::new(provider, "configured", Status::Pass)
                .kind("component")
                .value(configured),
        );
        if let Some(valid) = status.and_then(|s| s.format_valid) {
            let check = if valid {
                Check::new(provider, "keyFormat", Status::Pass)
            } else {
                Check::new(provider, "keyFormat", Status::Warn).output("key format not valid")
            };
            checks.push(check.kind("component").value(valid));
        }
    }
    checks
}

/// Evolution's base URL, instance and key, when all three are set.
fn evolution<'c, P: Platform>(ctx: &'c Ctx<'_, P>) -> Option<(&'c str, &'c str, &'c str)> {
    let settings = ctx.config.settings.as_ref()?;
    let url = settings.evolution_api_url.as_ref()?.as_str();
    let instance = ctx.config.text("EVOLUTION_INSTANCE")?;
    let key = ctx.config.secret("EVOLUTION_API_KEY")?.expose();
    Some((url.trim_end_matches('/'), instance, key))
}

fn evolution_configured<P: Platform>(ctx: &Ctx<'_, P>) -> Check {
    let configured = evolution(ctx).is_some();
    let check = if configured || ctx.config.environment == Environment::Development {
        Check::new("evolution", "configured", Status::Pass)
    } else {
        Check::new("evolution", "configured", Status::Warn)
            .output("not configured: replies cannot be sent")
    };
    check.kind("component").value(configured)
}

/// The outbound probes (admin, `?probe=true`), all at once.
async fn probe_checks<P: Platform>(ctx: &Ctx<'_, P>) -> Vec<Check> {
    let cfg = ctx.config;
    let openai = cfg.secret("OPENAI_API_KEY").map(|key| {
        let base = cfg
            .text("OPENAI_BASE_URL")
            .unwrap_or("https://api.openai.com/v1");
        (
            format!("{}/models", base.trim_end_matches('/')),
            vec![(
                header::AUTHORIZATION.as_str(),
                format!("Bearer {}", key.expose()),
            )],
        )
    });
    let anthropic = cfg.secret("ANTHROPIC_API_KEY").map(|key| {
        let base = cfg
            .text("ANTHROPIC_BASE_URL")
            .unwrap_or("https://api.anthropic.com");
        (
            format!("{}/v1/models", base.trim_end_matches('/')),
            vec![
                ("x-api-key", key.expose().to_owned()),
                ("anthropic-version", ANTHROPIC_VERSION.to_owned()),
            ],
        )
    });
    let evolution = evolution(ctx).map(|(url, instance, key)| {
        (
            format!(
                "{url}/instance/connectionState/{}",
                encode_segment(instance)
            ),
            vec![("apikey", key.to_owned())],
        )
    });
    let ((openai, anthropic), evolution) = join(
        join(
            probe(ctx, "openai", openai),
            probe(ctx, "anthropic", anthropic),
        ),
        probe(ctx, "evolution", evolution),
    )
    .await;
    let mut checks = Vec::new();
    for (provider, result) in [("openai", openai), ("anthropic", anthropic)] {
        if let Some((result, ms, at)) = result {
            checks.push(
                match result {
                    Ok(_) => Check::new(provider, "responseTime", Status::Pass).observed(ms, "ms"),
                    Err(output) => {
                        Check::new(provider, "responseTime", Status::Warn).output(output)
                    }
                }
                .kind("component")
                .took(ms)
                .at(at),
            );
        }
    }
    if let Some((result, ms, at)) = evolution {
        let check = match result {
            Ok(body) => {
                let state = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["instance"]["state"].as_str().map(str::to_owned));
                match state {
                    Some(s) if s == "open" => {
                        Check::new("evolution", "connectionState", Status::Pass).value(s)
                    }
                    Some(s) => Check::new("evolution", "connectionState", Status::Warn)
                        .value(s)
                        .output("the WhatsApp instance is not connected"),
                    None => Check::new("evolution", "connectionState", Status::Warn)
                        .output("unexpected answer"),
                }
            }
            Err(output) => Check::new("evolution", "connectionState", Status::Warn).output(output),
        };
        checks.push(check.kind("component").took(ms).at(at));
    }
    checks
}

/// One authenticated `GET` within [`PROBE_MS`], when `call` is configured: the body of a 2xx,
/// or a caller-safe word on why not; with its milliseconds and start time.
async fn probe<P: Platform>(
    ctx: &Ctx<'_, P>,
    name: &str,
    call: Option<(String, Vec<(&str, String)>)>,
) -> Option<(Result<Bytes, String>, u64, u64)> {
    let (url, headers) = call?;
    let clock = ctx.platform.clock();
    let at = clock.now_unix_ms();
    let mut req = Request::new(Bytes::new());
    let Ok(uri) = url.parse() else {
        return Some((Err("base URL is not a URI".into()), 0, at));
    };
    *req.uri_mut() = uri;
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            req.headers_mut().insert(n, v);
        }
    }
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let call = timeout::within(ctx.platform.timer(), PROBE_MS, ctx.send(req));
    let (answer, ms) = timed(clock, call).await;
    let result = match answer {
        None => Err("timed out".to_owned()),
        Some(Err(e)) => {
            log_failure(ctx, name, &e.to_string());
            Err("unreachable".to_owned())
        }
        Some(Ok(resp)) if resp.status().is_success() => Ok(resp.into_body()),
        // A provider's error body can echo what it was sent: the status only.
        Some(Ok(resp)) => Err(format!("answered {}", resp.status().as_u16())),
    };
    Some((result, ms, at))
}

/// Percent-encodes one path segment (an instance name is an identifier, but `/`, `%` and
/// spaces must never change the path).
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn log_failure<P: Platform>(ctx: &Ctx<'_, P>, component: &str, cause: &str) {
    let mut fields = Map::new();
    fields.insert("component".into(), component.into());
    fields.insert("cause".into(), cause.into());
    ctx.event(Level::Warn, "health_check_failed", fields);
}

#[cfg(test)]
mod tests;
