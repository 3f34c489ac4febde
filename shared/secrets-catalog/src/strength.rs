//! Owns the strength judgement of secrets: the 0–100 [`score`] and the
//! [`key_material_bytes`] rule ("carries at least N random bytes, judged after decoding").
//!
//! # The score
//!
//! For a value of `n` characters with per-character Shannon entropy `H` bits (computed from
//! the value's own character frequencies) and `c` character classes present out of four
//! (lower case, upper case, digits, everything else):
//!
//! ```text
//! length   = 30 * min(n, 40) / 40              long values are harder to guess
//! classes  =  5 * c * min(n, 20) / 20          a wider alphabet, up to 20; scaled by
//!                                              length so a short mixed password is
//!                                              not rewarded for ticking boxes
//! entropy  = 30 * min(H, 4) / 4                per-character spread; 4 bits = 16 equally
//!                                              used symbols, what random hex reaches
//! total    = 20 * min(n * H, 128) / 128        estimated bits in the whole value
//! raw      = length + classes + entropy + total                            (0..=100)
//! penalty  = 60 * (characters inside runs of 3+ identical characters) / n
//!          + 60 * (characters inside sequences of 4+: abcd, 4321, qwer, asdf, zxcv ...) / n
//! score    = clamp(raw - penalty, 0, 100), then capped at 10 for a placeholder
//! ```
//!
//! A placeholder is a value in which, case-insensitively, one of the words `changeme`,
//! `change me`, `password`, `passwd`, `secret`, `example`, `placeholder`, `replace me`,
//! `replaceme`, `todo`, `dummy` stands as a whole word, or a word made only of `x` (three or
//! more, `sk-xxxx`), or which starts with `your` and ends with `here` as words
//! (`your-api-key-here`), or is wrapped in `<...>`. Words are the runs of letters and digits
//! between other characters, so `change-me`, `change_me` and `change me` are the same.
//! Whole words, not substrings: a 160-character random provider key contains `todo` or
//! `xxx` somewhere about once in a few thousand keys, and refusing a real key in production
//! is an outage; a random key almost never has such a word between two separators.
//!
//! Calibration (unit tests): 32 random bytes as 43 base64url characters score ≥ 80, as 64
//! hex characters ≥ 80; `changeme` and `your-api-key-here` ≤ 20. [`MIN_SECURITY_SCORE`] (60)
//! is what security secrets must reach.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// The score a security secret (JWT, HMAC, admin and webhook secrets) must reach. 60 admits
/// every honestly random key (random hex of 32 bytes scores in the high 80s) and refuses
/// short, repetitive, sequential or placeholder values (`Tutoring2026!` scores in the 50s,
/// the alphabet in order below 30, placeholders at most 10).
pub const MIN_SECURITY_SCORE: u8 = 60;

/// Per-character Shannon entropy (bits) a raw-text key must reach; see [`key_material_bytes`].
pub const MIN_RAW_ENTROPY_BITS_PER_CHAR: f64 = 3.5;

/// Per-byte Shannon entropy (bits) the decoded bytes of a hex or base64 key must reach. 32
/// random bytes reach about 4.8 (at most log2(32) = 5); 32 copies of one byte reach 0.
pub const MIN_DECODED_ENTROPY_BITS_PER_BYTE: f64 = 3.5;

/// Scores a secret from 0 (worthless) to 100; the formula is in the module docs.
pub fn score(value: &str) -> u8 {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    if n == 0 {
        return 0;
    }
    let nf = n as f64;
    let h = shannon_bits(chars.iter().copied());
    let classes = [
        chars.iter().any(|c| c.is_ascii_lowercase()),
        chars.iter().any(|c| c.is_ascii_uppercase()),
        chars.iter().any(|c| c.is_ascii_digit()),
        chars.iter().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|present| **present)
    .count() as f64;

    let length = 30.0 * nf.min(40.0) / 40.0;
    let class_points = 5.0 * classes * nf.min(20.0) / 20.0;
    let entropy = 30.0 * h.min(4.0) / 4.0;
    let total = 20.0 * (nf * h).min(128.0) / 128.0;
    let raw = length + class_points + entropy + total;

    let lower: Vec<char> = chars.iter().map(|c| c.to_ascii_lowercase()).collect();
    let penalty =
        60.0 * repeated_chars(&lower) as f64 / nf + 60.0 * sequence_chars(&lower) as f64 / nf;
    let mut result = (raw - penalty).clamp(0.0, 100.0);
    if is_placeholder(value) {
        result = result.min(10.0);
    }
    // In 0..=100 after the clamp, so the cast cannot truncate.
    result.round() as u8
}

