//! Loopback benchmark driver for scripts/bench-proxy (not part of CI).
//!
//! For one write op (message insert) and one read op (the 20 most recent messages of a
//! contact) it measures throughput and p50/p99 latency over three paths: through pg-proxy
//! (V2-signed HTTP/1.1 on kept-alive connections, one per client), the same SQL straight over
//! tokio-postgres, and the same SQL through PgBouncer. The three paths run back to back in
//! each round, so each round's ratios compare figures taken under the same machine load;
//! several rounds are run and the report gives every round's ratios and their median. A
//! second part measures latency at one client (p50 added by the proxy over direct
//! tokio-postgres). Every run is bounded by a request count and a wall-clock cap. Prints a
//! Markdown report on stdout.
//!
//! Environment: BENCH_PROXY_URL, BENCH_HMAC_KEY, BENCH_AUDIENCE (default 127.0.0.1),
//! BENCH_DIRECT_URL, BENCH_BOUNCER_URL, BENCH_REQUESTS (per op and path, default 10000),
//! BENCH_CONCURRENCY (default 16), BENCH_ROUNDS (default 3), BENCH_LATENCY_REQUESTS (default
//! 2000), BENCH_MAX_SECS (cap per run, default 30). BENCH_ONLY=<path>-<op> (path proxy,
//! direct or bouncer; op read or write) runs only that load for BENCH_MAX_SECS (for
//! profiling) and prints one line. BENCH_PLAN_CACHE_MODE (default force_generic_plan, as the
//! proxy's DB_PLAN_CACHE_MODE; `server` sets nothing): the direct and PgBouncer connections run
//! with the same Postgres `plan_cache_mode` as the proxy's pool, so the comparison is of the
//! paths, not of planner settings.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proxy_auth::SigningKey;
use serde_json::json;
use tokio::sync::Mutex;

const CONTACT: &str = "5511900000000@s.whatsapp.net";

// The operation SQL pg-proxy runs for these two operations (src/store.rs) without the nonce
// that the proxy's write statement also records: the baselines have no replay protection.
const INSERT_SQL: &str = "WITH ins AS (
     INSERT INTO messages
         (provider_message_id, instance, contact, direction, body, push_name, sent_at)
     VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::bigint))
     ON CONFLICT (provider_message_id) DO NOTHING
     RETURNING id, state)
 SELECT id, state, true FROM ins
 UNION ALL
 SELECT id, state, false FROM messages
  WHERE provider_message_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)";
// The proxy's history statement leaves the oldest-first order of a page to the proxy
// (store::histories); the baseline likewise takes the index's newest-first order and the
// client reverses it, so neither path asks Postgres to sort.
const HISTORY_SQL: &str = "SELECT provider_message_id, direction, body,
        extract(epoch FROM sent_at)::bigint AS sent_at, state
   FROM messages WHERE contact = $1
  ORDER BY messages.sent_at DESC, id DESC LIMIT $2";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Write,
    Read,
}

