//! The redaction pass every log line goes through before it is written, on the edge and in
//! the proxy. Four passes:
//!
//! 1. **Configured secret values** are masked in every form they can take in a line: as
//!    written, JSON-escaped (once and twice: a secret with `"` or `\` inside a JSON string, or
//!    inside an error text that was itself a JSON string), percent-encoded (upper- and
//!    lower-case hex, and the form encoding with `+`), and base64 (standard and URL-safe, at
//!    each of the three byte alignments it can have inside a longer encoded value such as a
//!    Basic credential).
//! 2. **Key shapes** (`sk-…`, `gsk_…`, `AIza…`, `xoxb-…`) and whatever follows `Bearer `.
//! 3. **Secret-named fields** (`password`, `secret`, `token`, `api_key`, `authorization`, …,
//!    also as the last part of a longer key such as `db_password` or `PROXY_HMAC_KEY`): a
//!    quoted value up to its unescaped closing quote (also inside an escaped JSON string), an
//!    unquoted value up to the next separator or the next `key=`, so `password=correct horse
//!    user=x` masks `correct horse`.
//! 4. The password part of any `scheme://user:password@host` URL.
//!
//! Hand-written scanning rather than a regex engine keeps every wasm artifact small. Callers
//! never log bodies or headers; this pass is the net under that rule.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;

/// What replaces a secret.
pub const MASK: &str = "[redacted]";

/// Very short "secrets" would mask ordinary words; keys and URLs are long.
const MIN_SECRET_LEN: usize = 6;

/// Key prefixes whose following token is masked, with the shortest token that counts.
const KEY_PREFIXES: &[(&str, usize)] = &[("sk-", 16), ("gsk_", 20), ("AIza", 20), ("xoxb-", 10)];
/// Whatever follows it is masked, in any case.
const BEARER: &str = "bearer ";

/// What a byte can start, for the one look at each byte of a line ([`shapes`]): one table
/// load per byte, and nothing more for the bytes that start nothing (most of them).
const KEY_START: u8 = 1;
const BEARER_START: u8 = 2;
const COLON: u8 = 4;
const EQUALS: u8 = 8;
const BYTE_CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut i = 0;
    while i < KEY_PREFIXES.len() {
        class[KEY_PREFIXES[i].0.as_bytes()[0] as usize] |= KEY_START;
        i += 1;
    }
    class[b'b' as usize] |= BEARER_START;
    class[b'B' as usize] |= BEARER_START;
    class[b':' as usize] |= COLON;
    class[b'=' as usize] |= EQUALS;
    class
};

/// Masks configured secrets and secret-shaped text in log lines.
///
/// Nothing is computed when the redactor is made. The first line redacted builds the filter,
/// from the first bytes of each encoded form only; the forms in full are built only when a
/// line gets past the filter, which an ordinary line never does. On Spin, where every request
/// makes a new redactor for its one access line, building every form in full was a tenth of
/// the request's guest time.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
    filter: OnceLock<Filter>,
    forms: OnceLock<Vec<String>>,
}

/// Answers "can any form of any secret occur in this line?" in one pass over the line: almost
/// no line holds a secret, and searching each of dozens of forms separately was most of the
/// redaction's cost.
#[derive(Clone, Default)]
struct Filter {
    /// The first [`MIN_SECRET_LEN`] bytes of each form, as a number.
    heads: Vec<u64>,
    /// One bit per hash of a head: most windows of a line are rejected here.
    bloom: Vec<u64>,
}

const BLOOM_BITS: usize = 4096;

