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
use std::time::{Duration, SystemTime};

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

/// One request's access line, as the JSON logger would write it for
/// `tracing::info!(fn, request_id, method, path, status, duration_ms, "request")`, with the
/// same keys in the same order and the same timestamp format.
pub struct Access<'a> {
    /// The request id (the edge's, or one made here).
    pub request_id: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Time from the request head to the response.
    pub duration: Duration,
}

impl Access<'_> {
    /// The line (UTF-8), newline included, stamped `now` (the timestamp as `tracing-subscriber`
    /// writes it: `2026-12-05T07:29:35.598181Z`, UTC, microseconds).
    ///
    /// Written by hand rather than through `tracing`: on the loopback benchmark the tracing
    /// event (field visitor, JSON serialiser, then [`redact`] over the whole line) and its
    /// write were a fifth of the proxy's CPU per history read. The redaction pass still sees
    /// every byte that did not come from this function's own text: each value that comes from
    /// the request (its id, method and path) goes through [`redact`] before it is escaped
    /// into the line, so a secret in any of them is masked as it would be in a whole-line
    /// pass (whose field rule masks values by their key, and these keys are not secret).
    pub fn line(&self, now: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(224);
        // Writes into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":\"request\",\"fn\":\"pg-proxy\",\"request_id\":\"",
            humantime::format_rfc3339_micros(now)
        );
        push_redacted_json(&mut out, self.request_id);
        out.extend_from_slice(b"\",\"method\":\"");
        push_redacted_json(&mut out, self.method);
        out.extend_from_slice(b"\",\"path\":\"");
        push_redacted_json(&mut out, self.path);
        out.extend_from_slice(b"\",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        // Microsecond precision, as a JSON number (Display of a finite f64 is one).
        let micros = self.duration.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = writeln!(out, ",\"duration_ms\":{}}}", micros as f64 / 1000.0);
        out
    }

    /// Writes the line to stdout in one write (the same stream as every other line).
    pub fn write(&self) {
        let line = self.line(SystemTime::now());
        let _ = io::stdout().lock().write_all(&line);
    }
}

/// `value`, redacted, escaped as the inside of a JSON string, appended to `out`.
fn push_redacted_json(out: &mut Vec<u8>, value: &str) {
    log_redact::json_escape_into(redact(value).as_bytes(), out);
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
    use std::time::UNIX_EPOCH;

    fn access<'a>(request_id: &'a str, path: &'a str) -> Access<'a> {
        Access {
            request_id,
            method: "GET",
            path,
            status: 200,
            duration: Duration::from_micros(1234),
        }
    }

    fn line_at(access: &Access<'_>, t: SystemTime) -> String {
        String::from_utf8(access.line(t)).expect("the access line is UTF-8")
    }

    #[test]
    fn the_access_line_has_the_tracing_shape_and_timestamp() {
        // 2026-12-05T07:29:35.598181Z
        let t = UNIX_EPOCH + Duration::from_micros(1_796_455_775_598_181);
        let line = line_at(&access("edge-1", "/v1/conversations/history"), t);
        assert_eq!(
            line,
            "{\"timestamp\":\"2026-12-05T07:29:35.598181Z\",\"level\":\"INFO\",\"message\":\"request\",\
             \"fn\":\"pg-proxy\",\"request_id\":\"edge-1\",\"method\":\"GET\",\
             \"path\":\"/v1/conversations/history\",\"status\":200,\"duration_ms\":1.234}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["duration_ms"], 1.234);
        // Leap day and year ends, against the civil calendar.
        for (micros, want) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (1_767_225_599_999_999, "2025-12-31T23:59:59.999999Z"),
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z"),
        ] {
            let line = line_at(
                &access("edge-1", "/"),
                UNIX_EPOCH + Duration::from_micros(micros),
            );
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["timestamp"], want);
        }
    }

    #[test]
    fn secrets_in_the_request_id_or_path_are_masked_in_the_access_line() {
        // A key shape in the path, a URL password and a Bearer token: masked by the pass
        // every line gets. JSON stays valid whatever the path holds.
        for (id, path) in [
            ("edge-1", "/v1/sk-abcdefghijklmnopqrstuvwx"),
            ("sk-abcdefghijklmnopqrstuvwx", "/v1/ping"),
            ("edge-1", "/x/postgres://app:s3cr3tpw@db/app"),
            ("edge-1", "/a\"b\\c"),
        ] {
            let line = line_at(&access(id, path), SystemTime::now());
            assert!(!line.contains("abcdefghijklmnopqrstuvwx"), "{line}");
            assert!(!line.contains("s3cr3tpw"), "{line}");
            let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
            assert_eq!(v["status"], 200);
        }
    }

    #[test]
    fn lines_are_redacted_with_the_shared_pass_even_before_init() {
        let line = r#"{"cause":"connect postgres://app:s3cr3t@db/app","password":"a \"b\" c"}"#;
        let out = redact(line);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(" c"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
    }
}
