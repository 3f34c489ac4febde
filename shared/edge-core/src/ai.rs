//! The AI provider chain: OpenAI-compatible chat completions (OpenAI, Groq, any compatible
//! base URL) and Anthropic Messages, tried in the configured order with a deadline per call
//! and failover on any failure (timeout, 429, 5xx, an answer we cannot read); plus the daily
//! budget guard, an atomic key-value counter of spent micro-units per UTC day.
//!
//! Provider keys go in headers only; failures are logged by provider name and status, never
//! with a body (a provider's error body can echo the prompt).

use http::{header, HeaderValue, Method};
use secrets_catalog::formats::{
    parse_decimal_micros, parse_price_list, parse_provider_list, ModelPrice,
};
use serde_json::{json, Map, Value};

use crate::config::EdgeConfig;
use crate::log::Level;
use crate::ports::{KeyValue, Platform, PortError};
use crate::{timeout, Bytes, Ctx, Error, Request, Response};

/// Longest answer asked of a provider, in tokens: WhatsApp answers are short, and this caps
/// the cost of one call.
pub const MAX_TOKENS: u32 = 400;
/// The `anthropic-version` header the Messages API requires.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Groq's OpenAI-compatible endpoint.
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai/v1";

/// The wire protocol of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST {base}/chat/completions`, `Authorization: Bearer`.
    OpenAi,
    /// `POST {base}/v1/messages`, `x-api-key`, `anthropic-version`.
    Anthropic,
}

/// One configured provider.
#[derive(Clone)]
pub struct Provider {
    /// `openai`, `groq` or `anthropic` (logs, metrics).
    pub name: &'static str,
    /// Its protocol.
    pub wire: Wire,
    base: String,
    key: String,
    /// The model asked for.
    pub model: String,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("model", &self.model)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The providers to try, in order: `AI_PROVIDERS` (the catalog has checked each has its
/// key), else every provider whose key is set, in the order openai, groq, anthropic.
pub fn providers(cfg: &EdgeConfig) -> Vec<Provider> {
    let order: Vec<&'static str> = cfg
        .text("AI_PROVIDERS")
        .and_then(|t| parse_provider_list(t).ok())
        .unwrap_or_else(|| secrets_catalog::formats::AI_PROVIDER_NAMES.to_vec());
    order
        .into_iter()
        .filter_map(|name| {
            let (key, base, model, wire) = match name {
                "groq" => (
                    "GROQ_API_KEY",
                    Some(GROQ_BASE_URL),
                    "GROQ_MODEL",
                    Wire::OpenAi,
                ),
                "anthropic" => (
                    "ANTHROPIC_API_KEY",
                    cfg.text("ANTHROPIC_BASE_URL"),
                    "ANTHROPIC_MODEL",
                    Wire::Anthropic,
                ),
                _ => (
                    "OPENAI_API_KEY",
                    cfg.text("OPENAI_BASE_URL"),
                    "OPENAI_MODEL",
                    Wire::OpenAi,
                ),
            };
            Some(Provider {
                name,
                wire,
                base: base?.trim_end_matches('/').to_owned(),
                key: cfg.secret(key)?.expose().to_owned(),
                model: cfg.text(model)?.to_owned(),
            })
        })
        .collect()
}

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The customer.
    User,
    /// The assistant (our earlier replies).
    Assistant,
}

/// A conversation to complete: the system prompt and the turns, oldest first, ending with
/// the customer's message.
#[derive(Debug, Clone, Default)]
pub struct Chat {
    /// Instructions and business facts.
    pub system: String,
    /// The conversation.
    pub turns: Vec<(Role, String)>,
}

/// A provider's answer and what it cost in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer.
    pub text: String,
    /// The provider that answered.
    pub provider: &'static str,
    /// The model the provider says answered.
    pub model: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
}

