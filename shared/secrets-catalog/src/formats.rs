//! Owns the format checks and the typed values they produce: [`Environment`], [`Function`],
//! booleans, bounded integers, [`HttpUrl`], [`Origin`], [`HostPattern`], [`PhoneNumber`],
//! [`Email`], [`BusinessHours`], and the provider key shapes (OpenAI, Anthropic, Groq,
//! Google, LangSmith).
//!
//! Every check is "parse, don't validate": it returns a value that can only exist if the
//! text was valid. Errors are [`FormatError`]s built from fixed text and numbers only; they
//! never quote the input, so a secret that fails its check cannot leak through the message.
//!
//! The URL parser is deliberately small (scheme, optional userinfo, host, port, rest) instead
//! of a dependency: the crate must stay tiny for the wasm builds, and anything outside that
//! grammar (whitespace, empty hosts, bad ports) is refused rather than interpreted.

use core::fmt;

/// Why a value failed its format check. The text never contains the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    reason: String,
    /// Set when the value is well formed but not allowed in this environment (http in
    /// production), so the report can say which rule failed without parsing the text.
    environment: bool,
}

impl FormatError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            environment: false,
        }
    }

    fn for_environment(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            environment: true,
        }
    }

    /// The same error about item `n` of a list (`item 2 must use https in production`).
    fn item(self, n: usize) -> Self {
        Self {
            reason: format!("item {n} {}", self.reason),
            environment: self.environment,
        }
    }

    /// Whether the value is well formed but not allowed in the current environment.
    pub fn is_environment_rule(&self) -> bool {
        self.environment
    }

    /// The reason, e.g. `must start with gsk_ followed by exactly 52 letters or digits`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

fn err<T>(reason: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError::new(reason))
}

/// The deployment environment (`ENVIRONMENT`), which decides how strict validation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Environment {
    /// Local development: weak secrets and unverified key formats are warnings.
    Development,
    /// Pre-production: secrets are judged like production; loopback http is still allowed.
    Staging,
    /// Production: fails closed on every rule.
    Production,
}

impl Environment {
    /// All environments, in order of strictness.
    pub const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ];

    /// Parses `development`, `staging` or `production`, exactly and in lower case: an
    /// operator typo must surface as a problem, not silently select a laxer mode.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        match text {
            "development" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            _ => err("must be one of development, staging, production"),
        }
    }

    /// The name as written in `ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployable unit that reads configuration: the seven edge functions and the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// `webhook`: Evolution API webhook, the assistant itself.
    Webhook,
    /// `login`: issues a session JWT.
    Login,
    /// `logout`: revokes a session.
    Logout,
    /// `health`: liveness.
    Health,
    /// `health-readiness`: readiness (proxy and store reachable).
    HealthReadiness,
    /// `health-comprehensive`: every dependency; outbound probes for an admin only.
    HealthComprehensive,
    /// `health-secrets`: configuration summary without values, admin only.
    HealthSecrets,
    /// `pg-proxy`: the native Postgres proxy service.
    PgProxy,
}

impl Function {
    /// Every function, in catalog order.
    pub const ALL: [Function; 8] = [
        Function::Webhook,
        Function::Login,
        Function::Logout,
        Function::Health,
        Function::HealthReadiness,
        Function::HealthComprehensive,
        Function::HealthSecrets,
        Function::PgProxy,
    ];

    /// The seven edge functions (everything but the proxy).
    pub const EDGE: [Function; 7] = [
        Function::Webhook,
        Function::Login,
        Function::Logout,
        Function::Health,
        Function::HealthReadiness,
        Function::HealthComprehensive,
        Function::HealthSecrets,
    ];

    /// The function's name as used in manifests (`health-readiness`, `pg-proxy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Health => "health",
            Self::HealthReadiness => "health-readiness",
            Self::HealthComprehensive => "health-comprehensive",
            Self::HealthSecrets => "health-secrets",
            Self::PgProxy => "pg-proxy",
        }
    }

    /// The function with that manifest name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a boolean: `true`/`false`, `1`/`0`, `yes`/`no`, case-insensitively. Anything else
/// (including `on`/`off` and the empty string) is refused, so `DEBUG=flase` is a problem
/// rather than a silent `false`.
pub fn parse_bool(text: &str) -> Result<bool, FormatError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => err("must be true/false, 1/0 or yes/no"),
    }
}

/// Parses a decimal integer in `min..=max` (digits only: no sign, no spaces, no `_`).
pub fn parse_int(text: &str, min: u32, max: u32) -> Result<u32, FormatError> {
    let out_of_range = || FormatError::new(format!("must be a whole number from {min} to {max}"));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

/// Parses a non-negative decimal amount (`5`, `0.25`, `12.345678`) into millionths, so money
/// is counted in whole micro-units (no floating point in budgets): at most 6 decimals and at
/// most `max` whole units.
pub fn parse_decimal_micros(text: &str, max: u32) -> Result<u64, FormatError> {
    let bad = || {
        FormatError::new(format!(
            "must be a decimal number from 0 to {max} with at most 6 decimals (e.g. 2.50)"
        ))
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || whole.len() > 10
        || frac.len() > 6
        || (text.contains('.') && frac.is_empty())
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    if whole > u64::from(max) {
        return Err(bad());
    }
    let frac_micros: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    let micros = whole * 1_000_000 + frac_micros;
    if micros > u64::from(max) * 1_000_000 {
        return Err(bad());
    }
    Ok(micros)
}

/// The AI providers the webhook knows, in the order `AI_PROVIDERS` may name them.
pub const AI_PROVIDER_NAMES: [&str; 3] = ["openai", "groq", "anthropic"];

/// Parses `AI_PROVIDERS`: a comma list of distinct names from [`AI_PROVIDER_NAMES`], in the
/// order they are tried.
pub fn parse_provider_list(text: &str) -> Result<Vec<&'static str>, FormatError> {
    let mut out: Vec<&'static str> = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        let Some(name) = AI_PROVIDER_NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(item))
        else {
            return Err(FormatError::new("must be one of openai, groq, anthropic").item(i + 1));
        };
        if out.contains(name) {
            return Err(FormatError::new("names a provider twice").item(i + 1));
        }
        out.push(name);
    }
    Ok(out)
}

