//! The one client of the Postgres proxy (`services/pg-proxy`), used by every function that
//! needs durable data. It signs each call with `proxy-auth` (format V2: a fresh random nonce
//! per call, the proxy's host as the audience, the inbound request id for correlation),
//! bounds each call with a deadline, retries only idempotent reads (once, after a jittered
//! pause, with a new nonce), and maps failures in one place:
//!
//! | what happened | error | status |
//! |---|---|---|
//! | not configured (`PROXY_URL` / `PROXY_HMAC_KEY` unset: development only, the catalog requires both when deployed) | [`Error::Unavailable`] | 503 |
//! | unreachable, timed out, 5xx (503 from an exhausted pool included) | [`Error::Unavailable`] | 503 + `Retry-After` |
//! | a 4xx the caller did not list as expected | [`Error::Unexpected`]: the edge sent something the proxy refuses, a bug | 500 |
//! | a 2xx or an expected status whose body is not the JSON the caller expects | [`Error::Unexpected`] | 500 |

use http::{header, HeaderValue, Method, StatusCode};
use proxy_auth::{nonce_hex, sign_v2, Call, SigningKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::EdgeConfig;
use crate::ports::{Platform, Timer};
use crate::{request_id, timeout, Bytes, Ctx, Error, Request};

/// Deadline of one call when the caller gives none: long enough for an argon2 verify on a
/// busy proxy, short enough that a hung proxy answers 503 well inside a client's timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// Where the proxy is and how to sign for it, from the instance's configuration.
pub struct ProxyTarget {
    base: String,
    audience: String,
    key: SigningKey,
}

impl std::fmt::Debug for ProxyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTarget")
            .field("base", &self.base)
            .field("audience", &self.audience)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl ProxyTarget {
    /// From `PROXY_URL` (validated by the catalog: https in production) and `PROXY_HMAC_KEY`.
    pub fn from_config(cfg: &EdgeConfig) -> Result<Self, Error> {
        let settings = cfg.settings.as_ref().ok_or_else(|| Error::Unavailable {
            cause: "proxy client: no settings".into(),
        })?;
        let url = settings
            .proxy_url
            .as_ref()
            .ok_or_else(|| Error::Unavailable {
                cause: "PROXY_URL is not set: this function cannot reach the proxy".into(),
            })?;
        let secret = cfg
            .secret("PROXY_HMAC_KEY")
            .ok_or_else(|| Error::Unavailable {
                cause: "PROXY_HMAC_KEY is not set: this function cannot sign for the proxy".into(),
            })?;
        let key = SigningKey::from_hex(secret.expose()).map_err(|e| Error::Unexpected {
            cause: format!("PROXY_HMAC_KEY passed the catalog but not proxy-auth: {e}"),
        })?;
        let uri: http::Uri = url.as_str().parse().map_err(|_| Error::Unexpected {
            cause: "PROXY_URL passed the catalog but is not a URI".into(),
        })?;
        let audience = uri.host().unwrap_or_default().to_ascii_lowercase();
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            audience,
            key,
        })
    }

    /// The proxy's base URL (no trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// What the proxy answered.
#[derive(Debug)]
pub struct ProxyResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

impl ProxyResponse {
    /// The body as `T`, for a 2xx or one of the `expected` statuses; any other status is a
    /// bug on our side (the proxy refused what we sent), reported as [`Error::Unexpected`].
    pub fn json<T: DeserializeOwned>(&self, path: &str, expected: &[u16]) -> Result<T, Error> {
        if !self.status.is_success() && !expected.contains(&self.status.as_u16()) {
            let code = serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(Error::Unexpected {
                cause: format!("proxy refused {path}: {} {code}", self.status.as_u16()),
            });
        }
        serde_json::from_slice(&self.body).map_err(|e| Error::Unexpected {
            cause: format!(
                "proxy answered {path} with a body we cannot read ({}): {e}",
                self.status.as_u16()
            ),
        })
    }
}

/// One call to make.
pub struct ProxyCall<'a> {
    /// `GET` or `POST`.
    pub method: Method,
    /// Path and query, e.g. `/v1/sessions/revoked?token_id=...` (already percent-encoded).
    pub path_and_query: &'a str,
    /// JSON body for `POST`.
    pub body: Option<Vec<u8>>,
    /// Whether repeating the call is harmless (reads): only those are retried.
    pub idempotent: bool,
    /// Deadline of each attempt, milliseconds.
    pub timeout_ms: u64,
}

impl<'a> ProxyCall<'a> {
    /// An idempotent `GET` with the default deadline.
    pub fn get(path_and_query: &'a str) -> Self {
        Self {
            method: Method::GET,
            path_and_query,
            body: None,
            idempotent: true,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// A `POST` of `body` as JSON with the default deadline, not retried.
    pub fn post<B: Serialize>(path_and_query: &'a str, body: &B) -> Result<Self, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Unexpected {
            cause: format!("proxy client: encoding {path_and_query}: {e}"),
        })?;
        Ok(Self {
            method: Method::POST,
            path_and_query,
            body: Some(body),
            idempotent: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        })
    }

