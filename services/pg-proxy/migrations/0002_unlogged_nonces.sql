-- 0002_unlogged_nonces: the replay cache needs no WAL.
-- Every signed request inserts one row here; as a logged table that is a WAL flush per request
-- (a proxy read cost as much as a write). Unlogged, the insert skips WAL; the price is that a
-- Postgres crash empties the table, which re-opens replays of requests signed in the last
-- 5 minutes before the crash. That is accepted: a crash is rare and the window short.
ALTER TABLE request_nonces SET UNLOGGED;
