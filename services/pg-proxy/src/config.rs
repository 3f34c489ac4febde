//! Configuration read once from the environment, validated completely, failing closed.
//!
//! Every problem names the variable and never echoes its value (DATABASE_URL holds a
//! password; the HMAC keys are secrets). Secrets live in [`DatabaseUrl`] and
//! [`proxy_auth::SigningKey`], whose `Debug` prints `[redacted]`.

use std::fmt;
use std::time::Duration;

use proxy_auth::SigningKey;

/// A configuration problem: the variable name and what is wrong with it (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// Environment variable name.
    pub name: &'static str,
    /// What is wrong, without the value.
    pub problem: String,
}

impl ConfigError {
    fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

/// All configuration problems found in one pass, so an operator fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The Postgres connection string and its TLS policy. Holds a password, so `Debug` is
/// redacted.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    parsed: tokio_postgres::Config,
    tls: crate::tls::SslMode,
    tls_note: Option<&'static str>,
    rootcert: Option<std::path::PathBuf>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl DatabaseUrl {
    /// Parses a `postgres://` URL or a key=value connection string outside production.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        Self::parse_for(raw, false)
    }

    /// Parses a connection string and decides its TLS mode ([`crate::tls::decide`]):
    /// `production` requires TLS for a database on a public network.
    pub fn parse_for(raw: &str, production: bool) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ConfigError::new("DATABASE_URL", "is empty"));
        }
        let split = crate::tls::split_tls_params(raw);
        let requested = match split.sslmode.as_deref() {
            None => None,
            Some(m) => Some(crate::tls::SslMode::parse(m).ok_or_else(|| {
                ConfigError::new(
                    "DATABASE_URL",
                    "sslmode must be disable, prefer, require, verify-ca or verify-full",
                )
            })?),
        };
        // The parser's error text can quote the input, so it is replaced, not forwarded.
        let mut parsed: tokio_postgres::Config = split.rest.parse().map_err(|_| {
            ConfigError::new(
                "DATABASE_URL",
                "is not a valid postgres connection string (expected postgres://user:password@host:port/db)",
            )
        })?;
        if parsed.get_hosts().is_empty() {
            return Err(ConfigError::new("DATABASE_URL", "names no host"));
        }
        let decision = crate::tls::decide(production, parsed.get_hosts(), requested)
            .map_err(|problem| ConfigError::new("DATABASE_URL", problem))?;
        parsed.ssl_mode(decision.mode.driver_mode());
        Ok(Self {
            raw: raw.to_owned(),
            parsed,
            tls: decision.mode,
            tls_note: decision.note,
            rootcert: crate::tls::rootcert_path(split.sslrootcert.as_deref()),
        })
    }

    /// The parsed driver configuration (its `ssl_mode` already set from the TLS decision).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.parsed
    }

    /// The TLS mode in force.
    pub fn tls_mode(&self) -> crate::tls::SslMode {
        self.tls
    }

    /// A note for the start-up log when the TLS mode was upgraded or is weak.
    pub fn tls_note(&self) -> Option<&'static str> {
        self.tls_note
    }

    /// The rustls connector for this URL's TLS mode.
    pub fn connector(&self) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
        crate::tls::connector(self.tls, self.rootcert.as_deref())
    }

    /// The raw text, only for the log redactor and for deriving other URLs in tests.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The password, if any, for the log redactor.
    pub fn password(&self) -> Option<String> {
        self.parsed
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }
}

