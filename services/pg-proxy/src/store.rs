//! The operations behind the API: every SQL statement the service runs lives here, each with
//! bound parameters only. Handlers in [`crate::http`] parse input, call one function here and
//! serialise the result.
//!
//! Replay protection lives here too: every operation that changes state takes the request's
//! [`Nonce`] and records it in `request_nonces` **in the same statement or transaction** as
//! the change. A replayed nonce makes the whole operation a no-op answered 401, and a
//! change is never committed without its nonce (README "Replay protection by operation").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Contact, Direction, MessageId, Role, Username};
use crate::error::{ApiError, ApiResult};

/// The verified signature nonce of a state-changing request (V2 nonce, V1 request id). The
/// signature middleware creates it; the store records it with the change and marks it, so
/// the middleware can refuse a successful write that forgot to (a bug, answered 500).
#[derive(Debug)]
pub struct Nonce {
    value: String,
    recorded: AtomicBool,
}

impl Nonce {
    /// Wraps a verified nonce.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            recorded: AtomicBool::new(false),
        }
    }

    /// The nonce text.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// For an operation that is idempotent by its own key (message insert): a replay of it
    /// changes nothing, so no nonce needs recording, and the request counts as recorded.
    pub fn not_needed(&self) {
        self.recorded.store(true, Ordering::Release);
    }

    /// True once a statement recorded it.
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }

    /// `fresh` is what the recording statement reported: true marks the nonce recorded,
    /// false (already in the table) is a replay.
    fn accept(&self, fresh: bool) -> ApiResult<()> {
        if fresh {
            self.recorded.store(true, Ordering::Release);
            Ok(())
        } else {
            Err(ApiError::Unauthorized("nonce already used".into()))
        }
    }
}

/// The first CTE of every state-changing statement: `n` has one row if the nonce ($1 of the
/// fragment, renumbered by the caller) was new, none if it is a replay. A concurrent insert of
/// the same nonce waits for the first transaction and then finds the conflict.
macro_rules! with_nonce {
    ($param:literal, $($rest:literal),+ $(,)?) => {
        concat!(
            "WITH n AS (INSERT INTO request_nonces (nonce) VALUES (", $param,
            ") ON CONFLICT DO NOTHING RETURNING 1)",
            $($rest),+
        )
    };
}

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

