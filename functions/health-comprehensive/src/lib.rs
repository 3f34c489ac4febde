//! `GET /health/comprehensive`: every dependency with a measured value, cached 10 s; outbound
//! probes of the AI providers and Evolution for an admin with `?probe=true`. The report lives
//! in `edge_core::health::comprehensive`; this crate names the function and its build (crate
//! version, and the git commit that `build.rs` bakes in) and hands requests to an adapter.

use edge_core::health::comprehensive::{self, Build};
use edge_core::{respond, Ctx, Error, Function, Platform, Request, Response};

/// The comprehensive health function.
pub struct HealthComprehensive;

/// This build: what `build:info`, `version` and `releaseId` report.
const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("GIT_COMMIT"),
};

impl Function for HealthComprehensive {
    const NAME: &'static str = "health-comprehensive";

    fn misconfigured(_request_id: &str, now_ms: u64) -> Response {
        comprehensive::misconfigured(Self::NAME, now_ms)
    }

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        if req.uri().path() != "/health/comprehensive" {
            return Err(Error::NotFound);
        }
        respond::require_get(&req)?;
        comprehensive::report(&req, ctx, BUILD).await
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(HealthComprehensive);

#[cfg(feature = "cloudflare")]
edge_worker::export!(HealthComprehensive);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::config::load;
    use edge_core::memory::{block_on, MemoryPlatform};
    use edge_core::{serve, Bytes};
    use http::{Method, StatusCode};

    fn call(method: Method, path: &str) -> Response {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        p.vars.set(
            "admin_token",
            "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
        );
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().unwrap_or_default();
        let config = load(&p, HealthComprehensive::NAME, &[]);
        block_on(serve::<HealthComprehensive, _>(&p, &config, req, None))
    }

    #[test]
    fn it_reports_its_build_on_its_own_path_only() {
        assert_eq!(
            call(Method::GET, "/health/comp").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(Method::DELETE, "/health/comprehensive").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let resp = call(Method::GET, "/health/comprehensive");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        let commit = body["releaseId"].as_str().unwrap_or_default();
        assert!(
            commit == "unknown"
                || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{commit}"
        );
    }
}
