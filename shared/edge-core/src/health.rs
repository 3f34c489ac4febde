//! Health responses in the shape of the IETF "Health Check Response Format for HTTP APIs"
//! draft (`application/health+json`), shared by every health function.

use http::StatusCode;
use serde_json::json;

use crate::{respond, Response};

/// Media type of every health response.
pub const MEDIA_TYPE: &str = "application/health+json";

/// Product name; service ids are `assistant-edge-<function>`.
pub const PRODUCT: &str = "assistant-edge";

/// Liveness: the function runs and answers. `version` is the release (crate version);
/// `service_id` names the function.
pub fn liveness(function: &str, version: &str) -> Response {
    let body = json!({
        "status": "pass",
        "version": version,
        "releaseId": version,
        "serviceId": format!("{PRODUCT}-{function}"),
        "description": format!("{PRODUCT} {function}: liveness"),
    });
    respond::json_as(StatusCode::OK, &body, MEDIA_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_passes_with_version_and_service_id() {
        let resp = liveness("health", "1.2.3");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[http::header::CONTENT_TYPE], MEDIA_TYPE);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["status"], "pass");
        assert_eq!(body["version"], "1.2.3");
        assert_eq!(body["serviceId"], "assistant-edge-health");
    }
}
