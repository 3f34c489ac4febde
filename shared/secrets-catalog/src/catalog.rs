//! Owns the catalog: the static table of every managed variable and secret, with its
//! category, whether it is secret, who requires it where, its format, whether a strength
//! score applies and its rotation period.
//!
//! Requirement policy (the decisions behind the `required` columns):
//! * Secrets that **guard an endpoint** (`JWT_SECRET_KEY` for login/logout, `ADMIN_TOKEN` for
//!   the admin health routes) are required in every environment: without them the endpoint
//!   would either admit everyone or no one, and a development setup should find that out at
//!   start-up, not per request.
//! * The webhook has three authentication methods (Evolution's body `apikey` =
//!   `EVOLUTION_API_KEY`, a `WEBHOOK_TOKEN` header, Evolution's `jwt_key` JWT signed with
//!   `EVOLUTION_JWT_KEY`); any one is enough, so none is required on its own: a cross-entry
//!   rule (`validate`) requires at least one in staging and production. Development may run
//!   without any (every delivery is then refused with 401).
//! * Everything a function needs to reach another system (provider keys, proxy URL and key,
//!   Evolution API) is required in staging and production; development may run without the
//!   other system and fails at use.
//! * `TRUSTED_HOSTS` is required in production for every edge function: an unset list would
//!   accept any `Host`.
//! * The proxy requires `DATABASE_URL` and `PROXY_HMAC_KEY` everywhere: it cannot start
//!   without them.
//! * Every AI provider key is optional: the webhook tries the configured providers in the
//!   order of `AI_PROVIDERS` and answers with its built-in responder when none is configured,
//!   all failed or the daily budget is spent.

use crate::formats::{Environment, Function};

/// Which family a variable belongs to; decides its rotation period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// AI provider keys and model settings.
    AiProvider,
    /// Keys that sign, authenticate or authorise.
    Security,
    /// Connections to our own systems (proxy, database, cache).
    Infrastructure,
    /// Third-party services other than AI providers (WhatsApp gateway, monitoring, tracing).
    ExternalService,
    /// Behaviour of the functions (environment, debug, CORS, rate limits).
    Application,
    /// What the assistant tells customers about the centre.
    Business,
}

impl Category {
    /// Name for summaries (`ai_provider`, `security`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AiProvider => "ai_provider",
            Self::Security => "security",
            Self::Infrastructure => "infrastructure",
            Self::ExternalService => "external_service",
            Self::Application => "application",
            Self::Business => "business",
        }
    }
}

/// Rotation periods in days, by the kind of credential.
pub mod rotation_days {
    /// AI provider keys: billable and widely scoped, so the shortest period.
    pub const AI_PROVIDER: u16 = 90;
    /// Signing and authentication keys (JWT, HMAC, admin, webhook).
    pub const SECURITY: u16 = 180;
    /// Database and cache credentials: rotating them needs a coordinated restart.
    pub const DATABASE: u16 = 365;
    /// Third-party service credentials.
    pub const EXTERNAL_SERVICE: u16 = 120;
}

/// How often a value must be rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// At most this many days between rotations, checked against `<NAME>_ROTATED_AT`.
    Days(u16),
    /// Not rotated: a setting, not a credential.
    NotRotated,
}

/// Whether the 0–100 strength score is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strength {
    /// Score must reach `min`: secrets we generate ourselves.
    Scored {
        /// Minimum acceptable score.
        min: u8,
    },
    /// Issued by a third party (its format check applies) or not a secret.
    NotScored,
}

/// The format check of an entry; see `formats` for each rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `sk-`, `sk-proj-`, `sk-svcacct-` + ≥ 32 of `[A-Za-z0-9_-]`.
    OpenAiKey,
    /// `sk-ant-` + ≥ 32 of `[A-Za-z0-9_-]`.
    AnthropicKey,
    /// `AIza` + 35 of `[0-9A-Za-z_-]`.
    GoogleKey,
    /// `gsk_` + 52 alphanumerics.
    GroqKey,
    /// `lsv2_pt_` / `lsv2_sk_` / `ls__` + ≥ 32 of `[A-Za-z0-9_]`.
    LangSmithKey,
    /// Opaque third-party token: 16–512 printable ASCII, no spaces.
    ApiToken,
    /// At least `min_bytes` random bytes after decoding hex, base64 or raw text.
    KeyMaterial {
        /// Minimum decoded length.
        min_bytes: usize,
    },
    /// Hex only (what `proxy-auth` accepts), at least `min_bytes` decoded.
    HexKey {
        /// Minimum decoded length.
        min_bytes: usize,
    },
    /// `[A-Za-z0-9._:/-]`, 1 to `max` characters.
    Identifier {
        /// Maximum length.
        max: usize,
    },
    /// Display text without control characters, 1 to `max` characters.
    Text {
        /// Maximum length in characters.
        max: usize,
    },
    /// `http(s)` URL, https in production, no credentials.
    HttpUrl,
    /// `postgres://` or `postgresql://` URL.
    PostgresUrl,
    /// `rediss://` URL (`redis://` only for localhost outside production).
    RedisUrl,
    /// `https://<key>@<host>/<project id>`.
    SentryDsn,
    /// `development` | `staging` | `production`.
    Environment,
    /// `true/false`, `1/0`, `yes/no`.
    Bool,
    /// Whole number in `min..=max`.
    Integer {
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// Comma list of origins (`https://a.example`, `https://*.example.app`).
    OriginList,
    /// Comma list of host patterns (`api.example.com`, `*.example.app`).
    HostList,
    /// Comma list of IP addresses and CIDR networks (`10.0.0.0/8`, `::1`).
    IpList,
    /// Phone number with 10–15 digits.
    Phone,
    /// Email address.
    Email,
    /// `Mon-Fri 09:00-18:00; Sat 09:00-13:00`.
    BusinessHours,
    /// Non-negative decimal amount with at most 6 decimals, at most `max` whole units.
    Decimal {
        /// Largest allowed value in whole units.
        max: u32,
    },
    /// Comma list of distinct AI provider names (`openai`, `groq`, `anthropic`).
    ProviderList,
    /// `model=input/output; ...` prices per million tokens.
    PriceList,
}

