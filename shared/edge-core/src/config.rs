//! The configuration every function runs with, read once per instance through the variables
//! port and validated completely. Invalid configuration fails closed: the instance answers 503
//! to every request, and one log line names the failing keys (never their values).

use std::net::IpAddr;

use secrets_catalog::{
    catalog, parse_settings, secret_values, Date, Environment as CatalogEnvironment,
    Function as CatalogFunction,
};
use serde_json::Map;

use crate::cors::CorsPolicy;
use crate::hosts::TrustedHosts;
use crate::log::{self, Level};
use crate::ports::Platform;
use crate::ratelimit::Policy;
use crate::redact::{RedactingSink, Redactor};
use crate::sentry::SentryTarget;

/// Deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local development: debug routes exist, http origins warn instead of failing.
    Development,
    /// Pre-production: production rules for secrets.
    Staging,
    /// Production: every rule fails closed.
    Production,
}

impl Environment {
    /// The lower-case name used in variables and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

/// Validated configuration of one function instance.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Where this instance runs.
    pub environment: Environment,
    /// Allowed browser origins.
    pub cors: CorsPolicy,
    /// Hosts this instance answers for (empty = any).
    pub trusted_hosts: TrustedHosts,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Rate limit; `None` when disabled.
    pub rate_limit: Option<Policy>,
    /// Masks every configured secret in log lines.
    pub redactor: Redactor,
    /// Names of the variables that are set (for the development config summary; never values).
    pub set_variables: Vec<String>,
    /// Where unexpected errors are reported (`SENTRY_DSN`), if anywhere.
    pub sentry: Option<SentryTarget>,
}

impl Default for EdgeConfig {
    /// Development defaults: any host, no CORS origins, the default rate limit.
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            cors: CorsPolicy::default(),
            trusted_hosts: TrustedHosts::default(),
            trusted_proxies: Vec::new(),
            rate_limit: Some(Policy::default()),
            redactor: Redactor::default(),
            set_variables: Vec::new(),
            sentry: None,
        }
    }
}

/// Why an instance refuses to serve: one entry per failing key, `KEY: rule`, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misconfigured {
    /// The failing keys and rules.
    pub problems: Vec<String>,
}

/// What an instance runs with: a valid configuration, or the reasons it has none.
pub type ConfigState = Result<EdgeConfig, Misconfigured>;

