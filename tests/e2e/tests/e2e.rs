//! The end-to-end cases, run against every runtime named in `E2E_RUNTIMES` (default
//! `wrangler,spin`). A runtime that is not installed here is reported as ignored under each
//! case's name with the reason, never counted as passed. A runtime that fails to start fails
//! every one of its cases.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use e2e::{client, FakeServer, Kind, ProxyServer, Runtime};

#[path = "e2e/auth.rs"]
mod auth;
#[path = "e2e/health.rs"]
mod health;
use libtest_mimic::{Arguments, Failed, Trial};

#[path = "webhook_cases/cases.rs"]
mod webhook_cases;

type Case = fn(&Runtime) -> Result<(), Failed>;

/// One profile's runtime instance: started by the first of its cases that runs, stopped after
/// the last one. (Kept to the end of the suite, every finished profile's instance, some ten
/// processes each for wrangler, would stay up beside the next ones.)
struct Instance {
    runtime: Mutex<Option<Result<Runtime, String>>>,
    /// Cases of the profile still to run; the instance stops when it reaches 0.
    remaining: AtomicUsize,
    /// Whether a case failed on it (its logs and state are then kept).
    failed: AtomicBool,
}

impl Instance {
    fn new(cases: usize) -> Self {
        Self {
            runtime: Mutex::new(None),
            remaining: AtomicUsize::new(cases),
            failed: AtomicBool::new(false),
        }
    }

    /// Stops the runtime, if one runs, keeping its files when a case failed on it.
    fn stop(&self, runtime: Option<Result<Runtime, String>>) {
        if let Some(Ok(mut rt)) = runtime {
            if self.failed.load(Ordering::SeqCst) {
                rt.keep_files();
            }
            drop(rt);
        }
    }
}

/// The fake Sentry every `dev` instance reports to (`SENTRY_DSN` points at it).
static SENTRY: OnceLock<Result<FakeServer, String>> = OnceLock::new();

fn sentry() -> Result<&'static FakeServer, Failed> {
    SENTRY
        .get_or_init(FakeServer::start)
        .as_ref()
        .map_err(|e| format!("fake Sentry: {e}").into())
}

/// A secret placed in the suite's configuration; it must never appear in any log line.
const ADMIN_TOKEN: &str = "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c";
/// Peers that may set `X-Forwarded-For`: the loopback, where the suite's requests come from.
const LOOPBACK_PROXIES: &str = "127.0.0.1,::1,::ffff:127.0.0.1";

/// One runtime configuration and the cases that run against it.
struct Profile {
    name: &'static str,
    /// Runtimes this profile applies to (empty: every runtime).
    runtimes: &'static [Kind],
    /// Extra `scripts/dev` arguments.
    dev_args: &'static [&'static str],
    /// Whether the key-value probe runs beside the functions.
    probe: bool,
    /// Whether a real pg-proxy (fresh database) runs for the functions.
    proxy: bool,
    vars: &'static [(&'static str, &'static str)],
    cases: &'static [(&'static str, Case)],
}

