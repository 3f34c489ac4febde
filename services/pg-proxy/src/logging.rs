//! JSON-line logs on stdout with a redaction pass.
//!
//! Every line goes through [`redact`] before it is written. Three passes:
//! 1. **Known secret values** (DATABASE_URL, its password, the HMAC keys) are masked in every
//!    form they can take in a line: as written, JSON-escaped (once and twice: a secret with `"`
//!    or `\` inside a JSON string, or inside an error text that was itself a JSON string),
//!    percent-encoded (upper- and lower-case hex, and the form encoding with `+`), and base64
//!    (standard and URL-safe, at each of the three byte alignments it can have inside a longer
//!    encoded value such as a Basic credential).
//! 2. **Secret-named fields** (`password`, `secret`, `token`, `authorization`, …) have their
//!    value masked: a quoted value up to its unescaped closing quote (also inside an escaped
//!    JSON string), an unquoted value up to the next separator or the next `key=` — so
//!    `password=correct horse user=x` masks `correct horse`.
//! 3. The password part of any `scheme://user:password@host` URL.
//!
//! Handlers never log bodies or headers; this pass is the net under that rule.

use std::io::{self, Write};
use std::sync::OnceLock;

use base64::Engine;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

const MASK: &str = "[redacted]";

/// Very short "secrets" would mask ordinary words; keys and URLs are long.
const MIN_SECRET_LEN: usize = 6;

/// The forms of the configured secrets to mask, longest first (so a longer form is masked
/// before a shorter one that it contains).
#[derive(Debug, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

static REDACTOR: OnceLock<Redactor> = OnceLock::new();

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

fn percent_forms(s: &str) -> [String; 3] {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let upper = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut lower = String::with_capacity(upper.len());
    let mut hex_left = 0;
    for c in upper.chars() {
        if c == '%' {
            hex_left = 2;
            lower.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            lower.push(c.to_ascii_lowercase());
        } else {
            lower.push(c);
        }
    }
    let form = upper.replace("%20", "+");
    [upper, lower, form]
}

/// The part of base64(prefix + secret + suffix) that depends only on the secret, for each of
/// the three positions (mod 3) the secret can start at inside a longer encoded value: the
/// characters touched by the prefix and by the unknown following bytes are dropped.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut out = Vec::new();
    for engine in engines {
        for offset in 0..3usize {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(secret);
            // Only whole 3-byte groups after the prefix group depend on known bytes alone.
            let first_group = if offset == 0 { 0 } else { 1 };
            let whole_groups = buf.len() / 3;
            if whole_groups <= first_group {
                continue;
            }
            let encoded = engine.encode(&buf[..whole_groups * 3]);
            let core = &encoded[first_group * 4..];
            if core.len() >= 8 {
                out.push(core.to_owned());
            }
        }
    }
    out
}

impl Redactor {
    /// Builds the needle list for `secrets` (empty and very short values are ignored).
    pub fn new(secrets: &[String]) -> Self {
        let mut needles = Vec::new();
        for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
            let once = json_escaped(s);
            let twice = json_escaped(&once);
            needles.extend([s.clone(), once, twice]);
            needles.extend(percent_forms(s));
            needles.extend(base64_cores(s.as_bytes()));
        }
        needles.retain(|n| n.len() >= MIN_SECRET_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Masks every form of every secret, secret-named fields and URL passwords in `line`.
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        mask_url_passwords(&mask_secret_fields(&out))
    }
}

/// Masks known secret values, secret-named fields and URL passwords in `line`, with the
/// secrets given to [`init`].
pub fn redact(line: &str) -> String {
    match REDACTOR.get() {
        Some(r) => r.redact(line),
        None => mask_url_passwords(&mask_secret_fields(line)),
    }
}

/// Field names whose values are secret, matched case-insensitively inside the key (so
/// `db_password`, `X-Api-Key` and `PROXY_HMAC_KEY` count).
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "hmac",
    "private_key",
    "cookie",
];

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|p| lower.contains(p))
}

/// Number of backslashes directly before `i`.
fn backslashes_before(b: &[u8], i: usize) -> usize {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count()
}

