//! The webhook: Evolution API deliveries in, one answer per customer message out.
//!
//! Request path (answered in one proxy round trip): authenticate, sort the delivery
//! ([`crate::evolution`]), count the sender ([`crate::ratelimit`] keyed by a hash of the
//! contact), then `POST /v1/messages/ingest`, which stores the message if new, claims it
//! and returns the conversation so far. Proxy or key-value store down → 503 +
//! `Retry-After` (Evolution retries); a 2xx is only sent once the message is in Postgres.
//!
//! After the response ([`Ctx::defer`]), the claim holder answers: handover silence, the
//! per-sender "please wait", the AI provider chain within a time budget, or the built-in
//! responder; the answer is split, sent with `sendText` (retried with backoff), marked in the
//! key-value store, and recorded with `POST /v1/messages/reply` and the claim token (round
//! trip 2). A failed send releases the claim for a later attempt, and after
//! `REPLY_MAX_ATTEMPTS` marks the message failed with an audit event. Stale claims (a worker
//! that died, a lease that expired) are re-driven by the next delivery of the message or by
//! [`redrive`] (Workers cron, `POST /api/v1/webhook/redrive` on Spin).
//!
//! Exactly once: only the claim holder sends; the reply is recorded with its token; a
//! `wh:sent:<id>` marker written right after Evolution accepted the send stops a re-drive
//! from sending again when only the recording failed. The one window left (Evolution
//! accepted, then both the marker and the recording failed, e.g. the instance died between)
//! is described in the README.
//!
//! Logs carry message ids and keyed contact hashes only: never text, numbers or keys.

use hmac::{Hmac, Mac};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::ai::{self, Budget, Chat, Role};
use crate::evolution::{self, AuthKeys, Envelope, Inbound, TextMessage};
use crate::log::Level;
use crate::ports::{KeyValue, Platform, Timer};
use crate::proxy::{self, ProxyCall, ProxyTarget};
use crate::ratelimit::{self, Policy};
use crate::responder::{self, Business, Intent};
use crate::{respond, timeout, Ctx, Error, Request, Response};

/// Largest delivery accepted: text messages are a few KiB; media deliveries with base64
/// thumbnails can be larger and are ignored anyway.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Lease of a claim: longer than the whole answer budget, so a live worker never loses it.
pub const LEASE_SECS: i64 = 90;
/// Time the work after the response may take: inside Cloudflare's 30 s `waitUntil` limit.
pub const WORK_BUDGET_MS: u64 = 25_000;
/// Time kept back from the AI chain for sending and recording.
const SEND_RESERVE_MS: u64 = 7_000;
/// Deadline of one `sendText` call.
const SEND_TIMEOUT_MS: u64 = 5_000;
/// Pauses between `sendText` attempts (three attempts).
const SEND_BACKOFF_MS: [u64; 2] = [300, 1_000];

/// Paths the webhook serves (Spin routes `/webhook/...` and `/api/v1/webhook/...`).
enum Route {
    Ingest { url_event: Option<String> },
    Redrive,
}

fn route(path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    if path == "/api/v1/webhook/redrive" {
        return Some(Route::Redrive);
    }
    let rest = path
        .strip_prefix("/api/v1/webhook/evolution")
        .or_else(|| path.strip_prefix("/webhook"))?;
    match rest {
        "" => Some(Route::Ingest { url_event: None }),
        suffix if suffix.starts_with('/') && !suffix[1..].contains('/') => Some(Route::Ingest {
            url_event: Some(evolution::event_from_suffix(suffix)),
        }),
        _ => None,
    }
}

/// The webhook's settings, read from the validated configuration.
struct Settings {
    instance: Option<String>,
    sender: Policy,
    handover_ms: u64,
    max_attempts: i32,
    history: u32,
    timeout_ms: u64,
}

impl Settings {
    fn from<P: Platform>(ctx: &Ctx<'_, P>) -> Self {
        let cfg = ctx.config;
        let int = |n: &str, d: u32| cfg.text(n).and_then(|t| t.parse().ok()).unwrap_or(d);
        Self {
            instance: cfg.text("EVOLUTION_INSTANCE").map(str::to_owned),
            sender: Policy {
                per_minute: int("WEBHOOK_SENDER_PER_MINUTE", 50),
                burst: int("WEBHOOK_SENDER_BURST", 10),
            },
            handover_ms: u64::from(int("HANDOVER_MINUTES", 120)) * 60_000,
            max_attempts: i32::try_from(int("REPLY_MAX_ATTEMPTS", 5)).unwrap_or(5),
            history: int("HISTORY_MESSAGES", 12),
            timeout_ms: u64::from(int("AI_TIMEOUT_MS", 10_000)),
        }
    }
}

