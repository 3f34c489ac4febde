//! Bakes the git commit into the build as `GIT_COMMIT` (read with `env!`, reported by
//! `/health/comprehensive`): `ASSISTANT_EDGE_GIT_COMMIT` when the build sets it (a build
//! without `.git`), else `git rev-parse --short HEAD`, else `unknown`, with a cargo warning
//! that says why. Cargo runs this again when HEAD moves (a checkout or a commit).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| format!("git not runnable: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A commit id as git prints it (hex, 4 to 40 characters): nothing else reaches the binary.
fn is_commit(text: &str) -> bool {
    (4..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ASSISTANT_EDGE_GIT_COMMIT");
    let commit = match std::env::var("ASSISTANT_EDGE_GIT_COMMIT") {
        Ok(given) if is_commit(&given) => given,
        Ok(given) => {
            println!(
                "cargo:warning=ASSISTANT_EDGE_GIT_COMMIT is not a commit id ({} characters); reporting `unknown`",
                given.len()
            );
            "unknown".to_owned()
        }
        Err(_) => match git(&["rev-parse", "--short", "HEAD"]) {
            Ok(sha) if is_commit(&sha) => {
                // HEAD (a checkout), the ref it names (a commit) and packed refs (a gc).
                let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
                if let Ok(name) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watched.push(git(&["rev-parse", "--git-path", &name]));
                }
                watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
                for path in watched.into_iter().flatten() {
                    if Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
                sha
            }
            Ok(other) => {
                println!("cargo:warning=git rev-parse printed no commit id ({other:?}); reporting `unknown`");
                "unknown".to_owned()
            }
            Err(why) => {
                println!("cargo:warning=no git commit for /health/comprehensive ({why}); reporting `unknown`");
                "unknown".to_owned()
            }
        },
    };
    println!("cargo:rustc-env=GIT_COMMIT={commit}");
}