/// End (exclusive) of a value that starts at `start`, given how it is quoted. `depth` is how
/// many JSON string levels the text sits in (a quote at depth 1 is written `\"`).
fn value_end(b: &[u8], start: usize) -> (usize, usize) {
    // Returns (value_start, value_end) with the quotes excluded.
    let rest = &b[start..];
    if rest.starts_with(b"\\\"") {
        // A quoted value inside an escaped JSON string: ends at the next `\"` whose backslash
        // is itself unescaped (an odd run of backslashes before the quote, of length 1 mod 2
        // beyond the escaping of the quote itself).
        let from = start + 2;
        let mut i = from;
        while i < b.len() {
            if b[i] == b'"' && b[i - 1] == b'\\' && backslashes_before(b, i) % 4 == 1 {
                return (from, i - 1);
            }
            if b[i] == b'"' && backslashes_before(b, i) % 2 == 0 {
                // The enclosing JSON string ends first.
                return (from, i);
            }
            i += 1;
        }
        (from, b.len())
    } else if rest.first() == Some(&b'"') || rest.first() == Some(&b'\'') {
        let q = rest[0];
        let from = start + 1;
        let mut i = from;
        while i < b.len() {
            if b[i] == q && backslashes_before(b, i) % 2 == 0 {
                return (from, i);
            }
            i += 1;
        }
        (from, b.len())
    } else {
        // Unquoted: up to a separator, the end of the enclosing JSON string, or the next
        // `key=` / `key:` after a space (so a value with spaces is masked whole).
        let mut i = start;
        while i < b.len() {
            match b[i] {
                b'&' | b';' | b',' | b'\n' | b'\r' => return (start, i),
                b'"' => return (start, i - usize::from(b[i - 1] == b'\\')),
                b' ' => {
                    let mut j = i + 1;
                    while j < b.len() && is_key_byte(b[j]) {
                        j += 1;
                    }
                    if j > i + 1 && j < b.len() && matches!(b[j], b'=' | b':') {
                        return (start, i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        (start, b.len())
    }
}

/// Masks the value of every secret-named field: `"password":"…"`, `password=…`,
/// `Authorization: …`, also inside escaped JSON strings.
fn mask_secret_fields(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !is_key_byte(b[i]) || (i > 0 && is_key_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let key_start = i;
        while i < b.len() && is_key_byte(b[i]) {
            i += 1;
        }
        let key = &text[key_start..i];
        // Skip a closing quote of a quoted key (`"key"` or `\"key\"`), then spaces.
        let mut j = i;
        if b[j..].starts_with(b"\\\"") {
            j += 2;
        } else if j < b.len() && b[j] == b'"' {
            j += 1;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j >= b.len() || !matches!(b[j], b'=' | b':') || !is_secret_key(key) {
            continue;
        }
        j += 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let (from, to) = value_end(b, j);
        if to > from {
            out.push_str(&text[copied..from]);
            out.push_str(MASK);
            copied = to;
        }
        i = to.max(j);
    }
    out.push_str(&text[copied..]);
    out
}

/// `postgres://user:pw@host` → `postgres://user:[redacted]@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Stdout writer that redacts each formatted event (the fmt layer writes one event per
/// `write_all` call).
pub struct RedactingStdout;

impl Write for RedactingStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stdout().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

struct MakeRedacting;

impl<'a> MakeWriter<'a> for MakeRedacting {
    type Writer = RedactingStdout;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStdout
    }
}

/// Installs the JSON logger. `secrets` are masked in every line. The level comes from
/// RUST_LOG, else `debug` when DEBUG=true, else `info`.
pub fn init(secrets: Vec<String>) {
    let _ = REDACTOR.set(Redactor::new(&secrets));
    let debug = std::env::var("DEBUG").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},tokio_postgres=warn,hyper=warn,h2=warn,tower=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(MakeRedacting)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Formats `value` the way the JSON logger does: as a JSON string field.
    fn json_line(value: &str) -> String {
        serde_json::json!({ "level": "INFO", "cause": value }).to_string()
    }

    #[test]
    fn url_passwords_are_masked_anywhere_in_a_line() {
        let line = r#"{"cause":"connect postgres://app:s3cr3t@db:5432/app failed"}"#;
        assert_eq!(
            mask_url_passwords(line),
            r#"{"cause":"connect postgres://app:[redacted]@db:5432/app failed"}"#
        );
    }

    #[test]
    fn urls_without_passwords_are_left_alone() {
        let line = "see https://example.com:8443/x and postgres://app@db/app";
        assert_eq!(mask_url_passwords(line), line);
    }

    #[test]
    fn a_secret_is_masked_as_written() {
        let r = redactor(&["hunter2hunter2"]);
        let out = r.redact(&json_line("key hunter2hunter2 used"));
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("key [redacted] used"), "{out}");
    }

    #[test]
    fn a_secret_with_quotes_and_backslashes_is_masked_in_its_json_escaped_form() {
        let secret = r#"pa"ss\word-123"#;
        let r = redactor(&[secret]);
        let line = json_line(&format!("failed with {secret}"));
        assert!(line.contains(r#"pa\"ss\\word-123"#), "{line}");
        let out = r.redact(&line);
        assert!(!out.contains("ss\\\\word"), "{out}");
        assert!(out.contains("failed with [redacted]"), "{out}");
        // Twice escaped: an error text that was itself a JSON string.
        let nested = json_line(&serde_json::json!({ "inner": secret }).to_string());
        let out = r.redact(&nested);
        assert!(!out.contains("word-123"), "{out}");
    }

    #[test]
    fn a_percent_encoded_secret_is_masked_in_either_hex_case_and_the_form_encoding() {
        let secret = "p@ss w/rd:42!";
        let r = redactor(&[secret]);
        for encoded in [
            "p%40ss%20w%2Frd%3A42%21",
            "p%40ss%20w%2frd%3a42%21",
            "p%40ss+w%2Frd%3A42%21",
        ] {
            let out = r.redact(&json_line(&format!("url ?pw={encoded}&x=1")));
            assert!(!out.contains(encoded), "{out}");
            assert!(!out.contains("w%2") && !out.contains("rd%3"), "{out}");
        }
    }

    #[test]
    fn a_base64_encoded_secret_is_masked_also_inside_a_basic_credential() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = "Sup3r-Secret-Value!";
        let r = redactor(&[secret]);
        for user in ["", "a", "ab", "admin"] {
            let basic = STANDARD.encode(format!("{user}:{secret}"));
            let out = r.redact(&json_line(&format!("Basic {basic} rejected")));
            assert!(!out.contains(&basic), "{user}: {out}");
            // What is left around the mask cannot give the secret back.
            assert!(out.contains("[redacted]"), "{out}");
        }
        let alone = URL_SAFE.encode(secret);
        let out = r.redact(&json_line(&format!("token {alone}")));
        assert!(!out.contains(&alone[..alone.len() - 4]), "{out}");
    }

    #[test]
    fn a_quoted_secret_field_is_masked_up_to_its_unescaped_closing_quote() {
        let line = r#"{"password":"a \"quoted\" \\ pass","user":"ana"}"#;
        assert_eq!(
            mask_secret_fields(line),
            r#"{"password":"[redacted]","user":"ana"}"#
        );
        // Inside an escaped JSON string (an error text that quotes a JSON body).
        let nested = json_line(r#"body {"password":"x\"y z","user":"ana"}"#);
        let out = mask_secret_fields(&nested);
        assert!(!out.contains("x\\\\\\\"y") && !out.contains("y z"), "{out}");
        assert!(out.contains("ana"), "{out}");
        let single = "api_key='abc def' next";
        assert_eq!(mask_secret_fields(single), "api_key='[redacted]' next");
    }

    #[test]
    fn an_unquoted_secret_field_is_masked_whole_up_to_the_next_field() {
        assert_eq!(
            mask_secret_fields("login password=correct horse battery user=ana"),
            "login password=[redacted] user=ana"
        );
        assert_eq!(
            mask_secret_fields("dsn host=db password=correct horse"),
            "dsn host=db password=[redacted]"
        );
        assert_eq!(
            mask_secret_fields("q?token=abc def&page=2"),
            "q?token=[redacted]&page=2"
        );
        let line = json_line("connect failed: password=correct horse staple");
        let out = mask_secret_fields(&line);
        assert!(!out.contains("horse"), "{out}");
        assert!(out.contains(r#"password=[redacted]","#), "{out}");
    }

    #[test]
    fn authorization_values_and_secret_named_keys_are_masked_but_other_fields_are_not() {
        assert_eq!(
            mask_secret_fields("Authorization: Bearer abc.def.ghi"),
            "Authorization: [redacted]"
        );
        assert_eq!(
            mask_secret_fields(r#"{"PROXY_HMAC_KEY":"00ff","status":200,"path":"/v1/x"}"#),
            r#"{"PROXY_HMAC_KEY":"[redacted]","status":200,"path":"/v1/x"}"#
        );
        let plain = r#"{"level":"INFO","request_id":"t-1","method":"POST","status":201}"#;
        assert_eq!(mask_secret_fields(plain), plain);
    }

    #[test]
    fn short_secrets_are_not_masked_so_ordinary_words_survive() {
        let r = redactor(&["abc", ""]);
        assert_eq!(r.redact("abc def"), "abc def");
    }
}