/// One model's price per million tokens, in micro-units of the budget's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    /// The model name as the provider reports it (`gpt-4o-mini`).
    pub model: String,
    /// Price of one million input tokens, in millionths of a currency unit.
    pub input_micros_per_mtok: u64,
    /// Price of one million output tokens, in millionths of a currency unit.
    pub output_micros_per_mtok: u64,
}

/// Parses `LLM_PRICES`: `model=input/output` entries separated by `;`, prices per million
/// tokens in the budget's currency (`gpt-4o-mini=0.15/0.60; claude-haiku-4-5=1/5`).
pub fn parse_price_list(text: &str) -> Result<Vec<ModelPrice>, FormatError> {
    let mut out = Vec::new();
    for (i, item) in text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let shape = || {
            FormatError::new("must be model=input/output (prices per million tokens)").item(i + 1)
        };
        let (model, prices) = item.split_once('=').ok_or_else(shape)?;
        let (input, output) = prices.split_once('/').ok_or_else(shape)?;
        let model = model.trim();
        check_identifier(model, 100).map_err(|e| e.item(i + 1))?;
        out.push(ModelPrice {
            model: model.to_owned(),
            input_micros_per_mtok: parse_decimal_micros(input.trim(), 1_000_000)
                .map_err(|e| e.item(i + 1))?,
            output_micros_per_mtok: parse_decimal_micros(output.trim(), 1_000_000)
                .map_err(|e| e.item(i + 1))?,
        });
    }
    if out.is_empty() {
        return err("must list at least one model=input/output entry");
    }
    Ok(out)
}

fn no_whitespace_or_controls(text: &str) -> Result<(), FormatError> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err("must not contain whitespace or control characters");
    }
    Ok(())
}

fn key_body(body: &str, allowed: impl Fn(char) -> bool) -> bool {
    body.chars().all(allowed)
}

/// OpenAI API key: `sk-proj-`, `sk-svcacct-`, `sk-admin-` or legacy `sk-`, then at least 32
/// of `[A-Za-z0-9_-]`, at most 512 characters in all. A value starting `sk-ant-` is an
/// Anthropic key put in the wrong variable and is refused with that reason.
pub fn check_openai_key(text: &str) -> Result<(), FormatError> {
    if text.starts_with("sk-ant-") {
        return err("looks like an Anthropic key (sk-ant-), not an OpenAI key");
    }
    let body = ["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"]
        .iter()
        .find_map(|p| text.strip_prefix(p));
    match body {
        Some(body)
            if body.len() >= 32
                && text.len() <= 512
                && key_body(body, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(())
        }
        _ => err(
            "must start with sk-, sk-proj- or sk-svcacct- followed by at least 32 of A-Z a-z 0-9 _ -",
        ),
    }
}

/// Anthropic API key: `sk-ant-` then at least 32 of `[A-Za-z0-9_-]`, at most 512 in all.
pub fn check_anthropic_key(text: &str) -> Result<(), FormatError> {
    match text.strip_prefix("sk-ant-") {
        Some(body)
            if body.len() >= 32
                && text.len() <= 512
                && key_body(body, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(())
        }
        _ => err("must start with sk-ant- followed by at least 32 of A-Z a-z 0-9 _ -"),
    }
}

/// Groq API key: `gsk_` then exactly 52 ASCII letters or digits.
pub fn check_groq_key(text: &str) -> Result<(), FormatError> {
    match text.strip_prefix("gsk_") {
        Some(body) if body.len() == 52 && key_body(body, |c| c.is_ascii_alphanumeric()) => Ok(()),
        _ => err("must start with gsk_ followed by exactly 52 letters or digits"),
    }
}

/// Google API key: `AIza` then exactly 35 of `[0-9A-Za-z_-]`.
pub fn check_google_key(text: &str) -> Result<(), FormatError> {
    match text.strip_prefix("AIza") {
        Some(body)
            if body.len() == 35
                && key_body(body, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(())
        }
        _ => err("must start with AIza followed by exactly 35 of A-Z a-z 0-9 _ -"),
    }
}

/// LangSmith API key: `lsv2_pt_` (personal) or `lsv2_sk_` (service), or legacy `ls__`, then at
/// least 32 of `[A-Za-z0-9_]`.
pub fn check_langsmith_key(text: &str) -> Result<(), FormatError> {
    let body = ["lsv2_pt_", "lsv2_sk_", "ls__"]
        .iter()
        .find_map(|p| text.strip_prefix(p));
    match body {
        Some(body)
            if body.len() >= 32
                && body.len() <= 256
                && key_body(body, |c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Ok(())
        }
        _ => err(
            "must start with lsv2_pt_, lsv2_sk_ or ls__ followed by at least 32 of A-Z a-z 0-9 _",
        ),
    }
}

/// An opaque API token issued by a third party (Evolution API): 16 to 512 printable ASCII
/// characters without whitespace. Shorter tokens are guessable; the service decides the rest.
pub fn check_api_token(text: &str) -> Result<(), FormatError> {
    if text.len() < 16 || text.len() > 512 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return err("must be 16 to 512 printable ASCII characters without spaces");
    }
    Ok(())
}

/// A model or identifier name: 1 to `max` of `[A-Za-z0-9._:/-]` (`gpt-4o-mini`,
/// `claude-3-5-sonnet-latest`, `accounts/fireworks/models/x`).
pub fn check_identifier(text: &str, max: usize) -> Result<(), FormatError> {
    if text.is_empty()
        || text.len() > max
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
    {
        return err(format!("must be 1 to {max} of A-Z a-z 0-9 . _ : / -"));
    }
    Ok(())
}

