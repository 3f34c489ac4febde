//! Messages: idempotent insert (also under concurrent duplicates), claim / reply / release
//! state machine, conversation history, validation.

use serde_json::{json, Value};

use crate::helpers::{error_code, message, unix_now, TestApp};

const JID: &str = "5511999990000@s.whatsapp.net";

#[tokio::test]
async fn inserting_a_message_twice_stores_it_once() {
    let app = TestApp::spawn().await;
    let m = message("3EB0AAA1", JID, "Oi, qual o horário?", unix_now());
    let (status, first) = app.call("POST", "/v1/messages", Some(m.clone())).await;
    assert_eq!(status, 201);
    assert_eq!(first["new"], true);
    assert_eq!(first["state"], "received");
    let (status, second) = app.call("POST", "/v1/messages", Some(m)).await;
    assert_eq!(status, 200);
    assert_eq!(second["new"], false);
    assert_eq!(second["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_inserts_yield_exactly_one_new() {
    let app = TestApp::spawn().await;
    let m = message("3EB0DUP", JID, "duplicate delivery", unix_now());
    let calls = (0..16).map(|_| app.call("POST", "/v1/messages", Some(m.clone())));
    let results = futures::future::join_all(calls).await;
    let news = results.iter().filter(|(_, b)| b["new"] == true).count();
    assert!(
        results.iter().all(|(s, _)| *s == 201 || *s == 200),
        "{results:?}"
    );
    assert_eq!(news, 1, "{results:?}");
    let db = app.db.connect().await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE provider_message_id = '3EB0DUP'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_claimed_by_exactly_one_of_many_concurrent_workers() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("3EB0CLM", JID, "hi", unix_now())),
    )
    .await;
    let claim = json!({"provider_message_id": "3EB0CLM"});
    let results = futures::future::join_all(
        (0..8).map(|_| app.call("POST", "/v1/messages/claim", Some(claim.clone()))),
    )
    .await;
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(s, b)| *s == 200 && b["claimed"] == true)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0]["state"], "processing");
    assert_eq!(winners[0]["claim_token"].as_str().unwrap().len(), 32);
    for (s, b) in &results {
        assert_eq!(*s, 200);
        if b["claimed"] == false {
            assert_eq!(b["state"], "processing");
            assert!(b.get("claim_token").is_none());
        }
    }
}

#[tokio::test]
async fn received_to_processing_to_replied_with_the_claim_token() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("3EB0FLOW", JID, "quero matricular", unix_now())),
    )
    .await;
    let (_, claim) = app
        .call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": "3EB0FLOW", "lease_secs": 60})),
        )
        .await;
    let token = claim["claim_token"].as_str().unwrap().to_owned();
    assert!(claim["claimed_until"].as_i64().unwrap() >= unix_now() + 55);
    assert_eq!(claim["attempts"], 1);

    // A webhook retry arriving now cannot claim it.
    let (_, retry) = app
        .call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": "3EB0FLOW"})),
        )
        .await;
    assert_eq!(retry["claimed"], false);

    // The wrong token cannot reply.
    let (status, body) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({
                "provider_message_id": "3EB0FLOW", "claim_token": "0".repeat(32)
            })),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "conflict");

    let (status, replied) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({
                "provider_message_id": "3EB0FLOW",
                "claim_token": token,
                "reply": {"provider_message_id": "BAE5REPLY1", "body": "Claro! Segunda às 15h."}
            })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(replied, json!({"changed": true, "state": "replied"}));

    // Replying again is an idempotent no-op; claiming a replied message fails.
    let (_, again) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({"provider_message_id": "3EB0FLOW"})),
        )
        .await;
    assert_eq!(again, json!({"changed": false, "state": "replied"}));
    let (_, late) = app
        .call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": "3EB0FLOW"})),
        )
        .await;
    assert_eq!(late["claimed"], false);
    assert_eq!(late["state"], "replied");

    // The reply is in the history as an outbound message.
    let (_, hist) = app
        .call(
            "GET",
            &format!("/v1/conversations/history?contact={JID}&limit=10"),
            None,
        )
        .await;
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["direction"], "outbound");
    assert_eq!(msgs[1]["provider_message_id"], "BAE5REPLY1");
    assert_eq!(msgs[1]["body"], "Claro! Segunda às 15h.");
}