/// Whether the value looks like a placeholder left in place of a real secret (the rule is in
/// the module docs).
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    if lower.starts_with('<') && lower.ends_with('>') {
        return true;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    const WORDS: [&str; 9] = [
        "changeme",
        "password",
        "passwd",
        "secret",
        "example",
        "placeholder",
        "replaceme",
        "todo",
        "dummy",
    ];
    const PAIRS: [[&str; 2]; 2] = [["change", "me"], ["replace", "me"]];
    words.iter().any(|w| WORDS.contains(w))
        || words
            .iter()
            .any(|w| w.len() >= 3 && w.bytes().all(|b| b == b'x'))
        || words.windows(2).any(|pair| PAIRS.iter().any(|p| pair == p))
        || (words.len() >= 2 && words[0] == "your" && words[words.len() - 1] == "here")
}

/// Shannon entropy in bits per symbol of the symbols' own frequencies.
fn shannon_bits<T: Ord>(symbols: impl Iterator<Item = T>) -> f64 {
    let mut sorted: Vec<T> = symbols.collect();
    let n = sorted.len() as f64;
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort();
    let mut bits = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let p = (j - i) as f64 / n;
        bits -= p * p.log2();
        i = j;
    }
    bits
}

/// Characters that sit inside a run of three or more identical characters (`aaa`, `1111`).
fn repeated_chars(chars: &[char]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        if j - i >= 3 {
            count += j - i;
        }
        i = j;
    }
    count
}

/// Keyboard rows and the alphabet/digit lines, searched both ways.
const LINES: [&str; 5] = [
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
];

/// Characters inside a window of four or more that continues one of [`LINES`] (forwards or
/// backwards): `abcd`, `4321`, `qwerty`, `lkjh`.
fn sequence_chars(chars: &[char]) -> usize {
    const MIN: usize = 4;
    let mut marked = vec![false; chars.len()];
    for line in LINES {
        let line: Vec<char> = line.chars().collect();
        let reversed: Vec<char> = line.iter().rev().copied().collect();
        for l in [&line, &reversed] {
            for start in 0..chars.len() {
                // Longest stretch from `start` that follows `l`.
                let Some(pos) = l.iter().position(|c| *c == chars[start]) else {
                    continue;
                };
                let mut len = 1;
                while start + len < chars.len()
                    && pos + len < l.len()
                    && chars[start + len] == l[pos + len]
                {
                    len += 1;
                }
                if len >= MIN {
                    marked[start..start + len]
                        .iter_mut()
                        .for_each(|m| *m = true);
                }
            }
        }
    }
    marked.iter().filter(|m| **m).count()
}

/// How a key's text was read for [`key_material_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    /// Only hex digits, even length: two characters per byte.
    Hex,
    /// Only the base64 or base64url alphabet (padding optional): six bits per character.
    Base64,
    /// Anything else: the UTF-8 bytes themselves.
    Raw,
}

/// Why a key does not carry enough random bytes. Carries no part of the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMaterialError {
    /// The decoded key is shorter than required.
    TooShort {
        /// How the text was read.
        encoding: KeyEncoding,
        /// Bytes after decoding.
        bytes: usize,
    },
    /// Long enough, but the bytes repeat too much to be random (e.g. one character 64 times).
    LowEntropy {
        /// How the text was read.
        encoding: KeyEncoding,
    },
}

