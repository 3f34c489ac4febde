//! Key-value on a Durable Object: the client ([`DoKv`], used by every function Worker) and the
//! class ([`EdgeKv`], compiled with feature `do-host` into the one Worker that hosts it).
//!
//! One Durable Object instance per key (`idFromName(key)`): a Durable Object runs one event at
//! a time and its SQL storage is synchronous, so every operation on a key is atomic and strongly
//! consistent, and no single instance becomes a hot spot for all keys. Expiry is enforced on
//! read and by an alarm that deletes the entry, so an expired key leaves no storage behind.
//!
//! Wire protocol between client and object (internal, never exposed publicly):
//! `GET|PUT|DELETE https://kv/value` and `POST https://kv/counter`, key in `x-kv-key`, expiry
//! in `x-kv-expires-at` (unix ms), delta in `x-kv-delta`; value bytes in the body.

use edge_core::kv;
use edge_core::ports::{KeyValue, PortError};

/// Binding name of the namespace in every Worker's configuration.
pub const BINDING: &str = "EDGE_KV";
const KEY: &str = "x-kv-key";
const EXPIRES_AT: &str = "x-kv-expires-at";
const DELTA: &str = "x-kv-delta";

fn unavailable(what: &str, err: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("durable object {what}: {err}"))
}

/// The key-value port over the `EDGE_KV` Durable Object namespace.
pub struct DoKv {
    env: worker::Env,
}

impl DoKv {
    /// A client over `env`'s `EDGE_KV` binding.
    pub fn new(env: worker::Env) -> Self {
        Self { env }
    }

    async fn call(
        &self,
        key: &str,
        method: worker::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<worker::Response, PortError> {
        let ns = self
            .env
            .durable_object(BINDING)
            .map_err(|e| unavailable("binding", e))?;
        let stub = ns.get_by_name(key).map_err(|e| unavailable("stub", e))?;
        let hdrs = worker::Headers::new();
        hdrs.set(KEY, key).map_err(|e| unavailable("header", e))?;
        for (name, value) in headers {
            hdrs.set(name, value)
                .map_err(|e| unavailable("header", e))?;
        }
        // Stub fetches need an absolute URL; the host part is ignored.
        let req = crate::outbound(&format!("https://kv{path}"), method.as_ref(), &hdrs, body)
            .map_err(|e| unavailable("request", e))?;
        let resp = stub
            .fetch_with_request(req)
            .await
            .map_err(|e| unavailable("fetch", e))?;
        match resp.status_code() {
            200..=299 | 404 => Ok(resp),
            status => Err(PortError::Unavailable(format!(
                "durable object answered {status}"
            ))),
        }
    }
}

/// A counter route's answer: the integer in its body.
async fn integer(resp: &mut worker::Response) -> Result<i64, PortError> {
    let text = resp.text().await.map_err(|e| unavailable("body", e))?;
    text.trim()
        .parse()
        .map_err(|_| PortError::Unavailable("durable object sent a non-integer".into()))
}

impl KeyValue for DoKv {
    // Each counter's Durable Object deletes it at expiry with an alarm.
    const EXPIRES_COUNTERS: bool = true;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        kv::check_value_key(key)?;
        let mut resp = self
            .call(key, worker::Method::Get, "/value", &[], None)
            .await?;
        if resp.status_code() == 404 {
            return Ok(None);
        }
        resp.bytes()
            .await
            .map(Some)
            .map_err(|e| unavailable("body", e))
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), PortError> {
        kv::check_value_key(key)?;
        kv::check_value(value)?;
        let headers: Vec<(&str, String)> = expires_at_ms
            .map(|at| (EXPIRES_AT, at.to_string()))
            .into_iter()
            .collect();
        self.call(key, worker::Method::Put, "/value", &headers, Some(value))
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        kv::check_value_key(key).or_else(|_| kv::check_counter_key(key))?;
        self.call(key, worker::Method::Delete, "/value", &[], None)
            .await
            .map(drop)
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expires_at_ms: Option<u64>,
    ) -> Result<i64, PortError> {
        kv::check_counter_key(key)?;
        let mut headers = vec![(DELTA, delta.to_string())];
        if let Some(at) = expires_at_ms {
            headers.push((EXPIRES_AT, at.to_string()));
        }
        let mut resp = self
            .call(key, worker::Method::Post, "/counter", &headers, None)
            .await?;
        integer(&mut resp).await
    }

