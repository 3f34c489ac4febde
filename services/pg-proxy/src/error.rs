//! The one error type of the HTTP layer and the one place it becomes a response.
//!
//! Every handler, extractor and middleware returns [`ApiError`]; [`ApiError::into_response`]
//! picks the status, writes `{"error":{"code","message","request_id"}}` and logs the cause
//! chain once. The request id comes from the task-local set by the request-context
//! middleware ([`crate::http::REQUEST_ID`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::PoolError;

/// One variant per response class.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation. The message is shown to the caller.
    #[error("{0}")]
    BadRequest(String),
    /// 401: signature missing, invalid, expired or replayed. The message is shown.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such route or record. The message is shown.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state. The message is shown.
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive within PROXY_BODY_READ_TIMEOUT_SECS. The connection is
    /// closed after the response.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 413: the body exceeds the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: a body that is not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 503 + Retry-After: no database connection became free within DB_POOL_TIMEOUT, the
    /// database is unreachable, or the service is shutting down.
    #[error("database unavailable")]
    Unavailable {
        /// Seconds for the Retry-After header.
        retry_after_secs: u64,
        /// The cause, logged, never shown.
        #[source]
        source: anyhow::Error,
    },
    /// 500: anything else. The cause is logged, never shown.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Seconds a caller should wait after a pool timeout: connections are usually back quickly.
const RETRY_AFTER_SECS: u64 = 1;

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        ApiError::Unavailable {
            retry_after_secs: RETRY_AFTER_SECS,
            source: anyhow::Error::new(e).context("no database connection"),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Transient (503): the connection broke, or Postgres reports a connection problem
        // (SQLSTATE class 08), lack of resources (53, e.g. too many connections) or an
        // operator action (57, e.g. shutdown). Anything else is a bug or an unexpected
        // constraint (500).
        let transient = match e.code() {
            None => e.as_db_error().is_none(),
            Some(code) => matches!(&code.code()[..2], "08" | "53" | "57"),
        };
        if transient {
            ApiError::Unavailable {
                retry_after_secs: RETRY_AFTER_SECS,
                source: anyhow::Error::new(e).context("database unavailable"),
            }
        } else {
            ApiError::Unexpected(anyhow::Error::new(e).context("database query failed"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let request_id = crate::http::current_request_id();
        let message = self.to_string();
        match &self {
            ApiError::Unavailable { source, .. } | ApiError::Unexpected(source) => {
                tracing::error!(
                    request_id = %request_id,
                    status = status.as_u16(),
                    code,
                    cause = %format!("{source:#}"),
                    "request failed"
                );
            }
            _ => tracing::info!(
                request_id = %request_id,
                status = status.as_u16(),
                code,
                reason = %message,
                "request rejected"
            ),
        }
        let body = serde_json::json!({
            "error": { "code": code, "message": message, "request_id": &*request_id }
        });
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // The rest of a late body may still be on its way: do not keep the connection.
            ApiError::RequestTimeout => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
