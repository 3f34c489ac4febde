//! The HTTP surface: router, request-context and signature middleware, JSON/query
//! extractors that fail in the API's error shape, and one handler per operation.
//!
//! Handlers parse input into [`crate::domain`] types, call one [`crate::store`] function and
//! serialise its result. The README lists every route with its request and response.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use proxy_auth::{Expect, Keys, SignatureHeaders, SigningKey, Verified, Version};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::batch::{Batcher, Histories, InsertMessages};
use crate::domain::{self, Contact, Direction, MessageId, Password, Role, Username};
use crate::error::{ApiError, ApiResult};
use crate::pool::DbPool;
use crate::store::Nonce;
use crate::{password, store};

tokio::task_local! {
    /// The request id of the request being handled, for error bodies and log lines.
    pub static REQUEST_ID: Arc<str>;
}

/// The request id in scope, or `-` outside a request.
pub fn current_request_id() -> Arc<str> {
    REQUEST_ID
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from("-"))
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The pool.
    pub pool: DbPool,
    /// PROXY_HMAC_KEY.
    pub key: Arc<SigningKey>,
    /// PROXY_HMAC_KEY_PREVIOUS.
    pub previous_key: Option<Arc<SigningKey>>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Deadline for the whole body to arrive (PROXY_BODY_READ_TIMEOUT_SECS).
    pub body_read_timeout: Duration,
    /// This deployment's signature audience (PROXY_AUDIENCE).
    pub audience: Arc<str>,
    /// Whether V1 signatures are still accepted (PROXY_ACCEPT_V1).
    pub accept_v1: bool,
    /// Message inserts, batched ([`crate::batch`]).
    pub inserts: Batcher<InsertMessages>,
    /// History reads, batched.
    pub histories: Batcher<Histories>,
}

/// Allowed signature clock skew, seconds (either way).
pub const SIGNATURE_WINDOW_SECS: i64 = proxy_auth::DEFAULT_WINDOW_SECS;

/// `application/health+json`.
const HEALTH_JSON: &str = "application/health+json";

