//! The wrapper every function runs inside: request id, error mapping, security headers and
//! the access log line, the same for every function on every platform.

use http::{header, HeaderMap, HeaderName, HeaderValue, Method};

use crate::log::{self, Access};
use crate::ports::Platform;
use crate::{request_id, Bytes, Error, Request, Response};

/// An edge function: a name for logs and one handler.
pub trait Function {
    /// Name used in log lines (`fn`) and the service id.
    const NAME: &'static str;

    /// Handles one request. Errors become structured responses in [`serve`].
    #[allow(async_fn_in_trait)]
    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error>;
}

/// What a handler gets besides the request.
pub struct Ctx<'a, P: Platform> {
    /// The platform's ports.
    pub platform: &'a P,
    /// The id of this request, echoed in `X-Request-ID` and every log line.
    pub request_id: String,
    /// The function's name.
    pub function: &'static str,
}

/// Headers set on every response, errors and 404s included. Each one says why.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    // Two years, subdomains, preload-list eligible: never talk to us over plain HTTP.
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    // These are JSON APIs: nothing may load or frame anything from a response.
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    // Browsers must honour Content-Type, not guess it.
    ("x-content-type-options", "nosniff"),
    // Legacy framing protection for browsers without CSP frame-ancestors.
    ("x-frame-options", "DENY"),
    // URLs may carry ids; never leak them to other sites.
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    // No browser feature is needed by a JSON API.
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()",
    ),
    // The legacy XSS auditor causes more harm than good; modern advice is to disable it.
    ("x-xss-protection", "0"),
];

/// Applies the security headers, a default `Cache-Control: no-store` (a handler may set a
/// shorter cache policy itself) and removes headers that advertise the stack.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.remove(header::SERVER);
    headers.remove("x-powered-by");
}

/// Runs function `F` on `req` with `platform` and returns the final response. Never fails:
/// every error becomes a structured response, and one access line is logged per request.
pub async fn serve<F: Function, P: Platform>(platform: &P, req: Request) -> Response {
    let started = platform.clock().now_unix_ms();
    let inbound_id = req
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| request_id::is_safe(v))
        .map(str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();

    let (request_id, result) =
        match inbound_id.map_or_else(|| request_id::generate(platform.random()), Ok) {
            Ok(id) => {
                let ctx = Ctx {
                    platform,
                    request_id: id,
                    function: F::NAME,
                };
                let result = F::handle(req, &ctx).await;
                (ctx.request_id, result)
            }
            // Without randomness we cannot even name the request; answer 503 under a fixed id.
            Err(err) => ("unavailable".to_owned(), Err(Error::from(err))),
        };

    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            if let Some(cause) = err.log_cause() {
                let mut fields = serde_json::Map::new();
                fields.insert("status".into(), err.status().as_u16().into());
                fields.insert("cause".into(), cause.into());
                log::event(
                    platform.log(),
                    platform.clock().now_unix_ms(),
                    log::Level::Error,
                    F::NAME,
                    &request_id,
                    "request_failed",
                    fields,
                );
            }
            err.into_response(&request_id)
        }
    };

    if method == Method::HEAD {
        *resp.body_mut() = Bytes::new();
    }
    let headers = resp.headers_mut();
    apply_security_headers(headers);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(request_id::HEADER), value);
    }

    let finished = platform.clock().now_unix_ms();
    log::access(
        platform.log(),
        &Access {
            ts_ms: started,
            function: F::NAME,
            request_id: &request_id,
            method: method.as_str(),
            path: &path,
            status: resp.status().as_u16(),
            duration_ms: finished.saturating_sub(started),
        },
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;
    use crate::respond;
    use http::StatusCode;

    struct Echo;
    impl Function for Echo {
        const NAME: &'static str = "echo";
        async fn handle<P: Platform>(req: Request, _ctx: &Ctx<'_, P>) -> Result<Response, Error> {
            match req.uri().path() {
                "/ok" => Ok(respond::json(
                    StatusCode::OK,
                    &serde_json::json!({"ok": true}),
                )),
                "/down" => Err(Error::Unavailable {
                    cause: "proxy timed out".into(),
                }),
                _ => Err(Error::NotFound),
            }
        }
    }

    fn get(path: &str) -> Request {
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = path.parse().unwrap_or_default();
        req
    }

    async fn run(req: Request) -> (Response, MemoryPlatform) {
        let platform = MemoryPlatform::default();
        let resp = serve::<Echo, _>(&platform, req).await;
        (resp, platform)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        crate::memory::block_on(f)
    }

    #[test]
    fn security_headers_are_on_success_and_error_responses() {
        for path in ["/ok", "/missing", "/down"] {
            let (resp, _) = block_on(run(get(path)));
            for (name, _) in SECURITY_HEADERS {
                assert!(
                    resp.headers().contains_key(*name),
                    "{name} missing on {path}"
                );
            }
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
            assert!(!resp.headers().contains_key(header::SERVER));
        }
    }

    #[test]
    fn a_safe_inbound_request_id_is_echoed() {
        let mut req = get("/ok");
        req.headers_mut().insert(
            request_id::HEADER,
            HeaderValue::from_static("caller-id-123"),
        );
        let (resp, _) = block_on(run(req));
        assert_eq!(resp.headers()[request_id::HEADER], "caller-id-123");
    }

    #[test]
    fn an_unsafe_inbound_request_id_is_replaced() {
        let mut req = get("/ok");
        req.headers_mut()
            .insert(request_id::HEADER, HeaderValue::from_static("x y"));
        let (resp, _) = block_on(run(req));
        let id = resp.headers()[request_id::HEADER]
            .to_str()
            .unwrap_or_default();
        assert_ne!(id, "x y");
        assert!(request_id::is_safe(id));
    }

    #[test]
    fn errors_become_the_structured_body_with_the_same_request_id() {
        let (resp, _) = block_on(run(get("/missing")));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let id = resp.headers()[request_id::HEADER]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["error"]["request_id"], id.as_str());
    }

    #[test]
    fn one_access_line_per_request_and_the_cause_of_a_503_is_logged_once() {
        let (_, platform) = block_on(run(get("/down")));
        let lines = platform.log.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("proxy timed out"));
        assert!(lines[1].contains(r#""status":503"#));
    }

    #[test]
    fn head_responses_have_no_body() {
        let mut req = get("/ok");
        *req.method_mut() = Method::HEAD;
        let (resp, _) = block_on(run(req));
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.body().is_empty());
    }

    #[test]
    fn query_strings_never_reach_the_log() {
        let (_, platform) = block_on(run(get("/ok?token=secret-token-value")));
        assert!(platform
            .log
            .lines()
            .iter()
            .all(|l| !l.contains("secret-token-value")));
    }
}
