//! The webhook's end-to-end cases (issue 10), on the running wasm with a real pg-proxy and
//! Postgres and the fakes of Evolution, OpenAI and Anthropic (`e2e::fakes`). Each case uses
//! its own phone numbers and message ids, so cases sharing the fakes never see each other's
//! requests.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::fakes::{Fake, Kind, Scripted, ANTHROPIC_TEXT, OPENAI_TEXT};
use e2e::Runtime;
use libtest_mimic::Failed;

use super::{ensure, send, Resp};

/// The fixture's `apikey` (authentication method a).
pub const API_KEY: &str = "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F";
pub const TOKEN: &str = "e2e-webhook-token-Zt3vQ9mW2xL7kP4nR8sY1bC6dF0gH5jK";
pub const JWT_KEY: &str = "e2e-jwt-key-a9F3kL0pQ7wE2rT5yU8iO1pA4sD6fG9hJ2kL";
pub const OPENAI_KEY: &str = "sk-proj-E2Ewebhook0123456789abcdefghijklmnopqrs";
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-E2Ewebhook0123456789abcdefghijklmnop";
pub const HOURS: &str = "Mon-Fri 09:00-18:00";

struct Fakes {
    evolution: Fake,
    openai: Fake,
    anthropic: Fake,
}

static FAKES: OnceLock<Result<Fakes, String>> = OnceLock::new();

fn fakes() -> Result<&'static Fakes, Failed> {
    FAKES
        .get_or_init(|| {
            Ok(Fakes {
                evolution: Fake::start(Kind::Evolution)?,
                openai: Fake::start(Kind::OpenAi)?,
                anthropic: Fake::start(Kind::Anthropic)?,
            })
        })
        .as_ref()
        .map_err(|e| format!("webhook fakes: {e}").into())
}

/// The variables every webhook profile adds: where the fakes are.
pub fn fake_vars() -> Result<Vec<(String, String)>, String> {
    let f = fakes().map_err(|e| format!("{e:?}"))?;
    Ok(vec![
        ("EVOLUTION_API_URL".into(), f.evolution.url()),
        ("OPENAI_BASE_URL".into(), format!("{}/v1", f.openai.url())),
        ("ANTHROPIC_BASE_URL".into(), f.anthropic.url()),
    ])
}

/// A number of its own for each call (Brazilian mobile shape).
fn number() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("55119{:04}{:04}", std::process::id() % 10_000, n)
}

fn message_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "E2E{tag}{}X{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn payload(id: &str, number: &str, text: &str) -> String {
    serde_json::json!({
        "event": "messages.upsert",
        "instance": "centro-principal",
        "data": {
            "key": {"remoteJid": format!("{number}@s.whatsapp.net"), "fromMe": false, "id": id},
            "pushName": "Maria Souza",
            "message": {"conversation": text},
            "messageType": "conversation",
            // Now, as Evolution sends it: the history is ordered by it.
            "messageTimestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        },
        "date_time": "2026-12-01T09:00:00.000Z",
        "apikey": API_KEY,
    })
    .to_string()
}

fn deliver(rt: &Runtime, path: &str, body: &str, headers: &[(&str, &str)]) -> Result<Resp, Failed> {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(&rt.url(path), "POST", &h, body)
}