/// Builds the router with every route and middleware.
pub fn router(state: AppState) -> Router {
    // One allocation shared by every request: each middleware and handler clones only the Arc.
    let state = Arc::new(state);
    let signed = Router::new()
        .route("/v1/ping", get(ping))
        .route("/v1/messages", post(insert_message))
        .route("/v1/messages/claim", post(claim_message))
        .route("/v1/messages/reply", post(reply_message))
        .route("/v1/messages/release", post(release_message))
        .route("/v1/messages/ingest", post(ingest_message))
        .route("/v1/messages/stale", get(stale_messages))
        .route("/v1/conversations/history", get(history))
        .route("/v1/users", post(create_user))
        .route("/v1/users/verify", post(verify_user))
        .route("/v1/users/password", post(set_password))
        .route("/v1/users/generation", get(user_generation))
        .route("/v1/users/logout-all", post(logout_all))
        .route("/v1/sessions/revoke", post(revoke_session))
        .route("/v1/sessions/revoked", get(session_revoked))
        .route("/v1/audit", post(append_audit).get(list_audit))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_signature,
        ));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/health/readiness", get(readiness))
        .merge(signed)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    use rand_core::{OsRng, RngCore};
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Outermost middleware: picks the request id (the edge's, if well formed), scopes it for
/// error bodies, echoes it in the response and writes one JSON log line per request.
async fn request_context(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = req
        .headers()
        .get(proxy_auth::HEADER_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| proxy_auth::is_valid_request_id(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(format!("proxy-{}", random_hex(8))));
    let method = req.method().clone();
    // The path only: queries carry contact ids and token ids, which stay out of the logs.
    let path = req.uri().path().to_owned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(proxy_auth::HEADER_REQUEST_ID, v);
    }
    if tracing::enabled!(tracing::Level::INFO) {
        crate::logging::Access {
            request_id: &id,
            method: method.as_str(),
            path: &path,
            status: response.status().as_u16(),
            duration: started.elapsed(),
        }
        .write();
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the HMAC signature (V2: method, audience, path+query, timestamp, nonce, request
/// id, body; V1 while accepted), then records the nonce in the shared replay cache.
/// Rejections are 401.
async fn require_signature(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > state.max_body_bytes {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    // Before the signature check, so the deadline also binds callers without a key.
    // A request without a body (a GET: no length, no chunks) has nothing to wait for, so no
    // deadline timer is armed for it.
    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        tokio::time::timeout(
            state.body_read_timeout,
            axum::body::to_bytes(body, state.max_body_bytes),
        )
        .await
        .map_err(|_| ApiError::RequestTimeout)?
        .map_err(|_| ApiError::PayloadTooLarge)?
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let headers = SignatureHeaders {
        timestamp: header_str(&parts.headers, proxy_auth::HEADER_TIMESTAMP),
        nonce: header_str(&parts.headers, proxy_auth::HEADER_NONCE),
        request_id: header_str(&parts.headers, proxy_auth::HEADER_REQUEST_ID),
        signature: header_str(&parts.headers, proxy_auth::HEADER_SIGNATURE),
    };
    let keys = Keys {
        current: &state.key,
        previous: state.previous_key.as_deref(),
    };
    let expect = Expect {
        audience: &state.audience,
        accept_v1: state.accept_v1,
        window_secs: SIGNATURE_WINDOW_SECS,
    };
    let verified = proxy_auth::verify_request(
        &keys,
        &expect,
        parts.method.as_str(),
        path,
        &headers,
        &bytes,
        unix_now(),
    )
    .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    if verified.version == Version::V1 {
        // One line per V1 request, so the rotation's progress is visible and
        // PROXY_ACCEPT_V1=false can be set once they stop.
        tracing::warn!(
            event = "signature_v1",
            request_id = %verified.request_id,
            "request signed with format v1; move the caller to v2"
        );
    }
    if verified.key == proxy_auth::KeySlot::Previous {
        tracing::info!(request_id = %verified.request_id, "request signed with the previous key");
    }
    // Reads (GET) change nothing, so they record no nonce (README "Replay protection by
    // operation"). Every other method gets the nonce for its handler to record together with
    // the change; a successful response whose handler did not record it is refused.
    let nonce = (parts.method != Method::GET).then(|| Arc::new(Nonce::new(verified.replay_key())));
    if let Some(n) = &nonce {
        parts.extensions.insert(n.clone());
    }
    parts.extensions.insert(verified);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match nonce {
        Some(n) if response.status().is_success() && !n.recorded() => Err(ApiError::Unexpected(
            anyhow::anyhow!("a state-changing route answered without recording its nonce"),
        )),
        _ => Ok(response),
    }
}

/// A JSON body; errors use the API shape and never echo values.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(describe_json_error(&e)))
    }
}

/// serde messages can quote the offending value (a password, say); only messages that name
/// fields are passed on, otherwise just the position.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        let names_only = text
            .split(", expected")
            .next()
            .and_then(|t| t.split(" at line").next())
            .unwrap_or("invalid field");
        format!("invalid JSON body: {names_only}")
    } else {
        format!(
            "invalid JSON body at line {} column {}",
            e.line(),
            e.column()
        )
    }
}

/// Query parameters; errors use the API shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|_| ApiError::BadRequest("invalid or missing query parameters".into()))
    }
}

fn health_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Liveness plus pool figures. Unsigned, no database access, any Host (Railway's checker
/// calls from `healthcheck.railway.app`).
async fn health(State(state): State<Arc<AppState>>) -> Response {
    health_response(
        StatusCode::OK,
        json!({
            "status": "pass",
            "version": env!("CARGO_PKG_VERSION"),
            "serviceId": "pg-proxy",
            "pool": state.pool.stats(),
            "batching": {
                "insert_message": state.inserts.stats(),
                "history": state.histories.stats(),
            },
        }),
    )
}

/// A database round trip. Unsigned. 503 with `"status":"fail"` when it fails.
async fn readiness(State(state): State<Arc<AppState>>) -> Response {
    let started = Instant::now();
    let wait = state.pool.settings().timeout.min(Duration::from_secs(5));
    let timeouts = deadpool_postgres::Timeouts {
        wait: Some(wait),
        ..state.pool.inner().timeouts()
    };
    let result = async {
        let db = state.pool.inner().timeout_get(&timeouts).await?;
        store::ping(&db).await
    }
    .await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(_) => health_response(
            StatusCode::OK,
            json!({
                "status": "pass",
                "checks": { "postgres:responseTime": [{
                    "status": "pass", "observedValue": ms, "observedUnit": "ms"
                }]},
            }),
        ),
        Err(e) => {
            tracing::warn!(cause = %e, "readiness check failed");
            health_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "fail",
                    "checks": { "postgres:responseTime": [{
                        "status": "fail", "observedValue": ms, "observedUnit": "ms",
                        "output": "database round trip failed"
                    }]},
                }),
            )
        }
    }
}

