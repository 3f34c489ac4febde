//! Optional error reporting to Sentry: with `SENTRY_DSN` set, every unexpected error (500) is
//! sent as a Sentry event over HTTP (the envelope endpoint), its message redacted first. A
//! failure to report is logged and never changes the response.

use http::{header, HeaderValue, Method};
use serde_json::json;

use crate::ports::{HttpClient, PortError};
use crate::{log, Bytes, Request};

/// Where and how to send events, parsed from a DSN `scheme://KEY@HOST[:PORT]/PROJECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct SentryTarget {
    /// `scheme://host[:port]/api/PROJECT/envelope/`.
    pub endpoint: String,
    /// The DSN's public key (authenticates the sender; treated as a secret in logs).
    key: String,
    /// The DSN itself, for the envelope header.
    dsn: String,
}

impl std::fmt::Debug for SentryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryTarget")
            .field("endpoint", &self.endpoint)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SentryTarget {
    /// Parses a DSN; `None` when it is not of the form above (the secrets catalog has already
    /// refused malformed DSNs, so this only guards the core against misuse).
    pub fn parse(dsn: &str) -> Option<Self> {
        let (scheme, rest) = dsn.split_once("://")?;
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let (key, rest) = rest.split_once('@')?;
        let key = key.split(':').next()?;
        let (host, project) = rest.rsplit_once('/')?;
        if key.is_empty() || host.is_empty() || project.is_empty() {
            return None;
        }
        if !project.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            endpoint: format!("{scheme}://{host}/api/{project}/envelope/"),
            key: key.to_owned(),
            dsn: dsn.to_owned(),
        })
    }

    /// The envelope request for one error event. `event_id` is 32 hex characters.
    pub fn request(
        &self,
        event_id: &str,
        now_ms: u64,
        function: &str,
        environment: &str,
        request_id: &str,
        message: &str,
    ) -> Request {
        let ts = log::rfc3339_ms(now_ms);
        let envelope_header = json!({"event_id": event_id, "dsn": self.dsn, "sent_at": ts});
        let event = json!({
            "event_id": event_id,
            "timestamp": ts,
            "platform": "other",
            "level": "error",
            "logger": "assistant-edge",
            "server_name": function,
            "environment": environment,
            "release": concat!("assistant-edge@", env!("CARGO_PKG_VERSION")),
            "tags": {"function": function, "request_id": request_id},
            "message": {"formatted": message},
        });
        let event_text = event.to_string();
        let item_header = json!({"type": "event", "length": event_text.len()});
        let body = format!("{envelope_header}\n{item_header}\n{event_text}\n");
        let mut req = Request::new(Bytes::from(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.endpoint.parse().unwrap_or_default();
        let auth = format!(
            "Sentry sentry_version=7, sentry_key={}, sentry_client=assistant-edge/{}",
            self.key,
            env!("CARGO_PKG_VERSION")
        );
        let headers = req.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-sentry-envelope"),
        );
        if let Ok(v) = HeaderValue::from_str(&auth) {
            headers.insert("x-sentry-auth", v);
        }
        req
    }
}

/// Sends one event; `Err` for transport failures or a non-2xx answer.
pub async fn send<H: HttpClient>(http: &H, req: Request) -> Result<(), PortError> {
    let resp = http.send(req).await?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(PortError::Unavailable(format!(
            "sentry answered {}",
            resp.status()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "https://abc123publickey@o42.ingest.sentry.io/4501";

    #[test]
    fn a_dsn_becomes_the_envelope_endpoint() {
        let t = SentryTarget::parse(DSN).unwrap_or_else(|| panic!("valid DSN"));
        assert_eq!(
            t.endpoint,
            "https://o42.ingest.sentry.io/api/4501/envelope/"
        );
        assert!(!format!("{t:?}").contains("abc123publickey"));
    }

    #[test]
    fn malformed_dsns_are_refused() {
        for dsn in [
            "",
            "ftp://k@h/1",
            "https://h/1",
            "https://k@h/",
            "https://k@h/x1",
        ] {
            assert!(SentryTarget::parse(dsn).is_none(), "{dsn}");
        }
    }

    #[test]
    fn the_event_request_speaks_the_envelope_protocol() {
        let t = SentryTarget::parse(DSN).unwrap_or_else(|| panic!("valid DSN"));
        let req = t.request(
            "0123456789abcdef0123456789abcdef",
            0,
            "login",
            "production",
            "req-1",
            "boom",
        );
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().to_string(), t.endpoint);
        assert_eq!(
            req.headers()[header::CONTENT_TYPE],
            "application/x-sentry-envelope"
        );
        let auth = req.headers()["x-sentry-auth"].to_str().unwrap_or_default();
        assert!(auth.starts_with("Sentry sentry_version=7, sentry_key=abc123publickey"));
        let body = String::from_utf8_lossy(req.body()).to_string();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3);
        let item: serde_json::Value = serde_json::from_str(lines[1]).unwrap_or_default();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"].as_u64(), Some(lines[2].len() as u64));
        let event: serde_json::Value = serde_json::from_str(lines[2]).unwrap_or_default();
        assert_eq!(event["message"]["formatted"], "boom");
        assert_eq!(event["tags"]["request_id"], "req-1");
        assert_eq!(event["environment"], "production");
    }
}
