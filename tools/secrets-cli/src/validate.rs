//! Owns `secrets-cli validate` and `check`: the catalog's fail-closed validation run for a
//! set of functions on one configuration, merged into one report per catalog entry plus the
//! findings, printed as a table or as JSON (schema in `docs/deploying.md`, version
//! [`SCHEMA_VERSION`]). Never holds or prints a value: only names, flags, scores, dates and the
//! catalog's own messages (which are built without values).

use secrets_catalog::{
    catalog, strength, validate, Date, Entry, Environment, Function, Problem, Rotation, Rule,
    Strength,
};
use serde::Serialize;

use crate::catalog_view;
use crate::source::Source;

/// Version of the JSON document; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Overall outcome, which is also the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to report: exit 0.
    Ok,
    /// Warnings only (rotation due, weak in development, ...): exit 1.
    Warning,
    /// At least one problem (missing, invalid, ...): exit 2.
    Error,
}

impl Status {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Error => 2,
        }
    }
}

/// One finding, merged across the functions that report it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `error` (fails closed) or `warning`.
    pub severity: Status,
    /// Catalog name.
    pub key: &'static str,
    /// Rule code (`missing`, `format`, `weak`, `environment`, `rotation_overdue`,
    /// `rotation_date`, `scope`).
    pub rule: &'static str,
    /// Why, without the value.
    pub message: String,
    /// Functions that report it.
    pub functions: Vec<&'static str>,
}

/// Rotation state of a configured secret.
#[derive(Clone, Debug, Serialize)]
pub struct RotationView {
    /// Period from the catalog.
    pub period_days: u16,
    /// Days since `<NAME>_ROTATED_AT`, when it holds a valid date.
    pub days_since: Option<i64>,
    /// Days left before the rotation is due (negative: overdue).
    pub due_in_days: Option<i64>,
}

/// One catalog entry's state.
#[derive(Clone, Debug, Serialize)]
pub struct EntryReport {
    /// Catalog name.
    pub name: &'static str,
    /// Category code.
    pub category: &'static str,
    /// Whether the value is a secret.
    pub secret: bool,
    /// Whether `setup-secrets` generates it.
    pub generated: bool,
    /// Selected functions that require it in this environment.
    pub required_by: Vec<&'static str>,
    /// A non-empty value is configured.
    pub set: bool,
    /// `ok`, `invalid` (a format finding) or `unset`.
    pub format: &'static str,
    /// Strength score of a configured scored secret.
    pub strength: Option<u8>,
    /// Minimum score for scored secrets.
    pub min_strength: Option<u8>,
    /// Rotation of a secret.
    pub rotation: Option<RotationView>,
    /// Worst finding for this entry.
    pub status: Status,
}

/// The whole document printed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Environment the configuration was judged as.
    pub environment: &'static str,
    /// The date rotation was judged against.
    pub today: String,
    /// `process-env`, `env-file` or `stdin`.
    pub source: &'static str,
    /// Functions judged.
    pub functions: Vec<&'static str>,
    /// Worst finding overall.
    pub status: Status,
    /// `status` as the process exit code.
    pub exit_code: u8,
    /// Number of distinct error findings.
    pub errors: usize,
    /// Number of distinct warning findings.
    pub warnings: usize,
    /// Every catalog entry, in catalog order.
    pub entries: Vec<EntryReport>,
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
}

