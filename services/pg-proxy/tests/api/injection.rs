//! SQL injection attempts in every string field: either refused by validation (400) or
//! stored and returned verbatim; the schema and other rows are never affected.

use serde_json::json;

use crate::helpers::{unix_now, TestApp};

const PAYLOADS: &[&str] = &[
    "'; DROP TABLE messages; --",
    "' OR '1'='1",
    "\"); DELETE FROM users; --",
    "$1; TRUNCATE audit_events",
    "x'||pg_sleep(5)||'",
    "\\'; UPDATE users SET role='admin'; --",
];

/// Same payloads without whitespace, for fields that refuse whitespace.
fn compact(p: &str) -> String {
    p.replace(' ', "")
}

async fn tables_intact(app: &TestApp) -> (i64, i64, i64) {
    let db = app.db.connect().await;
    let count = |t: &'static str| {
        let db = &db;
        async move {
            db.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .unwrap_or_else(|e| panic!("table {t} damaged: {e}"))
                .get::<_, i64>(0)
        }
    };
    (
        count("messages").await,
        count("users").await,
        count("audit_events").await,
    )
}

#[tokio::test]
async fn injection_in_free_text_fields_is_stored_verbatim() {
    let app = TestApp::spawn().await;
    let jid = "5511955550000@s.whatsapp.net";
    app.call(
        "POST",
        "/v1/users",
        Some(json!({"username": "guard", "password": "guard passphrase long"})),
    )
    .await;
    for (i, p) in PAYLOADS.iter().enumerate() {
        let id = format!("INJ{i}{}", compact(p));
        let (status, body) = app
            .call(
                "POST",
                "/v1/messages",
                Some(json!({
                    "provider_message_id": id,
                    "instance": p, "contact": jid, "direction": "inbound",
                    "body": p, "push_name": p, "sent_at": unix_now() - 100 + i as i64,
                })),
            )
            .await;
        assert_eq!(status, 201, "{p}: {body}");
        let (status, body) = app
            .call(
                "POST",
                "/v1/messages/reply",
                Some(json!({
                    "provider_message_id": id,
                    "reply": {"provider_message_id": format!("R{i}{}", compact(p)), "body": p},
                })),
            )
            .await;
        assert_eq!(status, 200, "{p}: {body}");
        let (status, body) = app
            .call(
                "POST",
                "/v1/audit",
                Some(json!({
                    "action": "probe", "actor": p, "subject": p, "details": {"k": p, (*p): 1}
                })),
            )
            .await;
        assert_eq!(status, 201, "{p}: {body}");
        // Claims and releases with the payload as id find nothing rather than everything.
        let (status, _) = app
            .call(
                "POST",
                "/v1/messages/claim",
                Some(json!({"provider_message_id": compact(p)})),
            )
            .await;
        assert_eq!(status, 404, "{p}");
    }
    let (messages, users, audits) = tables_intact(&app).await;
    assert_eq!(messages, 2 * PAYLOADS.len() as i64);
    assert_eq!(users, 1);
    assert_eq!(audits, PAYLOADS.len() as i64);

    let (_, hist) = app
        .call(
            "GET",
            &format!("/v1/conversations/history?contact={jid}&limit=100"),
            None,
        )
        .await;
    let bodies: Vec<&str> = hist["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, PAYLOADS);
    let db = app.db.connect().await;
    let stored: Vec<String> = db
        .query(
            "SELECT instance FROM messages WHERE direction = 'inbound' ORDER BY sent_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, PAYLOADS);
    let role: String = db
        .query_one("SELECT role FROM users WHERE username = 'guard'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "staff");
}

#[tokio::test]
async fn injection_in_identifier_fields_is_refused_by_validation() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/users",
        Some(json!({"username": "guard", "password": "guard passphrase long"})),
    )
    .await;
    for p in PAYLOADS {
        let enc = urlencode(p);
        let cases = [
            (
                "POST",
                "/v1/messages".to_owned(),
                Some(json!({
                    "provider_message_id": "OK1", "instance": "i", "contact": p,
                    "direction": "inbound", "body": "b", "sent_at": unix_now()
                })),
            ),
            (
                "POST",
                "/v1/users".to_owned(),
                Some(json!({"username": p, "password": "long enough password"})),
            ),
            (
                "POST",
                "/v1/users/password".to_owned(),
                Some(json!({"username": p, "password": "long enough password"})),
            ),
            (
                "POST",
                "/v1/sessions/revoke".to_owned(),
                Some(json!({"token_id": p, "expires_at": unix_now() + 60})),
            ),
            ("POST", "/v1/audit".to_owned(), Some(json!({"action": p}))),
            (
                "POST",
                "/v1/messages/release".to_owned(),
                Some(json!({"provider_message_id": "OK1", "claim_token": p})),
            ),
            (
                "GET",
                format!("/v1/conversations/history?contact={enc}"),
                None,
            ),
            ("GET", format!("/v1/sessions/revoked?token_id={enc}"), None),
            ("GET", format!("/v1/audit?from={enc}&to=1"), None),
            (
                "GET",
                format!("/v1/conversations/history?contact=5511955550000&limit={enc}"),
                None,
            ),
        ];
        for (method, path, body) in cases {
            let (status, resp) = app.call(method, &path, body).await;
            assert_eq!(status, 400, "{method} {path} with {p}: {resp}");
        }
        // Login with an injected name is just a failed login.
        let (status, resp) = app
            .call(
                "POST",
                "/v1/users/verify",
                Some(json!({"username": p, "password": "guard passphrase long"})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(resp, json!({"valid": false}));
    }
    let (messages, users, audits) = tables_intact(&app).await;
    assert_eq!((messages, users, audits), (0, 1, 0));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
