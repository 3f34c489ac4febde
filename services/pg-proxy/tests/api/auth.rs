//! Signature checks: missing, malformed, wrong key, wrong audience, expired, tampered,
//! replayed, rotated; V2 (nonce + audience) and V1 during the rotation.

use proxy_auth::SigningKey;
use serde_json::json;

use crate::helpers::{
    error_code, new_nonce, new_request_id, unix_now, Opts, TestApp, AUDIENCE, OLD_KEY_HEX,
};

fn v2_headers(
    key: &SigningKey,
    method: &str,
    path: &str,
    ts: i64,
    nonce: &str,
    rid: &str,
    body: &[u8],
) -> proxy_auth::SignedHeaders {
    proxy_auth::sign_v2(
        key,
        &proxy_auth::Call {
            method,
            path_and_query: path,
            audience: AUDIENCE,
            timestamp: ts,
            nonce,
            request_id: rid,
            body,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn an_unsigned_request_gets_401_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/v1/ping"))
        .header("x-proxy-request-id", "edge-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "unauthorized");
    assert_eq!(body["error"]["request_id"], "edge-req-1");
    assert_eq!(body["error"]["message"], "missing header x-proxy-timestamp");
}

#[tokio::test]
async fn a_valid_signature_is_accepted_and_the_request_id_is_echoed() {
    let app = TestApp::spawn().await;
    let rid = new_request_id();
    let resp = app
        .signed_with(&app.key, "GET", "/v1/ping", None, unix_now(), &rid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-proxy-request-id"], rid.as_str());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "pass");
}

#[tokio::test]
async fn a_signature_made_with_another_key_is_rejected() {
    let app = TestApp::spawn().await;
    let other = SigningKey::from_hex(&"77".repeat(32)).unwrap();
    let resp = app
        .signed_with(
            &other,
            "GET",
            "/v1/ping",
            None,
            unix_now(),
            &new_request_id(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "signature does not match");
}

#[tokio::test]
async fn malformed_signature_headers_are_rejected() {
    let app = TestApp::spawn().await;
    let cases = [
        ("x-proxy-signature", "v2=not-hex"),
        ("x-proxy-timestamp", "yesterday"),
        ("x-proxy-request-id", "has spaces"),
        ("x-proxy-nonce", "short"),
    ];
    for (name, value) in cases {
        let signed = v2_headers(
            &app.key,
            "GET",
            "/v1/ping",
            unix_now(),
            &new_nonce(),
            &new_request_id(),
            b"",
        );
        let mut rb = app.client.get(app.url("/v1/ping"));
        for (n, v) in signed.pairs() {
            rb = rb.header(n, if n == name { value } else { v });
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{name}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "unauthorized");
        assert_eq!(
            body["error"]["message"],
            format!("malformed header {name}"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn expired_and_future_timestamps_are_rejected() {
    let app = TestApp::spawn().await;
    for skew in [-301, 301, -3600] {
        let resp = app
            .signed_with(
                &app.key,
                "GET",
                "/v1/ping",
                None,
                unix_now() + skew,
                &new_request_id(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "skew {skew}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"]["message"],
            "timestamp outside the allowed window"
        );
    }
    // Inside the window either way is fine (clock skew between edge and proxy).
    for skew in [-250, 250] {
        let resp = app
            .signed_with(
                &app.key,
                "GET",
                "/v1/ping",
                None,
                unix_now() + skew,
                &new_request_id(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "skew {skew}");
    }
}

#[tokio::test]
async fn a_replayed_nonce_is_rejected_even_with_a_fresh_signature() {
    let app = TestApp::spawn().await;
    let nonce = new_nonce();
    let body = json!({"action": "test.replay"});
    let send = |ts: i64, rid: String| {
        app.signed_v2(
            &app.key,
            AUDIENCE,
            "POST",
            "/v1/audit",
            Some(&body),
            ts,
            &nonce,
            &rid,
        )
        .send()
    };
    let first = send(unix_now(), new_request_id()).await.unwrap();
    assert_eq!(first.status(), 201);
    // Same nonce, freshly signed (new timestamp, new correlation id): refused.
    let replay = send(unix_now() + 1, new_request_id()).await.unwrap();
    assert_eq!(replay.status(), 401);
    let err: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(err["error"]["message"], "nonce already used");
    // Only one event was written.
    let db = app.db.connect().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn one_request_id_may_be_shared_by_several_calls_with_fresh_nonces() {
    // Issue 13 item 10: the edge's inbound X-Request-ID is the correlation id of every proxy
    // call it makes for that request; only the nonce must be new.
    let app = TestApp::spawn().await;
    let rid = "edge-inbound-42";
    for action in ["login.failure", "login.success", "session.created"] {
        let resp = app
            .signed_with(
                &app.key,
                "POST",
                "/v1/audit",
                Some(&json!({"action": action})),
                unix_now(),
                rid,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{action}");
        assert_eq!(resp.headers()["x-proxy-request-id"], rid);
    }
    let db = app.db.connect().await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE request_id = $1",
            &[&rid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn a_signature_for_another_audience_is_rejected() {
    // Staging and production sharing a key: a request signed for one fails on the other.
    let app = TestApp::spawn().await;
    let resp = app
        .signed_v2(
            &app.key,
            "proxy-staging.test",
            "GET",
            "/v1/ping",
            None,
            unix_now(),
            &new_nonce(),
            &new_request_id(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "signature does not match");
}

#[tokio::test]
async fn v1_is_accepted_during_the_rotation_with_the_request_id_as_nonce() {
    let app = TestApp::spawn().await;
    let rid = new_request_id();
    let body = json!({"action": "test.v1"});
    let resp = app
        .signed_v1("POST", "/v1/audit", Some(&body), &rid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let replay = app
        .signed_v1("POST", "/v1/audit", Some(&body), &rid)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(
        app.signed_v1("GET", "/v1/ping", None, &new_request_id())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn v1_is_refused_once_proxy_accept_v1_is_false() {
    let app = TestApp::spawn_with(Opts::default().set("PROXY_ACCEPT_V1", "false")).await;
    let resp = app
        .signed_v1("GET", "/v1/ping", None, &new_request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "signature version v1 is no longer accepted; sign with v2"
    );
    assert_eq!(app.call("GET", "/v1/ping", None).await.0, 200);
}

#[tokio::test]
async fn the_replay_cache_is_shared_by_two_replicas_on_one_database() {
    let app = TestApp::spawn().await;
    // A second replica on the same database.
    let cfg = crate::helpers::serve_config(&app.db, &Opts::default());
    let replica = pg_proxy::server::start(cfg).await.unwrap();
    let (rid, nonce, ts) = (new_request_id(), new_nonce(), unix_now());
    let body = json!({"action": "test.replica"});
    let bytes = serde_json::to_vec(&body).unwrap();
    let signed = v2_headers(&app.key, "POST", "/v1/audit", ts, &nonce, &rid, &bytes);
    for (base, expected) in [
        (app.url(""), 201),
        (format!("http://{}", replica.addr), 401),
    ] {
        let mut rb = app
            .client
            .post(format!("{base}/v1/audit"))
            .header("content-type", "application/json")
            .body(bytes.clone());
        for (n, v) in signed.pairs() {
            rb = rb.header(n, v);
        }
        assert_eq!(rb.send().await.unwrap().status(), expected, "{base}");
    }
    replica.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tampered_body_or_path_breaks_the_signature() {
    let app = TestApp::spawn().await;
    let ts = unix_now();
    let rid = new_request_id();
    let signed = v2_headers(
        &app.key,
        "POST",
        "/v1/audit",
        ts,
        &new_nonce(),
        &rid,
        br#"{"action":"a"}"#,
    );
    let mut rb = app
        .client
        .post(app.url("/v1/audit"))
        .header("content-type", "application/json")
        .body(r#"{"action":"b"}"#);
    for (n, v) in signed.pairs() {
        rb = rb.header(n, v);
    }
    assert_eq!(rb.send().await.unwrap().status(), 401);
    let signed = v2_headers(
        &app.key,
        "GET",
        "/v1/audit?from=1&to=2",
        ts,
        &new_nonce(),
        &rid,
        b"",
    );
    let mut rb = app.client.get(app.url("/v1/audit?from=1&to=3"));
    for (n, v) in signed.pairs() {
        rb = rb.header(n, v);
    }
    assert_eq!(rb.send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_previous_key_is_accepted_only_when_configured() {
    let old = SigningKey::from_hex(OLD_KEY_HEX).unwrap();
    let app =
        TestApp::spawn_with(Opts::default().set("PROXY_HMAC_KEY_PREVIOUS", OLD_KEY_HEX)).await;
    let resp = app
        .signed_with(&old, "GET", "/v1/ping", None, unix_now(), &new_request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let app = TestApp::spawn().await;
    let resp = app
        .signed_with(&old, "GET", "/v1/ping", None, unix_now(), &new_request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn oversized_bodies_get_413_before_any_work() {
    let app = TestApp::spawn_with(Opts::default().set("PROXY_MAX_BODY_BYTES", "2048")).await;
    let big = json!({"action": "x", "details": {"pad": "a".repeat(4096)}});
    let (status, body) = app.call("POST", "/v1/audit", Some(big)).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.call("GET", "/v1/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = app.call("DELETE", "/v1/messages", None).await;
    assert_eq!(status, 405);
    assert_eq!(error_code(&body), "method_not_allowed");
}
