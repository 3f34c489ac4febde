//! Small response builders and request guards shared by every function.

use http::{header, HeaderValue, Method, StatusCode};

use crate::{Bytes, Error, Request, Response};

/// A JSON response with `Content-Type: application/json`.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    json_as(status, body, "application/json")
}

/// A JSON response with the given JSON media type (e.g. `application/health+json`).
pub fn json_as(
    status: StatusCode,
    body: &serde_json::Value,
    content_type: &'static str,
) -> Response {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Accepts only `GET` and `HEAD`; anything else is a 405 naming them.
pub fn require_get(req: &Request) -> Result<(), Error> {
    match *req.method() {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
    }
}

/// Accepts only `POST`; anything else is a 405.
pub fn require_post(req: &Request) -> Result<(), Error> {
    if req.method() == Method::POST {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed { allow: "POST" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method) -> Request {
        let mut r = Request::new(Bytes::new());
        *r.method_mut() = method;
        r
    }

    #[test]
    fn get_routes_accept_get_and_head_only() {
        assert!(require_get(&req(Method::GET)).is_ok());
        assert!(require_get(&req(Method::HEAD)).is_ok());
        assert_eq!(
            require_get(&req(Method::POST)),
            Err(Error::MethodNotAllowed { allow: "GET, HEAD" })
        );
    }

    #[test]
    fn post_routes_accept_post_only() {
        assert!(require_post(&req(Method::POST)).is_ok());
        assert!(require_post(&req(Method::GET)).is_err());
    }

    #[test]
    fn json_sets_the_media_type() {
        let resp = json_as(
            StatusCode::OK,
            &serde_json::json!({}),
            "application/health+json",
        );
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/health+json"
        );
    }
}
