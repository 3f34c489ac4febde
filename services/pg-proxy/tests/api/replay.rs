//! Replay protection by operation (README): every state-changing route records its nonce with
//! the change and refuses a replayed one without applying anything; a refused request
//! consumes its nonce too; reads record none, and neither does the plain message insert,
//! whose replay is a no-op by its own idempotence.

use serde_json::{json, Value};

use crate::helpers::{message, new_nonce, new_request_id, unix_now, TestApp, AUDIENCE};

const JID: &str = "5511955550000@s.whatsapp.net";

/// Sends `body` to `path` signed with `nonce` (fresh timestamp and correlation id each time).
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
    nonce: &str,
) -> (u16, Value) {
    let resp = app
        .signed_v2(
            &app.key,
            AUDIENCE,
            method,
            path,
            body,
            unix_now(),
            nonce,
            &new_request_id(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Calls once, then replays the same nonce with a fresh signature: the replay must be 401.
async fn once_then_replayed(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    let nonce = new_nonce();
    let first = send(app, method, path, Some(&body), &nonce).await;
    let (status, err) = send(app, method, path, Some(&body), &nonce).await;
    assert_eq!(status, 401, "{path}: replay answered {status} {err}");
    assert_eq!(err["error"]["message"], "nonce already used", "{path}");
    first
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.db
        .connect()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_state_changing_route_refuses_a_replayed_nonce_and_applies_nothing_twice() {
    let app = TestApp::spawn().await;

    // The plain insert records no nonce: it is idempotent by provider id, so its replay is
    // answered like a webhook retry and changes nothing.
    let nonce = new_nonce();
    let insert = message("RP1", JID, "oi", unix_now());
    let (s, first) = send(&app, "POST", "/v1/messages", Some(&insert), &nonce).await;
    assert_eq!((s, &first["new"]), (201, &json!(true)));
    let (s, replayed) = send(&app, "POST", "/v1/messages", Some(&insert), &nonce).await;
    assert_eq!((s, &replayed["new"]), (200, &json!(false)));
    assert_eq!(replayed["id"], first["id"]);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM messages WHERE provider_message_id = 'RP1'"
        )
        .await,
        1
    );

    let claim = json!({"provider_message_id": "RP1"});
    let (s, c) = once_then_replayed(&app, "POST", "/v1/messages/claim", claim).await;
    assert_eq!((s, &c["claimed"]), (200, &json!(true)));
    // Even once the lease has run out, the captured claim cannot take the message again.
    app.db
        .connect()
        .await
        .execute(
            "UPDATE messages SET claimed_until = now() - interval '1 second'
              WHERE provider_message_id = 'RP1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &app,
            "SELECT attempts::bigint FROM messages WHERE provider_message_id = 'RP1'"
        )
        .await,
        1
    );

    let release = json!({"provider_message_id": "RP1", "claim_token": c["claim_token"]});
    let (s, _) = once_then_replayed(&app, "POST", "/v1/messages/release", release).await;
    assert_eq!(s, 200);

    let reply = json!({"provider_message_id": "RP1", "reply": {"body": "resposta"}});
    let (s, _) = once_then_replayed(&app, "POST", "/v1/messages/reply", reply).await;
    assert_eq!(s, 200);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'outbound'"
        )
        .await,
        1
    );

    let (s, _) =
        once_then_replayed(&app, "POST", "/v1/audit", json!({"action": "replay.test"})).await;
    assert_eq!(s, 201);
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_events").await, 1);

    let revoke = json!({"token_id": "jti-1", "expires_at": unix_now() + 600});
    let (s, _) = once_then_replayed(&app, "POST", "/v1/sessions/revoke", revoke).await;
    assert_eq!(s, 200);

    // The user routes consume the nonce before any argon2 work: the replay is 401, not 409.
    let user = json!({"username": "rita", "password": "a long enough passphrase"});
    let (s, _) = once_then_replayed(&app, "POST", "/v1/users", user.clone()).await;
    assert_eq!(s, 201);
    let (s, v) = once_then_replayed(&app, "POST", "/v1/users/verify", user).await;
    assert_eq!((s, &v["valid"]), (200, &json!(true)));
    let new_pw = json!({"username": "rita", "password": "another long passphrase"});
    let (s, _) = once_then_replayed(&app, "POST", "/v1/users/password", new_pw).await;
    assert_eq!(s, 200);
    let (s, g) = once_then_replayed(
        &app,
        "POST",
        "/v1/users/logout-all",
        json!({"user_id": v["user"]["id"]}),
    )
    .await;
    assert_eq!((s, &g["generation"]), (200, &json!(1)));

    let ingest = json!({
        "provider_message_id": "RP9", "instance": "kumon-main", "contact": JID,
        "body": "oi", "sent_at": unix_now(),
    });
    let (s, i) = once_then_replayed(&app, "POST", "/v1/messages/ingest", ingest).await;
    assert_eq!((s, &i["claimed"]), (200, &json!(true)));
    assert_eq!(
        scalar(
            &app,
            "SELECT attempts::bigint FROM messages WHERE provider_message_id = 'RP9'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_refused_write_consumes_its_nonce_so_it_cannot_succeed_later() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("RP2", JID, "oi", unix_now())),
    )
    .await;
    let (_, c) = app
        .call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": "RP2"})),
        )
        .await;
    // A reply without the token while the message is processing: refused.
    let nonce = new_nonce();
    let reply = json!({"provider_message_id": "RP2"});
    assert_eq!(
        send(&app, "POST", "/v1/messages/reply", Some(&reply), &nonce)
            .await
            .0,
        409
    );
    // The holder gives the message back; now a reply without a token would be allowed...
    let release = json!({"provider_message_id": "RP2", "claim_token": c["claim_token"]});
    assert_eq!(
        app.call("POST", "/v1/messages/release", Some(release))
            .await
            .0,
        200
    );
    // ...but not the captured refused one.
    assert_eq!(
        send(&app, "POST", "/v1/messages/reply", Some(&reply), &nonce)
            .await
            .0,
        401
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM messages WHERE state = 'received'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn reads_record_no_nonce() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("RP3", JID, "oi", unix_now())),
    )
    .await;
    let before = scalar(&app, "SELECT count(*) FROM request_nonces").await;
    let nonce = new_nonce();
    let path = format!("/v1/conversations/history?contact={JID}");
    for _ in 0..2 {
        let (s, body) = send(&app, "GET", &path, None, &nonce).await;
        assert_eq!(s, 200);
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM request_nonces").await,
        before
    );
}
