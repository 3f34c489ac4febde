//! Password hashing (argon2id) and the dummy hash that keeps unknown-user logins as slow as
//! known-user ones. Hashing is CPU-bound and takes 19 MiB per call, so the async entry points
//! run it on the blocking pool behind a semaphore (two per CPU): a login burst queues instead
//! of spawning hundreds of threads and gigabytes of hash memory.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};

use crate::domain::Password;

/// OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 params are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string.
pub fn hash(password: &Password) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let phc = hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
    Ok(phc.to_string())
}

/// A hash of a random password with the same parameters as real ones, computed once.
/// Verifying against it costs the same as verifying a real user, and never succeeds.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut bytes);
        let random = Password::parse_attempt(&hex::encode(bytes)).expect("64 hex chars");
        hash(&random).expect("hashing a random password")
    })
}

/// Computes the dummy hash now so the first unknown-user login is not slower than the rest.
pub fn prime() {
    let _ = dummy_hash();
}

/// Verifies `password` against `stored` (a PHC string), or against the dummy hash when the
/// user does not exist (`stored == None`), so both paths do the same work.
pub fn verify(stored: Option<&str>, password: &Password) -> bool {
    let phc = stored.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = hasher()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok();
    ok && stored.is_some()
}

fn hashing_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cpus * 2)
    })
}

async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    // The semaphore is never closed, so acquiring only waits.
    let _slot = hashing_slots().acquire().await?;
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// [`hash`] on the blocking pool, bounded.
pub async fn hash_async(password: Password) -> anyhow::Result<String> {
    bounded(move || hash(&password)).await?
}

/// [`verify`] on the blocking pool, bounded. Takes the stored hash by value so the caller
/// can give its database connection back before the slow part.
pub async fn verify_async(stored: Option<String>, password: Password) -> anyhow::Result<bool> {
    bounded(move || verify(stored.as_deref(), &password)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_own_password_only() {
        let p = Password::parse_new("correct horse battery staple").unwrap();
        let h = hash(&p).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(Some(&h), &p));
        let wrong = Password::parse_attempt("correct horse battery stapler").unwrap();
        assert!(!verify(Some(&h), &wrong));
    }

    #[test]
    fn an_unknown_user_never_verifies() {
        let p = Password::parse_attempt("anything at all").unwrap();
        assert!(!verify(None, &p));
    }

    #[test]
    fn a_corrupt_stored_hash_fails_closed() {
        let p = Password::parse_attempt("anything at all").unwrap();
        assert!(!verify(Some("not a phc string"), &p));
    }
}
