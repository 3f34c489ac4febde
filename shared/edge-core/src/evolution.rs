//! Evolution API v2, the WhatsApp gateway: the webhook payload (typed, tolerant of unknown
//! fields, never panicking on any JSON), the three ways a delivery authenticates, and the
//! outbound `sendText` call with its text splitting.
//!
//! The payload of `messages.upsert` (what this module reads of it):
//! `{event, instance, apikey, data: {key: {remoteJid, fromMe, id, remoteJidAlt?,
//! addressingMode?}, pushName, message: {conversation | extendedTextMessage.text},
//! messageType, messageTimestamp}}`. Everything else is ignored.

use http::{header, HeaderMap, HeaderValue, Method};
use serde::Deserialize;
use serde_json::Value;

use crate::{Bytes, Error, Request, Response};

/// The one event the assistant answers.
pub const EVENT_UPSERT: &str = "messages.upsert";

/// The delivery as Evolution posts it. Only `data` of a `messages.upsert` is read further;
/// every field is optional here so that any event parses, and unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    /// `messages.upsert`, `connection.update`, ...
    #[serde(default)]
    pub event: Option<String>,
    /// The instance (WhatsApp number) that received the message.
    #[serde(default)]
    pub instance: Option<String>,
    /// The instance's API key, when the server exposes it (authentication method a).
    #[serde(default)]
    pub apikey: Option<String>,
    /// The event's data; its shape depends on the event.
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Deserialize)]
struct Data {
    key: Key,
    #[serde(default, rename = "pushName")]
    push_name: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default, rename = "messageType")]
    message_type: Option<String>,
    #[serde(default, rename = "messageTimestamp")]
    message_timestamp: Value,
}

#[derive(Debug, Deserialize)]
struct Key {
    #[serde(rename = "remoteJid")]
    remote_jid: String,
    #[serde(rename = "fromMe")]
    from_me: bool,
    id: String,
    #[serde(default, rename = "remoteJidAlt")]
    remote_jid_alt: Option<String>,
    #[serde(default, rename = "addressingMode")]
    addressing_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    conversation: Option<String>,
    #[serde(default, rename = "extendedTextMessage")]
    extended: Option<Extended>,
}

#[derive(Debug, Deserialize)]
struct Extended {
    #[serde(default)]
    text: Option<String>,
}

/// A text message from a customer, ready to be stored and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// `data.key.id`: the idempotency key.
    pub id: String,
    /// The instance it arrived on.
    pub instance: String,
    /// The conversation's contact: the phone JID (`remoteJidAlt` when the chat is addressed by
    /// LID, else `remoteJid`).
    pub contact: String,
    /// The message text.
    pub text: String,
    /// The sender's WhatsApp display name.
    pub push_name: Option<String>,
    /// Unix seconds (`messageTimestamp`), or `None` when absent.
    pub sent_at: Option<u64>,
}

/// What a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Not for the assistant; answered 200 with this reason.
    Ignored(&'static str),
    /// A customer's text message.
    Text(TextMessage),
}

/// The event named by Evolution's "webhook by events" URL suffix (`messages-upsert` →
/// `messages.upsert`).
pub fn event_from_suffix(suffix: &str) -> String {
    suffix
        .trim_matches('/')
        .to_ascii_lowercase()
        .replace('-', ".")
}

