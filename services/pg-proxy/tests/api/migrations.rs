//! Migrations: idempotent, and safe when several processes run them at once.

use pg_proxy::migrate;

use crate::helpers::TestDb;

async fn config(db: &TestDb) -> tokio_postgres::Config {
    db.url().parse().unwrap()
}

#[tokio::test]
async fn running_migrations_twice_applies_them_once() {
    let db = TestDb::create().await;
    let cfg = config(&db).await;
    let first = migrate::run_with_config(&cfg).await.unwrap();
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(first.applied, all);
    let second = migrate::run_with_config(&cfg).await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.already, all);
    // The replay cache is logged again (migration 3): nonces are written only by
    // state-changing statements, whose own commit flushes the WAL, and they must survive a
    // crash or a failover to a standby.
    let client = db.connect().await;
    let persistence: String = client
        .query_one(
            "SELECT relpersistence::text FROM pg_class WHERE relname = 'request_nonces'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(persistence, "p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migration_runs_serialise_on_the_advisory_lock() {
    let db = TestDb::create().await;
    let cfg = config(&db).await;
    let runs = (0..6).map(|_| {
        let cfg = cfg.clone();
        tokio::spawn(async move { migrate::run_with_config(&cfg).await })
    });
    let reports: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let applied: usize = reports.iter().map(|r| r.applied.len()).sum();
    assert_eq!(applied, migrate::MIGRATIONS.len(), "{reports:?}");
    let client = db.connect().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, migrate::MIGRATIONS.len());
}

#[tokio::test]
async fn a_migration_changed_after_it_was_applied_is_refused() {
    let db = TestDb::create().await;
    let cfg = config(&db).await;
    migrate::run_with_config(&cfg).await.unwrap();
    let client = db.connect().await;
    client
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = migrate::run_with_config(&cfg).await.unwrap_err();
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
}
