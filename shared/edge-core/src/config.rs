//! The configuration every function runs with, read once per instance through the variables
//! port and validated completely with the secrets catalog's rules. Invalid configuration fails
//! closed: the instance answers 503 to every request, and one log line names the failing keys
//! (never their values).
//!
//! Only the variables the function reads are looked up ([`secrets_catalog::reads`]), each
//! exactly once: on Spin every lookup is a host call (once per instance since its components
//! are WASIp3 and reused; it was on every request before), and a function has no business
//! seeing another function's secrets.

use std::collections::{BTreeMap, HashMap};

use secrets_catalog::{
    entry, parse_settings, reads, rotation_reads, Environment as CatalogEnvironment,
    Function as CatalogFunction, IpNet, Secret, Settings,
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
    pub trusted_proxies: Vec<IpNet>,
    /// Rate limit; `None` when disabled.
    pub rate_limit: Option<Policy>,
    /// Masks every configured secret in log lines.
    pub redactor: Redactor,
    /// Names of the variables this function reads that are set (for the development config
    /// summary; never values).
    pub set_variables: Vec<String>,
    /// Where unexpected errors are reported (`SENTRY_DSN`), if anywhere.
    pub sentry: Option<SentryTarget>,
    /// The typed settings (secrets, business details, URLs) the function's handler uses;
    /// `None` only in [`EdgeConfig::default`], which tests and the misconfigured path use.
    pub settings: Option<Settings>,
    /// Secrets a test-only function reads beyond the catalog's list (see [`load`]).
    extra_secrets: HashMap<&'static str, Secret>,
    /// The `<NAME>_ROTATED_AT` companions read (only by the functions that judge rotation,
    /// [`secrets_catalog::rotation_reads`]), as set: dates, not secrets.
    rotated_at: BTreeMap<String, String>,
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
            settings: None,
            extra_secrets: HashMap::new(),
            rotated_at: BTreeMap::new(),
        }
    }
}

impl EdgeConfig {
    /// The configured secret `name` this function reads (`JWT_SECRET_KEY`, ...).
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.settings
            .as_ref()
            .and_then(|s| s.secret(name))
            .or_else(|| self.extra_secrets.get(name))
    }

    /// A non-secret setting as text (the catalog default when unset and defaulted).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.settings.as_ref().and_then(|s| s.text(name))
    }

    /// The value of variable `name` as this instance read it (trimmed; `None` when unset, so
    /// catalog defaults do not count as set): a catalog entry the function reads, or a rotation
    /// companion it reads. This is the lookup the secrets catalog's judgements take
    /// ([`secrets_catalog::summary`], [`secrets_catalog::validate`]); it returns secret
    /// values, so its result goes to the catalog and nowhere else.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Some(date) = self.rotated_at.get(name) {
            return Some(date.clone());
        }
        if !self.set_variables.iter().any(|n| n == name) {
            return None;
        }
        self.secret(name)
            .map(|s| s.expose().to_owned())
            .or_else(|| self.text(name).map(str::to_owned))
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

/// The catalog function a function name stands for. Names the catalog does not know
/// (test-only functions such as the key-value probe) are held to liveness' rules.
pub fn catalog_function(function: &str) -> CatalogFunction {
    CatalogFunction::from_name(function).unwrap_or(CatalogFunction::Health)
}