/// Inserts each message unless its provider id is already stored, all in **one statement**
/// (see [`crate::batch`]), and returns one result per message, in order. No nonce: the insert
/// is idempotent by provider id, so a replayed request changes nothing and is answered like a
/// webhook retry (`new: false`, README "Replay protection by operation"). Exactly one caller
/// sees `new: true` for a given id, whether the duplicates arrive in one batch (resolved here)
/// or concurrently in several (resolved by the unique index). Rows are inserted in provider-id
/// order, so concurrent batches take their index locks in one order and cannot deadlock.
pub async fn insert_messages(db: &Client, batch: &[NewMessage]) -> ApiResult<Vec<Inserted>> {
    // Only the insert: a join against `messages` for the conflicting ids would be planned once
    // per connection (prepared, generic plan) and, planned while the table is small, as a
    // sequential scan that grows with the table. Conflicts (retries) are looked up below.
    let stmt = db
        .prepare_cached(
            "INSERT INTO messages
                 (provider_message_id, instance, contact, direction, body, push_name, sent_at)
             SELECT pid, instance, contact, direction, body, push_name, to_timestamp(sent_at)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::bigint[])
                    AS t(pid, instance, contact, direction, body, push_name, sent_at)
              ORDER BY pid
             ON CONFLICT (provider_message_id) DO NOTHING
             RETURNING provider_message_id, id, state",
        )
        .await?;
    let pids: Vec<&str> = batch
        .iter()
        .map(|m| m.provider_message_id.as_str())
        .collect();
    let instances: Vec<&str> = batch.iter().map(|m| m.instance.as_str()).collect();
    let contacts: Vec<&str> = batch.iter().map(|m| m.contact.as_str()).collect();
    let directions: Vec<&str> = batch.iter().map(|m| m.direction.as_str()).collect();
    let bodies: Vec<&str> = batch.iter().map(|m| m.body.as_str()).collect();
    let push_names: Vec<Option<&str>> = batch.iter().map(|m| m.push_name.as_deref()).collect();
    let sent_at: Vec<i64> = batch.iter().map(|m| m.sent_at).collect();
    let rows = db
        .query(
            &stmt,
            &[
                &pids,
                &instances,
                &contacts,
                &directions,
                &bodies,
                &push_names,
                &sent_at,
            ],
        )
        .await?;
    // provider id -> (id, state, inserted by this statement)
    let mut found: HashMap<String, (i64, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), true)))
        .collect();
    let missing: Vec<&str> = pids
        .iter()
        .copied()
        .filter(|p| !found.contains_key(*p))
        .collect();
    if !missing.is_empty() {
        // Already stored (a retry), possibly by a transaction that committed while this
        // statement waited for it: a new statement sees it.
        let existing = db
            .query(
                "SELECT provider_message_id, id, state FROM messages
                  WHERE provider_message_id = ANY($1)",
                &[&missing],
            )
            .await?;
        for r in &existing {
            found.insert(r.get(0), (r.get(1), r.get(2), false));
        }
    }
    let mut out = Vec::with_capacity(batch.len());
    for pid in &pids {
        let Some((id, state, inserted)) = found.get_mut(*pid) else {
            return Err(ApiError::Unexpected(anyhow::anyhow!(
                "conflicting message vanished"
            )));
        };
        out.push(Inserted {
            id: *id,
            state: state.clone(),
            new: *inserted,
        });
        // Two requests for one id in this batch share the inserted row: the first is new.
        *inserted = false;
    }
    Ok(out)
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
/// has been processed gets `claimed: false`. One statement: nonce, claim, and the current
/// state when the claim does not apply (a second one only when a concurrent claim won).
pub async fn claim_message(
    db: &Client,
    id: &MessageId,
    lease_secs: i64,
    token: &str,
    nonce: &Nonce,
) -> ApiResult<Claim> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$4",
            ", u AS (
                 UPDATE messages
                    SET state = 'processing', claim_token = $2,
                        claimed_until = now() + make_interval(secs => $3::bigint),
                        attempts = attempts + 1
                  WHERE provider_message_id = $1
                    AND (state = 'received' OR (state = 'processing' AND claimed_until < now()))
                    AND EXISTS (SELECT 1 FROM n)
              RETURNING state, extract(epoch FROM claimed_until)::bigint AS until, attempts)
             SELECT EXISTS (SELECT 1 FROM n), u.state IS NOT NULL,
                    COALESCE(u.state, m.state), u.until, COALESCE(u.attempts, m.attempts),
                    m.id IS NOT NULL
               FROM (VALUES (1)) AS one
               LEFT JOIN u ON true
               LEFT JOIN messages m ON m.provider_message_id = $1"
        ))
        .await?;
    let r = db
        .query_one(&stmt, &[&id.as_str(), &token, &lease_secs, &nonce.as_str()])
        .await?;
    nonce.accept(r.get(0))?;
    if !r.get::<_, bool>(5) {
        return Err(ApiError::NotFound(
            "no message with this provider_message_id".into(),
        ));
    }
    let claimed: bool = r.get(1);
    let (mut state, mut attempts): (String, i32) = (r.get(2), r.get(4));
    if !claimed && state == "received" {
        // Not claimable yet `received`: the statement's snapshot predates a concurrent
        // winner's commit (its UPDATE waited for the winner's lock, re-checked the committed
        // row and skipped it). A new statement sees what the winner committed.
        let now = db
            .query_one(
                "SELECT state, attempts FROM messages WHERE provider_message_id = $1",
                &[&id.as_str()],
            )
            .await?;
        (state, attempts) = (now.get(0), now.get(1));
    }
    Ok(Claim {
        claimed,
        state,
        claim_token: claimed.then(|| token.to_owned()),
        claimed_until: r.get(3),
        attempts,
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

/// Why a reply to a message in `state` held by `holder` is refused, if it is: a failed
/// message is final; while a worker holds the message, only that worker may mark it replied
/// (a reply without the token would let a second worker's answer through, breaking "never
/// sent twice"); a token must hold the message.
fn reply_refusal(state: &str, holder: Option<&str>, claim_token: Option<&str>) -> Option<ApiError> {
    match (state, claim_token) {
        ("replied", _) => None,
        ("failed", _) => Some(ApiError::Conflict("message is marked failed".into())),
        ("processing", None) => Some(ApiError::Conflict(
            "message is being processed; claim_token is required".into(),
        )),
        (_, None) => None,
        (_, Some(token)) => {
            let held = holder
                .is_some_and(|h| proxy_auth::constant_time_eq(h.as_bytes(), token.as_bytes()));
            (state != "processing" || !held)
                .then(|| ApiError::Conflict("claim_token does not hold this message".into()))
        }
    }
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
    nonce: &Nonce,
) -> ApiResult<Transition> {
    let tx = db.transaction().await?;
    record_nonce_in(&tx, nonce).await?;
    let current = tx
        .query_opt(
            "SELECT state, claim_token, instance, contact FROM messages
              WHERE provider_message_id = $1 FOR UPDATE",
            &[&id.as_str()],
        )
        .await?;
    // A refusal still commits the nonce, so this signed request cannot be replayed later,
    // when the message's state might let it through.
    let Some(current) = current else {
        tx.commit().await?;
        return Err(ApiError::NotFound(
            "no message with this provider_message_id".into(),
        ));
    };
    if let Some(refused) = reply_refusal(current.get(0), current.get(1), claim_token) {
        tx.commit().await?;
        return Err(refused);
    }
    let state: String = current.get(0);
    if state == "replied" {
        tx.commit().await?;
        return Ok(Transition {
            changed: false,
            state,
        });
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
    nonce: &Nonce,
) -> ApiResult<Transition> {
    let new_state = if failed { "failed" } else { "received" };
    let stmt = db
        .prepare_cached(with_nonce!(
            "$4",
            ", u AS (
                 UPDATE messages SET state = $3, claim_token = NULL, claimed_until = NULL
                  WHERE provider_message_id = $1 AND state = 'processing' AND claim_token = $2
                    AND EXISTS (SELECT 1 FROM n)
              RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM n), EXISTS (SELECT 1 FROM u),
                    EXISTS (SELECT 1 FROM messages WHERE provider_message_id = $1)"
        ))
        .await?;
    let r = db
        .query_one(
            &stmt,
            &[&id.as_str(), &claim_token, &new_state, &nonce.as_str()],
        )
        .await?;
    nonce.accept(r.get(0))?;
    match (r.get::<_, bool>(1), r.get::<_, bool>(2)) {
        (true, _) => Ok(Transition {
            changed: true,
            state: new_state.into(),
        }),
        (false, false) => Err(ApiError::NotFound(
            "no message with this provider_message_id".into(),
        )),
        (false, true) => Err(ApiError::Conflict(
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

/// A `text` column borrowed from the row's buffer. `&str`'s own `FromSql` also compares the
/// column type's name with three extension types on every call; these columns are plain
/// `text`. The bytes are still checked to be UTF-8.
struct Text<'a>(&'a str);

impl<'a> tokio_postgres::types::FromSql<'a> for Text<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Text(std::str::from_utf8(raw)?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(*ty, Type::TEXT | Type::VARCHAR)
    }
}

/// Appends `s` as a JSON string, byte for byte what `serde_json` writes. Most text needs no
/// escaping: that is checked in one pass (which the compiler vectorises) and copied whole;
/// anything else goes through `serde_json`.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends one history row as `{"provider_message_id","direction","body","sent_at","state"}`
/// ([`HistoryItem`]'s shape and field order, as `serde_json` would write it) to a JSON array
/// that `out` has opened with `[`, after a comma if a row is already in it.
fn push_history_row(out: &mut Vec<u8>, r: &tokio_postgres::Row) -> ApiResult<()> {
    if out.len() > 1 {
        out.push(b',');
    }
    let text = |i: usize| -> ApiResult<&str> {
        r.try_get::<_, Text<'_>>(i)
            .map(|t| t.0)
            .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e)))
    };
    out.extend_from_slice(b"{\"provider_message_id\":");
    push_json_str(out, text(1)?);
    out.extend_from_slice(b",\"direction\":");
    push_json_str(out, text(2)?);
    out.extend_from_slice(b",\"body\":");
    push_json_str(out, text(3)?);
    out.extend_from_slice(b",\"sent_at\":");
    let sent_at: i64 = r
        .try_get(4)
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e)))?;
    out.extend_from_slice(itoa::Buffer::new().format(sent_at).as_bytes());
    out.extend_from_slice(b",\"state\":");
    push_json_str(out, text(5)?);
    out.push(b'}');
    Ok(())
}

