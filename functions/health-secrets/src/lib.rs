//! `GET /health/secrets`: the status of every edge secret without values (configured, format,
//! strength and class, rotation period, rotated-at, due date, overdue days) and a summary with
//! the actions needed. Admin only when deployed (`ADMIN_TOKEN` or an admin session), open in
//! development; every read is logged and audited. The report lives in
//! `edge_core::health::secrets`; this crate names the function and hands requests to an adapter.

use edge_core::health::secrets;
use edge_core::{respond, Ctx, Error, Function, Platform, Request, Response};

/// The secrets health function.
pub struct HealthSecrets;

impl Function for HealthSecrets {
    const NAME: &'static str = "health-secrets";

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        if req.uri().path() != "/health/secrets" {
            return Err(Error::NotFound);
        }
        respond::require_get(&req)?;
        secrets::report(&req, ctx).await
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(HealthSecrets);

#[cfg(feature = "cloudflare")]
edge_worker::export!(HealthSecrets);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::config::load;
    use edge_core::memory::{block_on, MemoryPlatform};
    use edge_core::{serve, Bytes};
    use http::{Method, StatusCode};

    fn call(env: &str, method: Method, path: &str) -> Response {
        let p = MemoryPlatform::default();
        p.vars.set("environment", env);
        p.vars.set("trusted_hosts", "localhost");
        p.vars.set(
            "admin_token",
            "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
        );
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = format!("http://localhost{path}")
            .parse()
            .unwrap_or_default();
        let config = load(&p, HealthSecrets::NAME, &[]);
        block_on(serve::<HealthSecrets, _>(&p, &config, req, None))
    }

    #[test]
    fn open_in_development_and_a_plain_401_in_production() {
        assert_eq!(
            call("development", Method::GET, "/health/secrets").status(),
            StatusCode::OK
        );
        assert_eq!(
            call("production", Method::GET, "/health/secrets").status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call("development", Method::POST, "/health/secrets").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call("development", Method::GET, "/health/x").status(),
            StatusCode::NOT_FOUND
        );
    }
}