fn role(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The HTTP request asking `provider` to complete `chat`.
pub fn request(provider: &Provider, chat: &Chat) -> Result<Request, Error> {
    let (url, body) = match provider.wire {
        Wire::OpenAi => {
            let mut messages = vec![json!({"role": "system", "content": chat.system})];
            messages.extend(
                chat.turns
                    .iter()
                    .map(|(r, t)| json!({"role": role(*r), "content": t})),
            );
            (
                format!("{}/chat/completions", provider.base),
                json!({"model": provider.model, "messages": messages,
                       "max_tokens": MAX_TOKENS, "temperature": 0.3}),
            )
        }
        Wire::Anthropic => (
            format!("{}/v1/messages", provider.base),
            json!({"model": provider.model, "max_tokens": MAX_TOKENS, "system": chat.system,
                   "messages": alternating(&chat.turns)}),
        ),
    };
    let mut req = Request::new(Bytes::from(body.to_string()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = url.parse().map_err(|_| Error::Unexpected {
        cause: format!("{} base URL does not form a URI", provider.name),
    })?;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let secret = |v: String| {
        HeaderValue::from_str(&v)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| Error::Unexpected {
                cause: format!("{} key is not a header value", provider.name),
            })
    };
    match provider.wire {
        Wire::OpenAi => {
            h.insert(
                header::AUTHORIZATION,
                secret(format!("Bearer {}", provider.key))?,
            );
        }
        Wire::Anthropic => {
            h.insert("x-api-key", secret(provider.key.clone())?);
            h.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }
    Ok(req)
}

/// Anthropic wants user and assistant turns alternating, starting with the user: merge
/// neighbours of the same role and drop leading assistant turns.
fn alternating(turns: &[(Role, String)]) -> Vec<Value> {
    let mut out: Vec<(Role, String)> = Vec::new();
    for (r, t) in turns {
        match out.last_mut() {
            Some((last, text)) if last == r => {
                text.push_str("\n\n");
                text.push_str(t);
            }
            None if *r == Role::Assistant => {}
            _ => out.push((*r, t.clone())),
        }
    }
    out.into_iter()
        .map(|(r, t)| json!({"role": role(r), "content": t}))
        .collect()
}

/// Reads a provider's 2xx answer; `Err` names what was wrong (no body content).
pub fn parse(provider: &Provider, resp: &Response) -> Result<Completion, String> {
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status().as_u16()));
    }
    let v: Value =
        serde_json::from_slice(resp.body()).map_err(|_| "answer is not JSON".to_owned())?;
    let (text, input, output) = match provider.wire {
        Wire::OpenAi => (
            v["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned),
            v["usage"]["prompt_tokens"].as_u64(),
            v["usage"]["completion_tokens"].as_u64(),
        ),
        Wire::Anthropic => (
            v["content"].as_array().map(|blocks| {
                blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            }),
            v["usage"]["input_tokens"].as_u64(),
            v["usage"]["output_tokens"].as_u64(),
        ),
    };
    let text = text
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "answer has no text".to_owned())?;
    Ok(Completion {
        text,
        provider: provider.name,
        model: v["model"].as_str().unwrap_or(&provider.model).to_owned(),
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
    })
}