/// `GET /v1/ping`: signed readiness round trip for the edge's health functions.
async fn ping(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let db = state.pool.inner().get().await?;
    let db_time = store::ping(&db).await?;
    Ok(Json(json!({
        "status": "pass",
        "db_time": db_time,
        "db_ms": started.elapsed().as_secs_f64() * 1000.0,
        "pool": state.pool.stats(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertMessageReq {
    provider_message_id: String,
    instance: String,
    contact: String,
    direction: Direction,
    body: String,
    #[serde(default)]
    push_name: Option<String>,
    sent_at: i64,
}

/// Longest stored message body, in characters (WhatsApp's own limit is 65,536).
const MAX_MESSAGE_CHARS: usize = 16_384;

async fn insert_message(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<InsertMessageReq>,
) -> ApiResult<Response> {
    let m = store::NewMessage {
        provider_message_id: MessageId::parse(&req.provider_message_id)?,
        instance: domain::bounded_text("instance", &req.instance, 1, 128)?,
        contact: Contact::parse(&req.contact)?,
        direction: req.direction,
        body: domain::bounded_text("body", &req.body, 0, MAX_MESSAGE_CHARS)?,
        push_name: req
            .push_name
            .as_deref()
            .map(|p| domain::bounded_text("push_name", p, 0, 256))
            .transpose()?,
        sent_at: domain::unix_seconds("sent_at", req.sent_at)?,
    };
    // Idempotent by provider id: a replay is answered `new: false` and changes nothing.
    nonce.not_needed();
    let inserted = state.inserts.submit(m).await?;
    let status = if inserted.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(inserted)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimReq {
    provider_message_id: String,
    #[serde(default)]
    lease_secs: Option<i64>,
}

async fn claim_message(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<ClaimReq>,
) -> ApiResult<Json<store::Claim>> {
    let id = MessageId::parse(&req.provider_message_id)?;
    let lease = req.lease_secs.unwrap_or(120);
    if !(1..=3600).contains(&lease) {
        return Err(ApiError::BadRequest("lease_secs must be 1 to 3600".into()));
    }
    let db = state.pool.inner().get().await?;
    Ok(Json(
        store::claim_message(&db, &id, lease, &random_hex(16), &nonce).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default)]
    provider_message_id: Option<String>,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyReq {
    provider_message_id: String,
    #[serde(default)]
    claim_token: Option<String>,
    #[serde(default)]
    reply: Option<ReplyBody>,
}

fn claim_token(t: &str) -> ApiResult<&str> {
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(ApiError::BadRequest("claim_token is malformed".into()))
    }
}

async fn reply_message(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<ReplyReq>,
) -> ApiResult<Json<store::Transition>> {
    let id = MessageId::parse(&req.provider_message_id)?;
    let token = req.claim_token.as_deref().map(claim_token).transpose()?;
    let reply = req
        .reply
        .map(|r| -> ApiResult<store::Reply> {
            Ok(store::Reply {
                provider_message_id: r
                    .provider_message_id
                    .as_deref()
                    .map(MessageId::parse)
                    .transpose()?,
                body: domain::bounded_text("reply.body", &r.body, 0, MAX_MESSAGE_CHARS)?,
            })
        })
        .transpose()?;
    let mut db = state.pool.inner().get().await?;
    Ok(Json(
        store::mark_replied(&mut db, &id, token, reply, &nonce).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseReq {
    provider_message_id: String,
    claim_token: String,
    #[serde(default)]
    failed: bool,
}

async fn release_message(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<ReleaseReq>,
) -> ApiResult<Json<store::Transition>> {
    let id = MessageId::parse(&req.provider_message_id)?;
    let token = claim_token(&req.claim_token)?;
    let db = state.pool.inner().get().await?;
    Ok(Json(
        store::release_message(&db, &id, token, req.failed, &nonce).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestReq {
    provider_message_id: String,
    instance: String,
    contact: String,
    body: String,
    #[serde(default)]
    push_name: Option<String>,
    sent_at: i64,
    #[serde(default)]
    lease_secs: Option<i64>,
    #[serde(default)]
    history_limit: Option<i64>,
}

/// `POST /v1/messages/ingest`: store an inbound message if new and claim it, in one round
/// trip, with the conversation so far.
async fn ingest_message(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<IngestReq>,
) -> ApiResult<Json<store::Ingested>> {
    let m = store::NewMessage {
        provider_message_id: MessageId::parse(&req.provider_message_id)?,
        instance: domain::bounded_text("instance", &req.instance, 1, 128)?,
        contact: Contact::parse(&req.contact)?,
        direction: Direction::Inbound,
        body: domain::bounded_text("body", &req.body, 0, MAX_MESSAGE_CHARS)?,
        push_name: req
            .push_name
            .as_deref()
            .map(|p| domain::bounded_text("push_name", p, 0, 256))
            .transpose()?,
        sent_at: domain::unix_seconds("sent_at", req.sent_at)?,
    };
    let lease = req.lease_secs.unwrap_or(120);
    if !(1..=3600).contains(&lease) {
        return Err(ApiError::BadRequest("lease_secs must be 1 to 3600".into()));
    }
    let history_limit = req.history_limit.unwrap_or(10);
    if !(0..=50).contains(&history_limit) {
        return Err(ApiError::BadRequest("history_limit must be 0 to 50".into()));
    }
    let db = state.pool.inner().get().await?;
    Ok(Json(
        store::ingest_message(&db, &m, lease, &random_hex(16), history_limit, &nonce).await?,
    ))
}

#[derive(Deserialize)]
struct StaleQuery {
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
struct StaleResponse {
    messages: Vec<store::StaleMessage>,
}

/// `GET /v1/messages/stale`: what a scheduled re-drive should claim.
async fn stale_messages(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<StaleQuery>,
) -> ApiResult<Json<StaleResponse>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 100".into()));
    }
    let db = state.pool.inner().get().await?;
    Ok(Json(StaleResponse {
        messages: store::stale_messages(&db, limit).await?,
    }))
}

#[derive(Deserialize)]
struct HistoryQuery {
    contact: String,
    #[serde(default)]
    limit: Option<i64>,
}

async fn history(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let contact = Contact::parse(&q.contact)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 200".into()));
    }
    // The messages arrive as the JSON array, written from the rows' buffers (store::histories).
    let messages = state.histories.submit((contact, limit)).await?;
    let mut body = Vec::with_capacity(messages.len() + q.contact.len() + 32);
    body.extend_from_slice(b"{\"contact\":");
    serde_json::to_writer(&mut body, &q.contact)
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e)))?;
    body.extend_from_slice(b",\"messages\":");
    body.extend_from_slice(&messages);
    body.push(b'}');
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserReq {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<Role>,
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<CreateUserReq>,
) -> ApiResult<Response> {
    let username = Username::parse(&req.username)?;
    let password = Password::parse_new(&req.password)?;
    // The nonce is consumed before the hashing, so a replay costs no argon2 work.
    store::record_nonce(&state.pool.inner().get().await?, &nonce).await?;
    // Hash without holding a connection: argon2 is the slow part.
    let phc = password::hash_async(password)
        .await
        .map_err(ApiError::Unexpected)?;
    let db = state.pool.inner().get().await?;
    let user = store::create_user(&db, &username, &phc, req.role.unwrap_or(Role::Staff)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "user": user }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsReq {
    username: String,
    password: String,
}

async fn verify_user(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<CredentialsReq>,
) -> ApiResult<Json<Value>> {
    let password = Password::parse_attempt(&req.password)?;
    // A malformed name cannot exist; it still records the nonce and costs one verification,
    // so its timing matches.
    let username = Username::parse(&req.username).ok();
    let found = {
        let db = state.pool.inner().get().await?;
        store::find_credentials(&db, username.as_ref(), &nonce).await?
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let valid = password::verify_async(stored, password)
        .await
        .map_err(ApiError::Unexpected)?;
    Ok(Json(match (valid, user) {
        (true, Some(user)) => json!({ "valid": true, "user": user }),
        _ => json!({ "valid": false }),
    }))
}

async fn set_password(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<CredentialsReq>,
) -> ApiResult<Json<Value>> {
    let username = Username::parse(&req.username)?;
    let password = Password::parse_new(&req.password)?;
    store::record_nonce(&state.pool.inner().get().await?, &nonce).await?;
    let phc = password::hash_async(password)
        .await
        .map_err(ApiError::Unexpected)?;
    let db = state.pool.inner().get().await?;
    store::set_password(&db, &username, &phc).await?;
    Ok(Json(json!({ "updated": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIdReq {
    user_id: i64,
}

#[derive(Serialize)]
struct GenerationResponse {
    user_id: i64,
    generation: i64,
}

/// `GET /v1/users/generation?user_id=`: the session generation the edge compares tokens to.
async fn user_generation(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<UserIdReq>,
) -> ApiResult<Json<GenerationResponse>> {
    let db = state.pool.inner().get().await?;
    let generation = store::user_generation(&db, q.user_id).await?;
    Ok(Json(GenerationResponse {
        user_id: q.user_id,
        generation,
    }))
}

/// `POST /v1/users/logout-all`: every session issued under the current generation dies.
async fn logout_all(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<UserIdReq>,
) -> ApiResult<Json<GenerationResponse>> {
    let db = state.pool.inner().get().await?;
    let generation = store::bump_generation(&db, req.user_id, &nonce).await?;
    Ok(Json(GenerationResponse {
        user_id: req.user_id,
        generation,
    }))
}

fn token_id(t: &str) -> ApiResult<&str> {
    if proxy_auth::is_valid_request_id(t) {
        Ok(t)
    } else {
        Err(ApiError::BadRequest(
            "token_id must be 1 to 128 characters of letters, digits and . _ : -".into(),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    token_id: String,
    expires_at: i64,
}

async fn revoke_session(
    State(state): State<Arc<AppState>>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<RevokeReq>,
) -> ApiResult<Json<Value>> {
    let token = token_id(&req.token_id)?;
    let expires_at = domain::unix_seconds("expires_at", req.expires_at)?;
    let db = state.pool.inner().get().await?;
    store::revoke_session(&db, token, expires_at, &nonce).await?;
    Ok(Json(json!({ "revoked": true })))
}

#[derive(Deserialize)]
struct RevokedQuery {
    token_id: String,
}

async fn session_revoked(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<RevokedQuery>,
) -> ApiResult<Json<Value>> {
    let token = token_id(&q.token_id)?;
    let db = state.pool.inner().get().await?;
    Ok(Json(
        json!({ "revoked": store::is_revoked(&db, token).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditReq {
    action: String,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    details: Option<Value>,
}

/// Largest audit `details` object, serialised.
const MAX_AUDIT_DETAILS_BYTES: usize = 8 * 1024;

async fn append_audit(
    State(state): State<Arc<AppState>>,
    Extension(verified): Extension<Verified>,
    Extension(nonce): Extension<Arc<Nonce>>,
    ApiJson(req): ApiJson<AuditReq>,
) -> ApiResult<Response> {
    let action = domain::bounded_text("action", &req.action, 1, 64)?;
    if !action
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ApiError::BadRequest(
            "action must be lower-case letters, digits and . _ -".into(),
        ));
    }
    let actor = req
        .actor
        .as_deref()
        .map(|a| domain::bounded_text("actor", a, 1, 128))
        .transpose()?;
    let subject = req
        .subject
        .as_deref()
        .map(|s| domain::bounded_text("subject", s, 1, 256))
        .transpose()?;
    let details = req.details.unwrap_or_else(|| json!({}));
    if !details.is_object() {
        return Err(ApiError::BadRequest("details must be a JSON object".into()));
    }
    let serialised = details.to_string();
    if serialised.len() > MAX_AUDIT_DETAILS_BYTES {
        return Err(ApiError::BadRequest(
            "details must be at most 8192 bytes".into(),
        ));
    }
    // jsonb refuses NUL; refuse it here as a 400 instead of a database error.
    if serialised.contains("\\u0000") {
        return Err(ApiError::BadRequest(
            "details contains a NUL character".into(),
        ));
    }
    let db = state.pool.inner().get().await?;
    let (id, at) = store::append_audit(
        &db,
        &action,
        actor.as_deref(),
        subject.as_deref(),
        &verified.request_id,
        &details,
        &nonce,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "at": at }))).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    from: i64,
    to: i64,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list_audit(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let from = domain::unix_seconds("from", q.from)?;
    let to = domain::unix_seconds("to", q.to)?;
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 1000".into()));
    }
    let db = state.pool.inner().get().await?;
    let events = store::list_audit(&db, from, to, limit).await?;
    Ok(Json(json!({ "events": events })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_that_could_quote_values_only_report_the_position() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let e = serde_json::from_str::<T>(r#"{"n":"hunter2"}"#).unwrap_err();
        let text = describe_json_error(&e);
        assert!(!text.contains("hunter2"), "{text}");
        let e = serde_json::from_str::<T>(r#"{}"#).unwrap_err();
        assert_eq!(
            describe_json_error(&e),
            "invalid JSON body: missing field `n`"
        );
    }
}
