//! Unit tests of the payload parser (fixtures under tests/fixtures/evolution/, plus a
//! property test: no JSON makes it panic), the authentication methods and text splitting.

use super::*;
use proptest::prelude::*;

const API_KEY: &str = "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F";
const TOKEN: &str = "Zt3vQ9mW2xL7kP4nR8sY1bC6dF0gH5jK-webhook-token";
const JWT_KEY: &str = "a9F3kL0pQ7wE2rT5yU8iO1pA4sD6fG9hJ-jwt-key";
const NOW: u64 = 1_764_590_400;

fn fixture(name: &str) -> Envelope {
    let path = format!(
        "{}/../../tests/fixtures/evolution/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sort(name: &str) -> Result<Inbound, Error> {
    classify(&fixture(name), None, Some("centro-principal"))
}

#[test]
fn a_conversation_message_is_a_text_message_with_its_contact_and_time() {
    let Ok(Inbound::Text(m)) = sort("messages-upsert-text") else {
        panic!("not a text message");
    };
    assert_eq!(m.id, "3EB0C431C26A1916F6E4");
    assert_eq!(m.contact, "5511987654321@s.whatsapp.net");
    assert_eq!(m.text, "Oi! Qual é o horário de funcionamento de vocês?");
    assert_eq!(m.push_name.as_deref(), Some("Maria Souza"));
    assert_eq!(m.sent_at, Some(1_764_590_400));
    assert_eq!(number_of(&m.contact), "5511987654321");
}

#[test]
fn an_extended_text_message_is_read_from_extended_text_message() {
    let Ok(Inbound::Text(m)) = sort("messages-upsert-extended-text") else {
        panic!("not a text message");
    };
    assert!(m.text.starts_with("Quanto custa"));
    assert_eq!(m.sent_at, Some(1_764_590_460), "a string timestamp is read");
}

#[test]
fn a_lid_chat_is_answered_on_the_phone_jid_of_remote_jid_alt() {
    let Ok(Inbound::Text(m)) = sort("messages-upsert-lid") else {
        panic!("not a text message");
    };
    assert_eq!(m.contact, "5511987654321@s.whatsapp.net");
}

#[test]
fn own_group_status_and_media_messages_and_other_events_are_ignored() {
    for (name, reason) in [
        ("messages-upsert-from-me", "from_me"),
        ("messages-upsert-group", "group"),
        ("messages-upsert-status", "status"),
        ("messages-upsert-image", "not_text"),
        ("connection-update", "event"),
    ] {
        assert_eq!(sort(name), Ok(Inbound::Ignored(reason)), "{name}");
    }
}

#[test]
fn another_instance_and_a_by_events_url_for_another_event_are_ignored() {
    let env = fixture("messages-upsert-text");
    assert_eq!(
        classify(&env, None, Some("other-instance")),
        Ok(Inbound::Ignored("instance"))
    );
    assert_eq!(
        classify(&env, Some(&event_from_suffix("messages-update")), None),
        Ok(Inbound::Ignored("event"))
    );
    assert!(matches!(
        classify(&env, Some(&event_from_suffix("messages-upsert")), None),
        Ok(Inbound::Text(_))
    ));
}

#[test]
fn an_upsert_without_its_key_is_a_400_naming_the_field() {
    let env: Envelope = serde_json::from_str(
        r#"{"event":"messages.upsert","instance":"i","data":{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false}}}"#,
    )
    .unwrap_or_default();
    match classify(&env, None, None) {
        Err(Error::BadRequest { message, .. }) => assert!(message.contains("id"), "{message}"),
        other => panic!("{other:?}"),
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            *k,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x")),
        );
    }
    h
}

fn keys() -> AuthKeys<'static> {
    AuthKeys {
        api_key: Some(API_KEY),
        token: Some(TOKEN),
        jwt_key: Some(JWT_KEY),
    }
}

fn jwt(key: &str, issued: u64, valid_s: u64) -> String {
    use jwt_simple::prelude::*;
    let mut claims = Claims::create(Duration::from_secs(valid_s));
    claims.issued_at = Some(UnixTimeStamp::from_secs(issued));
    claims.expires_at = Some(UnixTimeStamp::from_secs(issued + valid_s));
    claims.invalid_before = Some(UnixTimeStamp::from_secs(issued));
    HS256Key::from_bytes(key.as_bytes())
        .authenticate(claims)
        .unwrap_or_default()
}

#[test]
fn the_body_apikey_authenticates_when_it_equals_the_evolution_api_key() {
    let h = HeaderMap::new();
    assert_eq!(
        authenticate(&h, Some(API_KEY), &keys(), NOW),
        Ok(AuthMethod::BodyApiKey)
    );
    assert_eq!(
        authenticate(&h, Some("wrong"), &keys(), NOW),
        Err(Error::Unauthorized)
    );
    assert_eq!(
        authenticate(&h, None, &keys(), NOW),
        Err(Error::Unauthorized)
    );
    let without = AuthKeys {
        api_key: None,
        ..keys()
    };
    assert_eq!(
        authenticate(&h, Some(API_KEY), &without, NOW),
        Err(Error::Unauthorized),
        "an unconfigured method never matches"
    );
}

