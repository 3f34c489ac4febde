//! The one error type of the edge functions and the one place that turns it into HTTP.
//!
//! Handlers return [`Error`]; [`Error::into_response`] is the only code that picks a status and
//! writes the `{"error":{"code","message","request_id"}}` body. Causes (which may mention
//! internals) are kept for the log line that [`crate::serve`] writes, never for the body.

use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::ports::PortError;
use crate::{respond, Response};

/// One variant per response class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed. `code` is a stable machine-readable slug; `message` is
    /// safe to show the caller (it never echoes secrets or internals).
    BadRequest {
        /// Stable slug such as `invalid_json`.
        code: &'static str,
        /// Human-readable, caller-safe explanation.
        message: String,
    },
    /// 401: missing or invalid credentials.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the route exists but not for this method. `allow` is the `Allow` header value.
    MethodNotAllowed {
        /// Comma-separated allowed methods, e.g. `GET, HEAD`.
        allow: &'static str,
    },
    /// 415: the body's media type is not one the route takes (`expected` names it).
    UnsupportedMediaType {
        /// The media type the route takes, e.g. `application/json`.
        expected: &'static str,
    },
    /// 413: the body is larger than `limit` bytes.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 429: over the rate limit; retry after `retry_after_s` seconds.
    RateLimited {
        /// Seconds until a request would be accepted.
        retry_after_s: u64,
    },
    /// 503: a dependency is down; the caller should retry. `cause` is for the log only.
    Unavailable {
        /// What failed, for the log.
        cause: String,
    },
    /// 503: this instance's configuration is invalid. `problems` names keys and rules, never
    /// values; it goes to the log only, the body stays generic.
    Misconfigured {
        /// One entry per failing key: `NAME: why`.
        problems: Vec<String>,
    },
    /// 500: a bug or an impossible state. `cause` is for the log only.
    Unexpected {
        /// What went wrong, for the log.
        cause: String,
    },
}

impl Error {
    /// A 400 with a stable code and a caller-safe message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error class.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Misconfigured { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unexpected { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the log line should say about the cause, if anything beyond the status.
    pub fn log_cause(&self) -> Option<String> {
        match self {
            Self::Unavailable { cause } | Self::Unexpected { cause } => Some(cause.clone()),
            Self::Misconfigured { problems } => Some(problems.join("; ")),
            _ => None,
        }
    }

    /// The one mapping from error to response: status, JSON body, and the headers the class
    /// requires (`Allow`, `Retry-After`).
    pub fn into_response(self, request_id: &str) -> Response {
        let status = self.status();
        let (code, message): (&str, String) = match &self {
            Self::BadRequest { code, message } => (code, message.clone()),
            Self::Unauthorized => ("unauthorized", "Authentication required.".into()),
            Self::Forbidden => ("forbidden", "Not allowed.".into()),
            Self::NotFound => ("not_found", "No such route.".into()),
            Self::MethodNotAllowed { allow } => (
                "method_not_allowed",
                format!("Method not allowed; use {allow}."),
            ),
            Self::UnsupportedMediaType { expected } => (
                "unsupported_media_type",
                format!("Content-Type must be {expected}."),
            ),
            Self::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("Request body exceeds {limit} bytes."),
            ),
            Self::RateLimited { retry_after_s } => (
                "rate_limited",
                format!("Too many requests; retry in {retry_after_s} s."),
            ),
            Self::Unavailable { .. } => (
                "unavailable",
                "Temporarily unavailable; retry later.".into(),
            ),
            Self::Misconfigured { .. } => (
                "misconfigured",
                "Service is not configured correctly.".into(),
            ),
            Self::Unexpected { .. } => ("internal", "Internal error.".into()),
        };
        let body = json!({"error": {"code": code, "message": message, "request_id": request_id}});
        let mut resp = respond::json(status, &body);
        let headers = resp.headers_mut();
        match self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            Self::Unavailable { .. } | Self::Misconfigured { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(30u64));
            }
            _ => {}
        }
        resp
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status())?;
        if let Some(cause) = self.log_cause() {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<PortError> for Error {
    fn from(err: PortError) -> Self {
        match err {
            PortError::Unavailable(_) => Self::Unavailable {
                cause: err.to_string(),
            },
            PortError::Contract(_) => Self::Unexpected {
                cause: err.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response) -> serde_json::Value {
        serde_json::from_slice(resp.body()).unwrap_or_default()
    }

    #[test]
    fn every_error_has_the_structured_body_with_the_request_id() {
        let resp = Error::NotFound.into_response("req-1");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let b = body(&resp);
        assert_eq!(b["error"]["code"], "not_found");
        assert_eq!(b["error"]["request_id"], "req-1");
        assert!(b["error"]["message"].is_string());
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let resp = Error::MethodNotAllowed { allow: "GET, HEAD" }.into_response("r");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let resp = Error::RateLimited { retry_after_s: 7 }.into_response("r");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn internal_causes_never_reach_the_body() {
        let secret_cause = "connect to postgres://user:hunter2@db failed";
        for err in [
            Error::Unexpected {
                cause: secret_cause.into(),
            },
            Error::Unavailable {
                cause: secret_cause.into(),
            },
            Error::Misconfigured {
                problems: vec![secret_cause.into()],
            },
        ] {
            let resp = err.into_response("r");
            let text = String::from_utf8_lossy(resp.body()).to_string();
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn misconfiguration_answers_503_so_callers_retry() {
        let resp = Error::Misconfigured { problems: vec![] }.into_response("r");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn port_errors_map_to_unavailable_or_internal() {
        let down: Error = PortError::Unavailable("redis".into()).into();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bug: Error = PortError::Contract("key".into()).into();
        assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
