//! The webhook's rules on the memory ports with a fixed clock: authentication, ignoring,
//! one proxy round trip before the answer, the answer after it (provider, built-in,
//! failover), send retries, release and the sent marker. Outbound calls answer from
//! `MemoryHttp`'s queue in the order the flow makes them.

use super::*;
use crate::config::load;
use crate::memory::{block_on, MemoryPlatform};
use crate::ports::PortError;
use crate::serve::{serve, Function};
use crate::Bytes;
use http::{header, HeaderValue};

struct Hook;
impl Function for Hook {
    const NAME: &'static str = "webhook";
    const MAX_BODY_BYTES: usize = MAX_BODY_BYTES;
    const RATE_LIMITED: bool = false;
    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        handle(req, ctx).await
    }
}

const API_KEY: &str = "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F";
const HMAC: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";
const OPENAI: &str = "sk-proj-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";

fn platform(extra: &[(&str, &str)]) -> MemoryPlatform {
    let p = MemoryPlatform::default();
    for (k, v) in [
        ("ENVIRONMENT", "development"),
        ("EVOLUTION_API_KEY", API_KEY),
        ("EVOLUTION_API_URL", "https://evolution.test"),
        ("EVOLUTION_INSTANCE", "centro-principal"),
        ("PROXY_URL", "https://proxy.test"),
        ("PROXY_HMAC_KEY", HMAC),
        ("BUSINESS_NAME", "Centro Aprender"),
        ("BUSINESS_HOURS", "Mon-Fri 09:00-18:00"),
    ]
    .iter()
    .chain(extra)
    {
        p.vars.set(&k.to_ascii_lowercase(), v);
    }
    p
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/fixtures/evolution/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn post(path: &str, body: &str) -> Request {
    let mut req = Request::new(Bytes::from(body.to_owned()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = path.parse().unwrap_or_default();
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    req
}

fn run(p: &MemoryPlatform, req: Request) -> (u16, Value) {
    let cfg = load(p, "webhook", &[]);
    if let Err(e) = &cfg {
        panic!("{e:?}")
    }
    let resp = block_on(serve::<Hook, _>(p, &cfg, req, None));
    let body = serde_json::from_slice(resp.body()).unwrap_or_default();
    (resp.status().as_u16(), body)
}

fn reply(status: u16, body: Value) -> Result<Response, PortError> {
    let mut r = Response::new(Bytes::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or_default();
    Ok(r)
}

fn queue(p: &MemoryPlatform, replies: Vec<Result<Response, PortError>>) {
    p.http.replies.borrow_mut().extend(replies);
}

fn ingested_new() -> Result<Response, PortError> {
    reply(
        200,
        json!({"new": true, "state": "processing", "claimed": true,
               "claim_token": "0123456789abcdef0123456789abcdef", "attempts": 1,
               "history": [{"provider_message_id": "OLD1", "direction": "inbound", "body": "Oi", "sent_at": 1, "state": "replied"},
                           {"provider_message_id": "OLD2", "direction": "outbound", "body": "Olá!", "sent_at": 2, "state": "replied"}]}),
    )
}

fn sent_paths(p: &MemoryPlatform) -> Vec<String> {
    p.http
        .sent
        .borrow()
        .iter()
        .map(|r| r.uri().to_string())
        .collect()
}

#[test]
fn a_text_message_is_ingested_in_one_proxy_call_then_answered_by_the_provider_and_recorded() {
    let p = platform(&[
        ("OPENAI_API_KEY", OPENAI),
        ("OPENAI_BASE_URL", "https://ai.test/v1"),
    ]);
    queue(
        &p,
        vec![
            ingested_new(),
            reply(
                200,
                json!({"model": "gpt-4o-mini", "choices": [{"message": {"content": "Abrimos das 9h às 18h."}}],
                              "usage": {"prompt_tokens": 50, "completion_tokens": 9}}),
            ),
            reply(201, json!({"key": {"id": "BAE5OUT1"}})),
            reply(200, json!({"changed": true, "state": "replied"})),
        ],
    );
    let (status, body) = run(
        &p,
        post(
            "/api/v1/webhook/evolution",
            &fixture("messages-upsert-text"),
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        sent_paths(&p),
        [
            "https://proxy.test/v1/messages/ingest",
            "https://ai.test/v1/chat/completions",
            "https://evolution.test/message/sendText/centro-principal",
            "https://proxy.test/v1/messages/reply",
        ]
    );
    let sent = p.http.sent.borrow();
    let ai: Value = serde_json::from_slice(sent[1].body()).unwrap_or_default();
    assert!(ai["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .contains("Centro Aprender"));
    assert_eq!(ai["messages"][1]["content"], "Oi", "history first");
    assert_eq!(ai["messages"][2]["role"], "assistant");
    assert_eq!(
        ai["messages"][3]["content"],
        "Oi! Qual é o horário de funcionamento de vocês?"
    );
    let send: Value = serde_json::from_slice(sent[2].body()).unwrap_or_default();
    assert_eq!(
        send,
        json!({"number": "5511987654321", "text": "Abrimos das 9h às 18h."})
    );
    assert_eq!(sent[2].headers()["apikey"], API_KEY);
    let rec: Value = serde_json::from_slice(sent[3].body()).unwrap_or_default();
    assert_eq!(rec["claim_token"], "0123456789abcdef0123456789abcdef");
    assert_eq!(rec["reply"]["provider_message_id"], "BAE5OUT1");
    let logs = p.log.lines().join("\n");
    for secret in ["5511987654321", "horário", OPENAI, API_KEY, "Abrimos"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn without_a_provider_the_built_in_responder_answers_from_the_business_settings() {
    let p = platform(&[]);
    queue(
        &p,
        vec![
            ingested_new(),
            reply(201, json!({"key": {"id": "X"}})),
            reply(200, json!({})),
        ],
    );
    let (status, _) = run(&p, post("/webhook", &fixture("messages-upsert-text")));
    assert_eq!(status, 200);
    let sent = p.http.sent.borrow();
    assert_eq!(sent.len(), 3);
    let send: Value = serde_json::from_slice(sent[1].body()).unwrap_or_default();
    assert!(send["text"]
        .as_str()
        .unwrap_or_default()
        .contains("Mon-Fri 09:00-18:00"));
}

#[test]
fn send_failures_are_retried_and_a_lost_send_releases_the_claim() {
    let p = platform(&[]);
    queue(
        &p,
        vec![
            ingested_new(),
            reply(500, json!({})),
            Err(PortError::Unavailable("refused".into())),
            reply(201, json!({"key": {"id": "X"}})),
            reply(200, json!({})),
        ],
    );
    run(&p, post("/webhook", &fixture("messages-upsert-text")));
    let paths = sent_paths(&p);
    assert_eq!(paths.iter().filter(|u| u.contains("sendText")).count(), 3);
    assert!(paths.last().is_some_and(|u| u.ends_with("/reply")));

    let p = platform(&[]);
    queue(
        &p,
        vec![
            ingested_new(),
            reply(500, json!({})),
            reply(500, json!({})),
            reply(500, json!({})),
            reply(200, json!({})),
        ],
    );
    run(&p, post("/webhook", &fixture("messages-upsert-text")));
    let sent = p.http.sent.borrow();
    let last = sent.last().map(|r| (r.uri().to_string(), r.body().clone()));
    let (uri, body) = last.unwrap_or_default();
    assert!(uri.ends_with("/v1/messages/release"), "{uri}");
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(v["failed"], false, "attempt 1 of 5: back for a retry");
}

#[test]
fn a_duplicate_that_is_not_claimed_is_answered_duplicate_and_never_sent() {
    let p = platform(&[]);
    queue(
        &p,
        vec![reply(
            200,
            json!({"new": false, "state": "replied", "claimed": false, "attempts": 1, "history": []}),
        )],
    );
    let (status, body) = run(&p, post("/webhook", &fixture("messages-upsert-text")));
    assert_eq!((status, body["status"].clone()), (200, json!("duplicate")));
    assert_eq!(p.http.sent.borrow().len(), 1);
}

#[test]
fn ignored_deliveries_make_no_outbound_call() {
    let p = platform(&[]);
    for (name, reason) in [
        ("messages-upsert-from-me", "from_me"),
        ("messages-upsert-group", "group"),
        ("messages-upsert-image", "not_text"),
        ("connection-update", "event"),
    ] {
        let (status, body) = run(&p, post("/webhook", &fixture(name)));
        assert_eq!(status, 200);
        assert_eq!(body, json!({"status": "ignored", "reason": reason}));
    }
    assert!(p.http.sent.borrow().is_empty());
}

#[test]
fn wrong_or_missing_credentials_get_401_and_malformed_json_400() {
    let p = platform(&[]);
    let bad = fixture("messages-upsert-text").replace(API_KEY, "wrong-key");
    assert_eq!(run(&p, post("/webhook", &bad)).0, 401);
    assert_eq!(run(&p, post("/webhook", "{\"event\":")).0, 400);
    assert_eq!(run(&p, post("/webhook/messages-upsert/x", "{}")).0, 404);
    assert!(p.http.sent.borrow().is_empty());
}

#[test]
fn a_proxy_outage_at_ingest_is_503_with_retry_after() {
    let p = platform(&[]);
    queue(&p, vec![Err(PortError::Unavailable("refused".into()))]);
    let cfg = load(&p, "webhook", &[]);
    let resp = block_on(serve::<Hook, _>(
        &p,
        &cfg,
        post("/webhook", &fixture("messages-upsert-text")),
        None,
    ));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
}

#[test]
fn asking_for_a_person_hands_over_and_later_messages_get_silence() {
    let p = platform(&[]);
    let ask = fixture("messages-upsert-text").replace(
        "Oi! Qual é o horário de funcionamento de vocês?",
        "Quero falar com um atendente",
    );
    queue(
        &p,
        vec![ingested_new(), reply(201, json!({})), reply(200, json!({}))],
    );
    run(&p, post("/webhook", &ask));
    p.http.sent.borrow_mut().clear();
    queue(&p, vec![ingested_new(), reply(200, json!({}))]);
    run(
        &p,
        post("/webhook", &fixture("messages-upsert-extended-text")),
    );
    assert_eq!(
        sent_paths(&p),
        [
            "https://proxy.test/v1/messages/ingest",
            "https://proxy.test/v1/messages/reply"
        ],
        "silence: recorded, nothing sent"
    );
}
