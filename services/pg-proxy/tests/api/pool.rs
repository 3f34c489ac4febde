//! Pool semantics under load: exhaustion gives 503 + Retry-After within DB_POOL_TIMEOUT;
//! overflow connections open under load and close once idle.
//!
//! Load is made deterministic by locking the `messages` table from a direct connection:
//! reads of it through the proxy then hold their pooled connections until the lock is released.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{error_code, Opts, TestApp};

/// A request that holds one pool connection while `messages` is locked: the stale listing
/// reads the table and is not batched (message inserts are: two inserts arriving together
/// may share one statement and one connection, README "Batching").
fn hold_a_connection(app: &TestApp) -> tokio::task::JoinHandle<u16> {
    let req = app.signed("GET", "/v1/messages/stale?limit=1", None);
    tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
}

async fn lock_messages(app: &TestApp) -> tokio_postgres::Client {
    let locker = app.db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    locker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_with_retry_after_within_the_timeout() {
    let app = TestApp::spawn_with(
        Opts::default()
            .set("DB_POOL_MIN_SIZE", "0")
            .set("DB_POOL_MAX_SIZE", "2")
            .set("DB_POOL_MAX_OVERFLOW", "0")
            .set("DB_POOL_TIMEOUT", "0.5"),
    )
    .await;
    let locker = lock_messages(&app).await;
    let blocked: Vec<_> = (0..2).map(|_| hold_a_connection(&app)).collect();
    app.wait_for_pool(Duration::from_secs(10), |p| p["in_use"] == 2)
        .await;

    // No wall-clock ceiling (a loaded machine can stall any step): the proof is the order of
    // events. The two held connections stay held until the ROLLBACK below, so without the
    // pool timeout this request could only be answered after it; it must be answered with 503
    // while they are still blocked, and not before the timeout has elapsed (a timer never
    // fires early).
    let started = Instant::now();
    let resp = app.signed("GET", "/v1/ping", None).send().await.unwrap();
    let waited = started.elapsed();
    assert!(
        blocked.iter().all(|b| !b.is_finished()),
        "the blocked requests ended first: the 503 did not come from the pool timeout"
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "unavailable");
    assert!(
        waited >= Duration::from_millis(500),
        "gave up before DB_POOL_TIMEOUT: {waited:?}"
    );
    assert_eq!(
        app.pool_stats().in_use,
        2,
        "the held connections are still held"
    );

    locker.batch_execute("ROLLBACK").await.unwrap();
    for b in blocked {
        assert_eq!(b.await.unwrap(), 200);
    }
    // The pool recovers.
    assert_eq!(app.call("GET", "/v1/ping", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_connections_open_under_load_and_close_when_idle() {
    let app = TestApp::spawn_with(
        Opts::default()
            .set("DB_POOL_MIN_SIZE", "1")
            .set("DB_POOL_MAX_SIZE", "2")
            .set("DB_POOL_MAX_OVERFLOW", "3")
            .set("DB_POOL_TIMEOUT", "20")
            .set("DB_POOL_OVERFLOW_IDLE_SECS", "0.2"),
    )
    .await;
    let locker = lock_messages(&app).await;
    let locker_pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let blocked: Vec<_> = (0..5).map(|_| hold_a_connection(&app)).collect();
    let under_load = app
        .wait_for_pool(Duration::from_secs(10), |p| p["in_use"] == 5)
        .await;
    assert_eq!(under_load["size"], 5);
    assert_eq!(under_load["overflow_open"], 3);

    locker.batch_execute("ROLLBACK").await.unwrap();
    for b in blocked {
        assert_eq!(b.await.unwrap(), 200);
    }
    let settled = app
        .wait_for_pool(Duration::from_secs(10), |p| p["overflow_open"] == 0)
        .await;
    assert_eq!(settled["size"], 2, "base connections stay open: {settled}");
    // The server-side view agrees with Postgres: only the base connections remain.
    let db = app.db.connect().await;
    let backends: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1",
            &[&locker_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(backends, 2);
    assert_eq!(app.pool_stats().size, 2);
}

/// Every pooled connection runs with DB_PLAN_CACHE_MODE (default `force_generic_plan`, README
/// "Plan caching"); `server` leaves the server's own setting.
#[tokio::test]
async fn pooled_connections_use_the_configured_plan_cache_mode() {
    use crate::helpers::serve_config;
    use pg_proxy::pool::DbPool;

    let app = TestApp::spawn().await;
    for (value, expected) in [
        (None, "force_generic_plan"),
        (Some("force_custom_plan"), "force_custom_plan"),
        (Some("server"), "auto"),
    ] {
        let opts = match value {
            Some(v) => Opts::default().set("DB_PLAN_CACHE_MODE", v),
            None => Opts::default(),
        };
        let cfg = serve_config(&app.db, &opts);
        let pool = DbPool::new(&cfg.database_url, cfg.pool.clone()).unwrap();
        let db = pool.inner().get().await.unwrap();
        let mode: String = db
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, expected, "DB_PLAN_CACHE_MODE={value:?}");
    }
}
