//! The wrapper every function runs inside, the same for every function on every platform:
//! request id, fail-closed configuration, trusted hosts, debug routes (development only), CORS,
//! body limit, rate limit, error mapping, security and timing headers, and the access log line,
//! all through the redaction pass.

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::{ConfigState, EdgeConfig, Environment};
use crate::log::{self, Access, Level};
use crate::ports::{HttpClient, Platform};
use crate::redact::RedactingSink;
use crate::{expiry, ratelimit, request_id, respond, Bytes, Error, Request, Response};

/// An edge function: a name for logs and one handler.
pub trait Function {
    /// Name used in log lines (`fn`), rate-limit scopes and the service id.
    const NAME: &'static str;
    /// Largest request body accepted; larger ones get 413 before the handler runs.
    const MAX_BODY_BYTES: usize = 64 * 1024;
    /// Whether requests are refused (503) when the rate-limit store is down. Authentication
    /// routes set this: failing open there would lift the brute-force protection exactly when
    /// it cannot be checked. Other routes fail open and log the outage.
    const FAIL_CLOSED: bool = false;
    /// Whether the rate limit applies (it does unless a function has a reason to opt out).
    const RATE_LIMITED: bool = true;
    /// Variables (upper case) read beyond the catalog's list for this function: only for
    /// test-only functions the catalog does not know (the key-value probe).
    const EXTRA_VARIABLES: &'static [&'static str] = &[];

    /// The answer to every request while the instance's configuration is invalid (the
    /// failing keys are logged once, at load). By default the generic 503 `misconfigured`
    /// error; health checks answer in their own format instead, so that a monitor reads
    /// `fail` and the failing component (`config`), never which key or why. The second
    /// argument is the platform's time (unix ms), for a report's timestamp.
    fn misconfigured(request_id: &str, _now_ms: u64) -> Response {
        Error::Misconfigured { problems: vec![] }.into_response(request_id)
    }

    /// Handles one request. Errors become structured responses in [`serve`].
    #[allow(async_fn_in_trait)]
    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error>;
}

/// A function with a scheduled job (a Workers cron trigger): the adapter loads the
/// configuration as for a request and runs the job with a context of its own.
pub trait Scheduled: Function {
    /// Runs the job once; logs its own outcome (nobody waits for it).
    #[allow(async_fn_in_trait)]
    async fn scheduled<P: Platform>(ctx: &Ctx<'_, P>);
}

/// Work that runs after the response has been handed to the runtime.
pub type Deferred<'a> = Vec<Pin<Box<dyn Future<Output = ()> + 'a>>>;

/// What a handler gets besides the request.
pub struct Ctx<'a, P: Platform> {
    /// The platform's ports.
    pub platform: &'a P,
    /// The id of this request, echoed in `X-Request-ID` and every log line.
    pub request_id: String,
    /// The function's name.
    pub function: &'static str,
    /// The instance's validated configuration.
    pub config: &'a EdgeConfig,
    /// Who the request counts as: the rate-limit key of the client (see
    /// [`crate::hosts::client_address`]); `unknown` without a peer address.
    pub client: String,
    deferred: RefCell<Deferred<'a>>,
}

impl<'a, P: Platform> Ctx<'a, P> {
    /// A context for one request (adapters and tests; [`serve`] builds its own).
    pub fn new(
        platform: &'a P,
        request_id: String,
        function: &'static str,
        config: &'a EdgeConfig,
    ) -> Self {
        Self {
            platform,
            request_id,
            function,
            config,
            client: "unknown".into(),
            deferred: RefCell::new(Vec::new()),
        }
    }

    /// The same context counting the request as `client`.
    pub fn with_client(mut self, client: String) -> Self {
        self.client = client;
        self
    }

    /// Runs `work` after the response has been handed to the runtime, so the caller does not
    /// wait for it: on Workers through `ctx.waitUntil`, on Spin after the response body is
    /// finished (the instance lives until the handler returns), in tests right after the
    /// response. `work` borrows only the platform and the configuration, owns everything
    /// else, and logs its own failures: nobody is left to see its result.
    pub fn defer(&self, work: impl Future<Output = ()> + 'a) {
        self.deferred.borrow_mut().push(Box::pin(work));
    }