/// The sendText requests for `number` once `want` of them have arrived (or what came within
/// `wait`).
fn sends_to(number: &str, want: usize, wait: Duration) -> Result<Vec<e2e::Recorded>, Failed> {
    let f = fakes()?;
    let deadline = Instant::now() + wait;
    loop {
        let got: Vec<e2e::Recorded> = f
            .evolution
            .received_with(&format!("\"number\":\"{number}\""))
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        if got.len() >= want || Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sleeps until a fixed, epoch-aligned window of length `window` has just begun, unless
/// most of the current one is still ahead.
fn start_of_sender_window(window: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into = Duration::from_millis((now.as_millis() % window.as_millis()) as u64);
    if into > window / 4 {
        std::thread::sleep(window - into + Duration::from_millis(50));
    }
}

fn text_of(r: &e2e::Recorded) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn state_of(rt: &Runtime, id: &str) -> String {
    rt.proxy()
        .query(&format!(
            "SELECT state FROM messages WHERE provider_message_id = '{id}'"
        ))
        .ok()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default()
}

/// Waits until `id` is `replied` in Postgres.
fn replied(rt: &Runtime, id: &str) -> Result<(), Failed> {
    for _ in 0..100 {
        if state_of(rt, id) == "replied" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{id} is {:?}, not replied", state_of(rt, id)).into())
}

pub fn happy_path(rt: &Runtime) -> Result<(), Failed> {
    let f = fakes()?;
    let n = number();
    let first = message_id("hp");
    let r = deliver(
        rt,
        "/api/v1/webhook/evolution",
        &payload(&first, &n, "Oi, tudo bem?"),
        &[],
    )?;
    ensure(r.status == 200, format!("status {} {}", r.status, r.body))?;
    ensure(r.json()?["status"] == "accepted", r.body.clone())?;
    let sent = sends_to(&n, 1, Duration::from_secs(10))?;
    ensure(sent.len() == 1, format!("{} sendText calls", sent.len()))?;
    ensure(
        sent[0].path == "/message/sendText/centro-principal",
        sent[0].path.clone(),
    )?;
    ensure(
        sent[0]
            .headers
            .iter()
            .any(|(k, v)| k == "apikey" && v == API_KEY),
        "sendText carries the apikey header",
    )?;
    ensure(text_of(&sent[0]) == OPENAI_TEXT, text_of(&sent[0]))?;
    replied(rt, &first)?;
    // The second message reaches the provider with the first one and its reply as history,
    // and the business prompt.
    // Evolution's timestamps are whole seconds and the proxy keeps the history before the
    // message's second: a customer's next message comes later than this in real life.
    std::thread::sleep(Duration::from_millis(1_100));
    let second = message_id("hp");
    // The fakes live as long as the test process and serve every runtime and case: a question
    // of its own finds this case's provider calls only.
    let question = format!("Qual o horário de vocês ({second})?");
    deliver(rt, "/webhook", &payload(&second, &n, &question), &[])?;
    let sent = sends_to(&n, 2, Duration::from_secs(10))?;
    ensure(sent.len() == 2, format!("{} sendText calls", sent.len()))?;
    let asked = f.openai.received_with(&question);
    ensure(asked.len() == 1, format!("{} provider calls", asked.len()))?;
    let body: serde_json::Value =
        serde_json::from_str(&asked[0].1.body).map_err(|e| e.to_string())?;
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    ensure(
        msgs.first().is_some_and(|m| {
            m["role"] == "system" && m["content"].as_str().unwrap_or("").contains("Centro E2E")
        }),
        format!("business prompt: {body}"),
    )?;
    let contents: Vec<String> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect();
    ensure(
        contents.iter().any(|c| c == "Oi, tudo bem?") && contents.iter().any(|c| c == OPENAI_TEXT),
        format!("history: {contents:?}"),
    )?;
    ensure(
        asked[0]
            .1
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == &format!("Bearer {OPENAI_KEY}")),
        "the key goes in the Authorization header",
    )?;
    replied(rt, &second)
}

pub fn redelivery_and_concurrency_answer_once(rt: &Runtime) -> Result<(), Failed> {
    let n = number();
    let id = message_id("dup");
    let body = payload(&id, &n, "Bom dia!");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = deliver(rt, "/webhook", &body, &[])?;
        statuses.push(r.json()?["status"].as_str().unwrap_or("").to_owned());
    }
    ensure(
        statuses[0] == "accepted" && statuses[1..].iter().all(|s| s == "duplicate"),
        format!("{statuses:?}"),
    )?;
    let n2 = number();
    let id2 = message_id("dup");
    let body2 = payload(&id2, &n2, "Bom dia!");
    let url = rt.url("/webhook");
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (url.clone(), body2.clone());
            std::thread::spawn(move || {
                send(&url, "POST", &[("content-type", "application/json")], &body).map(|r| r.status)
            })
        })
        .collect();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| "thread")?
            .map_err(|e| format!("{e:?}"))?;
        ensure(s == 200, format!("concurrent status {s}"))?;
    }
    replied(rt, &id)?;
    replied(rt, &id2)?;
    std::thread::sleep(Duration::from_secs(2));
    for num in [&n, &n2] {
        let sent = sends_to(num, 2, Duration::from_millis(10))?;
        ensure(sent.len() == 1, format!("{num}: {} replies", sent.len()))?;
    }
    Ok(())
}

