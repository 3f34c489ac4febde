//! Spin adapter: the only crate that depends on spin-sdk. It implements the edge-core ports on
//! Spin's host APIs and converts Spin's requests and responses to and from `http` types.
//!
//! Components export the WASIp3 HTTP handler (`wasi:http/handler@0.3.0-rc-2026-03-15`, through
//! spin-sdk 6.0's `#[http_service]`). Spin 4 **reuses** a WASIp3 instance for many requests
//! (`spin up --max-instance-reuse-count`, default 128, up to 16 at once, dropped after
//! `--idle-instance-timeout`, default 1 s), where a WASIp2 component was instantiated for every
//! request. So the configuration is read and validated once per instance, as on Workers, and no
//! longer on every request: that was most of a request's cost on Spin (bench/edge.md).
//!
//! Compiled for `wasm32-wasip2` only; on any other target the crate is empty.
#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

mod platform;

pub use platform::SpinPlatform;

use std::cell::OnceCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use edge_core::config::ConfigState;
use edge_core::{Bytes, Function};
use http_body_util::Full;
use spin_sdk::http::body::IncomingBodyExt;

/// Header in which Spin passes the client's socket address (`ip:port`). Spin sets it itself.
const CLIENT_ADDR: &str = "spin-client-addr";

thread_local! {
    /// The configuration of this instance, loaded and validated by its first request. Spin
    /// reads variables from its providers when it starts; an instance lives for at most
    /// `--max-instance-reuse-count` requests, so no instance outlives a change by much.
    static CONFIG: OnceCell<Rc<ConfigState>> = const { OnceCell::new() };
}

/// The configuration of this instance: loaded on its first request, the same afterwards.
async fn config<F: Function>() -> Rc<ConfigState> {
    if let Some(config) = CONFIG.with(|cell| cell.get().cloned()) {
        return config;
    }
    // Variables are async host calls on WASIp3 and the variables port is not: fetch every
    // name the loader reads first, then load from them. Two requests that start together in
    // a new instance may both fetch; the first to finish sets the configuration.
    let vars = platform::fetch_variables(&edge_core::config::variables_read(
        F::NAME,
        F::EXTRA_VARIABLES,
    ))
    .await;
    // A variable Spin failed to read (a provider such as Vault unreachable) fails this load
    // closed; it is not kept, so the instance's next request tries again.
    let transient = vars.values().any(Result::is_err);
    let config = Rc::new(edge_core::config::load(
        &SpinPlatform::with_variables(vars),
        F::NAME,
        F::EXTRA_VARIABLES,
    ));
    if transient {
        return config;
    }
    CONFIG.with(|cell| cell.get_or_init(|| config).clone())
}