    /// Takes the deferred work registered so far.
    pub fn take_deferred(&self) -> Deferred<'a> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }
}

impl<P: Platform> Ctx<'_, P> {
    /// Sends an outbound request carrying this request's id (`X-Request-ID`) and a W3C
    /// `traceparent` whose trace id is the request id when that is 32 hex characters (as
    /// generated ones are), so the callee's logs join ours.
    pub async fn send(&self, mut req: Request) -> Result<Response, crate::ports::PortError> {
        let trace_id = if self.request_id.len() == 32
            && self.request_id.bytes().all(|b| b.is_ascii_hexdigit())
            && self.request_id.bytes().any(|b| b != b'0')
        {
            self.request_id.to_ascii_lowercase()
        } else {
            request_id::generate(self.platform.random())?
        };
        let mut span = [0u8; 8];
        self.platform.random().fill(&mut span)?;
        let span: String = span.iter().map(|b| format!("{b:02x}")).collect();
        let headers = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("00-{trace_id}-{span}-01")) {
            headers.insert("traceparent", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(HeaderName::from_static(request_id::HEADER), v);
        }
        self.platform.http().send(req).await
    }

    /// Writes a redacted JSON event line for this request.
    pub fn event(&self, level: Level, event: &str, fields: Map<String, Value>) {
        let sink = RedactingSink::new(self.platform.log(), &self.config.redactor);
        log::event(
            &sink,
            self.platform.clock().now_unix_ms(),
            level,
            self.function,
            &self.request_id,
            event,
            fields,
        );
    }
}

/// Headers set on every response, errors and 404s included. Each one says why. Built at
/// compile time (`from_static` is checked in a const context), so a request only clones them:
/// validating the names and values on every request was a measurable share of it.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 9] = [
    // Two years, subdomains, preload-list eligible: never talk to us over plain HTTP.
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains; preload"),
    ),
    // These are JSON APIs: nothing may load or frame anything from a response.
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    // Browsers must honour Content-Type, not guess it.
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    // Legacy framing protection for browsers without CSP frame-ancestors.
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    // URLs may carry ids; never leak them to other sites.
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    // No browser feature is needed by a JSON API.
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()",
        ),
    ),
    // The legacy XSS auditor causes more harm than good; modern advice is to disable it.
    (header::X_XSS_PROTECTION, HeaderValue::from_static("0")),
];

/// `X-Request-ID` and `Server-Timing`, set on every response after the security headers.
const REQUEST_ID: HeaderName = HeaderName::from_static(request_id::HEADER);
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Applies the security headers, a default `Cache-Control: no-store` (a handler may set a
/// shorter cache policy itself) and removes headers that advertise the stack.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.remove(header::SERVER);
    headers.remove("x-powered-by");
}

/// Runs function `F` like [`serve_deferred`], then its deferred work, and returns the
/// response: for tests and runtimes that cannot answer before the work is done.
pub async fn serve<F: Function, P: Platform>(
    platform: &P,
    config: &ConfigState,
    req: Request,
    peer: Option<IpAddr>,
) -> Response {
    let (resp, deferred) = serve_deferred::<F, P>(platform, config, req, peer).await;
    for work in deferred {
        work.await;
    }
    resp
}

