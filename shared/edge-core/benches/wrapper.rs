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

/// Request `i`, from one of 256 clients in turn: the in-memory store stays the same size
/// however many iterations criterion runs (with a new client each time it grew to 65,536
/// counters and the figure depended on the iteration count).
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
        format!("198.18.0.{}", i & 255)
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
                request(i)
            },
            |req| {
                // Time moves per request, not per batch: criterion builds a whole batch of
                // inputs before it runs them, and a batch at one instant sent some clients past
                // their burst, so the figure mixed 429s into health's answers.
                platform.clock.advance(60);
                let resp = block_on(serve::<Health, _>(
                    &platform,
                    &state,
                    req,
                    Some([127, 0, 0, 1].into()),
                ));
                assert_eq!(resp.status(), 200, "the bench measures health's answer");
                resp
            },
            BatchSize::SmallInput,
        )
    });
    // A Spin instance's first request (and, before the WASIp3 move, every Spin request): the
    // configuration is loaded and validated, then the request served.
    let spin_like = MemoryPlatform::default();
    set_vars(&spin_like);
    group.bench_function("load_and_serve", |b| {
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                spin_like.log.clear();
                request(i)
            },
            |req| {
                spin_like.clock.advance(60);
                let state = edge_core::config::load(&spin_like, "health", &[]);
                let resp = block_on(serve::<Health, _>(
                    &spin_like,
                    &state,
                    req,
                    Some([127, 0, 0, 1].into()),
                ));
                assert_eq!(resp.status(), 200, "the bench measures health's answer");
                resp
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The redaction pass every log line takes, on an access line with no secret in it (almost
/// every line), against copying the line (what writing it costs at least). Three configured
/// secrets, as a function with a session key, a proxy key and a Sentry DSN has.
fn redaction(c: &mut Criterion) {
    const SECRETS: [&str; 3] = [
        "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42",
    ];
    let mut group = c.benchmark_group("redaction");
    let line = r#"{"ts":1767225600000,"level":"info","fn":"login","request_id":"0f3c9a4e-5b7d-4c1e-9f2a-3b8d6e1c7a90","method":"GET","path":"/api/v1/auth/session","status":200,"duration_ms":3}"#;
    let redactor = edge_core::redact::Redactor::new(SECRETS);
    group.bench_function("copy", |b| b.iter(|| std::hint::black_box(line).to_owned()));
    group.bench_function("access_line", |b| {
        b.iter(|| redactor.redact(std::hint::black_box(line)))
    });
    // What Spin pays: every request makes a new redactor, whose first line builds the filter.
    group.bench_function("new_redactor_first_line", |b| {
        b.iter(|| {
            edge_core::redact::Redactor::new(std::hint::black_box(SECRETS))
                .redact(std::hint::black_box(line))
        })
    });
    group.finish();
}

criterion_group!(benches, bench, redaction);
criterion_main!(benches);
