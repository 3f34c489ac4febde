//! Cloudflare Workers adapter: the only crate that depends on `worker`. It implements the
//! edge-core ports on the Workers runtime and converts its requests and responses to and from
//! `http` types.
//!
//! Key-value goes to a Durable Object ([`store`]), not Workers KV: Workers KV is eventually
//! consistent (a minute or more between locations) and takes one write per second per key, so
//! it can hold neither rate counters nor logout state. Compiled for `wasm32-unknown-unknown`
//! only; on any other target the crate is empty.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

mod platform;
pub mod store;

pub use platform::WorkerPlatform;

use edge_core::{Bytes, Function};

/// Header in which Cloudflare passes the client's address; its edge overwrites any value a
/// client sends.
const CONNECTING_IP: &str = "cf-connecting-ip";

thread_local! {
    /// The configuration of this isolate, loaded and validated on its first request. A Worker's
    /// vars and secrets only change with a new deployment, which starts new isolates.
    static CONFIG: std::cell::OnceCell<std::rc::Rc<edge_core::config::ConfigState>> =
        const { std::cell::OnceCell::new() };
}

/// A `worker::Request` built through web-sys directly. `worker::RequestInit` would link the
/// conversion of every Cloudflare `cf` property (image resizing, Polish, …) into each Worker,
/// for requests that never set one: in `health-secrets` 18.5 KB of raw wasm, 7.7 KB gzip.
fn outbound(
    url: &str,
    method: &str,
    headers: &worker::Headers,
    body: Option<&[u8]>,
) -> worker::Result<worker::Request> {
    let init = worker::web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.0.as_ref());
    if let Some(body) = body {
        init.set_body(&worker::js_sys::Uint8Array::from(body).into());
    }
    Ok(worker::web_sys::Request::new_with_str_and_init(url, &init)?.into())
}

/// Serves one request with function `F` on Workers: the entry point of every function Worker.
///
/// The whole request runs inside `ctx.waitUntil`, which starts it at once: the response comes
/// back through a channel as soon as it exists, and the request's deferred work
/// ([`edge_core::Ctx::defer`]) continues after it, with the isolate kept alive for it.
pub async fn serve<F: Function>(
    mut req: worker::Request,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<worker::Response> {
    let req = to_http_request(&mut req).await?;
    let peer = req
        .headers()
        .get(CONNECTING_IP)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (tx, rx) = futures_channel::oneshot::channel();
    ctx.wait_until(async move {
        let platform = WorkerPlatform::new(env);
        let config = CONFIG.with(|cell| {
            cell.get_or_init(|| {
                std::rc::Rc::new(edge_core::config::load(
                    &platform,
                    F::NAME,
                    F::EXTRA_VARIABLES,
                ))
            })
            .clone()
        });
        let (resp, deferred) =
            edge_core::serve::serve_deferred::<F, _>(&platform, &config, req, peer).await;
        let _ = tx.send(resp);
        for work in deferred {
            work.await;
        }
    });
    let resp = rx.await.map_err(|_| {
        worker::Error::RustError("the request task ended without a response".into())
    })?;
    from_http_response(resp)
}

async fn to_http_request(req: &mut worker::Request) -> worker::Result<edge_core::Request> {
    // A request without a body (every GET) has none to read: reading it anyway would cost an
    // `arrayBuffer()` promise and a turn of the event loop per request.
    let body = match req.inner().body() {
        Some(_) => Bytes::from(req.bytes().await?),
        None => Bytes::new(),
    };
    let mut out = http::Request::new(body);
    *out.method_mut() = http::Method::from_bytes(req.method().as_ref().as_bytes())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    // The JS URL string, parsed by `http`: `Request::url()` would parse it with the `url`
    // crate, whose IDNA tables alone cost ~100 KB of every Worker.
    *out.uri_mut() = req
        .inner()
        .url()
        .parse()
        .map_err(|e: http::uri::InvalidUri| worker::Error::RustError(e.to_string()))?;
    *out.headers_mut() = http::HeaderMap::from(req.headers());
    Ok(out)
}

/// Runs the scheduled job of `F` (a cron trigger), kept alive by `waitUntil`; its config is
/// loaded like a request's, and a misconfigured instance logs and skips the job.
pub fn serve_scheduled<F: edge_core::serve::Scheduled>(
    env: worker::Env,
    ctx: worker::ScheduleContext,
) {
    ctx.wait_until(async move {
        let platform = WorkerPlatform::new(env);
        let config = CONFIG.with(|cell| {
            cell.get_or_init(|| {
                std::rc::Rc::new(edge_core::config::load(
                    &platform,
                    F::NAME,
                    F::EXTRA_VARIABLES,
                ))
            })
            .clone()
        });
        let Ok(cfg) = config.as_ref() else { return };
        let id = edge_core::request_id::generate(edge_core::Platform::random(&platform))
            .unwrap_or_else(|_| "scheduled".into());
        let ctx = edge_core::Ctx::new(&platform, id, F::NAME, cfg);
        F::scheduled(&ctx).await;
        for work in ctx.take_deferred() {
            work.await;
        }
    });
}

fn from_http_response(resp: edge_core::Response) -> worker::Result<worker::Response> {
    let (parts, body) = resp.into_parts();
    Ok(worker::Response::from_bytes(body.to_vec())?
        .with_status(parts.status.as_u16())
        .with_headers(worker::Headers::from(&parts.headers)))
}

/// Exports function `$function` as this Worker's fetch handler:
/// `#[cfg(feature = "cloudflare")] edge_worker::export!(Health);` in the function crate, which
/// must depend on `worker` itself (the event macro expands there).
#[macro_export]
macro_rules! export {
    ($function:ident) => {
        /// Workers entry point (`wasm32-unknown-unknown`): every request goes to
        /// `edge_worker::serve`.
        #[allow(unsafe_code)] // the export macro generates the wasm-bindgen glue
        mod worker_entry {
            #[::worker::event(fetch)]
            async fn fetch(
                req: ::worker::Request,
                env: ::worker::Env,
                ctx: ::worker::Context,
            ) -> ::worker::Result<::worker::Response> {
                ::edge_worker::serve::<super::$function>(req, env, ctx).await
            }
        }
    };
}

/// Exports the scheduled (cron) job of `$function` (which implements
/// `edge_core::serve::Scheduled`): `edge_worker::export_scheduled!(Webhook);` beside `export!`.
#[macro_export]
macro_rules! export_scheduled {
    ($function:ident) => {
        /// Workers cron entry point: runs the function's scheduled job.
        #[allow(unsafe_code)] // the event macro generates the wasm-bindgen glue
        mod worker_scheduled {
            #[::worker::event(scheduled)]
            async fn scheduled(
                _event: ::worker::ScheduledEvent,
                env: ::worker::Env,
                ctx: ::worker::ScheduleContext,
            ) {
                ::edge_worker::serve_scheduled::<super::$function>(env, ctx)
            }
        }
    };
}
