//! The redaction pass every log line goes through before it is written: the shared
//! `log-redact` crate (configured secret values in every encoded form, key shapes, `Bearer`,
//! secret-named fields, URL passwords), the same pass the proxy runs on its lines.

use crate::ports::LogSink;

pub use log_redact::{Redactor, MASK};

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
    use crate::memory::MemoryLog;

    #[test]
    fn every_line_through_the_sink_is_redacted() {
        let log = MemoryLog::default();
        let redactor = Redactor::new(["configured-secret-value-123"]);
        let sink = RedactingSink::new(&log, &redactor);
        sink.write(r#"{"cause":"with configured-secret-value-123","password":"a \"b\" c"}"#);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains("configured-secret"), "{}", lines[0]);
        assert!(!lines[0].contains(" c\""), "{}", lines[0]);
        assert!(lines[0].contains(MASK));
    }
}