/// Pool sizing and timing (see README "Pool").
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// Connections opened at start-up and kept open (DB_POOL_MIN_SIZE).
    pub min_size: usize,
    /// Connections kept once opened (DB_POOL_MAX_SIZE).
    pub max_size: usize,
    /// Extra connections opened under load and closed once idle (DB_POOL_MAX_OVERFLOW).
    pub max_overflow: usize,
    /// How long a request waits for a connection before it gets 503 (DB_POOL_TIMEOUT).
    pub timeout: Duration,
    /// How long an overflow connection may sit idle before it is closed
    /// (DB_POOL_OVERFLOW_IDLE_SECS).
    pub overflow_idle: Duration,
    /// Statements of one batched kind (message insert, history read) in flight at once;
    /// requests beyond that wait and share the next statement (DB_BATCH_CONCURRENCY, see
    /// README "Batching").
    pub batch_concurrency: usize,
    /// Postgres `plan_cache_mode` set on every pool connection (DB_PLAN_CACHE_MODE, see
    /// README "Plan caching").
    pub plan_cache_mode: PlanCacheMode,
}

/// Postgres's `plan_cache_mode` for the pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanCacheMode {
    /// Leave the server's setting (`auto` unless the operator changed it).
    Server,
    /// `force_generic_plan`: every prepared statement is planned once per connection.
    ForceGeneric,
    /// `force_custom_plan`: every execution is planned for its parameters.
    ForceCustom,
}

impl PlanCacheMode {
    /// The value for `SET plan_cache_mode`, or `None` to leave the server's.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            Self::Server => None,
            Self::ForceGeneric => Some("force_generic_plan"),
            Self::ForceCustom => Some("force_custom_plan"),
        }
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            min_size: 5,
            max_size: 20,
            max_overflow: 40,
            timeout: Duration::from_secs(30),
            overflow_idle: Duration::from_secs(10),
            batch_concurrency: 4,
            plan_cache_mode: PlanCacheMode::ForceGeneric,
        }
    }
}

/// Deadlines that bound how long a client may hold a connection without sending a
/// complete request (see README "Slow clients").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// From accepting a connection, or from the first byte of a later request on a kept-alive
    /// connection, until the request head (line and headers) is complete
    /// (PROXY_HEADER_READ_TIMEOUT_SECS, default 10).
    pub header_read: Duration,
    /// How long a kept-alive connection may sit idle between a response and the first byte of
    /// the next request (PROXY_KEEPALIVE_IDLE_SECS, default 30).
    pub keepalive_idle: Duration,
    /// From the end of the head until the whole body has arrived, checked before the
    /// signature (PROXY_BODY_READ_TIMEOUT_SECS, default 10).
    pub body_read: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(30),
            body_read: Duration::from_secs(10),
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listen port (PORT, default 8080; 0 picks a free port).
    pub port: u16,
    /// Listen address (PROXY_BIND, default 0.0.0.0).
    pub bind: std::net::IpAddr,
    /// DATABASE_URL.
    pub database_url: DatabaseUrl,
    /// Pool settings.
    pub pool: PoolSettings,
    /// PROXY_HMAC_KEY (hex, >= 32 bytes).
    pub hmac_key: SigningKey,
    /// PROXY_HMAC_KEY_PREVIOUS, accepted during a rotation.
    pub hmac_key_previous: Option<SigningKey>,
    /// Most simultaneous TCP connections (PROXY_MAX_CONNECTIONS, default 256).
    pub max_connections: usize,
    /// How long in-flight requests may run after SIGTERM (PROXY_SHUTDOWN_GRACE_SECS, default 20).
    pub shutdown_grace: Duration,
    /// Largest accepted request body in bytes (PROXY_MAX_BODY_BYTES, default 65536).
    pub max_body_bytes: usize,
    /// Slow-client deadlines.
    pub http_timeouts: HttpTimeouts,
    /// This deployment's signature audience (PROXY_AUDIENCE, else RAILWAY_PUBLIC_DOMAIN):
    /// V2 signatures made for another deployment do not verify here.
    pub audience: String,
    /// Whether V1 signatures are still accepted (PROXY_ACCEPT_V1, default true during the
    /// rotation to V2).
    pub accept_v1: bool,
}

/// Reads variables through a lookup function so tests need not touch the process environment.
pub trait Lookup {
    /// The value of `name`, or `None` if unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn present(env: &dyn Lookup, name: &str) -> Option<String> {
    env.get(name).filter(|v| !v.trim().is_empty())
}