    async fn counter(&self, key: &str) -> Result<i64, PortError> {
        kv::check_counter_key(key)?;
        let mut resp = self
            .call(key, worker::Method::Get, "/counter", &[], None)
            .await?;
        if resp.status_code() == 404 {
            // The route answers 200 with 0 for an absent counter: 404 is a store Worker
            // older than this one (deploy `store` first).
            return Err(PortError::Unavailable(
                "durable object has no counter read (deploy the store worker)".into(),
            ));
        }
        integer(&mut resp).await
    }
}

#[cfg(feature = "do-host")]
pub use host::EdgeKv;

#[cfg(feature = "do-host")]
#[allow(unsafe_code)] // the durable_object macro generates the wasm-bindgen glue
mod host {
    use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};
    use worker::{SqlStorage, SqlStorageValue};

    use super::{DELTA, EXPIRES_AT, KEY};

    /// The Durable Object class holding one key (value or counter) per instance.
    #[durable_object]
    pub struct EdgeKv {
        state: State,
    }

    fn now_ms() -> i64 {
        worker::Date::now().as_millis() as i64
    }

    impl EdgeKv {
        /// The instance's SQL storage, with the table in place. `deleteAll()` (after the last
        /// entry expires or is deleted) drops the table while the instance may stay in memory,
        /// so it is (re)created on every event; `IF NOT EXISTS` makes that a no-op lookup.
        fn sql(&self) -> Result<SqlStorage> {
            let sql = self.state.storage().sql();
            sql.exec(
                "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB, n INTEGER, expires_at INTEGER)",
                None,
            )?;
            Ok(sql)
        }

        /// The instance's SQL storage if it holds the table, without creating it: a read of an
        /// absent key must leave no storage behind (an instance with a table but no rows and
        /// no alarm would be kept forever).
        fn sql_existing(&self) -> Result<Option<SqlStorage>> {
            let sql = self.state.storage().sql();
            let exists = sql
                .exec(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
                    None,
                )?
                .raw()
                .next()
                .is_some();
            Ok(exists.then_some(sql))
        }

        /// Deletes expired rows; when nothing is left, deletes all storage so the instance
        /// costs nothing. Otherwise re-arms the alarm for the earliest remaining expiry: an
        /// increment may have moved a counter's expiry past the alarm that was set for it, and
        /// without a new alarm that row would outlive it forever.
        async fn sweep(&self) -> Result<()> {
            let sql = self.sql()?;
            sql.exec(
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?",
                vec![SqlStorageValue::from(now_ms())],
            )?;
            let row = sql
                .exec("SELECT count(*), min(expires_at) FROM kv", None)?
                .raw()
                .next()
                .transpose()?
                .unwrap_or_default();
            let rows = match row.first() {
                Some(SqlStorageValue::Integer(n)) => *n,
                _ => 0,
            };
            let earliest = match row.get(1) {
                Some(SqlStorageValue::Integer(at)) => Some(*at),
                _ => None,
            };
            let storage = self.state.storage();
            match edge_core::kv::after_sweep(rows, earliest, now_ms()) {
                edge_core::kv::AfterSweep::DeleteAll => {
                    storage.delete_alarm().await?;
                    storage.delete_all().await?;
                }
                edge_core::kv::AfterSweep::Alarm { in_ms } => storage.set_alarm(in_ms).await?,
                edge_core::kv::AfterSweep::NoAlarm => storage.delete_alarm().await?,
            }
            Ok(())
        }
    }

    impl DurableObject for EdgeKv {
        fn new(state: State, _env: Env) -> Self {
            Self { state }
        }

        async fn fetch(&self, mut req: Request) -> Result<Response> {
            let Some(key) = req.headers().get(KEY)? else {
                return Response::error("missing key", 400);
            };
            match (req.method(), req.path().as_str()) {
                (Method::Get, "/value") => {
                    // Reads create nothing (see `sql_existing`).
                    let Some(sql) = self.sql_existing()? else {
                        return Response::error("absent", 404);
                    };
                    let row = sql
                        .exec(
                            "SELECT v, expires_at FROM kv WHERE k = ? AND v IS NOT NULL",
                            vec![SqlStorageValue::from(key.clone())],
                        )?
                        .raw()
                        .next()
                        .transpose()?;
                    let Some(row) = row else {
                        return Response::error("absent", 404);
                    };
                    let expired =
                        matches!(row.get(1), Some(SqlStorageValue::Integer(at)) if *at <= now_ms());
                    if expired {
                        self.sweep().await?;
                        return Response::error("absent", 404);
                    }
                    match row.into_iter().next() {
                        Some(SqlStorageValue::Blob(bytes)) => Response::from_bytes(bytes),
                        _ => Response::error("absent", 404),
                    }
                }
                (Method::Put, "/value") => {
                    let sql = self.sql()?;
                    let expires_at = match req.headers().get(EXPIRES_AT)? {
                        Some(at) => Some(at.parse::<i64>().map_err(|e| e.to_string())?),
                        None => None,
                    };
                    let bytes = req.bytes().await?;
                    sql.exec(
                        "INSERT INTO kv (k, v, n, expires_at) VALUES (?, ?, NULL, ?) \
                         ON CONFLICT (k) DO UPDATE SET v = excluded.v, expires_at = excluded.expires_at",
                        vec![
                            SqlStorageValue::from(key),
                            SqlStorageValue::from(bytes),
                            SqlStorageValue::from(expires_at),
                        ],
                    )?;
                    match expires_at {
                        Some(at) => {
                            let offset = (at - now_ms()).max(0);
                            self.state.storage().set_alarm(offset).await?;
                        }
                        None => self.state.storage().delete_alarm().await?,
                    }
                    Ok(Response::empty()?.with_status(204))
                }
                (Method::Delete, "/value") => {
                    let sql = self.sql()?;
                    sql.exec(
                        "DELETE FROM kv WHERE k = ?",
                        vec![SqlStorageValue::from(key)],
                    )?;
                    self.sweep().await?;
                    Ok(Response::empty()?.with_status(204))
                }
                (Method::Get, "/counter") => {
                    // A read that creates nothing: absent or expired reads 0.
                    let Some(sql) = self.sql_existing()? else {
                        return Response::ok("0");
                    };
                    let row = sql
                        .exec(
                            "SELECT n FROM kv WHERE k = ? AND n IS NOT NULL \
                             AND (expires_at IS NULL OR expires_at > ?)",
                            vec![SqlStorageValue::from(key), SqlStorageValue::from(now_ms())],
                        )?
                        .raw()
                        .next()
                        .transpose()?;
                    match row.and_then(|r| r.into_iter().next()) {
                        Some(SqlStorageValue::Integer(n)) => Response::ok(n.to_string()),
                        _ => Response::ok("0"),
                    }
                }
                (Method::Post, "/counter") => {
                    let sql = self.sql()?;
                    let delta: i64 = req
                        .headers()
                        .get(DELTA)?
                        .unwrap_or_default()
                        .parse()
                        .map_err(|e: std::num::ParseIntError| e.to_string())?;
                    let expires_at = match req.headers().get(EXPIRES_AT)? {
                        Some(at) => Some(at.parse::<i64>().map_err(|e| e.to_string())?),
                        None => None,
                    };
                    // An expired counter whose alarm has not fired yet restarts from `delta`.
                    let row = sql
                        .exec(
                            "INSERT INTO kv (k, v, n, expires_at) VALUES (?, NULL, ?, ?) \
                             ON CONFLICT (k) DO UPDATE SET \
                               n = CASE WHEN expires_at IS NOT NULL AND expires_at <= ? \
                                        THEN excluded.n ELSE n + excluded.n END, \
                               expires_at = coalesce(excluded.expires_at, expires_at) \
                             RETURNING n",
                            vec![
                                SqlStorageValue::from(key),
                                SqlStorageValue::from(delta),
                                SqlStorageValue::from(expires_at),
                                SqlStorageValue::from(now_ms()),
                            ],
                        )?
                        .raw()
                        .next()
                        .transpose()?;
                    // An alarm already set may be earlier than this expiry; the sweep it runs
                    // re-arms for what remains.
                    if let Some(at) = expires_at {
                        if self.state.storage().get_alarm().await?.is_none() {
                            self.state
                                .storage()
                                .set_alarm((at - now_ms()).max(0))
                                .await?;
                        }
                    }
                    match row.and_then(|r| r.into_iter().next()) {
                        Some(SqlStorageValue::Integer(n)) => Response::ok(n.to_string()),
                        _ => Response::error("counter did not return a value", 500),
                    }
                }
                _ => Response::error("no such operation", 404),
            }
        }

        async fn alarm(&self) -> Result<Response> {
            self.sweep().await?;
            Response::ok("swept")
        }
    }
}