/// Serves one request with function `F` on Spin: the entry point of every Spin component.
///
/// The request is one future that hands its response through a channel as soon as it exists
/// and then runs the request's deferred work ([`edge_core::Ctx::defer`]). The export polls it
/// in place until the response arrives, and only then spawns what is left of it
/// (`wit_bindgen::spawn`), if anything is. Spawning it at the start instead cost every request
/// a round trip through the host: the export's first poll found no response and yielded to
/// Spin before the spawned task ran. Spin 4.0 keeps the instance for deferred work only
/// `--idle-instance-timeout` after the response (default 1 s, which cuts the webhook's AI
/// answer short): hosts run `spin up` with `SPIN_UP_FLAGS` (scripts/lib.sh).
pub async fn serve<F: Function>(req: spin_sdk::http::Request) -> http::Response<Full<Bytes>> {
    let (tx, mut rx) = futures_channel::oneshot::channel();
    let mut work = Box::pin(async move {
        let platform = SpinPlatform::new();
        let config = config::<F>().await;
        let (resp, head, deferred) = match to_http_request(req).await {
            Ok(req) => {
                let peer = req
                    .headers()
                    .get(CLIENT_ADDR)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<std::net::SocketAddr>().ok())
                    .map(|a| a.ip());
                let head = req.method() == http::Method::HEAD;
                let (resp, deferred) =
                    edge_core::serve::serve_deferred::<F, _>(&platform, &config, req, peer).await;
                (resp, head, deferred)
            }
            // The body could not be read (client went away mid-upload): answer through the
            // wrapper so the error is structured.
            Err(_) => {
                let mut bad = edge_core::Request::new(Bytes::new());
                *bad.uri_mut() = http::Uri::from_static("/");
                let (resp, deferred) = edge_core::serve::serve_deferred::<Unreadable, _>(
                    &platform, &config, bad, None,
                )
                .await;
                (resp, false, deferred)
            }
        };
        let _ = tx.send(respond(resp, head));
        for work in deferred {
            work.await;
        }
    });
    let mut finished = false;
    let answer = std::future::poll_fn(|cx| {
        if !finished {
            finished = work.as_mut().poll(cx).is_ready();
        }
        match std::pin::Pin::new(&mut rx).poll(cx) {
            Poll::Ready(answer) => Poll::Ready(answer.ok()),
            // Ended without answering: cannot happen (it always sends before it ends).
            Poll::Pending if finished => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    if !finished {
        spin_sdk::wit_bindgen::spawn(work);
    }
    answer.unwrap_or_else(|| {
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

/// Answers every request it gets with 400 `unreadable_request` (the request could not be
/// converted); used only by [`serve`].
struct Unreadable;

impl Function for Unreadable {
    const NAME: &'static str = "unreadable";
    const RATE_LIMITED: bool = false;
    async fn handle<P: edge_core::Platform>(
        _: edge_core::Request,
        _: &edge_core::Ctx<'_, P>,
    ) -> Result<edge_core::Response, edge_core::Error> {
        Err(edge_core::Error::bad_request(
            "unreadable_request",
            "The request could not be read.",
        ))
    }
}

async fn to_http_request(req: spin_sdk::http::Request) -> Result<edge_core::Request, String> {
    let (parts, body) = req.into_parts();
    // Reading an empty body stream costs host calls, which every GET paid. A GET, HEAD or
    // OPTIONS without Content-Length or Transfer-Encoding has no body in HTTP/1.1 (RFC 9112
    // §6.3); over HTTP/2 it could still carry one, which those handlers would ignore anyway.
    // Every other method is read.
    let bodiless_method = matches!(
        parts.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let has_body = !bodiless_method
        || parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let body = if has_body {
        body.bytes()
            .await
            .map_err(|e| format!("reading the body: {e:?}"))?
    } else {
        Bytes::new()
    };
    Ok(http::Request::from_parts(parts, body))
}

/// `resp` as Spin takes it, always with a `Content-Length` (never chunked): no length on
/// a HEAD answer (its body is empty but would be the GET's size), none on statuses that never
/// carry a body.
pub fn respond(resp: edge_core::Response, head: bool) -> http::Response<Full<Bytes>> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    let bodiless = matches!(parts.status.as_u16(), 204 | 304);
    if head || bodiless {
        parts.headers.remove(http::header::CONTENT_LENGTH);
    } else {
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
    }
    let body = if head { Bytes::new() } else { body };
    http::Response::from_parts(parts, Full::new(body))
}

/// Exports function `$function` as this component's HTTP handler:
/// `#[cfg(feature = "spin")] edge_spin::export!(Health);` in the function crate, which must
/// depend on `spin-sdk` itself (the handler macro expands there).
#[macro_export]
macro_rules! export {
    ($function:ident) => {
        /// Spin entry point (`wasm32-wasip2`, WASIp3 handler): every request goes to
        /// `edge_spin::serve`.
        #[allow(unsafe_code)] // the export macro generates the component ABI glue
        mod spin_entry {
            #[::spin_sdk::http_service]
            async fn handle(
                req: ::spin_sdk::http::Request,
            ) -> ::spin_sdk::http::Response<$crate::ResponseBody> {
                ::edge_spin::serve::<super::$function>(req).await
            }
        }
    };
}

/// The body type of the responses [`serve`] returns (for [`export!`]).
pub type ResponseBody = Full<Bytes>;
