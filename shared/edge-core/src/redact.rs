//! The redaction pass every log line goes through before it is written: configured secret
//! values, then known key shapes (`sk-…`, `gsk_…`, `AIza…`, `Bearer …`, password fields).
//! Hand-written scanning rather than a regex engine keeps each wasm artifact small.

use crate::ports::LogSink;

/// What replaces a secret.
pub const MASK: &str = "[redacted]";

/// Shortest configured value treated as a secret to mask (shorter ones would mask ordinary
/// words such as `true` or `prod`).
const MIN_SECRET_LEN: usize = 8;

/// Key prefixes whose following token is masked, with the shortest token that counts.
const KEY_PREFIXES: &[(&str, usize)] = &[("sk-", 16), ("gsk_", 20), ("AIza", 20), ("xoxb-", 10)];

/// Masks secrets in text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

impl Redactor {
    /// A redactor for these configured secret values (short and empty ones are skipped).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with every secret masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        for (prefix, min) in KEY_PREFIXES {
            out = mask_after(&out, prefix, *min, false);
        }
        out = mask_after(&out, "bearer ", 1, true);
        for field in ["password", "passwd", "secret", "api_key", "apikey", "token"] {
            out = mask_field(&out, field);
        }
        out
    }
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

/// Masks the value of `"field": "…"` (JSON) and `field=…` (query/form) occurrences,
/// case-insensitively.
fn mask_field(text: &str, field: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(field) {
        let mut i = pos + found + field.len();
        // Optional closing quote of a JSON key, spaces, then ':' or '='.
        if bytes.get(i) == Some(&b'"') || bytes.get(i) == Some(&b'\\') {
            while bytes.get(i).is_some_and(|b| *b == b'"' || *b == b'\\') {
                i += 1;
            }
        }
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if !matches!(bytes.get(i), Some(b':') | Some(b'=')) {
            out.push_str(&text[pos..i.min(text.len())]);
            pos = i.min(text.len());
            continue;
        }
        i += 1;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let mut quoted = false;
        while bytes.get(i).is_some_and(|b| *b == b'"' || *b == b'\\') {
            quoted = true;
            i += 1;
        }
        let value_start = i;
        let mut end = value_start;
        while end < bytes.len() {
            let b = bytes[end];
            let stop = if quoted {
                b == b'"' || b == b'\\'
            } else {
                b == b'&' || b == b',' || b == b' ' || b == b'}' || b == b'"'
            };
            if stop {
                break;
            }
            end += 1;
        }
        out.push_str(&text[pos..value_start]);
        if end > value_start {
            out.push_str(MASK);
        }
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// A log sink that redacts every line before passing it on.
pub struct RedactingSink<'a> {
    inner: &'a dyn LogSink,
    redactor: &'a Redactor,
}

impl<'a> RedactingSink<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn LogSink, redactor: &'a Redactor) -> Self {
        Self { inner, redactor }
    }
}

impl LogSink for RedactingSink<'_> {
    fn write(&self, line: &str) {
        self.inner.write(&self.redactor.redact(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(["configured-secret-value-123".to_owned(), "short".to_owned()])
    }

    #[test]
    fn configured_secret_values_are_masked_anywhere() {
        let out = r().redact(r#"{"cause":"auth failed with configured-secret-value-123 at db"}"#);
        assert!(!out.contains("configured-secret-value-123"));
        assert!(out.contains(MASK));
    }

    #[test]
    fn short_configured_values_are_not_treated_as_secrets() {
        assert_eq!(r().redact("a short note"), "a short note");
    }

    #[test]
    fn provider_key_shapes_are_masked() {
        let text = "openai sk-proj-abcdefghijklmnop1234 groq gsk_abcdefghijklmnopqrstuvwxyz google AIzaSyA1234567890abcdefghij";
        let out = r().redact(text);
        for leaked in [
            "abcdefghijklmnop1234",
            "abcdefghijklmnopqrstuvwxyz",
            "SyA1234567890",
        ] {
            assert!(!out.contains(leaked), "{out}");
        }
        assert!(out.contains("sk-[redacted]"));
    }

    #[test]
    fn bearer_tokens_are_masked_case_insensitively() {
        let out = r().redact("Authorization: bearer eyJhbGciOi.payload.sig");
        assert!(!out.contains("eyJhbGciOi"));
        assert!(out.contains(MASK));
    }

    #[test]
    fn password_fields_are_masked_in_json_and_forms() {
        let out =
            r().redact(r#"{"username":"ana","password":"hunter2!"} and password=hunter3&x=1"#);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("hunter3"), "{out}");
        assert!(out.contains("ana"));
        assert!(out.contains("x=1"));
    }

    #[test]
    fn escaped_json_inside_a_log_field_is_masked_too() {
        let out = r().redact(r#"{"cause":"body {\"password\":\"hunter2\"}"}"#);
        assert!(!out.contains("hunter2"), "{out}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let line = r#"{"level":"info","path":"/health","status":200,"task":"sk-"}"#;
        assert_eq!(r().redact(line), line);
    }
}
