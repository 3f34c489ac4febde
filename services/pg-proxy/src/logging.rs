//! JSON-line logs on stdout with a redaction pass.
//!
//! Every line goes through [`redact`] before it is written: the values of DATABASE_URL, its
//! password and the HMAC keys are masked wherever they appear, and so is the password part
//! of any `scheme://user:password@host` URL. Handlers never log bodies or headers.

use std::io::{self, Write};
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

const MASK: &str = "[redacted]";

/// Masks known secret values and URL passwords in `line`.
pub fn redact(line: &str) -> String {
    let mut out = line.to_owned();
    if let Some(secrets) = SECRETS.get() {
        for s in secrets {
            // Very short "secrets" would mask ordinary words; keys and URLs are long.
            if s.len() >= 6 && out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
    }
    mask_url_passwords(&out)
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
    let _ = SECRETS.set(secrets.into_iter().filter(|s| !s.is_empty()).collect());
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
}
