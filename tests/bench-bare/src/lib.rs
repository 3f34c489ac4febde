//! Benchmark baselines: answer every request with the same liveness body as `functions/health`,
//! built by the same core function and written the same way, but without the `serve` wrapper
//! (no request id, config, rate limit, CORS, headers or log line). `/bare-kv` first does the one
//! atomic key-value increment that health's rate limit does (same store, a counter per client
//! address from `X-Forwarded-For`), so `scripts/bench-edge` can compare health with rate
//! limiting against an empty component doing the same single increment. `/bare-vars` (Spin)
//! and `/bare-log` add one part of the wrapper's work alone: health's variable reads, and its
//! access line. `/bare-output` produces health's whole output without the wrapper's decisions:
//! the same headers and access line, so health / it is what the wrapper's own logic costs.
#![cfg(target_arch = "wasm32")]

/// The counter key of one client, in the counter namespace the functions use.
#[cfg(any(feature = "spin", feature = "cloudflare"))]
fn counter_key(client: &str) -> String {
    let client: String = client
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':'))
        .take(64)
        .collect();
    format!("{}rl:bench:{client}", edge_core::kv::COUNTER_PREFIX)
}

/// Writes an access line like the wrapper's (same builder, same redaction pass) through `write`,
/// the runtime's log call: `/bare-log` measures what one line per request costs on a runtime.
#[cfg(any(feature = "spin", feature = "cloudflare"))]
fn access_line(write: fn(&str)) {
    struct Sink(fn(&str));
    impl edge_core::ports::LogSink for Sink {
        fn write(&self, line: &str) {
            (self.0)(line)
        }
    }
    edge_core::log::access(
        &Sink(write),
        &edge_core::log::Access {
            ts_ms: 1_764_000_000_000,
            function: "health",
            request_id: "0f6c2d54-3b9e-4c71-9a0e-5e1b7c3d2a19",
            method: "GET",
            path: "/health",
            status: 200,
            duration_ms: 0,
        },
    );
}

/// Makes `resp` carry what `serve` adds to health's answer with rate limiting off and no
/// `Origin` (the security headers, `Cache-Control`, a new request id, `Server-Timing`) and writes
/// the access line, with the same host calls (two clock reads, random bytes for the id, one log
/// write) but none of the wrapper's decisions (configuration, hosts, CORS, rate limit, errors).
#[cfg(any(feature = "spin", feature = "cloudflare"))]
fn health_output<P: edge_core::Platform>(
    platform: &P,
    resp: &mut edge_core::Response,
    write: fn(&str),
) {
    let started = platform.clock().now_unix_ms();
    let id = edge_core::request_id::generate(platform.random()).unwrap_or_default();
    let finished = platform.clock().now_unix_ms();
    let headers = resp.headers_mut();
    edge_core::serve::apply_security_headers(headers);
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value);
    }
    if let Ok(value) =
        http::HeaderValue::from_str(&format!("total;dur={}", finished.saturating_sub(started)))
    {
        headers.insert("server-timing", value);
    }
    access_line(write);
}

/// Spin entry point (WASIp3, like the functions: Spin reuses the instance across requests).
#[cfg(all(feature = "spin", target_os = "wasi"))]
#[allow(unsafe_code)] // the export macro generates the component ABI glue
mod spin_entry {
    use spin_sdk::experimental::wasi::keyvalue::{atomics, store};

    #[spin_sdk::http_service]
    async fn handle(
        req: spin_sdk::http::Request,
    ) -> spin_sdk::http::Response<edge_spin::ResponseBody> {
        let path = req.uri().path();
        if path.starts_with("/bare-vars") {
            // What health's configuration load costs in host calls alone: the same reads (on
            // every request, as a WASIp2 component made them).
            for name in [
                "environment",
                "debug",
                "validate_api_keys",
                "frontend_url",
                "cors_origins",
                "trusted_hosts",
                "trusted_proxies",
                "rate_limit_per_minute",
                "rate_limit_burst",
                "enable_rate_limiting",
                "sentry_dsn",
            ] {
                std::hint::black_box(spin_sdk::variables::get(name).await.ok());
            }
        }
        if path.starts_with("/bare-kv") {
            let client = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let done = store::open("default")
                .ok()
                .and_then(|b| atomics::increment(&b, &super::counter_key(client), 1).ok());
            if done.is_none() {
                let mut resp = edge_core::Response::new(edge_core::Bytes::new());
                *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return edge_spin::respond(resp, false);
            }
        }
        if path.starts_with("/bare-log") {
            super::access_line(|line| println!("{line}"));
        }
        let mut resp = edge_core::health::liveness("health", env!("CARGO_PKG_VERSION"));
        if path.starts_with("/bare-output") {
            super::health_output(&edge_spin::SpinPlatform::new(), &mut resp, |line| {
                println!("{line}")
            });
        }
        edge_spin::respond(resp, false)
    }
}

/// Workers entry point.
#[cfg(all(feature = "cloudflare", target_os = "unknown"))]
#[allow(unsafe_code)] // the export macro generates the wasm-bindgen glue
mod worker_entry {
    use edge_core::ports::KeyValue;

    #[worker::event(fetch)]
    async fn fetch(
        req: worker::Request,
        env: worker::Env,
        _ctx: worker::Context,
    ) -> worker::Result<worker::Response> {
        if req.path().starts_with("/bare-kv") {
            let client = req.headers().get("x-forwarded-for")?.unwrap_or_default();
            let kv = edge_worker::store::DoKv::new(env.clone());
            let expires = worker::Date::now().as_millis() + 60_000;
            if kv
                .increment(&super::counter_key(&client), 1, Some(expires))
                .await
                .is_err()
            {
                return worker::Response::error("store unavailable", 500);
            }
        }
        if req.path().starts_with("/bare-log") {
            super::access_line(|line| worker::console_log!("{line}"));
        }
        let mut resp = edge_core::health::liveness("health", env!("CARGO_PKG_VERSION"));
        if req.path().starts_with("/bare-output") {
            super::health_output(&edge_worker::WorkerPlatform::new(env), &mut resp, |line| {
                worker::console_log!("{line}")
            });
        }
        let (parts, body) = resp.into_parts();
        Ok(worker::Response::from_bytes(body.to_vec())?
            .with_status(parts.status.as_u16())
            .with_headers(worker::Headers::from(&parts.headers)))
    }
}
