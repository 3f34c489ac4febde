//! Owns [`summary`]: the status of every catalog entry for one function, without any value,
//! for the admin `health-secrets` route, the development `/debug/config` route and the
//! operator CLI. Serialises to JSON with `serde`.

use serde::Serialize;

use crate::catalog::{catalog, Rotation, Strength};
use crate::date::Date;
use crate::formats::{Environment, Function};
use crate::strength;
use crate::validate::{read, validate, Lookup};

/// One entry's status. Holds names, flags, numbers and finding messages only: never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryStatus {
    /// Variable name.
    pub name: &'static str,
    /// Category code (`ai_provider`, `security`, ...).
    pub category: &'static str,
    /// Whether the value is a secret.
    pub secret: bool,
    /// Whether this function needs it in this environment.
    pub required: bool,
    /// Whether a non-empty value is configured.
    pub set: bool,
    /// No problem is reported for this entry.
    pub ok: bool,
    /// Problem messages for this entry (fail closed).
    pub problems: Vec<String>,
    /// Warning messages for this entry.
    pub warnings: Vec<String>,
    /// Strength score, for a configured secret whose strength is enforced.
    pub strength: Option<u8>,
    /// Rotation period in days, for secrets.
    pub rotation_period_days: Option<u16>,
    /// Days since the date in `<NAME>_ROTATED_AT`, when that is a valid date.
    pub rotated_days_ago: Option<i64>,
}

/// The configuration status of one function instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Function judged.
    pub function: &'static str,
    /// Environment it was judged as.
    pub environment: &'static str,
    /// Whether the function would serve (no problem at all).
    pub ok: bool,
    /// Every catalog entry, in catalog order.
    pub entries: Vec<EntryStatus>,
}

/// Summarises the configuration `lookup` gives `function` as of `today`, with the same
/// findings as [`validate`].
pub fn summary(lookup: Lookup<'_>, function: Function, today: Date) -> Summary {
    let report = validate(lookup, function, today);
    let env = report.environment.unwrap_or(Environment::Production);
    let entries = catalog()
        .iter()
        .map(|e| {
            let value = read(lookup, e.name);
            let messages = |list: &[crate::Problem]| -> Vec<String> {
                list.iter()
                    .filter(|p| p.key() == e.name)
                    .map(|p| p.message().to_owned())
                    .collect()
            };
            let problems = messages(&report.problems);
            let rotation_period_days = match e.rotation {
                Rotation::Days(d) => Some(d),
                Rotation::NotRotated => None,
            };
            let rotated_days_ago = rotation_period_days
                .and(read(lookup, &e.rotated_at_name()))
                .and_then(|text| Date::parse(&text).ok())
                .map(|d| today.days_since(d));
            EntryStatus {
                name: e.name,
                category: e.category.as_str(),
                secret: e.secret,
                required: e.is_required(function, env),
                set: value.is_some(),
                ok: problems.is_empty(),
                problems,
                warnings: messages(&report.warnings),
                strength: match (e.secret, e.strength, &value) {
                    (true, Strength::Scored { .. }, Some(v)) => Some(strength::score(v)),
                    _ => None,
                },
                rotation_period_days,
                rotated_days_ago,
            }
        })
        .collect();
    Summary {
        function: function.as_str(),
        environment: env.as_str(),
        ok: report.is_ok(),
        entries,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";

    #[test]
    fn the_summary_reports_status_per_entry_without_values() {
        let vars = |k: &str| match k {
            "ENVIRONMENT" => Some("development".to_owned()),
            "JWT_SECRET_KEY" => Some(JWT.to_owned()),
            "JWT_SECRET_KEY_ROTATED_AT" => Some("2026-11-01".to_owned()),
            "FRONTEND_URL" => Some("http://frontend.example.com".to_owned()),
            _ => None,
        };
        let s = summary(&vars, Function::Login, Date::parse("2026-11-22").unwrap());
        assert_eq!(
            (s.function, s.environment, s.ok),
            ("login", "development", false)
        );
        assert_eq!(s.entries.len(), catalog().len());
        let jwt = s
            .entries
            .iter()
            .find(|e| e.name == "JWT_SECRET_KEY")
            .unwrap();
        assert!(jwt.required && jwt.set && jwt.ok && jwt.secret);
        assert!(jwt.strength.unwrap() >= 80);
        assert_eq!(
            (jwt.rotation_period_days, jwt.rotated_days_ago),
            (Some(180), Some(21))
        );
        let frontend = s.entries.iter().find(|e| e.name == "FRONTEND_URL").unwrap();
        assert!(!frontend.ok);
        assert_eq!(frontend.problems.len(), 1);
        let debug = format!("{s:?}");
        assert!(!debug.contains(JWT) && !debug.contains("frontend.example.com"));
    }

    #[test]
    fn the_summary_serialises_to_json_with_snake_case_fields() {
        let vars = |k: &str| (k == "ENVIRONMENT").then(|| "development".to_owned());
        let s = summary(&vars, Function::Health, Date::parse("2026-11-22").unwrap());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["function"], "health");
        assert_eq!(json["ok"], true);
        assert_eq!(json["entries"][0]["name"], "OPENAI_API_KEY");
        assert_eq!(json["entries"][0]["category"], "ai_provider");
        assert_eq!(json["entries"][0]["rotation_period_days"], 90);
        assert_eq!(json["entries"][0]["strength"], serde_json::Value::Null);
    }
}
