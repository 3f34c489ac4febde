//! Test-only probe of the key-value port: `GET|PUT|DELETE /__kv/value?key=K[&expires_in_ms=N]`
//! and `POST /__kv/incr?key=K&delta=N`; `GET /__kv/fail` answers an unexpected error (500), so
//! the suite can check error reporting. Contract violations answer 422 so the suite can tell
//! them from outages (503). Built and served only by the e2e suite, never deployed.

use edge_core::ports::{KeyValue, PortError};
use edge_core::{respond, Bytes, Ctx, Error, Function, Platform, Request, Response};
use http::{Method, StatusCode};

/// The probe function.
pub struct KvProbe;

fn query(req: &Request, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn status_only(status: StatusCode) -> Response {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}

fn port_result<T>(result: Result<T, PortError>) -> Result<Result<T, Response>, Error> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(PortError::Contract(why)) => Ok(Err(respond::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "contract": why }),
        ))),
        Err(err) => Err(err.into()),
    }
}

impl Function for KvProbe {
    const NAME: &'static str = "kv-probe";
    // The probe measures the store itself: 640 concurrent increments must not meet a 429.
    const RATE_LIMITED: bool = false;
    // The suite puts a secret in a logged path and checks it never reaches the logs.
    const EXTRA_VARIABLES: &'static [&'static str] = &["ADMIN_TOKEN"];

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        if req.uri().path() == "/__kv/fail" {
            // An unexpected error on purpose: the suite checks it reaches (a fake) Sentry.
            return Err(Error::Unexpected {
                cause: "kv-probe: deliberate failure for the error-reporting test".into(),
            });
        }
        let key = query(&req, "key").ok_or(Error::bad_request("missing_key", "key= required"))?;
        let kv = ctx.platform.kv();
        match (req.method().clone(), req.uri().path()) {
            (Method::GET, "/__kv/value") => Ok(match port_result(kv.get(&key).await)? {
                Ok(Some(v)) => Response::new(Bytes::from(v)),
                Ok(None) => status_only(StatusCode::NOT_FOUND),
                Err(resp) => resp,
            }),
            (Method::PUT, "/__kv/value") => {
                let expires_at = match query(&req, "expires_in_ms") {
                    Some(ms) => {
                        let ms: i64 = ms
                            .parse()
                            .map_err(|_| Error::bad_request("bad_expiry", "integer ms"))?;
                        let now = ctx.platform.clock().now_unix_ms() as i64;
                        Some((now + ms).max(1) as u64)
                    }
                    None => None,
                };
                let body = req.body().clone();
                Ok(match port_result(kv.set(&key, &body, expires_at).await)? {
                    Ok(()) => status_only(StatusCode::NO_CONTENT),
                    Err(resp) => resp,
                })
            }
            (Method::DELETE, "/__kv/value") => Ok(match port_result(kv.delete(&key).await)? {
                Ok(()) => status_only(StatusCode::NO_CONTENT),
                Err(resp) => resp,
            }),
            (Method::POST, "/__kv/incr") => {
                let delta: i64 = query(&req, "delta")
                    .unwrap_or_else(|| "1".into())
                    .parse()
                    .map_err(|_| Error::bad_request("bad_delta", "integer delta"))?;
                Ok(match port_result(kv.increment(&key, delta, None).await)? {
                    Ok(n) => respond::json(StatusCode::OK, &serde_json::json!({ "value": n })),
                    Err(resp) => resp,
                })
            }
            (Method::GET, "/__kv/counter") => Ok(match port_result(kv.counter(&key).await)? {
                Ok(n) => respond::json(StatusCode::OK, &serde_json::json!({ "value": n })),
                Err(resp) => resp,
            }),
            _ => Err(Error::NotFound),
        }
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(KvProbe);

#[cfg(feature = "cloudflare")]
edge_worker::export!(KvProbe);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::memory::{block_on, MemoryPlatform};
    use edge_core::serve;

    fn call(p: &MemoryPlatform, method: Method, uri: &str, body: &str) -> Response {
        let mut req = Request::new(Bytes::from(body.to_owned()));
        *req.method_mut() = method;
        *req.uri_mut() = uri.parse().unwrap_or_default();
        block_on(serve::<KvProbe, _>(p, &Ok(Default::default()), req, None))
    }

    #[test]
    fn probe_round_trips_values_and_counters_on_the_memory_ports() {
        let p = MemoryPlatform::default();
        assert_eq!(
            call(&p, Method::PUT, "/__kv/value?key=a", "v").status(),
            204
        );
        assert_eq!(call(&p, Method::GET, "/__kv/value?key=a", "").body(), "v");
        assert_eq!(
            call(&p, Method::POST, "/__kv/incr?key=ctr:n&delta=2", "").status(),
            200
        );
        assert_eq!(call(&p, Method::POST, "/__kv/incr?key=a", "").status(), 422);
    }
}