    /// The same call with another deadline.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
}

/// Makes `call` to the proxy for the request `ctx` serves. See the module docs for the
/// failure mapping; an `Ok` carries any status below 500.
pub async fn send<P: Platform>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    call: &ProxyCall<'_>,
) -> Result<ProxyResponse, Error> {
    let attempts = if call.idempotent { 2 } else { 1 };
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            // 50–250 ms, so a burst of instances that failed together does not retry together.
            let mut b = [0u8; 1];
            let _ = ctx.platform.random().fill(&mut b);
            ctx.platform
                .timer()
                .sleep(50 + u64::from(b[0]) * 200 / 255)
                .await;
        }
        let req = signed_request(ctx, target, call)?;
        match timeout::within(ctx.platform.timer(), call.timeout_ms, ctx.send(req)).await {
            None => last = format!("timed out after {} ms", call.timeout_ms),
            Some(Err(e)) => last = e.to_string(),
            Some(Ok(resp)) if resp.status().is_server_error() => {
                last = format!("answered {}", resp.status().as_u16());
            }
            Some(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                return Ok(ProxyResponse {
                    status: parts.status,
                    body,
                });
            }
        }
    }
    Err(Error::Unavailable {
        cause: format!(
            "proxy {} {}: {last}",
            call.method,
            path_only(call.path_and_query)
        ),
    })
}

/// Sends `call` and reads a 2xx (or one of `expected`) as `T`.
pub async fn json<P: Platform, T: DeserializeOwned>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    call: &ProxyCall<'_>,
    expected: &[u16],
) -> Result<(StatusCode, T), Error> {
    let resp = send(ctx, target, call).await?;
    let value = resp.json(path_only(call.path_and_query), expected)?;
    Ok((resp.status, value))
}

/// The path without its query (queries can carry user data; logs get the path only).
fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or_default()
}