/// Handles a request to the webhook function.
pub async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let Some(route) = route(req.uri().path()) else {
        return Err(Error::NotFound);
    };
    respond::require_post(&req)?;
    match route {
        Route::Redrive => {
            authenticate_operator(&req, ctx)?;
            let report = redrive(ctx).await?;
            Ok(respond::json(StatusCode::OK, &report))
        }
        Route::Ingest { url_event } => ingest(req, ctx, url_event.as_deref()).await,
    }
}

fn auth_keys<'c>(ctx: &'c Ctx<'_, impl Platform>) -> AuthKeys<'c> {
    let cfg = ctx.config;
    AuthKeys {
        api_key: cfg.secret("EVOLUTION_API_KEY").map(|s| s.expose()),
        token: cfg.secret("WEBHOOK_TOKEN").map(|s| s.expose()),
        jwt_key: cfg.secret("EVOLUTION_JWT_KEY").map(|s| s.expose()),
    }
}

/// The re-drive route takes the header methods, or `apikey: <EVOLUTION_API_KEY>` as a
/// header (a cron job has no body to sign).
fn authenticate_operator<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<(), Error> {
    let now_s = ctx.platform.clock().now_unix_ms() / 1000;
    let apikey = req.headers().get("apikey").and_then(|v| v.to_str().ok());
    evolution::authenticate(req.headers(), apikey, &auth_keys(ctx), now_s).map(|_| ())
}

fn ok(status: &str, extra: Value) -> Response {
    let mut body = json!({"status": status});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    respond::json(StatusCode::OK, &body)
}

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A keyed hash of a contact for logs and key-value keys: the same contact gives the same
/// 16 hex characters within a deployment, and nobody without the deployment's proxy key can
/// test a phone number against it. Development without `PROXY_HMAC_KEY` uses a fixed key.
pub fn contact_hash(cfg: &crate::config::EdgeConfig, contact: &str) -> String {
    let key = cfg
        .secret("PROXY_HMAC_KEY")
        .map_or(&b"assistant-edge-contact-hash"[..], |s| {
            s.expose().as_bytes()
        });
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "unhashable".into();
    };
    mac.update(b"contact:");
    mac.update(contact.as_bytes());
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn ingest<P: Platform>(
    req: Request,
    ctx: &Ctx<'_, P>,
    url_event: Option<&str>,
) -> Result<Response, Error> {
    let envelope: Envelope = respond::json_body(&req)?;
    let now_ms = ctx.platform.clock().now_unix_ms();
    let method = evolution::authenticate(
        req.headers(),
        envelope.apikey.as_deref(),
        &auth_keys(ctx),
        now_ms / 1000,
    )
    .inspect_err(|_| ctx.event(Level::Warn, "webhook_unauthorized", Map::new()))?;
    let settings = Settings::from(ctx);
    let message = match evolution::classify(&envelope, url_event, settings.instance.as_deref())? {
        Inbound::Ignored(reason) => {
            ctx.event(
                Level::Info,
                "webhook_ignored",
                fields(&[("reason", reason.into()), ("auth", method.as_str().into())]),
            );
            return Ok(ok("ignored", json!({"reason": reason})));
        }
        Inbound::Text(m) => m,
    };
    let hash = contact_hash(ctx.config, &message.contact);
    let decision = ratelimit::check(
        ctx.platform.kv(),
        &settings.sender,
        "webhook-sender",
        &hash,
        now_ms,
    )
    .await
    .map_err(|e| Error::Unavailable {
        cause: format!("sender limit store: {e}"),
    })?;
    let limited = !decision.allowed;

    let target = ProxyTarget::from_config(ctx.config)?;
    let body = json!({
        "provider_message_id": message.id,
        "instance": message.instance,
        "contact": message.contact,
        "body": message.text,
        "push_name": message.push_name,
        "sent_at": message.sent_at.unwrap_or(now_ms / 1000),
        "lease_secs": LEASE_SECS,
        "history_limit": settings.history.min(50),
    });
    let (_, ingested): (_, Ingested) = proxy::json(
        ctx,
        &target,
        &ProxyCall::post("/v1/messages/ingest", &body)?,
        &[],
    )
    .await?;
    ctx.event(
        Level::Info,
        "webhook_ingested",
        fields(&[
            ("message", message.id.clone().into()),
            ("contact", hash.clone().into()),
            ("new", ingested.new.into()),
            ("claimed", ingested.claimed.into()),
            ("state", ingested.state.clone().into()),
            ("attempts", ingested.attempts.into()),
            ("limited", limited.into()),
            ("auth", method.as_str().into()),
        ]),
    );
    let status = if ingested.new {
        "accepted"
    } else {
        "duplicate"
    };
    let response = ok(status, json!({"id": message.id}));
    if let (true, Some(token)) = (ingested.claimed, ingested.claim_token.clone()) {
        let (platform, config, request_id) = (ctx.platform, ctx.config, ctx.request_id.clone());
        let claim = Claimed {
            message,
            token,
            attempts: ingested.attempts,
            history: ingested.history,
            limited,
        };
        ctx.defer(async move {
            let ctx = Ctx::new(platform, request_id, "webhook", config);
            answer(&ctx, &target, claim).await;
        });
    }
    Ok(response)
}