/// Display text (business name, project name): 1 to `max` characters, no control characters.
pub fn check_text(text: &str, max: usize) -> Result<(), FormatError> {
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return err(format!(
            "must be 1 to {max} characters without control characters"
        ));
    }
    Ok(())
}

/// The parts of an absolute URL this crate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    scheme: String,
    userinfo: Option<&'a str>,
    host: String,
    port: Option<u16>,
    /// Path, query and fragment, as written (`""` or starting with `/`, `?` or `#`).
    rest: &'a str,
}

fn parse_url(text: &str) -> Result<UrlParts<'_>, FormatError> {
    no_whitespace_or_controls(text)?;
    let Some((scheme, after)) = text.split_once("://") else {
        return err("must be an absolute URL (scheme://host)");
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return err("must be an absolute URL (scheme://host)");
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (Some(user), hostport),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return err("has a malformed IPv6 host");
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return err("has a malformed IPv6 host");
        }
        (
            format!("[{}]", inside.to_ascii_lowercase()),
            after.strip_prefix(':'),
        )
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (hostport.to_ascii_lowercase(), None),
        }
    };
    if !host.starts_with('[') {
        check_host_name(&host)?;
    }
    let port = match port {
        None => None,
        Some(p) => match parse_int(p, 1, 65_535) {
            Ok(n) => Some(n as u16),
            Err(_) => return err("has a port that is not a number from 1 to 65535"),
        },
    };
    Ok(UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        userinfo,
        host,
        port,
        rest,
    })
}

/// A DNS name or IPv4 address: dot-separated labels of `[a-z0-9-]`, not starting or ending
/// with `-`, at most 253 characters.
fn check_host_name(host: &str) -> Result<(), FormatError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        err("has no valid host name")
    }
}

/// Whether `host` (lower case, IPv6 in brackets) is this machine: `localhost`, `*.localhost`,
/// `127.x.x.x` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host.strip_prefix("127.").is_some_and(|rest| {
            rest.split('.').count() == 3
                && rest
                    .split('.')
                    .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The https rule shared by URLs and origins: https always; http only for a loopback host
/// and only outside production.
fn check_transport(scheme: &str, host: &str, env: Environment) -> Result<(), FormatError> {
    match scheme {
        "https" => Ok(()),
        "http" if env == Environment::Production => {
            Err(FormatError::for_environment("must use https in production"))
        }
        "http" if is_loopback(host) => Ok(()),
        "http" => err("must use https (http is allowed only for localhost outside production)"),
        _ => err("must be an http(s) URL"),
    }
}

/// An absolute `http(s)` URL with a host and no credentials, https unless it points at the
/// local machine outside production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    origin: Origin,
}

impl HttpUrl {
    /// Parses and applies the transport rule for `env`. Credentials in the URL
    /// (`https://user:pass@host`) are refused: secrets belong in their own variables, where
    /// they are typed, redacted and rotated.
    pub fn parse(text: &str, env: Environment) -> Result<Self, FormatError> {
        let parts = parse_url(text)?;
        check_transport(&parts.scheme, &parts.host, env)?;
        if parts.userinfo.is_some() {
            return err("must not carry credentials (user:password@)");
        }
        let origin = Origin::exact(&parts.scheme, &parts.host, parts.port);
        Ok(Self {
            text: text.to_owned(),
            origin,
        })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Scheme, host and port: what a browser sends as `Origin` for a page at this URL.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A browser origin allowed by CORS: exactly `scheme://host[:port]`, or an explicit suffix
/// pattern `https://*.example.app` that matches any subdomain of `example.app` (not
/// `example.app` itself). Stored normalised: lower case, default ports dropped, as browsers
/// send the `Origin` header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    text: String,
    /// `Some(".example.app")` for a pattern; `None` for an exact origin.
    suffix: Option<String>,
}

impl Origin {
    fn exact(scheme: &str, host: &str, port: Option<u16>) -> Self {
        let default = matches!((scheme, port), ("https", Some(443)) | ("http", Some(80)));
        let text = match port {
            Some(p) if !default => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        };
        Self { text, suffix: None }
    }

    /// Parses one origin for `env`. A trailing `/` is tolerated; any other path, a query or
    /// credentials are refused (an origin has none). Wildcards are allowed only as a leading
    /// `*.` label, only with https, and only over at least two labels (`*.example.app`, not
    /// `*.app`), so that no pattern admits a whole public suffix.
    pub fn parse(text: &str, env: Environment) -> Result<Self, FormatError> {
        if let Some(rest) = text.strip_prefix("https://*.") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let host = host.to_ascii_lowercase();
            check_host_name(&host)?;
            if host.split('.').count() < 2 {
                return err(
                    "a wildcard origin must cover at least two labels (https://*.example.app)",
                );
            }
            let port = match port {
                None => None,
                Some(p) => Some(parse_int(p, 1, 65_535).map_err(|_| {
                    FormatError::new("has a port that is not a number from 1 to 65535")
                })? as u16),
            };
            let base = Origin::exact("https", &host, port);
            let suffix = format!(".{host}");
            return Ok(Self {
                text: base.text.replacen("https://", "https://*.", 1),
                suffix: Some(suffix),
            });
        }
        if text.contains('*') {
            return err("a wildcard is allowed only as a leading *. label of an https origin");
        }
        let parts = parse_url(text)?;
        check_transport(&parts.scheme, &parts.host, env)?;
        if parts.userinfo.is_some() || !(parts.rest.is_empty() || parts.rest == "/") {
            return err("must be scheme://host[:port] without a path, query or credentials");
        }
        Ok(Self::exact(&parts.scheme, &parts.host, parts.port))
    }