/// For each `(contact, limit)`, the most recent `limit` messages with that contact, oldest
/// first (ready for a prompt), all in **one statement** (see [`crate::batch`]); for each
/// request, in order, its messages as a JSON array of `{"provider_message_id","direction",
/// "body","sent_at","state"}` ([`HistoryItem`]'s shape), written from the rows without
/// copying their text into owned strings first.
///
/// The statement orders only by request: each request's page arrives as its index scan
/// yields it (newest first) and is put oldest-first here, by `(sent_at, id)`, the index's
/// own order. An `ORDER BY` of the pages in SQL made Postgres sort every page (an
/// incremental sort: about a fifth of its CPU per batched read in the loopback profile);
/// here the sort of a page that arrives newest first is one linear pass, and on the proxy,
/// which scales out, not on the database.
pub async fn histories(db: &Client, batch: &[(Contact, i64)]) -> ApiResult<Vec<Vec<u8>>> {
    // One request (most batches when the service is not saturated): the plain indexed read,
    // which costs Postgres less than the `unnest … LATERAL` form; the same leading columns
    // (push_history_row's), without the sort keys a batch needs.
    if let [(contact, limit)] = batch {
        let one = db
            .prepare_cached(
                "SELECT 1::bigint, provider_message_id, direction, body,
                        extract(epoch FROM sent_at)::bigint, state
                   FROM messages WHERE contact = $1
                  ORDER BY messages.sent_at DESC, id DESC LIMIT $2",
            )
            .await?;
        let rows = db.query(&one, &[&contact.as_str(), limit]).await?;
        // One statement's rows come in its ORDER BY: newest first, so the page is the rows
        // reversed (no sort keys to fetch or sort by).
        let mut list = b"[".to_vec();
        for r in rows.iter().rev() {
            push_history_row(&mut list, r)?;
        }
        list.push(b']');
        return Ok(vec![list]);
    }
    let stmt = db
        .prepare_cached(
            "SELECT t.i, r.provider_message_id, r.direction, r.body, r.sent_at, r.state, r.ts, r.id
               FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(contact, lim, i)
              CROSS JOIN LATERAL (
                  SELECT provider_message_id, direction, body,
                         extract(epoch FROM sent_at)::bigint AS sent_at, state, id,
                         messages.sent_at AS ts
                    FROM messages WHERE contact = t.contact
                   ORDER BY messages.sent_at DESC, id DESC LIMIT t.lim) r
              ORDER BY t.i",
        )
        .await?;
    let contacts: Vec<&str> = batch.iter().map(|(c, _)| c.as_str()).collect();
    let limits: Vec<i64> = batch.iter().map(|(_, l)| *l).collect();
    let rows = db.query(&stmt, &[&contacts, &limits]).await?;
    let mut out: Vec<Vec<u8>> = batch.iter().map(|_| b"[".to_vec()).collect();
    let mut page: Vec<(SystemTime, i64, usize)> = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let request: i64 = rows[start].get(0);
        let end = rows[start..]
            .iter()
            .position(|r| r.get::<_, i64>(0) != request)
            .map_or(rows.len(), |n| start + n);
        let list = usize::try_from(request - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("history row for no request")))?;
        page.clear();
        page.extend((start..end).map(|k| (rows[k].get(6), rows[k].get(7), k)));
        page.sort_unstable();
        for &(_, _, k) in &page {
            push_history_row(list, &rows[k])?;
        }
        start = end;
    }
    for list in &mut out {
        list.push(b']');
    }
    Ok(out)
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
    /// Session generation: logout-all increments it; tokens from an older one are dead.
    pub generation: i64,
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
        generation: 0,
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

