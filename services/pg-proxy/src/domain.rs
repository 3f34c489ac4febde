//! Validated inputs. Every string that reaches SQL is one of these newtypes (and is always a
//! bound parameter, never spliced into SQL text); parsing is the only way to build one.

use crate::error::ApiError;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn no_control_chars(field: &str, s: &str) -> Result<(), ApiError> {
    if s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(bad(format!("{field} contains control characters")));
    }
    if s.contains('\0') {
        return Err(bad(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

/// Checks length (in chars) and rejects control characters (NUL is refused by Postgres TEXT).
pub fn bounded_text(field: &str, s: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(bad(format!("{field} must be {min} to {max} characters")));
    }
    // Message bodies may carry newlines and tabs; other control characters are refused.
    no_control_chars(field, s)?;
    Ok(s.to_owned())
}

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);
        impl $name {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

newtype!(
    /// A provider message id (Evolution `data.key.id`): 1–128 printable chars.
    MessageId
);
impl MessageId {
    /// Parses a provider message id.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let v = bounded_text("provider_message_id", s, 1, 128)?;
        if v.chars().any(char::is_whitespace) {
            return Err(bad("provider_message_id must not contain whitespace"));
        }
        Ok(Self(v))
    }
}

newtype!(
    /// A WhatsApp contact: a JID such as `5511999999999@s.whatsapp.net` or a phone number.
    Contact
);
impl Contact {
    /// Parses a contact id: 3–128 chars of `A-Za-z0-9 + . _ : @ -`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let ok = (3..=128).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b':' | b'@' | b'-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(bad(
                "contact must be 3 to 128 characters of letters, digits and + . _ : @ -",
            ))
        }
    }
}

newtype!(
    /// A login name: 3–64 chars of `a-z 0-9 . _ @ -`, stored lower-cased.
    Username
);
impl Username {
    /// Parses and lower-cases a username.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let lower = s.trim().to_ascii_lowercase();
        let ok = (3..=64).contains(&lower.len())
            && lower.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'@' | b'-')
            });
        if ok {
            Ok(Self(lower))
        } else {
            Err(bad(
                "username must be 3 to 64 characters of letters, digits and . _ @ -",
            ))
        }
    }
}

/// A password in transit. `Debug` is redacted; never logged.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Password {
    /// Longest accepted password in bytes: bounds the hashing work an attacker can ask for.
    pub const MAX_BYTES: usize = 1024;

    /// A password for a new account or a reset: 12–1024 bytes.
    pub fn parse_new(s: &str) -> Result<Self, ApiError> {
        if s.chars().count() < 12 || s.len() > Self::MAX_BYTES {
            return Err(bad("password must be 12 to 1024 bytes"));
        }
        Ok(Self(s.to_owned()))
    }

    /// A password offered at login: only the upper bound applies (a short one simply fails).
    pub fn parse_attempt(s: &str) -> Result<Self, ApiError> {
        if s.len() > Self::MAX_BYTES {
            return Err(bad("password must be at most 1024 bytes"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The secret, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A user role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Can manage users.
    Admin,
    /// Tutoring staff.
    Staff,
}

impl Role {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
        }
    }

    /// From the stored text.
    pub fn from_db(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Staff
        }
    }
}

/// Message direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the contact to the centre.
    Inbound,
    /// From the assistant to the contact.
    Outbound,
}

impl Direction {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A unix timestamp in seconds within a sane range (2000-01-01 .. 2100-01-01).
pub fn unix_seconds(field: &str, v: i64) -> Result<i64, ApiError> {
    if (946_684_800..=4_102_444_800).contains(&v) {
        Ok(v)
    } else {
        Err(bad(format!(
            "{field} must be unix seconds between 2000 and 2100"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(
            Username::parse(" Ana.Admin ").unwrap().as_str(),
            "ana.admin"
        );
        assert!(Username::parse("a'; DROP TABLE users;--").is_err());
        assert!(Username::parse("ab").is_err());
    }

    #[test]
    fn contacts_accept_jids_and_refuse_quotes() {
        assert!(Contact::parse("5511999999999@s.whatsapp.net").is_ok());
        assert!(Contact::parse("+5511999999999").is_ok());
        assert!(Contact::parse("x' OR '1'='1").is_err());
    }

    #[test]
    fn message_ids_refuse_whitespace_and_nul() {
        assert!(MessageId::parse("3EB0C767D26A1D5B").is_ok());
        assert!(MessageId::parse("a b").is_err());
        assert!(MessageId::parse("a\0b").is_err());
        assert!(MessageId::parse("").is_err());
    }

    #[test]
    fn passwords_are_bounded_and_redacted() {
        assert!(Password::parse_new("short").is_err());
        assert!(Password::parse_new(&"x".repeat(1025)).is_err());
        let p = Password::parse_new("correct horse battery").unwrap();
        assert_eq!(format!("{p:?}"), "[redacted]");
    }

    #[test]
    fn text_fields_keep_newlines_but_refuse_other_control_chars() {
        assert!(bounded_text("body", "line1\nline2\ttab", 0, 100).is_ok());
        assert!(bounded_text("body", "bell\u{7}", 0, 100).is_err());
        assert!(bounded_text("body", "abc", 0, 2).is_err());
    }
}
