//! `GET /health/readiness`: whether this instance can serve real traffic now (configuration,
//! a key-value round trip, the proxy and its Postgres), answered within 2 s: 200 `pass`, or
//! 503 `fail` with `Retry-After` naming the failing component. The check lives in
//! `edge_core::health::readiness`; this crate names the function and hands requests to an
//! adapter.

use edge_core::health::readiness;
use edge_core::{respond, Ctx, Error, Function, Platform, Request, Response};

/// The readiness function.
pub struct HealthReadiness;

impl Function for HealthReadiness {
    const NAME: &'static str = "health-readiness";

    fn misconfigured(_request_id: &str, now_ms: u64) -> Response {
        readiness::misconfigured(Self::NAME, now_ms)
    }

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        if req.uri().path() != "/health/readiness" {
            return Err(Error::NotFound);
        }
        respond::require_get(&req)?;
        Ok(readiness::check(ctx).await)
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(HealthReadiness);

#[cfg(feature = "cloudflare")]
edge_worker::export!(HealthReadiness);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::config::{load, Misconfigured};
    use edge_core::memory::{block_on, MemoryPlatform};
    use edge_core::{serve, Bytes};
    use http::{Method, StatusCode};

    fn call(platform: &MemoryPlatform, method: Method, path: &str) -> Response {
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().unwrap_or_default();
        let config = load(platform, HealthReadiness::NAME, &[]);
        block_on(serve::<HealthReadiness, _>(platform, &config, req, None))
    }

    #[test]
    fn only_get_on_its_own_path() {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        assert_eq!(
            call(&p, Method::GET, "/health/ready").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&p, Method::POST, "/health/readiness").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        // No proxy configured here: not ready, in the health shape.
        let resp = call(&p, Method::GET, "/health/readiness");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            "application/health+json"
        );
    }

    #[test]
    fn an_invalid_configuration_answers_in_the_health_shape() {
        let p = MemoryPlatform::default();
        let bad = Err(Misconfigured { problems: vec![] });
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = "/health/readiness".parse().unwrap_or_default();
        let resp = block_on(serve::<HealthReadiness, _>(&p, &bad, req, None));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["checks"]["config:valid"][0]["status"], "fail");
        assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
        assert!(resp.headers().contains_key("strict-transport-security"));
    }
}
