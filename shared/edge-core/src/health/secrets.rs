//! Secrets health (`GET /health/secrets`): the status of every secret of the catalog that an
//! edge function reads, and a summary with the actions needed. Never a value, a prefix or a
//! length: everything here is names, flags, scores and dates, judged by the secrets catalog's
//! own rules ([`secrets_catalog::validate`], [`secrets_catalog::strength::score`]) as of today.
//!
//! Per secret: category, configured, which functions require it here, format valid, strength
//! 0–100 with its class ([`class`]), rotation period, rotated-at (`<NAME>_ROTATED_AT`), due
//! date, overdue days. A secret is `warn` when it needs an action: required but unset,
//! malformed, weak, rotation overdue or due within [`DUE_SOON_DAYS`], a rotated-at that is not
//! a date. The overall score ([`score`]) is the mean of the secrets that are set or required.
//!
//! Access: open in development; anywhere else admin only ([`crate::admin`]), and anything
//! else gets the plain 401. Every read is one event line (`secrets_health_read`) and an audit
//! event through the proxy (`health.secrets.read`), written after the response; an audit
//! failure is logged (`audit_write_failed`) and never fails the read.

use secrets_catalog::strength::{self, MIN_SECURITY_SCORE};
use secrets_catalog::{
    reads, validate, Date, Environment as CatalogEnvironment, Function as CatalogFunction,
    Rotation, Rule, Strength,
};
use serde_json::{json, Map, Value};

use super::{report as health_report, respond, Check, Status};
use crate::config::{catalog_function, EdgeConfig, Environment};
use crate::log::Level;
use crate::ports::Platform;
use crate::proxy::{self, ProxyCall, ProxyTarget};
use crate::{admin, Ctx, Error, Request, Response};

/// A rotation due within this many days is a warning (and an action).
pub const DUE_SOON_DAYS: i64 = 14;

/// Scores from this up are `strong`; from [`MIN_SECURITY_SCORE`] up `fair`; below `weak`.
pub const STRONG_SCORE: u8 = 80;

/// The status of one secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStatus {
    /// Catalog name.
    pub name: &'static str,
    /// Catalog category (`security`, `ai_provider`, ...).
    pub category: &'static str,
    /// Whether a value is set.
    pub configured: bool,
    /// Edge functions that cannot work without it in this environment.
    pub required_by: Vec<&'static str>,
    /// Whether the value passes its format check (`None` when unset).
    pub format_valid: Option<bool>,
    /// Strength 0–100, for a set secret whose strength the catalog scores (the ones we
    /// generate; a provider's key is judged by its format only).
    pub strength: Option<u8>,
    /// Whether the catalog finds it too weak for this environment.
    pub weak: bool,
    /// Rotation period in days.
    pub rotation_period_days: Option<u16>,
    /// The date in `<NAME>_ROTATED_AT`, when that is a date.
    pub rotated_at: Option<Date>,
    /// `<NAME>_ROTATED_AT` is set but not a date (or in the future).
    pub rotated_at_invalid: bool,
    /// Rotated-at plus the period.
    pub due: Option<Date>,
    /// Days from today to the due date (negative: overdue).
    pub days_left: Option<i64>,
}

impl SecretStatus {
    /// Days past the due date (0 when not overdue), when the due date is known.
    pub fn overdue_days(&self) -> Option<i64> {
        self.days_left.map(|d| (-d).max(0))
    }

    /// Whether a value is set and its rotation is overdue.
    pub fn overdue(&self) -> bool {
        self.configured && self.days_left.is_some_and(|d| d < 0)
    }

    /// Whether a value is set and its rotation is due within [`DUE_SOON_DAYS`] (not overdue).
    pub fn due_soon(&self) -> bool {
        self.configured
            && self
                .days_left
                .is_some_and(|d| (0..=DUE_SOON_DAYS).contains(&d))
    }

    /// Whether it is unset although a function requires it here.
    pub fn missing(&self) -> bool {
        !self.configured && !self.required_by.is_empty()
    }

    /// What an operator should do about it, if anything (names and numbers only).
    pub fn actions(&self) -> Vec<String> {
        let name = self.name;
        let mut out = Vec::new();
        if self.missing() {
            out.push(format!(
                "set {name} (required by {})",
                self.required_by.join(", ")
            ));
        }
        if self.format_valid == Some(false) {
            out.push(format!("replace {name}: its format is not valid"));
        }
        if let (true, Some(score)) = (self.weak, self.strength) {
            out.push(format!("replace {name}: strength {score}/100 is weak"));
        }
        if self.rotated_at_invalid {
            out.push(format!(
                "fix {name}_ROTATED_AT: not a past date in the form YYYY-MM-DD"
            ));
        }
        match self.days_left {
            Some(d) if self.configured && d < 0 => {
                out.push(format!("rotate {name}, {} days overdue", -d));
            }
            Some(d) if self.configured && d <= DUE_SOON_DAYS => {
                out.push(format!("rotate {name}, due in {d} days"));
            }
            _ => {}
        }
        if self.configured
            && self.rotation_period_days.is_some()
            && self.rotated_at.is_none()
            && !self.rotated_at_invalid
        {
            out.push(format!(
                "record {name}_ROTATED_AT (the date of its last rotation)"
            ));
        }
        out
    }

