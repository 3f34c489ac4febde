//! The connection pool: deadpool-postgres plus the warm floor and overflow policy.
//!
//! deadpool has one size limit, so the pool is built with room for
//! `max_size + max_overflow` connections, and [`maintain`] adds the two missing rules:
//! * **warm floor**: at start-up and then once a second, the pool is topped up to
//!   `min_size` open connections;
//! * **overflow**: connections beyond `max_size` exist only under load; once one has been
//!   idle for `overflow_idle` it is closed, until the pool is back at `max_size`.
//!
//! A request waits at most `timeout` for a connection (deadpool's wait timeout); after that
//! it gets 503 with Retry-After ([`crate::error::ApiError::Unavailable`]).
//!
//! Every new connection first sets `plan_cache_mode` (DB_PLAN_CACHE_MODE, default
//! `force_generic_plan`; README "Plan caching"): the batched statements take arrays, for
//! which Postgres's `auto` mode re-plans every execution.

use std::time::Duration;

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use serde::Serialize;

use crate::config::{DatabaseUrl, PoolSettings};

/// The pool together with the settings that give it its semantics.
#[derive(Clone)]
pub struct DbPool {
    pool: Pool,
    settings: PoolSettings,
}

/// Pool figures for `/api/v1/health`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: usize,
    /// Open connections not in use.
    pub idle: usize,
    /// Connections in use by requests.
    pub in_use: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// Open connections above `max_size`.
    pub overflow_open: usize,
    /// DB_POOL_MIN_SIZE.
    pub min_size: usize,
    /// DB_POOL_MAX_SIZE.
    pub max_size: usize,
    /// DB_POOL_MAX_OVERFLOW.
    pub max_overflow: usize,
}

/// Connection creation is bounded separately from the wait: a black-holed database should
/// fail a request, not hang it.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

impl DbPool {
    /// Builds the pool; no connection is opened yet (see [`DbPool::warm`]).
    pub fn new(url: &DatabaseUrl, settings: PoolSettings) -> anyhow::Result<Self> {
        let manager = Manager::from_config(
            url.pg_config().clone(),
            url.connector()?,
            ManagerConfig {
                // `Fast` skips the per-checkout `SELECT 1`; a dead connection surfaces as a
                // query error (503) and is dropped by deadpool on the next recycle.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_size + settings.max_overflow)
            .timeouts(Timeouts {
                wait: Some(settings.timeout),
                create: Some(CREATE_TIMEOUT),
                recycle: Some(CREATE_TIMEOUT),
            })
            .runtime(Runtime::Tokio1);
        let pool = match settings.plan_cache_mode.setting() {
            None => pool,
            Some(mode) => {
                // `mode` is one of the enum's fixed values, never caller input.
                let set: std::sync::Arc<str> = format!("SET plan_cache_mode = {mode}").into();
                pool.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                    let set = set.clone();
                    Box::pin(
                        async move { client.batch_execute(&set).await.map_err(HookError::Backend) },
                    )
                }))
            }
        }
        .build()?;
        Ok(Self { pool, settings })
    }

    /// The underlying deadpool pool.
    pub fn inner(&self) -> &Pool {
        &self.pool
    }

    /// The settings this pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Current figures.
    pub fn stats(&self) -> PoolStats {
        let s = self.pool.status();
        PoolStats {
            size: s.size,
            idle: s.available,
            in_use: s.size - s.available,
            waiting: s.waiting,
            overflow_open: s.size.saturating_sub(self.settings.max_size),
            min_size: self.settings.min_size,
            max_size: self.settings.max_size,
            max_overflow: self.settings.max_overflow,
        }
    }

    /// Opens connections until `min_size` are open. Returns the first connection error.
    pub async fn warm(&self) -> Result<(), deadpool_postgres::PoolError> {
        let status = self.pool.status();
        let missing = self.settings.min_size.saturating_sub(status.size);
        if missing == 0 {
            return Ok(());
        }
        // Holding every idle connection plus `missing` more forces `missing` new ones to be
        // created; all go back to the pool when dropped. A short wait keeps warming from
        // queueing behind real traffic.
        let short = Timeouts {
            wait: Some(Duration::from_millis(50)),
            create: Some(CREATE_TIMEOUT),
            recycle: Some(CREATE_TIMEOUT),
        };
        let wanted = status.available + missing;
        let results =
            futures_util::future::join_all((0..wanted).map(|_| self.pool.timeout_get(&short)))
                .await;
        let mut first_err = None;
        for r in results {
            if let Err(e) = r {
                if !matches!(e, deadpool_postgres::PoolError::Timeout(_)) && first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Closes idle overflow connections that have been idle for `overflow_idle`.
    /// Returns how many were closed.
    pub fn reap_overflow(&self) -> usize {
        let status = self.pool.status();
        let mut excess = status.size.saturating_sub(self.settings.max_size);
        if excess == 0 {
            return 0;
        }
        let idle_for = self.settings.overflow_idle;
        // `retain` visits only idle connections; in-use ones are never closed here.
        let result = self.pool.retain(|_, metrics| {
            if excess > 0 && metrics.last_used() >= idle_for {
                excess -= 1;
                false
            } else {
                true
            }
        });
        result.removed.len()
    }

    /// Closes the pool: waiters fail at once, idle connections are closed.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Runs the warm floor and overflow reaper until `stop` fires.
pub async fn maintain(pool: DbPool, mut stop: tokio::sync::watch::Receiver<bool>) {
    let tick = pool
        .settings
        .overflow_idle
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let closed = pool.reap_overflow();
        if closed > 0 {
            tracing::debug!(closed, "closed idle overflow connections");
        }
        if let Err(e) = pool.warm().await {
            tracing::warn!(cause = %e, "could not keep the pool warm");
        }
    }
}