impl Filter {
    /// The filter of `secrets`: the heads of the forms of each one's first
    /// [`HEAD_SOURCE_LEN`] bytes, which are the heads of its full forms (see [`head_source`]).
    fn new(secrets: &[String]) -> Self {
        // Unsorted, repeats kept: only a window that passes the bloom filter is looked up,
        // which is rare (and a sort would cost every artifact kilobytes of code). Only the
        // heads are kept: the forms pass through one reused buffer.
        let mut heads = Vec::new();
        let mut scratch = Scratch::default();
        for s in secrets {
            each_form(head_source(s), &mut scratch, |f| {
                if f.len() >= MIN_SECRET_LEN {
                    heads.push(head(f));
                }
            });
        }
        let mut bloom = vec![0u64; BLOOM_BITS / 64];
        for &h in &heads {
            let bit = bloom_bit(h);
            bloom[bit / 64] |= 1 << (bit % 64);
        }
        Self { heads, bloom }
    }

    /// Whether some form may occur in `line`: false only when none can.
    fn may_occur(&self, line: &str) -> bool {
        // The last MIN_SECRET_LEN bytes as one number, rolled forward byte by byte.
        const MASK_BITS: u64 = (1 << (8 * MIN_SECRET_LEN)) - 1;
        let mut window = 0u64;
        for (i, &b) in line.as_bytes().iter().enumerate() {
            window = ((window << 8) | u64::from(b)) & MASK_BITS;
            if i + 1 >= MIN_SECRET_LEN {
                let bit = bloom_bit(window);
                if self.bloom[bit / 64] & (1 << (bit % 64)) != 0 && self.heads.contains(&window) {
                    return true;
                }
            }
        }
        false
    }
}

/// Bytes of a secret that decide the first [`MIN_SECRET_LEN`] bytes of each of its forms: the
/// JSON and percent forms encode character by character (one character gives one byte or
/// more), and a base64 core's first 6 characters come from the secret's first 9 bytes at most.
const HEAD_SOURCE_LEN: usize = 12;

/// The first [`HEAD_SOURCE_LEN`] bytes of `secret`, or fewer to end on a character boundary
/// (at least 9, or the whole secret when it is shorter).
fn head_source(secret: &str) -> &str {
    let mut end = secret.len().min(HEAD_SOURCE_LEN);
    while !secret.is_char_boundary(end) {
        end -= 1;
    }
    &secret[..end]
}

/// Buffers [`each_form`] reuses, so that making the forms of many secrets allocates almost
/// nothing (on Spin every request makes them again, for its one access line).
#[derive(Default)]
struct Scratch {
    once: Vec<u8>,
    form: Vec<u8>,
    bytes: Vec<u8>,
}

/// Calls `f` with every encoded form of `s` (see the module docs), unfiltered, one at a time:
/// as written, JSON-escaped once and twice, the three percent encodings, and the base64 cores.
/// Every form is UTF-8 (the escapes keep `s`'s characters; the encodings are ASCII).
fn each_form(s: &str, scratch: &mut Scratch, mut f: impl FnMut(&[u8])) {
    f(s.as_bytes());
    scratch.once.clear();
    json_escape_into(s.as_bytes(), &mut scratch.once);
    f(&scratch.once);
    scratch.form.clear();
    json_escape_into(&scratch.once, &mut scratch.form);
    f(&scratch.form);
    for (hex, space_plus) in [(HEX_UPPER, false), (HEX_LOWER, false), (HEX_UPPER, true)] {
        scratch.form.clear();
        percent_encode_into(s.as_bytes(), hex, space_plus, &mut scratch.form);
        f(&scratch.form);
    }
    base64_cores(s.as_bytes(), scratch, f);
}