    /// The origin as it is matched and echoed (`https://app.example.com`,
    /// `https://*.example.app`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this pattern is a `*.` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.suffix.is_some()
    }

    /// Whether a request's `Origin` header value is allowed by this entry. Comparison is
    /// ASCII case-insensitive; a wildcard needs at least one non-empty label before the
    /// suffix, on the same scheme and port.
    pub fn allows(&self, header: &str) -> bool {
        let header = header.to_ascii_lowercase();
        let Some(suffix) = &self.suffix else {
            return header == self.text;
        };
        // Pattern text: https://*.<host>[:port]; the header must be https://<label(s)><suffix>[:port].
        let port_part = self
            .text
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()));
        let (header_host, header_port) = match header.strip_prefix("https://") {
            Some(rest) => match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
            None => return false,
        };
        let want_port = port_part.map(|(_, p)| p);
        if header_port != want_port {
            return false;
        }
        match header_host.strip_suffix(suffix.as_str()) {
            Some(label) => check_host_name(label).is_ok(),
            None => false,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a comma-separated list of origins (`CORS_ORIGINS`); blanks around commas are
/// ignored, empty items are refused. The error names the position, never the item.
pub fn parse_origin_list(text: &str, env: Environment) -> Result<Vec<Origin>, FormatError> {
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            let item = item.trim();
            if item.is_empty() {
                return err(format!("item {} is empty", i + 1));
            }
            Origin::parse(item, env).map_err(|e| e.item(i + 1))
        })
        .collect()
}

/// An allowed `Host` header (`TRUSTED_HOSTS`): `api.example.com`, `localhost:3000`, or an
/// explicit suffix pattern `*.example.app`. A pattern without a port matches the host on any
/// port: Host-header attacks work through the name, and deployments differ in which port
/// appears.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses one pattern. A lone `*` is refused: "any host" is what an unset list means,
    /// and production requires the list.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let lower = text.to_ascii_lowercase();
        let (wildcard, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (
                h,
                Some(parse_int(p, 1, 65_535).map_err(|_| {
                    FormatError::new("has a port that is not a number from 1 to 65535")
                })? as u16),
            ),
            None => (rest, None),
        };
        check_host_name(host)?;
        if wildcard && host.split('.').count() < 2 {
            return err("a wildcard host must cover at least two labels (*.example.app)");
        }
        Ok(Self {
            host: host.to_owned(),
            wildcard,
            port,
        })
    }

    /// Whether a request's `Host` header is allowed by this pattern.
    pub fn allows(&self, header: &str) -> bool {
        let header = header.to_ascii_lowercase();
        // `[v6]:port` keeps its colons inside the brackets; otherwise the last `:` is the port.
        let split = match header.rfind(']') {
            Some(close) => header[close..].find(':').map(|i| close + i),
            None => header.rfind(':'),
        };
        let (host, port) = match split {
            Some(i) => match header[i + 1..].parse::<u16>() {
                Ok(p) => (&header[..i], Some(p)),
                Err(_) => return false,
            },
            None => (header.as_str(), None),
        };
        if let Some(want) = self.port {
            if port != Some(want) {
                return false;
            }
        }
        if self.wildcard {
            host.strip_suffix(&self.host)
                .and_then(|l| l.strip_suffix('.'))
                .is_some_and(|label| check_host_name(label).is_ok())
        } else {
            host == self.host
        }
    }
}

/// Parses a comma-separated list of host patterns (`TRUSTED_HOSTS`).
pub fn parse_host_list(text: &str) -> Result<Vec<HostPattern>, FormatError> {
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            let item = item.trim();
            if item.is_empty() {
                return err(format!("item {} is empty", i + 1));
            }
            HostPattern::parse(item).map_err(|e| e.item(i + 1))
        })
        .collect()
}

/// A trusted proxy (`TRUSTED_PROXIES`): one address (`10.0.0.7`, `::1`) or a network in CIDR
/// form (`10.0.0.0/8`, `2001:db8::/32`). IPv4-mapped IPv6 (`::ffff:10.0.0.7`) is the IPv4
/// address it maps, both here and in [`IpNet::contains`], so a dual-stack listener reporting
/// either form matches the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into its IPv4 address.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn masked(ip: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            std::net::IpAddr::V4((bits & mask).into())
        }
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            std::net::IpAddr::V6((bits & mask).into())
        }
    }
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`. Host bits set below the prefix are refused
    /// (`10.0.0.1/8` is almost always a typo for a single address or for `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr_text
            .parse()
            .map_err(|_| FormatError::new("is not an IP address or CIDR network"))?;
        let mapped = matches!(addr, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let addr = canonical_ip(addr);
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                let p = parse_int(p, 0, 128)
                    .map_err(|_| FormatError::new("has a prefix length that is not a number"))?;
                // A mapped network (`::ffff:10.0.0.0/104`) counts its prefix over 128 bits.
                let p = if mapped { p.saturating_sub(96) } else { p };
                if p > u32::from(max) {
                    return err(format!("has a prefix length over {max}"));
                }
                p as u8
            }
        };
        if masked(addr, prefix) != addr {
            return err("has address bits set beyond its prefix length");
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` (canonicalised: IPv4-mapped counts as IPv4) is inside this network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && masked(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Parses a comma-separated list of addresses and networks (`TRUSTED_PROXIES`).
pub fn parse_ip_list(text: &str) -> Result<Vec<IpNet>, FormatError> {
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            let item = item.trim();
            if item.is_empty() {
                return err(format!("item {} is empty", i + 1));
            }
            IpNet::parse(item).map_err(|e| e.item(i + 1))
        })
        .collect()
}

/// A Postgres connection URL (`postgres://` or `postgresql://`) with a host. It carries the
/// database password, so the catalog treats it as a secret.
pub fn check_postgres_url(text: &str) -> Result<(), FormatError> {
    let parts = parse_url(text)?;
    if parts.scheme != "postgres" && parts.scheme != "postgresql" {
        return err("must be a postgres:// or postgresql:// URL");
    }
    Ok(())
}

/// A Redis URL: `rediss://` (TLS); `redis://` only for a loopback host outside production.
pub fn check_redis_url(text: &str, env: Environment) -> Result<(), FormatError> {
    let parts = parse_url(text)?;
    match parts.scheme.as_str() {
        "rediss" => Ok(()),
        "redis" if env == Environment::Production => Err(FormatError::for_environment(
            "must use rediss:// (TLS) in production",
        )),
        "redis" if is_loopback(&parts.host) => Ok(()),
        "redis" => err(
            "must use rediss:// (TLS); redis:// is allowed only for localhost outside production",
        ),
        _ => err("must be a rediss:// URL"),
    }
}

/// A Sentry DSN: `https://<public key>@<host>/<numeric project id>`, with the same transport
/// rule as other URLs (a local fake Sentry on `http://127.0.0.1` outside production).
pub fn check_sentry_dsn(text: &str, env: Environment) -> Result<(), FormatError> {
    let parts = parse_url(text)?;
    check_transport(&parts.scheme, &parts.host, env)?;
    let key_ok = parts
        .userinfo
        .is_some_and(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'));
    let project = parts.rest.rsplit('/').next().unwrap_or("");
    if !key_ok || project.is_empty() || !project.bytes().all(|b| b.is_ascii_digit()) {
        return err("must be https://<public key>@<host>/<project id>");
    }
    Ok(())
}

/// A phone number as people write it: an optional leading `+`, then digits with spaces,
/// dashes, dots or parentheses between them; 10 to 15 digits (15 is the E.164 maximum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    digits: String,
    international: bool,
}

impl PhoneNumber {
    /// Parses the number.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let international = text.starts_with('+');
        let body = text.strip_prefix('+').unwrap_or(text);
        let allowed = body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        if !allowed || !(10..=15).contains(&digits.len()) {
            return err("must have 10 to 15 digits (an optional leading +, spaces, dashes, dots and parentheses allowed)");
        }
        Ok(Self {
            digits,
            international,
        })
    }

    /// The digits, with a leading `+` when the number was written internationally
    /// (`+5511987654321`): the form WhatsApp links and `tel:` URIs want.
    pub fn normalized(&self) -> String {
        if self.international {
            format!("+{}", self.digits)
        } else {
            self.digits.clone()
        }
    }
}

