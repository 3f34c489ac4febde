//! The operations behind the API: every SQL statement the service runs lives here, each with
//! bound parameters only. Handlers in [`crate::http`] parse input, call one function here and
//! serialise the result.

use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Contact, Direction, MessageId, Role, Username};
use crate::error::{ApiError, ApiResult};

/// Result of an idempotent message insert.
#[derive(Debug, Serialize)]
pub struct Inserted {
    /// True if this call stored the message; false if it was already there.
    pub new: bool,
    /// The stored message's current state.
    pub state: String,
    /// Row id.
    pub id: i64,
}

/// Fields of a new message.
pub struct NewMessage {
    /// Idempotency key.
    pub provider_message_id: MessageId,
    /// Evolution instance name.
    pub instance: String,
    /// Contact JID or phone.
    pub contact: Contact,
    /// inbound / outbound.
    pub direction: Direction,
    /// Text.
    pub body: String,
    /// WhatsApp display name.
    pub push_name: Option<String>,
    /// Unix seconds the provider reports.
    pub sent_at: i64,
}

/// Inserts a message unless its provider id is already stored. Concurrent duplicates are
/// resolved by the unique index: exactly one caller sees `new: true`.
pub async fn insert_message(db: &Client, m: &NewMessage) -> ApiResult<Inserted> {
    let stmt = db
        .prepare_cached(
            "WITH ins AS (
                 INSERT INTO messages
                     (provider_message_id, instance, contact, direction, body, push_name, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::bigint))
                 ON CONFLICT (provider_message_id) DO NOTHING
                 RETURNING id, state)
             SELECT id, state, true FROM ins
             UNION ALL
             SELECT id, state, false FROM messages
              WHERE provider_message_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[
                &m.provider_message_id.as_str(),
                &m.instance,
                &m.contact.as_str(),
                &m.direction.as_str(),
                &m.body,
                &m.push_name,
                &m.sent_at,
            ],
        )
        .await?;
    match rows.first() {
        Some(r) => Ok(Inserted {
            id: r.get(0),
            state: r.get(1),
            new: r.get(2),
        }),
        // The conflicting row was inserted by a transaction we cannot see yet (READ
        // COMMITTED snapshot taken before it committed): it exists, so this is not new.
        None => {
            let r = db
                .query_opt(
                    "SELECT id, state FROM messages WHERE provider_message_id = $1",
                    &[&m.provider_message_id.as_str()],
                )
                .await?
                .ok_or_else(|| {
                    ApiError::Unexpected(anyhow::anyhow!("conflicting message vanished"))
                })?;
            Ok(Inserted {
                id: r.get(0),
                state: r.get(1),
                new: false,
            })
        }
    }
}

/// Result of a claim attempt.
#[derive(Debug, Serialize)]
pub struct Claim {
    /// True if this caller now owns the message until `claimed_until`.
    pub claimed: bool,
    /// Current state.
    pub state: String,
    /// Token to present on reply/release; only when claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<String>,
    /// Unix seconds the lease ends; only when claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_until: Option<i64>,
    /// How many times the message has been claimed.
    pub attempts: i32,
}

