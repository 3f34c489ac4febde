//! Black-box tests of pg-proxy against the local Postgres: one binary, one module per area
//! (zero-to-production `tests/api` layout). Each test gets its own database.

mod helpers;

mod auth;
mod batch;
mod cli;
mod health;
mod ingest;
mod injection;
mod messages;
mod migrations;
mod pool;
mod replay;
mod shutdown;
mod slow_clients;
mod tls;
mod users_audit_sessions;
