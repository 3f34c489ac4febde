//! Owns validation: [`validate`] judges a configuration against the catalog and returns a
//! [`Report`]; [`parse_settings`] does the same pass and, when nothing fails, hands back the
//! typed [`Settings`]; [`secret_values`] lists every configured secret for log redaction.
//!
//! How values are read: through the caller's lookup, by upper-case name. Surrounding
//! whitespace is trimmed (a trailing newline from `echo key > file` is not part of a key)
//! and an empty value counts as unset.
//!
//! Severity rules (fail closed):
//! * `ENVIRONMENT` defaults to production (a forgotten variable must never relax the rules;
//!   `scripts/dev` opts into development); an unknown value is a problem and the rest is
//!   judged as production, the strictest reading.
//! * Production: `DEBUG` must be false, `VALIDATE_API_KEYS` true, `FRONTEND_URL` and every
//!   `CORS_ORIGINS` entry https.
//! * A required value that is unset is a problem.
//! * A secret with a bad format (including a placeholder) is a problem when
//!   `VALIDATE_API_KEYS` is true or in production, otherwise a warning. A setting that does
//!   not parse is always a problem: there is no typed value to run with.
//! * A secret scoring below its minimum strength is a problem in staging and production and a
//!   warning in development.
//! * A proxy-only variable (`DATABASE_URL`) configured on an edge function is a warning: the
//!   edge must never hold database credentials, but removing it is the operator's move.
//! * Rotation (full validation only, see [`validate`]): an overdue `<NAME>_ROTATED_AT` is a
//!   warning naming the days overdue; a date in the future is a warning; a malformed date is a
//!   problem. [`parse_settings`], the per-request path of the edge functions, does not read the
//!   rotation companions: rotation never decides whether a function may serve, and on Spin
//!   every variable read is a host call. `/health/secrets` and `validate-secrets` report it.
//! * Which entries are judged: those the function reads ([`crate::Entry::read_by`]); for
//!   `pg-proxy`, the whole catalog.
//!
//! No message ever contains a value or part of one: messages are built from fixed text,
//! names and numbers only (a test feeds distinctive values through every rule and checks).

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::{catalog, Category, Entry, Format, Rotation, Scope, Strength};
use crate::date::Date;
use crate::formats::{
    self, BusinessHours, Email, Environment, FormatError, Function, HostPattern, HttpUrl, IpNet,
    Origin, PhoneNumber,
};
use crate::secret::Secret;
use crate::strength::{self, KeyEncoding, KeyMaterialError};

/// What kind of rule a [`Problem`] reports; `as_str` gives a stable code for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A required value is not set.
    Missing,
    /// The value does not have the expected format.
    Format,
    /// The secret's strength score is below the minimum.
    Weak,
    /// A setting not allowed in this environment (debug in production, ...).
    Environment,
    /// The secret is older than its rotation period.
    RotationOverdue,
    /// `<NAME>_ROTATED_AT` is malformed or in the future.
    RotationDate,
    /// A proxy-only variable is configured on an edge function.
    Scope,
}

impl Rule {
    /// Stable snake-case code: `missing`, `format`, `weak`, `environment`,
    /// `rotation_overdue`, `rotation_date`, `scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Format => "format",
            Self::Weak => "weak",
            Self::Environment => "environment",
            Self::RotationOverdue => "rotation_overdue",
            Self::RotationDate => "rotation_date",
            Self::Scope => "scope",
        }
    }
}

/// One finding about one key. Built only inside this crate, from fixed text, names and
/// numbers: it never holds the value. `Display` prints `KEY: why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    key: &'static str,
    rule: Rule,
    message: String,
}

impl Problem {
    fn new(key: &'static str, rule: Rule, message: impl Into<String>) -> Self {
        Self {
            key,
            rule,
            message: message.into(),
        }
    }

    /// The catalog name the finding is about (for rotation findings, the secret whose
    /// `_ROTATED_AT` companion was read).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The kind of rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// Why, without the value.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The outcome of a validation pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The environment the configuration was judged as.
    pub environment: Option<Environment>,
    /// Findings that make the function refuse to serve (fail closed).
    pub problems: Vec<Problem>,
    /// Findings to log once; the function still serves.
    pub warnings: Vec<Problem>,
}

impl Report {
    /// Whether nothing fails.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The distinct keys with problems, in catalog order of appearance: what the one
    /// start-up log line names.
    pub fn failing_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = Vec::new();
        for p in &self.problems {
            if !keys.contains(&p.key) {
                keys.push(p.key);
            }
        }
        keys
    }

    fn problem(&mut self, key: &'static str, rule: Rule, message: impl Into<String>) {
        self.problems.push(Problem::new(key, rule, message));
    }

    fn warning(&mut self, key: &'static str, rule: Rule, message: impl Into<String>) {
        self.warnings.push(Problem::new(key, rule, message));
    }
}

impl fmt::Display for Report {
    /// One finding per line: problems first, then warnings prefixed `warning: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Rate-limit settings (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`, `ENABLE_RATE_LIMITING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Sustained requests per minute per client (default 50).
    pub per_minute: u32,
    /// Requests allowed at once (default 10).
    pub burst: u32,
    /// Whether limiting applies (default true).
    pub enabled: bool,
}

impl Default for RateLimitSettings {
    /// 50 per minute, burst 10, enabled: the issue's defaults, also written as the catalog
    /// defaults (a test keeps the two in step).
    fn default() -> Self {
        Self {
            per_minute: 50,
            burst: 10,
            enabled: true,
        }
    }
}

/// Business details the assistant tells customers; each is optional except where the
/// catalog requires `BUSINESS_NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Business {
    /// `BUSINESS_NAME`.
    pub name: Option<String>,
    /// `BUSINESS_PHONE`.
    pub phone: Option<PhoneNumber>,
    /// `BUSINESS_EMAIL`.
    pub email: Option<Email>,
    /// `BUSINESS_HOURS`.
    pub hours: Option<BusinessHours>,
}