/// Claims a message for processing: succeeds if it is `received`, or `processing` with an
/// expired lease (the previous worker died). A webhook retry of a message that is being or
/// has been processed gets `claimed: false`.
pub async fn claim_message(
    db: &Client,
    id: &MessageId,
    lease_secs: i64,
    token: &str,
) -> ApiResult<Claim> {
    let stmt = db
        .prepare_cached(
            "UPDATE messages
                SET state = 'processing', claim_token = $2,
                    claimed_until = now() + make_interval(secs => $3::bigint),
                    attempts = attempts + 1
              WHERE provider_message_id = $1
                AND (state = 'received' OR (state = 'processing' AND claimed_until < now()))
          RETURNING state, extract(epoch FROM claimed_until)::bigint, attempts",
        )
        .await?;
    if let Some(r) = db
        .query_opt(&stmt, &[&id.as_str(), &token, &lease_secs])
        .await?
    {
        return Ok(Claim {
            claimed: true,
            state: r.get(0),
            claim_token: Some(token.to_owned()),
            claimed_until: Some(r.get(1)),
            attempts: r.get(2),
        });
    }
    let r = db
        .query_opt(
            "SELECT state, attempts FROM messages WHERE provider_message_id = $1",
            &[&id.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no message with this provider_message_id".into()))?;
    Ok(Claim {
        claimed: false,
        state: r.get(0),
        claim_token: None,
        claimed_until: None,
        attempts: r.get(1),
    })
}

/// Result of a state transition.
#[derive(Debug, Serialize)]
pub struct Transition {
    /// True if this call changed the state.
    pub changed: bool,
    /// State after the call.
    pub state: String,
}

/// Outbound reply to store with the transition, so it shows up in the history.
pub struct Reply {
    /// Provider id of the sent reply, if the provider returned one.
    pub provider_message_id: Option<MessageId>,
    /// Reply text.
    pub body: String,
}

/// Marks a message replied (received/processing → replied). A `processing` message needs
/// the claim token of its holder, and a token must hold the message (409 otherwise); a
/// `received` message may be replied to without one. Replying twice is a no-op
/// (`changed: false`).
/// Optionally stores the reply as an outbound message in the same transaction.
pub async fn mark_replied(
    db: &mut Client,
    id: &MessageId,
    claim_token: Option<&str>,
    reply: Option<Reply>,
) -> ApiResult<Transition> {
    let tx = db.transaction().await?;
    let current = tx
        .query_opt(
            "SELECT state, claim_token, instance, contact FROM messages
              WHERE provider_message_id = $1 FOR UPDATE",
            &[&id.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no message with this provider_message_id".into()))?;
    let state: String = current.get(0);
    let holder: Option<String> = current.get(1);
    if state == "replied" {
        return Ok(Transition {
            changed: false,
            state,
        });
    }
    if state == "failed" {
        return Err(ApiError::Conflict("message is marked failed".into()));
    }
    // While a worker holds the message, only that worker may mark it replied: a reply
    // without the token would let a second worker's answer through ("never sent twice").
    match (claim_token, state.as_str()) {
        (None, "processing") => {
            return Err(ApiError::Conflict(
                "message is being processed; claim_token is required".into(),
            ))
        }
        (None, _) => {}
        (Some(token), _) => {
            let held = holder
                .as_deref()
                .is_some_and(|h| proxy_auth::constant_time_eq(h.as_bytes(), token.as_bytes()));
            if state != "processing" || !held {
                return Err(ApiError::Conflict(
                    "claim_token does not hold this message".into(),
                ));
            }
        }
    }
    tx.execute(
        "UPDATE messages SET state = 'replied', replied_at = now(), claim_token = NULL,
                claimed_until = NULL
          WHERE provider_message_id = $1",
        &[&id.as_str()],
    )
    .await?;
    if let Some(reply) = reply {
        let instance: String = current.get(2);
        let contact: String = current.get(3);
        let reply_id = reply
            .provider_message_id
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| format!("reply:{}", id.as_str()));
        tx.execute(
            "INSERT INTO messages
                 (provider_message_id, instance, contact, direction, body, sent_at, state)
             VALUES ($1, $2, $3, 'outbound', $4, now(), 'replied')
             ON CONFLICT (provider_message_id) DO NOTHING",
            &[&reply_id, &instance, &contact, &reply.body],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Transition {
        changed: true,
        state: "replied".into(),
    })
}

/// Gives a claimed message back (processing → received) after a failed attempt, so a
/// retry can claim it at once instead of waiting for the lease; or marks it `failed` for
/// good.
pub async fn release_message(
    db: &Client,
    id: &MessageId,
    claim_token: &str,
    failed: bool,
) -> ApiResult<Transition> {
    let new_state = if failed { "failed" } else { "received" };
    let n = db
        .execute(
            "UPDATE messages SET state = $3, claim_token = NULL, claimed_until = NULL
              WHERE provider_message_id = $1 AND state = 'processing' AND claim_token = $2",
            &[&id.as_str(), &claim_token, &new_state],
        )
        .await?;
    if n == 1 {
        return Ok(Transition {
            changed: true,
            state: new_state.into(),
        });
    }
    let exists = db
        .query_opt(
            "SELECT 1 FROM messages WHERE provider_message_id = $1",
            &[&id.as_str()],
        )
        .await?;
    match exists {
        None => Err(ApiError::NotFound(
            "no message with this provider_message_id".into(),
        )),
        Some(_) => Err(ApiError::Conflict(
            "claim_token does not hold this message".into(),
        )),
    }
}

/// One message in a conversation history.
#[derive(Debug, Serialize)]
pub struct HistoryItem {
    /// Provider id.
    pub provider_message_id: String,
    /// inbound / outbound.
    pub direction: String,
    /// Text.
    pub body: String,
    /// Unix seconds.
    pub sent_at: i64,
    /// Processing state.
    pub state: String,
}

/// The most recent `limit` messages with a contact, oldest first (ready for a prompt).
pub async fn history(db: &Client, contact: &Contact, limit: i64) -> ApiResult<Vec<HistoryItem>> {
    let stmt = db
        .prepare_cached(
            "SELECT provider_message_id, direction, body, sent_at, state FROM (
                 SELECT provider_message_id, direction, body,
                        extract(epoch FROM sent_at)::bigint AS sent_at, state, id,
                        messages.sent_at AS ts
                   FROM messages WHERE contact = $1
                  ORDER BY messages.sent_at DESC, id DESC LIMIT $2) recent
             ORDER BY ts ASC, id ASC",
        )
        .await?;
    let rows = db.query(&stmt, &[&contact.as_str(), &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| HistoryItem {
            provider_message_id: r.get(0),
            direction: r.get(1),
            body: r.get(2),
            sent_at: r.get(3),
            state: r.get(4),
        })
        .collect())
}

/// A user as returned to callers (never the hash).
#[derive(Debug, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// Creates a user with an already computed argon2id PHC hash; 409 if the name is taken.
pub async fn create_user(
    db: &Client,
    username: &Username,
    password_hash: &str,
    role: Role,
) -> ApiResult<User> {
    let row = db
        .query_opt(
            "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
            &[&username.as_str(), &password_hash, &role.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::Conflict("username already exists".into()))?;
    Ok(User {
        id: row.get(0),
        username: username.as_str().to_owned(),
        role,
    })
}

/// Replaces a user's password hash; 404 if there is no such user.
pub async fn set_password(db: &Client, username: &Username, password_hash: &str) -> ApiResult<()> {
    let n = db
        .execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE username = $1",
            &[&username.as_str(), &password_hash],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound("no such user".into()));
    }
    Ok(())
}

/// The user and stored hash for a login name, if it exists. Verification happens in the
/// caller after the connection is released ([`crate::password::verify_async`]).
pub async fn find_credentials(
    db: &Client,
    username: &Username,
) -> ApiResult<Option<(User, String)>> {
    let stmt = db
        .prepare_cached("SELECT id, password_hash, role FROM users WHERE username = $1")
        .await?;
    let row = db.query_opt(&stmt, &[&username.as_str()]).await?;
    Ok(row.map(|r| {
        (
            User {
                id: r.get(0),
                username: username.as_str().to_owned(),
                role: Role::from_db(r.get::<_, &str>(2)),
            },
            r.get(1),
        )
    }))
}

/// Records a revoked session token id until `expires_at` (unix seconds). Idempotent.
pub async fn revoke_session(db: &Client, token_id: &str, expires_at: i64) -> ApiResult<()> {
    db.execute(
        "INSERT INTO revoked_sessions (token_id, expires_at) VALUES ($1, to_timestamp($2::bigint))
         ON CONFLICT (token_id) DO UPDATE SET expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)",
        &[&token_id, &expires_at],
    )
    .await?;
    Ok(())
}

/// True if the token id was revoked and has not expired yet.
pub async fn is_revoked(db: &Client, token_id: &str) -> ApiResult<bool> {
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE token_id = $1 AND expires_at > now())",
        )
        .await?;
    Ok(db.query_one(&stmt, &[&token_id]).await?.get(0))
}