#[tokio::test]
async fn a_reply_without_a_claim_moves_received_to_replied() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("3EB0DIRECT", JID, "ok", unix_now())),
    )
    .await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({"provider_message_id": "3EB0DIRECT"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"changed": true, "state": "replied"}));
}

#[tokio::test]
async fn a_released_or_expired_claim_can_be_claimed_again() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("3EB0REL", JID, "hi", unix_now())),
    )
    .await;
    let claim = json!({"provider_message_id": "3EB0REL"});
    let (_, c1) = app
        .call("POST", "/v1/messages/claim", Some(claim.clone()))
        .await;
    let (status, rel) = app
        .call(
            "POST",
            "/v1/messages/release",
            Some(json!({
                "provider_message_id": "3EB0REL", "claim_token": c1["claim_token"]
            })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rel, json!({"changed": true, "state": "received"}));
    let (_, c2) = app
        .call("POST", "/v1/messages/claim", Some(claim.clone()))
        .await;
    assert_eq!(c2["claimed"], true);
    assert_eq!(c2["attempts"], 2);

    // Simulate a worker that died: its lease ran out.
    let db = app.db.connect().await;
    db.execute(
        "UPDATE messages SET claimed_until = now() - interval '1 second' WHERE provider_message_id = '3EB0REL'",
        &[],
    )
    .await
    .unwrap();
    let (_, c3) = app
        .call("POST", "/v1/messages/claim", Some(claim.clone()))
        .await;
    assert_eq!(c3["claimed"], true);
    assert_eq!(c3["attempts"], 3);
    assert_ne!(c3["claim_token"], c2["claim_token"]);

    // The stale token no longer releases it; marking failed with the live token is final.
    let (status, _) = app
        .call(
            "POST",
            "/v1/messages/release",
            Some(json!({
                "provider_message_id": "3EB0REL", "claim_token": c2["claim_token"]
            })),
        )
        .await;
    assert_eq!(status, 409);
    let (_, failed) = app
        .call(
            "POST",
            "/v1/messages/release",
            Some(json!({
                "provider_message_id": "3EB0REL", "claim_token": c3["claim_token"], "failed": true
            })),
        )
        .await;
    assert_eq!(failed["state"], "failed");
    let (_, c4) = app.call("POST", "/v1/messages/claim", Some(claim)).await;
    assert_eq!(c4["claimed"], false);
    assert_eq!(c4["state"], "failed");
}

#[tokio::test]
async fn unknown_messages_are_404() {
    let app = TestApp::spawn().await;
    for path in ["/v1/messages/claim", "/v1/messages/reply"] {
        let (status, body) = app
            .call("POST", path, Some(json!({"provider_message_id": "NOPE"})))
            .await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(error_code(&body), "not_found");
    }
}