/// Loads and validates the configuration through the variables port, with the rules of the
/// secrets catalog (`secrets-catalog`, shared with the operator tooling). Logs, once, one line
/// naming every failing key (`config_invalid`) or every warning (`config_warning`); never a
/// value. Call once per instance.
pub fn load<P: Platform>(platform: &P, function: &str) -> ConfigState {
    let vars = platform.vars();
    // Catalog names are upper case; the variables port takes Spin's lower-case names.
    let lookup = |name: &str| vars.get(&name.to_ascii_lowercase()).ok().flatten();
    let now_ms = platform.clock().now_unix_ms();
    let today = Date::from_unix_seconds((now_ms / 1000) as i64);
    // Test-only functions (the key-value probe) are held to the least demanding profile.
    let catalog_fn = CatalogFunction::from_name(function).unwrap_or(CatalogFunction::Health);
    let redactor = Redactor::new(secret_values(&lookup).map(|s| s.expose().to_owned()));
    let sink = RedactingSink::new(platform.log(), &redactor);
    let report = |event: &str, level: Level, items: Vec<String>| {
        let mut fields = Map::new();
        fields.insert("keys".into(), items.clone().into());
        log::event(&sink, now_ms, level, function, "-", event, fields);
    };

    let validated = match parse_settings(&lookup, catalog_fn, today) {
        Ok(v) => v,
        Err(rep) => {
            let problems: Vec<String> = rep.problems.iter().map(ToString::to_string).collect();
            report("config_invalid", Level::Error, problems.clone());
            return Err(Misconfigured { problems });
        }
    };
    let s = &validated.settings;
    let mut warnings: Vec<String> = validated.warnings.iter().map(ToString::to_string).collect();

    let mut trusted_proxies = Vec::new();
    for (i, entry) in lookup("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        match entry.parse::<IpAddr>() {
            Ok(ip) => trusted_proxies.push(ip),
            Err(_) => {
                let problems = vec![format!(
                    "TRUSTED_PROXIES: entry #{} is not an IP address",
                    i + 1
                )];
                report("config_invalid", Level::Error, problems.clone());
                return Err(Misconfigured { problems });
            }
        }
    }

    let (cors, cors_warnings) = CorsPolicy::new(s.allowed_origins().iter().map(|o| o.as_str()));
    warnings.extend(cors_warnings);
    let hosts = lookup("TRUSTED_HOSTS").unwrap_or_default();
    let environment = match s.environment {
        CatalogEnvironment::Development => Environment::Development,
        CatalogEnvironment::Staging => Environment::Staging,
        CatalogEnvironment::Production => Environment::Production,
    };
    if !warnings.is_empty() {
        report("config_warning", Level::Warn, warnings);
    }
    Ok(EdgeConfig {
        environment,
        cors,
        trusted_hosts: TrustedHosts::new(hosts.split(',')),
        trusted_proxies,
        rate_limit: s.rate_limit.enabled.then_some(Policy {
            per_minute: s.rate_limit.per_minute,
            burst: s.rate_limit.burst,
        }),
        redactor,
        sentry: lookup("SENTRY_DSN").and_then(|dsn| SentryTarget::parse(&dsn)),
        set_variables: catalog()
            .iter()
            .filter(|e| lookup(e.name).is_some())
            .map(|e| e.name.to_owned())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;

    fn platform(vars: &[(&str, &str)]) -> MemoryPlatform {
        let p = MemoryPlatform::default();
        for (k, v) in vars {
            p.vars.set(&k.to_ascii_lowercase(), v);
        }
        p
    }

    #[test]
    fn an_empty_development_config_loads_with_defaults() {
        let cfg = load(&platform(&[]), "health");
        let cfg = cfg.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.environment, Environment::Development);
        assert_eq!(cfg.rate_limit, Some(Policy::default()));
    }

    #[test]
    fn production_with_debug_on_fails_closed_and_the_log_names_the_key() {
        let p = platform(&[("ENVIRONMENT", "production"), ("DEBUG", "true")]);
        let err = load(&p, "health")
            .err()
            .unwrap_or(Misconfigured { problems: vec![] });
        assert!(
            err.problems.iter().any(|p| p.starts_with("DEBUG")),
            "{err:?}"
        );
        let lines = p.log.lines();
        assert!(lines
            .iter()
            .any(|l| l.contains("config_invalid") && l.contains("DEBUG")));
    }

    #[test]
    fn a_misconfiguration_log_never_contains_the_value() {
        let p = platform(&[
            ("ENVIRONMENT", "production"),
            ("JWT_SECRET_KEY", "tooshort-but-visible-value"),
        ]);
        assert!(load(&p, "login").is_err());
        assert!(p
            .log
            .lines()
            .iter()
            .all(|l| !l.contains("tooshort-but-visible-value")));
    }

    #[test]
    fn rate_limit_settings_and_trusted_proxies_are_applied() {
        let p = platform(&[
            ("RATE_LIMIT_PER_MINUTE", "60"),
            ("RATE_LIMIT_BURST", "5"),
            ("TRUSTED_PROXIES", "127.0.0.1, ::1"),
        ]);
        let cfg = load(&p, "health").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.rate_limit,
            Some(Policy {
                per_minute: 60,
                burst: 5
            })
        );
        assert_eq!(cfg.trusted_proxies.len(), 2);
    }

    #[test]
    fn disabling_rate_limiting_removes_the_policy() {
        let p = platform(&[("ENABLE_RATE_LIMITING", "false")]);
        let cfg = load(&p, "health").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.rate_limit, None);
    }

    #[test]
    fn a_bad_trusted_proxy_fails_closed() {
        let p = platform(&[("TRUSTED_PROXIES", "not-an-ip")]);
        assert!(load(&p, "health").is_err());
    }

    #[test]
    fn configured_secrets_feed_the_redactor() {
        let p = platform(&[(
            "SENTRY_DSN",
            "https://0123456789abcdef@o1.ingest.sentry.io/42",
        )]);
        let cfg = load(&p, "health").unwrap_or_else(|e| panic!("{e:?}"));
        let out = cfg
            .redactor
            .redact("sent to https://0123456789abcdef@o1.ingest.sentry.io/42");
        assert!(!out.contains("0123456789abcdef"), "{out}");
    }
}