/// The user and stored hash for a login name, if it exists, recording the nonce in the same
/// statement (before the caller's argon2 work, so a replayed verification costs no hashing).
/// `username` is `None` for a name that cannot exist; the nonce is recorded all the same.
/// Verification happens in the caller after the connection is released
/// ([`crate::password::verify_async`]).
pub async fn find_credentials(
    db: &Client,
    username: Option<&Username>,
    nonce: &Nonce,
) -> ApiResult<Option<(User, String)>> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$2",
            " SELECT EXISTS (SELECT 1 FROM n), u.id, u.password_hash, u.role, u.generation
                FROM (VALUES (1)) AS one LEFT JOIN users u ON u.username = $1"
        ))
        .await?;
    let name = username.map(Username::as_str);
    let r = db.query_one(&stmt, &[&name, &nonce.as_str()]).await?;
    nonce.accept(r.get(0))?;
    Ok(match (username, r.get::<_, Option<i64>>(1)) {
        (Some(username), Some(id)) => Some((
            User {
                id,
                username: username.as_str().to_owned(),
                role: Role::from_db(r.get::<_, &str>(3)),
                generation: r.get(4),
            },
            r.get(2),
        )),
        _ => None,
    })
}

/// Records a revoked session token id until `expires_at` (unix seconds). Idempotent.
pub async fn revoke_session(
    db: &Client,
    token_id: &str,
    expires_at: i64,
    nonce: &Nonce,
) -> ApiResult<()> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$3",
            ", r AS (
                 INSERT INTO revoked_sessions (token_id, expires_at)
                 SELECT $1, to_timestamp($2::bigint) WHERE EXISTS (SELECT 1 FROM n)
                 ON CONFLICT (token_id) DO UPDATE
                    SET expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM n)"
        ))
        .await?;
    let r = db
        .query_one(&stmt, &[&token_id, &expires_at, &nonce.as_str()])
        .await?;
    nonce.accept(r.get(0))
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
    nonce: &Nonce,
) -> ApiResult<(i64, i64)> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$6",
            ", a AS (
                 INSERT INTO audit_events (action, actor, subject, request_id, details)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM n)
                 RETURNING id, extract(epoch FROM at)::bigint AS at)
             SELECT EXISTS (SELECT 1 FROM n), a.id, a.at
               FROM (VALUES (1)) AS one LEFT JOIN a ON true"
        ))
        .await?;
    let r = db
        .query_one(
            &stmt,
            &[
                &action,
                &actor,
                &subject,
                &request_id,
                details,
                &nonce.as_str(),
            ],
        )
        .await?;
    nonce.accept(r.get(0))?;
    Ok((r.get(1), r.get(2)))
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

