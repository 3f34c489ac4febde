//! The Worker that hosts the `EdgeKv` Durable Object class for every function Worker (they bind
//! it with `script_name`). It serves no public route: every request gets the standard 404 body.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

#[cfg(feature = "cloudflare")]
pub use edge_worker::store::EdgeKv;

/// Worker entry point: nothing is public here.
#[cfg(feature = "cloudflare")]
#[allow(unsafe_code)] // the export macro generates the wasm-bindgen glue
mod worker_entry {
    #[worker::event(fetch)]
    async fn fetch(
        _req: worker::Request,
        _env: worker::Env,
        _ctx: worker::Context,
    ) -> worker::Result<worker::Response> {
        worker::Response::error(
            r#"{"error":{"code":"not_found","message":"No such route."}}"#,
            404,
        )
    }
}
