//! The `pg-proxy` binary: parses the command line and hands over to [`pg_proxy::cli`].

fn main() -> std::process::ExitCode {
    pg_proxy::cli::main()
}
