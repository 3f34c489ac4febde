-- 0001_initial: messages, users, revoked sessions, audit events, replay cache.
-- Applied once, inside the migration transaction, under the migration advisory lock.

CREATE TABLE messages (
    id                  BIGSERIAL PRIMARY KEY,
    -- The WhatsApp provider's id (Evolution API data.key.id): the idempotency key.
    provider_message_id TEXT        NOT NULL UNIQUE,
    instance            TEXT        NOT NULL,
    contact             TEXT        NOT NULL,
    direction           TEXT        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    body                TEXT        NOT NULL,
    push_name           TEXT,
    sent_at             TIMESTAMPTZ NOT NULL,
    stored_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- received -> processing (claimed, lease until claimed_until) -> replied.
    -- A lease that expires lets a retry claim the message again; failed is terminal.
    state               TEXT        NOT NULL DEFAULT 'received'
                        CHECK (state IN ('received', 'processing', 'replied', 'failed')),
    claim_token         TEXT,
    claimed_until       TIMESTAMPTZ,
    attempts            INTEGER     NOT NULL DEFAULT 0,
    replied_at          TIMESTAMPTZ
);
CREATE INDEX messages_contact_recent ON messages (contact, sent_at DESC, id DESC);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT        NOT NULL UNIQUE,
    -- PHC string, argon2id.
    password_hash TEXT        NOT NULL,
    role          TEXT        NOT NULL DEFAULT 'staff' CHECK (role IN ('admin', 'staff')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sessions live in the edge KV; this only records logouts so a revoked token id is refused
-- even if a KV replica still has the session.
CREATE TABLE revoked_sessions (
    token_id   TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_expires ON revoked_sessions (expires_at);

CREATE TABLE audit_events (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    action     TEXT        NOT NULL,
    actor      TEXT,
    subject    TEXT,
    request_id TEXT,
    details    JSONB       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_at ON audit_events (at, id);

-- Replay cache for signed requests, shared by every replica. Rows older than twice the
-- signature window are deleted by the janitor.
CREATE TABLE request_nonces (
    request_id TEXT        PRIMARY KEY,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX request_nonces_seen ON request_nonces (seen_at);