/// Runs function `F` on `req` with `platform` and the instance's `config`. `peer` is the
/// client address the platform reports (Cloudflare's connecting IP, Spin's client address).
/// Never fails: every error becomes a structured response; one access line per request.
/// Returns the response and the work the request deferred ([`Ctx::defer`]), which the adapter
/// runs once the response is on its way.
pub async fn serve_deferred<'a, F: Function, P: Platform>(
    platform: &'a P,
    config: &'a ConfigState,
    req: Request,
    peer: Option<IpAddr>,
) -> (Response, Deferred<'a>) {
    let started = platform.clock().now_unix_ms();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let inbound_id = req
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| request_id::is_safe(v))
        .map(str::to_owned);
    let request_id = match inbound_id.map_or_else(|| request_id::generate(platform.random()), Ok) {
        Ok(id) => id,
        // Without randomness we cannot even name the request: a fixed id, and a 503 below.
        Err(_) => "unavailable".to_owned(),
    };
    let fallback = EdgeConfig::default();
    let (cfg, redactor) = match config {
        Ok(cfg) => (cfg, &cfg.redactor),
        Err(_) => (&fallback, &fallback.redactor),
    };
    let sink = RedactingSink::new(platform.log(), redactor);

    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut extra = HeaderMap::new();
    let mut deferred: Deferred<'a> = Vec::new();
    let result = if request_id == "unavailable" {
        Err(Error::Unavailable {
            cause: "randomness unavailable".into(),
        })
    } else {
        match config {
            Err(_) => Ok(F::misconfigured(&request_id, started)),
            Ok(cfg) => {
                let client = crate::hosts::client_address(&req, peer, &cfg.trusted_proxies);
                let ctx = Ctx::new(platform, request_id.clone(), F::NAME, cfg).with_client(client);
                let result = guarded::<F, P>(req, &ctx, &mut extra).await;
                deferred = ctx.take_deferred();
                result
            }
        }
    };

    // Stores without counter expiry (Spin): about one request in 16 sweeps expired counters,
    // after the response (bounded work, no scan of the store; see `expiry`).
    if expiry::sweep_due::<P::Kv>(platform.random()) {
        let kv = platform.kv();
        deferred.push(Box::pin(async move {
            let _ = expiry::sweep(kv, started).await;
        }));
    }

    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            if let Some(cause) = err.log_cause().filter(|c| !c.is_empty()) {
                let mut fields = Map::new();
                fields.insert("status".into(), err.status().as_u16().into());
                fields.insert("cause".into(), cause.into());
                log::event(
                    &sink,
                    platform.clock().now_unix_ms(),
                    Level::Error,
                    F::NAME,
                    &request_id,
                    "request_failed",
                    fields,
                );
            }
            if let (Error::Unexpected { cause }, Some(target)) = (&err, &cfg.sentry) {
                report_to_sentry::<P>(platform, cfg, target, F::NAME, &request_id, cause).await;
            }
            err.into_response(&request_id)
        }
    };

    if method == Method::HEAD {
        *resp.body_mut() = Bytes::new();
    }
    let finished = platform.clock().now_unix_ms();
    let duration_ms = finished.saturating_sub(started);
    let headers = resp.headers_mut();
    // Room for everything added below at once: growing the map step by step was a
    // measurable share of a request (criterion profile of health).
    headers.reserve(extra.len() + SECURITY_HEADERS.len() + 8);
    for (name, value) in extra.drain().filter_map(|(n, v)| n.map(|n| (n, v))) {
        headers.insert(name, value);
    }
    cfg.cors.apply(origin.as_ref(), headers);
    apply_security_headers(headers);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("total;dur={duration_ms}")) {
        headers.insert(SERVER_TIMING, value);
    }

    log::access(
        &sink,
        &Access {
            ts_ms: started,
            function: F::NAME,
            request_id: &request_id,
            method: method.as_str(),
            path: &path,
            status: resp.status().as_u16(),
            duration_ms,
        },
    );
    (resp, deferred)
}

/// Reports one unexpected error to Sentry; a failure is logged, never raised.
async fn report_to_sentry<P: Platform>(
    platform: &P,
    cfg: &EdgeConfig,
    target: &crate::sentry::SentryTarget,
    function: &str,
    request_id: &str,
    cause: &str,
) {
    let now = platform.clock().now_unix_ms();
    let Ok(event_id) = request_id::generate(platform.random()) else {
        return;
    };
    let message = cfg.redactor.redact(cause);
    let req = target.request(
        &event_id,
        now,
        function,
        cfg.environment.as_str(),
        request_id,
        &message,
    );
    if let Err(err) = crate::sentry::send(platform.http(), req).await {
        let sink = RedactingSink::new(platform.log(), &cfg.redactor);
        let mut fields = Map::new();
        fields.insert("cause".into(), err.to_string().into());
        log::event(
            &sink,
            now,
            Level::Warn,
            function,
            request_id,
            "sentry_report_failed",
            fields,
        );
    }
}