fn read(source: &Source, name: &str) -> Option<String> {
    source
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn merge(into: &mut Vec<Finding>, severity: Status, problems: &[Problem], function: Function) {
    for p in problems {
        match into.iter_mut().find(|f| {
            f.severity == severity
                && f.key == p.key()
                && f.rule == p.rule().as_str()
                && f.message == p.message()
        }) {
            Some(f) => f.functions.push(function.as_str()),
            None => into.push(Finding {
                severity,
                key: p.key(),
                rule: p.rule().as_str(),
                message: p.message().to_owned(),
                functions: vec![function.as_str()],
            }),
        }
    }
}

fn rotation_view(entry: &Entry, source: &Source, today: Date) -> Option<RotationView> {
    let Rotation::Days(period) = entry.rotation else {
        return None;
    };
    let days_since = read(source, &entry.rotated_at_name())
        .and_then(|text| Date::parse(&text).ok())
        .map(|d| today.days_since(d));
    Some(RotationView {
        period_days: period,
        days_since,
        due_in_days: days_since.map(|d| i64::from(period) - d),
    })
}

/// Judges `source` for `functions` as of `today`.
pub fn run(source: &Source, functions: &[Function], today: Date) -> ValidationReport {
    let lookup = |name: &str| source.get(name);
    let mut findings = Vec::new();
    let mut environment = None;
    for f in functions {
        let report = validate(&lookup, *f, today);
        environment = environment.or(report.environment);
        merge(&mut findings, Status::Error, &report.problems, *f);
        merge(&mut findings, Status::Warning, &report.warnings, *f);
    }
    // An unknown ENVIRONMENT is judged as production, the strictest reading (catalog rule).
    let env = environment.unwrap_or(Environment::Production);
    let worst = |key: &str| {
        findings
            .iter()
            .filter(|f| f.key == key)
            .map(|f| f.severity)
            .max()
            .unwrap_or(Status::Ok)
    };
    let entries = catalog()
        .iter()
        .map(|e| {
            let value = read(source, e.name);
            let format_finding = findings
                .iter()
                .any(|f| f.key == e.name && f.rule == Rule::Format.as_str());
            let min_strength = match (e.secret, e.strength) {
                (true, Strength::Scored { min }) => Some(min),
                _ => None,
            };
            EntryReport {
                name: e.name,
                category: e.category.as_str(),
                secret: e.secret,
                generated: catalog_view::generated(e).is_some(),
                required_by: catalog_view::required_by(e, functions, env),
                set: value.is_some(),
                format: match (&value, format_finding) {
                    (None, _) => "unset",
                    (Some(_), true) => "invalid",
                    (Some(_), false) => "ok",
                },
                strength: min_strength.and(value.as_deref()).map(strength::score),
                min_strength,
                rotation: e.secret.then(|| rotation_view(e, source, today)).flatten(),
                status: worst(e.name),
            }
        })
        .collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let status = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Status::Ok);
    ValidationReport {
        schema_version: SCHEMA_VERSION,
        environment: env.as_str(),
        today: today.to_string(),
        source: source.kind,
        functions: functions.iter().map(|f| f.as_str()).collect(),
        status,
        exit_code: status.exit_code(),
        errors: findings
            .iter()
            .filter(|f| f.severity == Status::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Status::Warning)
            .count(),
        entries,
        findings,
    }
}

/// The report as a table, the findings and a closing line.
pub fn render_text(report: &ValidationReport) -> String {
    let mut out = format!(
        "environment {} · {} · functions: {}\n\n{:<26} {:<4} {:<9} {:<8} {:<9} {:<16} {}\n",
        report.environment,
        report.source,
        report.functions.join(", "),
        "NAME",
        "SET",
        "REQUIRED",
        "FORMAT",
        "STRENGTH",
        "ROTATION",
        "STATUS"
    );
    for e in &report.entries {
        let strength = match (e.strength, e.min_strength) {
            (Some(s), Some(min)) => format!("{s}/{min}"),
            _ => "-".to_owned(),
        };
        let rotation = match &e.rotation {
            Some(RotationView {
                period_days,
                days_since: Some(d),
                ..
            }) => format!("{d}/{period_days} days"),
            Some(r) if e.set => format!("?/{} days", r.period_days),
            _ => "-".to_owned(),
        };
        let status = match e.status {
            Status::Ok if !e.set => "unset",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        };
        out.push_str(&format!(
            "{:<26} {:<4} {:<9} {:<8} {:<9} {:<16} {}\n",
            e.name,
            if e.set { "yes" } else { "no" },
            if e.required_by.is_empty() { "-" } else { "yes" },
            e.format,
            strength,
            rotation,
            status
        ));
    }
    for (title, severity) in [("errors", Status::Error), ("warnings", Status::Warning)] {
        let list: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if !list.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for f in list {
                out.push_str(&format!(
                    "  {}: {} [{}] ({})\n",
                    f.key,
                    f.message,
                    f.rule,
                    f.functions.join(", ")
                ));
            }
        }
    }
    out.push_str(&format!(
        "\nresult: {} ({} errors, {} warnings), exit {}\n",
        match report.status {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        },
        report.errors,
        report.warnings,
        report.exit_code
    ));
    out
}

