//! Loopback benchmark driver for scripts/bench-proxy (not part of CI).
//!
//! For one write op (message insert) and one read op (recent history of a contact) it
//! measures throughput and p50/p99 latency over three paths: through pg-proxy (signed HTTP),
//! the same SQL straight over tokio-postgres, and the same SQL through PgBouncer. Every run is
//! bounded by a request count and a wall-clock cap. Prints a Markdown report on stdout.
//!
//! Environment: BENCH_PROXY_URL, BENCH_HMAC_KEY, BENCH_DIRECT_URL, BENCH_BOUNCER_URL,
//! BENCH_REQUESTS (per op and path, default 10000), BENCH_CONCURRENCY (default 16),
//! BENCH_MAX_SECS (cap per run, default 30).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy_auth::SigningKey;
use serde_json::json;

const CONTACT: &str = "5511900000000@s.whatsapp.net";

// The statements pg-proxy runs for these two operations (src/store.rs), minus the replay
// cache insert that every signed request adds.
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
const HISTORY_SQL: &str = "SELECT provider_message_id, direction, body, sent_at, state FROM (
     SELECT provider_message_id, direction, body,
            extract(epoch FROM sent_at)::bigint AS sent_at, state, id,
            messages.sent_at AS ts
       FROM messages WHERE contact = $1
      ORDER BY messages.sent_at DESC, id DESC LIMIT $2) recent
 ORDER BY ts ASC, id ASC";

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

/// Runs `total` operations over `conc` workers, each calling `f(i)`; stops early at `cap`.
async fn drive<F, Fut>(total: usize, conc: usize, cap: Duration, f: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let started = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let next = next.clone();
            let f = f.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || started.elapsed() > cap {
                        break;
                    }
                    let t = Instant::now();
                    if f(w, i).await {
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
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    summarise(all, errors, started.elapsed())
}

async fn pg_clients(url: &str, n: usize) -> Vec<Arc<tokio_postgres::Client>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        tokio::spawn(conn);
        out.push(Arc::new(c));
    }
    out
}

async fn run_sql(
    url: &str,
    op: Op,
    tag: &'static str,
    total: usize,
    conc: usize,
    cap: Duration,
) -> Stats {
    // Each client prepares the statement once, as pg-proxy's statement cache does.
    let mut prepared = Vec::new();
    for c in pg_clients(url, conc).await {
        let stmt = c
            .prepare(if op == Op::Write {
                INSERT_SQL
            } else {
                HISTORY_SQL
            })
            .await
            .unwrap();
        prepared.push((c, stmt));
    }
    let prepared = Arc::new(prepared);
    drive(total, conc, cap, move |w, i| {
        let prepared = prepared.clone();
        async move {
            let (c, stmt) = &prepared[w];
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
                Op::Read => c.query(stmt, &[&CONTACT, &20i64]).await.is_ok(),
            }
        }
    })
    .await
}

async fn run_proxy(
    base: &str,
    key: SigningKey,
    op: Op,
    total: usize,
    conc: usize,
    cap: Duration,
) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .unwrap();
    let base = Arc::new(base.to_owned());
    let key = Arc::new(key);
    let run_id = now();
    drive(total, conc, cap, move |_, i| {
        let client = client.clone();
        let base = base.clone();
        let key = key.clone();
        async move {
            let rid = format!(
                "bench-{run_id}-{}-{i}",
                if op == Op::Write { "w" } else { "r" }
            );
            let (method, path, body) = match op {
                Op::Write => (
                    "POST",
                    "/v1/messages".to_owned(),
                    serde_json::to_vec(&json!({
                        "provider_message_id": format!("proxy-{i}"), "instance": "bench",
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
            let nonce = {
                use rand_core::RngCore;
                let mut b = [0u8; 16];
                rand_core::OsRng.fill_bytes(&mut b);
                proxy_auth::nonce_hex(&b).unwrap()
            };
            let signed = proxy_auth::sign_v2(
                &key,
                &proxy_auth::Call {
                    method,
                    path_and_query: &path,
                    audience: "127.0.0.1",
                    timestamp: now(),
                    nonce: &nonce,
                    request_id: &rid,
                    body: &body,
                },
            )
            .unwrap();
            let mut rb = client.request(method.parse().unwrap(), format!("{base}{path}"));
            for (n, v) in signed.pairs() {
                rb = rb.header(n, v);
            }
            if !body.is_empty() {
                rb = rb.header("content-type", "application/json").body(body);
            }
            match rb.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let proxy = env("BENCH_PROXY_URL");
    let key = SigningKey::from_hex(&env("BENCH_HMAC_KEY")).expect("BENCH_HMAC_KEY");
    let direct = env("BENCH_DIRECT_URL");
    let bouncer = env("BENCH_BOUNCER_URL");
    let total = env_num("BENCH_REQUESTS", 10_000);
    let conc = env_num("BENCH_CONCURRENCY", 16);
    let cap = Duration::from_secs(env_num("BENCH_MAX_SECS", 30) as u64);

    // Seed the read op's contact with history so every read returns 20 rows.
    let seed = pg_clients(&direct, 1).await.remove(0);
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

    // Warm-up (not measured): opens connections and fills statement caches on every path.
    let warm = Duration::from_secs(10);
    run_proxy(&proxy, key.clone(), Op::Read, 200, conc, warm).await;
    run_sql(&direct, Op::Read, "warm", 200, conc, warm).await;
    run_sql(&bouncer, Op::Read, "warm", 200, conc, warm).await;

    let mut rows = Vec::new();
    for (op, name) in [
        (Op::Write, "write: insert message"),
        (Op::Read, "read: history, 20 rows"),
    ] {
        let d = run_sql(&direct, op, "direct", total, conc, cap).await;
        let b = run_sql(&bouncer, op, "bouncer", total, conc, cap).await;
        let p = run_proxy(&proxy, key.clone(), op, total, conc, cap).await;
        rows.push((name, d, b, p));
    }

    // The HTTP floor: the same client against the unsigned liveness route (no signing, no
    // database), to show how much of the proxy's cost is HTTP on this machine.
    let floor = {
        let client = reqwest::Client::new();
        let url = Arc::new(format!("{proxy}/api/v1/health"));
        drive(total, conc, cap, move |_, _| {
            let client = client.clone();
            let url = url.clone();
            async move {
                match client.get(url.as_str()).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await
    };

    println!("| op | path | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, d, b, p) in &rows {
        for (path, s) in [
            ("direct tokio-postgres", d),
            ("PgBouncer (session pool)", b),
            ("pg-proxy (signed HTTP)", p),
        ] {
            println!(
                "| {name} | {path} | {} | {} | {:.0} | {} | {} |",
                s.n,
                s.errors,
                s.rps(),
                ms(s.p50),
                ms(s.p99)
            );
        }
    }
    println!(
        "| HTTP floor: GET /api/v1/health (no DB) | pg-proxy (unsigned) | {} | {} | {:.0} | {} | {} |",
        floor.n,
        floor.errors,
        floor.rps(),
        ms(floor.p50),
        ms(floor.p99)
    );
    println!();
    println!("| op | proxy / direct throughput | proxy / PgBouncer throughput | proxy p50 / direct p50 | proxy p99 / direct p99 | PgBouncer p50 / direct p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, d, b, p) in &rows {
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r(p.rps(), d.rps()),
            r(p.rps(), b.rps()),
            r(p.p50.as_secs_f64(), d.p50.as_secs_f64()),
            r(p.p99.as_secs_f64(), d.p99.as_secs_f64()),
            r(b.p50.as_secs_f64(), d.p50.as_secs_f64()),
        );
    }
}