/// Everything between a valid configuration and the handler, in order. `extra` collects
/// headers for the final response (rate-limit figures).
async fn guarded<F: Function, P: Platform>(
    req: Request,
    ctx: &Ctx<'_, P>,
    extra: &mut HeaderMap,
) -> Result<Response, Error> {
    let cfg = ctx.config;
    if !cfg.trusted_hosts.allows(&req) {
        return Err(Error::bad_request(
            "invalid_host",
            "Host is not served here.",
        ));
    }
    if cfg.environment == Environment::Development && req.uri().path().starts_with("/debug/") {
        return debug_route::<F, P>(&req, ctx);
    }
    match cfg.cors.preflight(&req) {
        Some(Ok(resp)) => return Ok(resp),
        Some(Err(())) => return Err(Error::Forbidden),
        None => {}
    }
    if req.body().len() > F::MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: F::MAX_BODY_BYTES,
        });
    }
    if let Some(policy) = cfg.rate_limit.as_ref().filter(|_| F::RATE_LIMITED) {
        let client = &ctx.client;
        let now = ctx.platform.clock().now_unix_ms();
        let kv = ctx.platform.kv();
        // Authentication routes (fail closed) stay exact: one store increment per request.
        let decision = match ctx.platform.rate_leases().filter(|_| !F::FAIL_CLOSED) {
            Some(leases) => ratelimit::check_leased(kv, leases, policy, F::NAME, client, now).await,
            None => ratelimit::check(kv, policy, F::NAME, client, now).await,
        };
        match decision {
            Ok(d) => {
                extra.insert("ratelimit-limit", HeaderValue::from(d.limit));
                extra.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
                extra.insert("ratelimit-reset", HeaderValue::from(d.reset_s));
                if let Ok(v) = HeaderValue::from_str(&format!("{};w={}", d.limit, d.window_s)) {
                    extra.insert("ratelimit-policy", v);
                }
                if !d.allowed {
                    return Err(Error::RateLimited {
                        retry_after_s: d.reset_s.max(1),
                    });
                }
            }
            Err(err) if F::FAIL_CLOSED => {
                return Err(Error::Unavailable {
                    cause: format!("rate-limit store: {err}"),
                })
            }
            Err(err) => {
                let mut fields = Map::new();
                fields.insert("cause".into(), err.to_string().into());
                ctx.event(Level::Warn, "rate_limit_store_unavailable", fields);
            }
        }
    }
    F::handle(req, ctx).await
}

