//! CORS: an explicit allow-list of https origins, with suffix patterns (`https://*.example.app`)
//! only when written so. Allowed origins get credentials and `Vary: Origin`; other origins get
//! no CORS headers at all, and their preflights a 403.

use http::{header, HeaderMap, HeaderValue, Method};

use crate::{Bytes, Request, Response};

/// Methods announced to allowed origins.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// Request headers announced to allowed origins.
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization, Accept, Origin, X-Requested-With";
/// How long browsers may cache a preflight (10 minutes).
const MAX_AGE_S: &str = "600";

/// The allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    exact: Vec<String>,
    /// Host suffixes from `https://*.example.app`, stored as `.example.app`.
    suffixes: Vec<String>,
}

impl CorsPolicy {
    /// Builds the list from configured origins. Anything not `https://host[:port]` (or an
    /// explicit `https://*.suffix`) is ignored and returned as a warning naming the entry's
    /// position, never its value (values come from configuration and could be mistyped secrets).
    pub fn new<'a>(origins: impl IntoIterator<Item = &'a str>) -> (Self, Vec<String>) {
        let mut policy = Self::default();
        let mut warnings = Vec::new();
        for (i, raw) in origins.into_iter().enumerate() {
            let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin.is_empty() {
                continue;
            }
            let Some(host) = origin.strip_prefix("https://") else {
                warnings.push(format!("CORS origin #{} ignored: not https", i + 1));
                continue;
            };
            if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
                warnings.push(format!("CORS origin #{} ignored: not an origin", i + 1));
            } else if let Some(suffix) = host.strip_prefix("*.") {
                if suffix.contains('*') || !suffix.contains('.') {
                    warnings.push(format!("CORS origin #{} ignored: bad wildcard", i + 1));
                } else {
                    policy.suffixes.push(format!(".{suffix}"));
                }
            } else if host.contains('*') {
                warnings.push(format!(
                    "CORS origin #{} ignored: wildcard only as *.",
                    i + 1
                ));
            } else {
                policy.exact.push(origin);
            }
        }
        (policy, warnings)
    }

    /// Whether `origin` (as sent by a browser) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.exact.contains(&origin) {
            return true;
        }
        let Some(host) = origin.strip_prefix("https://") else {
            return false;
        };
        // `https://*.example.app` matches `https://a.example.app`, not `https://example.app`
        // nor `https://evilexample.app`.
        self.suffixes
            .iter()
            .any(|s| host.ends_with(s.as_str()) && host.len() > s.len())
    }

    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        self.allows(origin.to_str().ok()?).then(|| origin.clone())
    }

    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) answered here:
    /// 204 with the allowances for an allowed origin, 403 without CORS headers otherwise.
    /// `None` when the request is not a preflight.
    pub fn preflight(&self, req: &Request) -> Option<Result<Response, ()>> {
        if req.method() != Method::OPTIONS
            || !req.headers().contains_key(header::ORIGIN)
            || !req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let Some(origin) = self.allowed(req.headers().get(header::ORIGIN)) else {
            return Some(Err(()));
        };
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = http::StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        Self::allow(h, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_S),
        );
        Some(Ok(resp))
    }

    /// Adds CORS headers to a response when the request's `origin` is allowed, and
    /// `Vary: Origin` always (the response differs by origin, so caches must key on it).
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if !headers.get_all(header::VARY).iter().any(|v| v == "Origin") {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = self.allowed(origin) {
            Self::allow(headers, origin);
        }
    }

    fn allow(h: &mut HeaderMap, origin: HeaderValue) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        if !h.get_all(header::VARY).iter().any(|v| v == "Origin") {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy::new(["https://app.example.com", "https://*.preview.example.app"]).0
    }

    fn req(method: Method, origin: &str, preflight: bool) -> Request {
        let mut r = Request::new(Bytes::new());
        *r.method_mut() = method;
        r.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("x")),
        );
        if preflight {
            r.headers_mut().insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("POST"),
            );
        }
        r
    }

    #[test]
    fn listed_and_explicit_wildcard_origins_are_allowed() {
        let p = policy();
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("https://pr-12.preview.example.app"));
    }

    #[test]
    fn lookalike_and_plain_http_origins_are_refused() {
        let p = policy();
        assert!(!p.allows("https://app.example.com.evil.io"));
        assert!(!p.allows("http://app.example.com"));
        assert!(!p.allows("https://preview.example.app"));
        assert!(!p.allows("https://evilpreview.example.app"));
        assert!(!p.allows("null"));
    }

    #[test]
    fn non_https_and_malformed_entries_are_ignored_with_a_warning_without_the_value() {
        let (p, warnings) = CorsPolicy::new(["http://a.example.com", "https://*", "https://x/y"]);
        assert_eq!(p, CorsPolicy::default());
        assert_eq!(warnings.len(), 3);
        assert!(warnings.iter().all(|w| !w.contains("example")));
    }

    #[test]
    fn an_allowed_preflight_gets_the_allowances() {
        let resp = policy()
            .preflight(&req(Method::OPTIONS, "https://app.example.com", true))
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(resp.status(), http::StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], ALLOW_HEADERS);
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn a_refused_preflight_is_refused() {
        let r = policy().preflight(&req(Method::OPTIONS, "https://evil.io", true));
        assert!(matches!(r, Some(Err(()))));
    }

    #[test]
    fn plain_options_is_not_a_preflight() {
        assert!(policy()
            .preflight(&req(Method::OPTIONS, "https://app.example.com", false))
            .is_none());
    }

    #[test]
    fn refused_origins_get_no_cors_headers_but_vary() {
        let mut h = HeaderMap::new();
        let r = req(Method::GET, "https://evil.io", false);
        policy().apply(r.headers().get(header::ORIGIN), &mut h);
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn allowed_origins_get_credentials_on_actual_responses() {
        let mut h = HeaderMap::new();
        let r = req(Method::GET, "https://app.example.com", false);
        policy().apply(r.headers().get(header::ORIGIN), &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    }
}