pub fn provider_failover_and_builtin(rt: &Runtime) -> Result<(), Failed> {
    let f = fakes()?;
    // 500 from the first provider: the second answers.
    f.openai.script([Scripted::fail(500)]);
    let n = number();
    deliver(rt, "/webhook", &payload(&message_id("fo"), &n, "Oi"), &[])?;
    let sent = sends_to(&n, 1, Duration::from_secs(10))?;
    ensure(
        sent.len() == 1 && text_of(&sent[0]) == ANTHROPIC_TEXT,
        format!(
            "after a 500: {:?}",
            sent.iter().map(text_of).collect::<Vec<_>>()
        ),
    )?;
    let asked = f.anthropic.received_with("\"Oi\"");
    ensure(
        asked.last().is_some_and(|(_, r)| {
            r.headers
                .iter()
                .any(|(k, v)| k == "x-api-key" && v == ANTHROPIC_KEY)
                && r.headers.iter().any(|(k, _)| k == "anthropic-version")
        }),
        "Anthropic gets x-api-key and anthropic-version",
    )?;
    // A hung first provider (past AI_TIMEOUT_MS): the second answers.
    f.openai.script([Scripted::delayed(Duration::from_secs(4))]);
    let n = number();
    deliver(rt, "/webhook", &payload(&message_id("fo"), &n, "Oi"), &[])?;
    let sent = sends_to(&n, 1, Duration::from_secs(12))?;
    ensure(
        sent.len() == 1 && text_of(&sent[0]) == ANTHROPIC_TEXT,
        "after a timeout",
    )?;
    // Every provider failing: the built-in responder answers from the business settings.
    f.openai.script([Scripted::fail(503)]);
    f.anthropic.script([Scripted::fail(529)]);
    let n = number();
    deliver(
        rt,
        "/webhook",
        &payload(&message_id("fo"), &n, "Qual o horário?"),
        &[],
    )?;
    let sent = sends_to(&n, 1, Duration::from_secs(10))?;
    ensure(
        sent.len() == 1 && text_of(&sent[0]).contains(HOURS),
        format!(
            "built-in: {:?}",
            sent.iter().map(text_of).collect::<Vec<_>>()
        ),
    )
}

pub fn send_fails_twice_then_one_reply(rt: &Runtime) -> Result<(), Failed> {
    let f = fakes()?;
    f.evolution
        .script([Scripted::fail(500), Scripted::fail(502)]);
    let n = number();
    let id = message_id("sf");
    deliver(rt, "/webhook", &payload(&id, &n, "Oi"), &[])?;
    replied(rt, &id)?;
    let sent = sends_to(&n, 3, Duration::from_secs(10))?;
    ensure(
        sent.len() == 3,
        format!("{} sendText attempts (2 failed + 1)", sent.len()),
    )?;
    let outbound = rt.proxy().query(&format!(
        "SELECT count(*) FROM messages WHERE direction = 'outbound' AND contact = '{n}@s.whatsapp.net'"
    ))?;
    ensure(
        outbound == ["1"],
        format!("outbound recorded: {outbound:?}"),
    )
}

