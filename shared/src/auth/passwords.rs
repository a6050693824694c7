//! Password hashing: argon2id with the OWASP parameters (m = 19 456 KiB, t = 2, p = 1), a
//! random 16-byte salt per password, stored as a PHC string (`$argon2id$v=19$m=…`).
//!
//! Hashing deliberately costs tens of milliseconds of CPU and 19 MiB of memory, so the async
//! entry points run it on tokio's blocking pool instead of stalling the request executor.
//!
//! Login must not reveal whether a username exists: [`verify_login`] verifies against a fixed
//! dummy hash with the same parameters when there is no stored hash, so an unknown username
//! costs exactly one argon2id verification, like a wrong password. Passwords are never logged;
//! nothing in this module formats one.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

/// Memory cost in KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations (OWASP: 2).
pub const ITERATIONS: u32 = 2;
/// Lanes (OWASP: 1).
pub const PARALLELISM: u32 = 1;

/// An argon2id hash of a random, discarded password, made with exactly the production
/// parameters. Verifying against it costs what verifying a real hash costs, which is what an
/// unknown username must cost at login. A unit test keeps its parameters in step with
/// [`MEMORY_KIB`], [`ITERATIONS`] and [`PARALLELISM`].
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$KH09LrZkHWquWVtP9tan1g$rGbiknG/W8luvkN3Sew3RTc8OLhibaXOB6AOODJZUzY";

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| Error::internal("argon2 parameters", e))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (blocking; prefer [`hash`] from async code).
pub fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal("hashing password", e))
}

/// Whether `password` matches the PHC string `stored` (blocking).
///
/// Only argon2id hashes are accepted; anything else — another algorithm, or a string that is
/// not a PHC hash at all — never matches. The final comparison of the derived key is
/// constant-time (`password_hash::Output` compares with `subtle`).
pub fn verify_blocking(password: &str, stored: &str) -> bool {
    let parsed = match PasswordHash::new(stored) {
        Ok(parsed) => parsed,
        Err(error) => {
            tracing::error!(reason = %error, "stored password hash is not a PHC string");
            return false;
        }
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        tracing::error!(algorithm = %parsed.algorithm, "stored password hash is not argon2id");
        return false;
    }
    // The parameters come from the stored hash, so hashes made with older settings still
    // verify; `Argon2::default()` only supplies the algorithm implementation.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Verifies a login attempt: against the stored hash when the user exists, otherwise against
/// [`DUMMY_HASH`], so both failures take the same time. Returns `true` only for an existing
/// user with the right password.
pub fn verify_login_blocking(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(hash) => verify_blocking(password, hash),
        None => {
            // The result is irrelevant (the password is random and discarded); the work is
            // the point.
            let _dummy_never_matches = verify_blocking(password, DUMMY_HASH);
            false
        }
    }
}

/// [`hash_blocking`] on the blocking pool.
pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| Error::internal("password hashing task", e))?
}

/// [`verify_login_blocking`] on the blocking pool.
pub async fn verify_login(password: &str, stored: Option<String>) -> Result<bool> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || verify_login_blocking(&password, stored.as_deref()))
        .await
        .map_err(|e| Error::internal("password verification task", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_uses_the_production_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), MEMORY_KIB);
        assert_eq!(params.t_cost(), ITERATIONS);
        assert_eq!(params.p_cost(), PARALLELISM);
        assert_eq!(
            parsed.salt.map(|s| s.len()),
            Some(22),
            "16-byte salt like real hashes"
        );
    }
}