/// Tries each provider in turn, each within `deadline_ms(i)` (the caller's remaining time,
/// capped by `AI_TIMEOUT_MS`; `None` stops the chain), and returns the first answer. Each
/// failure is one `ai_provider_failed` warning line (provider, reason, elapsed ms).
pub async fn complete<P: Platform>(
    ctx: &Ctx<'_, P>,
    providers: &[Provider],
    chat: &Chat,
    mut deadline_ms: impl FnMut() -> Option<u64>,
) -> Option<Completion> {
    for provider in providers {
        let Some(ms) = deadline_ms() else {
            let mut f = Map::new();
            f.insert("provider".into(), provider.name.into());
            ctx.event(Level::Warn, "ai_time_budget_spent", f);
            return None;
        };
        let started = ctx.platform.clock().now_unix_ms();
        let outcome = match request(provider, chat) {
            Err(e) => Err(e.to_string()),
            Ok(req) => match timeout::within(ctx.platform.timer(), ms, ctx.send(req)).await {
                None => Err(format!("timed out after {ms} ms")),
                Some(Err(e)) => Err(e.to_string()),
                Some(Ok(resp)) => parse(provider, &resp),
            },
        };
        let elapsed = ctx.platform.clock().now_unix_ms().saturating_sub(started);
        match outcome {
            Ok(c) => {
                let mut f = Map::new();
                f.insert("provider".into(), provider.name.into());
                f.insert("model".into(), c.model.clone().into());
                f.insert("input_tokens".into(), c.input_tokens.into());
                f.insert("output_tokens".into(), c.output_tokens.into());
                f.insert("ms".into(), elapsed.into());
                ctx.event(Level::Info, "ai_answered", f);
                return Some(c);
            }
            Err(reason) => {
                let mut f = Map::new();
                f.insert("provider".into(), provider.name.into());
                f.insert("reason".into(), reason.into());
                f.insert("ms".into(), elapsed.into());
                ctx.event(Level::Warn, "ai_provider_failed", f);
            }
        }
    }
    None
}

/// Counter-key prefix of the daily spend (micro-units of the budget's currency).
pub const SPENT_PREFIX: &str = "ctr:llm:spent:";
const WARNED_PREFIX: &str = "ctr:llm:warned:";
const DAY_MS: u64 = 86_400_000;

/// `LLM_DAILY_BUDGET` and `LLM_PRICES`.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Micro-units per UTC day; `None`: no cap.
    pub limit_micros: Option<u64>,
    prices: Vec<ModelPrice>,
}

impl Budget {
    /// From the configuration (validated by the catalog).
    pub fn from_config(cfg: &EdgeConfig) -> Self {
        Self {
            limit_micros: cfg
                .text("LLM_DAILY_BUDGET")
                .and_then(|t| parse_decimal_micros(t, 1_000_000).ok()),
            prices: cfg
                .text("LLM_PRICES")
                .and_then(|t| parse_price_list(t).ok())
                .unwrap_or_default(),
        }
    }

    /// What a completion cost, in micro-units. A model not in the list is charged at the
    /// highest listed price, so an unknown model can only overcount.
    pub fn cost_micros(&self, c: &Completion) -> u64 {
        let price = self
            .prices
            .iter()
            .find(|p| p.model == c.model || c.model.starts_with(&format!("{}-", p.model)))
            .cloned()
            .or_else(|| {
                self.prices.iter().cloned().reduce(|a, b| ModelPrice {
                    model: String::new(),
                    input_micros_per_mtok: a.input_micros_per_mtok.max(b.input_micros_per_mtok),
                    output_micros_per_mtok: a.output_micros_per_mtok.max(b.output_micros_per_mtok),
                })
            });
        price.map_or(0, |p| {
            (c.input_tokens * p.input_micros_per_mtok + c.output_tokens * p.output_micros_per_mtok)
                .div_ceil(1_000_000)
        })
    }

    fn key(prefix: &str, now_ms: u64) -> String {
        format!("{prefix}{}", now_ms / DAY_MS)
    }

    /// Whether today's spend has reached the cap: a read of the day's counter (which it does
    /// not create). With no cap, `false` without a store call. Concurrent calls may each
    /// spend once past the cap: the guard bounds the overshoot to the calls in flight.
    pub async fn exhausted<K: KeyValue>(&self, kv: &K, now_ms: u64) -> Result<bool, PortError> {
        let Some(limit) = self.limit_micros else {
            return Ok(false);
        };
        if limit == 0 {
            return Ok(true);
        }
        let spent = kv.counter(&Self::key(SPENT_PREFIX, now_ms)).await?;
        Ok(u64::try_from(spent).unwrap_or(0) >= limit)
    }

