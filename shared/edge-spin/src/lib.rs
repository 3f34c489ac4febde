//! Spin adapter: the only crate that depends on spin-sdk. It implements the edge-core ports on
//! Spin's host APIs and converts Spin's requests and responses to and from `http` types.
//!
//! Compiled for `wasm32-wasip2` only; on any other target the crate is empty.
#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

mod platform;

pub use platform::SpinPlatform;

use edge_core::{Bytes, Function};

/// Header in which Spin passes the client's socket address (`ip:port`). Spin sets it itself.
const CLIENT_ADDR: &str = "spin-client-addr";

/// Serves one request with function `F` on Spin. The entry point of every Spin component.
/// Spin instantiates the component per request, so configuration is loaded (and validated)
/// here every time: "once per instance" is once per request on Spin.
pub async fn serve<F: Function>(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, Bytes::from(body));
    let peer = req
        .headers()
        .get(CLIENT_ADDR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip());
    let platform = SpinPlatform::new();
    let config = edge_core::config::load(&platform, F::NAME);
    let resp = edge_core::serve::<F, _>(&platform, &config, req, peer).await;
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.to_vec())
}

/// Exports function `$function` as this component's HTTP handler:
/// `#[cfg(feature = "spin")] edge_spin::export!(Health);` in the function crate, which must
/// depend on `spin-sdk` and `http` itself (the handler macro expands there).
#[macro_export]
macro_rules! export {
    ($function:ident) => {
        /// Spin entry point (`wasm32-wasip2`): every request goes to `edge_spin::serve`.
        #[allow(unsafe_code)] // the export macro generates the component ABI glue
        mod spin_entry {
            #[::spin_sdk::http_component]
            async fn handle(
                req: ::http::Request<::std::vec::Vec<u8>>,
            ) -> ::http::Response<::std::vec::Vec<u8>> {
                ::edge_spin::serve::<super::$function>(req).await
            }
        }
    };
}
