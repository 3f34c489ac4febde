//! JSON log lines: one access line per request plus event lines.
//!
//! Lines never contain headers, bodies, cookies, tokens or query strings (a query can carry a
//! token); only the path. Everything goes through [`emit`], the single point where lines are
//! written, so redaction applies to every line alike.

use serde_json::{Map, Value};

use crate::ports::LogSink;

/// Severity of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine.
    Info,
    /// Something an operator should look at.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What one access line records.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// Request start, unix milliseconds.
    pub ts_ms: u64,
    /// Function name.
    pub function: &'a str,
    /// The request id echoed to the caller.
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path only, never the query.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Wall time spent, milliseconds.
    pub duration_ms: u64,
}

/// Writes the access line for one request: the same bytes `serde_json` writes for the object
/// (keys in name order, no spaces), written straight into one buffer. It is on every request,
/// and building a JSON map to print it was a tenth of a request's guest time.
pub fn access(sink: &dyn LogSink, a: &Access<'_>) {
    let level = match a.status {
        500..=599 => Level::Error,
        _ => Level::Info,
    };
    let mut line = Vec::with_capacity(
        128 + a.function.len() + a.request_id.len() + a.method.len() + a.path.len(),
    );
    line.extend_from_slice(b"{\"duration_ms\":");
    line.extend_from_slice(a.duration_ms.to_string().as_bytes());
    line.extend_from_slice(b",\"fn\":");
    push_json_str(&mut line, a.function);
    line.extend_from_slice(b",\"level\":\"");
    line.extend_from_slice(level.as_str().as_bytes());
    line.extend_from_slice(b"\",\"method\":");
    push_json_str(&mut line, a.method);
    line.extend_from_slice(b",\"path\":");
    push_json_str(&mut line, a.path);
    line.extend_from_slice(b",\"request_id\":");
    push_json_str(&mut line, a.request_id);
    line.extend_from_slice(b",\"status\":");
    line.extend_from_slice(a.status.to_string().as_bytes());
    line.extend_from_slice(b",\"ts\":\"");
    line.extend_from_slice(rfc3339_ms(a.ts_ms).as_bytes());
    line.extend_from_slice(b"\"}");
    // Only UTF-8 went in (the escapes keep every character), so this never replaces anything.
    emit(sink, &String::from_utf8_lossy(&line));
}

/// Appends `s` as a JSON string, quoted and escaped exactly as `serde_json` does.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    log_redact::json_escape_into(s.as_bytes(), out);
    out.push(b'"');
}

/// Writes an event line: `event` is a stable slug, `fields` extra secret-free context.
pub fn event(
    sink: &dyn LogSink,
    ts_ms: u64,
    level: Level,
    function: &str,
    request_id: &str,
    event: &str,
    fields: Map<String, Value>,
) {
    let mut line = Map::new();
    line.insert("ts".into(), rfc3339_ms(ts_ms).into());
    line.insert("level".into(), level.as_str().into());
    line.insert("fn".into(), function.into());
    line.insert("request_id".into(), request_id.into());
    line.insert("event".into(), event.into());
    line.extend(fields);
    emit(sink, &Value::Object(line).to_string());
}

/// The single point where lines leave the process.
fn emit(sink: &dyn LogSink, line: &str) {
    sink.write(line);
}

/// Formats unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLog;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_833_045_678), "2026-11-28T02:30:45.678Z");
    }

    /// The one line [`access`] writes for a GET of `path` by health, request `r1` at 0.
    fn access_line(path: &str, duration_ms: u64) -> String {
        let log = MemoryLog::default();
        access(
            &log,
            &Access {
                ts_ms: 0,
                function: "health",
                request_id: "r1",
                method: "GET",
                path,
                status: 200,
                duration_ms,
            },
        );
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        lines[0].clone()
    }

    #[test]
    fn access_line_is_one_json_object_with_the_required_fields() {
        let line = access_line("/health", 3);
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        for key in [
            "ts",
            "level",
            "fn",
            "request_id",
            "method",
            "path",
            "status",
            "duration_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["level"], "info");
        // The exact bytes: keys in name order, no spaces (what log pipelines have parsed so far).
        assert_eq!(
            line,
            r#"{"duration_ms":3,"fn":"health","level":"info","method":"GET","path":"/health","request_id":"r1","status":200,"ts":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn access_line_fields_are_json_escaped() {
        let v: Value = serde_json::from_str(&access_line("/a\"b\\c\n", 0)).unwrap_or_default();
        assert_eq!(v["path"], "/a\"b\\c\n");
    }

    #[test]
    fn access_line_is_byte_for_byte_what_serde_json_writes() {
        for path in [
            "/",
            "/a\"b\\c",
            "/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}",
            "/é€𝄞/%2F+",
            "</script>",
        ] {
            let expected = serde_json::json!({
                "ts": rfc3339_ms(1_795_833_045_678),
                "level": "error",
                "fn": "fn\"x",
                "request_id": path,
                "method": "GET",
                "path": path,
                "status": 503,
                "duration_ms": u64::MAX,
            })
            .to_string();
            let log = MemoryLog::default();
            access(
                &log,
                &Access {
                    ts_ms: 1_795_833_045_678,
                    function: "fn\"x",
                    request_id: path,
                    method: "GET",
                    path,
                    status: 503,
                    duration_ms: u64::MAX,
                },
            );
            assert_eq!(log.lines(), vec![expected]);
        }
    }

    #[test]
    fn server_errors_log_at_error_level() {
        let log = MemoryLog::default();
        access(
            &log,
            &Access {
                ts_ms: 0,
                function: "f",
                request_id: "r",
                method: "GET",
                path: "/",
                status: 503,
                duration_ms: 0,
            },
        );
        assert!(log.lines()[0].contains(r#""level":"error""#));
    }
}
