//! Request ids: accepted from the caller only when safe, otherwise generated.

use crate::ports::{PortError, Random};

/// Header carrying the request id in and out.
pub const HEADER: &str = "x-request-id";

/// Whether an inbound id is safe to adopt: 8 to 128 characters of `[A-Za-z0-9._-]`. Anything
/// else (spaces, quotes, control characters) could forge log lines or headers, so it is
/// replaced, not escaped.
pub fn is_safe(candidate: &str) -> bool {
    (8..=128).contains(&candidate.len())
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh id: 16 random bytes as 32 lowercase hex characters.
pub fn generate(random: &dyn Random) -> Result<String, PortError> {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes)?;
    // The `hex` crate proxy-auth already links: a `format!` per byte was 7 % of a wrapped request.
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SeqRandom;

    #[test]
    fn safe_ids_are_adopted() {
        assert!(is_safe("3f2a9c1e-77aa-4b7b-9c1d-0e5f6a7b8c9d"));
        assert!(is_safe("req_12345678"));
    }

    #[test]
    fn unsafe_or_odd_sized_ids_are_refused() {
        assert!(!is_safe("short"));
        assert!(!is_safe("has space in it"));
        assert!(!is_safe("line\nbreak-injected"));
        assert!(!is_safe("quote\"injected-id"));
        assert!(!is_safe(&"a".repeat(129)));
    }

    #[test]
    fn generated_ids_are_32_hex_chars_and_safe() {
        let id = generate(&SeqRandom::default()).unwrap_or_default();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(is_safe(&id));
    }

    #[test]
    fn generated_ids_are_the_random_bytes_in_lower_case_hex() {
        struct Fixed;
        impl Random for Fixed {
            fn fill(&self, buf: &mut [u8]) -> Result<(), PortError> {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(17) ^ 0xa5;
                }
                Ok(())
            }
        }
        let mut expected = String::new();
        for i in 0..16u8 {
            expected.push_str(&format!("{:02x}", i.wrapping_mul(17) ^ 0xa5));
        }
        assert_eq!(generate(&Fixed).ok(), Some(expected));
    }
}
