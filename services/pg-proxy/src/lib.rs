//! pg-proxy: the signed, pooled, narrow HTTP API the assistant-edge functions use for
//! durable data in Postgres. Library half of the crate; `src/main.rs` is the operator CLI.
//!
//! Where things live: configuration ([`config`]), the one error-to-HTTP mapping ([`error`]),
//! validated inputs ([`domain`]), every SQL statement ([`store`]), batching of the hottest
//! two ([`batch`]), the pool policy ([`pool`]),
//! migrations ([`migrate`]), routes and middleware ([`http`]), serving and shutdown
//! ([`server`]), logs ([`logging`]), password hashing ([`password`]), TLS to Postgres ([`tls`]), the CLI
//! ([`cli`]).
#![forbid(unsafe_code)]

pub mod batch;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod logging;
pub mod migrate;
pub mod password;
pub mod pool;
pub mod server;
pub mod store;
pub mod tls;