/// The validated, typed configuration of one function instance.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `DEBUG` (default false; always false in production).
    pub debug: bool,
    /// `VALIDATE_API_KEYS` (default true; always true in production).
    pub validate_api_keys: bool,
    /// `FRONTEND_URL`.
    pub frontend_url: Option<HttpUrl>,
    /// `CORS_ORIGINS` (without the frontend origin; see [`Settings::allowed_origins`]).
    pub cors_origins: Vec<Origin>,
    /// `TRUSTED_HOSTS`; empty when unset (allowed only outside production).
    pub trusted_hosts: Vec<HostPattern>,
    /// `TRUSTED_PROXIES`; empty when unset (no forwarded address is believed).
    pub trusted_proxies: Vec<IpNet>,
    /// Rate limits.
    pub rate_limit: RateLimitSettings,
    /// Business details.
    pub business: Business,
    /// `PROXY_URL`.
    pub proxy_url: Option<HttpUrl>,
    /// `EVOLUTION_API_URL`.
    pub evolution_api_url: Option<HttpUrl>,
    /// Every configured secret, by catalog name.
    secrets: BTreeMap<&'static str, Secret>,
    /// Every other configured or defaulted setting, as text, by catalog name.
    texts: BTreeMap<&'static str, String>,
}

impl Settings {
    /// The configured secret `name` (e.g. `JWT_SECRET_KEY`), if set.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    /// Every configured secret value (for the log redaction pass).
    pub fn secret_values(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.values()
    }

    /// A non-secret setting as text (e.g. `OPENAI_MODEL`, `EVOLUTION_INSTANCE`), the
    /// catalog default when unset and defaulted. Secrets are never returned here.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts.get(name).map(String::as_str)
    }

    /// The CORS allow-list: the frontend's origin first, then `CORS_ORIGINS`, without
    /// duplicates.
    pub fn allowed_origins(&self) -> Vec<&Origin> {
        let mut out: Vec<&Origin> = Vec::new();
        for origin in self
            .frontend_url
            .iter()
            .map(HttpUrl::origin)
            .chain(self.cors_origins.iter())
        {
            if !out.contains(&origin) {
                out.push(origin);
            }
        }
        out
    }
}

/// Typed settings plus the warnings to log once.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The configuration.
    pub settings: Settings,
    /// Findings that do not stop the function.
    pub warnings: Vec<Problem>,
}

/// The caller's variable lookup: `Some(value)` when the variable named (upper case) is set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn read(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Judges the configuration `lookup` gives `function`, as of `today`: every catalog entry
/// that is set (also those `function` does not read: a malformed key or database credentials
/// handed to an edge function are worth a finding), plus rotation. For operators
/// (`validate-secrets`, `/health/secrets`), never on the request path.
pub fn validate(lookup: Lookup<'_>, function: Function, today: Date) -> Report {
    run(lookup, function, Some(today)).0
}

/// Validates and, when there is no problem, returns the typed settings and the warnings;
/// otherwise the report. This is the one call the edge core makes per instance (per request
/// on Spin): it looks up only the entries `function` reads, and no rotation companion.
pub fn parse_settings(lookup: Lookup<'_>, function: Function) -> Result<Validated, Report> {
    match run(lookup, function, None) {
        (report, Some(settings)) if report.is_ok() => Ok(Validated {
            settings,
            warnings: report.warnings,
        }),
        (report, _) => Err(report),
    }
}

/// Every configured secret value in the catalog (whatever the function), for the log
/// redaction pass. Values are trimmed like everywhere else; the trimmed value is a
/// substring of the raw one, so masking it masks both. Very short values are returned too:
/// whether to mask them is the redactor's decision.
pub fn secret_values(lookup: Lookup<'_>) -> impl Iterator<Item = Secret> + '_ {
    catalog()
        .iter()
        .filter(|e| e.secret)
        .filter_map(move |e| read(lookup, e.name).map(Secret::new))
}

/// A value after its format check, before it is placed in [`Settings`].
enum Parsed {
    Nothing,
    Bool(bool),
    Int(u32),
    Url(HttpUrl),
    Origins(Vec<Origin>),
    Hosts(Vec<HostPattern>),
    Nets(Vec<IpNet>),
    Phone(PhoneNumber),
    Email(Email),
    Hours(BusinessHours),
    Providers(Vec<&'static str>),
}

fn check(entry: &Entry, value: &str, env: Environment) -> Result<Parsed, FormatError> {
    if entry.secret && strength::is_placeholder(value) {
        return Err(FormatError::new(
            "looks like a placeholder, not a real value",
        ));
    }
    let nothing = |r: Result<(), FormatError>| r.map(|()| Parsed::Nothing);
    match entry.format {
        Format::OpenAiKey => nothing(formats::check_openai_key(value)),
        Format::AnthropicKey => nothing(formats::check_anthropic_key(value)),
        Format::GoogleKey => nothing(formats::check_google_key(value)),
        Format::GroqKey => nothing(formats::check_groq_key(value)),
        Format::LangSmithKey => nothing(formats::check_langsmith_key(value)),
        Format::ApiToken => nothing(formats::check_api_token(value)),
        Format::KeyMaterial { min_bytes } => strength::key_material_bytes(value, min_bytes)
            .map(|_| Parsed::Nothing)
            .map_err(|e| key_error(e, min_bytes)),
        Format::HexKey { min_bytes } => {
            if !value.len().is_multiple_of(2) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FormatError::new(format!(
                    "must be hex ({} hex characters or more, e.g. openssl rand -hex {min_bytes})",
                    min_bytes * 2
                )));
            }
            strength::key_material_bytes(value, min_bytes)
                .map(|_| Parsed::Nothing)
                .map_err(|e| key_error(e, min_bytes))
        }
        Format::Identifier { max } => nothing(formats::check_identifier(value, max)),
        Format::Text { max } => nothing(formats::check_text(value, max)),
        Format::HttpUrl => HttpUrl::parse(value, env).map(Parsed::Url),
        Format::PostgresUrl => nothing(formats::check_postgres_url(value)),
        Format::RedisUrl => nothing(formats::check_redis_url(value, env)),
        Format::SentryDsn => nothing(formats::check_sentry_dsn(value, env)),
        Format::Environment => Environment::parse(value).map(|_| Parsed::Nothing),
        Format::Bool => formats::parse_bool(value).map(Parsed::Bool),
        Format::Integer { min, max } => formats::parse_int(value, min, max).map(Parsed::Int),
        Format::OriginList => formats::parse_origin_list(value, env).map(Parsed::Origins),
        Format::HostList => formats::parse_host_list(value).map(Parsed::Hosts),
        Format::IpList => formats::parse_ip_list(value).map(Parsed::Nets),
        Format::Phone => PhoneNumber::parse(value).map(Parsed::Phone),
        Format::Email => Email::parse(value).map(Parsed::Email),
        Format::BusinessHours => BusinessHours::parse(value).map(Parsed::Hours),
        Format::Decimal { max } => {
            formats::parse_decimal_micros(value, max).map(|_| Parsed::Nothing)
        }
        Format::ProviderList => formats::parse_provider_list(value).map(Parsed::Providers),
        Format::PriceList => formats::parse_price_list(value).map(|_| Parsed::Nothing),
    }
}

