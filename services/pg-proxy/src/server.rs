//! Running the service: migrations, pool warm-up, the connection-capped listener with
//! slow-client deadlines, the background janitor and pool maintenance, and graceful shutdown
//! with a deadline.
//!
//! The connection cap follows mini-redis `src/server.rs`: a semaphore permit is taken
//! before each `accept` and travels with the connection, so at the cap the listener stops
//! accepting (the kernel backlog queues) instead of failing requests.
//!
//! A capped listener alone lets a client that never finishes a request hold a slot forever
//! (issue 13, item 1). Every connection is therefore served by hyper's HTTP/1 connection with
//! a Tokio timer, wrapped in a [`GuardedStream`] that enforces two deadlines on the read side:
//! the request head must be complete within `header_read` of its first byte (or of the
//! accept), and a kept-alive connection may sit idle for at most `keepalive_idle` between a
//! response and the next request. The body deadline is enforced where the body is read, in
//! the signature middleware ([`crate::http`]). A slot held by a slow client is thus freed
//! within `max(header_read, keepalive_idle)`, and a health check queued behind a full cap is
//! served within that bound.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::batch::Batcher;
use crate::config::{HttpTimeouts, ServeConfig};
use crate::http::{router, AppState, SIGNATURE_WINDOW_SECS};
use crate::pool::{self, DbPool};
use crate::{migrate, store};

/// Where a connection is in its request cycle, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head: since the accept, or since the first byte
    /// after an idle period. Deadline: `header_read`.
    Head(Instant),
    /// Kept alive after a response, no byte of the next request yet. Deadline:
    /// `keepalive_idle`.
    Idle(Instant),
    /// A request is being handled (its body, if any, is read under the body deadline).
    Busy,
}

/// The phase shared by a connection's stream (which sees bytes) and its service (which
/// sees requests start and end).
#[derive(Debug)]
struct Activity(Mutex<Phase>);

impl Activity {
    fn phase(&self) -> Phase {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// Bytes arrived: an idle connection starts a request head now.
    fn bytes_arrived(&self) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Idle(_) = *p {
            *p = Phase::Head(Instant::now());
        }
    }
}

/// Marks the connection busy while a request is handled; idle again when dropped (also if
/// the handler is cancelled).
struct BusyGuard(Arc<Activity>);

impl BusyGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.set(Phase::Busy);
        Self(activity)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(Phase::Idle(Instant::now()));
    }
}

