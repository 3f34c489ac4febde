//! Cost of the `serve` wrapper (request id, config, trusted hosts, CORS, rate limit on the
//! in-memory store, security headers, redacted access log) against calling the same handler
//! bare. Run with `scripts/bench-edge`, which records the figures in bench/edge.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use edge_core::config::EdgeConfig;
use edge_core::memory::{block_on, MemoryPlatform};
use edge_core::{health, respond, serve, Bytes, Ctx, Error, Function, Platform, Request, Response};

struct Health;
impl Function for Health {
    const NAME: &'static str = "health";
    async fn handle<P: Platform>(req: Request, _: &Ctx<'_, P>) -> Result<Response, Error> {
        respond::require_get(&req)?;
        Ok(health::liveness("health", "0.1.0"))
    }
}

fn request(i: u64) -> Request {
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = "https://api.example.com/health".parse().unwrap_or_default();
    let headers = req.headers_mut();
    headers.insert(
        "origin",
        "https://app.example.com"
            .parse()
            .unwrap_or(http::HeaderValue::from_static("x")),
    );
    headers.insert(
        "x-forwarded-for",
        format!("198.18.{}.{}", (i >> 8) & 255, i & 255)
            .parse()
            .unwrap_or(http::HeaderValue::from_static("x")),
    );
    req
}

/// A production configuration of the health function, loaded the way the adapters load it.
fn config() -> EdgeConfig {
    let p = MemoryPlatform::default();
    set_vars(&p);
    match edge_core::config::load(&p, "health", &[]) {
        Ok(cfg) => cfg,
        Err(e) => panic!("bench config invalid: {e:?}"),
    }
}

/// The variables of the production configuration.
fn set_vars(p: &MemoryPlatform) {
    for (k, v) in [
        ("environment", "production"),
        ("trusted_hosts", "api.example.com"),
        ("trusted_proxies", "127.0.0.1"),
        (
            "cors_origins",
            "https://app.example.com,https://*.preview.example.app",
        ),
        (
            "sentry_dsn",
            "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42",
        ),
    ] {
        p.vars.set(k, v);
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("health");
    let platform = MemoryPlatform::default();
    let cfg = config();
    group.bench_function("bare_handler", |b| {
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                request(i)
            },
            |req| {
                let ctx = Ctx::new(&platform, "bench".into(), "health", &cfg);
                block_on(Health::handle(req, &ctx))
            },
            BatchSize::SmallInput,
        )
    });
    let state = Ok(config());
    group.bench_function("wrapped", |b| {
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                platform.log.clear();
                platform.clock.advance(60);
                request(i)
            },
            |req| {
                block_on(serve::<Health, _>(
                    &platform,
                    &state,
                    req,
                    Some([127, 0, 0, 1].into()),
                ))
            },
            BatchSize::SmallInput,
        )
    });
    // What one request costs on Spin, where every request is a new instance: the
    // configuration is loaded and validated, then the request served.
    let spin_like = MemoryPlatform::default();
    set_vars(&spin_like);
    group.bench_function("load_and_serve", |b| {
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                spin_like.log.clear();
                spin_like.clock.advance(60);
                request(i)
            },
            |req| {
                let state = edge_core::config::load(&spin_like, "health", &[]);
                block_on(serve::<Health, _>(
                    &spin_like,
                    &state,
                    req,
                    Some([127, 0, 0, 1].into()),
                ))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
