//! Benchmark baseline: answers every request with the same liveness body as `functions/health`,
//! built by the same core function, but without the `serve` wrapper (no request id, config,
//! rate limit, CORS, headers or log line). `scripts/bench-edge` compares the two on wrangler.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

/// Workers entry point: the bare handler.
#[cfg(feature = "cloudflare")]
#[allow(unsafe_code)] // the export macro generates the wasm-bindgen glue
mod worker_entry {
    #[worker::event(fetch)]
    async fn fetch(
        _req: worker::Request,
        _env: worker::Env,
        _ctx: worker::Context,
    ) -> worker::Result<worker::Response> {
        let resp = edge_core::health::liveness("health", env!("CARGO_PKG_VERSION"));
        let (parts, body) = resp.into_parts();
        Ok(worker::Response::from_bytes(body.to_vec())?
            .with_status(parts.status.as_u16())
            .with_headers(worker::Headers::from(&parts.headers)))
    }
}
