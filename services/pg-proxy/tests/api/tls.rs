//! TLS to Postgres against the local server (issue 13 item 11): `sslmode=require` really runs
//! the pool over TLS (seen in `pg_stat_ssl`), `verify-full` refuses a certificate it cannot
//! verify, and a production start with `sslmode=disable` to a public host is refused by name.
//! The local server's own certificate is Debian's self-signed snakeoil; where the server has
//! `ssl = off` (some CI services) the TLS cases say so and are skipped.

use crate::helpers::{serve_config, Opts, TestApp, TestDb};

async fn server_has_ssl() -> bool {
    let db = TestDb::create().await;
    let client = db.connect().await;
    let on: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    on == "on"
}

#[tokio::test]
async fn sslmode_require_runs_the_pool_over_tls() {
    if !server_has_ssl().await {
        eprintln!(
            "skipped tls::sslmode_require_runs_the_pool_over_tls: local Postgres has ssl = off"
        );
        return;
    }
    let app = TestApp::spawn_with(Opts::default().db_url_suffix("?sslmode=require")).await;
    assert_eq!(app.call("GET", "/v1/ping", None).await.0, 200);
    let db = app.db.connect().await;
    let (tls, plain): (i64, i64) = {
        let r = db
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                   FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(tls >= 1, "no TLS connection from the proxy");
    assert_eq!(plain, 0, "the proxy opened a plaintext connection");
}

#[tokio::test]
async fn sslmode_verify_full_refuses_an_unverifiable_certificate() {
    if !server_has_ssl().await {
        eprintln!("skipped tls::sslmode_verify_full_refuses_an_unverifiable_certificate: local Postgres has ssl = off");
        return;
    }
    let db = TestDb::create().await;
    let cfg = serve_config(&db, &Opts::default().db_url_suffix("?sslmode=verify-full"));
    let err = match pg_proxy::server::start(cfg).await {
        Ok(_) => panic!("started against a self-signed certificate with verify-full"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
}

#[test]
fn a_production_start_with_sslmode_disable_to_a_public_host_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg-proxy"))
        .arg("serve")
        .env(
            "DATABASE_URL",
            "postgres://app:Tls-Leak-Pw@db.example.com:5432/app?sslmode=disable",
        )
        .env("PROXY_HMAC_KEY", "ab".repeat(32))
        .env("PROXY_AUDIENCE", "proxy.example.com")
        .env("ENVIRONMENT", "production")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        all.contains("DATABASE_URL") && all.contains("sslmode=disable"),
        "{all}"
    );
    assert!(
        !all.contains("Tls-Leak-Pw") && !all.contains("db.example.com"),
        "{all}"
    );
}