/// `/debug/config` and `/debug/echo`, development only (elsewhere the path reaches the
/// function, which answers 404 like any unknown route). Neither shows a value of any variable,
/// header or body.
fn debug_route<F: Function, P: Platform>(
    req: &Request,
    ctx: &Ctx<'_, P>,
) -> Result<Response, Error> {
    respond::require_get(req)?;
    let cfg = ctx.config;
    let body = match req.uri().path() {
        "/debug/config" => json!({
            "function": F::NAME,
            "environment": cfg.environment.as_str(),
            "variables_set": cfg.set_variables,
            "trusted_hosts_configured": !cfg.trusted_hosts.is_open(),
            "trusted_proxies": cfg.trusted_proxies.len(),
            "rate_limit": cfg.rate_limit.map(|p| json!({"per_minute": p.per_minute, "burst": p.burst})),
        }),
        "/debug/echo" => {
            let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            json!({
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "query_keys": req.uri().query().map(|q| q.split('&').filter_map(|kv| kv.split('=').next()).collect::<Vec<_>>()),
                "header_names": names,
                "body_bytes": req.body().len(),
                "request_id": ctx.request_id,
            })
        }
        _ => return Err(Error::NotFound),
    };
    Ok(respond::json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Misconfigured;
    use crate::cors::CorsPolicy;
    use crate::hosts::TrustedHosts;
    use crate::memory::{block_on, MemoryPlatform};
    use crate::ratelimit::Policy;
    use crate::redact::Redactor;

    struct Echo;
    impl Function for Echo {
        const NAME: &'static str = "echo";
        const MAX_BODY_BYTES: usize = 16;
        async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
            match req.uri().path() {
                "/ok" => Ok(respond::json(StatusCode::OK, &json!({"ok": true}))),
                "/down" => Err(Error::Unavailable {
                    cause: "proxy timed out with key sk-proj-abcdefghijklmnopqrstuv".into(),
                }),
                "/bug" => Err(Error::Unexpected {
                    cause: "invariant broken near configured-secret-xyz".into(),
                }),
                "/call-out" => {
                    let mut out = Request::new(Bytes::new());
                    *out.uri_mut() = "https://proxy.example/v1/ping".parse().unwrap_or_default();
                    ctx.send(out).await?;
                    Ok(respond::json(StatusCode::OK, &json!({})))
                }
                "/log-secret" => {
                    let mut f = Map::new();
                    f.insert("note".into(), "value configured-secret-xyz leaked?".into());
                    ctx.event(Level::Info, "probe", f);
                    Ok(respond::json(StatusCode::OK, &json!({})))
                }
                _ => Err(Error::NotFound),
            }
        }
    }

    struct Auth;
    impl Function for Auth {
        const NAME: &'static str = "auth";
        const FAIL_CLOSED: bool = true;
        async fn handle<P: Platform>(_: Request, _: &Ctx<'_, P>) -> Result<Response, Error> {
            Ok(respond::json(StatusCode::OK, &json!({})))
        }
    }

    fn get(path: &str) -> Request {
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = path.parse().unwrap_or_default();
        req
    }

    fn dev() -> ConfigState {
        Ok(EdgeConfig::default())
    }

    fn with(f: impl FnOnce(&mut EdgeConfig)) -> ConfigState {
        let mut cfg = EdgeConfig::default();
        f(&mut cfg);
        Ok(cfg)
    }

    fn run_on(platform: &MemoryPlatform, config: &ConfigState, req: Request) -> Response {
        block_on(serve::<Echo, _>(
            platform,
            config,
            req,
            Some([203, 0, 113, 5].into()),
        ))
    }

    fn run(config: &ConfigState, req: Request) -> (Response, MemoryPlatform) {
        let platform = MemoryPlatform::default();
        let resp = run_on(&platform, config, req);
        (resp, platform)
    }

    fn code(resp: &Response) -> String {
        let body: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn security_headers_are_on_success_and_error_responses() {
        for path in ["/ok", "/missing", "/down"] {
            let (resp, _) = run(&dev(), get(path));
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(
                    resp.headers().get(&name),
                    Some(&value),
                    "{name} missing on {path}"
                );
            }
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
            assert!(!resp.headers().contains_key(header::SERVER));
            assert!(resp.headers().contains_key("server-timing"));
        }
    }

    #[test]
    fn a_safe_inbound_request_id_is_echoed() {
        let mut req = get("/ok");
        req.headers_mut().insert(
            request_id::HEADER,
            HeaderValue::from_static("caller-id-123"),
        );
        let (resp, _) = run(&dev(), req);
        assert_eq!(resp.headers()[request_id::HEADER], "caller-id-123");
    }

    #[test]
    fn an_unsafe_inbound_request_id_is_replaced() {
        let mut req = get("/ok");
        req.headers_mut()
            .insert(request_id::HEADER, HeaderValue::from_static("x y"));
        let (resp, _) = run(&dev(), req);
        let id = resp.headers()[request_id::HEADER]
            .to_str()
            .unwrap_or_default();
        assert_ne!(id, "x y");
        assert!(request_id::is_safe(id));
    }

    #[test]
    fn errors_become_the_structured_body_with_the_same_request_id() {
        let (resp, _) = run(&dev(), get("/missing"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let id = resp.headers()[request_id::HEADER]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["error"]["request_id"], id.as_str());
    }

    #[test]
    fn one_access_line_per_request_and_the_cause_of_a_503_is_logged_once_redacted() {
        let (_, platform) = run(&dev(), get("/down"));
        let lines = platform.log.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("proxy timed out"));
        assert!(!lines[0].contains("abcdefghijklmnopqrstuv"), "{}", lines[0]);
        assert!(lines[1].contains(r#""status":503"#));
    }

    #[test]
    fn configured_secret_values_never_reach_the_log() {
        let cfg = with(|c| c.redactor = Redactor::new(["configured-secret-xyz".to_owned()]));
        let (_, platform) = run(&cfg, get("/log-secret"));
        let all = platform.log.lines().join("\n");
        assert!(all.contains("probe"));
        assert!(!all.contains("configured-secret-xyz"), "{all}");
    }

    #[test]
    fn head_responses_have_no_body() {
        let mut req = get("/ok");
        *req.method_mut() = Method::HEAD;
        let (resp, _) = run(&dev(), req);
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.body().is_empty());
    }

    #[test]
    fn query_strings_never_reach_the_log() {
        let (_, platform) = run(&dev(), get("/ok?token=secret-token-value"));
        assert!(platform
            .log
            .lines()
            .iter()
            .all(|l| !l.contains("secret-token-value")));
    }

    #[test]
    fn a_misconfigured_instance_answers_503_with_a_generic_body() {
        let bad: ConfigState = Err(Misconfigured {
            problems: vec!["JWT_SECRET_KEY: too short".into()],
        });
        let (resp, _) = run(&bad, get("/ok"));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code(&resp), "misconfigured");
        assert!(!String::from_utf8_lossy(resp.body()).contains("JWT"));
        assert!(resp.headers().contains_key("strict-transport-security"));
    }

    #[test]
    fn untrusted_hosts_get_400() {
        let cfg = with(|c| c.trusted_hosts = TrustedHosts::parse("api.example.com"));
        let (resp, _) = run(&cfg, get("https://evil.example.net/ok"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(code(&resp), "invalid_host");
        let (resp, _) = run(&cfg, get("https://api.example.com/ok"));
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn debug_routes_exist_only_in_development() {
        let (resp, _) = run(&dev(), get("/debug/config"));
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _) = run(&dev(), get("/debug/echo?a=1"));
        assert_eq!(resp.status(), StatusCode::OK);
        let prod = with(|c| c.environment = Environment::Production);
        let (debug, _) = run(&prod, get("/debug/config"));
        let (unknown, _) = run(&prod, get("/no-such-route"));
        assert_eq!(debug.status(), StatusCode::NOT_FOUND);
        assert_eq!(code(&debug), code(&unknown));
    }

    #[test]
    fn preflights_from_allowed_origins_are_answered_and_others_refused() {
        let cfg = with(|c| c.cors = CorsPolicy::new(["https://app.example.com"]).0);
        let preflight = |origin: &'static str| {
            let mut req = get("/ok");
            *req.method_mut() = Method::OPTIONS;
            req.headers_mut()
                .insert(header::ORIGIN, HeaderValue::from_static(origin));
            req.headers_mut().insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("POST"),
            );
            req
        };
        let (ok, _) = run(&cfg, preflight("https://app.example.com"));
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        let (refused, _) = run(&cfg, preflight("https://evil.io"));
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(!refused
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn oversized_bodies_get_413() {
        let mut req = get("/ok");
        *req.body_mut() = Bytes::from(vec![b'x'; 17]);
        let (resp, _) = run(&dev(), req);
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(code(&resp), "payload_too_large");
    }

    #[test]
    fn the_burst_passes_then_429_with_retry_after_and_ratelimit_headers() {
        let cfg = with(|c| {
            c.rate_limit = Some(Policy {
                per_minute: 60,
                burst: 3,
            })
        });
        let platform = MemoryPlatform::default();
        for i in 0..3 {
            let resp = run_on(&platform, &cfg, get("/ok"));
            assert_eq!(resp.status(), StatusCode::OK, "request {i}");
            assert_eq!(resp.headers()["ratelimit-limit"], "3");
        }
        let resp = run_on(&platform, &cfg, get("/ok"));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["ratelimit-remaining"], "0");
        let retry: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_default();
        assert!((1..=3).contains(&retry), "retry-after {retry}");
    }

    #[test]
    fn with_leases_ordinary_routes_lease_counts_and_authentication_stays_exact() {
        let cfg = with(|c| {
            c.rate_limit = Some(Policy {
                per_minute: 60_000,
                burst: 1_000,
            })
        });
        let platform = MemoryPlatform {
            leases: Some(crate::ratelimit::Leases::default()),
            ..MemoryPlatform::default()
        };
        let leases = |p: &MemoryPlatform| p.leases.as_ref().map_or(0, |l| l.unused());
        let mut remaining = Vec::new();
        for _ in 0..5 {
            let resp = run_on(&platform, &cfg, get("/ok"));
            assert_eq!(resp.status(), StatusCode::OK);
            remaining.push(resp.headers()["ratelimit-remaining"].clone());
        }
        assert_eq!(remaining, ["999", "998", "997", "996", "995"]);
        assert!(leases(&platform) > 0, "counts were leased");

        let exact = MemoryPlatform {
            leases: Some(crate::ratelimit::Leases::default()),
            ..MemoryPlatform::default()
        };
        for _ in 0..5 {
            let resp = block_on(serve::<Auth, _>(&exact, &cfg, get("/"), None));
            assert_eq!(resp.status(), StatusCode::OK);
        }
        assert_eq!(leases(&exact), 0, "authentication counts one by one");
    }

    #[test]
    fn outbound_calls_carry_the_request_id_and_a_traceparent() {
        let mut req = get("/call-out");
        req.headers_mut().insert(
            request_id::HEADER,
            HeaderValue::from_static("0af7651916cd43dd8448eb211c80319c"),
        );
        let (_, platform) = run(&dev(), req);
        let sent = platform.http.sent.borrow();
        assert_eq!(sent.len(), 1);
        let h = sent[0].headers();
        assert_eq!(h[request_id::HEADER], "0af7651916cd43dd8448eb211c80319c");
        let tp = h["traceparent"].to_str().unwrap_or_default();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn unexpected_errors_are_reported_to_sentry_redacted_and_the_body_stays_generic() {
        let cfg = with(|c| {
            c.sentry = crate::sentry::SentryTarget::parse("https://pubkey123@sentry.example/7");
            c.redactor = Redactor::new(["configured-secret-xyz".to_owned()]);
        });
        let (resp, platform) = run(&cfg, get("/bug"));
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!String::from_utf8_lossy(resp.body()).contains("invariant"));
        let sent = platform.http.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].uri(), "https://sentry.example/api/7/envelope/");
        let body = String::from_utf8_lossy(sent[0].body()).to_string();
        assert!(body.contains("invariant broken"));
        assert!(!body.contains("configured-secret-xyz"), "{body}");
    }

    #[test]
    fn a_failed_sentry_report_is_logged_and_changes_nothing() {
        let cfg = with(|c| {
            c.sentry = crate::sentry::SentryTarget::parse("https://pubkey123@sentry.example/7")
        });
        let platform = MemoryPlatform::default();
        platform
            .http
            .replies
            .borrow_mut()
            .push_back(Err(crate::ports::PortError::Unavailable("down".into())));
        let resp = run_on(&platform, &cfg, get("/bug"));
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(platform
            .log
            .lines()
            .iter()
            .any(|l| l.contains("sentry_report_failed")));
    }

    #[test]
    fn without_a_dsn_nothing_is_sent() {
        let (_, platform) = run(&dev(), get("/bug"));
        assert!(platform.http.sent.borrow().is_empty());
    }

    #[test]
    fn a_down_store_fails_open_for_ordinary_routes_and_closed_for_authentication() {
        let platform = MemoryPlatform::default();
        platform.kv.down.set(true);
        let resp = run_on(&platform, &dev(), get("/ok"));
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(platform
            .log
            .lines()
            .iter()
            .any(|l| l.contains("rate_limit_store_unavailable")));
        let resp = block_on(serve::<Auth, _>(&platform, &dev(), get("/login"), None));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
