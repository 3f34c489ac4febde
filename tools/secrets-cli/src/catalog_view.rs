//! Owns the catalog as the operator sees it (`secrets-cli catalog`): one record per entry,
//! including which secrets we generate ourselves and in which encoding, so the scripts
//! (`setup-secrets`) derive their plan from the catalog instead of a list of their own.

use secrets_catalog::{catalog, Entry, Environment, Format, Function, Rotation, Scope, Strength};
use serde::Serialize;

/// How a generated secret is encoded: what the consumer of the key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower-case hex (the proxy's `PROXY_HMAC_KEY` accepts hex only).
    Hex,
    /// base64url without padding (RFC 4648 §5): compact and safe in headers and dotenv files.
    Base64url,
}

/// The recipe for a secret we generate: `bytes` random bytes from the OS CSPRNG, encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// Encoding of the value.
    pub encoding: Encoding,
    /// Random bytes before encoding (the catalog minimum).
    pub bytes: usize,
    /// Minimum strength score the value must reach.
    pub min_strength: u8,
}

/// Where an entry must be set.
#[derive(Debug, Serialize)]
pub struct Requirement {
    /// Functions (manifest names).
    pub functions: Vec<&'static str>,
    /// Environments.
    pub environments: Vec<&'static str>,
}

/// One catalog entry for operators and scripts. Never holds a value except the documented
/// default of a non-secret setting.
#[derive(Debug, Serialize)]
pub struct EntryView {
    /// Variable name (Workers, Railway, dotenv); the Spin variable is its lower-case form.
    pub name: &'static str,
    /// Spin variable name.
    pub spin_name: String,
    /// Category code.
    pub category: &'static str,
    /// Whether the value is a secret.
    pub secret: bool,
    /// What it is for.
    pub description: &'static str,
    /// Format rule, as a short code (`hex_key`, `key_material`, `openai_key`, ...).
    pub format: &'static str,
    /// Who reads it: `edge`, `proxy` or `both`.
    pub scope: &'static str,
    /// Where it must be set.
    pub required: Vec<Requirement>,
    /// Functions (manifest names) that read it: the only units an optional secret is
    /// written to, so a key never reaches a function that does not use it.
    pub read_by: Vec<&'static str>,
    /// Set when we generate the value ourselves (`setup-secrets`); null for provider keys
    /// and settings.
    pub generated: Option<Generated>,
    /// For a `<NAME>_PREVIOUS` companion: the secret whose previous value it holds during a
    /// rotation.
    pub previous_of: Option<&'static str>,
    /// Rotation period in days (secrets), else null.
    pub rotation_period_days: Option<u16>,
    /// Companion variable recording the last rotation (secrets), else null.
    pub rotated_at_name: Option<String>,
    /// Default of a setting when unset; never present for a secret.
    pub default: Option<&'static str>,
}

fn format_code(format: Format) -> &'static str {
    match format {
        Format::OpenAiKey => "openai_key",
        Format::AnthropicKey => "anthropic_key",
        Format::GoogleKey => "google_key",
        Format::GroqKey => "groq_key",
        Format::LangSmithKey => "langsmith_key",
        Format::ApiToken => "api_token",
        Format::KeyMaterial { .. } => "key_material",
        Format::HexKey { .. } => "hex_key",
        Format::Identifier { .. } => "identifier",
        Format::Text { .. } => "text",
        Format::HttpUrl => "http_url",
        Format::PostgresUrl => "postgres_url",
        Format::RedisUrl => "redis_url",
        Format::SentryDsn => "sentry_dsn",
        Format::Environment => "environment",
        Format::Bool => "bool",
        Format::Integer { .. } => "integer",
        Format::OriginList => "origin_list",
        Format::HostList => "host_list",
        Format::IpList => "ip_list",
        Format::Phone => "phone",
        Format::Email => "email",
        Format::BusinessHours => "business_hours",
        Format::Decimal { .. } => "decimal",
        Format::ProviderList => "provider_list",
        Format::PriceList => "price_list",
    }
}

/// `edge`, `proxy` or `both`.
fn scope_code(entry: &Entry) -> &'static str {
    match entry.scope {
        Scope::Proxy => "proxy",
        Scope::Both => "both",
        Scope::Edge => "edge",
    }
}

/// The entry whose previous value `entry` holds, when `entry` is `<NAME>_PREVIOUS`.
pub fn previous_of(entry: &Entry) -> Option<&'static str> {
    let base = entry.name.strip_suffix("_PREVIOUS")?;
    catalog().iter().find(|e| e.name == base).map(|e| e.name)
}