/// Records the nonce in its own statement, for operations whose expensive part (argon2
/// hashing) must not run for a replay: the nonce is consumed before the work, and the change
/// that follows is not tied to it.
pub async fn record_nonce(db: &Client, nonce: &Nonce) -> ApiResult<()> {
    let stmt = db
        .prepare_cached("INSERT INTO request_nonces (nonce) VALUES ($1) ON CONFLICT DO NOTHING")
        .await?;
    nonce.accept(db.execute(&stmt, &[&nonce.as_str()]).await? == 1)
}

/// Records the nonce as the first statement of a transaction: it commits with the change or
/// not at all.
async fn record_nonce_in(tx: &deadpool_postgres::Transaction<'_>, nonce: &Nonce) -> ApiResult<()> {
    let stmt = tx
        .prepare_cached("INSERT INTO request_nonces (nonce) VALUES ($1) ON CONFLICT DO NOTHING")
        .await?;
    nonce.accept(tx.execute(&stmt, &[&nonce.as_str()]).await? == 1)
}

/// A user's session generation; 404 if there is no such user.
pub async fn user_generation(db: &Client, user_id: i64) -> ApiResult<i64> {
    let stmt = db
        .prepare_cached("SELECT generation FROM users WHERE id = $1")
        .await?;
    db.query_opt(&stmt, &[&user_id])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::NotFound("no such user".into()))
}

/// Logout-all: increments the user's session generation atomically (concurrent calls each
/// get their own increment) and returns the new one; 404 if there is no such user.
pub async fn bump_generation(db: &Client, user_id: i64, nonce: &Nonce) -> ApiResult<i64> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$2",
            ", u AS (
                 UPDATE users SET generation = generation + 1, updated_at = now()
                  WHERE id = $1 AND EXISTS (SELECT 1 FROM n)
              RETURNING generation)
             SELECT EXISTS (SELECT 1 FROM n), u.generation
               FROM (VALUES (1)) AS one LEFT JOIN u ON true"
        ))
        .await?;
    let r = db.query_one(&stmt, &[&user_id, &nonce.as_str()]).await?;
    nonce.accept(r.get(0))?;
    r.get::<_, Option<i64>>(1)
        .ok_or_else(|| ApiError::NotFound("no such user".into()))
}

