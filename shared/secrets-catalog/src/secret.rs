//! Owns [`Secret`]: a configured secret value that never prints itself.

use core::fmt;

/// A secret value (API key, signing key, token, credential URL).
///
/// `Debug` and `Display` print `[redacted]`, so a `Secret` inside a struct, an error or a
/// `format!` cannot leak. The value is reachable only through [`Secret::expose`], which makes
/// every use greppable. There is deliberately no `PartialEq`: comparing secrets must be done
/// in constant time by the caller (`subtle` or a MAC's `verify`), never with `==`.
#[derive(Clone)]
pub struct Secret {
    value: String,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
        }
    }

    /// The value itself. Call it only where the value is used (signing, an outbound
    /// `Authorization` header, the log redaction table).
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_redacted_in_debug_and_display_but_exposes_its_value_on_request() {
        let secret = Secret::new("sk-live-value-123");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "sk-live-value-123");
    }
}