/// Sorts a delivery: events other than `messages.upsert` (in the body or the URL suffix),
/// another instance, our own messages, groups, status and broadcast chats and messages
/// without text are [`Inbound::Ignored`]; a `messages.upsert` whose `data` lacks a required
/// field (`key.remoteJid`, `key.fromMe`, `key.id`) is a 400. Never panics.
pub fn classify(
    envelope: &Envelope,
    url_event: Option<&str>,
    expected_instance: Option<&str>,
) -> Result<Inbound, Error> {
    let event = envelope.event.as_deref().map(str::to_ascii_lowercase);
    let is_upsert = |e: &str| e == EVENT_UPSERT || e == "messages_upsert";
    if !event.as_deref().is_some_and(is_upsert) || url_event.is_some_and(|e| !is_upsert(e)) {
        return Ok(Inbound::Ignored("event"));
    }
    let instance = envelope.instance.clone().unwrap_or_default();
    if expected_instance.is_some_and(|want| want != instance) {
        return Ok(Inbound::Ignored("instance"));
    }
    let data: Data = Data::deserialize(&envelope.data).map_err(|e| {
        let detail = e.to_string();
        // serde names the missing field (ours, never the caller's data).
        let field = detail
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(|f| format!(": missing field {f}"))
            .unwrap_or_default();
        Error::bad_request(
            "invalid_payload",
            format!("messages.upsert data does not have the expected shape{field}."),
        )
    })?;
    if data.key.from_me {
        return Ok(Inbound::Ignored("from_me"));
    }
    let lid = data.key.addressing_mode.as_deref() == Some("lid");
    let contact = match (&data.key.remote_jid_alt, lid) {
        (Some(alt), true) if !alt.is_empty() => alt.clone(),
        _ => data.key.remote_jid.clone(),
    };
    if contact.ends_with("@g.us") {
        return Ok(Inbound::Ignored("group"));
    }
    if contact.ends_with("@broadcast") || contact.ends_with("@newsletter") {
        return Ok(Inbound::Ignored("status"));
    }
    let text = data
        .message
        .as_ref()
        .and_then(|m| {
            m.conversation
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| m.extended.as_ref().and_then(|e| e.text.clone()))
        })
        .filter(|t| !t.trim().is_empty());
    let typed_text = matches!(
        data.message_type.as_deref(),
        None | Some("conversation") | Some("extendedTextMessage")
    );
    let Some(text) = text.filter(|_| typed_text) else {
        return Ok(Inbound::Ignored("not_text"));
    };
    if !valid_id(&data.key.id) {
        return Err(Error::bad_request(
            "invalid_payload",
            "data.key.id must be 1 to 128 characters without whitespace.",
        ));
    }
    if !valid_contact(&contact) {
        return Err(Error::bad_request(
            "invalid_payload",
            "data.key.remoteJid is not a WhatsApp address.",
        ));
    }
    Ok(Inbound::Text(TextMessage {
        id: data.key.id,
        instance,
        contact,
        text,
        push_name: data.push_name.filter(|n| !n.trim().is_empty()),
        sent_at: timestamp(&data.message_timestamp),
    }))
}

/// `messageTimestamp` arrives as a number, a numeric string or a protobuf Long
/// (`{"low": .., "high": ..}`), depending on the Evolution version.
fn timestamp(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => o
            .get("low")
            .and_then(Value::as_i64)
            .map(|l| l as u32 as u64),
        _ => None,
    }
    .filter(|t| *t > 0)
}

/// A provider message id the proxy accepts: 1–128 characters, no whitespace.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && !id.chars().any(char::is_whitespace)
}

/// A contact the proxy accepts: 3–128 of `A-Za-z0-9 + . _ : @ -`.
pub fn valid_contact(contact: &str) -> bool {
    (3..=128).contains(&contact.len())
        && contact.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b':' | b'@' | b'-')
        })
}

/// The `number` sendText takes for `contact`: the digits of a phone JID, the whole JID
/// otherwise (LID chats without a phone alternative).
pub fn number_of(contact: &str) -> String {
    match contact.strip_suffix("@s.whatsapp.net") {
        Some(digits) => digits.split(':').next().unwrap_or(digits).to_owned(),
        None => contact.to_owned(),
    }
}

/// The configured credentials a delivery may present. Values stay in the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthKeys<'a> {
    /// `EVOLUTION_API_KEY`: equal to the body's `apikey` (method a).
    pub api_key: Option<&'a str>,
    /// `WEBHOOK_TOKEN`: `Authorization: Bearer` or `X-Webhook-Token` (method b).
    pub token: Option<&'a str>,
    /// `EVOLUTION_JWT_KEY`: HS256 JWT in `Authorization: Bearer`, at most 10 minutes old
    /// (method c).
    pub jwt_key: Option<&'a str>,
}

/// Which method authenticated a delivery (logged; never the credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The body's `apikey`.
    BodyApiKey,
    /// The static header token.
    Token,
    /// Evolution's `jwt_key` JWT.
    Jwt,
}

impl AuthMethod {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyApiKey => "apikey",
            Self::Token => "token",
            Self::Jwt => "jwt",
        }
    }
}

/// Longest a `jwt_key` token may have existed: Evolution signs each with a 10-minute expiry.
pub const JWT_MAX_AGE_S: u64 = 600;
/// Clock difference tolerated between Evolution and us.
pub const JWT_SKEW_S: u64 = 60;

