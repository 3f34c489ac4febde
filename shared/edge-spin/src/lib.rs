//! Spin adapter: the only crate that depends on spin-sdk. It implements the edge-core ports on
//! Spin's host APIs and converts Spin's requests and responses to and from `http` types.
//!
//! Compiled for `wasm32-wasip2` only; on any other target the crate is empty.
#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

mod platform;

pub use platform::SpinPlatform;

use edge_core::{Bytes, Function};

/// Serves one request with function `F` on Spin. The entry point of every Spin component.
pub async fn serve<F: Function>(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, Bytes::from(body));
    let platform = SpinPlatform::new();
    let resp = edge_core::serve::<F, _>(&platform, req).await;
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.to_vec())
}
