//! Unsigned health endpoints: liveness with pool figures, readiness with a DB round trip.

use crate::helpers::{Opts, TestApp};

#[tokio::test]
async fn liveness_reports_pool_figures_as_health_json_for_any_host() {
    let app = TestApp::spawn_with(Opts::default().set("DB_POOL_MIN_SIZE", "3")).await;
    let resp = app
        .client
        .get(app.url("/api/v1/health"))
        .header("host", "healthcheck.railway.app")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/health+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    let pool = &body["pool"];
    // Warm floor: three connections opened at start-up.
    assert!(pool["size"].as_u64().unwrap() >= 3, "{pool}");
    for key in [
        "size",
        "idle",
        "in_use",
        "waiting",
        "overflow_open",
        "max_size",
        "max_overflow",
        "min_size",
    ] {
        assert!(pool[key].is_u64(), "{key} missing in {pool}");
    }
    assert_eq!(pool["max_size"], 4);
    assert_eq!(pool["max_overflow"], 4);
}

#[tokio::test]
async fn readiness_passes_with_a_database_and_fails_without_one() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/health+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    assert!(body["checks"]["postgres:responseTime"][0]["observedValue"].is_f64());

    // Take the database away under the running service.
    let admin = crate::helpers::admin_url();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.db.name))
        .await
        .unwrap();
    let resp = app
        .client
        .get(app.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    // Liveness does not depend on the database.
    let resp = app
        .client
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(Opts::default().set("PROXY_MAX_CONNECTIONS", "1")).await;
    // An idle TCP connection takes the only slot.
    let hog = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let blocked = client.get(app.url("/api/v1/health")).send().await;
    assert!(blocked.is_err(), "served beyond the cap: {blocked:?}");
    drop(hog);
    // Once the slot is free the next connection is served (bounded retries: the server
    // notices the close asynchronously).
    let started = std::time::Instant::now();
    loop {
        let fresh = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        if let Ok(r) = fresh.get(app.url("/api/v1/health")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "slot never freed"
        );
    }
}
