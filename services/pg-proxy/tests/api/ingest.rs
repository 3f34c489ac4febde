//! Webhook ingest in one round trip (issue 10): insert-if-new and claim in one statement,
//! the conversation so far, re-drive of an expired lease, exactly one claimer under
//! concurrency; and the stale listing a scheduled re-drive uses.

use serde_json::{json, Value};

use crate::helpers::{error_code, message, unix_now, TestApp};

const JID: &str = "5511944440000@s.whatsapp.net";

fn inbound(id: &str, body: &str, sent_at: i64) -> Value {
    json!({
        "provider_message_id": id, "instance": "kumon-main", "contact": JID,
        "body": body, "push_name": "Ana", "sent_at": sent_at,
    })
}

async fn ingest(app: &TestApp, body: Value) -> (u16, Value) {
    app.call("POST", "/v1/messages/ingest", Some(body)).await
}

async fn exec(app: &TestApp, sql: &str) {
    app.db.connect().await.execute(sql, &[]).await.unwrap();
}

#[tokio::test]
async fn a_new_message_is_stored_claimed_and_answered_with_the_conversation_before_it() {
    let app = TestApp::spawn().await;
    let t0 = unix_now() - 100;
    for i in 0..4 {
        app.call(
            "POST",
            "/v1/messages",
            Some(message(
                &format!("OLD{i}"),
                JID,
                &format!("earlier {i}"),
                t0 + i,
            )),
        )
        .await;
    }
    // Another contact's message never shows up.
    app.call(
        "POST",
        "/v1/messages",
        Some(message("ELSE", "5511000000000@s.whatsapp.net", "x", t0)),
    )
    .await;
    let mut body = inbound("ING1", "quero saber o preço", t0 + 10);
    body["history_limit"] = json!(3);
    body["lease_secs"] = json!(60);
    let (status, r) = ingest(&app, body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["new"], true);
    assert_eq!(r["claimed"], true);
    assert_eq!(r["state"], "processing");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["claim_token"].as_str().unwrap().len(), 32);
    assert!(r["claimed_until"].as_i64().unwrap() >= unix_now() + 55);
    let bodies: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["earlier 1", "earlier 2", "earlier 3"]);

    // The claim token works for the reply, as with /v1/messages/claim.
    let (status, _) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({
                "provider_message_id": "ING1", "claim_token": r["claim_token"],
                "reply": {"body": "R$ 300"}
            })),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn redeliveries_get_no_claim_while_held_replied_or_failed_and_re_drive_an_expired_lease() {
    let app = TestApp::spawn().await;
    let m = inbound("ING2", "oi", unix_now());
    let (_, first) = ingest(&app, m.clone()).await;
    assert_eq!(first["claimed"], true);

    let (_, held) = ingest(&app, m.clone()).await;
    assert_eq!(
        (&held["new"], &held["claimed"], &held["state"]),
        (&json!(false), &json!(false), &json!("processing"))
    );
    assert!(held.get("claim_token").is_none());
    assert_eq!(held["attempts"], 1);

    // The worker died: its lease ran out. The next delivery takes the message over.
    exec(
        &app,
        "UPDATE messages SET claimed_until = now() - interval '1 second'
          WHERE provider_message_id = 'ING2'",
    )
    .await;
    let (_, redriven) = ingest(&app, m.clone()).await;
    assert_eq!(
        (&redriven["new"], &redriven["claimed"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(redriven["attempts"], 2);
    assert_ne!(redriven["claim_token"], first["claim_token"]);
    // The first worker's token no longer holds it.
    let (status, _) = app
        .call(
            "POST",
            "/v1/messages/reply",
            Some(json!({"provider_message_id": "ING2", "claim_token": first["claim_token"]})),
        )
        .await;
    assert_eq!(status, 409);
    app.call(
        "POST",
        "/v1/messages/reply",
        Some(json!({"provider_message_id": "ING2", "claim_token": redriven["claim_token"]})),
    )
    .await;
    let (_, replied) = ingest(&app, m).await;
    assert_eq!(
        (&replied["claimed"], &replied["state"]),
        (&json!(false), &json!("replied"))
    );

    // A failed message stays failed.
    let f = inbound("ING3", "x", unix_now());
    let (_, c) = ingest(&app, f.clone()).await;
    app.call(
        "POST",
        "/v1/messages/release",
        Some(
            json!({"provider_message_id": "ING3", "claim_token": c["claim_token"], "failed": true}),
        ),
    )
    .await;
    let (_, failed) = ingest(&app, f).await;
    assert_eq!(
        (&failed["claimed"], &failed["state"]),
        (&json!(false), &json!("failed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_concurrent_ingests_of_one_message_claims_it() {
    let app = TestApp::spawn().await;
    let m = inbound("ING4", "duas entregas", unix_now());
    let results = futures::future::join_all((0..8).map(|_| ingest(&app, m.clone()))).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let claimed = results.iter().filter(|(_, r)| r["claimed"] == true).count();
    let new = results.iter().filter(|(_, r)| r["new"] == true).count();
    assert_eq!((claimed, new), (1, 1), "{results:?}");

    // The same for a re-drive of an expired lease.
    exec(
        &app,
        "UPDATE messages SET claimed_until = now() - interval '1 second'
          WHERE provider_message_id = 'ING4'",
    )
    .await;
    let results = futures::future::join_all((0..8).map(|_| ingest(&app, m.clone()))).await;
    let claimed: Vec<&Value> = results
        .iter()
        .filter(|(_, r)| r["claimed"] == true)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(claimed.len(), 1, "{results:?}");
    assert_eq!(claimed[0]["attempts"], 2);
}

#[tokio::test]
async fn ingest_validates_its_input() {
    let app = TestApp::spawn().await;
    for (field, value) in [
        ("history_limit", json!(51)),
        ("history_limit", json!(-1)),
        ("lease_secs", json!(0)),
        ("direction", json!("outbound")),
        ("contact", json!("no spaces allowed")),
    ] {
        let mut m = inbound("ING5", "x", unix_now());
        m[field] = value;
        let (status, body) = ingest(&app, m).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(error_code(&body), "bad_request");
    }
    let mut m = inbound("ING5", "x", unix_now());
    m["history_limit"] = json!(0);
    let (status, body) = ingest(&app, m).await;
    assert_eq!(status, 200);
    assert_eq!(body["history"], json!([]));
}

#[tokio::test]
async fn stale_lists_expired_leases_and_long_unclaimed_messages_with_their_attempts() {
    let app = TestApp::spawn().await;
    let now = unix_now();
    for id in ["EXPIRED", "HELD", "FRESH", "OLD", "DONE"] {
        app.call("POST", "/v1/messages", Some(message(id, JID, "x", now)))
            .await;
    }
    for id in ["EXPIRED", "HELD", "DONE"] {
        app.call(
            "POST",
            "/v1/messages/claim",
            Some(json!({"provider_message_id": id})),
        )
        .await;
    }
    let db = app.db.connect().await;
    db.batch_execute(
        "UPDATE messages SET claimed_until = now() - interval '5 seconds'
          WHERE provider_message_id = 'EXPIRED';
         UPDATE messages SET stored_at = now() - interval '2 minutes'
          WHERE provider_message_id IN ('OLD', 'DONE');
         UPDATE messages SET state = 'replied' WHERE provider_message_id = 'DONE'",
    )
    .await
    .unwrap();
    let (status, r) = app.call("GET", "/v1/messages/stale?limit=10", None).await;
    assert_eq!(status, 200);
    let listed: Vec<(&str, &str, i64)> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["provider_message_id"].as_str().unwrap(),
                m["state"].as_str().unwrap(),
                m["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "only the expired lease and the old unclaimed message: {r}"
    );
    assert!(listed.contains(&("EXPIRED", "processing", 1)), "{r}");
    assert!(listed.contains(&("OLD", "received", 0)), "{r}");
    assert_eq!(
        app.call("GET", "/v1/messages/stale?limit=0", None).await.0,
        400
    );
}