fn signed_request<P: Platform>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    call: &ProxyCall<'_>,
) -> Result<Request, Error> {
    let mut random = [0u8; 16];
    ctx.platform.random().fill(&mut random)?;
    let nonce = nonce_hex(&random).map_err(sign_error)?;
    let body = call.body.clone().unwrap_or_default();
    // The correlation id must fit proxy-auth's alphabet; generated ids always do.
    let correlation = if proxy_auth::is_valid_request_id(&ctx.request_id) {
        ctx.request_id.clone()
    } else {
        request_id::generate(ctx.platform.random())?
    };
    let signed = sign_v2(
        &target.key,
        &Call {
            method: call.method.as_str(),
            path_and_query: call.path_and_query,
            audience: &target.audience,
            timestamp: (ctx.platform.clock().now_unix_ms() / 1000) as i64,
            nonce: &nonce,
            request_id: &correlation,
            body: &body,
        },
    )
    .map_err(sign_error)?;
    let mut req = Request::new(Bytes::from(body));
    *req.method_mut() = call.method.clone();
    *req.uri_mut() = format!("{}{}", target.base, call.path_and_query)
        .parse()
        .map_err(|_| Error::Unexpected {
            cause: format!("proxy client: bad path {}", path_only(call.path_and_query)),
        })?;
    let headers = req.headers_mut();
    for (name, value) in signed.pairs() {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    if call.body.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    Ok(req)
}

fn sign_error(e: proxy_auth::SignError) -> Error {
    Error::Unexpected {
        cause: format!("proxy client: signing failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::memory::{block_on, MemoryPlatform, Reply};
    use crate::ports::PortError;
    use crate::Response;

    const KEY: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";

    fn platform() -> MemoryPlatform {
        let p = MemoryPlatform::default();
        for (k, v) in [
            ("environment", "development"),
            ("proxy_url", "https://proxy.test"),
            ("proxy_hmac_key", KEY),
        ] {
            p.vars.set(k, v);
        }
        p
    }

    fn reply(status: u16, body: &str) -> Result<Response, PortError> {
        let mut r = Response::new(Bytes::from(body.to_owned()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        Ok(r)
    }

    fn run<T>(
        p: &MemoryPlatform,
        f: impl AsyncFnOnce(&Ctx<'_, MemoryPlatform>, &ProxyTarget) -> T,
    ) -> T {
        let cfg = load(p, "health-readiness", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let target = ProxyTarget::from_config(&cfg).unwrap_or_else(|e| panic!("{e:?}"));
        let ctx = Ctx::new(p, "req-abc".into(), "health-readiness", &cfg);
        block_on(f(&ctx, &target))
    }

    #[test]
    fn calls_are_signed_v2_with_a_fresh_nonce_each_and_the_request_id_for_correlation() {
        let p = platform();
        p.http.replies.borrow_mut().push_back(reply(200, "{}"));
        p.http.replies.borrow_mut().push_back(reply(200, "{}"));
        run(&p, async |ctx, t| {
            let call = ProxyCall::post("/v1/audit", &serde_json::json!({"action": "x"}))?;
            send(ctx, t, &call).await?;
            send(ctx, t, &call).await
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        let sent = p.http.sent.borrow();
        assert_eq!(sent.len(), 2);
        let h = |i: usize, n: &str| sent[i].headers()[n].to_str().unwrap_or_default().to_owned();
        assert!(h(0, "x-proxy-signature").starts_with("v2="));
        assert_ne!(h(0, "x-proxy-nonce"), h(1, "x-proxy-nonce"));
        assert_eq!(h(0, "x-proxy-request-id"), "req-abc");
        assert_eq!(h(0, "x-request-id"), "req-abc");
        assert_eq!(sent[0].uri(), "https://proxy.test/v1/audit");
        // The proxy's own verifier accepts it under its audience.
        let key = SigningKey::from_hex(KEY).unwrap_or_else(|e| panic!("{e}"));
        let headers = proxy_auth::SignatureHeaders {
            timestamp: Some(&h(0, "x-proxy-timestamp")),
            nonce: Some(&h(0, "x-proxy-nonce")),
            request_id: Some(&h(0, "x-proxy-request-id")),
            signature: Some(&h(0, "x-proxy-signature")),
        };
        let ts: i64 = h(0, "x-proxy-timestamp").parse().unwrap_or_default();
        let verified = proxy_auth::verify_request(
            &proxy_auth::Keys {
                current: &key,
                previous: None,
            },
            &proxy_auth::Expect {
                audience: "proxy.test",
                accept_v1: false,
                window_secs: 300,
            },
            "POST",
            "/v1/audit",
            &headers,
            sent[0].body(),
            ts,
        );
        assert!(verified.is_ok(), "{verified:?}");
    }

    #[test]
    fn an_unreachable_proxy_is_503_and_reads_are_retried_once_writes_never() {
        let p = platform();
        for _ in 0..3 {
            p.http
                .replies
                .borrow_mut()
                .push_back(Err(PortError::Unavailable("refused".into())));
        }
        let read = run(&p, async |ctx, t| {
            send(ctx, t, &ProxyCall::get("/v1/sessions/revoked?token_id=x")).await
        });
        assert!(matches!(read, Err(Error::Unavailable { .. })), "{read:?}");
        assert_eq!(p.http.sent.borrow().len(), 2, "one retry for a read");
        assert_eq!(p.timer.slept().len(), 1, "after a jittered pause");
        let write = run(&p, async |ctx, t| {
            send(
                ctx,
                t,
                &ProxyCall::post("/v1/audit", &serde_json::json!({}))?,
            )
            .await
        });
        assert!(matches!(write, Err(Error::Unavailable { .. })));
        assert_eq!(p.http.sent.borrow().len(), 3, "no retry for a write");
    }

    #[test]
    fn a_hung_proxy_times_out_into_503() {
        let p = platform();
        p.http.script.borrow_mut().push_back(Reply::Hang);
        let r = run(&p, async |ctx, t| {
            let call = ProxyCall::post("/v1/users/verify", &serde_json::json!({}))?.timeout_ms(800);
            send(ctx, t, &call).await
        });
        match r {
            Err(Error::Unavailable { cause }) => assert!(cause.contains("timed out after 800 ms")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_5xx_is_503_and_an_unexpected_4xx_is_a_bug() {
        let p = platform();
        p.http.replies.borrow_mut().push_back(reply(503, "{}"));
        let r = run(&p, async |ctx, t| {
            send(
                ctx,
                t,
                &ProxyCall::post("/v1/audit", &serde_json::json!({}))?,
            )
            .await
        });
        assert!(matches!(r, Err(Error::Unavailable { .. })));
        p.http.replies.borrow_mut().push_back(reply(
            400,
            r#"{"error":{"code":"bad_request","message":"x"}}"#,
        ));
        let r: Result<(StatusCode, serde_json::Value), Error> = run(&p, async |ctx, t| {
            json(
                ctx,
                t,
                &ProxyCall::post("/v1/audit", &serde_json::json!({}))?,
                &[],
            )
            .await
        });
        match r {
            Err(Error::Unexpected { cause }) => assert!(cause.contains("400 bad_request")),
            other => panic!("{other:?}"),
        }
        p.http
            .replies
            .borrow_mut()
            .push_back(reply(409, r#"{"a":1}"#));
        let r: Result<(StatusCode, serde_json::Value), Error> = run(&p, async |ctx, t| {
            json(
                ctx,
                t,
                &ProxyCall::post("/v1/x", &serde_json::json!({}))?,
                &[409],
            )
            .await
        });
        assert_eq!(r.map(|(s, _)| s.as_u16()).ok(), Some(409));
    }

    #[test]
    fn without_a_proxy_url_the_function_is_unavailable_not_broken() {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(matches!(
            ProxyTarget::from_config(&cfg),
            Err(Error::Unavailable { .. })
        ));
    }
}
