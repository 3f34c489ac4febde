use super::*;

/// The passes as text in, text out (they answer `None` when they change nothing).
fn mask_secret_fields(text: &str) -> String {
    super::mask_secret_fields(text).unwrap_or_else(|| text.to_owned())
}

fn mask_url_passwords(text: &str) -> String {
    super::mask_url_passwords(text).unwrap_or_else(|| text.to_owned())
}

fn redactor(secrets: &[&str]) -> Redactor {
    Redactor::new(secrets.iter().copied())
}

/// `value` as the JSON loggers write it: a JSON string field (escaping by hand, as serde_json
/// would, so the crate needs no JSON dependency).
fn json_line(value: &str) -> String {
    format!(r#"{{"level":"INFO","cause":"{}"}}"#, json_escaped(value))
}

#[test]
fn configured_secret_values_are_masked_anywhere() {
    let out = redactor(&["configured-secret-value-123"])
        .redact(r#"{"cause":"auth failed with configured-secret-value-123 at db"}"#);
    assert!(!out.contains("configured-secret-value-123"), "{out}");
    assert!(out.contains("with [redacted] at"), "{out}");
}

#[test]
fn a_secret_with_quotes_and_backslashes_is_masked_in_its_json_escaped_form() {
    let secret = r#"pa"ss\word-123"#;
    let r = redactor(&[secret]);
    let line = json_line(&format!("failed with {secret}"));
    assert!(line.contains(r#"pa\"ss\\word-123"#), "{line}");
    let out = r.redact(&line);
    assert!(!out.contains("word-123"), "{out}");
    assert!(out.contains("failed with [redacted]"), "{out}");
    // Twice escaped: an error text that was itself a JSON string.
    let nested = json_line(&format!(r#"{{"inner":"{}"}}"#, json_escaped(secret)));
    let out = r.redact(&nested);
    assert!(!out.contains("word-123"), "{out}");
}

#[test]
fn a_percent_encoded_secret_is_masked_in_either_hex_case_and_the_form_encoding() {
    let secret = "p@ss w/rd:42!";
    let r = redactor(&[secret]);
    for encoded in [
        "p%40ss%20w%2Frd%3A42%21",
        "p%40ss%20w%2frd%3a42%21",
        "p%40ss+w%2Frd%3A42%21",
    ] {
        let out = r.redact(&json_line(&format!("url ?q={encoded}&x=1")));
        assert!(!out.contains(encoded), "{out}");
        assert!(!out.contains("w%2") && !out.contains("rd%3"), "{out}");
        assert!(out.contains("&x=1"), "{out}");
    }
}

#[test]
fn a_base64_encoded_secret_is_masked_also_inside_a_basic_credential() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let secret = "Sup3r-Secret-Value!";
    let r = redactor(&[secret]);
    for user in ["", "a", "ab", "admin"] {
        let basic = STANDARD.encode(format!("{user}:{secret}"));
        let out = r.redact(&json_line(&format!("Basic {basic} rejected")));
        assert!(!out.contains(&basic), "{user}: {out}");
        assert!(out.contains(MASK), "{out}");
    }
    let alone = URL_SAFE.encode(secret);
    let out = r.redact(&json_line(&format!("value {alone}")));
    assert!(!out.contains(&alone[..alone.len() - 4]), "{out}");
}

#[test]
fn short_configured_values_are_not_treated_as_secrets() {
    let r = redactor(&["short", "abc", ""]);
    assert_eq!(r.redact("a short note, abc def"), "a short note, abc def");
}

#[test]
fn provider_key_shapes_are_masked() {
    let text = "openai sk-proj-abcdefghijklmnop1234 groq gsk_abcdefghijklmnopqrstuvwxyz google AIzaSyA1234567890abcdefghij";
    let out = redactor(&[]).redact(text);
    for leaked in [
        "abcdefghijklmnop1234",
        "abcdefghijklmnopqrstuvwxyz",
        "SyA1234567890",
    ] {
        assert!(!out.contains(leaked), "{out}");
    }
    assert!(out.contains("sk-[redacted]"), "{out}");
}

#[test]
fn bearer_tokens_are_masked_case_insensitively() {
    let out = redact_shapes("sent with bearer eyJhbGciOi.payload.sig to x");
    assert!(!out.contains("eyJhbGciOi"), "{out}");
    assert!(out.contains("bearer [redacted] to x"), "{out}");
}

#[test]
fn url_passwords_are_masked_anywhere_in_a_line() {
    let line = r#"{"cause":"connect postgres://app:s3cr3t@db:5432/app failed"}"#;
    assert_eq!(
        mask_url_passwords(line),
        r#"{"cause":"connect postgres://app:[redacted]@db:5432/app failed"}"#
    );
    let plain = "see https://example.com:8443/x and postgres://app@db/app";
    assert_eq!(mask_url_passwords(plain), plain);
}

#[test]
fn password_fields_are_masked_in_json_and_forms() {
    let out = redact_shapes(r#"{"username":"ana","password":"hunter2!"} and password=hunter3&x=1"#);
    assert!(!out.contains("hunter2"), "{out}");
    assert!(!out.contains("hunter3"), "{out}");
    assert!(out.contains("ana"), "{out}");
    assert!(out.contains("x=1"), "{out}");
}

#[test]
fn a_quoted_secret_field_is_masked_up_to_its_unescaped_closing_quote() {
    let line = r#"{"password":"a \"quoted\" \\ pass","user":"ana"}"#;
    assert_eq!(
        mask_secret_fields(line),
        r#"{"password":"[redacted]","user":"ana"}"#
    );
    // Inside an escaped JSON string (an error text that quotes a JSON body).
    let nested = json_line(r#"body {"password":"x\"y z","user":"ana"}"#);
    let out = mask_secret_fields(&nested);
    assert!(!out.contains("y z"), "{out}");
    assert!(out.contains("ana"), "{out}");
    assert_eq!(
        mask_secret_fields("api_key='abc def' next"),
        "api_key='[redacted]' next"
    );
}

#[test]
fn an_unquoted_secret_field_is_masked_whole_up_to_the_next_field() {
    assert_eq!(
        mask_secret_fields("login password=correct horse battery user=ana"),
        "login password=[redacted] user=ana"
    );
    assert_eq!(
        mask_secret_fields("dsn host=db password=correct horse"),
        "dsn host=db password=[redacted]"
    );
    assert_eq!(
        mask_secret_fields("q?token=abc def&page=2"),
        "q?token=[redacted]&page=2"
    );
    let out = mask_secret_fields(&json_line("connect failed: password=correct horse staple"));
    assert!(!out.contains("horse"), "{out}");
    assert!(out.contains(r#"password=[redacted]""#), "{out}");
}

#[test]
fn secret_named_keys_are_masked_but_counts_and_other_fields_are_not() {
    assert_eq!(
        mask_secret_fields("Authorization: Bearer abc.def.ghi"),
        "Authorization: [redacted]"
    );
    assert_eq!(
        mask_secret_fields(r#"{"PROXY_HMAC_KEY":"00ff","status":200,"path":"/v1/x"}"#),
        r#"{"PROXY_HMAC_KEY":"[redacted]","status":200,"path":"/v1/x"}"#
    );
    for key in [
        "db_password",
        "X-Api-Key",
        "sessionToken",
        "client_secret",
        "set-cookie",
    ] {
        let out = mask_secret_fields(&format!(r#"{{"{key}":"v4lue-here"}}"#));
        assert!(!out.contains("v4lue-here"), "{key}: {out}");
    }
    let plain = r#"{"level":"INFO","request_id":"t-1","secrets_valid":3,"tokens_used":12,"token_type":"Bearer"}"#;
    let out = mask_secret_fields(plain);
    assert!(out.contains(r#""secrets_valid":3"#), "{out}");
    assert!(out.contains(r#""tokens_used":12"#), "{out}");
}

#[test]
fn ordinary_text_is_left_alone() {
    let line = r#"{"level":"info","path":"/health","status":200,"task":"sk-","fn":"login"}"#;
    assert_eq!(
        redactor(&["configured-secret-value-123"]).redact(line),
        line
    );
}

#[test]
fn the_full_forms_are_built_only_when_a_line_gets_past_the_filter() {
    let r = redactor(&["configured-secret-value-123"]);
    assert!(r.filter.get().is_none() && r.forms.get().is_none());
    assert_eq!(
        r.redact(r#"{"path":"/health","status":200}"#),
        r#"{"path":"/health","status":200}"#
    );
    assert!(r.filter.get().is_some());
    assert!(r.forms.get().is_none(), "an ordinary line built every form");
    assert_eq!(
        r.redact("x configured-secret-value-123 y"),
        "x [redacted] y"
    );
    let n = r.forms.get().map(Vec::len).unwrap_or(0);
    // As written, two escapes (deduplicated: no quotes), three percent forms (two equal),
    // base64 cores.
    assert!(n >= 4, "{n}");
}

/// A small deterministic generator (xorshift from `seed`) of numbers below `n`: no test
/// depends on a random seed.
fn numbers(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}

/// Secrets of every length from the shortest kept up, with quotes, backslashes, spaces,
/// control and multi-byte characters at every position.
fn awkward_secrets() -> Vec<String> {
    let parts = [
        "a", "Z", "9", "\"", "\\", " ", "\n", "\u{1}", "é", "€", "𝄞", "/", "%", "+",
    ];
    let mut next = numbers(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for len in MIN_SECRET_LEN..40 {
        for _ in 0..12 {
            let mut s = String::new();
            while s.len() < len {
                s.push_str(parts[next(parts.len())]);
            }
            out.push(s);
        }
    }
    out
}

#[test]
fn the_filter_built_from_each_secrets_first_bytes_knows_the_head_of_every_full_form() {
    for secret in awkward_secrets() {
        let r = redactor(&[secret.as_str()]);
        for form in r.forms() {
            assert!(
                r.filter().heads.contains(&head(form.as_bytes())),
                "{secret:?}: the filter misses the head of {form:?}"
            );
            assert!(r.filter().may_occur(form), "{secret:?}: {form:?}");
        }
    }
}

#[test]
fn debug_never_prints_a_secret() {
    let shown = format!("{:?}", redactor(&["configured-secret-value-123"]));
    assert!(!shown.contains("configured"), "{shown}");
    assert!(shown.contains("secrets: 1"), "{shown}");
}

/// The redaction without the prefilter and the copy-free passes: every form searched on its
/// own, every pass copying the line (what `redact` did before).
fn reference(r: &Redactor, line: &str) -> String {
    let mut out = line.to_owned();
    for n in r.forms() {
        out = out.replace(n.as_str(), MASK);
    }
    redact_shapes(&out)
}

#[test]
fn the_prefilter_never_skips_a_form_the_full_search_masks() {
    let secrets = [
        "configured-secret-value-123",
        "p\"w\\d with spaces & more",
        "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c",
    ];
    let r = redactor(&secrets);
    let forms = r.forms().to_vec();
    assert!(forms.len() > 10, "{}", forms.len());
    let mut next = numbers(0x2545_F491_4F6C_DD1D);
    let filler = r#"{"ts":1,"level":"info","fn":"login","msg":"x y","path":"/a?b=c"} "#;
    for form in &forms {
        for _ in 0..8 {
            let cut = next(filler.len());
            let line = format!("{}{}{}", &filler[..cut], form, &filler[cut..]);
            assert_eq!(r.redact(&line), reference(&r, &line), "{line}");
            assert!(!r.redact(&line).contains(form.as_str()), "{line}");
        }
    }
    // Lines holding only a form's first bytes, or nothing: unchanged and equal to the reference.
    for form in &forms {
        let line = format!("{filler}{}", &form[..MIN_SECRET_LEN]);
        assert_eq!(r.redact(&line), reference(&r, &line), "{line}");
    }
}

#[test]
fn an_ordinary_access_line_is_not_copied_by_the_shape_passes() {
    let line = r#"{"ts":1767225600000,"level":"info","fn":"health","request_id":"0f3c","method":"GET","path":"/health","status":200,"duration_ms":0}"#;
    assert!(matches!(shapes(line), std::borrow::Cow::Borrowed(_)));
    assert!(!redactor(&["configured-secret-value-123"])
        .filter()
        .may_occur(line));
}

#[test]
fn every_secret_word_makes_a_key_secret_whole_as_a_part_or_as_its_end() {
    for w in SECRET_WORDS {
        let upper = w.to_ascii_uppercase();
        for key in [
            w.to_string(),
            upper.clone(),
            format!("db_{w}"),
            format!("X-{upper}-Value"),
            format!("{w}.old"),
            format!("session{upper}"),
        ] {
            assert!(is_secret_key(&key), "{key} should be secret");
        }
        // A word inside a longer part that is not at the key's end is not a secret name.
        assert!(!is_secret_key(&format!("{w}s_used")), "{w}s_used");
    }
    // Both SECRET_PAIRS, across the three separators and in mixed case.
    for key in ["api_key", "X-Api-Key", "private-key", "PRIVATE.KEY"] {
        assert!(is_secret_key(key), "{key} should be secret");
    }
    for key in [
        "key",
        "monkey_id",
        "api",
        "secrets_valid",
        "tokens_used",
        "status",
    ] {
        assert!(!is_secret_key(key), "{key} should not be secret");
    }
}