#[test]
fn the_static_token_authenticates_as_bearer_or_x_webhook_token() {
    let bearer = format!("Bearer {TOKEN}");
    for h in [
        headers(&[("authorization", &bearer)]),
        headers(&[("x-webhook-token", TOKEN)]),
    ] {
        assert_eq!(authenticate(&h, None, &keys(), NOW), Ok(AuthMethod::Token));
    }
    let wrong = headers(&[(
        "x-webhook-token",
        "Zt3vQ9mW2xL7kP4nR8sY1bC6dF0gH5jK-webhook-tokeX",
    )]);
    assert_eq!(
        authenticate(&wrong, None, &keys(), NOW),
        Err(Error::Unauthorized)
    );
}

#[test]
fn an_evolution_jwt_authenticates_within_ten_minutes_only() {
    let fresh = format!("Bearer {}", jwt(JWT_KEY, NOW - 30, 600));
    assert_eq!(
        authenticate(&headers(&[("authorization", &fresh)]), None, &keys(), NOW),
        Ok(AuthMethod::Jwt)
    );
    let old = format!("Bearer {}", jwt(JWT_KEY, NOW - 2_000, 600));
    assert_eq!(
        authenticate(&headers(&[("authorization", &old)]), None, &keys(), NOW),
        Err(Error::Unauthorized)
    );
    let long_lived = format!("Bearer {}", jwt(JWT_KEY, NOW - 1_200, 86_400));
    assert_eq!(
        authenticate(
            &headers(&[("authorization", &long_lived)]),
            None,
            &keys(),
            NOW
        ),
        Err(Error::Unauthorized),
        "older than 10 minutes even if not expired"
    );
    let other_key = format!(
        "Bearer {}",
        jwt("another-key-of-enough-length-000", NOW, 600)
    );
    assert_eq!(
        authenticate(
            &headers(&[("authorization", &other_key)]),
            None,
            &keys(),
            NOW
        ),
        Err(Error::Unauthorized)
    );
}

#[test]
fn long_answers_split_at_sentence_boundaries_under_the_limit() {
    let sentence = "Temos aulas de matemática e português todos os dias. ";
    let text = sentence.repeat(60);
    let parts = split_text(&text, MAX_PART_CHARS);
    assert!(parts.len() >= 2);
    for p in &parts {
        assert!(p.chars().count() <= MAX_PART_CHARS);
        assert!(p.ends_with('.'), "split inside a sentence: {p:?}");
    }
    assert_eq!(parts.join(" "), text.trim());
    assert_eq!(split_text("curta", 10), vec!["curta"]);
    let no_spaces = "é".repeat(25);
    let parts = split_text(&no_spaces, 10);
    assert_eq!(
        parts.concat(),
        no_spaces,
        "hard cut on character boundaries"
    );
}

#[test]
fn send_text_targets_the_instance_with_the_apikey_header() {
    let req = send_text_request(
        "https://evolution.example.com/",
        "centro principal",
        API_KEY,
        "5511987654321",
        "Olá",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        req.uri(),
        "https://evolution.example.com/message/sendText/centro%20principal"
    );
    assert_eq!(req.headers()["apikey"], API_KEY);
    let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
    assert_eq!(
        body,
        serde_json::json!({"number": "5511987654321", "text": "Olá"})
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9@. :_-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("messages.upsert"),
            Just("5511987654321@s.whatsapp.net"),
            Just("120363@g.us"),
            Just("status@broadcast"),
            Just("lid"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("event"),
        Just("instance"),
        Just("apikey"),
        Just("data"),
        Just("key"),
        Just("remoteJid"),
        Just("remoteJidAlt"),
        Just("addressingMode"),
        Just("fromMe"),
        Just("id"),
        Just("message"),
        Just("conversation"),
        Just("extendedTextMessage"),
        Just("text"),
        Just("messageType"),
        Just("messageTimestamp"),
        Just("pushName"),
        Just("low"),
        Just("other"),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_parser_never_panics_on_arbitrary_json(v in arb_json(), by_events in any::<bool>()) {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        if let Ok(env) = serde_json::from_slice::<Envelope>(&bytes) {
            let suffix = by_events.then(|| event_from_suffix("messages-upsert"));
            let _ = classify(&env, suffix.as_deref(), Some("centro-principal"));
            let _ = classify(&env, None, None);
        }
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(env) = serde_json::from_slice::<Envelope>(&bytes) {
            let _ = classify(&env, None, None);
        }
    }

    #[test]
    fn a_text_upsert_with_any_text_and_id_never_panics(text in ".{0,300}", id in ".{0,140}") {
        let v = serde_json::json!({"event": "messages.upsert", "instance": "i", "data": {
            "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": id},
            "message": {"conversation": text}}});
        let env: Envelope = serde_json::from_value(v).unwrap_or_default();
        let _ = classify(&env, None, None);
        for part in split_text(&text, 7) {
            prop_assert!(part.chars().count() <= 7);
        }
    }
}