const PROFILES: &[Profile] = &[
    Profile {
        name: "dev",
        runtimes: &[],
        dev_args: &[],
        probe: true,
        proxy: false,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            // A fast policy: 5 per 5-second window.
            ("RATE_LIMIT_PER_MINUTE", "60"),
            ("RATE_LIMIT_BURST", "5"),
            (
                "CORS_ORIGINS",
                "https://app.example.test,https://*.preview.example.test",
            ),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
        cases: &[
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
                "kv_counter_reads_see_increments_and_absent_reads_zero",
                kv_counter_reads,
            ),
            (
                "kv_value_and_counter_namespaces_never_mix",
                kv_namespaces_never_mix,
            ),
            (
                "rate_limit_burst_passes_then_429_then_a_token_returns",
                rate_limit_burst_then_429,
            ),
            (
                "cors_allowed_origin_preflight_and_response",
                cors_allowed_origin,
            ),
            ("cors_refused_origin_gets_nothing", cors_refused_origin),
            (
                "debug_routes_answer_in_development",
                debug_routes_in_development,
            ),
            (
                "configured_secret_never_reaches_the_logs",
                configured_secret_never_logged,
            ),
            (
                "provider_key_shapes_are_masked_in_logs",
                key_shapes_masked_in_logs,
            ),
            (
                "unexpected_errors_reach_sentry_and_the_body_stays_generic",
                errors_reach_sentry,
            ),
        ],
    },
    Profile {
        name: "prod",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: false,
        vars: &[
            ("ENVIRONMENT", "production"),
            ("DEBUG", "false"),
            ("VALIDATE_API_KEYS", "true"),
            ("TRUSTED_HOSTS", "127.0.0.1"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("FRONTEND_URL", "https://app.example.test"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            // Spin's manifest defaults these template variables to local http URLs, which
            // production refuses for every function that reads them (health-secrets reads
            // every edge variable): a production deployment sets them. This proxy does not
            // exist, so the deployment is not ready (see the last case).
            ("EVOLUTION_API_URL", "https://evolution.example.test"),
            ("PROXY_URL", "https://proxy.example.test"),
            (
                "PROXY_HMAC_KEY",
                "9f2c4e6a8b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f",
            ),
        ],
        cases: &[
            (
                "production_health_passes_with_security_headers",
                production_health_passes,
            ),
            (
                "debug_routes_are_404_like_unknown_routes",
                debug_routes_404_in_production,
            ),
            ("untrusted_host_gets_400", untrusted_host_gets_400),
            (
                "unknown_paths_get_the_structured_404_with_every_header",
                unknown_path_structured_404,
            ),
            (
                "secrets_health_401_without_the_token_200_with_it",
                health::production_secrets_health_401_without_the_token_200_with_it,
            ),
            // Without a proxy (production takes only an https PROXY_URL) this deployment is
            // not ready; the healthy-deployment case runs in the `health` profile.
            (
                "validate_deployment_script_fails_readiness_without_a_proxy",
                health::validate_deployment_fails_readiness_without_a_proxy,
            ),
        ],
    },
    Profile {
        name: "misconfigured",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: false,
        vars: &[("ENVIRONMENT", "production"), ("DEBUG", "true")],
        cases: &[
            (
                "production_misconfiguration_answers_503_and_logs_the_key",
                misconfigured_answers_503,
            ),
            (
                "validate_deployment_script_fails_a_misconfigured_deployment",
                validate_deployment_fails,
            ),
        ],
    },
    // Staff sessions (issue 9): login, the session check and logout on the running wasm,
    // against a real pg-proxy on a fresh database.
    Profile {
        name: "auth",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("CORS_ORIGINS", "https://app.example.test"),
            ("JWT_SECRET_KEY", auth::JWT_KEY),
            // The general limiter is not what these cases test.
            ("RATE_LIMIT_PER_MINUTE", "60000"),
            ("RATE_LIMIT_BURST", "1000"),
        ],
        cases: &[
            (
                "login_session_logout_then_401_everywhere",
                auth::login_session_logout_then_401_everywhere,
            ),
            (
                "logout_all_kills_every_session",
                auth::logout_all_kills_every_session,
            ),
            (
                "refresh_revokes_the_old_token",
                auth::refresh_revokes_the_old_token,
            ),
            (
                "wrong_password_and_unknown_user_are_byte_identical_401s",
                auth::wrong_password_and_unknown_user_are_byte_identical_401s,
            ),
            (
                "sixth_bad_password_is_429_without_a_proxy_call",
                auth::sixth_bad_password_is_429_without_a_proxy_call,
            ),
            (
                "forged_and_invalid_tokens_are_401",
                auth::forged_and_invalid_tokens_are_401,
            ),
            (
                "bad_login_input_is_415_400_413",
                auth::bad_login_input_is_415_400_413,
            ),
            (
                "cookie_logout_from_a_foreign_origin_is_403",
                auth::cookie_logout_from_a_foreign_origin_is_403,
            ),
            (
                "a_stopped_proxy_makes_login_503_not_401",
                auth::a_stopped_proxy_makes_login_503_not_401,
            ),
            (
                "no_password_token_or_cookie_reaches_any_log",
                auth::no_password_token_or_cookie_reaches_any_log,
            ),
            (
                "the_previous_key_still_verifies_after_a_rotation",
                auth::the_previous_key_still_verifies_after_a_rotation,
            ),
        ],
    },
    // Spin's production store: the same key-value contract on Redis (the machine's, at
    // 127.0.0.1:6379) instead of the local SQLite file.
    Profile {
        name: "redis",
        runtimes: &[Kind::Spin],
        dev_args: &["--spin-runtime-config", "spin/runtime-config.redis.toml"],
        probe: true,
        proxy: false,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("RATE_LIMIT_PER_MINUTE", "60"),
            ("RATE_LIMIT_BURST", "5"),
        ],
        cases: &[
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
                "kv_counter_reads_see_increments_and_absent_reads_zero",
                kv_counter_reads,
            ),
            (
                "kv_value_and_counter_namespaces_never_mix",
                kv_namespaces_never_mix,
            ),
            (
                "rate_limit_burst_passes_then_429_then_a_token_returns",
                rate_limit_burst_then_429,
            ),
        ],
    },
    // The webhook (issue 10): a real proxy on a fresh database, the fakes of Evolution, OpenAI
    // and Anthropic (their URLs are added at start), all three authentication methods.
    Profile {
        name: "webhook",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("EVOLUTION_API_KEY", webhook_cases::API_KEY),
            ("WEBHOOK_TOKEN", webhook_cases::TOKEN),
            ("EVOLUTION_JWT_KEY", webhook_cases::JWT_KEY),
            ("EVOLUTION_INSTANCE", "centro-principal"),
            ("OPENAI_API_KEY", webhook_cases::OPENAI_KEY),
            ("ANTHROPIC_API_KEY", webhook_cases::ANTHROPIC_KEY),
            ("AI_PROVIDERS", "openai,anthropic"),
            ("AI_TIMEOUT_MS", "2000"),
            ("WEBHOOK_SENDER_PER_MINUTE", "15"),
            ("WEBHOOK_SENDER_BURST", "3"),
            ("BUSINESS_NAME", "Centro E2E"),
            ("BUSINESS_HOURS", webhook_cases::HOURS),
        ],
        cases: &[
            (
                "webhook_happy_path_history_prompt_and_one_send",
                webhook_cases::happy_path,
            ),
            (
                "webhook_answers_before_the_ai_work",
                webhook_cases::answered_before_the_work,
            ),
            (
                "webhook_redelivery_5x_and_2_concurrent_one_reply",
                webhook_cases::redelivery_and_concurrency_answer_once,
            ),
            (
                "webhook_provider_failover_and_builtin",
                webhook_cases::provider_failover_and_builtin,
            ),
            (
                "webhook_send_fails_twice_then_one_reply",
                webhook_cases::send_fails_twice_then_one_reply,
            ),
            (
                "webhook_ignored_deliveries",
                webhook_cases::ignored_deliveries,
            ),
            ("webhook_each_auth_mode", webhook_cases::each_auth_mode),
            (
                "webhook_malformed_oversized_and_sender_limit",
                webhook_cases::malformed_oversized_and_sender_limit,
            ),
            (
                "webhook_proxy_outage_20_deliveries_then_exactly_once",
                webhook_cases::proxy_outage_then_exactly_once,
            ),
            (
                "webhook_logs_carry_no_text_number_or_key",
                webhook_cases::logs_carry_no_text_number_or_key,
            ),
        ],
    },
    Profile {
        name: "webhook-budget",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("EVOLUTION_API_KEY", webhook_cases::API_KEY),
            ("EVOLUTION_INSTANCE", "centro-principal"),
            ("OPENAI_API_KEY", webhook_cases::OPENAI_KEY),
            ("LLM_DAILY_BUDGET", "0"),
            ("BUSINESS_NAME", "Centro E2E"),
            ("BUSINESS_HOURS", webhook_cases::HOURS),
        ],
        cases: &[(
            "webhook_budget_spent_uses_builtin",
            webhook_cases::budget_spent_uses_builtin,
        )],
    },
    Profile {
        name: "webhook-nokeys",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("EVOLUTION_API_KEY", webhook_cases::API_KEY),
            ("EVOLUTION_INSTANCE", "centro-principal"),
            ("BUSINESS_NAME", "Centro E2E"),
            ("BUSINESS_HOURS", webhook_cases::HOURS),
        ],
        cases: &[(
            "webhook_no_keys_uses_builtin",
            webhook_cases::no_keys_uses_builtin,
        )],
    },
    // Health functions (issue 11): a staging deployment with a real proxy on a fresh database
    // and stubs of OpenAI, Anthropic and Evolution (their URLs and today's rotation dates are
    // added at start, see health::setup).
    Profile {
        name: "health",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "staging"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("FRONTEND_URL", "https://app.example.test"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("JWT_SECRET_KEY", health::JWT_KEY),
            ("SECRET_KEY", health::SECRET_KEY),
            ("WEBHOOK_TOKEN", health::WEBHOOK_TOKEN),
            ("OPENAI_API_KEY", health::OPENAI_KEY),
            ("ANTHROPIC_API_KEY", health::ANTHROPIC_KEY),
            ("EVOLUTION_API_KEY", health::EVOLUTION_KEY),
            ("EVOLUTION_INSTANCE", health::INSTANCE),
            ("BUSINESS_NAME", "Centro E2E"),
        ],
        cases: &[
            (
                "readiness_200_pass_with_everything_up",
                health::readiness_200_pass_with_everything_up,
            ),
            (
                "readiness_503_in_time_with_the_proxy_stopped",
                health::readiness_503_in_time_with_the_proxy_stopped,
            ),
            (
                "comprehensive_pass_in_the_draft_shape_with_pool_figures",
                health::comprehensive_pass_in_the_draft_shape_with_pool_figures,
            ),
            (
                "comprehensive_is_cached_for_ten_seconds",
                health::comprehensive_is_cached_for_ten_seconds,
            ),
            (
                "comprehensive_probe_without_an_admin_is_ignored",
                health::comprehensive_probe_without_an_admin_is_ignored,
            ),
            (
                "comprehensive_probe_for_an_admin_calls_each_provider",
                health::comprehensive_probe_for_an_admin_calls_each_provider,
            ),
            (
                "secrets_health_401_without_the_token_200_with_it",
                health::secrets_health_401_without_the_token_200_with_it,
            ),
            (
                "secrets_health_reports_rotation_and_is_audited",
                health::secrets_health_reports_rotation_and_is_audited,
            ),
            (
                "no_configured_secret_value_in_any_body_or_log",
                health::no_configured_secret_value_in_any_body_or_log,
            ),
            (
                "validate_deployment_script_passes_a_healthy_deployment",
                validate_deployment_passes,
            ),
            (
                "validate_deployment_script_uses_readiness_comprehensive_and_secrets",
                health::validate_deployment_passes_with_readiness_and_comprehensive,
            ),
        ],
    },
    // Development with a weak secret: comprehensive warns, secrets health is open.
    Profile {
        name: "health-dev",
        runtimes: &[],
        dev_args: &[],
        probe: false,
        proxy: true,
        vars: &[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("JWT_SECRET_KEY", health::WEAK_KEY),
        ],
        cases: &[
            (
                "comprehensive_warns_for_a_weak_secret_in_the_draft_shape",
                health::comprehensive_warns_for_a_weak_secret,
            ),
            (
                "secrets_health_is_open_in_development",
                health::secrets_health_is_open_in_development,
            ),
        ],
    },
    // A proxy that accepts and never answers in time (PROXY_URL is a hanging stub).
    Profile {
        name: "health-hang",
        runtimes: &[Kind::Wrangler],
        dev_args: &[],
        probe: false,
        proxy: false,
        vars: HEALTH_BROKEN_VARS,
        cases: &[
            (
                "readiness_503_in_time_when_the_proxy_hangs",
                health::readiness_503_in_time_when_the_proxy_hangs,
            ),
            (
                "comprehensive_fails_in_time_when_the_proxy_hangs",
                health::comprehensive_fails_in_time_when_the_proxy_hangs,
            ),
        ],
    },
    // The same on Spin, whose store is moreover a Redis that fails every command (a runtime
    // config written at start, see health::setup).
    Profile {
        name: "health-broken",
        runtimes: &[Kind::Spin],
        dev_args: &[],
        probe: false,
        proxy: false,
        vars: HEALTH_BROKEN_VARS,
        cases: &[
            (
                "readiness_503_in_time_when_the_proxy_hangs",
                health::readiness_503_in_time_when_the_proxy_hangs,
            ),
            (
                "readiness_503_naming_kv_when_the_store_fails",
                health::readiness_503_naming_kv_when_the_store_fails,
            ),
            (
                "comprehensive_fails_in_time_when_the_proxy_hangs",
                health::comprehensive_fails_in_time_when_the_proxy_hangs,
            ),
        ],
    },
];

