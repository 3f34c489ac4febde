//! The redaction pass every log line goes through before it is written, on the edge and in
//! the proxy. Four passes:
//!
//! 1. **Configured secret values** are masked in every form they can take in a line: as
//!    written, JSON-escaped (once and twice: a secret with `"` or `\` inside a JSON string, or
//!    inside an error text that was itself a JSON string), percent-encoded (upper- and
//!    lower-case hex, and the form encoding with `+`), and base64 (standard and URL-safe, at
//!    each of the three byte alignments it can have inside a longer encoded value such as a
//!    Basic credential).
//! 2. **Key shapes** (`sk-…`, `gsk_…`, `AIza…`, `xoxb-…`) and whatever follows `Bearer `.
//! 3. **Secret-named fields** (`password`, `secret`, `token`, `api_key`, `authorization`, …,
//!    also as the last part of a longer key such as `db_password` or `PROXY_HMAC_KEY`): a
//!    quoted value up to its unescaped closing quote (also inside an escaped JSON string), an
//!    unquoted value up to the next separator or the next `key=`, so `password=correct horse
//!    user=x` masks `correct horse`.
//! 4. The password part of any `scheme://user:password@host` URL.
//!
//! Hand-written scanning rather than a regex engine keeps every wasm artifact small. Callers
//! never log bodies or headers; this pass is the net under that rule.

use std::sync::OnceLock;

use base64::Engine;

/// What replaces a secret.
pub const MASK: &str = "[redacted]";

/// Very short "secrets" would mask ordinary words; keys and URLs are long.
const MIN_SECRET_LEN: usize = 6;

/// Key prefixes whose following token is masked, with the shortest token that counts.
const KEY_PREFIXES: &[(&str, usize)] = &[("sk-", 16), ("gsk_", 20), ("AIza", 20), ("xoxb-", 10)];

/// Masks configured secrets and secret-shaped text in log lines.
///
/// The encoded forms of the secrets are computed on the first line that is redacted, not when
/// the redactor is made: a Spin instance that logs nothing never pays for them.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
    needles: OnceLock<Vec<String>>,
}

/// Never prints a secret: only how many there are.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Redactor {
    fn clone(&self) -> Self {
        Self {
            secrets: self.secrets.clone(),
            needles: self.needles.clone(),
        }
    }
}

impl Redactor {
    /// A redactor for these configured secret values (empty and very short ones are skipped).
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let secrets = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| s.len() >= MIN_SECRET_LEN)
            .collect();
        Self {
            secrets,
            needles: OnceLock::new(),
        }
    }

    fn needles(&self) -> &[String] {
        self.needles.get_or_init(|| {
            let mut needles = Vec::new();
            for s in &self.secrets {
                let once = json_escaped(s);
                let twice = json_escaped(&once);
                needles.extend([s.clone(), once, twice]);
                needles.extend(percent_forms(s));
                needles.extend(base64_cores(s.as_bytes()));
            }
            needles.retain(|n| n.len() >= MIN_SECRET_LEN);
            // Longest first, so a longer form is masked before a shorter one inside it.
            needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            needles.dedup();
            needles
        })
    }

    /// `line` with every form of every secret, key shapes, secret-named fields and URL
    /// passwords masked.
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        if !self.secrets.is_empty() {
            for n in self.needles() {
                if out.contains(n.as_str()) {
                    out = out.replace(n.as_str(), MASK);
                }
            }
        }
        redact_shapes(&out)
    }
}

/// Passes 2–4 only (no configured secrets).
pub fn redact_shapes(line: &str) -> String {
    let mut out = line.to_owned();
    for (prefix, min) in KEY_PREFIXES {
        out = mask_after(&out, prefix, *min, false);
    }
    out = mask_after(&out, "bearer ", 1, true);
    mask_url_passwords(&mask_secret_fields(&out))
}

/// `s` as it appears inside a JSON string (without the quotes).
fn json_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoded with upper-case hex, lower-case hex, and the form encoding (`+` for space);
/// every byte but ASCII letters and digits is encoded.
fn percent_forms(s: &str) -> [String; 3] {
    const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let encode = |hex: &[u8; 16], space_plus: bool| {
        let mut out = String::with_capacity(s.len() * 3);
        for &b in s.as_bytes() {
            if b.is_ascii_alphanumeric() {
                out.push(b as char);
            } else if space_plus && b == b' ' {
                out.push('+');
            } else {
                out.push('%');
                out.push(hex[usize::from(b >> 4)] as char);
                out.push(hex[usize::from(b & 15)] as char);
            }
        }
        out
    };
    [
        encode(HEX_UPPER, false),
        encode(HEX_LOWER, false),
        encode(HEX_UPPER, true),
    ]
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
            let first_group = usize::from(offset != 0);
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

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Masks the token following each occurrence of `prefix` when it is at least `min` long.
fn mask_after(text: &str, prefix: &str, min: usize, ignore_case: bool) -> String {
    let hay = if ignore_case {
        text.to_ascii_lowercase()
    } else {
        text.to_owned()
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = hay[pos..].find(prefix) {
        let start = pos + found;
        let token_start = start + prefix.len();
        let mut end = token_start;
        while end < bytes.len() && is_token_byte(bytes[end]) {
            end += 1;
        }
        out.push_str(&text[pos..token_start]);
        if end - token_start >= min {
            out.push_str(MASK);
        } else {
            out.push_str(&text[token_start..end]);
        }
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Words that make a field secret, as a whole part of its name (split at `_`, `-`, `.`) or as
/// the end of it: `password`, `db_password`, `X-Api-Key`, `PROXY_HMAC_KEY`, `sessionToken`;
/// not `secrets_valid` or `tokens_used`, which are counts.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "hmac",
    "cookie",
];
/// Two-part names (`api_key`, `private-key`).
const SECRET_PAIRS: &[(&str, &str)] = &[("api", "key"), ("private", "key")];

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    if SECRET_WORDS.iter().any(|w| lower.ends_with(w)) {
        return true;
    }
    let parts: Vec<&str> = lower.split(['_', '-', '.']).collect();
    parts.iter().any(|p| SECRET_WORDS.contains(p))
        || parts
            .windows(2)
            .any(|w| SECRET_PAIRS.iter().any(|(a, b)| w[0] == *a && w[1] == *b))
}

/// Number of backslashes directly before `i`.
fn backslashes_before(b: &[u8], i: usize) -> usize {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count()
}

/// The value starting at `start` (quotes excluded), given how it is quoted.
fn value_span(b: &[u8], start: usize) -> (usize, usize) {
    let rest = &b[start..];
    if rest.starts_with(b"\\\"") {
        // A quoted value inside an escaped JSON string: ends at the next `\"` whose own
        // backslash is unescaped, or where the enclosing JSON string ends.
        let from = start + 2;
        let mut i = from;
        while i < b.len() {
            if b[i] == b'"' && b[i - 1] == b'\\' && backslashes_before(b, i) % 4 == 1 {
                return (from, i - 1);
            }
            if b[i] == b'"' && backslashes_before(b, i) % 2 == 0 {
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
                b'&' | b';' | b',' | b'}' | b'\n' | b'\r' => return (start, i),
                b'"' => return (start, i - usize::from(i > start && b[i - 1] == b'\\')),
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
        // Skip the closing quote of a quoted key (`"key"` or `\"key\"`), then spaces.
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
        let (from, to) = value_span(b, j);
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

#[cfg(test)]
mod tests;