pub fn ignored_deliveries(rt: &Runtime) -> Result<(), Failed> {
    let root = e2e::repo_root().join("tests/fixtures/evolution");
    for (file, reason) in [
        ("messages-upsert-from-me", "from_me"),
        ("messages-upsert-group", "group"),
        ("messages-upsert-status", "status"),
        ("messages-upsert-image", "not_text"),
        ("connection-update", "event"),
    ] {
        let body = std::fs::read_to_string(root.join(format!("{file}.json")))
            .map_err(|e| e.to_string())?;
        let r = deliver(rt, "/webhook", &body, &[])?;
        ensure(
            r.status == 200 && r.json()?["reason"] == reason,
            format!("{file}: {} {}", r.status, r.body),
        )?;
    }
    let other =
        payload(&message_id("ig"), &number(), "Oi").replace("centro-principal", "outra-instancia");
    let r = deliver(rt, "/webhook", &other, &[])?;
    ensure(r.json()?["reason"] == "instance", r.body.clone())?;
    let r = deliver(
        rt,
        "/api/v1/webhook/evolution/messages-update",
        &payload(&message_id("ig"), &number(), "Oi"),
        &[],
    )?;
    ensure(r.json()?["reason"] == "event", r.body.clone())
}

fn hs256(key: &str, now: u64, age: u64) -> Result<String, Failed> {
    use std::io::Write;
    let b64 = |s: &[u8]| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in s.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let iat = now - age;
    let signing = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(format!(
            r#"{{"iat":{iat},"exp":{},"app":"evolution","action":"webhook"}}"#,
            iat + 600
        )
        .as_bytes())
    );
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-hmac", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(signing.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let mac = child.wait_with_output().map_err(|e| e.to_string())?.stdout;
    Ok(format!("{signing}.{}", b64(&mac)))
}

pub fn each_auth_mode(rt: &Runtime) -> Result<(), Failed> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let without_key = |id: &str| payload(id, &number(), "Oi").replace(API_KEY, "");
    let bearer = format!("Bearer {TOKEN}");
    let jwt = format!("Bearer {}", hs256(JWT_KEY, now, 30)?);
    let old_jwt = format!("Bearer {}", hs256(JWT_KEY, now, 1_200)?);
    let wrong_jwt = format!(
        "Bearer {}",
        hs256("another-key-entirely-0123456789abcdef", now, 30)?
    );
    for (name, headers, body, want) in [
        (
            "body apikey",
            vec![],
            payload(&message_id("au"), &number(), "Oi"),
            200,
        ),
        (
            "wrong body apikey",
            vec![],
            payload(&message_id("au"), &number(), "Oi")
                .replace(API_KEY, "B6D2F1E0-0000-0000-0000-000000000000"),
            401,
        ),
        ("missing", vec![], without_key(&message_id("au")), 401),
        (
            "bearer token",
            vec![("authorization", bearer.as_str())],
            without_key(&message_id("au")),
            200,
        ),
        (
            "x-webhook-token",
            vec![("x-webhook-token", TOKEN)],
            without_key(&message_id("au")),
            200,
        ),
        (
            "wrong token",
            vec![("x-webhook-token", "e2e-webhook-token-wrong")],
            without_key(&message_id("au")),
            401,
        ),
        (
            "jwt",
            vec![("authorization", jwt.as_str())],
            without_key(&message_id("au")),
            200,
        ),
        (
            "jwt older than 10 minutes",
            vec![("authorization", old_jwt.as_str())],
            without_key(&message_id("au")),
            401,
        ),
        (
            "jwt with another key",
            vec![("authorization", wrong_jwt.as_str())],
            without_key(&message_id("au")),
            401,
        ),
    ] {
        let r = deliver(rt, "/webhook", &body, &headers)?;
        ensure(r.status == want, format!("{name}: {} {}", r.status, r.body))?;
    }
    Ok(())
}

