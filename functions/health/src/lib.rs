//! `GET /health` and `GET /api/v1/health`: liveness in the IETF health-check shape.
//! The handler is platform-neutral; the two entry points below only hand requests to an adapter.

use edge_core::{health, respond, Ctx, Error, Function, Platform, Request, Response};

/// The health function.
pub struct Health;

impl Function for Health {
    const NAME: &'static str = "health";

    async fn handle<P: Platform>(req: Request, _ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        if !matches!(req.uri().path(), "/health" | "/api/v1/health") {
            return Err(Error::NotFound);
        }
        respond::require_get(&req)?;
        Ok(health::liveness(Self::NAME, env!("CARGO_PKG_VERSION")))
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(Health);

#[cfg(feature = "cloudflare")]
edge_worker::export!(Health);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::memory::{block_on, MemoryPlatform};
    use edge_core::{serve, Bytes};
    use http::{Method, StatusCode};

    fn call(method: Method, path: &str) -> Response {
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().unwrap_or_default();
        block_on(serve::<Health, _>(
            &MemoryPlatform::default(),
            &Ok(Default::default()),
            req,
            None,
        ))
    }

    #[test]
    fn both_paths_answer_pass() {
        for path in ["/health", "/api/v1/health"] {
            let resp = call(Method::GET, path);
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            assert_eq!(body["status"], "pass");
        }
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let resp = call(Method::POST, "/health");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[http::header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn other_paths_are_404() {
        assert_eq!(
            call(Method::GET, "/healthz").status(),
            StatusCode::NOT_FOUND
        );
    }
}