fn key_error(error: KeyMaterialError, min_bytes: usize) -> FormatError {
    let how = |encoding: KeyEncoding| match encoding {
        KeyEncoding::Hex => "as hex",
        KeyEncoding::Base64 => "as base64",
        KeyEncoding::Raw => "as raw text",
    };
    FormatError::new(match error {
        KeyMaterialError::TooShort { encoding, bytes } => format!(
            "carries {bytes} bytes read {}; at least {min_bytes} random bytes are required (openssl rand -hex {min_bytes})",
            how(encoding)
        ),
        KeyMaterialError::LowEntropy { encoding } => format!(
            "read {} its bytes repeat too much to be random; generate it (openssl rand -hex {min_bytes})",
            how(encoding)
        ),
    })
}

/// `today` is `Some` for full validation (every entry, rotation judged), `None` on the
/// request path (only what `function` reads, no rotation).
fn run(lookup: Lookup<'_>, function: Function, today: Option<Date>) -> (Report, Option<Settings>) {
    let mut report = Report::default();

    // The environment decides every other severity, so it is read first.
    let env = match read(lookup, "ENVIRONMENT") {
        None => Environment::Production,
        Some(v) => Environment::parse(&v).unwrap_or_else(|e| {
            report.problem(
                "ENVIRONMENT",
                Rule::Format,
                format!("{e}; judging the rest as production"),
            );
            Environment::Production
        }),
    };
    report.environment = Some(env);
    let production = env == Environment::Production;

    let mut parsed: BTreeMap<&'static str, Parsed> = BTreeMap::new();
    let mut secrets: BTreeMap<&'static str, Secret> = BTreeMap::new();
    let mut texts: BTreeMap<&'static str, String> = BTreeMap::new();

    // VALIDATE_API_KEYS decides the severity of secret format failures, so it is read
    // before the loop; a malformed value counts as true (fail closed).
    let validate_keys = match read(lookup, "VALIDATE_API_KEYS") {
        None => true,
        Some(v) => formats::parse_bool(&v).unwrap_or(true),
    };

    let full = today.is_some();
    // Every entry for a full report and for the proxy; else what the function reads (from the
    // compiled table, `reads`), in catalog order either way.
    let everything = full || function == Function::PgProxy;
    let judged = catalog()
        .iter()
        .filter(|_| everything)
        .chain(crate::catalog::reads(function).filter(|_| !everything));
    for entry in judged {
        if entry.name == "ENVIRONMENT" {
            texts.insert(entry.name, env.as_str().to_owned());
            continue;
        }
        let Some(value) = read(lookup, entry.name) else {
            if entry.is_required(function, env) {
                report.problem(
                    entry.name,
                    Rule::Missing,
                    format!("is required by {function} in {env} but is not set"),
                );
            } else if let Some(default) = entry.default {
                texts.insert(entry.name, default.to_owned());
            }
            continue;
        };

        if entry.scope == Scope::Proxy && function != Function::PgProxy {
            report.warning(
                entry.name,
                Rule::Scope,
                "is read only by pg-proxy; remove it from the edge functions' configuration",
            );
        }

        match check(entry, &value, env) {
            Ok(p) => {
                parsed.insert(entry.name, p);
            }
            Err(e) if entry.secret && !validate_keys && !production => {
                report.warning(entry.name, Rule::Format, e.reason().to_owned());
            }
            Err(e) => {
                let rule = if e.is_environment_rule() {
                    Rule::Environment
                } else {
                    Rule::Format
                };
                report.problem(entry.name, rule, e.reason().to_owned());
            }
        }

        if entry.secret {
            if let Strength::Scored { min } = entry.strength {
                let score = strength::score(&value);
                if score < min {
                    let message = format!("strength score {score}/100 is below the minimum {min}");
                    if env == Environment::Development {
                        report.warning(entry.name, Rule::Weak, message);
                    } else {
                        report.problem(entry.name, Rule::Weak, message);
                    }
                }
            }
            if let (Rotation::Days(period), Some(today)) = (entry.rotation, today) {
                check_rotation(lookup, entry, period, today, &mut report);
            }
            secrets.insert(entry.name, Secret::new(value));
        } else {
            texts.insert(entry.name, value);
        }
    }

    let bool_of =
        |parsed: &BTreeMap<&str, Parsed>, name: &str, default: bool| match parsed.get(name) {
            Some(Parsed::Bool(b)) => *b,
            _ => default,
        };
    let debug = bool_of(&parsed, "DEBUG", false);
    if production && debug {
        report.problem("DEBUG", Rule::Environment, "must be false in production");
    }
    if production && !validate_keys {
        report.problem(
            "VALIDATE_API_KEYS",
            Rule::Environment,
            "must be true in production",
        );
    }
    let enabled = bool_of(&parsed, "ENABLE_RATE_LIMITING", true);
    if production && !enabled {
        report.warning(
            "ENABLE_RATE_LIMITING",
            Rule::Environment,
            "rate limiting is off in production",
        );
    }

    if function == Function::Webhook {
        webhook_rules(&parsed, &secrets, env, &mut report);
    }

    if !report.is_ok() {
        return (report, None);
    }

    let int_of = |name: &str, default: u32| match parsed.get(name) {
        Some(Parsed::Int(n)) => *n,
        _ => default,
    };
    let defaults = RateLimitSettings::default();
    let rate_limit = RateLimitSettings {
        per_minute: int_of("RATE_LIMIT_PER_MINUTE", defaults.per_minute),
        burst: int_of("RATE_LIMIT_BURST", defaults.burst),
        enabled,
    };
    let mut take = |name: &str| parsed.remove(name);
    let url = |p: Option<Parsed>| match p {
        Some(Parsed::Url(u)) => Some(u),
        _ => None,
    };
    let frontend_url = url(take("FRONTEND_URL"));
    let proxy_url = url(take("PROXY_URL"));
    let evolution_api_url = url(take("EVOLUTION_API_URL"));
    let cors_origins = match take("CORS_ORIGINS") {
        Some(Parsed::Origins(o)) => o,
        _ => Vec::new(),
    };
    let trusted_hosts = match take("TRUSTED_HOSTS") {
        Some(Parsed::Hosts(h)) => h,
        _ => Vec::new(),
    };
    let trusted_proxies = match take("TRUSTED_PROXIES") {
        Some(Parsed::Nets(n)) => n,
        _ => Vec::new(),
    };
    let business = Business {
        name: texts.get("BUSINESS_NAME").cloned(),
        phone: match take("BUSINESS_PHONE") {
            Some(Parsed::Phone(p)) => Some(p),
            _ => None,
        },
        email: match take("BUSINESS_EMAIL") {
            Some(Parsed::Email(e)) => Some(e),
            _ => None,
        },
        hours: match take("BUSINESS_HOURS") {
            Some(Parsed::Hours(h)) => Some(h),
            _ => None,
        },
    };
    let settings = Settings {
        environment: env,
        debug,
        validate_api_keys: validate_keys,
        frontend_url,
        cors_origins,
        trusted_hosts,
        trusted_proxies,
        rate_limit,
        business,
        proxy_url,
        evolution_api_url,
        secrets,
        texts,
    };
    (report, Some(settings))
}