pub fn malformed_oversized_and_sender_limit(rt: &Runtime) -> Result<(), Failed> {
    let r = deliver(rt, "/webhook", "{\"event\":\"messages.upsert\",", &[])?;
    ensure(r.status == 400, format!("malformed: {}", r.status))?;
    let missing = serde_json::json!({"event": "messages.upsert", "instance": "centro-principal", "apikey": API_KEY,
        "data": {"key": {"remoteJid": "5511@s.whatsapp.net", "fromMe": false}, "message": {"conversation": "x"}}});
    let r = deliver(rt, "/webhook", &missing.to_string(), &[])?;
    ensure(
        r.status == 400,
        format!("missing key.id: {} {}", r.status, r.body),
    )?;
    // Deep nesting: serde_json's limit (128 levels) within the stack the function has, and
    // past it; a 400 each time, never a trap (500) of a stack too small.
    for depth in [127, 20_000] {
        let nested = format!(
            "{{\"event\":\"messages.upsert\",\"instance\":\"centro-principal\",\"data\":{}1{}}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        let r = deliver(rt, "/webhook", &nested, &[])?;
        ensure(
            r.status == 400 && r.json()?["error"]["code"].is_string(),
            format!("{depth} nested objects: {} {}", r.status, r.body),
        )?;
    }
    let big = payload(&message_id("big"), &number(), &"a".repeat(300 * 1024));
    let r = deliver(rt, "/webhook", &big, &[])?;
    ensure(r.status == 413, format!("oversized: {}", r.status))?;
    // Burst 3: the 4th and 5th are stored, not answered by the AI; one "please wait".
    // Windows are fixed and aligned to the epoch (15/min with burst 3: 12 s), so on a loaded
    // machine five deliveries could straddle a boundary and get a fresh burst: start them
    // at the beginning of a window.
    start_of_sender_window(Duration::from_secs(12));
    let n = number();
    let ids: Vec<String> = (0..5).map(|_| message_id("rl")).collect();
    for id in &ids {
        let r = deliver(rt, "/webhook", &payload(id, &n, "Oi"), &[])?;
        ensure(r.status == 200, format!("limited delivery: {}", r.status))?;
    }
    for id in &ids {
        replied(rt, id)?;
    }
    let sent = sends_to(&n, 5, Duration::from_secs(3))?;
    let waits = sent
        .iter()
        .filter(|r| text_of(r).contains("aguarde"))
        .count();
    ensure(
        sent.len() == 4 && waits == 1,
        format!("{} sends, {waits} please-wait", sent.len()),
    )?;
    let stored = rt.proxy().query(&format!(
        "SELECT count(*) FROM messages WHERE direction = 'inbound' AND contact = '{n}@s.whatsapp.net'"
    ))?;
    ensure(stored == ["5"], format!("stored: {stored:?}"))
}

pub fn answered_before_the_work(rt: &Runtime) -> Result<(), Failed> {
    let f = fakes()?;
    f.openai
        .script([Scripted::delayed(Duration::from_millis(1_500))]);
    let n = number();
    let started = Instant::now();
    let r = deliver(rt, "/webhook", &payload(&message_id("tm"), &n, "Oi"), &[])?;
    let answered = started.elapsed();
    ensure(r.status == 200, format!("status {}", r.status))?;
    let sent = sends_to(&n, 1, Duration::from_secs(10))?;
    let (at, _) = f
        .evolution
        .received_with(&format!("\"number\":\"{n}\""))
        .into_iter()
        .next()
        .ok_or("no sendText")?;
    let replied_after = at.duration_since(started);
    eprintln!(
        "e2e: {}: webhook answered in {} ms; the reply reached Evolution after {} ms",
        rt.kind.name(),
        answered.as_millis(),
        replied_after.as_millis()
    );
    ensure(sent.len() == 1, "one reply")?;
    ensure(
        answered < Duration::from_millis(1_200) && replied_after >= Duration::from_millis(1_500),
        format!("the caller waited for the work: answered after {answered:?}, reply after {replied_after:?}"),
    )
}

pub fn proxy_outage_then_exactly_once(rt: &Runtime) -> Result<(), Failed> {
    let deliveries: Vec<(String, String)> = (0..20).map(|_| (message_id("po"), number())).collect();
    rt.proxy().stop();
    let mut outcome = Ok(());
    for (id, n) in &deliveries {
        let r = deliver(rt, "/webhook", &payload(id, n, "Oi"), &[])?;
        if r.status != 503 || r.header("retry-after").is_empty() {
            outcome = Err(format!(
                "{id}: {} with retry-after {:?}",
                r.status,
                r.header("retry-after")
            ));
            break;
        }
    }
    rt.proxy().resume().map_err(|e| e.to_string())?;
    outcome?;
    for (id, n) in &deliveries {
        let r = deliver(rt, "/webhook", &payload(id, n, "Oi"), &[])?;
        ensure(
            r.status == 200,
            format!("retry {id}: {} {}", r.status, r.body),
        )?;
    }
    for (id, _) in &deliveries {
        replied(rt, id)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    for (_, n) in &deliveries {
        let sent = sends_to(n, 2, Duration::from_millis(10))?;
        ensure(sent.len() == 1, format!("{n}: {} replies", sent.len()))?;
    }
    Ok(())
}

pub fn logs_carry_no_text_number_or_key(rt: &Runtime) -> Result<(), Failed> {
    let n = number();
    let text = format!("Mensagem secreta {n}");
    deliver(rt, "/webhook", &payload(&message_id("lg"), &n, &text), &[])?;
    sends_to(&n, 1, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(500));
    let logs = rt
        .log_lines()
        .into_iter()
        .filter(|l| l.trim_start().starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    ensure(
        logs.contains("webhook_sent"),
        "the webhook's event lines are in the logs",
    )?;
    for (what, needle) in [
        ("message text", "Mensagem secreta"),
        ("phone number", n.as_str()),
        ("reply text", OPENAI_TEXT),
        ("Evolution key", API_KEY),
        ("webhook token", TOKEN),
        ("JWT key", JWT_KEY),
        ("OpenAI key", "E2Ewebhook0123456789"),
        ("fixture number", "5511987654321"),
    ] {
        ensure(
            !logs.contains(needle),
            format!("the {what} is in a log line"),
        )?;
    }
    Ok(())
}

/// Delivers a question of its own and waits for the built-in responder's answer (it names
/// the business hours); the question, for checking that no provider saw it.
fn answered_by_builtin(rt: &Runtime, tag: &str) -> Result<String, Failed> {
    let n = number();
    let id = message_id(tag);
    let question = format!("Qual o horário ({id})?");
    deliver(rt, "/webhook", &payload(&id, &n, &question), &[])?;
    let sent = sends_to(&n, 1, Duration::from_secs(10))?;
    ensure(
        sent.len() == 1 && text_of(&sent[0]).contains(HOURS),
        format!(
            "built-in answer: {:?}",
            sent.iter().map(text_of).collect::<Vec<_>>()
        ),
    )?;
    Ok(question)
}

pub fn budget_spent_uses_builtin(rt: &Runtime) -> Result<(), Failed> {
    let question = answered_by_builtin(rt, "bg")?;
    let f = fakes()?;
    ensure(
        f.openai.received_with(&question).is_empty(),
        "a provider was called with the budget spent",
    )?;
    let warned = rt
        .log_lines()
        .iter()
        .filter(|l| l.contains("llm_daily_budget_spent"))
        .count();
    ensure(warned == 1, format!("{warned} budget warnings"))
}

pub fn no_keys_uses_builtin(rt: &Runtime) -> Result<(), Failed> {
    let question = answered_by_builtin(rt, "nk")?;
    let f = fakes()?;
    ensure(
        f.openai.received_with(&question).is_empty()
            && f.anthropic.received_with(&question).is_empty(),
        "a provider was called without keys",
    )
}