/// The first [`MIN_SECRET_LEN`] bytes (every form is at least that long) as one number.
fn head(bytes: &[u8]) -> u64 {
    bytes[..MIN_SECRET_LEN]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[inline(always)]
fn bloom_bit(head: u64) -> usize {
    // Fibonacci hashing: the top bits of the product spread neighbouring heads apart.
    (head.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % BLOOM_BITS
}

/// Never prints a secret: only how many there are.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Redactor {
    fn clone(&self) -> Self {
        Self {
            secrets: self.secrets.clone(),
            filter: self.filter.clone(),
            forms: self.forms.clone(),
        }
    }
}

impl Redactor {
    /// A redactor for these configured secret values (empty and very short ones are skipped).
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let secrets = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| s.len() >= MIN_SECRET_LEN)
            .collect();
        Self {
            secrets,
            filter: OnceLock::new(),
            forms: OnceLock::new(),
        }
    }

    fn filter(&self) -> &Filter {
        self.filter.get_or_init(|| Filter::new(&self.secrets))
    }

    /// Every form of every secret at least [`MIN_SECRET_LEN`] long, longest first (so a longer
    /// form is masked before a shorter one inside it), without repeats.
    fn forms(&self) -> &[String] {
        self.forms.get_or_init(|| {
            let mut forms = Vec::new();
            let mut scratch = Scratch::default();
            for s in &self.secrets {
                each_form(s, &mut scratch, |f| {
                    if f.len() >= MIN_SECRET_LEN {
                        forms.push(String::from_utf8_lossy(f).into_owned());
                    }
                });
            }
            forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            forms.dedup();
            forms
        })
    }

    /// `line` with every form of every secret, key shapes, secret-named fields and URL
    /// passwords masked.
    pub fn redact(&self, line: &str) -> String {
        if !self.secrets.is_empty() && self.filter().may_occur(line) {
            let mut out = line.to_owned();
            for n in self.forms() {
                if out.contains(n.as_str()) {
                    out = out.replace(n.as_str(), MASK);
                }
            }
            return redact_shapes(&out);
        }
        redact_shapes(line)
    }
}

/// Passes 2–4 only (no configured secrets).
pub fn redact_shapes(line: &str) -> String {
    shapes(line).into_owned()
}

/// Passes 2–4; a pass that finds nothing to mask copies nothing, and one look at each byte
/// first tells which passes can find anything at all.
fn shapes(line: &str) -> Cow<'_, str> {
    let b = line.as_bytes();
    let (mut keys, mut bearer, mut url, mut fields) = (false, false, false, false);
    for (i, &c) in b.iter().enumerate() {
        let class = BYTE_CLASS[usize::from(c)];
        if class == 0 {
            continue;
        }
        let rest = &b[i..];
        if class & KEY_START != 0 {
            keys |= KEY_PREFIXES
                .iter()
                .any(|(prefix, _)| starts_with(rest, prefix.as_bytes()));
        }
        if class & BEARER_START != 0 {
            bearer |= rest.len() >= BEARER.len()
                && (rest[1] | 0x20) == b'e'
                && rest[..BEARER.len()].eq_ignore_ascii_case(BEARER.as_bytes());
        }
        if class & COLON != 0 {
            fields = true;
            url |= starts_with(rest, b"://");
        }
        if class & EQUALS != 0 {
            fields = true;
        }
    }
    let mut out = Cow::Borrowed(line);
    if keys {
        for (prefix, min) in KEY_PREFIXES {
            if let Some(masked) = mask_after(&out, prefix, *min, false) {
                out = Cow::Owned(masked);
            }
        }
    }
    if bearer {
        if let Some(masked) = mask_after(&out, BEARER, 1, true) {
            out = Cow::Owned(masked);
        }
    }
    if fields {
        if let Some(masked) = mask_secret_fields(&out) {
            out = Cow::Owned(masked);
        }
    }
    if url {
        if let Some(masked) = mask_url_passwords(&out) {
            out = Cow::Owned(masked);
        }
    }
    out
}

/// `bytes.starts_with(prefix)` for the few bytes of a prefix, without a call to `memcmp`.
#[inline(always)]
fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes.iter().zip(prefix).all(|(a, b)| a == b)
}