/// Variables of the `health-hang` and `health-broken` profiles (PROXY_URL comes from setup).
const HEALTH_BROKEN_VARS: &[(&str, &str)] = &[
    ("ENVIRONMENT", "development"),
    ("TRUSTED_PROXIES", LOOPBACK_PROXIES),
    ("ADMIN_TOKEN", ADMIN_TOKEN),
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

/// Every call comes from its own client address (`X-Forwarded-For`, believed because the
/// suite configures the loopback peer as a trusted proxy), so cases never share a rate-limit
/// bucket unless they pass the same `x-forwarded-for` themselves.
fn next_client() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("198.18.{}.{}", (n >> 8) & 255, n & 255)
}

fn send(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Result<Resp, Failed> {
    let mut req = http::Request::builder().method(method).uri(url);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
    {
        req = req.header("x-forwarded-for", next_client());
    }
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
    unknown_path_structured_404(rt)
}

/// A path no function owns is answered by our wrapper on both runtimes (Spin's catch-all
/// route, the dev router's), never by the runtime's bare 404.
fn unknown_path_structured_404(rt: &Runtime) -> Result<(), Failed> {
    for (method, path) in [
        ("GET", "/definitely-not-a-route"),
        ("POST", "/api/v2/whatever/deep/path"),
        ("GET", "/"),
    ] {
        let r = call(rt, method, path, &[])?;
        ensure(
            r.status == 404,
            format!("{method} {path}: status {}", r.status),
        )?;
        let body = r.json()?;
        ensure(
            body["error"]["code"] == "not_found" && body["error"]["message"] == "No such route.",
            format!("{method} {path}: body {body}"),
        )?;
        ensure(
            body["error"]["request_id"] == r.header("x-request-id")
                && !r.header("x-request-id").is_empty(),
            format!("{method} {path}: request id in body and header"),
        )?;
        for (name, want) in SECURITY_HEADERS {
            ensure(
                r.header(name) == *want,
                format!("{method} {path}: {name} = {:?}", r.header(name)),
            )?;
        }
    }
    Ok(())
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

/// A counter read (`KeyValue::counter`) decodes what the store's atomics wrote (Spin SQLite:
/// 8 bytes little-endian; Spin Redis: decimal; Durable Object: an integer column) and reads
/// an absent counter as 0 (the memory-store unit tests show it creates nothing).
fn kv_counter_reads(rt: &Runtime) -> Result<(), Failed> {
    let key = unique_key("ctr:");
    let read = |key: &str| -> Result<i64, Failed> {
        let r = probe(rt, "GET", &format!("/__kv/counter?key={key}"), "")?;
        ensure(r.status == 200, format!("read: {} {}", r.status, r.body))?;
        let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
        v["value"].as_i64().ok_or_else(|| Failed::from("no value"))
    };
    ensure(read(&key)? == 0, "an absent counter reads 0")?;
    for delta in [2, 3, 300_000] {
        let r = probe(
            rt,
            "POST",
            &format!("/__kv/incr?key={key}&delta={delta}"),
            "",
        )?;
        ensure(
            r.status == 200,
            format!("increment: {} {}", r.status, r.body),
        )?;
    }
    let n = read(&key)?;
    ensure(n == 300_005, format!("read after increments: {n}"))?;
    let r = probe(
        rt,
        "GET",
        &format!("/__kv/counter?key={}", unique_key("sess:")),
        "",
    )?;
    ensure(
        r.status == 422,
        format!("counter read of a value key: {} {}", r.status, r.body),
    )
}

fn rate_limit_burst_then_429(rt: &Runtime) -> Result<(), Failed> {
    let me = [("x-forwarded-for", "203.0.113.77")];
    // Start at a fresh window so the whole burst fits in it.
    let first = call(rt, "GET", "/health", &me)?;
    let reset: u64 = first.header("ratelimit-reset").parse().unwrap_or(0);
    ensure(
        first.status == 200,
        format!("first request: {}", first.status),
    )?;
    ensure(
        first.header("ratelimit-limit") == "5",
        format!("limit {:?}", first.header("ratelimit-limit")),
    )?;
    std::thread::sleep(Duration::from_secs(reset));
    for i in 0..5 {
        let r = call(rt, "GET", "/health", &me)?;
        ensure(
            r.status == 200,
            format!("request {i} of the burst: {}", r.status),
        )?;
        ensure(
            r.header("ratelimit-remaining") == (4 - i).to_string(),
            format!("remaining after {i}: {:?}", r.header("ratelimit-remaining")),
        )?;
    }
    let limited = call(rt, "GET", "/health", &me)?;
    ensure(
        limited.status == 429,
        format!("6th request: {}", limited.status),
    )?;
    ensure(
        limited.json()?["error"]["code"] == "rate_limited",
        "429 body code",
    )?;
    let retry: u64 = limited.header("retry-after").parse().unwrap_or(0);
    ensure((1..=5).contains(&retry), format!("retry-after {retry}"))?;
    ensure(
        limited.header("ratelimit-remaining") == "0",
        "remaining 0 on 429",
    )?;
    ensure(
        limited
            .header("strict-transport-security")
            .contains("max-age"),
        "security headers on 429",
    )?;
    // Another client is unaffected.
    ensure(
        call(rt, "GET", "/health", &[])?.status == 200,
        "other client limited",
    )?;
    std::thread::sleep(Duration::from_secs(retry));
    let again = call(rt, "GET", "/health", &me)?;
    ensure(
        again.status == 200,
        format!("after Retry-After: {}", again.status),
    )
}

fn preflight(rt: &Runtime, origin: &str) -> Result<Resp, Failed> {
    call(
        rt,
        "OPTIONS",
        "/health",
        &[
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    )
}

fn cors_allowed_origin(rt: &Runtime) -> Result<(), Failed> {
    for origin in [
        "https://app.example.test",
        "https://pr-7.preview.example.test",
    ] {
        let p = preflight(rt, origin)?;
        ensure(p.status == 204, format!("{origin} preflight: {}", p.status))?;
        ensure(
            p.header("access-control-allow-origin") == origin,
            "preflight allow-origin",
        )?;
        ensure(
            p.header("access-control-allow-credentials") == "true",
            "credentials",
        )?;
        ensure(
            p.header("access-control-allow-methods") == "GET, POST, PUT, DELETE, OPTIONS",
            format!("methods {:?}", p.header("access-control-allow-methods")),
        )?;
        ensure(
            p.header("access-control-allow-headers")
                .contains("Authorization"),
            "allow-headers",
        )?;
        let r = call(rt, "GET", "/health", &[("origin", origin)])?;
        ensure(r.status == 200, "actual request")?;
        ensure(
            r.header("access-control-allow-origin") == origin,
            "actual allow-origin",
        )?;
        ensure(r.header("vary").contains("Origin"), "vary: origin")?;
    }
    Ok(())
}

fn cors_refused_origin(rt: &Runtime) -> Result<(), Failed> {
    for origin in [
        "https://evil.example",
        "http://app.example.test",
        "https://preview.example.test",
    ] {
        let p = preflight(rt, origin)?;
        ensure(p.status == 403, format!("{origin} preflight: {}", p.status))?;
        ensure(
            p.headers.get("access-control-allow-origin").is_none(),
            format!("{origin}: allow-origin on refused preflight"),
        )?;
        let r = call(rt, "GET", "/health", &[("origin", origin)])?;
        ensure(
            r.headers.get("access-control-allow-origin").is_none()
                && r.headers.get("access-control-allow-credentials").is_none(),
            format!("{origin}: CORS headers on a refused origin"),
        )?;
    }
    Ok(())
}

fn debug_routes_in_development(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "GET", "/debug/config", &[])?;
    ensure(r.status == 200, format!("/debug/config: {}", r.status))?;
    let body = r.json()?;
    ensure(body["environment"] == "development", format!("{body}"))?;
    ensure(
        !r.body.contains(ADMIN_TOKEN),
        "config summary shows a secret value",
    )?;
    // The summary lists what this function reads and is set: CORS_ORIGINS is; ADMIN_TOKEN is
    // set in the environment too, but health does not read it (only the functions whose
    // catalog entry needs it do), so it is absent on both runtimes alike.
    let set = body["variables_set"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        set.iter().any(|n| n == "CORS_ORIGINS") && set.iter().any(|n| n == "ENVIRONMENT"),
        format!("summary names the set variables health reads: {body}"),
    )?;
    ensure(
        !set.iter().any(|n| n == "ADMIN_TOKEN"),
        format!("health does not read ADMIN_TOKEN: {body}"),
    )?;
    let r = call(
        rt,
        "GET",
        "/debug/echo?x=1",
        &[("authorization", "Bearer abc.def.ghi")],
    )?;
    ensure(r.status == 200, format!("/debug/echo: {}", r.status))?;
    ensure(!r.body.contains("abc.def.ghi"), "echo shows a header value")?;
    ensure(r.json()?["path"] == "/debug/echo", "echo path")
}

/// The functions' own JSON log lines, once the line carrying `marker` has arrived. Only JSON
/// lines count: `wrangler dev` also prints its own local request log (`[wrangler:info] GET
/// <path>`), a development-tool line that does not exist on Cloudflare.
fn all_logs_after(rt: &Runtime, marker: &str) -> Result<String, Failed> {
    // Log lines reach the files asynchronously; wait (bounded) for the marker's line.
    for _ in 0..40 {
        let all = rt
            .log_lines()
            .into_iter()
            .filter(|l| l.trim_start().starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        if all.contains(marker) {
            return Ok(all);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("no log line with {marker}").into())
}

fn configured_secret_never_logged(rt: &Runtime) -> Result<(), Failed> {
    // A secret pasted into a URL path: the path is logged, the secret must not be.
    let marker = format!("e2e-secret-{}", std::process::id());
    let path = format!("/__kv/{ADMIN_TOKEN}");
    send(
        &format!("{}{path}", rt.probe),
        "GET",
        &[("x-request-id", &marker)],
        "",
    )?;
    let all = all_logs_after(rt, &marker)?;
    ensure(
        !all.contains(ADMIN_TOKEN),
        "the configured ADMIN_TOKEN value is in the logs",
    )?;
    ensure(
        all.contains("/__kv/[redacted]"),
        "the path was not logged redacted",
    )
}

fn key_shapes_masked_in_logs(rt: &Runtime) -> Result<(), Failed> {
    let marker = format!("e2e-keys-{}", std::process::id());
    let key = "sk-proj-E2Ezz0123456789abcdefghijklmnop";
    send(
        &format!("{}/__kv/{key}", rt.probe),
        "GET",
        &[("x-request-id", &marker)],
        "",
    )?;
    let all = all_logs_after(rt, &marker)?;
    ensure(
        !all.contains("E2Ezz0123456789"),
        "an OpenAI-shaped key reached the logs",
    )
}

fn errors_reach_sentry(rt: &Runtime) -> Result<(), Failed> {
    let marker = format!("e2e-sentry-{}", std::process::id());
    let r = send(
        &format!("{}/__kv/fail", rt.probe),
        "GET",
        &[("x-request-id", &marker)],
        "",
    )?;
    ensure(r.status == 500, format!("status {}", r.status))?;
    ensure(
        !r.body.contains("deliberate"),
        "the 500 body reveals the internal cause",
    )?;
    let fake = sentry()?;
    let mut event = None;
    for _ in 0..40 {
        event = fake
            .received()
            .into_iter()
            .find(|e| e.body.contains(&marker));
        if event.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let event = event.ok_or("no Sentry event with the request id arrived")?;
    ensure(event.method == "POST", format!("method {}", event.method))?;
    ensure(
        event.path == "/api/7/envelope/",
        format!("path {}", event.path),
    )?;
    let auth = event
        .headers
        .iter()
        .find(|(k, _)| k == "x-sentry-auth")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    ensure(
        auth.contains("sentry_version=7") && auth.contains("sentry_key=e2esentrykey"),
        format!("x-sentry-auth {auth:?}"),
    )?;
    let length = event
        .headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    ensure(
        length == Some(event.body.len()),
        format!(
            "the envelope is sent with a Content-Length equal to its size (got {length:?}, body {} bytes)",
            event.body.len()
        ),
    )?;
    let lines: Vec<&str> = event.body.lines().collect();
    ensure(lines.len() == 3, format!("envelope lines: {}", lines.len()))?;
    let payload: serde_json::Value = serde_json::from_str(lines[2]).map_err(|e| e.to_string())?;
    ensure(
        payload["message"]["formatted"]
            .as_str()
            .is_some_and(|m| m.contains("deliberate failure")),
        format!("event message: {payload}"),
    )?;
    ensure(
        payload["tags"]["request_id"] == marker.as_str(),
        "request id tag",
    )
}

fn production_health_passes(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "GET", "/health", &[])?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    for (name, want) in SECURITY_HEADERS {
        ensure(
            r.header(name) == *want,
            format!("{name}: {:?}", r.header(name)),
        )?;
    }
    Ok(())
}

fn debug_routes_404_in_production(rt: &Runtime) -> Result<(), Failed> {
    let debug = call(rt, "GET", "/debug/config", &[])?;
    ensure(
        debug.status == 404,
        format!("/debug/config: {}", debug.status),
    )?;
    let echo = call(rt, "GET", "/debug/echo", &[])?;
    ensure(echo.status == 404, format!("/debug/echo: {}", echo.status))?;
    let body = debug.json()?;
    ensure(
        body["error"]["code"] == "not_found" && body["error"]["message"] == "No such route.",
        format!("not the unknown-route body: {body}"),
    )?;
    ensure(
        debug.header("content-type") == "application/json",
        "same content type as an unknown route",
    )?;
    for (name, want) in SECURITY_HEADERS {
        ensure(
            debug.header(name) == *want,
            format!("404 {name}: {:?}", debug.header(name)),
        )?;
    }
    Ok(())
}

fn untrusted_host_gets_400(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "GET", "/health", &[("host", "evil.example")])?;
    ensure(r.status == 400, format!("status {} {}", r.status, r.body))?;
    ensure(r.json()?["error"]["code"] == "invalid_host", "error code")
}

/// Runs `scripts/validate-deployment` against the instance; returns (exit ok, output).
fn validate_deployment(rt: &Runtime) -> Result<(bool, String), Failed> {
    let out = std::process::Command::new(e2e::repo_root().join("scripts/validate-deployment"))
        .args([rt.base.as_str(), "--production"])
        .output()
        .map_err(|e| format!("run scripts/validate-deployment: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok((out.status.success(), text))
}

fn validate_deployment_passes(rt: &Runtime) -> Result<(), Failed> {
    let (ok, text) = validate_deployment(rt)?;
    ensure(
        ok && !text.contains("FAIL"),
        format!("validate-deployment failed:\n{text}"),
    )?;
    ensure(
        text.contains(" 0 failed"),
        format!("no summary line:\n{text}"),
    )
}

fn validate_deployment_fails(rt: &Runtime) -> Result<(), Failed> {
    let (ok, text) = validate_deployment(rt)?;
    ensure(
        !ok,
        format!("validate-deployment passed a broken deployment:\n{text}"),
    )?;
    ensure(
        text.contains("FAIL  GET /health answers 200"),
        format!("the failing check is not named:\n{text}"),
    )
}

fn misconfigured_answers_503(rt: &Runtime) -> Result<(), Failed> {
    let r = call(rt, "GET", "/health", &[])?;
    ensure(r.status == 503, format!("status {}", r.status))?;
    let body = r.json()?;
    ensure(body["error"]["code"] == "misconfigured", format!("{body}"))?;
    ensure(
        !r.body.contains("DEBUG"),
        "the body names configuration keys",
    )?;
    ensure(r.header("retry-after") == "30", "retry-after on 503")?;
    ensure(
        r.header("x-content-type-options") == "nosniff",
        "security headers on 503",
    )?;
    let mut named = false;
    for _ in 0..40 {
        named = rt
            .log_lines()
            .iter()
            .any(|l| l.contains("config_invalid") && l.contains("DEBUG"));
        if named {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure(named, "no config_invalid log line naming DEBUG")
}

fn main() {
    let args = Arguments::from_args();
    let wanted = std::env::var("E2E_RUNTIMES").unwrap_or_else(|_| "wrangler,spin".into());
    let mut trials = Vec::new();
    let mut started: Vec<Arc<Instance>> = Vec::new();
    for name in wanted.split(',').filter(|n| !n.trim().is_empty()) {
        let Some(kind) = Kind::parse(name) else {
            eprintln!("E2E_RUNTIMES: unknown runtime {name:?} (use wrangler, spin)");
            std::process::exit(2);
        };
        let unavailable = kind.unavailable_reason();
        let proxy_unavailable = ProxyServer::unavailable_reason();
        if let Some(reason) = &unavailable {
            eprintln!("e2e: {} skipped: {reason}", kind.name());
        }
        for profile in PROFILES {
            if !profile.runtimes.is_empty() && !profile.runtimes.contains(&kind) {
                continue;
            }
            let unavailable = unavailable
                .clone()
                .or_else(|| proxy_unavailable.clone().filter(|_| profile.proxy));
            if let Some(reason) = &unavailable {
                for (case, _) in profile.cases {
                    let name = format!(
                        "{}::{}::{case} (skipped: {reason})",
                        kind.name(),
                        profile.name
                    );
                    trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
                }
                continue;
            }
            let instance = Arc::new(Instance::new(profile.cases.len()));
            started.push(instance.clone());
            for (case, run) in profile.cases {
                let instance = instance.clone();
                let run = *run;
                let vars = profile.vars;
                let probe = profile.probe;
                let dev_args = profile.dev_args;
                let with_proxy = profile.proxy;
                let profile_name = profile.name;
                let webhook_fakes = profile.name.starts_with("webhook");
                let name = format!("{}::{}::{case}", kind.name(), profile.name);
                trials.push(Trial::test(name, move || {
                    // Cases of one profile run one at a time on one shared instance.
                    let mut guard = instance
                        .runtime
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let rt = guard.get_or_insert_with(|| {
                        let mut vars: Vec<(String, String)> = vars
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                        if probe {
                            let port = sentry().map_err(|e| format!("{e:?}"))?.port;
                            vars.push((
                                "SENTRY_DSN".into(),
                                format!("http://e2esentrykey@127.0.0.1:{port}/7"),
                            ));
                        }
                        if webhook_fakes {
                            vars.extend(webhook_cases::fake_vars()?);
                        }
                        let extra = health::setup(profile_name)?;
                        vars.extend(extra.vars);
                        let dev_args: Vec<&str> = dev_args
                            .iter()
                            .copied()
                            .chain(extra.dev_args.iter().map(String::as_str))
                            .collect();
                        let proxy = if with_proxy {
                            let p = ProxyServer::start()?;
                            vars.push(("PROXY_URL".into(), p.url.clone()));
                            vars.push(("PROXY_HMAC_KEY".into(), ProxyServer::HMAC_KEY.into()));
                            Some(p)
                        } else {
                            None
                        };
                        let vars: Vec<(&str, &str)> =
                            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        let mut rt =
                            Runtime::start(kind, &vars, probe, &dev_args, e2e::START_TIMEOUT)?;
                        rt.proxy = proxy.map(Mutex::new);
                        Ok(rt)
                    });
                    let outcome = match rt {
                        Ok(rt) => run(rt),
                        Err(why) => Err(format!("runtime failed to start: {why}").into()),
                    };
                    if outcome.is_err() {
                        instance.failed.store(true, Ordering::SeqCst);
                    }
                    if instance.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                        instance.stop(guard.take());
                    }
                    outcome
                }));
            }
        }
    }
    // One profile's instance at a time keeps the 2-core machine responsive.
    let args = Arguments {
        test_threads: args.test_threads.or(Some(1)),
        ..args
    };
    let conclusion = libtest_mimic::run(&args, trials);
    // Tear down what still runs (cases filtered out, or one that panicked), whatever the
    // outcome.
    for instance in started {
        let runtime = instance
            .runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // A case that panicked left its instance up and unmarked.
        if conclusion.has_failed() && instance.remaining.load(Ordering::SeqCst) > 0 {
            instance.failed.store(true, Ordering::SeqCst);
        }
        instance.stop(runtime);
    }
    conclusion.exit();
}
