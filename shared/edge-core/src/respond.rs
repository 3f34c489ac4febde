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
    // Straight into a buffer: `to_string` goes through `fmt::Display`, a write call per piece
    // (a fifth of health's instructions, callgrind). A `Value` always serializes.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes());
    let mut resp = Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Parses a JSON request body into `T`. A content type other than JSON is a 415; malformed
/// JSON or the wrong shape is a 400 whose message says what and where (line, column), but
/// never echoes the caller's data: serde's own messages can quote input values, so only field names from our
/// schema (`missing field`, `unknown field`) are passed through.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Error> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && !media.ends_with("+json") {
        return Err(Error::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    serde_json::from_slice(req.body()).map_err(|e| {
        use serde_json::error::Category;
        let at = format!("line {} column {}", e.line(), e.column());
        let message = match e.classify() {
            Category::Eof => format!("Malformed JSON: unexpected end of input at {at}."),
            Category::Syntax | Category::Io => format!("Malformed JSON: syntax error at {at}."),
            Category::Data => {
                let detail = e.to_string();
                let safe = ["missing field `", "unknown field `", "duplicate field `"]
                    .iter()
                    .find(|p| detail.starts_with(**p))
                    .and_then(|_| detail.split(" at line").next())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                format!("JSON does not match the expected shape{safe} (at {at}).")
            }
        };
        Error::bad_request("invalid_json", message)
    })
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

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // fields exist to give the parser a shape
    struct Msg {
        text: String,
        count: u32,
    }

    fn post(content_type: &str, body: &str) -> Request {
        let mut r = req(Method::POST);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("x")),
        );
        *r.body_mut() = Bytes::from(body.to_owned());
        r
    }

    fn message(result: Result<Msg, Error>) -> String {
        match result {
            Err(Error::BadRequest { message, .. }) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_json_parses() {
        let m: Result<Msg, Error> = json_body(&post(
            "application/json; charset=utf-8",
            r#"{"text":"hi","count":2}"#,
        ));
        assert!(m.is_ok());
    }

    #[test]
    fn a_wrong_content_type_is_a_415() {
        let r: Result<Msg, Error> = json_body(&post("text/plain", "{}"));
        assert_eq!(
            r.err(),
            Some(Error::UnsupportedMediaType {
                expected: "application/json"
            })
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let m = message(json_body(&post(
            "application/json",
            "{\"text\": \"hi\",\n  oops}",
        )));
        assert!(m.contains("syntax error at line 2"), "{m}");
        let m = message(json_body(&post("application/json", "{\"text\": ")));
        assert!(m.contains("unexpected end of input"), "{m}");
    }

    #[test]
    fn shape_errors_name_our_fields_but_never_echo_the_callers_values() {
        let m = message(json_body(&post("application/json", r#"{"text":"hi"}"#)));
        assert!(m.contains("missing field `count`"), "{m}");
        let m = message(json_body(&post(
            "application/json",
            r#"{"text":"hi","count":"sk-secret-value"}"#,
        )));
        assert!(!m.contains("sk-secret-value"), "{m}");
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
