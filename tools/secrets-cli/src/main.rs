//! `secrets-cli`: the secrets catalog (`shared/secrets-catalog`) as a native operator tool.
//!
//! * `validate` — judge a configuration (process environment or a dotenv file) for a set of
//!   functions; exit 0 when fine, 1 on warnings only, 2 on any error.
//! * `check NAME` — judge one value read from standard input (what `setup-secrets` runs on a
//!   provider key before writing it anywhere).
//! * `catalog` — list every entry, including which secrets are generated and how.
//! * `generate NAME` — print a fresh CSPRNG value at the catalog's strength.
//!
//! Nothing here prints a configured value; `generate` prints the value it created, which is
//! its purpose (pipe it, do not let it reach a terminal log).

mod catalog_view;
mod generate;
mod source;
mod validate;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrets_catalog::{entry, Date, Environment, Function};

use crate::source::Source;
use crate::validate::Status;

#[derive(Parser)]
#[command(
    name = "secrets-cli",
    version,
    about = "Operator CLI over the assistant-edge secrets catalog"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration against the catalog: exit 0 ok, 1 warnings only, 2 errors.
    Validate {
        /// Judge as this environment (overrides ENVIRONMENT in the configuration).
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// Function to judge (repeatable; `pg-proxy` for the proxy). Default: every edge
        /// function.
        #[arg(long = "function", value_name = "NAME")]
        functions: Vec<String>,
        /// Judge the edge functions and the proxy.
        #[arg(long, conflicts_with = "functions")]
        all_functions: bool,
        /// Read the process environment (the default).
        #[arg(long, conflicts_with = "env_file")]
        from_env: bool,
        /// Read a dotenv file instead (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        env_file: Option<String>,
        /// Print the report as JSON (schema_version 1).
        #[arg(long)]
        json: bool,
        /// Judge rotation as of this date instead of today (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
    },
    /// Check one value, read from standard input, for NAME: exit 0 ok, 1 warning, 2 error.
    Check {
        /// Catalog name.
        name: String,
        /// Judge as this environment (default production, the strictest).
        #[arg(long, value_name = "ENV", default_value = "production")]
        env: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the catalog.
    Catalog {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a fresh random value for a generated secret (hex or base64url, catalog bytes).
    Generate {
        /// Catalog name of a generated secret (see `catalog`).
        name: String,
    },
}

fn today(arg: Option<&str>) -> Result<Date, String> {
    match arg {
        Some(text) => Date::parse(text).map_err(|e| format!("--today {e}")),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| "the system clock is before 1970".to_owned())?
                .as_secs();
            Ok(Date::from_unix_seconds(
                i64::try_from(secs).unwrap_or(i64::MAX),
            ))
        }
    }
}

fn environment(text: &str) -> Result<Environment, String> {
    Environment::parse(text).map_err(|e| format!("--env {text}: {e}"))
}

fn functions(names: &[String], all: bool) -> Result<Vec<Function>, String> {
    if all {
        return Ok(Function::ALL.to_vec());
    }
    if names.is_empty() {
        return Ok(Function::EDGE.to_vec());
    }
    names
        .iter()
        .flat_map(|n| n.split(','))
        .map(|n| {
            Function::from_name(n.trim()).ok_or_else(|| {
                let known: Vec<&str> = Function::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown function {n:?} (known: {})", known.join(", "))
            })
        })
        .collect()
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Command::Validate {
            env,
            functions: names,
            all_functions,
            from_env: _,
            env_file,
            json,
            today: day,
        } => {
            let mut source = match env_file.as_deref() {
                Some(path) => Source::from_env_file(path)?,
                None => Source::from_process_env(),
            };
            if let Some(env) = env.as_deref() {
                source.set("ENVIRONMENT", environment(env)?.as_str());
            }
            let report = validate::run(
                &source,
                &functions(&names, all_functions)?,
                today(day.as_deref())?,
            );
            if json {
                print_json(&report)?;
            } else {
                print!("{}", validate::render_text(&report));
            }
            Ok(report.exit_code)
        }
        Command::Check { name, env, json } => {
            let entry = entry(&name).ok_or_else(|| format!("{name} is not in the catalog"))?;
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            let value = value.trim_end_matches(['\n', '\r']);
            if value.trim().is_empty() {
                return Err(format!("{name}: empty value on standard input"));
            }
            let findings = validate::check_one(entry.name, value, environment(&env)?, today(None)?);
            let worst = findings
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Status::Ok);
            if json {
                print_json(&serde_json::json!({
                    "name": entry.name,
                    "environment": env,
                    "status": worst,
                    "findings": findings,
                }))?;
            } else if findings.is_empty() {
                println!("{}: ok", entry.name);
            } else {
                for f in &findings {
                    println!("{}: {} [{}]", f.key, f.message, f.rule);
                }
            }
            Ok(worst.exit_code())
        }
        Command::Catalog { json } => {
            let view = catalog_view::view();
            if json {
                print_json(&view)?;
            } else {
                print!("{}", catalog_view::render_text(&view));
            }
            Ok(0)
        }
        Command::Generate { name } => {
            let entry = entry(&name).ok_or_else(|| format!("{name} is not in the catalog"))?;
            let recipe = catalog_view::generated(entry).ok_or_else(|| {
                format!("{name} is not a generated secret (provider keys and settings are provided by an operator)")
            })?;
            let value = generate::generate(&recipe).map_err(|e| e.to_string())?;
            if std::io::stdout().is_terminal() {
                eprintln!("secrets-cli: warning: printing a secret to a terminal; pipe it instead");
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{value}").map_err(|e| e.to_string())?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("secrets-cli: {message}");
            ExitCode::from(Status::Error.exit_code())
        }
    }
}