/// What `POST /v1/messages/ingest` answers.
#[derive(Debug, Deserialize)]
struct Ingested {
    new: bool,
    state: String,
    claimed: bool,
    #[serde(default)]
    claim_token: Option<String>,
    #[serde(default)]
    attempts: i32,
    #[serde(default)]
    history: Vec<HistoryItem>,
}

/// One message of the conversation, as the proxy returns it.
#[derive(Debug, Clone, Deserialize)]
struct HistoryItem {
    provider_message_id: String,
    direction: String,
    body: String,
}

/// A message this worker holds the claim of.
struct Claimed {
    message: TextMessage,
    token: String,
    attempts: i32,
    /// The conversation before the message, oldest first.
    history: Vec<HistoryItem>,
    limited: bool,
}

/// What the worker decided to send.
enum Decision {
    /// Nothing (handover, or over the sender limit after the one "please wait").
    Silence(&'static str),
    /// This text; `source` for the log.
    Send { text: String, source: &'static str },
}

const HANDOVER_PREFIX: &str = "wh:handover:";
const SENT_PREFIX: &str = "wh:sent:";

/// The work after the response: decide, send, record. Logs its own failures.
async fn answer<P: Platform>(ctx: &Ctx<'_, P>, target: &ProxyTarget, claim: Claimed) {
    let started = ctx.platform.clock().now_unix_ms();
    let hash = contact_hash(ctx.config, &claim.message.contact);
    let id = claim.message.id.clone();
    let log = |level: Level, event: &str, extra: &[(&str, Value)]| {
        let mut f = fields(&[
            ("message", id.clone().into()),
            ("contact", hash.clone().into()),
        ]);
        f.extend(fields(extra));
        ctx.event(level, event, f);
    };
    let kv = ctx.platform.kv();

    // A previous attempt that sent but could not record: record, never send again.
    if let Ok(Some(marker)) = kv.get(&format!("{SENT_PREFIX}{id}")).await {
        let sent: SentMarker = serde_json::from_slice(&marker).unwrap_or_default();
        log(Level::Warn, "webhook_reply_already_sent", &[]);
        record(
            ctx,
            target,
            &claim,
            Some((sent.evolution_id, sent.text)),
            &log,
        )
        .await;
        return;
    }

    let decision = decide(ctx, &claim, &hash, started, &log).await;
    let text = match decision {
        Decision::Silence(reason) => {
            log(Level::Info, "webhook_silent", &[("reason", reason.into())]);
            record(ctx, target, &claim, None, &log).await;
            return;
        }
        Decision::Send { text, source } => {
            log(
                Level::Info,
                "webhook_answer_ready",
                &[("source", source.into())],
            );
            text
        }
    };
    match send(ctx, &claim.message, &text).await {
        Ok(evolution_id) => {
            let marker = serde_json::to_vec(&SentMarker {
                evolution_id: evolution_id.clone(),
                text: text.clone(),
            })
            .unwrap_or_default();
            let expires = ctx.platform.clock().now_unix_ms() + 86_400_000;
            if let Err(e) = kv
                .set(&format!("{SENT_PREFIX}{id}"), &marker, Some(expires))
                .await
            {
                log(
                    Level::Warn,
                    "webhook_sent_marker_failed",
                    &[("cause", e.to_string().into())],
                );
            }
            log(
                Level::Info,
                "webhook_sent",
                &[(
                    "ms",
                    ctx.platform
                        .clock()
                        .now_unix_ms()
                        .saturating_sub(started)
                        .into(),
                )],
            );
            record(ctx, target, &claim, Some((evolution_id, text)), &log).await;
        }
        Err(cause) => {
            let failed = claim.attempts >= ctx_max_attempts(ctx);
            log(
                Level::Warn,
                "webhook_send_failed",
                &[
                    ("cause", cause.into()),
                    ("attempts", claim.attempts.into()),
                    ("final", failed.into()),
                ],
            );
            release(ctx, target, &claim, failed, &log).await;
        }
    }
}

fn ctx_max_attempts<P: Platform>(ctx: &Ctx<'_, P>) -> i32 {
    Settings::from(ctx).max_attempts
}

#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct SentMarker {
    evolution_id: Option<String>,
    text: String,
}

async fn decide<P: Platform>(
    ctx: &Ctx<'_, P>,
    claim: &Claimed,
    hash: &str,
    started: u64,
    log: &impl Fn(Level, &str, &[(&str, Value)]),
) -> Decision {
    let settings = Settings::from(ctx);
    let business = Business::from_config(ctx.config);
    let kv = ctx.platform.kv();
    let now = ctx.platform.clock().now_unix_ms();
    if let Ok(Some(_)) = kv.get(&format!("{HANDOVER_PREFIX}{hash}")).await {
        return Decision::Silence("handover");
    }
    if claim.limited {
        let window = now / settings.sender.window_ms();
        let key = format!("ctr:wh:wait:{hash}:{window}");
        let expires = (window + 2) * settings.sender.window_ms();
        return match crate::expiry::increment(kv, &key, 1, expires).await {
            Ok(1) => Decision::Send {
                text: responder::please_wait(&business),
                source: "please_wait",
            },
            _ => Decision::Silence("sender_limit"),
        };
    }
    let intent = responder::intent(&claim.message.text);
    if intent == Intent::Human {
        let until = now + settings.handover_ms;
        if let Err(e) = kv
            .set(&format!("{HANDOVER_PREFIX}{hash}"), b"1", Some(until))
            .await
        {
            log(
                Level::Warn,
                "webhook_handover_not_stored",
                &[("cause", e.to_string().into())],
            );
        }
        return Decision::Send {
            text: responder::answer(intent, &business),
            source: "handover",
        };
    }
    let builtin = |source| Decision::Send {
        text: responder::answer(intent, &business),
        source,
    };
    let providers = ai::providers(ctx.config);
    if providers.is_empty() {
        return builtin("builtin_no_provider");
    }
    let budget = Budget::from_config(ctx.config);
    match budget.exhausted(kv, now).await {
        Ok(false) => {}
        Ok(true) => {
            if budget.first_warning_today(kv, now).await {
                ctx.event(Level::Warn, "llm_daily_budget_spent", Map::new());
            }
            return builtin("builtin_budget");
        }
        Err(e) => {
            log(
                Level::Warn,
                "llm_budget_store_unavailable",
                &[("cause", e.to_string().into())],
            );
            return builtin("builtin_budget_unknown");
        }
    }
    let mut turns: Vec<(Role, String)> = claim
        .history
        .iter()
        .filter(|h| h.provider_message_id != claim.message.id)
        .map(|h| {
            let role = if h.direction == "outbound" {
                Role::Assistant
            } else {
                Role::User
            };
            (role, h.body.clone())
        })
        .collect();
    turns.push((Role::User, claim.message.text.clone()));
    let chat = Chat {
        system: responder::system_prompt(&business),
        turns,
    };
    let clock = ctx.platform.clock();
    let deadline = || {
        let left = (started + WORK_BUDGET_MS).checked_sub(clock.now_unix_ms() + SEND_RESERVE_MS)?;
        (left >= 500).then_some(left.min(settings.timeout_ms))
    };
    match ai::complete(ctx, &providers, &chat, deadline).await {
        Some(c) => {
            let cost = budget.cost_micros(&c);
            if let Err(e) = budget.charge(kv, clock.now_unix_ms(), cost).await {
                log(
                    Level::Warn,
                    "llm_budget_not_charged",
                    &[("cause", e.to_string().into())],
                );
            }
            Decision::Send {
                text: c.text,
                source: c.provider,
            }
        }
        None => builtin("builtin_providers_failed"),
    }
}

/// Sends `text` in parts, each with up to three attempts; the id of the first part.
/// A part after the first that fails ends the send as done: the customer already has the
/// beginning, and sending it again would repeat it.
async fn send<P: Platform>(
    ctx: &Ctx<'_, P>,
    message: &TextMessage,
    text: &str,
) -> Result<Option<String>, String> {
    let cfg = ctx.config;
    let base = cfg
        .text("EVOLUTION_API_URL")
        .ok_or("EVOLUTION_API_URL is not set")?;
    let key = cfg
        .secret("EVOLUTION_API_KEY")
        .ok_or("EVOLUTION_API_KEY is not set")?;
    let instance = cfg.text("EVOLUTION_INSTANCE").unwrap_or(&message.instance);
    let number = evolution::number_of(&message.contact);
    let mut first_id = None;
    for (i, part) in evolution::split_text(text, evolution::MAX_PART_CHARS)
        .iter()
        .enumerate()
    {
        let mut last = String::new();
        let mut sent = false;
        for attempt in 0..=SEND_BACKOFF_MS.len() {
            if attempt > 0 {
                ctx.platform
                    .timer()
                    .sleep(SEND_BACKOFF_MS[attempt - 1])
                    .await;
            }
            let req = evolution::send_text_request(base, instance, key.expose(), &number, part)
                .map_err(|e| e.to_string())?;
            match timeout::within(ctx.platform.timer(), SEND_TIMEOUT_MS, ctx.send(req)).await {
                None => last = format!("timed out after {SEND_TIMEOUT_MS} ms"),
                Some(Err(e)) => last = e.to_string(),
                Some(Ok(resp)) if resp.status().is_success() => {
                    if i == 0 {
                        first_id = evolution::sent_id(&resp);
                    }
                    sent = true;
                    break;
                }
                Some(Ok(resp)) => last = format!("sendText answered {}", resp.status().as_u16()),
            }
        }
        if !sent {
            if i == 0 {
                return Err(last);
            }
            ctx.event(
                Level::Warn,
                "webhook_part_not_sent",
                fields(&[
                    ("message", message.id.clone().into()),
                    ("part", i.into()),
                    ("cause", last.into()),
                ]),
            );
            break;
        }
    }
    Ok(first_id)
}

/// Records the outcome with the claim token (three attempts: a lost recording is the one
/// window that cannot be closed, so it is worth a retry).
async fn record<P: Platform>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    claim: &Claimed,
    reply: Option<(Option<String>, String)>,
    log: &impl Fn(Level, &str, &[(&str, Value)]),
) {
    let reply = reply.map(|(id, text)| match id {
        Some(id) => json!({"provider_message_id": id, "body": text}),
        None => json!({"body": text}),
    });
    let body = json!({
        "provider_message_id": claim.message.id,
        "claim_token": claim.token,
        "reply": reply,
    });
    let mut last = String::new();
    for attempt in 0..3u64 {
        if attempt > 0 {
            ctx.platform.timer().sleep(250 * attempt).await;
        }
        let call = match ProxyCall::post("/v1/messages/reply", &body) {
            Ok(c) => c,
            Err(e) => {
                last = e.to_string();
                break;
            }
        };
        match proxy::json::<_, Value>(ctx, target, &call, &[]).await {
            Ok(_) => {
                log(Level::Info, "webhook_replied", &[]);
                return;
            }
            // 409: the claim was lost (lease expired and another worker took over): that
            // worker records; retrying cannot help.
            Err(e @ Error::Unexpected { .. }) => {
                last = e.to_string();
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    log(
        Level::Error,
        "webhook_reply_not_recorded",
        &[("cause", last.into())],
    );
}

/// Gives the message back for a later attempt, or marks it failed with an audit event.
async fn release<P: Platform>(
    ctx: &Ctx<'_, P>,
    target: &ProxyTarget,
    claim: &Claimed,
    failed: bool,
    log: &impl Fn(Level, &str, &[(&str, Value)]),
) {
    let body = json!({
        "provider_message_id": claim.message.id,
        "claim_token": claim.token,
        "failed": failed,
    });
    if let Ok(call) = ProxyCall::post("/v1/messages/release", &body) {
        if let Err(e) = proxy::json::<_, Value>(ctx, target, &call, &[]).await {
            log(
                Level::Error,
                "webhook_release_failed",
                &[("cause", e.to_string().into())],
            );
        }
    }
    if failed {
        let audit = json!({
            "action": "webhook.reply_failed",
            "subject": claim.message.id,
            "details": {"attempts": claim.attempts, "contact": contact_hash(ctx.config, &claim.message.contact)},
        });
        if let Ok(call) = ProxyCall::post("/v1/audit", &audit) {
            if let Err(e) = proxy::json::<_, Value>(ctx, target, &call, &[]).await {
                log(
                    Level::Error,
                    "webhook_audit_failed",
                    &[("cause", e.to_string().into())],
                );
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct StaleList {
    messages: Vec<StaleItem>,
}

#[derive(Debug, Deserialize)]
struct StaleItem {
    provider_message_id: String,
    instance: String,
    contact: String,
}

#[derive(Debug, Deserialize)]
struct ClaimAnswer {
    claimed: bool,
    #[serde(default)]
    claim_token: Option<String>,
    #[serde(default)]
    attempts: i32,
}

#[derive(Debug, Deserialize)]
struct History {
    messages: Vec<HistoryItem>,
}

/// Re-drives stale messages (a lease that expired, a message never claimed): claims each,
/// reads its conversation, and answers it like a fresh delivery, one after the other within
/// the work budget. Returns counts for the caller (cron log, re-drive route).
pub async fn redrive<P: Platform>(ctx: &Ctx<'_, P>) -> Result<Value, Error> {
    let target = ProxyTarget::from_config(ctx.config)?;
    let settings = Settings::from(ctx);
    let (_, stale): (_, StaleList) = proxy::json(
        ctx,
        &target,
        &ProxyCall::get("/v1/messages/stale?limit=20"),
        &[],
    )
    .await?;
    let started = ctx.platform.clock().now_unix_ms();
    let (mut claimed, mut answered) = (0u32, 0u32);
    for item in &stale.messages {
        if ctx.platform.clock().now_unix_ms() > started + WORK_BUDGET_MS {
            break;
        }
        let body =
            json!({"provider_message_id": item.provider_message_id, "lease_secs": LEASE_SECS});
        let (_, claim): (_, ClaimAnswer) = proxy::json(
            ctx,
            &target,
            &ProxyCall::post("/v1/messages/claim", &body)?,
            &[],
        )
        .await?;
        let Some(token) = claim.claim_token.filter(|_| claim.claimed) else {
            continue;
        };
        claimed += 1;
        let path = format!(
            "/v1/conversations/history?contact={}&limit={}",
            item.contact.replace('+', "%2B"),
            settings.history.clamp(1, 50) + 1
        );
        let (_, history): (_, History) =
            proxy::json(ctx, &target, &ProxyCall::get(&path), &[]).await?;
        let Some(text) = history
            .messages
            .iter()
            .find(|h| h.provider_message_id == item.provider_message_id)
            .map(|h| h.body.clone())
        else {
            continue;
        };
        let claim = Claimed {
            message: TextMessage {
                id: item.provider_message_id.clone(),
                instance: item.instance.clone(),
                contact: item.contact.clone(),
                text,
                push_name: None,
                sent_at: None,
            },
            token,
            attempts: claim.attempts,
            history: history.messages,
            limited: false,
        };
        answer(ctx, &target, claim).await;
        answered += 1;
    }
    let report = json!({"status": "ok", "stale": stale.messages.len(), "claimed": claimed, "answered": answered});
    ctx.event(
        Level::Info,
        "webhook_redrive",
        fields(&[
            ("stale", stale.messages.len().into()),
            ("claimed", claimed.into()),
        ]),
    );
    Ok(report)
}

#[cfg(test)]
mod tests;