/// The webhook's cross-entry rules: in staging and production at least one of its three
/// authentication methods is configured (else every delivery would be refused, or, worse, a
/// later change would be tempted to accept unauthenticated ones); a provider named in
/// `AI_PROVIDERS` has its key. Messages name keys only.
fn webhook_rules(
    parsed: &BTreeMap<&'static str, Parsed>,
    secrets: &BTreeMap<&'static str, Secret>,
    env: Environment,
    report: &mut Report,
) {
    const AUTH: [&str; 3] = ["EVOLUTION_API_KEY", "WEBHOOK_TOKEN", "EVOLUTION_JWT_KEY"];
    if env != Environment::Development && !AUTH.iter().any(|k| secrets.contains_key(k)) {
        report.problem(
            "WEBHOOK_TOKEN",
            Rule::Missing,
            format!(
                "no webhook authentication is configured: set at least one of {} in {env}",
                AUTH.join(", ")
            ),
        );
    }
    if let Some(Parsed::Providers(names)) = parsed.get("AI_PROVIDERS") {
        for name in names {
            let key = provider_key(name);
            if !secrets.contains_key(key) {
                report.problem(
                    "AI_PROVIDERS",
                    Rule::Missing,
                    format!("names {name} but {key} is not set"),
                );
            }
        }
    }
}

/// The key variable of an AI provider named in `AI_PROVIDERS`.
pub fn provider_key(name: &str) -> &'static str {
    match name {
        "groq" => "GROQ_API_KEY",
        "anthropic" => "ANTHROPIC_API_KEY",
        _ => "OPENAI_API_KEY",
    }
}

fn check_rotation(
    lookup: Lookup<'_>,
    entry: &'static Entry,
    period: u16,
    today: Date,
    report: &mut Report,
) {
    let companion = entry.rotated_at_name();
    let Some(text) = read(lookup, &companion) else {
        return;
    };
    match Date::parse(&text) {
        Err(e) => report.problem(entry.name, Rule::RotationDate, format!("{companion} {e}")),
        Ok(rotated) => {
            let age = today.days_since(rotated);
            if age < 0 {
                report.warning(
                    entry.name,
                    Rule::RotationDate,
                    format!("{companion} is {} days in the future", -age),
                );
            } else if age > i64::from(period) {
                report.warning(
                    entry.name,
                    Rule::RotationOverdue,
                    format!(
                        "rotation overdue by {} days (last rotated {age} days ago; period {period} days for {})",
                        age - i64::from(period),
                        category_words(entry.category)
                    ),
                );
            }
        }
    }
}