fn parse_count(
    env: &dyn Lookup,
    name: &'static str,
    default: usize,
    min: usize,
    max: usize,
    errs: &mut Vec<ConfigError>,
) -> usize {
    let Some(text) = present(env, name) else {
        return default;
    };
    match text.trim().parse::<usize>() {
        Ok(v) if (min..=max).contains(&v) => v,
        _ => {
            errs.push(ConfigError::new(
                name,
                format!("must be a whole number from {min} to {max}"),
            ));
            default
        }
    }
}

fn parse_seconds(
    env: &dyn Lookup,
    name: &'static str,
    default: Duration,
    allow_zero: bool,
    errs: &mut Vec<ConfigError>,
) -> Duration {
    let Some(text) = present(env, name) else {
        return default;
    };
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v <= 3600.0 && (v > 0.0 || (allow_zero && v == 0.0)) => {
            Duration::from_secs_f64(v)
        }
        _ => {
            let lower = if allow_zero { "0" } else { "more than 0" };
            errs.push(ConfigError::new(
                name,
                format!("must be a number of seconds, {lower} up to 3600"),
            ));
            default
        }
    }
}

fn parse_bool(
    env: &dyn Lookup,
    name: &'static str,
    default: bool,
    errs: &mut Vec<ConfigError>,
) -> bool {
    match present(env, name).map(|v| v.trim().to_ascii_lowercase()) {
        None => default,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(_) => {
            errs.push(ConfigError::new(name, "must be true or false"));
            default
        }
    }
}

/// The signature audience: PROXY_AUDIENCE, else the public domain Railway injects. Lower
/// case, no scheme, no port (see `proxy_auth::is_valid_audience`). Required: without it a
/// signature made for another deployment sharing the key would verify here.
fn audience(env: &dyn Lookup, errs: &mut Vec<ConfigError>) -> String {
    let (name, value) = match (
        present(env, "PROXY_AUDIENCE"),
        present(env, "RAILWAY_PUBLIC_DOMAIN"),
    ) {
        (Some(v), _) => ("PROXY_AUDIENCE", v),
        (None, Some(v)) => ("RAILWAY_PUBLIC_DOMAIN", v),
        (None, None) => {
            errs.push(ConfigError::new(
                "PROXY_AUDIENCE",
                "is required but not set (the proxy's public host name as the edge signs it, \
                 e.g. proxy.example.com; RAILWAY_PUBLIC_DOMAIN is used when set)",
            ));
            return String::new();
        }
    };
    let value = value.trim().to_ascii_lowercase();
    if !proxy_auth::is_valid_audience(&value) {
        errs.push(ConfigError::new(
            name,
            "must be a host name without scheme, port or path, e.g. proxy.example.com",
        ));
    }
    value
}

/// True when ENVIRONMENT is `production` (the strict TLS rules apply).
pub fn is_production(env: &dyn Lookup) -> bool {
    present(env, "ENVIRONMENT").is_some_and(|v| v.trim().eq_ignore_ascii_case("production"))
}

/// DATABASE_URL alone (for `migrate`, `create-user`, `set-password`), with its TLS mode
/// decided for the ENVIRONMENT.
pub fn database_url(env: &dyn Lookup) -> Result<DatabaseUrl, ConfigError> {
    match present(env, "DATABASE_URL") {
        None => Err(ConfigError::new("DATABASE_URL", "is required but not set")),
        Some(v) => DatabaseUrl::parse_for(&v, is_production(env)),
    }
}