/// The variables `function` reads (upper case), plus `extra`: what its Spin component must
/// declare, no more and no less.
pub fn variable_names(function: &str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = reads(catalog_function(function)).map(|e| e.name).collect();
    for name in extra {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
}

/// Every variable [`load`] reads for `function` with `extra`, by the name the variables port
/// takes (lower case), each once: the function's catalog entries and `extra`
/// ([`variable_names`]), then the `<NAME>_ROTATED_AT` companions of the functions that judge
/// rotation. An adapter whose variables are async host calls (Spin, WASIp3) fetches exactly
/// these before it loads.
pub fn variables_read(function: &str, extra: &[&'static str]) -> Vec<String> {
    variable_names(function, extra)
        .into_iter()
        .map(str::to_ascii_lowercase)
        .chain(
            rotation_reads(catalog_function(function))
                .map(|e| e.rotated_at_name().to_ascii_lowercase()),
        )
        .collect()
}

/// On a runtime that instantiates per request, one load in this many logs its configuration
/// warnings: every load would repeat the same line on every request (about a third of a
/// request's cost on Spin when it ran WASIp2 components, and noise that buries the access
/// lines). Invalid configuration is
/// logged on every load: each of those requests fails.
pub const WARNINGS_ONE_IN: u8 = 64;

/// Whether this load logs its warnings: always where an instance serves many requests;
/// one load in [`WARNINGS_ONE_IN`] (by the platform's randomness) where each request is an
/// instance. Without randomness it logs.
fn reports_warnings<P: Platform>(platform: &P) -> bool {
    if !P::INSTANCE_PER_REQUEST {
        return true;
    }
    let mut coin = [0u8; 1];
    platform
        .random()
        .fill(&mut coin)
        .map_or(true, |()| coin[0] % WARNINGS_ONE_IN == 0)
}

/// Loads and validates the configuration of `function` through the variables port, with the
/// rules of the secrets catalog (shared with the operator tooling). Reads each variable the
/// function reads once, plus `extra` (test-only functions that need a variable the catalog
/// does not give them). Logs, once, one line naming every failing key (`config_invalid`) or
/// every warning (`config_warning`, sampled where each request is an instance:
/// [`WARNINGS_ONE_IN`]); never a value. Call once per instance.
pub fn load<P: Platform>(platform: &P, function: &str, extra: &[&'static str]) -> ConfigState {
    let vars = platform.vars();
    let mut values: HashMap<&'static str, String> = HashMap::new();
    let mut set_variables = Vec::new();
    // A variable the platform failed to read is neither set nor unset: the load fails closed
    // naming it (an optional secret must not quietly go missing).
    let mut unreadable = Vec::new();
    // Catalog names are upper case; the variables port takes Spin's lower-case names.
    let mut read = |name: &str| match vars.get(&name.to_ascii_lowercase()) {
        Ok(value) => value,
        Err(_) => {
            unreadable.push(format!("{name}: the platform could not read it"));
            None
        }
    };
    for name in variable_names(function, extra) {
        if let Some(value) = read(name) {
            set_variables.push(name.to_owned());
            values.insert(name, value);
        }
    }
    // Rotation companions: only the functions that judge rotation read them (one host call
    // each on Spin). They are dates, kept as read for the catalog's rotation rules.
    let rotated_at: BTreeMap<String, String> = rotation_reads(catalog_function(function))
        .map(|e| e.rotated_at_name())
        .filter_map(|name| {
            let value = read(&name)?.trim().to_owned();
            (!value.is_empty()).then_some((name, value))
        })
        .collect();
    let lookup = |name: &str| values.get(name).cloned();
    let now_ms = platform.clock().now_unix_ms();

    let extra_secrets: HashMap<&'static str, Secret> = extra
        .iter()
        .filter(|name| entry(name).is_some_and(|e| e.secret))
        .filter_map(|name| {
            let v = values.get(name)?.trim();
            (!v.is_empty()).then(|| (*name, Secret::new(v)))
        })
        .collect();
    let secret_texts = |settings: Option<&Settings>| -> Vec<String> {
        settings
            .into_iter()
            .flat_map(|s| s.secret_values())
            .chain(extra_secrets.values())
            .map(|s| s.expose().to_owned())
            .collect()
    };
    let report = |redactor: &Redactor, event: &str, level: Level, items: Vec<String>| {
        let sink = RedactingSink::new(platform.log(), redactor);
        let mut fields = Map::new();
        fields.insert("keys".into(), items.into());
        log::event(&sink, now_ms, level, function, "-", event, fields);
    };
    let invalid = |problems: Vec<String>| -> ConfigState {
        // Every set value of this function may be a secret the report could brush against:
        // mask all of them (messages never quote values; this is the second line).
        let redactor = Redactor::new(values.values().cloned());
        report(&redactor, "config_invalid", Level::Error, problems.clone());
        Err(Misconfigured { problems })
    };

    if !unreadable.is_empty() {
        return invalid(unreadable);
    }
    let validated = match parse_settings(&lookup, catalog_function(function)) {
        Ok(v) => v,
        Err(rep) => return invalid(rep.problems.iter().map(ToString::to_string).collect()),
    };
    let s = validated.settings;
    let redactor = Redactor::new(secret_texts(Some(&s)));
    let mut warnings: Vec<String> = validated.warnings.iter().map(ToString::to_string).collect();
    let (cors, cors_warnings) = CorsPolicy::new(s.allowed_origins().iter().map(|o| o.as_str()));
    warnings.extend(cors_warnings);
    if !warnings.is_empty() && reports_warnings(platform) {
        report(&redactor, "config_warning", Level::Warn, warnings);
    }
    let environment = match s.environment {
        CatalogEnvironment::Development => Environment::Development,
        CatalogEnvironment::Staging => Environment::Staging,
        CatalogEnvironment::Production => Environment::Production,
    };
    Ok(EdgeConfig {
        environment,
        cors,
        trusted_hosts: TrustedHosts::new(s.trusted_hosts.clone()),
        trusted_proxies: s.trusted_proxies.clone(),
        rate_limit: s.rate_limit.enabled.then_some(Policy {
            per_minute: s.rate_limit.per_minute,
            burst: s.rate_limit.burst,
        }),
        redactor,
        sentry: s
            .secret("SENTRY_DSN")
            .and_then(|dsn| SentryTarget::parse(dsn.expose())),
        set_variables,
        settings: Some(s),
        extra_secrets,
        rotated_at,
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
    fn a_development_config_loads_with_defaults() {
        let cfg = load(&platform(&[("ENVIRONMENT", "development")]), "health", &[]);
        let cfg = cfg.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.environment, Environment::Development);
        assert_eq!(cfg.rate_limit, Some(Policy::default()));
    }

    #[test]
    fn an_unset_environment_is_production_and_fails_closed_without_trusted_hosts() {
        let p = platform(&[]);
        let err = load(&p, "health", &[])
            .err()
            .unwrap_or(Misconfigured { problems: vec![] });
        assert!(
            err.problems.iter().any(|p| p.starts_with("TRUSTED_HOSTS")),
            "{err:?}"
        );
    }

    #[test]
    fn production_with_debug_on_fails_closed_and_the_log_names_the_key() {
        let p = platform(&[("ENVIRONMENT", "production"), ("DEBUG", "true")]);
        let err = load(&p, "health", &[])
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
        assert!(load(&p, "login", &[]).is_err());
        assert!(p
            .log
            .lines()
            .iter()
            .all(|l| !l.contains("tooshort-but-visible-value")));
    }

    #[test]
    fn only_the_variables_the_function_reads_are_looked_up() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            (
                "ADMIN_TOKEN",
                "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
            ),
            ("CORS_ORIGINS", "https://app.example.test"),
        ]);
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.set_variables, ["ENVIRONMENT", "CORS_ORIGINS"]);
        assert!(cfg.secret("ADMIN_TOKEN").is_none());
        let looked_up = p.vars.looked_up();
        assert!(
            !looked_up.iter().any(|n| n == "admin_token"),
            "{looked_up:?}"
        );
        assert_eq!(
            looked_up.len(),
            variable_names("health", &[]).len(),
            "each variable exactly once: {looked_up:?}"
        );
        let probe = load(&p, "kv-probe", &["ADMIN_TOKEN"]).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(probe.secret("ADMIN_TOKEN").is_some());
        assert!(!probe
            .redactor
            .redact("c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c")
            .contains("c17fa154"));
    }

    #[test]
    fn a_variable_the_platform_cannot_read_fails_closed_naming_it() {
        // The problems of loading `function` when reading `name` fails, and whether the
        // config_invalid line names the key.
        let unreadable = |function: &str, name: &str| {
            let p = platform(&[("ENVIRONMENT", "development")]);
            p.vars.fail(name);
            let problems = load(&p, function, &[]).err().map(|e| e.problems);
            let key = name.to_ascii_uppercase();
            let logged = p
                .log
                .lines()
                .iter()
                .any(|l| l.contains("config_invalid") && l.contains(&key));
            (problems, logged)
        };
        // SENTRY_DSN is optional: read as "unset" it would silently turn error reports off.
        assert_eq!(
            unreadable("health", "sentry_dsn"),
            (
                Some(vec!["SENTRY_DSN: the platform could not read it".to_owned()]),
                true
            )
        );
        // The same for a rotation companion, read only by the functions that judge rotation.
        assert_eq!(
            unreadable("health-secrets", "admin_token_rotated_at"),
            (
                Some(vec![
                    "ADMIN_TOKEN_ROTATED_AT: the platform could not read it".to_owned()
                ]),
                true
            )
        );
    }

    #[test]
    fn variables_read_lists_exactly_what_load_looks_up_in_order() {
        // What the Spin adapter fetches before it loads: a name missing here would read as a
        // contract error there, an extra one would be a wasted host call.
        for (function, extra) in [
            ("health", &[][..]),
            ("health-readiness", &[]),
            ("health-comprehensive", &[]),
            ("health-secrets", &[]),
            ("webhook", &[]),
            ("login", &[]),
            ("logout", &[]),
            ("kv-probe", &["ADMIN_TOKEN"]),
        ] {
            let p = platform(&[("ENVIRONMENT", "development")]);
            let _ = load(&p, function, extra);
            assert_eq!(
                p.vars.looked_up(),
                variables_read(function, extra),
                "{function}"
            );
        }
    }

    #[test]
    fn the_functions_that_judge_rotation_read_each_companion_once_and_others_none() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            ("ADMIN_TOKEN_ROTATED_AT", "2026-01-02"),
            (
                "ADMIN_TOKEN",
                "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
            ),
        ]);
        let cfg = load(&p, "health-secrets", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.lookup("ADMIN_TOKEN_ROTATED_AT").as_deref(),
            Some("2026-01-02")
        );
        assert_eq!(cfg.lookup("ENVIRONMENT").as_deref(), Some("development"));
        assert_eq!(
            cfg.lookup("ENABLE_RATE_LIMITING"),
            None,
            "a default is not set"
        );
        let looked_up = p.vars.looked_up();
        let companions: Vec<&String> = looked_up
            .iter()
            .filter(|n| n.ends_with("_rotated_at"))
            .collect();
        assert_eq!(
            companions.len(),
            rotation_reads(CatalogFunction::HealthSecrets).count()
        );
        let mut unique = looked_up.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), looked_up.len(), "each variable once");

        let p = platform(&[("ENVIRONMENT", "development")]);
        load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p
            .vars
            .looked_up()
            .iter()
            .all(|n| !n.ends_with("_rotated_at")));
    }

    #[test]
    fn rate_limit_settings_and_trusted_proxies_are_applied() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            ("RATE_LIMIT_PER_MINUTE", "60"),
            ("RATE_LIMIT_BURST", "5"),
            ("TRUSTED_PROXIES", "127.0.0.1, ::1, 10.0.0.0/8"),
        ]);
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.rate_limit,
            Some(Policy {
                per_minute: 60,
                burst: 5
            })
        );
        assert_eq!(cfg.trusted_proxies.len(), 3);
    }

    #[test]
    fn trusted_hosts_with_a_port_are_honoured() {
        let p = platform(&[
            ("ENVIRONMENT", "production"),
            ("TRUSTED_HOSTS", "localhost:3000"),
        ]);
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let mut req = crate::Request::new(crate::Bytes::new());
        *req.uri_mut() = "http://localhost:3000/health".parse().unwrap_or_default();
        assert!(cfg.trusted_hosts.allows(&req));
    }

    #[test]
    fn disabling_rate_limiting_removes_the_policy() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            ("ENABLE_RATE_LIMITING", "false"),
        ]);
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.rate_limit, None);
    }

    #[test]
    fn a_bad_trusted_proxy_fails_closed() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            ("TRUSTED_PROXIES", "not-an-ip"),
        ]);
        assert!(load(&p, "health", &[]).is_err());
    }

    #[test]
    fn configured_secrets_feed_the_redactor() {
        let p = platform(&[
            ("ENVIRONMENT", "development"),
            (
                "SENTRY_DSN",
                "https://0123456789abcdef@o1.ingest.sentry.io/42",
            ),
        ]);
        let cfg = load(&p, "health", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let out = cfg
            .redactor
            .redact("sent to https://0123456789abcdef@o1.ingest.sentry.io/42");
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(cfg.sentry.is_some());
    }

    /// The in-memory platform as a runtime that instantiates per request behaves (Spin with
    /// WASIp2 components).
    struct PerRequest(MemoryPlatform);

    impl Platform for PerRequest {
        const RUNTIME: &'static str = "memory-per-request";
        const INSTANCE_PER_REQUEST: bool = true;
        type Kv = crate::memory::MemoryKv;
        type Http = crate::memory::MemoryHttp;
        type Timer = crate::memory::MemoryTimer;
        fn kv(&self) -> &Self::Kv {
            self.0.kv()
        }
        fn vars(&self) -> &dyn crate::ports::Variables {
            self.0.vars()
        }
        fn clock(&self) -> &dyn crate::ports::Clock {
            self.0.clock()
        }
        fn random(&self) -> &dyn crate::ports::Random {
            self.0.random()
        }
        fn http(&self) -> &Self::Http {
            self.0.http()
        }
        fn log(&self) -> &dyn crate::ports::LogSink {
            self.0.log()
        }
        fn timer(&self) -> &Self::Timer {
            self.0.timer()
        }
    }

    /// Production with rate limiting off: valid, with one warning.
    const WARNS: &[(&str, &str)] = &[
        ("ENVIRONMENT", "production"),
        ("TRUSTED_HOSTS", "api.example.com"),
        ("ENABLE_RATE_LIMITING", "false"),
    ];

    fn warning_lines(p: &MemoryPlatform) -> usize {
        p.log
            .lines()
            .iter()
            .filter(|l| l.contains("config_warning"))
            .count()
    }

    #[test]
    fn an_instance_serving_many_requests_logs_its_warnings_on_every_load() {
        let p = platform(WARNS);
        for _ in 0..10 {
            assert!(load(&p, "health", &[]).is_ok());
        }
        assert_eq!(warning_lines(&p), 10);
        assert!(p.log.lines()[0].contains("ENABLE_RATE_LIMITING"));
    }

    #[test]
    fn per_request_instances_log_warnings_for_about_one_load_in_64_and_errors_always() {
        let p = PerRequest(platform(WARNS));
        let loads = 64 * 40;
        for _ in 0..loads {
            assert!(load(&p, "health", &[]).is_ok());
        }
        let logged = warning_lines(&p.0);
        // 40 expected; a binomial(2560, 1/64) is within 20..=60 far beyond any seed's luck.
        assert!((20..=60).contains(&logged), "{logged} warning lines");

        let bad = PerRequest(platform(&[
            ("ENVIRONMENT", "production"),
            ("DEBUG", "true"),
        ]));
        for _ in 0..5 {
            assert!(load(&bad, "health", &[]).is_err());
        }
        let invalid = bad
            .0
            .log
            .lines()
            .iter()
            .filter(|l| l.contains("config_invalid"))
            .count();
        assert_eq!(invalid, 5, "every failing load names its keys");
    }
}
