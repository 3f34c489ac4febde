//! Platform-neutral core of the assistant-edge functions.
//!
//! Every function is a [`Function`]: it receives an `http::Request<Bytes>` and a [`Ctx`] that
//! gives it the platform through [`ports`], and returns a response or an [`Error`]. The adapters
//! (`edge-spin`, `edge-worker`) only convert between their runtime's types and these, then call
//! [`serve`], which owns everything that is the same for every function: the request id, error
//! mapping, security headers and the access log line.
//!
//! Nothing here depends on a runtime: no spin-sdk, no worker, no `std::time`, no ambient
//! randomness. Time and randomness come through ports, so tests use a fixed clock.
#![deny(missing_docs)]

pub mod admin;
pub mod ai;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod evolution;
pub mod expiry;
pub mod health;
pub mod hosts;
pub mod kv;
pub mod log;
pub mod memory;
pub mod ports;
pub mod proxy;
pub mod ratelimit;
pub mod redact;
pub mod request_id;
pub mod respond;
pub mod responder;
pub mod sentry;
pub mod serve;
pub mod session;
pub mod timeout;
pub mod webhook;

pub use bytes::Bytes;
pub use error::Error;
pub use ports::Platform;
pub use serve::{serve, Ctx, Function};

/// The request type every function handles.
pub type Request = http::Request<Bytes>;
/// The response type every function returns.
pub type Response = http::Response<Bytes>;