/// What the webhook ingest reports.
#[derive(Debug, Serialize)]
pub struct Ingested {
    /// True if this call stored the message.
    pub new: bool,
    /// State after the call.
    pub state: String,
    /// True if this caller now holds the message until `claimed_until`.
    pub claimed: bool,
    /// Token for reply/release; only when claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<String>,
    /// Unix seconds the lease ends; only when claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_until: Option<i64>,
    /// How many times the message has been claimed (this claim included).
    pub attempts: i32,
    /// The contact's messages before this one, oldest first.
    pub history: Vec<HistoryItem>,
}

/// Webhook ingest in one round trip: one statement records the nonce, inserts the inbound
/// message if it is new — already claimed by this caller — or else claims the existing one
/// if it is `received` or its lease expired (a redelivery re-drives a stalled message); a
/// `replied` or `failed` one is left alone. Being one statement it is one transaction, and
/// the unique index plus the row lock make exactly one of concurrent callers claim it. The
/// history is a second, read-only statement pipelined on the same connection.
pub async fn ingest_message(
    db: &Client,
    m: &NewMessage,
    lease_secs: i64,
    token: &str,
    history_limit: i64,
    nonce: &Nonce,
) -> ApiResult<Ingested> {
    let stmt = db
        .prepare_cached(with_nonce!(
            "$9",
            ", ins AS (
                 INSERT INTO messages
                     (provider_message_id, instance, contact, direction, body, push_name,
                      sent_at, state, claim_token, claimed_until, attempts)
                 SELECT $1, $2, $3, 'inbound', $4, $5, to_timestamp($6::bigint),
                        'processing', $7, now() + make_interval(secs => $8::bigint), 1
                  WHERE EXISTS (SELECT 1 FROM n)
                 ON CONFLICT (provider_message_id) DO NOTHING
                 RETURNING state, extract(epoch FROM claimed_until)::bigint AS until, attempts),
             upd AS (
                 UPDATE messages
                    SET state = 'processing', claim_token = $7,
                        claimed_until = now() + make_interval(secs => $8::bigint),
                        attempts = attempts + 1
                  WHERE provider_message_id = $1
                    AND NOT EXISTS (SELECT 1 FROM ins) AND EXISTS (SELECT 1 FROM n)
                    AND (state = 'received' OR (state = 'processing' AND claimed_until < now()))
              RETURNING state, extract(epoch FROM claimed_until)::bigint AS until, attempts),
             won AS (SELECT state, until, attempts FROM ins UNION ALL SELECT state, until, attempts FROM upd)
             SELECT EXISTS (SELECT 1 FROM n), EXISTS (SELECT 1 FROM ins), won.state IS NOT NULL,
                    COALESCE(won.state, m.state), won.until, COALESCE(won.attempts, m.attempts)
               FROM (VALUES (1)) AS one
               LEFT JOIN won ON true
               LEFT JOIN messages m ON m.provider_message_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)"
        ))
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &m.provider_message_id.as_str(),
        &m.instance,
        &m.contact.as_str(),
        &m.body,
        &m.push_name,
        &m.sent_at,
        &token,
        &lease_secs,
        &nonce.as_str(),
    ];
    // The history statement runs after the ingest on the same connection (pipelined: one
    // round trip), so it sees the committed insert; it excludes this message itself.
    let (row, history) = tokio::try_join!(
        db.query_one(&stmt, &params),
        history_before(
            db,
            &m.contact,
            m.provider_message_id.as_str(),
            m.sent_at,
            history_limit
        ),
    )?;
    nonce.accept(row.get(0))?;
    let new: bool = row.get(1);
    let claimed: bool = row.get(2);
    let (state, attempts) = match row.get::<_, Option<String>>(3) {
        Some(state) => (state, row.get(5)),
        // A concurrent ingest inserted the row after this statement's snapshot: it exists
        // and that caller holds it.
        None => {
            let r = db
                .query_opt(
                    "SELECT state, attempts FROM messages WHERE provider_message_id = $1",
                    &[&m.provider_message_id.as_str()],
                )
                .await?
                .ok_or_else(|| {
                    ApiError::Unexpected(anyhow::anyhow!("conflicting message vanished"))
                })?;
            (r.get(0), r.get(1))
        }
    };
    Ok(Ingested {
        new,
        state,
        claimed,
        claim_token: claimed.then(|| token.to_owned()),
        claimed_until: row.get(4),
        attempts,
        history,
    })
}