/// `s` as it appears inside a JSON string (without the quotes).
#[cfg(test)]
fn json_escaped(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_escape_into(s.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the UTF-8 text `s` as it appears inside a JSON string (without the quotes) to
/// `out`: the escapes `serde_json` writes, so that a log line written with it holds exactly
/// the forms this crate masks. Only ASCII bytes are escaped, so UTF-8 in is UTF-8 out.
pub fn json_escape_into(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_LOWER[usize::from(b >> 4)],
                HEX_LOWER[usize::from(b & 15)],
            ]),
            b => out.push(b),
        }
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` percent-encoded with `hex` digits to `out`, `+` for a space when `space_plus`
/// (the form encoding); every byte but ASCII letters and digits is encoded.
fn percent_encode_into(s: &[u8], hex: &[u8; 16], space_plus: bool, out: &mut Vec<u8>) {
    for &b in s {
        if b.is_ascii_alphanumeric() {
            out.push(b);
        } else if space_plus && b == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
        }
    }
}

/// The part of base64(prefix + secret + suffix) that depends only on the secret, for each of
/// the three positions (mod 3) the secret can start at inside a longer encoded value: the
/// characters touched by the prefix and by the unknown following bytes are dropped.
/// Each is passed to `f`; at most six (two alphabets, three alignments).
fn base64_cores(secret: &[u8], scratch: &mut Scratch, mut f: impl FnMut(&[u8])) {
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        for offset in 0..3usize {
            let buf = &mut scratch.bytes;
            buf.clear();
            buf.resize(offset, 0);
            buf.extend_from_slice(secret);
            // Only whole 3-byte groups after the prefix group depend on known bytes alone.
            let first_group = usize::from(offset != 0);
            let whole_groups = buf.len() / 3;
            if whole_groups <= first_group {
                continue;
            }
            // Whole groups only: exactly 4 characters per group, no padding.
            scratch.form.clear();
            scratch.form.resize(whole_groups * 4, 0);
            let written = engine
                .encode_slice(&buf[..whole_groups * 3], &mut scratch.form)
                .unwrap_or(0);
            let core = &scratch.form[(first_group * 4).min(written)..written];
            if core.len() >= 8 {
                f(core);
            }
        }
    }
}

#[inline(always)]
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Where `prefix` (lower case when `ignore_case`) next occurs in `text` from `pos` on.
fn find_from(text: &str, pos: usize, prefix: &str, ignore_case: bool) -> Option<usize> {
    if ignore_case {
        text.as_bytes()[pos..]
            .windows(prefix.len())
            .position(|w| w.eq_ignore_ascii_case(prefix.as_bytes()))
            .map(|i| pos + i)
    } else {
        text[pos..].find(prefix).map(|i| pos + i)
    }
}

/// Masks the token following each occurrence of `prefix` when it is at least `min` long;
/// `None` when `prefix` does not occur.
fn mask_after(text: &str, prefix: &str, min: usize, ignore_case: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut found = find_from(text, 0, prefix, ignore_case)?;
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    loop {
        let start = found;
        let token_start = start + prefix.len();
        let mut end = token_start;
        while end < bytes.len() && is_token_byte(bytes[end]) {
            end += 1;
        }
        out.push_str(&text[pos..token_start]);
        if end - token_start >= min {
            out.push_str(MASK);
        } else {
            out.push_str(&text[token_start..end]);
        }
        pos = end;
        match find_from(text, pos, prefix, ignore_case) {
            Some(next) => found = next,
            None => break,
        }
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// Words that make a field secret, as a whole part of its name (split at `_`, `-`, `.`) or as
/// the end of it: `password`, `db_password`, `X-Api-Key`, `PROXY_HMAC_KEY`, `sessionToken`;
/// not `secrets_valid` or `tokens_used`, which are counts.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "hmac",
    "cookie",
];
/// Two-part names (`api_key`, `private-key`).
const SECRET_PAIRS: &[(&str, &str)] = &[("api", "key"), ("private", "key")];

#[inline(always)]
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_secret_key(key: &str) -> bool {
    let key = key.as_bytes();
    // Lengths first: most comparisons end there without a call.
    let is = |part: &[u8], word: &str| {
        part.len() == word.len()
            && part[0].to_ascii_lowercase() == word.as_bytes()[0]
            && part.eq_ignore_ascii_case(word.as_bytes())
    };
    if SECRET_WORDS
        .iter()
        .any(|w| key.len() >= w.len() && is(&key[key.len() - w.len()..], w))
    {
        return true;
    }
    let mut previous: Option<&[u8]> = None;
    for part in key.split(|&b| matches!(b, b'_' | b'-' | b'.')) {
        if SECRET_WORDS.iter().any(|w| is(part, w)) {
            return true;
        }
        if let Some(before) = previous {
            if SECRET_PAIRS
                .iter()
                .any(|(a, b)| is(before, a) && is(part, b))
            {
                return true;
            }
        }
        previous = Some(part);
    }
    false
}

/// Number of backslashes directly before `i`.
fn backslashes_before(b: &[u8], i: usize) -> usize {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count()
}

/// The value starting at `start` (quotes excluded), given how it is quoted.
fn value_span(b: &[u8], start: usize) -> (usize, usize) {
    let rest = &b[start..];
    if rest.starts_with(b"\\\"") {
        // A quoted value inside an escaped JSON string: ends at the next `\"` whose own
        // backslash is unescaped, or where the enclosing JSON string ends.
        let from = start + 2;
        let mut i = from;
        while i < b.len() {
            if b[i] == b'"' && b[i - 1] == b'\\' && backslashes_before(b, i) % 4 == 1 {
                return (from, i - 1);
            }
            if b[i] == b'"' && backslashes_before(b, i) % 2 == 0 {
                return (from, i);
            }
            i += 1;
        }
        (from, b.len())
    } else if rest.first() == Some(&b'"') || rest.first() == Some(&b'\'') {
        let q = rest[0];
        let from = start + 1;
        let mut i = from;
        while i < b.len() {
            if b[i] == q && backslashes_before(b, i) % 2 == 0 {
                return (from, i);
            }
            i += 1;
        }
        (from, b.len())
    } else {
        // Unquoted: up to a separator, the end of the enclosing JSON string, or the next
        // `key=` / `key:` after a space (so a value with spaces is masked whole).
        let mut i = start;
        while i < b.len() {
            match b[i] {
                b'&' | b';' | b',' | b'}' | b'\n' | b'\r' => return (start, i),
                b'"' => return (start, i - usize::from(i > start && b[i - 1] == b'\\')),
                b' ' => {
                    let mut j = i + 1;
                    while j < b.len() && is_key_byte(b[j]) {
                        j += 1;
                    }
                    if j > i + 1 && j < b.len() && matches!(b[j], b'=' | b':') {
                        return (start, i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        (start, b.len())
    }
}

/// Masks the value of every secret-named field: `"password":"…"`, `password=…`,
/// `Authorization: …`, also inside escaped JSON strings; `None` when there is none.
fn mask_secret_fields(text: &str) -> Option<String> {
    let b = text.as_bytes();
    // Made at the first secret field: most lines have none and copy nothing.
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !is_key_byte(b[i]) || (i > 0 && is_key_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let key_start = i;
        while i < b.len() && is_key_byte(b[i]) {
            i += 1;
        }
        let key = &text[key_start..i];
        // Skip the closing quote of a quoted key (`"key"` or `\"key\"`), then spaces.
        let mut j = i;
        if b[j..].starts_with(b"\\\"") {
            j += 2;
        } else if j < b.len() && b[j] == b'"' {
            j += 1;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j >= b.len() || !matches!(b[j], b'=' | b':') || !is_secret_key(key) {
            continue;
        }
        j += 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let (from, to) = value_span(b, j);
        if to > from {
            if out.capacity() == 0 {
                out.reserve(text.len());
            }
            out.push_str(&text[copied..from]);
            out.push_str(MASK);
            copied = to;
        }
        i = to.max(j);
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// `postgres://user:pw@host` → `postgres://user:[redacted]@host`; `None` without a URL.
fn mask_url_passwords(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
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
    Some(out)
}

#[cfg(test)]
mod tests;