/// Which side of the system reads a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The edge functions only.
    Edge,
    /// The Postgres proxy only: configuring it on an edge function is a warning, because it
    /// hands database credentials to code that must never hold them.
    Proxy,
    /// Both (the shared proxy signing key, the environment).
    Both,
}

/// Functions × environments in which an entry must be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// Functions that cannot work without the value.
    pub functions: &'static [Function],
    /// Environments in which those functions refuse to start without it.
    pub environments: &'static [Environment],
}

/// One managed variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Variable name, upper case (the Spin variable is its lower-case form).
    pub name: &'static str,
    /// Family.
    pub category: Category,
    /// Whether the value is a secret: redacted from logs, never summarised, rotated.
    pub secret: bool,
    /// What it is for.
    pub description: &'static str,
    /// Where it must be set; empty means optional everywhere.
    pub required: &'static [Need],
    /// Format check applied whenever the value is set.
    pub format: Format,
    /// Whether the strength score is enforced.
    pub strength: Strength,
    /// Rotation period.
    pub rotation: Rotation,
    /// Value used when unset (settings only; never for a secret).
    pub default: Option<&'static str>,
    /// Who reads it.
    pub scope: Scope,
}

impl Entry {
    /// Whether `function` must have this value in `env`.
    pub fn is_required(&self, function: Function, env: Environment) -> bool {
        self.required
            .iter()
            .any(|need| need.functions.contains(&function) && need.environments.contains(&env))
    }

    /// The companion variable holding the date of the last rotation, `<NAME>_ROTATED_AT`.
    pub fn rotated_at_name(&self) -> String {
        format!("{}_ROTATED_AT", self.name)
    }
}

use Environment::{Development as DEV, Production as PROD, Staging as STG};
use Function::*;

const ALL_ENVS: &[Environment] = &[DEV, STG, PROD];
const DEPLOYED: &[Environment] = &[STG, PROD];
/// Edge functions that call the Postgres proxy.
const PROXY_CALLERS: &[Function] = &[Webhook, Login, Logout, HealthReadiness, HealthComprehensive];
const SECURITY_SCORE: Strength = Strength::Scored {
    min: crate::strength::MIN_SECURITY_SCORE,
};
const AI: Rotation = Rotation::Days(rotation_days::AI_PROVIDER);
const SEC: Rotation = Rotation::Days(rotation_days::SECURITY);
const DB: Rotation = Rotation::Days(rotation_days::DATABASE);
const EXT: Rotation = Rotation::Days(rotation_days::EXTERNAL_SERVICE);

const fn secret(
    name: &'static str,
    category: Category,
    description: &'static str,
    required: &'static [Need],
    format: Format,
    strength: Strength,
    rotation: Rotation,
) -> Entry {
    Entry {
        name,
        category,
        secret: true,
        description,
        required,
        format,
        strength,
        rotation,
        default: None,
        scope: Scope::Edge,
    }
}

const fn setting(
    name: &'static str,
    category: Category,
    description: &'static str,
    required: &'static [Need],
    format: Format,
    default: Option<&'static str>,
) -> Entry {
    Entry {
        name,
        category,
        secret: false,
        description,
        required,
        format,
        strength: Strength::NotScored,
        rotation: Rotation::NotRotated,
        default,
        scope: Scope::Edge,
    }
}

const fn scoped(entry: Entry, scope: Scope) -> Entry {
    let mut entry = entry;
    entry.scope = scope;
    entry
}

const NONE: &[Need] = &[];

