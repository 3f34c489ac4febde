//! Embedded schema migrations, applied at start-up and by `pg-proxy migrate`.
//!
//! The whole run happens in one transaction holding a transaction-scoped advisory lock, so
//! two replicas starting at once serialise: the second waits, then finds everything applied
//! and does nothing. Applied versions are recorded in `schema_migrations`; a file whose
//! checksum changed after it was applied is refused rather than silently skipped.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version.
    pub version: i32,
    /// Name, for the log and the table.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order. Append only; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "unlogged_nonces",
        sql: include_str!("../migrations/0002_unlogged_nonces.sql"),
    },
    Migration {
        version: 3,
        name: "logged_nonces",
        sql: include_str!("../migrations/0003_logged_nonces.sql"),
    },
    Migration {
        version: 4,
        name: "generation_and_stale",
        sql: include_str!("../migrations/0004_generation_and_stale.sql"),
    },
];

/// Advisory lock key: "pgproxy1" as big-endian bytes, unlikely to collide with other users.
const LOCK_KEY: i64 = 0x7067_7072_6f78_7931;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Versions applied by this run.
    pub applied: Vec<i32>,
    /// Versions already present.
    pub already: Vec<i32>,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every missing migration. Safe to call concurrently from many processes.
pub async fn run(client: &mut Client) -> anyhow::Result<Report> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER     PRIMARY KEY,
             name       TEXT        NOT NULL,
             checksum   TEXT        NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let rows = tx
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?;
    let done: std::collections::HashMap<i32, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut report = Report {
        applied: Vec::new(),
        already: Vec::new(),
    };
    for m in MIGRATIONS {
        let sum = checksum(m.sql);
        match done.get(&m.version) {
            Some(existing) if *existing == sum => report.already.push(m.version),
            Some(_) => anyhow::bail!(
                "migration {} ({}) was changed after it was applied",
                m.version,
                m.name
            ),
            None => {
                tx.batch_execute(m.sql).await.map_err(|e| {
                    anyhow::anyhow!("migration {} ({}) failed: {e}", m.version, m.name)
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&m.version, &m.name, &sum],
                )
                .await?;
                report.applied.push(m.version);
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Connects with a dedicated connection (not the pool) under the URL's TLS mode and runs the
/// migrations.
pub async fn run_with_url(url: &crate::config::DatabaseUrl) -> anyhow::Result<Report> {
    let (mut client, connection) = url.pg_config().connect(url.connector()?).await?;
    let conn = tokio::spawn(connection);
    let result = run(&mut client).await;
    drop(client);
    let _ = conn.await;
    result
}

/// Like [`run_with_url`] over a plaintext connection: for tests against the local Postgres.
pub async fn run_with_config(pg: &tokio_postgres::Config) -> anyhow::Result<Report> {
    let (mut client, connection) = pg.connect(tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let result = run(&mut client).await;
    drop(client);
    // The connection task ends once the client is dropped.
    let _ = conn.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 1);
    }
}
