//! Owns validation: [`validate`] judges a configuration against the catalog and returns a
//! [`Report`]; [`parse_settings`] does the same pass and, when nothing fails, hands back the
//! typed [`Settings`]; [`secret_values`] lists every configured secret for log redaction.
//!
//! How values are read: through the caller's lookup, by upper-case name. Surrounding
//! whitespace is trimmed (a trailing newline from `echo key > file` is not part of a key)
//! and an empty value counts as unset.
//!
//! Severity rules (fail closed):
//! * `ENVIRONMENT` defaults to development; an unknown value is a problem and the rest is
//!   judged as production, the strictest reading.
//! * Production: `DEBUG` must be false, `VALIDATE_API_KEYS` true, `FRONTEND_URL` and every
//!   `CORS_ORIGINS` entry https.
//! * A required value that is unset is a problem.
//! * A secret with a bad format (including a placeholder) is a problem when
//!   `VALIDATE_API_KEYS` is true or in production, otherwise a warning. A setting that does
//!   not parse is always a problem: there is no typed value to run with.
//! * A secret scoring below its minimum strength is a problem in staging and production and a
//!   warning in development.
//! * Rotation: an overdue `<NAME>_ROTATED_AT` is a warning naming the days overdue; a date in
//!   the future is a warning; a malformed date is a problem.
//!
//! No message ever contains a value or part of one: messages are built from fixed text,
//! names and numbers only (a test feeds distinctive values through every rule and checks).

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::{catalog, Category, Entry, Format, Rotation, Strength};
use crate::date::Date;
use crate::formats::{
    self, BusinessHours, Email, Environment, FormatError, Function, HostPattern, HttpUrl, Origin,
    PhoneNumber,
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
}

impl Rule {
    /// Stable snake-case code: `missing`, `format`, `weak`, `environment`,
    /// `rotation_overdue`, `rotation_date`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Format => "format",
            Self::Weak => "weak",
            Self::Environment => "environment",
            Self::RotationOverdue => "rotation_overdue",
            Self::RotationDate => "rotation_date",
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

fn read(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Judges the configuration `lookup` gives `function`, as of `today`.
pub fn validate(lookup: Lookup<'_>, function: Function, today: Date) -> Report {
    run(lookup, function, today).0
}

/// Validates and, when there is no problem, returns the typed settings and the warnings;
/// otherwise the full report. This is the one call the edge core makes per instance.
pub fn parse_settings(
    lookup: Lookup<'_>,
    function: Function,
    today: Date,
) -> Result<Validated, Report> {
    match run(lookup, function, today) {
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
    Phone(PhoneNumber),
    Email(Email),
    Hours(BusinessHours),
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
            if value.len() % 2 != 0 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
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
        Format::Phone => PhoneNumber::parse(value).map(Parsed::Phone),
        Format::Email => Email::parse(value).map(Parsed::Email),
        Format::BusinessHours => BusinessHours::parse(value).map(Parsed::Hours),
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

fn run(lookup: Lookup<'_>, function: Function, today: Date) -> (Report, Option<Settings>) {
    let mut report = Report::default();

    // The environment decides every other severity, so it is read first.
    let env = match read(lookup, "ENVIRONMENT") {
        None => Environment::Development,
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

    for entry in catalog() {
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

        match check(entry, &value, env) {
            Ok(p) => {
                parsed.insert(entry.name, p);
            }
            Err(e) if entry.secret && !validate_keys && !production => {
                report.warning(entry.name, Rule::Format, e.reason().to_owned());
            }
            Err(e) => {
                let rule = if e.reason().contains("in production") {
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
            if let Rotation::Days(period) = entry.rotation {
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

    if !report.is_ok() {
        return (report, None);
    }

    let int_of = |name: &str, default: u32| match parsed.get(name) {
        Some(Parsed::Int(n)) => *n,
        _ => default,
    };
    let rate_limit = RateLimitSettings {
        per_minute: int_of("RATE_LIMIT_PER_MINUTE", 50),
        burst: int_of("RATE_LIMIT_BURST", 10),
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
        rate_limit,
        business,
        proxy_url,
        evolution_api_url,
        secrets,
        texts,
    };
    (report, Some(settings))
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