/// Every managed entry ([`catalog`]); a `const` so that [`READ_MASKS`] is computed from it at
/// compile time.
const CATALOG_ENTRIES: [Entry; 60] = [
    // AI providers
    secret(
        "OPENAI_API_KEY",
        Category::AiProvider,
        "OpenAI API key (provider `openai`: OpenAI-compatible chat completions at OPENAI_BASE_URL). Optional: without any provider key the webhook answers with its built-in responder.",
        NONE,
        Format::OpenAiKey,
        Strength::NotScored,
        AI,
    ),
    secret(
        "ANTHROPIC_API_KEY",
        Category::AiProvider,
        "Anthropic API key (provider `anthropic`: the Messages API at ANTHROPIC_BASE_URL); optional.",
        NONE,
        Format::AnthropicKey,
        Strength::NotScored,
        AI,
    ),
    secret(
        "GOOGLE_API_KEY",
        Category::AiProvider,
        "Google AI (Gemini) API key; optional fallback provider.",
        NONE,
        Format::GoogleKey,
        Strength::NotScored,
        AI,
    ),
    secret(
        "GROQ_API_KEY",
        Category::AiProvider,
        "Groq API key (provider `groq`: Groq's OpenAI-compatible endpoint, through the same client as `openai`); optional.",
        NONE,
        Format::GroqKey,
        Strength::NotScored,
        AI,
    ),
    setting(
        "OPENAI_MODEL",
        Category::AiProvider,
        "OpenAI model used for replies.",
        NONE,
        Format::Identifier { max: 100 },
        Some("gpt-4o-mini"),
    ),
    setting(
        "ANTHROPIC_MODEL",
        Category::AiProvider,
        "Anthropic model used for replies.",
        NONE,
        Format::Identifier { max: 100 },
        Some("claude-haiku-4-5"),
    ),
    setting(
        "GROQ_MODEL",
        Category::AiProvider,
        "Groq model used for replies.",
        NONE,
        Format::Identifier { max: 100 },
        Some("llama-3.1-8b-instant"),
    ),
    setting(
        "OPENAI_BASE_URL",
        Category::AiProvider,
        "Base URL of the OpenAI-compatible API (`/chat/completions` is appended); another compatible service or a test fake can stand in.",
        NONE,
        Format::HttpUrl,
        Some("https://api.openai.com/v1"),
    ),
    setting(
        "ANTHROPIC_BASE_URL",
        Category::AiProvider,
        "Base URL of the Anthropic API (`/v1/messages` is appended).",
        NONE,
        Format::HttpUrl,
        Some("https://api.anthropic.com"),
    ),
    setting(
        "AI_PROVIDERS",
        Category::AiProvider,
        "Providers to try, in order (openai, groq, anthropic); unset means every provider whose key is set, in that order. Naming a provider without its key is a problem.",
        NONE,
        Format::ProviderList,
        None,
    ),
    setting(
        "AI_TIMEOUT_MS",
        Category::AiProvider,
        "Deadline of one provider call in milliseconds; on timeout the next provider is tried.",
        NONE,
        Format::Integer { min: 500, max: 60_000 },
        Some("10000"),
    ),
    setting(
        "LLM_DAILY_BUDGET",
        Category::AiProvider,
        "Spending cap per UTC day in the providers' currency (e.g. 5.00), counted from token usage and LLM_PRICES; past it the built-in responder answers. Unset: no cap. 0: never call a provider.",
        NONE,
        Format::Decimal { max: 1_000_000 },
        None,
    ),
    setting(
        "LLM_PRICES",
        Category::AiProvider,
        "Prices per million tokens, `model=input/output` separated by `;`. A model not listed is charged at the highest listed price.",
        NONE,
        Format::PriceList,
        Some("gpt-4o-mini=0.15/0.60; claude-haiku-4-5=1/5; llama-3.1-8b-instant=0.05/0.08"),
    ),
    // Security
    secret(
        "JWT_SECRET_KEY",
        Category::Security,
        "HS256 key signing session JWTs; at least 32 random bytes.",
        &[Need { functions: &[Login, Logout], environments: ALL_ENVS }],
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    secret(
        "JWT_SECRET_KEY_PREVIOUS",
        Category::Security,
        "The JWT key being rotated out: tokens it signed still verify (never used to sign), so the key can rotate without logging everyone out. Remove it once its tokens have expired.",
        NONE,
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    secret(
        "SECRET_KEY",
        Category::Security,
        "Application secret for cookie and CSRF token signing; separate from JWT_SECRET_KEY so rotating one does not invalidate the other.",
        &[Need { functions: &[Login, Logout], environments: DEPLOYED }],
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    scoped(
        secret(
            "PROXY_HMAC_KEY",
            Category::Security,
            "HMAC-SHA256 key signing edge-to-proxy requests (hex, openssl rand -hex 32).",
            &[
                Need { functions: PROXY_CALLERS, environments: DEPLOYED },
                Need { functions: &[PgProxy], environments: ALL_ENVS },
            ],
            Format::HexKey { min_bytes: 32 },
            SECURITY_SCORE,
            SEC,
        ),
        Scope::Both,
    ),
    scoped(
        secret(
            "PROXY_HMAC_KEY_PREVIOUS",
            Category::Security,
            "Previous proxy HMAC key, still accepted by the proxy during a rotation.",
            NONE,
            Format::HexKey { min_bytes: 32 },
            SECURITY_SCORE,
            SEC,
        ),
        Scope::Both,
    ),
    secret(
        "ADMIN_TOKEN",
        Category::Security,
        "Bearer token for the admin-only health routes.",
        &[Need {
            functions: &[HealthComprehensive, HealthSecrets],
            environments: ALL_ENVS,
        }],
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    secret(
        "WEBHOOK_TOKEN",
        Category::Security,
        "Static token Evolution sends in the instance webhook's `headers` (`Authorization: Bearer <token>` or `X-Webhook-Token`); one of the webhook's three authentication methods.",
        NONE,
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    secret(
        "EVOLUTION_JWT_KEY",
        Category::Security,
        "The `jwt_key` set in the instance webhook's `headers`: Evolution then sends `Authorization: Bearer <HS256 JWT>` valid 10 minutes; one of the webhook's three authentication methods.",
        NONE,
        Format::KeyMaterial { min_bytes: 32 },
        SECURITY_SCORE,
        SEC,
    ),
    // Infrastructure
    setting(
        "PROXY_URL",
        Category::Infrastructure,
        "Base URL of the Postgres proxy (services/pg-proxy).",
        &[Need { functions: PROXY_CALLERS, environments: DEPLOYED }],
        Format::HttpUrl,
        None,
    ),
    scoped(
        secret(
            "DATABASE_URL",
            Category::Infrastructure,
            "Postgres connection URL with credentials; proxy side only, never given to an edge function.",
            &[Need { functions: &[PgProxy], environments: ALL_ENVS }],
            Format::PostgresUrl,
            Strength::NotScored,
            DB,
        ),
        Scope::Proxy,
    ),
    secret(
        "REDIS_URL",
        Category::Infrastructure,
        "Redis URL with credentials, for deployments that keep counters outside the platform store.",
        NONE,
        Format::RedisUrl,
        Strength::NotScored,
        DB,
    ),
    scoped(
        setting(
            "DB_POOL_MAX_SIZE",
            Category::Infrastructure,
            "Maximum Postgres connections held by the proxy.",
            NONE,
            Format::Integer { min: 1, max: 1000 },
            None,
        ),
        Scope::Proxy,
    ),
    // External services
    secret(
        "EVOLUTION_API_KEY",
        Category::ExternalService,
        "API key for sending WhatsApp messages through the Evolution API (header `apikey`); also accepted as the `apikey` field of webhook bodies (authentication method a).",
        &[Need { functions: &[Webhook], environments: DEPLOYED }],
        Format::ApiToken,
        Strength::NotScored,
        EXT,
    ),
    setting(
        "EVOLUTION_API_URL",
        Category::ExternalService,
        "Base URL of the Evolution API server.",
        &[Need { functions: &[Webhook], environments: DEPLOYED }],
        Format::HttpUrl,
        None,
    ),
    setting(
        "EVOLUTION_INSTANCE",
        Category::ExternalService,
        "Evolution API instance (WhatsApp number) the assistant speaks through.",
        &[Need { functions: &[Webhook], environments: DEPLOYED }],
        Format::Identifier { max: 64 },
        None,
    ),
    secret(
        "SENTRY_DSN",
        Category::ExternalService,
        "Sentry DSN; unexpected errors are reported when set.",
        NONE,
        Format::SentryDsn,
        Strength::NotScored,
        EXT,
    ),
    secret(
        "LANGSMITH_API_KEY",
        Category::ExternalService,
        "LangSmith API key for tracing model calls; tracing is off when unset.",
        NONE,
        Format::LangSmithKey,
        Strength::NotScored,
        EXT,
    ),
    setting(
        "LANGSMITH_PROJECT",
        Category::ExternalService,
        "LangSmith project receiving the traces.",
        NONE,
        Format::Text { max: 100 },
        None,
    ),
    // Application settings
    scoped(
        setting(
            "ENVIRONMENT",
            Category::Application,
            "development | staging | production; decides how strictly everything else is judged. Unset means production: a forgotten variable must never relax the rules (scripts/dev sets development).",
            NONE,
            Format::Environment,
            Some("production"),
        ),
        Scope::Both,
    ),
    setting(
        "DEBUG",
        Category::Application,
        "Verbose errors and debug routes; must be false in production.",
        NONE,
        Format::Bool,
        Some("false"),
    ),
    setting(
        "VALIDATE_API_KEYS",
        Category::Application,
        "Whether a key with a bad format is a problem (true) or a warning (false, development only); must be true in production.",
        NONE,
        Format::Bool,
        Some("true"),
    ),
    setting(
        "FRONTEND_URL",
        Category::Application,
        "URL of the web frontend; its origin is always allowed by CORS.",
        &[Need { functions: &[Login, Logout], environments: DEPLOYED }],
        Format::HttpUrl,
        None,
    ),
    setting(
        "CORS_ORIGINS",
        Category::Application,
        "Extra allowed origins, comma separated; https://*.example.app patterns only when written explicitly.",
        NONE,
        Format::OriginList,
        None,
    ),
    setting(
        "TRUSTED_HOSTS",
        Category::Application,
        "Allowed Host headers, comma separated (api.example.com, *.example.app).",
        &[Need { functions: &Function::EDGE, environments: &[PROD] }],
        Format::HostList,
        None,
    ),
    setting(
        "TRUSTED_PROXIES",
        Category::Application,
        "Peers whose X-Forwarded-For is believed, comma separated addresses or CIDR networks (10.0.0.0/8, ::1); unset means the peer address is the client.",
        NONE,
        Format::IpList,
        None,
    ),
    setting(
        "JWT_EXPIRATION_MINUTES",
        Category::Application,
        "Absolute lifetime of a staff session token, in minutes.",
        NONE,
        Format::Integer { min: 1, max: 1440 },
        Some("60"),
    ),
    setting(
        "SESSION_IDLE_MINUTES",
        Category::Application,
        "A session unused for this many minutes ends (sliding; refreshed at most once a minute).",
        NONE,
        Format::Integer { min: 1, max: 1440 },
        Some("30"),
    ),
    setting(
        "JWT_ISSUER",
        Category::Application,
        "`iss` of the session tokens this deployment issues and accepts.",
        NONE,
        Format::Identifier { max: 100 },
        Some("assistant-edge"),
    ),
    setting(
        "JWT_AUDIENCE",
        Category::Application,
        "`aud` of the session tokens this deployment issues and accepts.",
        NONE,
        Format::Identifier { max: 100 },
        Some("assistant-edge-dashboard"),
    ),
    setting(
        "LOGIN_MAX_FAILURES_PER_USER",
        Category::Application,
        "Failed logins per username within the lockout window before further attempts get 429 without a password check.",
        NONE,
        Format::Integer { min: 1, max: 1000 },
        Some("5"),
    ),
    setting(
        "LOGIN_MAX_FAILURES_PER_IP",
        Category::Application,
        "Failed logins per client address within the lockout window before further attempts get 429.",
        NONE,
        Format::Integer { min: 1, max: 10_000 },
        Some("20"),
    ),
    setting(
        "LOGIN_LOCKOUT_MINUTES",
        Category::Application,
        "Length of the window in which failed logins are counted (and of a lockout), minutes.",
        NONE,
        Format::Integer { min: 1, max: 1440 },
        Some("15"),
    ),
    setting(
        "WEBHOOK_SENDER_PER_MINUTE",
        Category::Application,
        "Messages per minute one WhatsApp sender gets answered by the assistant; beyond it messages are stored, not answered, and the sender gets one \"please wait\" per window.",
        NONE,
        Format::Integer { min: 1, max: 10_000 },
        Some("50"),
    ),
    setting(
        "WEBHOOK_SENDER_BURST",
        Category::Application,
        "Messages one sender may send at once before WEBHOOK_SENDER_PER_MINUTE applies.",
        NONE,
        Format::Integer { min: 1, max: 1_000 },
        Some("10"),
    ),
    setting(
        "HANDOVER_MINUTES",
        Category::Application,
        "After a contact asks for a person, the assistant stays silent for that contact this many minutes.",
        NONE,
        Format::Integer { min: 1, max: 10_080 },
        Some("120"),
    ),
    setting(
        "REPLY_MAX_ATTEMPTS",
        Category::Application,
        "Attempts to answer one message (each a claim of it) before it is marked failed with an audit event.",
        NONE,
        Format::Integer { min: 1, max: 20 },
        Some("5"),
    ),
    setting(
        "HISTORY_MESSAGES",
        Category::Application,
        "How many earlier messages of the conversation the assistant is given as context.",
        NONE,
        Format::Integer { min: 1, max: 50 },
        Some("12"),
    ),
    setting(
        "RATE_LIMIT_PER_MINUTE",
        Category::Application,
        "Sustained requests per minute per client.",
        NONE,
        Format::Integer { min: 1, max: 100_000 },
        Some("50"),
    ),
    setting(
        "RATE_LIMIT_BURST",
        Category::Application,
        "Requests a client may send at once before the per-minute rate applies.",
        NONE,
        Format::Integer { min: 1, max: 10_000 },
        Some("10"),
    ),
    setting(
        "ENABLE_RATE_LIMITING",
        Category::Application,
        "Whether rate limiting is applied; turning it off in production is a warning.",
        NONE,
        Format::Bool,
        Some("true"),
    ),
    // Business
    setting(
        "BUSINESS_NAME",
        Category::Business,
        "Name of the tutoring centre, as the assistant introduces it.",
        &[Need { functions: &[Webhook], environments: DEPLOYED }],
        Format::Text { max: 100 },
        None,
    ),
    setting(
        "BUSINESS_PHONE",
        Category::Business,
        "Contact phone number given to customers.",
        NONE,
        Format::Phone,
        None,
    ),
    setting(
        "BUSINESS_EMAIL",
        Category::Business,
        "Contact email address given to customers.",
        NONE,
        Format::Email,
        None,
    ),
    setting(
        "BUSINESS_HOURS",
        Category::Business,
        "Opening hours, e.g. 'Mon-Fri 09:00-18:00; Sat 09:00-13:00'.",
        NONE,
        Format::BusinessHours,
        None,
    ),
    setting(
        "BUSINESS_ADDRESS",
        Category::Business,
        "Street address given to customers.",
        NONE,
        Format::Text { max: 200 },
        None,
    ),
    setting(
        "BUSINESS_PRICES",
        Category::Business,
        "Prices as the assistant may quote them, e.g. 'Individual class R$ 80/h; monthly plan R$ 600'.",
        NONE,
        Format::Text { max: 500 },
        None,
    ),
    setting(
        "BUSINESS_TONE",
        Category::Business,
        "How the assistant should sound, e.g. 'warm, concise, in Brazilian Portuguese'.",
        NONE,
        Format::Text { max: 200 },
        Some("warm, concise and professional"),
    ),
];

static CATALOG: [Entry; 60] = CATALOG_ENTRIES;

/// Settings every edge function reads: how it runs, which hosts and origins it serves, whose
/// forwarded addresses it believes, how it limits and where it reports errors.
const EDGE_COMMON: &[&str] = &[
    "ENVIRONMENT",
    "DEBUG",
    "VALIDATE_API_KEYS",
    "FRONTEND_URL",
    "CORS_ORIGINS",
    "TRUSTED_HOSTS",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_BURST",
    "ENABLE_RATE_LIMITING",
    "SENTRY_DSN",
];

/// Optional entries a function reads beyond [`EDGE_COMMON`] and what it requires.
const OPTIONAL_READS: &[(&str, &[Function])] = &[
    // The session check: every function with a protected route.
    ("JWT_SECRET_KEY", &[HealthComprehensive, HealthSecrets]),
    (
        "JWT_SECRET_KEY_PREVIOUS",
        &[Login, Logout, HealthComprehensive, HealthSecrets],
    ),
    (
        "SESSION_IDLE_MINUTES",
        &[Login, Logout, HealthComprehensive, HealthSecrets],
    ),
    (
        "JWT_ISSUER",
        &[Login, Logout, HealthComprehensive, HealthSecrets],
    ),
    (
        "JWT_AUDIENCE",
        &[Login, Logout, HealthComprehensive, HealthSecrets],
    ),
    ("JWT_EXPIRATION_MINUTES", &[Login]),
    ("LOGIN_MAX_FAILURES_PER_USER", &[Login]),
    ("LOGIN_MAX_FAILURES_PER_IP", &[Login]),
    ("LOGIN_LOCKOUT_MINUTES", &[Login]),
    // The providers: the webhook calls them; health-comprehensive reports whether each key is
    // configured and well formed, and (for an admin, `?probe=true`) lists models at the base URL.
    ("ANTHROPIC_API_KEY", &[Webhook, HealthComprehensive]),
    ("GROQ_API_KEY", &[Webhook, HealthComprehensive]),
    ("GOOGLE_API_KEY", &[HealthComprehensive]),
    ("OPENAI_API_KEY", &[Webhook, HealthComprehensive]),
    ("OPENAI_MODEL", &[Webhook]),
    ("ANTHROPIC_MODEL", &[Webhook]),
    ("GROQ_MODEL", &[Webhook]),
    ("OPENAI_BASE_URL", &[Webhook, HealthComprehensive]),
    ("ANTHROPIC_BASE_URL", &[Webhook, HealthComprehensive]),
    // Evolution (required by the webhook): health-comprehensive reports whether it is
    // configured and, for an admin, asks for the instance's connection state.
    ("EVOLUTION_API_KEY", &[HealthComprehensive]),
    ("EVOLUTION_API_URL", &[HealthComprehensive]),
    ("EVOLUTION_INSTANCE", &[HealthComprehensive]),
    ("AI_PROVIDERS", &[Webhook]),
    ("AI_TIMEOUT_MS", &[Webhook]),
    ("LLM_DAILY_BUDGET", &[Webhook]),
    ("LLM_PRICES", &[Webhook]),
    // The webhook's authentication methods (at least one in staging and production).
    ("WEBHOOK_TOKEN", &[Webhook]),
    ("EVOLUTION_JWT_KEY", &[Webhook]),
    ("WEBHOOK_SENDER_PER_MINUTE", &[Webhook]),
    ("WEBHOOK_SENDER_BURST", &[Webhook]),
    ("HANDOVER_MINUTES", &[Webhook]),
    ("REPLY_MAX_ATTEMPTS", &[Webhook]),
    ("HISTORY_MESSAGES", &[Webhook]),
    ("BUSINESS_PHONE", &[Webhook]),
    ("BUSINESS_EMAIL", &[Webhook]),
    ("BUSINESS_HOURS", &[Webhook]),
    ("BUSINESS_ADDRESS", &[Webhook]),
    ("BUSINESS_PRICES", &[Webhook]),
    ("BUSINESS_TONE", &[Webhook]),
];

impl Entry {
    /// Whether `function` reads this entry. An edge function reads the common settings, what
    /// it requires in any environment and its optional extras; `health-secrets` reports on
    /// every edge entry; the proxy reads what is scoped to it. The Spin manifest declares
    /// exactly these variables per component (checked by the manifest test), and the edge
    /// core reads nothing else: each read is a host call on every Spin request.
    ///
    /// Hot paths go through [`reads`], which answers from the table the compiler computed
    /// with these same rules.
    pub fn read_by(&self, function: Function) -> bool {
        entry_read_by(self, function)
    }
}

/// Byte equality usable in `const` evaluation.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn has_function(list: &[Function], function: Function) -> bool {
    let mut i = 0;
    while i < list.len() {
        if list[i] as u8 == function as u8 {
            return true;
        }
        i += 1;
    }
    false
}

const fn required_by(entry: &Entry, function: Function) -> bool {
    let mut i = 0;
    while i < entry.required.len() {
        if has_function(entry.required[i].functions, function) {
            return true;
        }
        i += 1;
    }
    false
}

/// The rules of [`Entry::read_by`], in a form the compiler evaluates ([`READ_MASKS`]).
const fn entry_read_by(entry: &Entry, function: Function) -> bool {
    match function {
        Function::PgProxy => !matches!(entry.scope, Scope::Edge) || required_by(entry, function),
        Function::HealthSecrets => !matches!(entry.scope, Scope::Proxy),
        _ => {
            let mut i = 0;
            while i < EDGE_COMMON.len() {
                if str_eq(EDGE_COMMON[i], entry.name) {
                    return true;
                }
                i += 1;
            }
            if required_by(entry, function) {
                return true;
            }
            let mut i = 0;
            while i < OPTIONAL_READS.len() {
                let (name, fns) = OPTIONAL_READS[i];
                if str_eq(name, entry.name) && has_function(fns, function) {
                    return true;
                }
                i += 1;
            }
            false
        }
    }
}

/// For each catalog entry, which functions read it: bit `f as u8` for function `f`. Evaluated
/// by the compiler: `reads` runs on every request on Spin (each request is a new instance),
/// where comparing names at run time was a fifth of a health request's cost.
static READ_MASKS: [u16; CATALOG_ENTRIES.len()] = {
    let mut masks = [0u16; CATALOG_ENTRIES.len()];
    let mut i = 0;
    while i < CATALOG_ENTRIES.len() {
        let mut f = 0;
        while f < Function::ALL.len() {
            if entry_read_by(&CATALOG_ENTRIES[i], Function::ALL[f]) {
                masks[i] |= 1 << (Function::ALL[f] as u8);
            }
            f += 1;
        }
        i += 1;
    }
    masks
};

/// The entries `function` reads, in catalog order.
pub fn reads(function: Function) -> impl Iterator<Item = &'static Entry> {
    let bit = 1u16 << (function as u8);
    CATALOG
        .iter()
        .zip(READ_MASKS.iter())
        .filter(move |(_, mask)| *mask & bit != 0)
        .map(|(entry, _)| entry)
}

/// Functions that judge rotation (due dates, overdue days) and so read the rotation companions
/// of the secrets they read. Every other function leaves them alone: rotation never decides
/// whether a function may serve, and on Spin every variable read is a host call (once per
/// instance).
const ROTATION_READERS: &[Function] = &[HealthComprehensive, HealthSecrets];

/// The rotated entries whose companion `<NAME>_ROTATED_AT` ([`Entry::rotated_at_name`])
/// `function` reads, in catalog order: every secret with a rotation period that it reads, for
/// the functions that judge rotation (`health-comprehensive`, `health-secrets`); none for the
/// others. A Spin component declares these companions beside the entries of [`reads`].
pub fn rotation_reads(function: Function) -> impl Iterator<Item = &'static Entry> {
    let judges = ROTATION_READERS.contains(&function);
    reads(function).filter(move |e| judges && matches!(e.rotation, Rotation::Days(_)))
}

/// The whole catalog, in a stable order (by category, then as listed above).
pub fn catalog() -> &'static [Entry] {
    &CATALOG
}

/// The entry named `name`, if managed.
pub fn entry(name: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_category(category: Category) -> usize {
        catalog().iter().filter(|e| e.category == category).count()
    }

    #[test]
    fn the_compiled_read_table_agrees_with_the_rules_for_every_entry_and_function() {
        let mut read = 0;
        for entry in catalog() {
            for f in Function::ALL {
                assert_eq!(
                    reads(f).any(|e| e.name == entry.name),
                    entry.read_by(f),
                    "{} / {f}",
                    entry.name
                );
                read += usize::from(entry.read_by(f));
            }
        }
        assert!(read > catalog().len(), "the table cannot be empty");
    }

    #[test]
    fn the_catalog_has_at_least_22_entries_in_the_four_managed_categories() {
        let managed = [
            Category::AiProvider,
            Category::Security,
            Category::Infrastructure,
            Category::ExternalService,
        ];
        let total: usize = managed.iter().map(|c| in_category(*c)).sum();
        assert!(total >= 22, "{total}");
        for c in managed {
            assert!(in_category(c) >= 3, "{c:?}");
        }
        assert!(catalog().len() >= 22 + 9);
    }

    #[test]
    fn every_secret_has_the_rotation_period_of_its_category_and_no_setting_rotates() {
        for e in catalog() {
            let expected = match (e.secret, e.category) {
                (false, _) => Rotation::NotRotated,
                (true, Category::AiProvider) => Rotation::Days(90),
                (true, Category::Security) => Rotation::Days(180),
                (true, Category::Infrastructure) => Rotation::Days(365),
                (true, Category::ExternalService) => Rotation::Days(120),
                (true, c) => panic!("{} is a secret in category {c:?}", e.name),
            };
            assert_eq!(e.rotation, expected, "{}", e.name);
        }
    }

    #[test]
    fn names_are_unique_upper_case_and_every_entry_is_described() {
        for (i, e) in catalog().iter().enumerate() {
            assert!(
                e.name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                e.name
            );
            assert!(!e.description.is_empty(), "{}", e.name);
            assert!(
                catalog()[i + 1..].iter().all(|o| o.name != e.name),
                "{} twice",
                e.name
            );
            assert_eq!(entry(e.name), Some(e));
        }
    }

    #[test]
    fn no_secret_has_a_default_value() {
        for e in catalog().iter().filter(|e| e.secret) {
            assert_eq!(e.default, None, "{}", e.name);
        }
    }

    #[test]
    fn security_secrets_we_generate_are_scored_and_need_32_bytes() {
        for name in [
            "JWT_SECRET_KEY",
            "SECRET_KEY",
            "PROXY_HMAC_KEY",
            "ADMIN_TOKEN",
            "WEBHOOK_TOKEN",
            "EVOLUTION_JWT_KEY",
        ] {
            let e = entry(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(e.category, Category::Security, "{name}");
            assert_eq!(e.strength, Strength::Scored { min: 60 }, "{name}");
            assert!(
                matches!(
                    e.format,
                    Format::KeyMaterial { min_bytes: 32 } | Format::HexKey { min_bytes: 32 }
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn database_url_is_required_only_by_the_proxy() {
        let db = entry("DATABASE_URL").unwrap_or_else(|| panic!("missing"));
        for env in Environment::ALL {
            assert!(db.is_required(Function::PgProxy, env));
            for f in Function::EDGE {
                assert!(!db.is_required(f, env), "{f}");
            }
        }
    }

    #[test]
    fn requirements_depend_on_function_and_environment() {
        let evolution = entry("EVOLUTION_API_KEY").unwrap_or_else(|| panic!("missing"));
        assert!(evolution.is_required(Function::Webhook, Environment::Production));
        assert!(evolution.is_required(Function::Webhook, Environment::Staging));
        assert!(!evolution.is_required(Function::Webhook, Environment::Development));
        assert!(!evolution.is_required(Function::Login, Environment::Production));
        // No AI key is required anywhere: the built-in responder answers without one.
        let openai = entry("OPENAI_API_KEY").unwrap_or_else(|| panic!("missing"));
        assert!(Environment::ALL
            .iter()
            .all(|env| !openai.is_required(Function::Webhook, *env)));
        let jwt = entry("JWT_SECRET_KEY").unwrap_or_else(|| panic!("missing"));
        assert!(jwt.is_required(Function::Login, Environment::Development));
        assert!(!jwt.is_required(Function::Health, Environment::Production));
        let hosts = entry("TRUSTED_HOSTS").unwrap_or_else(|| panic!("missing"));
        assert!(hosts.is_required(Function::Health, Environment::Production));
        assert!(!hosts.is_required(Function::Health, Environment::Staging));
        assert!(!hosts.is_required(Function::PgProxy, Environment::Production));
        assert_eq!(jwt.rotated_at_name(), "JWT_SECRET_KEY_ROTATED_AT");
    }

    #[test]
    fn each_function_reads_the_common_settings_what_it_requires_and_nothing_it_does_not_use() {
        let names = |f: Function| reads(f).map(|e| e.name).collect::<Vec<_>>();
        let health = names(Function::Health);
        assert_eq!(health.len(), EDGE_COMMON.len(), "{health:?}");
        for common in EDGE_COMMON {
            assert!(health.contains(common), "{common}");
        }
        assert!(!health.contains(&"ADMIN_TOKEN"));
        assert!(!health.contains(&"DATABASE_URL"));
        let login = names(Function::Login);
        assert!(login.contains(&"JWT_SECRET_KEY") && login.contains(&"PROXY_URL"));
        assert!(!login.contains(&"OPENAI_API_KEY"));
        let webhook = names(Function::Webhook);
        assert!(webhook.contains(&"ANTHROPIC_API_KEY") && webhook.contains(&"BUSINESS_HOURS"));
        let secrets = names(Function::HealthSecrets);
        assert!(secrets.contains(&"OPENAI_API_KEY") && secrets.contains(&"ADMIN_TOKEN"));
        assert!(
            !secrets.contains(&"DATABASE_URL"),
            "proxy-only entries stay off the edge"
        );
        for f in Function::EDGE {
            assert!(
                catalog()
                    .iter()
                    .filter(|e| e.required.iter().any(|n| n.functions.contains(&f)))
                    .all(|e| e.read_by(f)),
                "{f} must read everything it requires"
            );
        }
    }

    #[test]
    fn only_the_health_functions_that_judge_rotation_read_the_rotation_companions() {
        let companions = |f: Function| rotation_reads(f).map(|e| e.name).collect::<Vec<_>>();
        for f in [
            Function::Webhook,
            Function::Login,
            Function::Health,
            Function::HealthReadiness,
        ] {
            assert!(companions(f).is_empty(), "{f}");
        }
        let secrets = companions(Function::HealthSecrets);
        let rotated_edge_secrets: Vec<&str> = catalog()
            .iter()
            .filter(|e| e.secret && e.scope != Scope::Proxy)
            .map(|e| e.name)
            .collect();
        assert_eq!(secrets, rotated_edge_secrets, "every edge secret rotates");
        let comprehensive = companions(Function::HealthComprehensive);
        assert!(
            comprehensive.contains(&"ADMIN_TOKEN") && comprehensive.contains(&"OPENAI_API_KEY")
        );
        assert!(
            !comprehensive.contains(&"ENVIRONMENT") && !comprehensive.contains(&"WEBHOOK_TOKEN"),
            "only rotated secrets it reads: {comprehensive:?}"
        );
    }
}
