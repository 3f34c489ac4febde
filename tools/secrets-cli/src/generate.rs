//! Owns secret generation (`secrets-cli generate NAME`): random bytes from the operating
//! system's CSPRNG (`getrandom`), encoded as the catalog's format requires, then checked
//! against the same catalog rules every function applies (strength score and decoded key
//! length). A value that fails (a random string can, very rarely, hold a placeholder word or
//! a run the score penalises) is discarded and drawn again.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrets_catalog::strength;

use crate::catalog_view::{Encoding, Generated};

/// Draws that may fail the checks before giving up; each failure is very unlikely, so
/// reaching this bound means the CSPRNG or the rules are broken.
const MAX_DRAWS: usize = 16;

/// Why no value could be produced.
#[derive(Debug)]
pub enum GenerateError {
    /// The OS random source failed.
    Random(String),
    /// `MAX_DRAWS` values in a row failed the catalog rules.
    Rules,
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Random(e) => write!(f, "the operating system's random source failed: {e}"),
            Self::Rules => write!(f, "{MAX_DRAWS} generated values failed the catalog rules"),
        }
    }
}

fn encode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Base64url => URL_SAFE_NO_PAD.encode(bytes),
    }
}

/// Whether `value` passes what the catalog demands of `recipe`.
pub fn acceptable(value: &str, recipe: &Generated) -> bool {
    strength::score(value) >= recipe.min_strength
        && strength::key_material_bytes(value, recipe.bytes).is_ok()
}

/// A fresh value for `recipe`.
pub fn generate(recipe: &Generated) -> Result<String, GenerateError> {
    let mut bytes = vec![0_u8; recipe.bytes];
    for _ in 0..MAX_DRAWS {
        getrandom::fill(&mut bytes).map_err(|e| GenerateError::Random(e.to_string()))?;
        let value = encode(&bytes, recipe.encoding);
        if acceptable(&value, recipe) {
            return Ok(value);
        }
    }
    Err(GenerateError::Rules)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEX: Generated = Generated {
        encoding: Encoding::Hex,
        bytes: 32,
        min_strength: 60,
    };
    const B64: Generated = Generated {
        encoding: Encoding::Base64url,
        bytes: 32,
        min_strength: 60,
    };

    #[test]
    fn hex_values_are_64_lower_case_hex_digits_and_pass_the_catalog() {
        let v = generate(&HEX).unwrap();
        assert_eq!(v.len(), 64);
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(acceptable(&v, &HEX));
    }

    #[test]
    fn base64url_values_are_43_unpadded_characters_and_pass_the_catalog() {
        let v = generate(&B64).unwrap();
        assert_eq!(v.len(), 43);
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(strength::score(&v) >= 60);
    }

    #[test]
    fn two_draws_differ() {
        assert_ne!(generate(&B64).unwrap(), generate(&B64).unwrap());
    }

    #[test]
    fn a_repetitive_value_is_not_acceptable() {
        assert!(!acceptable(&"ab".repeat(32), &HEX));
        assert!(!acceptable(&"0".repeat(64), &HEX));
    }
}