/// The number of key bytes a secret carries, judged after decoding, or why it is not
/// usable as a key of at least `min_bytes` random bytes.
///
/// Decisions:
/// * **Hex wins** when the value is only hex digits with an even length: `openssl rand -hex
///   32` gives 64 characters that carry 32 bytes, not 64. A 32-character hex string is 16
///   bytes and fails a 32-byte minimum.
/// * **Base64 next** (standard or url-safe alphabet, padded or not, trailing bits tolerated)
///   when the value uses only that alphabet: its characters carry at most six bits each, so
///   the decoded length is an honest upper bound on the randomness (43 characters → 32
///   bytes). A value in that alphabet that does not decode (length ≡ 1 mod 4) is read raw.
/// * **Raw text otherwise** (spaces, punctuation outside the alphabet, non-ASCII): the
///   UTF-8 byte length must reach `min_bytes` and the per-character entropy must reach
///   [`MIN_RAW_ENTROPY_BITS_PER_CHAR`], so a long passphrase of repeated words fails.
/// * Decoded hex and base64 bytes must reach [`MIN_DECODED_ENTROPY_BITS_PER_BYTE`], so 64
///   copies of one character (valid hex for 32 identical bytes) fail.
pub fn key_material_bytes(value: &str, min_bytes: usize) -> Result<usize, KeyMaterialError> {
    let (encoding, bytes) = decode_key(value);
    let len = bytes.len();
    if len < min_bytes {
        return Err(KeyMaterialError::TooShort {
            encoding,
            bytes: len,
        });
    }
    let enough = match encoding {
        KeyEncoding::Raw => shannon_bits(value.chars()) >= MIN_RAW_ENTROPY_BITS_PER_CHAR,
        KeyEncoding::Hex | KeyEncoding::Base64 => {
            shannon_bits(bytes.iter().copied()) >= MIN_DECODED_ENTROPY_BITS_PER_BYTE
        }
    };
    if enough {
        Ok(len)
    } else {
        Err(KeyMaterialError::LowEntropy { encoding })
    }
}

