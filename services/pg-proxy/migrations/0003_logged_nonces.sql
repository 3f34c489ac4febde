-- 0003_logged_nonces: the replay cache holds only nonces of state-changing requests, each
-- written by the same statement or transaction as the change it guards (reads no longer
-- record one). The change's own commit flushes the WAL anyway, so logging the nonce row costs
-- a few WAL bytes, not a flush; in exchange a crash or a failover to a standby no longer
-- forgets the nonces of committed changes (migration 2's unlogged table did).
ALTER TABLE request_nonces RENAME COLUMN request_id TO nonce;
ALTER TABLE request_nonces SET LOGGED;