/// An audit event.
#[derive(Debug, Serialize)]
pub struct AuditEvent {
    /// Row id (increasing).
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened, e.g. `login.success`.
    pub action: String,
    /// Who did it.
    pub actor: Option<String>,
    /// What it was done to.
    pub subject: Option<String>,
    /// The signed request id that recorded it.
    pub request_id: Option<String>,
    /// Free-form JSON object.
    pub details: Value,
}

/// Appends an audit event; returns its id and time.
pub async fn append_audit(
    db: &Client,
    action: &str,
    actor: Option<&str>,
    subject: Option<&str>,
    request_id: &str,
    details: &Value,
) -> ApiResult<(i64, i64)> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO audit_events (action, actor, subject, request_id, details)
             VALUES ($1, $2, $3, $4, $5) RETURNING id, extract(epoch FROM at)::bigint",
        )
        .await?;
    let r = db
        .query_one(&stmt, &[&action, &actor, &subject, &request_id, details])
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Audit events with `from <= at < to` (unix seconds), oldest first, at most `limit`.
pub async fn list_audit(db: &Client, from: i64, to: i64, limit: i64) -> ApiResult<Vec<AuditEvent>> {
    let stmt = db
        .prepare_cached(
            "SELECT id, extract(epoch FROM at)::bigint, action, actor, subject, request_id, details
               FROM audit_events
              WHERE at >= to_timestamp($1::bigint) AND at < to_timestamp($2::bigint)
              ORDER BY at, id LIMIT $3",
        )
        .await?;
    let rows = db.query(&stmt, &[&from, &to, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| AuditEvent {
            id: r.get(0),
            at: r.get(1),
            action: r.get(2),
            actor: r.get(3),
            subject: r.get(4),
            request_id: r.get(5),
            details: r.get(6),
        })
        .collect())
}

/// Records a signature nonce (V2 nonce, V1 request id); false if it was already seen (a
/// replay).
pub async fn remember_nonce(db: &Client, nonce: &str) -> ApiResult<bool> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO request_nonces (request_id) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .await?;
    Ok(db.execute(&stmt, &[&nonce]).await? == 1)
}

/// Deletes replay-cache rows older than `keep_secs` and expired revocations.
pub async fn janitor(db: &Client, keep_secs: i64) -> ApiResult<(u64, u64)> {
    let nonces = db
        .execute(
            "DELETE FROM request_nonces WHERE seen_at < now() - make_interval(secs => $1::bigint)",
            &[&keep_secs],
        )
        .await?;
    let revoked = db
        .execute("DELETE FROM revoked_sessions WHERE expires_at < now()", &[])
        .await?;
    Ok((nonces, revoked))
}

/// A database round trip; returns the server's time in unix seconds.
pub async fn ping(db: &Client) -> ApiResult<i64> {
    let stmt = db
        .prepare_cached("SELECT extract(epoch FROM now())::bigint")
        .await?;
    Ok(db.query_one(&stmt, &[]).await?.get(0))
}