/// Pool settings from DB_POOL_* variables.
pub fn pool_settings(env: &dyn Lookup, errs: &mut Vec<ConfigError>) -> PoolSettings {
    let d = PoolSettings::default();
    let min_size = parse_count(env, "DB_POOL_MIN_SIZE", d.min_size, 0, 1000, errs);
    let max_size = parse_count(env, "DB_POOL_MAX_SIZE", d.max_size, 1, 1000, errs);
    let max_overflow = parse_count(env, "DB_POOL_MAX_OVERFLOW", d.max_overflow, 0, 1000, errs);
    let timeout = parse_seconds(env, "DB_POOL_TIMEOUT", d.timeout, false, errs);
    let overflow_idle = parse_seconds(
        env,
        "DB_POOL_OVERFLOW_IDLE_SECS",
        d.overflow_idle,
        true,
        errs,
    );
    let batch_concurrency = parse_count(
        env,
        "DB_BATCH_CONCURRENCY",
        d.batch_concurrency,
        1,
        1000,
        errs,
    );
    let plan_cache_mode = match present(env, "DB_PLAN_CACHE_MODE")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => d.plan_cache_mode,
        Some("server" | "auto") => PlanCacheMode::Server,
        Some("force_generic_plan" | "generic") => PlanCacheMode::ForceGeneric,
        Some("force_custom_plan" | "custom") => PlanCacheMode::ForceCustom,
        Some(_) => {
            errs.push(ConfigError::new(
                "DB_PLAN_CACHE_MODE",
                "must be force_generic_plan (default), force_custom_plan or server",
            ));
            d.plan_cache_mode
        }
    };
    if min_size > max_size {
        errs.push(ConfigError::new(
            "DB_POOL_MIN_SIZE",
            "must not exceed DB_POOL_MAX_SIZE",
        ));
    }
    PoolSettings {
        min_size,
        max_size,
        max_overflow,
        timeout,
        overflow_idle,
        batch_concurrency,
        plan_cache_mode,
    }
}

fn key(env: &dyn Lookup, name: &'static str, errs: &mut Vec<ConfigError>) -> Option<SigningKey> {
    let text = present(env, name)?;
    match SigningKey::from_hex(&text) {
        Ok(k) => Some(k),
        Err(e) => {
            // KeyError's text mentions only lengths and formats, never key material.
            errs.push(ConfigError::new(name, e.to_string()));
            None
        }
    }
}