    /// `warn` when an action is needed beyond recording a rotation date, else `pass`.
    pub fn status(&self) -> Status {
        let needs_action = self.missing()
            || self.format_valid == Some(false)
            || self.weak
            || self.rotated_at_invalid
            || self.overdue()
            || self.due_soon();
        if needs_action {
            Status::Warn
        } else {
            Status::Pass
        }
    }

    /// This secret's contribution to [`score`], when it counts (set or required): 0 when
    /// missing or malformed; otherwise its strength (100 for a provider key, whose strength is
    /// its issuer's), less 50 when its rotation is overdue, less 10 when due soon or when its
    /// rotation date is unknown.
    pub fn score(&self) -> Option<u8> {
        if !self.configured {
            return self.missing().then_some(0);
        }
        if self.format_valid == Some(false) {
            return Some(0);
        }
        let base = i64::from(self.strength.unwrap_or(100));
        let penalty = if self.overdue() {
            50
        } else if self.due_soon()
            || (self.rotation_period_days.is_some() && self.rotated_at.is_none())
        {
            10
        } else {
            0
        };
        Some((base - penalty).clamp(0, 100) as u8)
    }
}

/// `weak`, `fair` or `strong` for a strength score.
pub fn class(score: u8) -> &'static str {
    if score < MIN_SECURITY_SCORE {
        "weak"
    } else if score < STRONG_SCORE {
        "fair"
    } else {
        "strong"
    }
}

/// The overall score of `statuses`: the mean of the secrets that count ([`SecretStatus::score`]),
/// 100 when none does.
pub fn score(statuses: &[SecretStatus]) -> u8 {
    let counted: Vec<u64> = statuses
        .iter()
        .filter_map(SecretStatus::score)
        .map(u64::from)
        .collect();
    if counted.is_empty() {
        return 100;
    }
    let total: u64 = counted.iter().sum();
    ((total + counted.len() as u64 / 2) / counted.len() as u64) as u8
}

/// Today's date at `now_ms` (UTC), for the rotation rules.
pub fn today(now_ms: u64) -> Date {
    Date::from_unix_seconds((now_ms / 1000) as i64)
}

/// The status of every secret `function` reads, as this instance's configuration has them
/// (its rotation companions included), judged as of `today`.
pub fn statuses(cfg: &EdgeConfig, function: CatalogFunction, today: Date) -> Vec<SecretStatus> {
    let lookup = |name: &str| cfg.lookup(name);
    // One full validation (format, strength, rotation-date findings). The per-entry facts are
    // read here rather than through `summary`, which would run the same validation again.
    let judged = validate(&lookup, function, today);
    let env = judged.environment.unwrap_or(CatalogEnvironment::Production);
    let findings: Vec<_> = judged.problems.iter().chain(&judged.warnings).collect();
    reads(function)
        .filter(|e| e.secret)
        .map(|e| {
            let value = lookup(e.name);
            let rules: Vec<Rule> = findings
                .iter()
                .filter(|p| p.key() == e.name)
                .map(|p| p.rule())
                .collect();
            let period = match e.rotation {
                Rotation::Days(days) => Some(days),
                Rotation::NotRotated => None,
            };
            let rotated_at = period
                .and_then(|_| lookup(&e.rotated_at_name()))
                .and_then(|text| Date::parse(&text).ok())
                .filter(|d| d.days_since_epoch() <= today.days_since_epoch());
            let due = match (rotated_at, period) {
                (Some(at), Some(days)) => Some(Date::from_days_since_epoch(
                    at.days_since_epoch() + i64::from(days),
                )),
                _ => None,
            };
            SecretStatus {
                name: e.name,
                category: e.category.as_str(),
                configured: value.is_some(),
                required_by: CatalogFunction::EDGE
                    .iter()
                    .filter(|f| e.is_required(**f, env))
                    .map(|f| f.as_str())
                    .collect(),
                format_valid: value.is_some().then(|| !rules.contains(&Rule::Format)),
                strength: match (e.strength, &value) {
                    (Strength::Scored { .. }, Some(v)) => Some(strength::score(v)),
                    _ => None,
                },
                weak: rules.contains(&Rule::Weak),
                rotation_period_days: period,
                rotated_at,
                rotated_at_invalid: rules.contains(&Rule::RotationDate),
                due,
                days_left: due.map(|d| d.days_since(today)),
            }
        })
        .collect()
}

