//! The binary as scripts use it: exit codes 0/1/2, the JSON schema's stable fields, values
//! never printed, `generate` and `check` through standard input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";

fn cli(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secrets-cli"))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_exits_0_when_fine_1_on_warnings_and_2_on_errors() {
    let ok = cli(
        &[
            "validate",
            "--function",
            "login",
            "--env-file",
            "-",
            "--today",
            "2026-11-22",
        ],
        &format!("ENVIRONMENT=development\nJWT_SECRET_KEY={JWT}\n"),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let warn = cli(
        &[
            "validate",
            "--function",
            "login",
            "--env-file",
            "-",
            "--today",
            "2026-11-22",
        ],
        &format!(
            "ENVIRONMENT=development\nJWT_SECRET_KEY={JWT}\nJWT_SECRET_KEY_ROTATED_AT=2025-01-01\n"
        ),
    );
    assert_eq!(warn.status.code(), Some(1), "{}", stdout(&warn));
    let err = cli(
        &[
            "validate",
            "--function",
            "login",
            "--env-file",
            "-",
            "--env",
            "production",
        ],
        "",
    );
    assert_eq!(err.status.code(), Some(2));
    assert!(stdout(&err).contains("JWT_SECRET_KEY") && stdout(&err).contains("exit 2"));
}

#[test]
fn validate_json_has_the_documented_fields_and_no_values() {
    let o = cli(
        &[
            "validate",
            "--all-functions",
            "--env-file",
            "-",
            "--env",
            "production",
            "--json",
        ],
        &format!("JWT_SECRET_KEY={JWT}\nOPENAI_API_KEY=sk-proj-ZZmarkerZZ\n"),
    );
    let text = stdout(&o);
    assert!(!text.contains(JWT) && !text.contains("ZZmarker"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["environment"], "production");
    assert_eq!(doc["source"], "stdin");
    assert_eq!(doc["status"], "error");
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["functions"].as_array().unwrap().len(), 8);
    let jwt = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "JWT_SECRET_KEY")
        .unwrap();
    for field in [
        "secret",
        "generated",
        "required_by",
        "set",
        "format",
        "strength",
        "min_strength",
        "rotation",
        "status",
    ] {
        assert!(jwt.get(field).is_some(), "{field}");
    }
    let finding = &doc["findings"][0];
    for field in ["severity", "key", "rule", "message", "functions"] {
        assert!(finding.get(field).is_some(), "{field}");
    }
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_malformed_env_file_fails_with_the_line_number_only() {
    let o = cli(&["validate", "--env-file", "-"], "GOOD=1\nsk-proj-leakme\n");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && !err.contains("leakme"), "{err}");
}

#[test]
fn generate_prints_one_value_that_check_accepts() {
    let g = cli(&["generate", "PROXY_HMAC_KEY"], "");
    assert_eq!(g.status.code(), Some(0));
    let value = stdout(&g);
    assert_eq!(value.trim_end().len(), 64);
    let c = cli(&["check", "PROXY_HMAC_KEY", "--env", "production"], &value);
    assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
    assert_eq!(stdout(&c), "PROXY_HMAC_KEY: ok\n");
}

#[test]
fn generate_refuses_provider_keys() {
    let o = cli(&["generate", "OPENAI_API_KEY"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn check_reports_a_bad_provider_key_without_echoing_it() {
    let o = cli(&["check", "OPENAI_API_KEY"], "not-a-key-ZZmarker\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).starts_with("OPENAI_API_KEY: ") && !stdout(&o).contains("ZZmarker"));
}

#[test]
fn catalog_json_lists_generated_secrets_with_their_encoding() {
    let o = cli(&["catalog", "--json"], "");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let hmac = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PROXY_HMAC_KEY")
        .unwrap();
    assert_eq!(hmac["generated"]["encoding"], "hex");
    assert_eq!(hmac["generated"]["bytes"], 32);
    assert_eq!(hmac["scope"], "both");
}