impl ServeConfig {
    /// Reads and validates everything; returns every problem found.
    pub fn from_env(env: &dyn Lookup) -> Result<Self, ConfigErrors> {
        let mut errs = Vec::new();
        let database_url = database_url(env).map_err(|e| errs.push(e)).ok();
        let pool = pool_settings(env, &mut errs);
        let port = match present(env, "PORT") {
            None => 8080,
            Some(p) => p.trim().parse::<u16>().unwrap_or_else(|_| {
                errs.push(ConfigError::new("PORT", "must be a port number 0-65535"));
                0
            }),
        };
        let bind = match present(env, "PROXY_BIND") {
            None => std::net::IpAddr::from([0, 0, 0, 0]),
            Some(b) => b.trim().parse().unwrap_or_else(|_| {
                errs.push(ConfigError::new("PROXY_BIND", "must be an IP address"));
                std::net::IpAddr::from([0, 0, 0, 0])
            }),
        };
        let hmac_key = key(env, "PROXY_HMAC_KEY", &mut errs);
        if hmac_key.is_none() && present(env, "PROXY_HMAC_KEY").is_none() {
            errs.push(ConfigError::new(
                "PROXY_HMAC_KEY",
                "is required but not set (hex, at least 32 bytes: openssl rand -hex 32)",
            ));
        }
        let hmac_key_previous = key(env, "PROXY_HMAC_KEY_PREVIOUS", &mut errs);
        let max_connections = parse_count(env, "PROXY_MAX_CONNECTIONS", 256, 1, 100_000, &mut errs);
        let shutdown_grace = parse_seconds(
            env,
            "PROXY_SHUTDOWN_GRACE_SECS",
            Duration::from_secs(20),
            true,
            &mut errs,
        );
        let max_body_bytes = parse_count(
            env,
            "PROXY_MAX_BODY_BYTES",
            64 * 1024,
            1024,
            1024 * 1024,
            &mut errs,
        );
        let d = HttpTimeouts::default();
        let http_timeouts = HttpTimeouts {
            header_read: parse_seconds(
                env,
                "PROXY_HEADER_READ_TIMEOUT_SECS",
                d.header_read,
                false,
                &mut errs,
            ),
            keepalive_idle: parse_seconds(
                env,
                "PROXY_KEEPALIVE_IDLE_SECS",
                d.keepalive_idle,
                false,
                &mut errs,
            ),
            body_read: parse_seconds(
                env,
                "PROXY_BODY_READ_TIMEOUT_SECS",
                d.body_read,
                false,
                &mut errs,
            ),
        };
        let audience = audience(env, &mut errs);
        let accept_v1 = parse_bool(env, "PROXY_ACCEPT_V1", true, &mut errs);
        match (database_url, hmac_key) {
            (Some(database_url), Some(hmac_key)) if errs.is_empty() => Ok(Self {
                port,
                bind,
                database_url,
                pool,
                hmac_key,
                hmac_key_previous,
                max_connections,
                shutdown_grace,
                max_body_bytes,
                http_timeouts,
                audience,
                accept_v1,
            }),
            _ => Err(ConfigErrors(errs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const URL: &str = "postgres://app:s3cret-pw@db.internal:5432/app";

    /// The given variables, plus PROXY_AUDIENCE unless a test sets or clears it ("").
    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = HashMap::from([(
            "PROXY_AUDIENCE".to_string(),
            "proxy.example.com".to_string(),
        )]);
        map.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        move |name: &str| map.get(name).cloned()
    }

    fn key_hex() -> String {
        "11".repeat(32)
    }

    #[test]
    fn defaults_match_the_documented_pool_semantics() {
        let k = key_hex();
        let cfg =
            ServeConfig::from_env(&env(&[("DATABASE_URL", URL), ("PROXY_HMAC_KEY", &k)])).unwrap();
        assert_eq!(cfg.port, 8080);
        assert_eq!(cfg.pool, PoolSettings::default());
        assert_eq!(cfg.pool.min_size, 5);
        assert_eq!(cfg.pool.max_size, 20);
        assert_eq!(cfg.pool.max_overflow, 40);
        assert_eq!(cfg.pool.timeout, Duration::from_secs(30));
        assert_eq!(cfg.http_timeouts.header_read, Duration::from_secs(10));
        assert_eq!(cfg.http_timeouts.keepalive_idle, Duration::from_secs(30));
        assert_eq!(cfg.http_timeouts.body_read, Duration::from_secs(10));
    }

    #[test]
    fn slow_client_timeouts_are_configurable_and_zero_is_refused() {
        let k = key_hex();
        let cfg = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &k),
            ("PROXY_HEADER_READ_TIMEOUT_SECS", "2.5"),
            ("PROXY_KEEPALIVE_IDLE_SECS", "75"),
            ("PROXY_BODY_READ_TIMEOUT_SECS", "4"),
        ]))
        .unwrap();
        assert_eq!(cfg.http_timeouts.header_read, Duration::from_millis(2500));
        assert_eq!(cfg.http_timeouts.keepalive_idle, Duration::from_secs(75));
        assert_eq!(cfg.http_timeouts.body_read, Duration::from_secs(4));
        let err = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &k),
            ("PROXY_HEADER_READ_TIMEOUT_SECS", "0"),
            ("PROXY_KEEPALIVE_IDLE_SECS", "never"),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "PROXY_HEADER_READ_TIMEOUT_SECS",
                "PROXY_KEEPALIVE_IDLE_SECS"
            ]
        );
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let k = key_hex();
        let err = ServeConfig::from_env(&env(&[("PROXY_HMAC_KEY", &k)])).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].name, "DATABASE_URL");
    }

    #[test]
    fn an_unparsable_database_url_is_named_but_never_echoed() {
        let k = key_hex();
        let bad = "postgres://app:hunter2@host:notaport/db";
        let err = ServeConfig::from_env(&env(&[("DATABASE_URL", bad), ("PROXY_HMAC_KEY", &k)]))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DATABASE_URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn every_invalid_pool_value_is_reported_by_name() {
        let k = key_hex();
        let err = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &k),
            ("DB_POOL_MIN_SIZE", "five"),
            ("DB_POOL_MAX_SIZE", "0"),
            ("DB_POOL_MAX_OVERFLOW", "-1"),
            ("DB_POOL_TIMEOUT", "0"),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "DB_POOL_MIN_SIZE",
                "DB_POOL_MAX_SIZE",
                "DB_POOL_MAX_OVERFLOW",
                "DB_POOL_TIMEOUT"
            ]
        );
    }

    #[test]
    fn min_size_above_max_size_is_refused() {
        let k = key_hex();
        let err = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &k),
            ("DB_POOL_MIN_SIZE", "30"),
        ]))
        .unwrap_err();
        assert_eq!(err.0[0].name, "DB_POOL_MIN_SIZE");
    }

    #[test]
    fn short_or_missing_keys_are_refused_without_echoing_them() {
        let err = ServeConfig::from_env(&env(&[("DATABASE_URL", URL)])).unwrap_err();
        assert_eq!(err.0[0].name, "PROXY_HMAC_KEY");
        let short = "ab".repeat(16);
        let err = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &short),
            ("PROXY_HMAC_KEY_PREVIOUS", "not-hex"),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(names, ["PROXY_HMAC_KEY", "PROXY_HMAC_KEY_PREVIOUS"]);
        assert!(!err.to_string().contains(&short));
    }

    #[test]
    fn plan_cache_mode_defaults_to_generic_and_refuses_unknown_values_by_name() {
        let k = key_hex();
        let base = [("DATABASE_URL", URL), ("PROXY_HMAC_KEY", k.as_str())];
        let with = |v: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("DB_PLAN_CACHE_MODE", v));
            ServeConfig::from_env(&env(&pairs))
        };
        let cfg = ServeConfig::from_env(&env(&base)).unwrap();
        assert_eq!(cfg.pool.plan_cache_mode, PlanCacheMode::ForceGeneric);
        assert_eq!(
            cfg.pool.plan_cache_mode.setting(),
            Some("force_generic_plan")
        );
        for (value, mode) in [
            ("server", PlanCacheMode::Server),
            ("AUTO", PlanCacheMode::Server),
            (" force_custom_plan ", PlanCacheMode::ForceCustom),
            ("generic", PlanCacheMode::ForceGeneric),
        ] {
            assert_eq!(with(value).unwrap().pool.plan_cache_mode, mode, "{value}");
        }
        assert_eq!(PlanCacheMode::Server.setting(), None);
        let err = with("sometimes").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].name, "DB_PLAN_CACHE_MODE");
    }

    #[test]
    fn fractional_pool_timeouts_are_accepted() {
        let k = key_hex();
        let cfg = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", URL),
            ("PROXY_HMAC_KEY", &k),
            ("DB_POOL_TIMEOUT", "0.5"),
        ]))
        .unwrap();
        assert_eq!(cfg.pool.timeout, Duration::from_millis(500));
    }

    #[test]
    fn the_audience_is_required_and_falls_back_to_the_railway_public_domain() {
        let k = key_hex();
        let base = [("DATABASE_URL", URL), ("PROXY_HMAC_KEY", k.as_str())];
        let err =
            ServeConfig::from_env(&env(&[base[0], base[1], ("PROXY_AUDIENCE", "")])).unwrap_err();
        assert_eq!(err.0[0].name, "PROXY_AUDIENCE");
        let cfg = ServeConfig::from_env(&env(&[
            base[0],
            base[1],
            ("PROXY_AUDIENCE", ""),
            (
                "RAILWAY_PUBLIC_DOMAIN",
                "pg-proxy-production.up.railway.app",
            ),
        ]))
        .unwrap();
        assert_eq!(cfg.audience, "pg-proxy-production.up.railway.app");
        let cfg = ServeConfig::from_env(&env(&[
            base[0],
            base[1],
            ("PROXY_AUDIENCE", " Proxy.Example.COM "),
            ("RAILWAY_PUBLIC_DOMAIN", "other.up.railway.app"),
        ]))
        .unwrap();
        assert_eq!(cfg.audience, "proxy.example.com");
        for bad in ["https://proxy.example.com", "proxy.example.com:443", "a b"] {
            let err = ServeConfig::from_env(&env(&[base[0], base[1], ("PROXY_AUDIENCE", bad)]))
                .unwrap_err();
            assert_eq!(err.0[0].name, "PROXY_AUDIENCE", "{bad}");
        }
    }

    #[test]
    fn v1_signatures_are_accepted_until_switched_off() {
        let k = key_hex();
        let base = [("DATABASE_URL", URL), ("PROXY_HMAC_KEY", k.as_str())];
        assert!(ServeConfig::from_env(&env(&base)).unwrap().accept_v1);
        let off = ServeConfig::from_env(&env(&[base[0], base[1], ("PROXY_ACCEPT_V1", "false")]));
        assert!(!off.unwrap().accept_v1);
        let err = ServeConfig::from_env(&env(&[base[0], base[1], ("PROXY_ACCEPT_V1", "maybe")]))
            .unwrap_err();
        assert_eq!(err.0[0].name, "PROXY_ACCEPT_V1");
    }

    #[test]
    fn production_refuses_plaintext_to_a_public_database_naming_the_variable_only() {
        let k = key_hex();
        let public = "postgres://app:Pa55-Leak@db.example.com:5432/app?sslmode=disable";
        let err = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", public),
            ("PROXY_HMAC_KEY", &k),
            ("ENVIRONMENT", "production"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0[0].name, "DATABASE_URL");
        assert!(text.contains("sslmode=disable"), "{text}");
        assert!(
            !text.contains("Pa55-Leak") && !text.contains("db.example.com"),
            "{text}"
        );
        // The same URL outside production, or a private host in production, is accepted.
        assert!(
            ServeConfig::from_env(&env(&[("DATABASE_URL", public), ("PROXY_HMAC_KEY", &k)]))
                .is_ok()
        );
        let private = "postgres://app:pw@postgres.railway.internal:5432/app?sslmode=disable";
        let cfg = ServeConfig::from_env(&env(&[
            ("DATABASE_URL", private),
            ("PROXY_HMAC_KEY", &k),
            ("ENVIRONMENT", "production"),
        ]))
        .unwrap();
        assert_eq!(cfg.database_url.tls_mode(), crate::tls::SslMode::Disable);
    }

    #[test]
    fn verify_full_is_accepted_and_enforced_through_the_driver() {
        let url = DatabaseUrl::parse_for(
            "postgres://app:pw@db.example.com/app?sslmode=verify-full",
            true,
        )
        .unwrap();
        assert_eq!(url.tls_mode(), crate::tls::SslMode::VerifyFull);
        assert_eq!(
            url.pg_config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let unset = DatabaseUrl::parse_for("postgres://app:pw@db.example.com/app", true).unwrap();
        assert_eq!(unset.tls_mode(), crate::tls::SslMode::VerifyFull);
        assert!(unset.tls_note().is_some());
        let bad = DatabaseUrl::parse_for("postgres://a:b@h/app?sslmode=sometimes", false);
        assert_eq!(bad.unwrap_err().name, "DATABASE_URL");
    }

    #[test]
    fn database_url_debug_is_redacted() {
        let url = DatabaseUrl::parse(URL).unwrap();
        assert_eq!(format!("{url:?}"), "[redacted]");
        assert_eq!(url.password().as_deref(), Some("s3cret-pw"));
    }
}