/// Up to `limit` messages with `contact` sent at or before `sent_at`, other than
/// `exclude`, oldest first.
async fn history_before(
    db: &Client,
    contact: &Contact,
    exclude: &str,
    sent_at: i64,
    limit: i64,
) -> Result<Vec<HistoryItem>, tokio_postgres::Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let stmt = db
        .prepare_cached(
            "SELECT provider_message_id, direction, body, sent_at, state FROM (
                 SELECT provider_message_id, direction, body,
                        extract(epoch FROM sent_at)::bigint AS sent_at, state, id,
                        messages.sent_at AS ts
                   FROM messages
                  WHERE contact = $1 AND provider_message_id <> $2
                    AND messages.sent_at <= to_timestamp($3::bigint)
                  ORDER BY messages.sent_at DESC, id DESC LIMIT $4) recent
             ORDER BY ts ASC, id ASC",
        )
        .await?;
    let rows = db
        .query(&stmt, &[&contact.as_str(), &exclude, &sent_at, &limit])
        .await?;
    Ok(rows.iter().map(history_item).collect())
}

fn history_item(r: &tokio_postgres::Row) -> HistoryItem {
    HistoryItem {
        provider_message_id: r.get(0),
        direction: r.get(1),
        body: r.get(2),
        sent_at: r.get(3),
        state: r.get(4),
    }
}

/// A message a scheduled re-drive should pick up.
#[derive(Debug, Serialize)]
pub struct StaleMessage {
    /// Provider id (claim it with `/v1/messages/claim`).
    pub provider_message_id: String,
    /// Evolution instance.
    pub instance: String,
    /// Contact.
    pub contact: String,
    /// `processing` (lease expired) or `received` (never claimed).
    pub state: String,
    /// Claims so far: the edge marks the message `failed` after its limit.
    pub attempts: i32,
    /// Unix seconds the expired lease ended (`processing` only).
    pub claimed_until: Option<i64>,
    /// Unix seconds the message was stored.
    pub stored_at: i64,
}

/// Inbound messages whose lease expired while `processing`, or that have been `received`
/// and unclaimed for more than a minute; oldest first, at most `limit`.
pub async fn stale_messages(db: &Client, limit: i64) -> ApiResult<Vec<StaleMessage>> {
    let stmt = db
        .prepare_cached(
            "SELECT provider_message_id, instance, contact, state, attempts,
                    extract(epoch FROM claimed_until)::bigint,
                    extract(epoch FROM stored_at)::bigint
               FROM (
                 (SELECT * FROM messages
                   WHERE state = 'processing' AND claimed_until < now()
                   ORDER BY claimed_until LIMIT $1)
                 UNION ALL
                 (SELECT * FROM messages
                   WHERE state = 'received' AND direction = 'inbound'
                     AND stored_at < now() - interval '1 minute'
                   ORDER BY stored_at LIMIT $1)
               ) stale
              ORDER BY COALESCE(claimed_until, stored_at), id
              LIMIT $1",
        )
        .await?;
    let rows = db.query(&stmt, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| StaleMessage {
            provider_message_id: r.get(0),
            instance: r.get(1),
            contact: r.get(2),
            state: r.get(3),
            attempts: r.get(4),
            claimed_until: r.get(5),
            stored_at: r.get(6),
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::push_json_str;

    #[test]
    fn json_strings_are_written_byte_for_byte_as_serde_json_writes_them() {
        let cases = [
            "",
            "plain ascii text",
            "quote \" inside",
            "back\\slash",
            "new\nline, tab\t, cr\r, nul \u{0}, unit \u{1f}",
            "del \u{7f} stays, slash / stays",
            "ünïcödé 😀 — アイ",
            "\"",
            "\\",
            "ends with a quote\"",
        ];
        for case in cases {
            let mut ours = b"x".to_vec();
            push_json_str(&mut ours, case);
            let mut theirs = b"x".to_vec();
            serde_json::to_writer(&mut theirs, case).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{case:?}"
            );
        }
    }
}