/// The generation recipe of `entry`: secrets scored for strength (the ones we create, per the
/// catalog's definition of `Strength::Scored`) whose format is key material, except the
/// `_PREVIOUS` companions, which hold an old value and are never generated.
pub fn generated(entry: &Entry) -> Option<Generated> {
    let Strength::Scored { min } = entry.strength else {
        return None;
    };
    if !entry.secret || previous_of(entry).is_some() {
        return None;
    }
    let (encoding, bytes) = match entry.format {
        Format::HexKey { min_bytes } => (Encoding::Hex, min_bytes),
        Format::KeyMaterial { min_bytes } => (Encoding::Base64url, min_bytes),
        _ => return None,
    };
    Some(Generated {
        encoding,
        bytes,
        min_strength: min,
    })
}

/// The catalog, in catalog order.
pub fn view() -> Vec<EntryView> {
    catalog()
        .iter()
        .map(|e| EntryView {
            name: e.name,
            spin_name: e.name.to_ascii_lowercase(),
            category: e.category.as_str(),
            secret: e.secret,
            description: e.description,
            format: format_code(e.format),
            scope: scope_code(e),
            required: e
                .required
                .iter()
                .map(|need| Requirement {
                    functions: need.functions.iter().map(|f| f.as_str()).collect(),
                    environments: need.environments.iter().map(|env| env.as_str()).collect(),
                })
                .collect(),
            read_by: Function::ALL
                .into_iter()
                .filter(|f| e.read_by(*f))
                .map(Function::as_str)
                .collect(),
            generated: generated(e),
            previous_of: previous_of(e),
            rotation_period_days: match e.rotation {
                Rotation::Days(d) => Some(d),
                Rotation::NotRotated => None,
            },
            rotated_at_name: matches!(e.rotation, Rotation::Days(_)).then(|| e.rotated_at_name()),
            default: if e.secret { None } else { e.default },
        })
        .collect()
}

/// Whether any of `functions` needs `entry` in `env`.
pub fn required_by(entry: &Entry, functions: &[Function], env: Environment) -> Vec<&'static str> {
    functions
        .iter()
        .filter(|f| entry.is_required(**f, env))
        .map(|f| f.as_str())
        .collect()
}

/// Plain-text table of the catalog.
pub fn render_text(entries: &[EntryView]) -> String {
    let mut out = format!(
        "{:<26} {:<17} {:<7} {:<13} {:<6} {}\n",
        "NAME", "CATEGORY", "SECRET", "FORMAT", "SCOPE", "GENERATED / ROTATION"
    );
    for e in entries {
        let generated = match e.generated {
            Some(g) => format!(
                "generated: {} bytes {}",
                g.bytes,
                match g.encoding {
                    Encoding::Hex => "hex",
                    Encoding::Base64url => "base64url",
                }
            ),
            None if e.secret => "provided".to_owned(),
            None => "setting".to_owned(),
        };
        let rotation = e
            .rotation_period_days
            .map(|d| format!(", rotate every {d} days"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<26} {:<17} {:<7} {:<13} {:<6} {generated}{rotation}\n",
            e.name,
            e.category,
            if e.secret { "yes" } else { "no" },
            e.format,
            e.scope
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use secrets_catalog::entry;

    #[test]
    fn the_proxy_key_is_generated_as_hex_and_the_jwt_key_as_base64url() {
        let hmac = generated(entry("PROXY_HMAC_KEY").unwrap()).unwrap();
        assert_eq!((hmac.encoding, hmac.bytes), (Encoding::Hex, 32));
        let jwt = generated(entry("JWT_SECRET_KEY").unwrap()).unwrap();
        assert_eq!((jwt.encoding, jwt.bytes), (Encoding::Base64url, 32));
    }

    #[test]
    fn provider_keys_settings_and_previous_companions_are_not_generated() {
        for name in [
            "OPENAI_API_KEY",
            "DATABASE_URL",
            "FRONTEND_URL",
            "PROXY_HMAC_KEY_PREVIOUS",
        ] {
            assert_eq!(generated(entry(name).unwrap()), None, "{name}");
        }
        assert_eq!(
            previous_of(entry("PROXY_HMAC_KEY_PREVIOUS").unwrap()),
            Some("PROXY_HMAC_KEY")
        );
    }

    #[test]
    fn the_view_lists_every_entry_with_scope_and_no_secret_default() {
        let v = view();
        assert_eq!(v.len(), catalog().len());
        let db = v.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        assert_eq!(db.scope, "proxy");
        let hmac = v.iter().find(|e| e.name == "PROXY_HMAC_KEY").unwrap();
        assert_eq!(hmac.scope, "both");
        assert_eq!(
            hmac.rotated_at_name.as_deref(),
            Some("PROXY_HMAC_KEY_ROTATED_AT")
        );
        assert!(v.iter().filter(|e| e.secret).all(|e| e.default.is_none()));
        let generated: Vec<_> = v
            .iter()
            .filter(|e| e.generated.is_some())
            .map(|e| e.name)
            .collect();
        assert_eq!(
            generated,
            [
                "JWT_SECRET_KEY",
                "SECRET_KEY",
                "PROXY_HMAC_KEY",
                "ADMIN_TOKEN",
                "WEBHOOK_TOKEN",
                "EVOLUTION_JWT_KEY"
            ]
        );
    }
}