/// Checks one value for `name` as `env` would judge it (format, strength, environment
/// rules), with key checks enforced. Returns the findings about `name` only.
pub fn check_one(name: &'static str, value: &str, env: Environment, today: Date) -> Vec<Finding> {
    let source = Source::from_pairs([
        ("ENVIRONMENT", env.as_str()),
        ("VALIDATE_API_KEYS", "true"),
        (name, value),
    ]);
    let relevant = [Rule::Format, Rule::Weak, Rule::Environment].map(Rule::as_str);
    run(&source, &Function::ALL, today)
        .findings
        .into_iter()
        .filter(|f| f.key == name && relevant.contains(&f.rule))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::parse("2026-11-22").unwrap()
    }

    const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";

    #[test]
    fn an_empty_development_config_for_health_is_ok() {
        let r = run(
            &Source::from_pairs([("ENVIRONMENT", "development")]),
            &[Function::Health],
            today(),
        );
        assert_eq!(
            (r.status, r.exit_code, r.environment),
            (Status::Ok, 0, "development")
        );
    }

    #[test]
    fn an_unset_environment_is_judged_as_production() {
        let r = run(&Source::from_pairs([]), &[Function::Health], today());
        assert_eq!((r.exit_code, r.environment), (2, "production"));
    }

    #[test]
    fn a_missing_required_secret_is_an_error_naming_the_functions() {
        let r = run(
            &Source::from_pairs([("ENVIRONMENT", "development")]),
            &[Function::Login, Function::Logout],
            today(),
        );
        assert_eq!(r.exit_code, 2);
        // One finding per function: the catalog's message names the function.
        let missing: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.key == "JWT_SECRET_KEY" && f.rule == "missing")
            .flat_map(|f| f.functions.clone())
            .collect();
        assert_eq!(missing, ["login", "logout"]);
        let e = r
            .entries
            .iter()
            .find(|e| e.name == "JWT_SECRET_KEY")
            .unwrap();
        assert_eq!(
            (e.status, e.required_by.clone()),
            (Status::Error, vec!["login", "logout"])
        );
    }

    #[test]
    fn an_overdue_rotation_alone_is_a_warning_exit_1() {
        let r = run(
            &Source::from_pairs([
                ("ENVIRONMENT", "development"),
                ("JWT_SECRET_KEY", JWT),
                ("JWT_SECRET_KEY_ROTATED_AT", "2026-01-01"),
            ]),
            &[Function::Login],
            today(),
        );
        assert_eq!(r.exit_code, 1, "{:?}", r.findings);
        let e = r
            .entries
            .iter()
            .find(|e| e.name == "JWT_SECRET_KEY")
            .unwrap();
        let rot = e.rotation.as_ref().unwrap();
        assert_eq!((rot.days_since, rot.due_in_days), (Some(325), Some(-145)));
        assert!(e.strength.unwrap() >= 60);
    }

    #[test]
    fn no_value_reaches_the_text_or_the_json() {
        let marker = "sk-proj-ZZmarkerZZ";
        let r = run(
            &Source::from_pairs([
                ("ENVIRONMENT", "production"),
                ("OPENAI_API_KEY", marker),
                ("JWT_SECRET_KEY", JWT),
            ]),
            &Function::ALL,
            today(),
        );
        let text = render_text(&r);
        let json = serde_json::to_string(&r).unwrap();
        for out in [&text, &json] {
            assert!(!out.contains("ZZmarker") && !out.contains(JWT));
        }
        assert!(text.contains("OPENAI_API_KEY") && text.ends_with("exit 2\n"));
    }

    #[test]
    fn check_one_reports_a_weak_generated_secret_in_production_only_about_that_key() {
        let findings = check_one(
            "ADMIN_TOKEN",
            "Tutoring2026!",
            Environment::Production,
            today(),
        );
        assert!(!findings.is_empty());
        assert!(findings.iter().all(|f| f.key == "ADMIN_TOKEN"));
        assert!(check_one("ADMIN_TOKEN", JWT, Environment::Production, today()).is_empty());
    }
}