/// An email address, checked simply and sensibly: exactly one `@`; a local part of 1–64
/// characters without spaces; a domain of dot-separated host labels with at least one dot;
/// at most 254 characters. Quoted local parts and IP-literal domains are refused on purpose:
/// a business contact address never needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses the address.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bad = || FormatError::new("must be an email address like name@example.com");
        if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = text.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || local.contains(['"', '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\'])
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !domain.contains('.')
            || check_host_name(&domain.to_ascii_lowercase()).is_err()
        {
            return Err(bad());
        }
        Ok(Self(text.to_owned()))
    }

    /// The address as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Opening hours for each weekday (`BUSINESS_HOURS`).
///
/// Format: segments separated by `;`, each `<day or day range> <HH:MM>-<HH:MM>`, e.g.
/// `Mon-Fri 09:00-18:00; Sat 09:00-13:00`. Days are `Mon Tue Wed Thu Fri Sat Sun`
/// (case-insensitive); a range runs forwards within one week (`Fri-Mon` is refused). Times
/// are 24-hour, `00:00`–`23:59`, and `24:00` as a closing time; opening must be before
/// closing. A day not listed is closed; a day listed twice is refused, since the intent
/// (split shift or typo) cannot be told apart. A trailing `;` is tolerated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessHours {
    /// Monday first: `(open, close)` in minutes after midnight.
    week: [Option<(u16, u16)>; 7],
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl BusinessHours {
    /// Parses the format above.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut week = [None; 7];
        let segments: Vec<&str> = text.split(';').map(str::trim).collect();
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            let n = i + 1;
            if segment.is_empty() {
                if i == last && i > 0 {
                    continue;
                }
                return err(format!(
                    "segment {n} is empty (expected e.g. Mon-Fri 09:00-18:00)"
                ));
            }
            let mut words = segment.split_whitespace();
            let (Some(days), Some(times), None) = (words.next(), words.next(), words.next()) else {
                return err(format!(
                    "segment {n} must be '<days> <HH:MM>-<HH:MM>', e.g. Mon-Fri 09:00-18:00"
                ));
            };
            let (first, last_day) = match days.split_once('-') {
                Some((a, b)) => (day_index(a, n)?, day_index(b, n)?),
                None => (day_index(days, n)?, day_index(days, n)?),
            };
            if first > last_day {
                return err(format!("segment {n} has a day range that runs backwards"));
            }
            let (open, close) = times.split_once('-').ok_or_else(|| {
                FormatError::new(format!("segment {n} must give times as HH:MM-HH:MM"))
            })?;
            let open = minutes(open, false, n)?;
            let close = minutes(close, true, n)?;
            if open >= close {
                return err(format!("segment {n} opens at or after it closes"));
            }
            for day in &mut week[first..=last_day] {
                if day.is_some() {
                    return err(format!("segment {n} lists a day that is already listed"));
                }
                *day = Some((open, close));
            }
        }
        Ok(Self { week })
    }

    /// Opening and closing minute after midnight for weekday `day` (0 = Monday … 6 =
    /// Sunday); `None` when closed or `day` is out of range.
    pub fn on(&self, day: usize) -> Option<(u16, u16)> {
        self.week.get(day).copied().flatten()
    }

    /// Whether the business is open on weekday `day` (0 = Monday) at `minute` after
    /// midnight (opening minute included, closing minute excluded).
    pub fn is_open(&self, day: usize, minute: u16) -> bool {
        self.on(day)
            .is_some_and(|(open, close)| (open..close).contains(&minute))
    }
}

fn day_index(word: &str, segment: usize) -> Result<usize, FormatError> {
    let lower = word.to_ascii_lowercase();
    DAYS.iter().position(|d| *d == lower).ok_or_else(|| {
        FormatError::new(format!(
            "segment {segment} has a day that is not one of Mon Tue Wed Thu Fri Sat Sun"
        ))
    })
}

