//! The operator CLI: help for every command, configuration errors that name the variable
//! without echoing it, migrate, create-user / set-password with the password on stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::helpers::{TestApp, TestDb};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pg-proxy"));
    c.env_remove("DATABASE_URL")
        .env_remove("PROXY_HMAC_KEY")
        .env_remove("PROXY_HMAC_KEY_PREVIOUS")
        .env_remove("PROXY_AUDIENCE")
        .env_remove("RAILWAY_PUBLIC_DOMAIN")
        .env_remove("ENVIRONMENT");
    c
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
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

#[test]
fn every_command_has_help() {
    for sub in [
        None,
        Some("serve"),
        Some("migrate"),
        Some("create-user"),
        Some("set-password"),
    ] {
        let mut c = bin();
        if let Some(s) = sub {
            c.arg(s);
        }
        let out = c.arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: pg-proxy"), "{sub:?}: {text}");
    }
    let top = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    for sub in ["serve", "migrate", "create-user", "set-password"] {
        assert!(text.contains(sub), "{text}");
    }
}

#[test]
fn there_is_no_password_argument() {
    for sub in ["create-user", "set-password"] {
        let out = bin()
            .args([sub, "--username", "x", "--password", "hunter2hunter2"])
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}

#[test]
fn serve_without_database_url_names_it_and_exits_non_zero() {
    let out = bin()
        .arg("serve")
        .env("PROXY_HMAC_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn invalid_pool_settings_and_bad_urls_are_named_never_echoed() {
    let out = bin()
        .arg("serve")
        .env("DATABASE_URL", "postgres://u:Leaky-Pass-9@host:notaport/db")
        .env("PROXY_HMAC_KEY", "ab".repeat(32))
        .env("DB_POOL_MAX_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        err.contains("DATABASE_URL") && err.contains("DB_POOL_MAX_SIZE"),
        "{err}"
    );
    assert!(!all.contains("Leaky-Pass-9"), "{all}");
}

#[tokio::test]
async fn migrate_then_create_user_and_set_password_from_stdin() {
    let db = TestDb::create().await;
    let out = bin()
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied [1, 2, 3, 4]"));

    let mut c = bin();
    c.args(["create-user", "--username", "Admin.Ops", "--role", "admin"])
        .env("DATABASE_URL", db.url());
    let out = run_with_stdin(c, "a very long admin passphrase\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user admin.ops"));

    let mut c = bin();
    c.args(["set-password", "--username", "admin.ops"])
        .env("DATABASE_URL", db.url());
    let out = run_with_stdin(c, "the replacement passphrase\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = bin();
    c.args(["set-password", "--username", "nobody.here"])
        .env("DATABASE_URL", db.url());
    let out = run_with_stdin(c, "the replacement passphrase\n");
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_user_created_by_the_cli_can_log_in_through_the_api() {
    let app = TestApp::spawn().await;
    let mut c = bin();
    c.args(["create-user", "--username", "frida"])
        .env("DATABASE_URL", app.db.url());
    let out = run_with_stdin(c, "frida's long passphrase\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = app
        .call(
            "POST",
            "/v1/users/verify",
            Some(json!({"username": "frida", "password": "frida's long passphrase"})),
        )
        .await;
    assert_eq!(body["valid"], true);
    assert_eq!(body["user"]["role"], "staff");
}
