//! Operator CLI over `shared/secrets-catalog` (placeholder; see issue 12).

fn main() {
    eprintln!("secrets-cli: not implemented yet");
    std::process::exit(2);
}