fn minutes(text: &str, closing: bool, segment: usize) -> Result<u16, FormatError> {
    let bad = || FormatError::new(format!("segment {segment} has a time that is not HH:MM"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h = parse_int(h, 0, 24).map_err(|_| bad())? as u16;
    let m = parse_int(m, 0, 59).map_err(|_| bad())? as u16;
    if h == 24 && !(closing && m == 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Environment::{Development as DEV, Production as PROD, Staging as STG};

    fn alnum(n: usize) -> String {
        "Zq7Lm2Xw9Rb4Tn8Kc3Vy6Hd1Pf5Gj0Ss"
            .chars()
            .cycle()
            .take(n)
            .collect()
    }

    #[test]
    fn decimal_amounts_are_counted_in_millionths() {
        assert_eq!(parse_decimal_micros("5", 100), Ok(5_000_000));
        assert_eq!(parse_decimal_micros("0.25", 100), Ok(250_000));
        assert_eq!(parse_decimal_micros("12.345678", 100), Ok(12_345_678));
        assert_eq!(parse_decimal_micros("0", 100), Ok(0));
        for bad in ["", "-1", "1.", ".5", "1.2345678", "101", "1,5", "1e3", " 1"] {
            assert!(parse_decimal_micros(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_lists_name_known_providers_once_in_order() {
        assert_eq!(
            parse_provider_list("anthropic, openai"),
            Ok(vec!["anthropic", "openai"])
        );
        assert_eq!(parse_provider_list("GROQ"), Ok(vec!["groq"]));
        assert!(parse_provider_list("openai,openai").is_err());
        assert!(parse_provider_list("openai,gemini").is_err());
        assert!(parse_provider_list("").is_err());
    }

    #[test]
    fn price_lists_give_input_and_output_prices_per_million_tokens() {
        let prices =
            parse_price_list("gpt-4o-mini=0.15/0.60; claude-haiku-4-5=1/5").unwrap_or_default();
        assert_eq!(prices.len(), 2);
        assert_eq!(prices[0].model, "gpt-4o-mini");
        assert_eq!(prices[0].input_micros_per_mtok, 150_000);
        assert_eq!(prices[1].output_micros_per_mtok, 5_000_000);
        for bad in ["gpt", "gpt=1", "gpt=1/x", "=1/2", ";"] {
            assert!(parse_price_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environments_are_exactly_development_staging_or_production() {
        assert_eq!(Environment::parse("production"), Ok(PROD));
        assert_eq!(Environment::parse("staging"), Ok(STG));
        assert_eq!(Environment::parse("development"), Ok(DEV));
        for bad in ["Production", "prod", "dev", "test", ""] {
            assert!(Environment::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn function_names_round_trip_and_unknown_names_are_none() {
        for f in Function::ALL {
            assert_eq!(Function::from_name(f.as_str()), Some(f));
        }
        assert_eq!(Function::from_name("health_readiness"), None);
    }

    #[test]
    fn booleans_accept_true_false_1_0_yes_no_in_any_case_and_nothing_else() {
        for yes in ["true", "TRUE", "True", "1", "yes", "YES"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "NO"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["on", "off", "flase", "2", "", "y"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_must_be_plain_digits_within_bounds() {
        assert_eq!(parse_int("50", 1, 100), Ok(50));
        assert_eq!(parse_int("1", 1, 100), Ok(1));
        assert_eq!(parse_int("100", 1, 100), Ok(100));
        for bad in [
            "0",
            "101",
            "-5",
            "+5",
            " 5",
            "5.0",
            "1_0",
            "",
            "99999999999",
        ] {
            assert!(parse_int(bad, 1, 100).is_err(), "{bad}");
        }
        assert_eq!(
            parse_int("0", 1, 100).unwrap_err().reason(),
            "must be a whole number from 1 to 100"
        );
    }

    #[test]
    fn openai_keys_take_the_sk_sk_proj_and_sk_svcacct_prefixes() {
        for prefix in ["sk-", "sk-proj-", "sk-svcacct-", "sk-admin-"] {
            assert!(
                check_openai_key(&format!("{prefix}{}", alnum(48))).is_ok(),
                "{prefix}"
            );
        }
        assert!(check_openai_key(&format!("sk-proj-{}_-{}", alnum(60), alnum(60))).is_ok());
    }

    #[test]
    fn openai_keys_with_another_prefix_a_short_body_or_odd_characters_are_refused() {
        for bad in [
            alnum(51),
            format!("pk-{}", alnum(48)),
            format!("sk-{}", alnum(20)),
            format!("sk-{} {}", alnum(24), alnum(24)),
            format!("sk-{}!", alnum(48)),
            format!("sk-{}", alnum(600)),
        ] {
            assert!(check_openai_key(&bad).is_err());
        }
        let anthropic = format!("sk-ant-api03-{}", alnum(80));
        assert!(check_openai_key(&anthropic)
            .unwrap_err()
            .reason()
            .contains("Anthropic"));
    }

    #[test]
    fn anthropic_keys_need_the_sk_ant_prefix_and_a_long_body() {
        assert!(
            check_anthropic_key(&format!("sk-ant-api03-{}-{}AA", alnum(60), alnum(30))).is_ok()
        );
        assert!(check_anthropic_key(&format!("sk-{}", alnum(90))).is_err());
        assert!(check_anthropic_key("sk-ant-short").is_err());
        assert!(check_anthropic_key(&format!("sk-ant-{}/", alnum(40))).is_err());
    }

    #[test]
    fn groq_keys_need_exactly_52_characters_after_the_prefix() {
        assert!(check_groq_key(&format!("gsk_{}", alnum(52))).is_ok());
        assert!(check_groq_key(&format!("gsk_{}", alnum(51))).is_err());
        assert!(check_groq_key(&format!("gsk_{}", alnum(53))).is_err());
        assert!(check_groq_key(&format!("gsk-{}", alnum(52))).is_err());
        assert!(check_groq_key(&format!("gsk_{}_", alnum(51))).is_err());
    }

    #[test]
    fn google_keys_need_aiza_and_exactly_35_url_safe_characters() {
        assert!(check_google_key(&format!("AIza{}-_", alnum(33))).is_ok());
        assert!(check_google_key(&format!("AIza{}", alnum(34))).is_err());
        assert!(check_google_key(&format!("AIza{}", alnum(36))).is_err());
        assert!(check_google_key(&format!("aiza{}", alnum(35))).is_err());
        assert!(check_google_key(&format!("AIza{}+", alnum(34))).is_err());
    }

    #[test]
    fn langsmith_keys_need_an_lsv2_or_legacy_prefix() {
        assert!(check_langsmith_key(&format!("lsv2_pt_{}_{}", alnum(32), alnum(10))).is_ok());
        assert!(check_langsmith_key(&format!("lsv2_sk_{}", alnum(40))).is_ok());
        assert!(check_langsmith_key(&format!("ls__{}", alnum(32))).is_ok());
        assert!(check_langsmith_key(&format!("lsv3_pt_{}", alnum(40))).is_err());
        assert!(check_langsmith_key("lsv2_pt_short").is_err());
    }

    #[test]
    fn third_party_tokens_need_16_printable_characters_without_spaces() {
        assert!(check_api_token("B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F").is_ok());
        assert!(check_api_token("short-token").is_err());
        assert!(check_api_token("has a space inside it ok").is_err());
        assert!(check_api_token("tab\tinside-a-long-token").is_err());
    }

    #[test]
    fn identifiers_and_display_text_have_bounded_length_and_charset() {
        assert!(check_identifier("gpt-4o-mini", 100).is_ok());
        assert!(check_identifier("tutor bot", 100).is_err());
        assert!(check_identifier(&"a".repeat(65), 64).is_err());
        assert!(check_text("Centro de Reforço Ágape", 100).is_ok());
        assert!(check_text("line\nbreak", 100).is_err());
        assert!(check_text(&"é".repeat(101), 100).is_err());
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        let url = HttpUrl::parse("https://proxy.example.com:8443/v1?x=1", PROD).unwrap();
        assert_eq!(url.origin().as_str(), "https://proxy.example.com:8443");
        assert_eq!(
            HttpUrl::parse("HTTPS://Proxy.Example.com:443/", PROD)
                .unwrap()
                .origin()
                .as_str(),
            "https://proxy.example.com"
        );
        for bad in [
            "proxy.example.com",
            "ftp://proxy.example.com",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "https://-bad-.example.com",
            "https://example.com:0",
            "https://example.com:70000",
            "https://example.com:http",
            "https://user:pass@example.com",
        ] {
            assert!(HttpUrl::parse(bad, DEV).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_must_be_https_in_production_and_http_is_only_for_localhost_elsewhere() {
        for local in [
            "http://localhost:8790",
            "http://127.0.0.1:3000/x",
            "http://[::1]:80",
        ] {
            assert!(HttpUrl::parse(local, DEV).is_ok(), "{local}");
            assert!(HttpUrl::parse(local, STG).is_ok(), "{local}");
            let e = HttpUrl::parse(local, PROD).unwrap_err();
            assert_eq!(e.reason(), "must use https in production");
        }
        assert!(HttpUrl::parse("http://proxy.example.com", DEV).is_err());
        assert!(HttpUrl::parse("http://127.0.0.1.evil.com", DEV).is_err());
        assert!(HttpUrl::parse("https://proxy.example.com", PROD).is_ok());
    }

    #[test]
    fn origins_are_normalised_and_match_the_origin_header_exactly() {
        let o = Origin::parse("https://App.Example.com:443/", PROD).unwrap();
        assert_eq!(o.as_str(), "https://app.example.com");
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!o.allows("https://app.example.com.evil.com"));
        assert!(!o.allows("http://app.example.com"));
        assert!(!o.allows("https://app.example.com:8443"));
        for bad in [
            "https://app.example.com/login",
            "https://app.example.com?x",
            "https://u@app.example.com",
        ] {
            assert!(Origin::parse(bad, DEV).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_origins_must_be_explicit_https_suffix_patterns() {
        let o = Origin::parse("https://*.example.app", DEV).unwrap();
        assert!(o.is_wildcard());
        assert!(o.allows("https://preview-42.example.app"));
        assert!(o.allows("https://a.b.example.app"));
        assert!(!o.allows("https://example.app"));
        assert!(!o.allows("https://evilexample.app"));
        assert!(!o.allows("http://x.example.app"));
        assert!(!o.allows("https://x.example.app:8443"));
        let with_port = Origin::parse("https://*.example.app:8443", PROD).unwrap();
        assert!(with_port.allows("https://x.example.app:8443"));
        assert!(!with_port.allows("https://x.example.app"));
        for bad in [
            "http://*.example.app",
            "https://*example.app",
            "https://a.*.example.app",
            "*",
            "https://*",
            "https://*.app",
        ] {
            assert!(Origin::parse(bad, DEV).is_err(), "{bad}");
        }
    }

    #[test]
    fn cors_origin_lists_are_comma_separated_and_every_item_obeys_the_environment() {
        let list =
            parse_origin_list(" https://a.example.com , https://*.example.app ", PROD).unwrap();
        assert_eq!(list.len(), 2);
        assert!(parse_origin_list("https://a.example.com,http://localhost:5173", DEV).is_ok());
        let e = parse_origin_list("https://a.example.com,http://localhost:5173", PROD).unwrap_err();
        assert_eq!(e.reason(), "item 2 must use https in production");
        assert!(parse_origin_list("https://a.example.com,,https://b.example.com", DEV).is_err());
    }

    #[test]
    fn trusted_hosts_match_names_ports_and_explicit_suffix_patterns() {
        let hosts = parse_host_list("api.example.com, localhost:3000, *.example.app").unwrap();
        assert!(hosts[0].allows("api.example.com"));
        assert!(hosts[0].allows("API.example.com:443"));
        assert!(!hosts[0].allows("api.example.com.evil.com"));
        assert!(hosts[1].allows("localhost:3000"));
        assert!(!hosts[1].allows("localhost:3001"));
        assert!(!hosts[1].allows("localhost"));
        assert!(hosts[2].allows("fn.example.app"));
        assert!(!hosts[2].allows("example.app"));
        assert!(!hosts[2].allows("evilexample.app"));
        for bad in ["*", "*.app", "exa mple.com", "host:99999", ""] {
            assert!(parse_host_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_redis_and_sentry_urls_have_their_own_schemes() {
        assert!(check_postgres_url("postgres://app:pw@db.internal:5432/app").is_ok());
        assert!(check_postgres_url("postgresql://db.internal/app?sslmode=require").is_ok());
        assert!(check_postgres_url("mysql://db.internal/app").is_err());
        assert!(check_postgres_url("postgres://:5432/app").is_err());
        assert!(check_redis_url("rediss://default:pw@cache.example.com:6380", PROD).is_ok());
        assert!(check_redis_url("redis://127.0.0.1:6379", DEV).is_ok());
        assert!(check_redis_url("redis://127.0.0.1:6379", PROD).is_err());
        assert!(check_redis_url("redis://cache.example.com", STG).is_err());
        assert!(check_sentry_dsn("https://abc123@o1.ingest.sentry.io/4506", PROD).is_ok());
        assert!(check_sentry_dsn("http://key@127.0.0.1:9000/1", DEV).is_ok());
        assert!(check_sentry_dsn("http://key@127.0.0.1:9000/1", PROD).is_err());
        assert!(check_sentry_dsn("https://o1.ingest.sentry.io/4506", PROD).is_err());
        assert!(check_sentry_dsn("https://abc@o1.ingest.sentry.io/project", PROD).is_err());
    }

    #[test]
    fn phone_numbers_need_10_to_15_digits_with_common_punctuation() {
        let p = PhoneNumber::parse("+55 (11) 98765-4321").unwrap();
        assert_eq!(p.normalized(), "+5511987654321");
        assert_eq!(
            PhoneNumber::parse("011.9876.5432").unwrap().normalized(),
            "01198765432"
        );
        for bad in [
            "12345-6789",
            "+55 11 9876 5432 1234 5",
            "call 11987654321",
            "11 98765+4321",
            "",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_need_one_at_a_dotted_domain_and_no_spaces() {
        for good in ["contato@centro.com.br", "first.last+tag@example.co"] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "no-at.example.com",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "a@localhost",
            "@example.com",
            "a@example..com",
            "a@-example.com",
            ".a@example.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn business_hours_follow_the_documented_day_range_and_time_format() {
        let h = BusinessHours::parse("Mon-Fri 09:00-18:00; Sat 09:00-13:00;").unwrap();
        assert_eq!(h.on(0), Some((540, 1080)));
        assert_eq!(h.on(4), Some((540, 1080)));
        assert_eq!(h.on(5), Some((540, 780)));
        assert_eq!(h.on(6), None);
        assert!(h.is_open(2, 540));
        assert!(!h.is_open(2, 1080));
        assert!(!h.is_open(6, 600));
        assert!(BusinessHours::parse("sun 10:00-24:00").is_ok());
    }

    #[test]
    fn business_hours_refuse_backwards_ranges_bad_times_and_days_listed_twice() {
        for bad in [
            "Fri-Mon 09:00-18:00",
            "Mon-Fri 18:00-09:00",
            "Mon-Fri 09:00-09:00",
            "Mon-Fri 9:00-18:00",
            "Mon-Fri 09:00-25:00",
            "Mon-Fri 24:00-24:00",
            "Mon-Fri 09:60-18:00",
            "Mon-Fri 09:00-18:00; Fri 19:00-20:00",
            "Monday 09:00-18:00",
            "Mon-Fri",
            "Mon-Fri 09:00 18:00",
            ";",
            "",
        ] {
            assert!(BusinessHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_errors_never_quote_the_input() {
        let value = "sk-proj-VALUE_MARKER_93xq";
        let errors = [
            check_openai_key(value),
            check_anthropic_key(value),
            check_groq_key(value),
            check_google_key(value),
            check_langsmith_key(value),
            check_postgres_url(value),
            check_redis_url(value, PROD),
            check_sentry_dsn(value, PROD),
            HttpUrl::parse(value, PROD).map(|_| ()),
            Origin::parse(value, PROD).map(|_| ()),
            parse_origin_list(value, PROD).map(|_| ()),
            parse_host_list(value).map(|_| ()),
            PhoneNumber::parse(value).map(|_| ()),
            Email::parse(value).map(|_| ()),
            BusinessHours::parse(value).map(|_| ()),
            parse_bool(value).map(|_| ()),
        ];
        for e in errors {
            let reason = e.unwrap_err().to_string();
            assert!(
                !reason.contains("MARKER") && !reason.contains("sk-proj-V"),
                "{reason}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_and_mapped_ipv4_is_ipv4() {
        let nets = parse_ip_list("10.0.0.0/8, ::1, 2001:db8::/32, ::ffff:192.0.2.7").unwrap();
        assert_eq!(nets.len(), 4);
        assert!(nets[0].contains("10.1.2.3".parse().unwrap()));
        assert!(nets[0].contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!nets[0].contains("11.0.0.1".parse().unwrap()));
        assert!(nets[1].contains("::1".parse().unwrap()));
        assert!(nets[2].contains("2001:db8:1::5".parse().unwrap()));
        assert!(!nets[2].contains("2001:db9::5".parse().unwrap()));
        assert!(
            nets[3].contains("192.0.2.7".parse().unwrap()),
            "mapped entry is IPv4"
        );
        assert_eq!(nets[3].to_string(), "192.0.2.7");
    }

    #[test]
    fn malformed_proxy_entries_are_refused_without_echoing_them() {
        for bad in [
            "not-an-ip",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::1/129",
            "10.0.0.1,",
            "1.2.3.4:80",
        ] {
            let e = parse_ip_list(bad).unwrap_err();
            assert!(!e.reason().contains(bad), "{bad}: {e}");
        }
    }
}
