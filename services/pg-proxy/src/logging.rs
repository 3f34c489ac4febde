//! JSON-line logs on stdout with a redaction pass.
//!
//! Every line goes through [`redact`] before it is written: the shared `log-redact` crate
//! (`shared/log-redact`, the same pass as the edge functions'). It masks the known secret
//! values (DATABASE_URL, its password, the HMAC keys) in every form they can take in a line
//! (as written, JSON-escaped once and twice, percent-encoded, base64 at each alignment, as in
//! a Basic credential), secret-named fields (a quoted value up to its unescaped closing quote,
//! an unquoted one up to the next field, so `password=correct horse user=x` masks `correct
//! horse`), key shapes and `Bearer` tokens, and the password of any `scheme://user:pw@host`.
//!
//! Handlers never log bodies or headers; this pass is the net under that rule.

use std::io::{self, Write};
use std::sync::OnceLock;

use log_redact::Redactor;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

static REDACTOR: OnceLock<Redactor> = OnceLock::new();

/// Masks known secret values, secret-named fields and URL passwords in `line`, with the
/// secrets given to [`init`].
pub fn redact(line: &str) -> String {
    match REDACTOR.get() {
        Some(r) => r.redact(line),
        None => log_redact::redact_shapes(line),
    }
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
    let _ = REDACTOR.set(Redactor::new(secrets));
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
    fn lines_are_redacted_with_the_shared_pass_even_before_init() {
        let line = r#"{"cause":"connect postgres://app:s3cr3t@db/app","password":"a \"b\" c"}"#;
        let out = redact(line);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(" c"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
    }
}