/// A TCP stream that holds a connection permit until it is dropped and fails reads once
/// the head or idle deadline of its current phase has passed (hyper then closes it).
pub struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
    timeouts: HttpTimeouts,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl GuardedStream {
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match self.activity.phase() {
            Phase::Head(since) => Some((since + self.timeouts.header_read, "header read timeout")),
            Phase::Idle(since) => Some((
                since + self.timeouts.keepalive_idle,
                "keep-alive idle timeout",
            )),
            Phase::Busy => None,
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let deadline = self.deadline();
        if let Some((at, why)) = deadline {
            if Instant::now() >= at {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
            }
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Nothing to read: make sure this task is woken at the deadline, so a client
                // that sends nothing at all is closed too.
                if let Some((at, why)) = deadline {
                    if this.armed_for != Some(at) {
                        this.timer.as_mut().reset(at);
                        this.armed_for = Some(at);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts one connection, retrying after per-connection errors. Errors that are not about
/// one connection (out of file descriptors) get a pause so the loop does not spin.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed");
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The accept loop: a permit before each accept, one task per connection, and on `stop` a
/// graceful close of every connection (in-flight requests finish, idle ones close) bounded by
/// `grace`, after which what is left is dropped.
async fn serve(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    app: axum::Router,
    timeouts: HttpTimeouts,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own head timer starts when the connection waits for a head (also while idle);
    // it is only a backstop behind GuardedStream's two deadlines.
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.keepalive_idle + timeouts.header_read)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            // The semaphore is never closed, so acquiring only waits.
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(stop.clone()) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (tcp, peer) = tokio::select! {
            pair = accept(&listener) => pair,
            _ = stopped(stop.clone()) => break,
        };
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity(Mutex::new(Phase::Head(Instant::now()))));
        let stream = GuardedStream {
            inner: tcp,
            _permit: permit,
            activity: activity.clone(),
            timeouts,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = BusyGuard::new(activity.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await;
                drop(busy);
                response
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(e) = watched.await {
                // Timeouts, resets and malformed requests: the client's problem, not ours.
                tracing::debug!(peer = %peer, cause = %e, "connection closed with an error");
            }
        });
    }
    // Closing the listener refuses new connections at once.
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        open_connections = tasks.len(),
        "shutting down"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace expired; dropping unfinished requests");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// A started server.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The pool, for inspection in tests.
    pub pool: DbPool,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts a graceful shutdown: stop accepting, let in-flight requests finish within the
    /// grace period, close the pool. Resolves when done.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Serves until `signal` resolves (then shuts down gracefully) or the server fails.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Running { stop, mut task, .. } = self;
        tokio::select! {
            ended = &mut task => return ended?,
            _ = signal => {
                tracing::info!("termination signal received");
                let _ = stop.send(true);
            }
        }
        task.await?
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Migrates, warms the pool, binds and starts serving in the background.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Running> {
    let tls = cfg.database_url.tls_mode().as_str();
    match cfg.database_url.tls_note() {
        Some(note) => tracing::warn!(tls, note, "database TLS"),
        None => tracing::info!(tls, "database TLS"),
    }
    let report = migrate::run_with_url(&cfg.database_url).await?;
    tracing::info!(applied = ?report.applied, already = ?report.already, "migrations done");
    let pool = DbPool::new(&cfg.database_url, cfg.pool.clone())?;
    pool.warm()
        .await
        .map_err(|e| anyhow::anyhow!("could not open the warm pool connections: {e}"))?;
    tokio::task::spawn_blocking(crate::password::prime).await?;
    let state = AppState {
        pool: pool.clone(),
        key: Arc::new(cfg.hmac_key.clone()),
        previous_key: cfg.hmac_key_previous.clone().map(Arc::new),
        max_body_bytes: cfg.max_body_bytes,
        body_read_timeout: cfg.http_timeouts.body_read,
        audience: Arc::from(cfg.audience.as_str()),
        accept_v1: cfg.accept_v1,
        inserts: Batcher::start(pool.clone(), cfg.pool.batch_concurrency),
        histories: Batcher::start(pool.clone(), cfg.pool.batch_concurrency),
    };
    let app = router(state);
    let listener = TcpListener::bind(SocketAddr::new(cfg.bind, cfg.port)).await?;
    let addr = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let (stop, stop_rx) = watch::channel(false);
    tracing::info!(addr = %addr, max_connections = cfg.max_connections, "listening");

    let maintenance = tokio::spawn(pool::maintain(pool.clone(), stop_rx.clone()));
    let janitor = tokio::spawn(janitor(pool.clone(), stop_rx.clone()));
    let task_pool = pool.clone();
    let task = tokio::spawn(async move {
        serve(
            listener,
            permits,
            app,
            cfg.http_timeouts,
            stop_rx,
            cfg.shutdown_grace,
        )
        .await;
        maintenance.abort();
        janitor.abort();
        task_pool.close();
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        pool,
        stop,
        task,
    })
}

/// Deletes old replay-cache rows and expired revocations once a minute.
async fn janitor(pool: DbPool, mut stop: watch::Receiver<bool>) {
    // Keep nonces for twice the window plus a margin: a request signed at the far edge of
    // the future window stays replay-protected until it expires.
    let keep = 2 * SIGNATURE_WINDOW_SECS + 60;
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let result = async {
            let db = pool.inner().get().await?;
            store::janitor(&db, keep).await
        }
        .await;
        match result {
            Ok((nonces, revoked)) => tracing::debug!(nonces, revoked, "janitor"),
            Err(e) => tracing::warn!(cause = %e, "janitor failed"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
