//! Opportunistic batching of the two hottest operations: message insert and history read.
//!
//! Most of what Postgres spends on a small insert or an indexed read is per statement, not
//! per row: the protocol round, planning the bound statement, the snapshot, and for a write
//! the commit with its WAL flush. On the loopback benchmark a one-row insert costs Postgres
//! about five times what a row of an eight-row insert does, a history read about twice
//! (bench/proxy.md). A pooler cannot use this, because it does not know what its clients'
//! statements mean; this proxy's API is narrow enough that it can.
//!
//! A [`Batcher`] runs at most `concurrency` statements of its kind at a time
//! (DB_BATCH_CONCURRENCY). A request that finds a slot free runs at once (together with any
//! that arrived in the same instant): no timer, so nothing is added to latency when the
//! service is quiet. Requests that arrive while every slot is busy wait in the batcher's
//! queue, and the next slot that frees up takes all of them (at most [`MAX_BATCH`]) into one
//! statement. The busier the database, the larger the batches, which is when batching pays.
//!
//! Semantics stay those of one statement per request: each request gets its own result or
//! error. If a batch statement fails for a reason that is not a lost connection, its requests
//! are retried one by one, so one bad row cannot fail the others. A request waits for a
//! connection as long as it would without batching (DB_POOL_TIMEOUT) and then gets 503.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Client;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::domain::Contact;
use crate::error::{ApiError, ApiResult};
use crate::pool::DbPool;
use crate::store::{self, Inserted, NewMessage};

/// Most requests one statement takes.
pub const MAX_BATCH: usize = 64;

/// One kind of batched statement.
pub trait Job: Send + Sync + 'static {
    /// What one request asks for.
    type Input: Send + Sync + 'static;
    /// What one request gets.
    type Output: Send + 'static;
    /// Runs `inputs` in one statement; one output per input, in order.
    fn run<'a>(
        db: &'a Client,
        inputs: &'a [Self::Input],
    ) -> impl Future<Output = ApiResult<Vec<Self::Output>>> + Send + 'a;
}

/// Message inserts ([`store::insert_messages`]).
pub struct InsertMessages;

impl Job for InsertMessages {
    type Input = NewMessage;
    type Output = Inserted;
    fn run<'a>(
        db: &'a Client,
        inputs: &'a [NewMessage],
    ) -> impl Future<Output = ApiResult<Vec<Inserted>>> + Send + 'a {
        store::insert_messages(db, inputs)
    }
}

/// History reads ([`store::histories`]).
pub struct Histories;

impl Job for Histories {
    type Input = (Contact, i64);
    /// The messages as a JSON array.
    type Output = Vec<u8>;
    fn run<'a>(
        db: &'a Client,
        inputs: &'a [(Contact, i64)],
    ) -> impl Future<Output = ApiResult<Vec<Vec<u8>>>> + Send + 'a {
        store::histories(db, inputs)
    }
}

struct Pending<J: Job> {
    input: J::Input,
    reply: oneshot::Sender<ApiResult<J::Output>>,
}

/// Counters of one batcher since start (shown by `/api/v1/health`).
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    statements: AtomicU64,
}

/// What a batcher has done since start: `requests / statements` is the mean batch size.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests answered.
    pub requests: u64,
    /// Statements run for them (batches, plus one per request retried alone).
    pub statements: u64,
}

/// The queue of one [`Job`] kind; cheap to clone. Its dispatcher task ends when the last
/// clone is dropped.
pub struct Batcher<J: Job> {
    queue: mpsc::UnboundedSender<Pending<J>>,
    counters: Arc<Counters>,
}

impl<J: Job> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<J: Job> Batcher<J> {
    /// Starts the dispatcher on the current Tokio runtime.
    pub fn start(pool: DbPool, concurrency: usize) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(dispatch::<J>(
            rx,
            pool,
            concurrency.max(1),
            counters.clone(),
        ));
        Self { queue, counters }
    }

    /// Requests and statements so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            statements: self.counters.statements.load(Ordering::Relaxed),
        }
    }

    /// Runs `input` in the next statement of this kind and returns its own result.
    pub async fn submit(&self, input: J::Input) -> ApiResult<J::Output> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { input, reply })
            .map_err(|_| unavailable("the service is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the batch dropped the request")))?
    }
}