/// The history page of `JID` with `limit` (asserting 200): the answer and its bodies in order.
async fn history_page(app: &TestApp, limit: u32) -> (Value, Vec<String>) {
    let (status, hist) = app
        .call(
            "GET",
            &format!("/v1/conversations/history?contact={JID}&limit={limit}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{hist}");
    let bodies = hist["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    (hist, bodies)
}

#[tokio::test]
async fn history_returns_the_most_recent_n_oldest_first_for_that_contact_only() {
    let app = TestApp::spawn().await;
    let t0 = unix_now() - 1000;
    for i in 0..5 {
        app.call(
            "POST",
            "/v1/messages",
            Some(message(&format!("M{i}"), JID, &format!("msg {i}"), t0 + i)),
        )
        .await;
    }
    app.call(
        "POST",
        "/v1/messages",
        Some(message("OTHER", "5511888880000@s.whatsapp.net", "x", t0)),
    )
    .await;
    let (hist, bodies) = history_page(&app, 3).await;
    assert_eq!(bodies, ["msg 2", "msg 3", "msg 4"]);
    assert_eq!(hist["messages"][2]["sent_at"], t0 + 4);
    assert_eq!(hist["contact"], JID);
}

#[tokio::test]
async fn history_orders_by_sent_at_then_insertion_whatever_order_they_arrived_in() {
    let app = TestApp::spawn().await;
    let t0 = unix_now() - 1000;
    // Inserted out of time order, two in the same second: the page is by (sent_at, id).
    for (id, at) in [
        ("LATE", 10),
        ("EARLY", 1),
        ("TIE-A", 5),
        ("TIE-B", 5),
        ("MID", 7),
    ] {
        let (status, _) = app
            .call("POST", "/v1/messages", Some(message(id, JID, id, t0 + at)))
            .await;
        assert_eq!(status, 201, "{id}");
    }
    for (limit, want) in [
        (10, &["EARLY", "TIE-A", "TIE-B", "MID", "LATE"][..]),
        (3, &["TIE-B", "MID", "LATE"]),
        (1, &["LATE"]),
    ] {
        assert_eq!(history_page(&app, limit).await.1, want, "limit {limit}");
    }
}

#[tokio::test]
async fn history_bodies_round_trip_through_json_whatever_they_contain() {
    let app = TestApp::spawn().await;
    let t0 = unix_now() - 1000;
    let bodies = [
        "plain",
        "a \"quoted\" word and a back\\slash",
        "line one\nline two\ttabbed",
        "ünïcödé 😀 — アイ / slash",
    ];
    for (i, body) in bodies.iter().enumerate() {
        let (status, answer) = app
            .call(
                "POST",
                "/v1/messages",
                Some(message(&format!("J{i}"), JID, body, t0 + i as i64)),
            )
            .await;
        assert_eq!(status, 201, "{body:?}: {answer}");
    }
    let (hist, got) = history_page(&app, 10).await;
    assert_eq!(got, bodies);
    let first = &hist["messages"][0];
    assert_eq!(first["provider_message_id"], "J0");
    assert_eq!(first["direction"], "inbound");
    assert_eq!(first["sent_at"], t0);
    assert_eq!(first["state"], "received");
    assert_eq!(first.as_object().unwrap().len(), 5);
}

#[tokio::test]
async fn invalid_message_bodies_are_400_and_wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let mut bad_direction = message("X1", JID, "b", unix_now());
    bad_direction["direction"] = json!("sideways");
    let mut extra_field = message("X2", JID, "b", unix_now());
    extra_field["sql"] = json!("SELECT 1");
    let mut bad_time = message("X3", JID, "b", unix_now());
    bad_time["sent_at"] = json!(12);
    let mut long_body = message("X4", JID, "b", unix_now());
    long_body["body"] = json!("a".repeat(16_385));
    for (i, m) in [bad_direction, extra_field, bad_time, long_body]
        .into_iter()
        .enumerate()
    {
        let (status, body) = app.call("POST", "/v1/messages", Some(m)).await;
        assert_eq!(status, 400, "case {i}: {body}");
        assert_eq!(error_code(&body), "bad_request");
    }
    let bytes = serde_json::to_vec(&message("X5", JID, "b", unix_now())).unwrap();
    let resp = app
        .signed_raw("POST", "/v1/messages", bytes, "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (status, _) = app
        .call("GET", "/v1/conversations/history?contact=ab", None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .call(
            "GET",
            &format!("/v1/conversations/history?contact={JID}&limit=0"),
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_reply_to_a_message_being_processed_needs_the_claim_token() {
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/messages",
        Some(message("3EB0LEASE", JID, "oi", unix_now())),
    )
    .await;
    let (_, claim) = app
        .call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": "3EB0LEASE"})),
        )
        .await;
    assert_eq!(claim["claimed"], true);
    // Another worker (or a bug) tries to record a reply without holding the lease.
    let (status, body) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({
                "provider_message_id": "3EB0LEASE",
                "reply": {"body": "a second answer"}
            })),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    // Nothing changed: still processing, no outbound message stored.
    let db = app.db.connect().await;
    let row = db
        .query_one(
            "SELECT state, (SELECT count(*) FROM messages WHERE direction = 'outbound')
               FROM messages WHERE provider_message_id = '3EB0LEASE'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "processing");
    assert_eq!(row.get::<_, i64>(1), 0);
    // The holder replies with its token.
    let (status, done) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({
                "provider_message_id": "3EB0LEASE",
                "claim_token": claim["claim_token"],
                "reply": {"body": "the one answer"}
            })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(done, json!({"changed": true, "state": "replied"}));
}
