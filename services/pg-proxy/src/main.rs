//! The `pg-proxy` binary: parses the command line and hands over to [`pg_proxy::cli`].

/// mimalloc instead of glibc malloc: under load the proxy spent about a fifth of its CPU in
/// glibc's allocator (many small per-request allocations across worker threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pg_proxy::cli::main()
}