    /// Adds `cost` micro-units to today's spend.
    pub async fn charge<K: KeyValue>(
        &self,
        kv: &K,
        now_ms: u64,
        cost: u64,
    ) -> Result<(), PortError> {
        if cost == 0 || self.limit_micros.is_none() {
            return Ok(());
        }
        let delta = i64::try_from(cost).unwrap_or(i64::MAX);
        crate::expiry::increment(
            kv,
            &Self::key(SPENT_PREFIX, now_ms),
            delta,
            (now_ms / DAY_MS + 2) * DAY_MS,
        )
        .await
        .map(|_| ())
    }

    /// True exactly once per UTC day (the caller then logs the one warning of the day).
    pub async fn first_warning_today<K: KeyValue>(&self, kv: &K, now_ms: u64) -> bool {
        crate::expiry::increment(
            kv,
            &Self::key(WARNED_PREFIX, now_ms),
            1,
            (now_ms / DAY_MS + 2) * DAY_MS,
        )
        .await
        .is_ok_and(|n| n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::memory::{block_on, MemoryKv, MemoryPlatform, Reply};

    fn cfg(vars: &[(&str, &str)]) -> EdgeConfig {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "development");
        for (k, v) in vars {
            p.vars.set(&k.to_ascii_lowercase(), v);
        }
        load(&p, "webhook", &[]).unwrap_or_else(|e| panic!("{e:?}"))
    }

    const OPENAI: &str = "sk-proj-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";
    const ANTHROPIC: &str = "sk-ant-api03-QmCFaEcQRYSowMpwIIxFSgDe7C7msFm7DBJOTlRxFIA3mOT3ZE5W";

    fn reply(status: u16, body: Value) -> Result<Response, PortError> {
        let mut r = Response::new(Bytes::from(body.to_string()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        Ok(r)
    }

    fn chat() -> Chat {
        Chat {
            system: "You are the assistant of Centro.".into(),
            turns: vec![
                (Role::Assistant, "Olá!".into()),
                (Role::User, "Oi".into()),
                (Role::User, "Qual o horário?".into()),
            ],
        }
    }

    #[test]
    fn no_key_means_no_provider_and_keys_give_the_default_order() {
        assert!(providers(&cfg(&[])).is_empty());
        let both = providers(&cfg(&[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
        ]));
        let names: Vec<_> = both.iter().map(|p| p.name).collect();
        assert_eq!(names, ["openai", "anthropic"]);
        let ordered = providers(&cfg(&[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
            ("AI_PROVIDERS", "anthropic,openai"),
        ]));
        assert_eq!(ordered[0].name, "anthropic");
        assert_eq!(ordered[0].model, "claude-haiku-4-5");
        assert!(
            !format!("{ordered:?}").contains("sk-ant"),
            "Debug hides the key"
        );
    }

    #[test]
    fn requests_carry_the_key_in_headers_only_and_the_whole_conversation() {
        let ps = providers(&cfg(&[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ]));
        let o = request(&ps[0], &chat()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.uri(), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(
            o.headers()[header::AUTHORIZATION],
            format!("Bearer {OPENAI}").as_str()
        );
        let body = String::from_utf8_lossy(o.body()).to_string();
        assert!(!body.contains(OPENAI));
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"].as_array().map(Vec::len), Some(4));
        let a = request(&ps[1], &chat()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(a.headers()["x-api-key"], ANTHROPIC);
        assert_eq!(a.headers()["anthropic-version"], ANTHROPIC_VERSION);
        let v: Value = serde_json::from_slice(a.body()).unwrap_or_default();
        assert_eq!(v["system"], "You are the assistant of Centro.");
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "Oi\n\nQual o horário?"}]),
            "starts with the user, alternates"
        );
    }

    fn run_chain(p: &MemoryPlatform, ps: &[Provider]) -> Option<Completion> {
        let cfg = EdgeConfig::default();
        let ctx = Ctx::new(p, "r".into(), "webhook", &cfg);
        block_on(complete(&ctx, ps, &chat(), || Some(5_000)))
    }

    #[test]
    fn a_failing_or_hung_first_provider_fails_over_to_the_second() {
        let ps = providers(&cfg(&[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
        ]));
        let answer = json!({"model": "claude-haiku-4-5", "content": [{"type": "text", "text": "Das 9h às 18h."}],
                            "usage": {"input_tokens": 120, "output_tokens": 12}});
        let p = MemoryPlatform::default();
        p.http
            .replies
            .borrow_mut()
            .push_back(reply(500, json!({"error": "boom"})));
        p.http
            .replies
            .borrow_mut()
            .push_back(reply(200, answer.clone()));
        let c = run_chain(&p, &ps).unwrap_or_else(|| panic!("no answer"));
        assert_eq!(
            (c.provider, c.text.as_str()),
            ("anthropic", "Das 9h às 18h.")
        );
        assert_eq!((c.input_tokens, c.output_tokens), (120, 12));
        assert!(p
            .log
            .lines()
            .iter()
            .any(|l| l.contains("ai_provider_failed") && l.contains("answered 500")));

        let p = MemoryPlatform::default();
        p.http.script.borrow_mut().push_back(Reply::Hang);
        p.http.replies.borrow_mut().push_back(reply(200, answer));
        let c = run_chain(&p, &ps).unwrap_or_else(|| panic!("no answer"));
        assert_eq!(c.provider, "anthropic");
        assert_eq!(
            p.timer.slept(),
            vec![5_000],
            "the first call got its deadline"
        );
    }

    #[test]
    fn every_provider_failing_gives_none_and_logs_no_key() {
        let ps = providers(&cfg(&[
            ("OPENAI_API_KEY", OPENAI),
            ("ANTHROPIC_API_KEY", ANTHROPIC),
        ]));
        let p = MemoryPlatform::default();
        p.http.replies.borrow_mut().push_back(reply(429, json!({})));
        p.http
            .replies
            .borrow_mut()
            .push_back(reply(200, json!({"content": []})));
        assert_eq!(run_chain(&p, &ps), None);
        let lines = p.log.lines().join("\n");
        assert!(lines.contains("answered 429") && lines.contains("answer has no text"));
        assert!(!lines.contains("sk-"));
    }

    #[test]
    fn the_budget_counts_micro_units_per_day_and_stops_at_the_cap() {
        let c = cfg(&[
            ("LLM_DAILY_BUDGET", "0.001"),
            ("LLM_PRICES", "gpt-4o-mini=0.15/0.60"),
        ]);
        let budget = Budget::from_config(&c);
        let kv = MemoryKv::default();
        let now = 1_767_225_600_000;
        assert_eq!(block_on(budget.exhausted(&kv, now)), Ok(false));
        assert!(
            kv.is_empty(),
            "the check created or registered the day's counter"
        );
        let used = Completion {
            text: "x".into(),
            provider: "openai",
            model: "gpt-4o-mini-2024-07-18".into(),
            input_tokens: 2_000,
            output_tokens: 1_000,
        };
        // 2000 × 0.15 + 1000 × 0.60 per million = 0.0009.
        assert_eq!(budget.cost_micros(&used), 900);
        assert!(block_on(budget.charge(&kv, now, 900)).is_ok());
        assert_eq!(block_on(budget.exhausted(&kv, now)), Ok(false));
        assert!(block_on(budget.charge(&kv, now, 100)).is_ok());
        assert_eq!(block_on(budget.exhausted(&kv, now)), Ok(true));
        assert_eq!(
            block_on(budget.exhausted(&kv, now + DAY_MS)),
            Ok(false),
            "a new UTC day"
        );
        assert!(block_on(budget.first_warning_today(&kv, now)));
        assert!(!block_on(budget.first_warning_today(&kv, now)));
        let zero = Budget::from_config(&cfg(&[("LLM_DAILY_BUDGET", "0")]));
        assert_eq!(block_on(zero.exhausted(&kv, now)), Ok(true));
        let unknown = Completion {
            model: "mystery".into(),
            ..used
        };
        assert_eq!(
            budget.cost_micros(&unknown),
            900,
            "charged at the highest price"
        );
    }
}