fn unavailable(cause: String) -> ApiError {
    ApiError::Unavailable {
        retry_after_secs: 1,
        source: anyhow::anyhow!(cause),
    }
}

/// The same error for another request of the batch (the cause as text).
fn copy(e: &ApiError) -> ApiError {
    match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
        ApiError::Unauthorized(m) => ApiError::Unauthorized(m.clone()),
        ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
        ApiError::Conflict(m) => ApiError::Conflict(m.clone()),
        ApiError::MethodNotAllowed => ApiError::MethodNotAllowed,
        ApiError::RequestTimeout => ApiError::RequestTimeout,
        ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType => ApiError::UnsupportedMediaType,
        ApiError::Unavailable {
            retry_after_secs,
            source,
        } => ApiError::Unavailable {
            retry_after_secs: *retry_after_secs,
            source: anyhow::anyhow!("{source:#}"),
        },
        ApiError::Unexpected(source) => ApiError::Unexpected(anyhow::anyhow!("{source:#}")),
    }
}

/// `e` for each of `n` requests.
fn fail_all<T>(n: usize, e: &ApiError) -> Vec<ApiResult<T>> {
    (0..n).map(|_| Err(copy(e))).collect()
}

async fn dispatch<J: Job>(
    mut rx: mpsc::UnboundedReceiver<Pending<J>>,
    pool: DbPool,
    concurrency: usize,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued up while the slots were busy goes into this statement.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            run_batch::<J>(&pool, batch, &counters).await;
            drop(slot);
        });
    }
}

async fn run_batch<J: Job>(pool: &DbPool, batch: Vec<Pending<J>>, counters: &Counters) {
    let (inputs, replies): (Vec<J::Input>, Vec<_>) =
        batch.into_iter().map(|p| (p.input, p.reply)).unzip();
    counters
        .requests
        .fetch_add(inputs.len() as u64, Ordering::Relaxed);
    let db = match pool.inner().get().await {
        Ok(db) => db,
        Err(e) => {
            let results = fail_all(replies.len(), &ApiError::from(e));
            answer(replies, results);
            return;
        }
    };
    counters.statements.fetch_add(1, Ordering::Relaxed);
    let results: Vec<ApiResult<J::Output>> =
        match J::run(&db, &inputs).await {
            Ok(outputs) if outputs.len() == inputs.len() => outputs.into_iter().map(Ok).collect(),
            Ok(outputs) => {
                let e = ApiError::Unexpected(anyhow::anyhow!(
                    "batch returned {} results for {} requests",
                    outputs.len(),
                    inputs.len()
                ));
                fail_all(inputs.len(), &e)
            }
            // The connection or the database is gone: every request would fail alike.
            Err(e @ ApiError::Unavailable { .. }) => fail_all(inputs.len(), &e),
            Err(e) if inputs.len() == 1 => vec![Err(e)],
            // One request's row may have failed the statement: each on its own.
            Err(_) => {
                let mut each = Vec::with_capacity(inputs.len());
                for input in &inputs {
                    counters.statements.fetch_add(1, Ordering::Relaxed);
                    each.push(J::run(&db, std::slice::from_ref(input)).await.and_then(
                        |mut out| {
                            out.pop().ok_or_else(|| {
                                ApiError::Unexpected(anyhow::anyhow!("no result for the request"))
                            })
                        },
                    ));
                }
                each
            }
        };
    drop(db);
    answer(replies, results);
}

fn answer<T>(replies: Vec<oneshot::Sender<ApiResult<T>>>, results: Vec<ApiResult<T>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A request whose caller went away: nothing to answer.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_error_keeps_its_class_and_message() {
        let e = ApiError::Unavailable {
            retry_after_secs: 1,
            source: anyhow::anyhow!("no database connection"),
        };
        match copy(&e) {
            ApiError::Unavailable {
                retry_after_secs,
                source,
            } => {
                assert_eq!(retry_after_secs, 1);
                assert_eq!(source.to_string(), "no database connection");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            copy(&ApiError::BadRequest("x".into())),
            ApiError::BadRequest(m) if m == "x"
        ));
    }
}
