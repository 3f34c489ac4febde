//! The catalog of managed variables and secrets of assistant-edge, and the fail-closed
//! validation built on it.
//!
//! Pure and platform neutral: no I/O, no clock, no randomness, no platform crate. The caller
//! passes a variable lookup and today's [`Date`], so the edge core (Spin, Cloudflare Workers)
//! and the native operator CLI run exactly the same rules.
//!
//! * [`catalog`] — the table ([`Entry`]): name, [`Category`], secret or not, who requires it
//!   in which [`Environment`], [`Format`], [`Strength`], [`Rotation`].
//! * [`validate`] → [`Report`] of [`Problem`]s (fail closed) and warnings; [`parse_settings`]
//!   → typed [`Settings`] or the report.
//! * [`strength::score`] — the 0–100 strength score; [`strength::key_material_bytes`] — the
//!   "32 random bytes after decoding" rule.
//! * [`secret_values`] — every configured secret, for the log redaction pass.
//! * [`summary`] — per-entry status without values (health-secrets, debug, operator CLI).
//! * [`Secret`] — prints `[redacted]`; the value only through [`Secret::expose`].
//!
//! # Use from the edge core
//!
//! Once per instance: read the names the function reads ([`reads`]) through the variables
//! port (the lookup receives the upper-case catalog name; a Spin adapter lower-cases it), and
//! either keep the typed settings or answer 503 and log the failing keys. Rotation needs
//! today's date and is judged by [`validate`] (operator tooling, `/health/secrets`).
//!
//! ```
//! use secrets_catalog::{parse_settings, Function};
//! let vars = |name: &str| match name {
//!     "ENVIRONMENT" => Some("production".to_owned()),
//!     "DEBUG" => Some("true".to_owned()),
//!     _ => None,
//! };
//! match parse_settings(&vars, Function::Health) {
//!     Ok(validated) => unreachable!("debug in production must fail: {:?}", validated.settings),
//!     Err(report) => {
//!         // One log line: names and reasons, never values.
//!         assert_eq!(report.failing_keys(), ["TRUSTED_HOSTS", "DEBUG"]);
//!         assert!(report.to_string().contains("DEBUG: must be false in production"));
//!     }
//! }
//!
//! let dev = |name: &str| (name == "ENVIRONMENT").then(|| "development".to_owned());
//! let validated = parse_settings(&dev, Function::Health).unwrap();
//! assert_eq!(validated.settings.rate_limit.per_minute, 50);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod catalog;
mod date;
pub mod formats;
mod secret;
pub mod strength;
mod summary;
mod validate;

pub use catalog::{
    catalog, entry, reads, rotation_days, rotation_reads, Category, Entry, Format, Need, Rotation,
    Scope, Strength,
};
pub use date::{Date, DateError};
pub use formats::{
    canonical_ip, BusinessHours, Email, Environment, FormatError, Function, HostPattern, HttpUrl,
    IpNet, Origin, PhoneNumber,
};
pub use secret::Secret;
pub use summary::{summary, EntryStatus, Summary};
pub use validate::{
    parse_settings, secret_values, validate, Business, Lookup, Problem, RateLimitSettings, Report,
    Rule, Settings, Validated,
};