/// One secret as a check object (`<NAME>:status`).
fn check_of(s: &SecretStatus) -> Check {
    let actions = s.actions();
    let mut check = Check::new(s.name, "status", s.status())
        .kind("secret")
        .field("category", s.category)
        .field("configured", s.configured)
        .field("requiredBy", s.required_by.clone())
        .field("formatValid", s.format_valid)
        .field("strength", s.strength)
        .field("strengthClass", s.strength.map(class))
        .field("rotationPeriodDays", s.rotation_period_days)
        .field("rotatedAt", s.rotated_at.map(|d| d.to_string()))
        .field("dueDate", s.due.map(|d| d.to_string()))
        .field("overdueDays", s.overdue_days());
    if let Some(score) = s.strength {
        check = check.observed(score, "score");
    }
    if !actions.is_empty() {
        check = check.output(actions.join("; "));
    }
    check
}

/// The summary block: counts, the overall score and every action needed.
pub fn summary_block(statuses: &[SecretStatus]) -> Value {
    let count = |f: fn(&SecretStatus) -> bool| statuses.iter().filter(|s| f(s)).count();
    json!({
        "secrets": statuses.len(),
        "configured": count(|s| s.configured),
        "missingRequired": count(SecretStatus::missing),
        "formatInvalid": count(|s| s.format_valid == Some(false)),
        "weak": count(|s| s.weak),
        "rotationOverdue": count(SecretStatus::overdue),
        "rotationDueSoon": count(SecretStatus::due_soon),
        "rotationUnknown": count(|s| s.configured && s.rotation_period_days.is_some() && s.rotated_at.is_none()),
        "score": score(statuses),
        "actions": statuses.iter().flat_map(SecretStatus::actions).collect::<Vec<_>>(),
    })
}

/// Answers `GET /health/secrets` for the request `ctx` serves (see the module docs).
pub async fn report<P: Platform>(req: &Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
    let actor = if ctx.config.environment == Environment::Development {
        // Open in development; an admin who identifies is still named in the audit record.
        admin::check(ctx, req)
            .await
            .ok()
            .flatten()
            .map_or_else(|| "development-open".to_owned(), |a| a.actor())
    } else {
        match admin::require(ctx, req).await {
            Ok(admin) => admin.actor(),
            Err(e) => {
                if e == Error::Unauthorized {
                    ctx.event(Level::Warn, "secrets_health_refused", Map::new());
                }
                return Err(e);
            }
        }
    };
    let now = ctx.platform.clock().now_unix_ms();
    let statuses = statuses(ctx.config, catalog_function(ctx.function), today(now));
    let checks: Vec<Check> = statuses.iter().map(check_of).collect();
    let (status, mut top) = health_report(ctx.function, "secrets", &checks, now);
    top.insert("summary".into(), summary_block(&statuses));

    let mut fields = Map::new();
    fields.insert("actor".into(), actor.clone().into());
    fields.insert("status".into(), status.as_str().into());
    ctx.event(Level::Info, "secrets_health_read", fields);
    audit_later(ctx, actor, status);
    Ok(respond(status, top))
}

/// Writes the audit event after the response; a failure is logged, never raised.
fn audit_later<P: Platform>(ctx: &Ctx<'_, P>, actor: String, status: Status) {
    const ACTION: &str = "health.secrets.read";
    let failed = |ctx: &Ctx<'_, P>, cause: String| {
        let mut fields = Map::new();
        fields.insert("action".into(), ACTION.into());
        fields.insert("cause".into(), cause.into());
        ctx.event(Level::Error, "audit_write_failed", fields);
    };
    let target = match ProxyTarget::from_config(ctx.config) {
        Ok(t) => t,
        Err(e) => return failed(ctx, e.to_string()),
    };
    let body = json!({
        "action": ACTION,
        "actor": actor,
        "details": {"status": status.as_str(), "environment": ctx.config.environment.as_str()},
    });
    let call = match ProxyCall::post("/v1/audit", &body) {
        Ok(c) => c,
        Err(e) => return failed(ctx, e.to_string()),
    };
    let (platform, config, request_id, function) = (
        ctx.platform,
        ctx.config,
        ctx.request_id.clone(),
        ctx.function,
    );
    ctx.defer(async move {
        let ctx = Ctx::new(platform, request_id, function, config);
        if let Err(e) = proxy::json::<P, Value>(&ctx, &target, &call, &[]).await {
            failed(&ctx, e.to_string());
        }
    });
}

#[cfg(test)]
mod tests;