fn eq(a: &str, b: &str) -> bool {
    proxy_auth::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// Authenticates a delivery by any configured method, comparing in constant time; anything
/// else is [`Error::Unauthorized`] (Evolution does not retry a 401). `now_s` comes from the
/// clock port (jwt-simple is given it; it never reads a clock here).
pub fn authenticate(
    headers: &HeaderMap,
    body_apikey: Option<&str>,
    keys: &AuthKeys<'_>,
    now_s: u64,
) -> Result<AuthMethod, Error> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    });
    if let Some(token) = keys.token {
        if bearer.is_some_and(|b| eq(b, token))
            || header("x-webhook-token").is_some_and(|t| eq(t, token))
        {
            return Ok(AuthMethod::Token);
        }
    }
    if let (Some(key), Some(jwt)) = (keys.jwt_key, bearer) {
        if jwt.matches('.').count() == 2 && verify_jwt(key, jwt, now_s) {
            return Ok(AuthMethod::Jwt);
        }
    }
    if let (Some(key), Some(given)) = (keys.api_key, body_apikey) {
        if eq(given.trim(), key) {
            return Ok(AuthMethod::BodyApiKey);
        }
    }
    Err(Error::Unauthorized)
}

/// Whether `token` is an HS256 JWT signed with `key` (the bytes of the text Evolution was
/// given as `jwt_key`), issued at most [`JWT_MAX_AGE_S`] ago and not expired.
fn verify_jwt(key: &str, token: &str, now_s: u64) -> bool {
    use jwt_simple::prelude::*;
    let key = HS256Key::from_bytes(key.as_bytes());
    let options = VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(now_s)),
        time_tolerance: Some(Duration::from_secs(JWT_SKEW_S)),
        max_validity: Some(Duration::from_secs(JWT_MAX_AGE_S)),
        max_token_length: Some(4096),
        ..Default::default()
    };
    match key.verify_token::<NoCustomClaims>(token, Some(options)) {
        // Evolution always sets both; a token without them is not one of its tokens.
        Ok(claims) => claims.issued_at.is_some() && claims.expires_at.is_some(),
        Err(_) => false,
    }
}

/// WhatsApp takes 65,536 characters, but long bubbles read badly: answers are split at
/// sentence boundaries into parts of at most this many characters.
pub const MAX_PART_CHARS: usize = 1_200;

/// Splits `text` into parts of at most `max` characters, preferring paragraph, then
/// sentence, then word boundaries; never splits inside a character.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        // Byte index just past `max` characters.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let cut = window
            .rfind("\n\n")
            .map(|i| i + 2)
            .or_else(|| {
                [". ", "! ", "? ", ".\n", "!\n", "?\n", "\n"]
                    .iter()
                    .filter_map(|p| window.rfind(p).map(|i| i + p.len()))
                    .max()
            })
            .or_else(|| window.rfind(' ').map(|i| i + 1))
            .filter(|i| *i > 0)
            .unwrap_or(limit);
        let (head, tail) = rest.split_at(cut);
        if !head.trim().is_empty() {
            parts.push(head.trim().to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// `POST {base}/message/sendText/{instance}` with header `apikey` and body
/// `{"number","text"}`.
pub fn send_text_request(
    base: &str,
    instance: &str,
    api_key: &str,
    number: &str,
    text: &str,
) -> Result<Request, Error> {
    let body = serde_json::json!({"number": number, "text": text}).to_string();
    let mut req = Request::new(Bytes::from(body));
    *req.method_mut() = Method::POST;
    let instance: String = instance
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    *req.uri_mut() = format!("{}/message/sendText/{instance}", base.trim_end_matches('/'))
        .parse()
        .map_err(|_| Error::Unexpected {
            cause: "EVOLUTION_API_URL does not form a URI".into(),
        })?;
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let key = HeaderValue::from_str(api_key).map_err(|_| Error::Unexpected {
        cause: "EVOLUTION_API_KEY is not a header value".into(),
    })?;
    headers.insert("apikey", key);
    Ok(req)
}

/// The id Evolution gave the sent message (`key.id`), if its answer has one.
pub fn sent_id(resp: &Response) -> Option<String> {
    let v: Value = serde_json::from_slice(resp.body()).ok()?;
    v["key"]["id"]
        .as_str()
        .filter(|id| valid_id(id))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