#[derive(Clone)]
struct Stats {
    n: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

fn summarise(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| {
        if lat.is_empty() {
            Duration::ZERO
        } else {
            lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1]
        }
    };
    Stats {
        n: lat.len(),
        errors,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// Runs `total` operations over `workers.len()` workers, worker `w` calling `f(&workers[w],
/// i)`; stops early at `cap`.
async fn drive<W, F, Fut>(workers: Vec<W>, total: usize, cap: Duration, f: F) -> Stats
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let started = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| {
            let (next, f, w) = (next.clone(), f.clone(), Arc::new(w));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || started.elapsed() > cap {
                        break;
                    }
                    let t = Instant::now();
                    if f(w.clone(), i).await {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    summarise(all, errors, started.elapsed())
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    c
}

async fn run_sql(url: &str, op: Op, tag: &str, total: usize, conc: usize, cap: Duration) -> Stats {
    // Each client prepares the statement once, as pg-proxy's statement cache does.
    let mut workers = Vec::new();
    let mode =
        std::env::var("BENCH_PLAN_CACHE_MODE").unwrap_or_else(|_| "force_generic_plan".into());
    for _ in 0..conc {
        let c = pg_client(url).await;
        match mode.as_str() {
            "server" => {}
            "force_generic_plan" | "force_custom_plan" => c
                .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .await
                .unwrap(),
            other => panic!(
                "BENCH_PLAN_CACHE_MODE={other}: force_generic_plan, force_custom_plan or server"
            ),
        }
        let stmt = c
            .prepare(if op == Op::Write {
                INSERT_SQL
            } else {
                HISTORY_SQL
            })
            .await
            .unwrap();
        workers.push((c, stmt));
    }
    let tag = Arc::new(format!("{tag}-{}", now()));
    drive(workers, total, cap, move |w, i| {
        let tag = tag.clone();
        async move {
            let (c, stmt) = &*w;
            match op {
                Op::Write => {
                    let id = format!("{tag}-{i}");
                    c.query(
                        stmt,
                        &[
                            &id,
                            &"bench",
                            &CONTACT,
                            &"inbound",
                            &"bench message body",
                            &Some("Bench"),
                            &now(),
                        ],
                    )
                    .await
                    .is_ok()
                }
                Op::Read => match c.query(stmt, &[&CONTACT, &20i64]).await {
                    Ok(mut rows) => {
                        rows.reverse();
                        std::hint::black_box(rows);
                        true
                    }
                    Err(_) => false,
                },
            }
        }
    })
    .await
}

/// One kept-alive HTTP/1.1 connection per client, as an edge client with keep-alive holds.
async fn http_conn(addr: SocketAddr) -> Mutex<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    Mutex::new(sender)
}

fn nonce() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    proxy_auth::nonce_hex(&b).unwrap()
}

struct ProxyTarget {
    addr: SocketAddr,
    key: SigningKey,
    audience: String,
}

async fn run_proxy(
    target: &Arc<ProxyTarget>,
    op: Op,
    tag: &str,
    total: usize,
    conc: usize,
    cap: Duration,
) -> Stats {
    let mut workers = Vec::new();
    for _ in 0..conc {
        workers.push(http_conn(target.addr).await);
    }
    let (target, tag) = (target.clone(), Arc::new(format!("{tag}-{}", now())));
    drive(workers, total, cap, move |conn, i| {
        let (target, tag) = (target.clone(), tag.clone());
        async move {
            let (method, path, body) = match op {
                Op::Write => (
                    "POST",
                    "/v1/messages".to_owned(),
                    serde_json::to_vec(&json!({
                        "provider_message_id": format!("{tag}-{i}"), "instance": "bench",
                        "contact": CONTACT, "direction": "inbound", "body": "bench message body",
                        "push_name": "Bench", "sent_at": now(),
                    }))
                    .unwrap(),
                ),
                Op::Read => (
                    "GET",
                    format!("/v1/conversations/history?contact={CONTACT}&limit=20"),
                    Vec::new(),
                ),
            };
            let (nonce, rid) = (nonce(), format!("{tag}-{i}"));
            let signed = proxy_auth::sign_v2(
                &target.key,
                &proxy_auth::Call {
                    method,
                    path_and_query: &path,
                    audience: &target.audience,
                    timestamp: now(),
                    nonce: &nonce,
                    request_id: &rid,
                    body: &body,
                },
            )
            .unwrap();
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(&path)
                .header("host", target.audience.as_str());
            for (n, v) in signed.pairs() {
                req = req.header(n, v);
            }
            if !body.is_empty() {
                req = req.header("content-type", "application/json");
            }
            let req = req.body(Full::new(Bytes::from(body))).unwrap();
            let mut sender = conn.lock().await;
            match sender.send_request(req).await {
                Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

async fn run_floor(target: &Arc<ProxyTarget>, total: usize, conc: usize, cap: Duration) -> Stats {
    let mut workers = Vec::new();
    for _ in 0..conc {
        workers.push(http_conn(target.addr).await);
    }
    drive(workers, total, cap, move |conn, _| async move {
        let req = hyper::Request::get("/api/v1/health")
            .header("host", "bench")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut sender = conn.lock().await;
        match sender.send_request(req).await {
            Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
            Err(_) => false,
        }
    })
    .await
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

#[tokio::main]
async fn main() {
    let proxy = env("BENCH_PROXY_URL");
    let target = Arc::new(ProxyTarget {
        addr: proxy
            .trim_start_matches("http://")
            .parse()
            .expect("BENCH_PROXY_URL is http://<ip>:<port>"),
        key: SigningKey::from_hex(&env("BENCH_HMAC_KEY")).expect("BENCH_HMAC_KEY"),
        audience: std::env::var("BENCH_AUDIENCE").unwrap_or_else(|_| "127.0.0.1".into()),
    });
    let direct = env("BENCH_DIRECT_URL");
    let total = env_num("BENCH_REQUESTS", 10_000);
    let conc = env_num("BENCH_CONCURRENCY", 16);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let lat_total = env_num("BENCH_LATENCY_REQUESTS", 2_000);
    let cap = Duration::from_secs(env_num("BENCH_MAX_SECS", 30) as u64);

    // Seed the read op's contact with history so every read returns 20 rows.
    let seed = pg_client(&direct).await;
    for i in 0..200 {
        seed.query(
            INSERT_SQL,
            &[
                &format!("seed-{i}"),
                &"bench",
                &CONTACT,
                &"inbound",
                &"seeded history line",
                &None::<String>,
                &(now() - 10_000 + i),
            ],
        )
        .await
        .unwrap();
    }

    if let Ok(only) = std::env::var("BENCH_ONLY") {
        let op = if only.ends_with("-write") {
            Op::Write
        } else {
            Op::Read
        };
        let s = match only.split('-').next() {
            Some("direct") => run_sql(&direct, op, "only", usize::MAX, conc, cap).await,
            Some("bouncer") => {
                run_sql(&env("BENCH_BOUNCER_URL"), op, "only", usize::MAX, conc, cap).await
            }
            _ => run_proxy(&target, op, "only", usize::MAX, conc, cap).await,
        };
        println!(
            "{only}: {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
            s.rps(),
            ms(s.p50),
            ms(s.p99),
            s.errors
        );
        return;
    }
    let bouncer = env("BENCH_BOUNCER_URL");

    // Warm-up (not measured): opens connections and fills statement caches on every path.
    let warm = Duration::from_secs(10);
    run_proxy(&target, Op::Read, "warm", 500, conc, warm).await;
    run_proxy(&target, Op::Write, "warm", 500, conc, warm).await;
    run_sql(&direct, Op::Read, "warm", 500, conc, warm).await;
    run_sql(&bouncer, Op::Read, "warm", 500, conc, warm).await;

    let ops = [
        (Op::Write, "write: insert message"),
        (Op::Read, "read: history, 20 rows"),
    ];
    // Throughput at `conc` clients, `rounds` times; each round runs every path back to back.
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for (op, name) in ops {
            let tag = format!("r{round}");
            let d = run_sql(&direct, op, &format!("direct-{tag}"), total, conc, cap).await;
            let b = run_sql(&bouncer, op, &format!("bouncer-{tag}"), total, conc, cap).await;
            let p = run_proxy(&target, op, &format!("proxy-{tag}"), total, conc, cap).await;
            rows.push((round, name, d, b, p));
        }
    }
    let floor = run_floor(&target, total, conc, cap).await;

    // Latency at one client: what the proxy adds to a single caller's round trip.
    let mut lat_rows = Vec::new();
    for (op, name) in ops {
        let d = run_sql(&direct, op, "lat-direct", lat_total, 1, cap).await;
        let b = run_sql(&bouncer, op, "lat-bouncer", lat_total, 1, cap).await;
        let p = run_proxy(&target, op, "lat-proxy", lat_total, 1, cap).await;
        lat_rows.push((name, d, b, p));
    }

    println!("### Throughput, {conc} concurrent clients ({rounds} rounds)");
    println!();
    println!("| round | op | path | requests | errors | req/s | p50 (ms) | p99 (ms) |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for (round, name, d, b, p) in &rows {
        for (path, s) in [
            ("direct tokio-postgres", d),
            ("PgBouncer (session pool)", b),
            ("pg-proxy (V2-signed HTTP)", p),
        ] {
            println!(
                "| {round} | {name} | {path} | {} | {} | {:.0} | {} | {} |",
                s.n,
                s.errors,
                s.rps(),
                ms(s.p50),
                ms(s.p99)
            );
        }
    }
    println!(
        "| – | HTTP floor: GET /api/v1/health (no DB, no signature) | pg-proxy | {} | {} | {:.0} | {} | {} |",
        floor.n,
        floor.errors,
        floor.rps(),
        ms(floor.p50),
        ms(floor.p99)
    );
    println!();
    println!("### Ratios (throughput; each round against its own baselines)");
    println!();
    println!("| op | proxy / PgBouncer, per round | **median** | proxy / direct, per round | **median** |");
    println!("|---|---|---:|---|---:|");
    for (_, name) in ops {
        let mine: Vec<_> = rows.iter().filter(|r| r.1 == name).collect();
        let vs_b: Vec<f64> = mine.iter().map(|r| r.4.rps() / r.3.rps()).collect();
        let vs_d: Vec<f64> = mine.iter().map(|r| r.4.rps() / r.2.rps()).collect();
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {name} | {} | **{:.2}** | {} | **{:.2}** |",
            list(&vs_b),
            median(vs_b.clone()),
            list(&vs_d),
            median(vs_d.clone())
        );
    }
    println!();
    println!("### Latency at 1 client ({lat_total} requests per path)");
    println!();
    println!("| op | direct p50 (ms) | PgBouncer p50 (ms) | pg-proxy p50 (ms) | **added by the proxy over direct, p50 (ms)** | pg-proxy p99 (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, d, b, p) in &lat_rows {
        println!(
            "| {name} | {} | {} | {} | **{:.3}** | {} |",
            ms(d.p50),
            ms(b.p50),
            ms(p.p50),
            (p.p50.as_secs_f64() - d.p50.as_secs_f64()) * 1000.0,
            ms(p.p99)
        );
    }
}