/// Base64 engines that accept padding or not and ignore non-zero trailing bits: a key typed
/// or generated in that alphabet is judged by what it decodes to, not by canonical form.
fn engine(alphabet: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

fn decode_key(value: &str) -> (KeyEncoding, Vec<u8>) {
    let is_hex = !value.is_empty()
        && value.len().is_multiple_of(2)
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let bytes = value
            .as_bytes()
            .chunks(2)
            .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
            .collect();
        return (KeyEncoding::Hex, bytes);
    }
    let body = value.trim_end_matches('=');
    let standard = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    let url_safe = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let decoded = if standard {
        engine(&alphabet::STANDARD).decode(value).ok()
    } else if url_safe {
        engine(&alphabet::URL_SAFE).decode(value).ok()
    } else {
        None
    };
    match decoded {
        Some(bytes) if !body.is_empty() => (KeyEncoding::Base64, bytes),
        _ => (KeyEncoding::Raw, value.as_bytes().to_vec()),
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Outputs of `openssl rand 32` taken once for these tests (used by no deployment).
    const RANDOM_B64URL_43: &str = "KGFFcdomtClQGVsD3MAjqb5pFvZO1CAN_SIdSN36BNI";
    const RANDOM_HEX_64: &str = "cf4742dc831caca2fb49923a892393940eddd0459440b1b2223433754fb37867";
    const RANDOM_B64_44: &str = "LeemCGAOkzHzAVgB4LV77hoO6zoiQTTyhr2rymbIoHA=";

    #[test]
    fn a_random_43_character_base64url_key_scores_at_least_80() {
        assert!(score(RANDOM_B64URL_43) >= 80, "{}", score(RANDOM_B64URL_43));
    }

    #[test]
    fn a_random_64_character_hex_key_scores_at_least_80() {
        assert!(score(RANDOM_HEX_64) >= 80, "{}", score(RANDOM_HEX_64));
    }

    #[test]
    fn placeholders_score_at_most_20() {
        for value in [
            "changeme",
            "your-api-key-here",
            "your_jwt_secret_here",
            "<paste the key>",
            "replace-me-with-a-real-key-0123",
            "TODO",
            "xxxxxxxxxxxxxxxxxxxxxxxx",
            "my-Super-Secret-Value-2026!",
            "P@ssword-For-Example-Only-91",
            "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "change me",
        ] {
            assert!(score(value) <= 20, "{value}: {}", score(value));
        }
    }

    #[test]
    fn scores_order_random_above_human_above_repetitive() {
        let random = score(RANDOM_B64URL_43);
        let human = score("Tutoring2026!");
        let repeated = score("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let sequential = score("abcdefghijklmnopqrstuvwxyz0123456789");
        let keyboard = score("qwertyuiopasdfghjkl");
        assert!(random > human, "{random} vs {human}");
        assert!(human > repeated, "{human} vs {repeated}");
        assert!(human > keyboard, "{human} vs {keyboard}");
        assert!(random > sequential + 30, "{random} vs {sequential}");
        assert!(repeated < 20 && keyboard < 20, "{repeated} {keyboard}");
        assert!(sequential < 40, "{sequential}");
        assert!(
            human < MIN_SECURITY_SCORE,
            "a 13-character password is not a key: {human}"
        );
    }

    #[test]
    fn repeats_and_sequences_cost_points_against_the_same_value_without_them() {
        let plain = "K7mQ2xV9pL4wR8nT";
        assert!(score(&format!("{plain}1234")) < score(&format!("{plain}7392")));
        assert!(score(&format!("{plain}zzzz")) < score(&format!("{plain}zQ4r")));
    }

    #[test]
    fn placeholder_words_count_only_as_whole_words_so_random_keys_are_not_refused() {
        // Random keys that happen to contain a placeholder word inside a longer run.
        for key in [
            "Qm4TodoZr8KcXw2LpVn7Hs9JdBf3GyEt6Ua1Nq5Ro0Mi",
            "sk-proj-A8fxxxK2mZqLr7SecretV9nT4bWc1Hd6Jy3Pg0Xs5",
            "9ExampleQz7Lm2Xw9Rb4Tn8Kc3Vy6Hd1Pf5Gj0Ss",
        ] {
            assert!(!is_placeholder(key), "{key}");
        }
        for placeholder in [
            "changeme",
            "Change_Me",
            "replace-me",
            "sk-xxx",
            "your-openai-key-here",
            "YOUR_KEY_HERE",
            "<jwt secret>",
            "db-password",
            "TODO: fill in",
        ] {
            assert!(is_placeholder(placeholder), "{placeholder}");
        }
    }

    #[test]
    fn the_empty_value_scores_zero() {
        assert_eq!(score(""), 0);
    }

    #[test]
    fn hex_keys_are_judged_by_decoded_bytes_not_characters() {
        assert_eq!(key_material_bytes(RANDOM_HEX_64, 32), Ok(32));
        // 32 hex characters are 16 bytes, whatever their character count.
        assert_eq!(
            key_material_bytes(&RANDOM_HEX_64[..32], 32),
            Err(KeyMaterialError::TooShort {
                encoding: KeyEncoding::Hex,
                bytes: 16
            })
        );
    }

    #[test]
    fn base64_keys_padded_or_not_standard_or_url_safe_are_judged_by_decoded_bytes() {
        assert_eq!(key_material_bytes(RANDOM_B64URL_43, 32), Ok(32));
        assert_eq!(key_material_bytes(RANDOM_B64_44, 32), Ok(32));
        assert_eq!(
            key_material_bytes(RANDOM_B64_44.trim_end_matches('='), 32),
            Ok(32)
        );
        // 40 base64 characters carry 30 bytes: too short even though 40 >= 32 characters.
        assert_eq!(
            key_material_bytes(&RANDOM_B64URL_43[..40], 32),
            Err(KeyMaterialError::TooShort {
                encoding: KeyEncoding::Base64,
                bytes: 30
            })
        );
    }

    #[test]
    fn a_64_character_string_of_one_repeated_character_is_not_key_material() {
        assert_eq!(
            key_material_bytes(&"a".repeat(64), 32),
            Err(KeyMaterialError::LowEntropy {
                encoding: KeyEncoding::Hex
            })
        );
        assert_eq!(
            key_material_bytes(&"Q".repeat(64), 32),
            Err(KeyMaterialError::LowEntropy {
                encoding: KeyEncoding::Base64
            })
        );
        assert!(key_material_bytes(&"!".repeat(64), 32).is_err());
    }

    #[test]
    fn raw_text_keys_need_32_utf8_bytes_and_enough_entropy() {
        let raw = "k#9Vq!2mZ@x7Lr$4pW^8nT&1bY*6cH%3jF(";
        assert_eq!(key_material_bytes(raw, 32), Ok(raw.len()));
        assert_eq!(
            key_material_bytes("ab! ab! ab! ab! ab! ab! ab! ab! ab! ab!", 32),
            Err(KeyMaterialError::LowEntropy {
                encoding: KeyEncoding::Raw
            })
        );
        assert!(matches!(
            key_material_bytes("k#9Vq!2mZ@x7", 32),
            Err(KeyMaterialError::TooShort {
                encoding: KeyEncoding::Raw,
                bytes: 12
            })
        ));
    }
}
