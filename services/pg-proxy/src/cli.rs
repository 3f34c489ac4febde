//! The operator CLI: `serve`, `migrate`, `create-user`, `set-password`.
//!
//! Passwords are read from stdin (when it is not a terminal, or with `--password-stdin`)
//! or from a no-echo prompt, never from argv, where `ps` and shell history would see them.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ProcessEnv, ServeConfig};
use crate::domain::{Password, Role, Username};
use crate::error::ApiError;
use crate::{logging, migrate, password, server, store};

/// Postgres proxy for the assistant-edge functions.
#[derive(Debug, Parser)]
#[command(name = "pg-proxy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (migrates first). Configured by environment variables:
    /// DATABASE_URL, PROXY_HMAC_KEY, PROXY_HMAC_KEY_PREVIOUS, PORT, DB_POOL_MIN_SIZE,
    /// DB_POOL_MAX_SIZE, DB_POOL_MAX_OVERFLOW, DB_POOL_TIMEOUT, DB_POOL_OVERFLOW_IDLE_SECS,
    /// DB_BATCH_CONCURRENCY, DB_PLAN_CACHE_MODE,
    /// PROXY_MAX_CONNECTIONS, PROXY_SHUTDOWN_GRACE_SECS, PROXY_MAX_BODY_BYTES, PROXY_BIND.
    Serve,
    /// Apply pending migrations to DATABASE_URL and exit.
    Migrate,
    /// Create a user. The password is read from stdin or prompted for.
    CreateUser {
        /// Login name (3-64 chars of a-z 0-9 . _ @ -; lower-cased).
        #[arg(long)]
        username: String,
        /// Role.
        #[arg(long, value_enum, default_value = "staff")]
        role: RoleArg,
        /// Read the password from the first line of stdin even if it is a terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password. The password is read from stdin or prompted for.
    SetPassword {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Read the password from the first line of stdin even if it is a terminal.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    Staff,
}

fn secrets_from_env() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(url) = config::database_url(&ProcessEnv) {
        out.push(url.expose().to_owned());
        out.extend(url.password());
    }
    for name in ["PROXY_HMAC_KEY", "PROXY_HMAC_KEY_PREVIOUS"] {
        if let Ok(v) = std::env::var(name) {
            out.push(v.trim().to_owned());
        }
    }
    out
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(secrets_from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = logging::redact(&format!("{e:#}"));
            tracing::error!(cause = %text, "exiting with an error");
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<Password> {
    let text = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            anyhow::bail!("the passwords do not match");
        }
        first
    };
    Password::parse_new(&text).map_err(api_to_anyhow)
}

fn api_to_anyhow(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn connect_pool() -> anyhow::Result<crate::pool::DbPool> {
    let url = config::database_url(&ProcessEnv)?;
    let settings = crate::config::PoolSettings {
        min_size: 0,
        max_size: 1,
        max_overflow: 0,
        ..Default::default()
    };
    migrate::run_with_url(&url).await?;
    crate::pool::DbPool::new(&url, settings)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let cfg = ServeConfig::from_env(&ProcessEnv)?;
            let running = server::start(cfg).await?;
            running.run_until(server::termination_signal()).await
        }
        Command::Migrate => {
            let url = config::database_url(&ProcessEnv)?;
            let report = migrate::run_with_url(&url).await?;
            tracing::info!(applied = ?report.applied, already = ?report.already, "migrations done");
            println!(
                "applied {:?}, already present {:?}",
                report.applied, report.already
            );
            Ok(())
        }
        Command::CreateUser {
            username,
            role,
            password_stdin,
        } => {
            let username = Username::parse(&username).map_err(api_to_anyhow)?;
            let password = read_password(password_stdin)?;
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Staff => Role::Staff,
            };
            let phc = password::hash_async(password).await?;
            let pool = connect_pool().await?;
            let db = pool.inner().get().await?;
            let user = store::create_user(&db, &username, &phc, role)
                .await
                .map_err(api_to_anyhow)?;
            println!(
                "created user {} (id {}, {:?})",
                user.username, user.id, user.role
            );
            Ok(())
        }
        Command::SetPassword {
            username,
            password_stdin,
        } => {
            let username = Username::parse(&username).map_err(api_to_anyhow)?;
            let password = read_password(password_stdin)?;
            let phc = password::hash_async(password).await?;
            let pool = connect_pool().await?;
            let db = pool.inner().get().await?;
            store::set_password(&db, &username, &phc)
                .await
                .map_err(api_to_anyhow)?;
            println!("password updated for {}", username.as_str());
            Ok(())
        }
    }
}
