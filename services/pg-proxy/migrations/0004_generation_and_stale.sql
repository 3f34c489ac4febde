-- 0004_generation_and_stale: per-user session generation (logout-all) and indexes for the
-- re-drive listing of stale messages.

-- Every session token carries the generation it was issued under; logout-all increments it,
-- so every older token fails the edge's check. Durable here, so losing the edge KV cannot
-- bring old sessions back.
ALTER TABLE users ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

-- GET /v1/messages/stale: leases that ran out, and inbound messages nobody claimed.
CREATE INDEX messages_expired_leases ON messages (claimed_until) WHERE state = 'processing';
CREATE INDEX messages_unclaimed ON messages (stored_at)
    WHERE state = 'received' AND direction = 'inbound';