fn category_words(category: Category) -> &'static str {
    match category {
        Category::AiProvider => "AI provider keys",
        Category::Security => "security keys",
        Category::Infrastructure => "database credentials",
        Category::ExternalService => "external service keys",
        Category::Application | Category::Business => "settings",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    // Random test values (openssl rand), used by no deployment.
    const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";
    const SECRET_KEY: &str = "vhMUOE0ECVgvrMk3aumGqoogbbBEKmXXfeMjTCgGbkA";
    const HMAC: &str = "a870e8141c2dea42716bd554fb919e7af61032b80e57cdbe37746b3007655334";
    const ADMIN: &str = "e6e57a5a8a2d3b410416cec46fce39b653ddd3cd57c3190da327f1c481412ba5";
    const WEBHOOK: &str = "742356c9437eab1c39960b6d908b5f98b2d7cf9b606d0ea4942b07ff882ca412";
    const OPENAI: &str = "sk-proj-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";
    const GROQ: &str = "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";

    fn today() -> Date {
        Date::parse("2026-11-22").unwrap()
    }

    struct Vars(HashMap<String, String>);

    impl Vars {
        /// A complete, valid production configuration for every edge function.
        fn production() -> Self {
            let mut v = Self(HashMap::new());
            for (k, val) in [
                ("ENVIRONMENT", "production"),
                ("DEBUG", "false"),
                ("VALIDATE_API_KEYS", "true"),
                ("OPENAI_API_KEY", OPENAI),
                ("JWT_SECRET_KEY", JWT),
                ("SECRET_KEY", SECRET_KEY),
                ("PROXY_HMAC_KEY", HMAC),
                ("ADMIN_TOKEN", ADMIN),
                ("WEBHOOK_TOKEN", WEBHOOK),
                ("PROXY_URL", "https://proxy.example.com"),
                ("EVOLUTION_API_KEY", "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F"),
                ("EVOLUTION_API_URL", "https://evolution.example.com"),
                ("EVOLUTION_INSTANCE", "centro-principal"),
                ("FRONTEND_URL", "https://app.example.com/"),
                (
                    "CORS_ORIGINS",
                    "https://admin.example.com, https://*.preview.example.app",
                ),
                ("TRUSTED_HOSTS", "api.example.com,*.example.workers.dev"),
                ("BUSINESS_NAME", "Centro de Reforço Escolar"),
                ("BUSINESS_PHONE", "+55 (11) 98765-4321"),
                ("BUSINESS_EMAIL", "contato@centro.com.br"),
                ("BUSINESS_HOURS", "Mon-Fri 09:00-18:00; Sat 09:00-13:00"),
            ] {
                v.set(k, val);
            }
            v
        }

        fn development() -> Self {
            Self(HashMap::new()).with("ENVIRONMENT", "development")
        }

        fn set(&mut self, key: &str, value: &str) {
            self.0.insert(key.to_owned(), value.to_owned());
        }

        fn with(mut self, key: &str, value: &str) -> Self {
            self.set(key, value);
            self
        }

        fn without(mut self, key: &str) -> Self {
            self.0.remove(key);
            self
        }

        fn report(&self, function: Function) -> Report {
            validate(&|k: &str| self.0.get(k).cloned(), function, today())
        }

        fn settings(&self, function: Function) -> Result<Validated, Report> {
            parse_settings(&|k: &str| self.0.get(k).cloned(), function)
        }
    }

    fn has(list: &[Problem], key: &str, rule: Rule) -> bool {
        list.iter().any(|p| p.key() == key && p.rule() == rule)
    }

    #[test]
    fn a_complete_production_config_passes_for_every_edge_function() {
        let vars = Vars::production();
        for f in Function::EDGE {
            let report = vars.report(f);
            assert!(report.is_ok(), "{f}: {report}");
            assert!(report.warnings.is_empty(), "{f}: {report}");
        }
    }

    #[test]
    fn catalog_defaults_agree_with_the_typed_defaults() {
        let default_of = |name: &str| crate::catalog::entry(name).unwrap().default.unwrap();
        let d = RateLimitSettings::default();
        assert_eq!(
            default_of("RATE_LIMIT_PER_MINUTE"),
            d.per_minute.to_string()
        );
        assert_eq!(default_of("RATE_LIMIT_BURST"), d.burst.to_string());
        assert_eq!(default_of("ENABLE_RATE_LIMITING"), d.enabled.to_string());
        assert_eq!(default_of("DEBUG"), "false");
        assert_eq!(default_of("VALIDATE_API_KEYS"), "true");
        assert_eq!(default_of("ENVIRONMENT"), Environment::Production.as_str());
    }

    #[test]
    fn an_empty_configuration_is_judged_as_production_and_fails_closed() {
        let report = Vars(HashMap::new()).report(Function::Health);
        assert_eq!(report.environment, Some(Environment::Production));
        assert!(has(&report.problems, "TRUSTED_HOSTS", Rule::Missing));
        assert!(Vars(HashMap::new()).settings(Function::Health).is_err());
    }

    #[test]
    fn development_needs_nothing_else_for_liveness_and_gets_the_defaults() {
        let v = Vars::development()
            .settings(Function::Health)
            .expect("development health needs nothing");
        assert_eq!(v.settings.environment, Environment::Development);
        assert!(!v.settings.debug);
        assert!(v.settings.validate_api_keys);
        assert_eq!(
            v.settings.rate_limit,
            RateLimitSettings {
                per_minute: 50,
                burst: 10,
                enabled: true
            }
        );
        assert_eq!(
            v.settings.text("OPENAI_MODEL"),
            None,
            "health does not read it"
        );
        assert!(v.settings.trusted_hosts.is_empty());
        let webhook = Vars::development()
            .settings(Function::Webhook)
            .expect("a development webhook needs no authentication method to start");
        assert_eq!(webhook.settings.text("OPENAI_MODEL"), Some("gpt-4o-mini"));
    }

    #[test]
    fn an_unknown_environment_is_a_problem_and_the_rest_is_judged_as_production() {
        let vars = Vars::development()
            .with("ENVIRONMENT", "prod")
            .with("DEBUG", "true");
        let report = vars.report(Function::Health);
        assert!(has(&report.problems, "ENVIRONMENT", Rule::Format));
        assert_eq!(report.environment, Some(Environment::Production));
        assert!(has(&report.problems, "DEBUG", Rule::Environment));
        assert!(has(&report.problems, "TRUSTED_HOSTS", Rule::Missing));
    }

    #[test]
    fn a_production_config_with_debug_true_fails_closed_naming_debug() {
        let report = Vars::production()
            .with("DEBUG", "true")
            .report(Function::Health);
        assert_eq!(report.failing_keys(), vec!["DEBUG"]);
        assert_eq!(
            report.problems[0].to_string(),
            "DEBUG: must be false in production"
        );
        assert!(Vars::production()
            .with("DEBUG", "1")
            .settings(Function::Login)
            .is_err());
    }

    #[test]
    fn a_production_config_without_key_validation_fails_closed_naming_validate_api_keys() {
        let report = Vars::production()
            .with("VALIDATE_API_KEYS", "no")
            .report(Function::Webhook);
        assert_eq!(report.failing_keys(), vec!["VALIDATE_API_KEYS"]);
        assert_eq!(report.problems[0].rule(), Rule::Environment);
    }

    #[test]
    fn a_production_frontend_url_over_http_fails_closed() {
        let report = Vars::production()
            .with("FRONTEND_URL", "http://localhost:5173")
            .report(Function::Login);
        assert_eq!(report.failing_keys(), vec!["FRONTEND_URL"]);
        assert_eq!(
            report.problems[0].to_string(),
            "FRONTEND_URL: must use https in production"
        );
        assert_eq!(report.problems[0].rule(), Rule::Environment);
        let redis = Vars::production()
            .with("REDIS_URL", "redis://127.0.0.1:6379")
            .report(Function::Login);
        assert!(has(&redis.problems, "REDIS_URL", Rule::Environment));
    }

    #[test]
    fn every_cors_origin_must_be_https_in_production() {
        let report = Vars::production()
            .with(
                "CORS_ORIGINS",
                "https://admin.example.com,http://app.example.com",
            )
            .report(Function::Login);
        assert_eq!(report.failing_keys(), vec!["CORS_ORIGINS"]);
        assert!(report.problems[0].message().starts_with("item 2"));
        let dev = Vars::development()
            .with("CORS_ORIGINS", "http://localhost:5173")
            .settings(Function::Health)
            .unwrap();
        assert_eq!(
            dev.settings.cors_origins[0].as_str(),
            "http://localhost:5173"
        );
    }

    #[test]
    fn a_missing_required_key_is_a_problem_naming_the_key_and_function() {
        let report = Vars::production()
            .without("EVOLUTION_INSTANCE")
            .report(Function::Webhook);
        assert_eq!(report.failing_keys(), vec!["EVOLUTION_INSTANCE"]);
        assert_eq!(
            report.problems[0].to_string(),
            "EVOLUTION_INSTANCE: is required by webhook in production but is not set"
        );
        // The same key is not required by a function that does not use it.
        assert!(Vars::production()
            .without("EVOLUTION_INSTANCE")
            .report(Function::Login)
            .is_ok());
        // Whitespace only counts as unset.
        let blank = Vars::production()
            .with("EVOLUTION_INSTANCE", "  \n")
            .report(Function::Webhook);
        assert!(has(&blank.problems, "EVOLUTION_INSTANCE", Rule::Missing));
    }

    #[test]
    fn endpoint_guarding_secrets_are_required_even_in_development() {
        let report = Vars::development().report(Function::Login);
        assert!(has(&report.problems, "JWT_SECRET_KEY", Rule::Missing));
        assert!(!has(&report.problems, "SECRET_KEY", Rule::Missing));
        let report = Vars::development().report(Function::Webhook);
        assert!(report.is_ok(), "{report}");
        assert!(!has(&report.problems, "OPENAI_API_KEY", Rule::Missing));
    }

    #[test]
    fn a_deployed_webhook_needs_at_least_one_authentication_method_named_without_values() {
        let none = Vars::production()
            .without("WEBHOOK_TOKEN")
            .without("EVOLUTION_API_KEY")
            .report(Function::Webhook);
        let auth = none
            .problems
            .iter()
            .find(|p| p.key() == "WEBHOOK_TOKEN")
            .expect("a problem naming the authentication keys");
        assert_eq!(auth.rule(), Rule::Missing);
        for key in ["EVOLUTION_API_KEY", "WEBHOOK_TOKEN", "EVOLUTION_JWT_KEY"] {
            assert!(auth.message().contains(key), "{auth}");
        }
        assert!(!none.to_string().contains(WEBHOOK));
        for only in ["WEBHOOK_TOKEN", "EVOLUTION_JWT_KEY"] {
            let one = Vars::production()
                .without("WEBHOOK_TOKEN")
                .without("EVOLUTION_API_KEY")
                .with(only, WEBHOOK)
                .report(Function::Webhook);
            // EVOLUTION_API_KEY is still required to send; the rule itself is met.
            assert!(
                !one.problems.iter().any(|p| p.key() == "WEBHOOK_TOKEN"),
                "{only}: {one}"
            );
        }
        let staging = Vars::production()
            .with("ENVIRONMENT", "staging")
            .without("WEBHOOK_TOKEN")
            .without("EVOLUTION_API_KEY")
            .report(Function::Webhook);
        assert!(has(&staging.problems, "WEBHOOK_TOKEN", Rule::Missing));
        assert!(Vars::development().report(Function::Webhook).is_ok());
    }

    #[test]
    fn ai_providers_must_name_configured_providers() {
        let report = Vars::production()
            .with("AI_PROVIDERS", "anthropic,openai")
            .report(Function::Webhook);
        assert!(has(&report.problems, "AI_PROVIDERS", Rule::Missing));
        assert!(report.to_string().contains("ANTHROPIC_API_KEY"), "{report}");
        let ok = Vars::production()
            .with("AI_PROVIDERS", "openai")
            .report(Function::Webhook);
        assert!(ok.is_ok(), "{ok}");
        let bad = Vars::production()
            .with("AI_PROVIDERS", "openai,bard")
            .report(Function::Webhook);
        assert!(has(&bad.problems, "AI_PROVIDERS", Rule::Format));
    }

    #[test]
    fn a_bad_api_key_format_is_a_problem_when_validation_is_on() {
        let report = Vars::production()
            .with("GROQ_API_KEY", "gsk_tooshort1234567890")
            .report(Function::Webhook);
        assert_eq!(report.failing_keys(), vec!["GROQ_API_KEY"]);
        assert_eq!(report.problems[0].rule(), Rule::Format);
        let valid = Vars::production()
            .with("GROQ_API_KEY", GROQ)
            .report(Function::Webhook);
        assert!(valid.is_ok(), "{valid}");
    }

    #[test]
    fn a_bad_api_key_format_is_only_a_warning_in_development_with_validation_off() {
        let vars = Vars::development()
            .with("VALIDATE_API_KEYS", "false")
            .with("OPENAI_API_KEY", "not-a-key")
            .with("WEBHOOK_TOKEN", WEBHOOK);
        let v = vars.settings(Function::Webhook).unwrap();
        assert!(has(&v.warnings, "OPENAI_API_KEY", Rule::Format));
        assert_eq!(
            v.settings.secret("OPENAI_API_KEY").unwrap().expose(),
            "not-a-key"
        );
        // Validation on (the default) makes it a problem, even in development.
        let on = Vars::development()
            .with("OPENAI_API_KEY", "not-a-key")
            .report(Function::Health);
        assert!(has(&on.problems, "OPENAI_API_KEY", Rule::Format));
    }

    #[test]
    fn a_setting_that_does_not_parse_is_a_problem_even_with_validation_off() {
        let report = Vars::development()
            .with("VALIDATE_API_KEYS", "false")
            .with("RATE_LIMIT_PER_MINUTE", "fifty")
            .with("BUSINESS_EMAIL", "contato at centro")
            .report(Function::Health);
        assert!(has(&report.problems, "RATE_LIMIT_PER_MINUTE", Rule::Format));
        assert!(has(&report.problems, "BUSINESS_EMAIL", Rule::Format));
    }

    #[test]
    fn placeholder_secrets_are_format_problems() {
        let report = Vars::production()
            .with("EVOLUTION_API_KEY", "your-evolution-api-key-here")
            .report(Function::Webhook);
        assert!(has(&report.problems, "EVOLUTION_API_KEY", Rule::Format));
        assert!(report.problems[0].message().contains("placeholder"));
    }

    #[test]
    fn a_jwt_secret_of_32_hex_characters_carries_16_bytes_and_fails() {
        let report = Vars::production()
            .with("JWT_SECRET_KEY", &JWT[..32])
            .report(Function::Login);
        assert!(has(&report.problems, "JWT_SECRET_KEY", Rule::Format));
        let message = report.problems[0].message();
        assert!(
            message.starts_with("carries 16 bytes read as hex"),
            "{message}"
        );
    }

    #[test]
    fn a_jwt_secret_is_accepted_as_hex_base64_or_high_entropy_raw_text() {
        for key in [
            JWT,
            SECRET_KEY,
            "vhMUOE0ECVgvrMk3aumGqoogbbBEKmXXfeMjTCgGbkA=",
            "k#9Vq!2mZ@x7Lr$4pW^8nT&1bY*6cH%3jF(Qe",
        ] {
            let report = Vars::production()
                .with("JWT_SECRET_KEY", key)
                .report(Function::Login);
            assert!(report.is_ok(), "{report}");
        }
    }

    #[test]
    fn a_jwt_secret_of_one_repeated_character_fails_however_long() {
        let report = Vars::production()
            .with("JWT_SECRET_KEY", &"a".repeat(64))
            .report(Function::Login);
        assert!(has(&report.problems, "JWT_SECRET_KEY", Rule::Format));
        assert!(has(&report.problems, "JWT_SECRET_KEY", Rule::Weak));
    }

    #[test]
    fn the_proxy_key_must_be_hex_like_the_proxy_reads_it() {
        let report = Vars::production()
            .with("PROXY_HMAC_KEY", SECRET_KEY)
            .report(Function::Webhook);
        assert!(has(&report.problems, "PROXY_HMAC_KEY", Rule::Format));
    }

    #[test]
    fn weak_secrets_fail_in_production_and_staging_but_only_warn_in_development() {
        // 33 bytes of raw text, enough entropy per character to pass the key rule, but a
        // keyboard walk that the strength score refuses.
        let weak = "qwertyuiop1234567890asdfghjkl!@#$%";
        for env in ["production", "staging"] {
            let report = Vars::production()
                .with("ENVIRONMENT", env)
                .with("ADMIN_TOKEN", weak)
                .report(Function::HealthSecrets);
            assert!(
                has(&report.problems, "ADMIN_TOKEN", Rule::Weak),
                "{env}: {report}"
            );
        }
        let dev = Vars::development()
            .with("ADMIN_TOKEN", weak)
            .settings(Function::HealthSecrets)
            .unwrap();
        assert!(has(&dev.warnings, "ADMIN_TOKEN", Rule::Weak));
    }

    #[test]
    fn an_overdue_rotation_is_a_warning_naming_the_days_overdue() {
        // AI keys rotate every 90 days: rotated 100 days before 2026-11-22.
        let vars = Vars::production().with("OPENAI_API_KEY_ROTATED_AT", "2026-08-14");
        let v = vars.report(Function::Webhook);
        assert!(v.is_ok(), "{v}");
        assert_eq!(v.warnings.len(), 1);
        let w = &v.warnings[0];
        assert_eq!(w.key(), "OPENAI_API_KEY");
        assert_eq!(w.rule(), Rule::RotationOverdue);
        assert!(
            w.to_string()
                .starts_with("OPENAI_API_KEY: rotation overdue by 10 days"),
            "{w}"
        );
        // The request path never reads rotation companions: rotation does not decide serving.
        let settings = vars.settings(Function::Webhook).unwrap();
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn a_rotation_within_its_period_is_silent() {
        // Security keys rotate every 180 days; exactly 180 days is still within the period.
        let vars = Vars::production()
            .with("JWT_SECRET_KEY_ROTATED_AT", "2026-05-26")
            .with("OPENAI_API_KEY_ROTATED_AT", "2026-11-22");
        assert_eq!(today().days_since(Date::parse("2026-05-26").unwrap()), 180);
        let v = vars.settings(Function::Login).unwrap();
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let over = Vars::production()
            .with("JWT_SECRET_KEY_ROTATED_AT", "2026-05-25")
            .report(Function::Login);
        assert!(has(&over.warnings, "JWT_SECRET_KEY", Rule::RotationOverdue));
    }

    #[test]
    fn a_malformed_rotation_date_is_a_problem() {
        let report = Vars::production()
            .with("PROXY_HMAC_KEY_ROTATED_AT", "22/11/2026")
            .report(Function::Webhook);
        assert_eq!(report.failing_keys(), vec!["PROXY_HMAC_KEY"]);
        assert_eq!(
            report.problems[0].to_string(),
            "PROXY_HMAC_KEY: PROXY_HMAC_KEY_ROTATED_AT is not a date in the form YYYY-MM-DD"
        );
    }

    #[test]
    fn a_rotation_date_in_the_future_is_a_warning() {
        let report = Vars::production()
            .with("ADMIN_TOKEN_ROTATED_AT", "2026-12-01")
            .report(Function::HealthSecrets);
        assert!(report.is_ok());
        assert!(has(&report.warnings, "ADMIN_TOKEN", Rule::RotationDate));
    }

    #[test]
    fn database_credentials_on_an_edge_function_are_a_scope_warning() {
        let vars = Vars::production().with("DATABASE_URL", "postgres://u:pw@db.internal/app");
        let edge = vars.report(Function::Webhook);
        assert!(edge.is_ok());
        assert!(has(&edge.warnings, "DATABASE_URL", Rule::Scope));
        assert!(!has(
            &vars.report(Function::PgProxy).warnings,
            "DATABASE_URL",
            Rule::Scope
        ));
    }

    #[test]
    fn the_proxy_needs_its_database_url_and_hex_key_in_every_environment() {
        let report = Vars::development().report(Function::PgProxy);
        assert_eq!(
            report.failing_keys(),
            vec!["PROXY_HMAC_KEY", "DATABASE_URL"]
        );
        let ok = Vars::development()
            .with("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/app")
            .with("PROXY_HMAC_KEY", HMAC)
            .report(Function::PgProxy);
        assert!(ok.is_ok(), "{ok}");
    }

    #[test]
    fn trusted_hosts_are_required_in_production_only() {
        let report = Vars::production()
            .without("TRUSTED_HOSTS")
            .report(Function::Health);
        assert_eq!(report.failing_keys(), vec!["TRUSTED_HOSTS"]);
        assert!(Vars::production()
            .with("ENVIRONMENT", "staging")
            .without("TRUSTED_HOSTS")
            .report(Function::Health)
            .is_ok());
    }

    #[test]
    fn rate_limiting_turned_off_in_production_is_a_warning() {
        let v = Vars::production()
            .with("ENABLE_RATE_LIMITING", "false")
            .settings(Function::Health)
            .unwrap();
        assert!(!v.settings.rate_limit.enabled);
        assert!(has(&v.warnings, "ENABLE_RATE_LIMITING", Rule::Environment));
    }

    #[test]
    fn parse_settings_returns_typed_values_for_a_valid_config() {
        let v = Vars::production()
            .with("RATE_LIMIT_PER_MINUTE", "120")
            .with("RATE_LIMIT_BURST", "20")
            .with(
                "CORS_ORIGINS",
                "https://app.example.com, https://*.preview.example.app",
            )
            .settings(Function::Webhook)
            .unwrap();
        let s = &v.settings;
        assert_eq!(s.environment, Environment::Production);
        assert_eq!(
            s.rate_limit,
            RateLimitSettings {
                per_minute: 120,
                burst: 20,
                enabled: true
            }
        );
        assert_eq!(
            s.frontend_url.as_ref().unwrap().as_str(),
            "https://app.example.com/"
        );
        let origins: Vec<&str> = s.allowed_origins().iter().map(|o| o.as_str()).collect();
        assert_eq!(
            origins,
            ["https://app.example.com", "https://*.preview.example.app"]
        );
        assert!(s.trusted_hosts[1].allows("fn-login.example.workers.dev"));
        assert_eq!(
            s.proxy_url.as_ref().unwrap().as_str(),
            "https://proxy.example.com"
        );
        assert_eq!(
            s.business.name.as_deref(),
            Some("Centro de Reforço Escolar")
        );
        assert_eq!(
            s.business.phone.as_ref().unwrap().normalized(),
            "+5511987654321"
        );
        assert_eq!(
            s.business.email.as_ref().unwrap().as_str(),
            "contato@centro.com.br"
        );
        assert!(s.business.hours.as_ref().unwrap().is_open(5, 600));
        assert_eq!(s.secret("PROXY_HMAC_KEY").unwrap().expose(), HMAC);
        assert!(
            s.secret("JWT_SECRET_KEY").is_none(),
            "the webhook does not read it"
        );
        assert_eq!(s.text("EVOLUTION_INSTANCE"), Some("centro-principal"));
        // Secrets never come back as text, and settings never as secrets.
        assert_eq!(s.text("PROXY_HMAC_KEY"), None);
        assert!(s.secret("EVOLUTION_INSTANCE").is_none());
        assert!(!format!("{s:?}").contains(HMAC));
    }

    #[test]
    fn parse_settings_returns_the_whole_report_when_anything_fails() {
        let report = Vars::production()
            .with("DEBUG", "true")
            .without("PROXY_URL")
            .with("BUSINESS_HOURS", "always")
            .settings(Function::Webhook)
            .unwrap_err();
        assert_eq!(
            report.failing_keys(),
            vec!["PROXY_URL", "BUSINESS_HOURS", "DEBUG"]
        );
    }

    #[test]
    fn secret_values_lists_every_configured_secret_and_no_setting() {
        let vars = Vars::production().with("DATABASE_URL", "postgres://u:pw@db.internal/app");
        let lookup = |k: &str| vars.0.get(k).cloned();
        let values: Vec<String> = secret_values(&lookup)
            .map(|s| s.expose().to_owned())
            .collect();
        for v in [
            OPENAI,
            JWT,
            SECRET_KEY,
            HMAC,
            ADMIN,
            WEBHOOK,
            "postgres://u:pw@db.internal/app",
        ] {
            assert!(values.iter().any(|x| x == v), "{v} missing");
        }
        assert!(values
            .iter()
            .any(|x| x == "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F"));
        assert!(!values.iter().any(|x| x == "https://proxy.example.com"));
        assert_eq!(values.len(), 8);
    }

    #[test]
    fn problem_messages_never_contain_the_value() {
        // Every variable gets a distinctive wrong value; no finding may quote any part of it.
        let mut vars = Vars::production();
        let mut markers = Vec::new();
        for (i, e) in catalog().iter().enumerate() {
            let marker = format!("Zmark{i:02}Q");
            let value = match e.format {
                Format::OpenAiKey => format!("sk-proj-{marker}"),
                Format::HttpUrl => format!("http://{marker}.example.com"),
                Format::KeyMaterial { .. } => format!("{marker}{marker}"),
                _ => format!("{marker} !"),
            };
            vars.set(e.name, &value);
            vars.set(&e.rotated_at_name(), &format!("{marker}-01"));
            markers.push(marker);
        }
        vars.set("ENVIRONMENT", "production");
        let report = vars.report(Function::Webhook);
        // Every rule fired (free text accepts the marker, so it has nothing to report).
        let failing = report.failing_keys();
        for e in catalog() {
            if e.name != "ENVIRONMENT" && !matches!(e.format, Format::Text { .. }) {
                assert!(failing.contains(&e.name), "{} did not fail", e.name);
            }
        }
        let text = report.to_string();
        for m in &markers {
            assert!(!text.contains(m.as_str()), "{m} leaked: {text}");
            assert!(!text.contains(&m[1..5]), "part of {m} leaked: {text}");
        }
    }
}
