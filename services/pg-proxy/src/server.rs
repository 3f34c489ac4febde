//! Running the service: migrations, pool warm-up, the connection-capped listener, the
//! background janitor and pool maintenance, and graceful shutdown with a deadline.
//!
//! The connection cap follows mini-redis `src/server.rs`: a semaphore permit is taken
//! before each `accept` and travels with the connection, so at the cap the listener stops
//! accepting (the kernel backlog queues) instead of failing requests.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::config::ServeConfig;
use crate::http::{router, AppState, SIGNATURE_WINDOW_SECS};
use crate::pool::{self, DbPool};
use crate::{migrate, store};

/// A TCP stream that holds a connection permit until it is dropped.
pub struct CappedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
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

/// A listener that accepts at most `permits` simultaneous connections.
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                break p;
            }
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        CappedStream {
                            inner: stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Per-connection errors (reset before accept) are harmless; others
                    // (out of file descriptors) get a pause so the loop does not spin.
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

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
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
    let report = migrate::run_with_config(cfg.database_url.pg_config()).await?;
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
    };
    let app = router(state);
    let tcp = TcpListener::bind(SocketAddr::new(cfg.bind, cfg.port)).await?;
    let addr = tcp.local_addr()?;
    let listener = CappedListener {
        inner: tcp,
        permits: Arc::new(Semaphore::new(cfg.max_connections)),
    };
    let (stop, stop_rx) = watch::channel(false);
    tracing::info!(addr = %addr, max_connections = cfg.max_connections, "listening");

    let maintenance = tokio::spawn(pool::maintain(pool.clone(), stop_rx.clone()));
    let janitor = tokio::spawn(janitor(pool.clone(), stop_rx.clone()));
    let grace = cfg.shutdown_grace;
    let task_pool = pool.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
        let deadline = async {
            stopped(stop_rx).await;
            tracing::info!(grace_secs = grace.as_secs_f64(), "shutting down");
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = server => r.map_err(anyhow::Error::from),
            _ = deadline => {
                tracing::warn!("shutdown grace expired; dropping unfinished requests");
                Ok(())
            }
        };
        maintenance.abort();
        janitor.abort();
        task_pool.close();
        tracing::info!("stopped");
        result
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
