//! Operator passwords: the length rule, and argon2id hashing. Hashing and verifying are slow
//! on purpose (tens of milliseconds and ~19 MiB each), so they take an `OffRuntime` proof: they
//! run only on threads that are not the async runtime's (the password work threads), never
//! stalling request handling.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use super::error::DomainError;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 1024;

/// A password as received. Its `Debug` prints nothing.
pub struct Password(SecretString);

impl Password {
    /// Applies the password rules: at least 12 characters (and a sane upper bound).
    pub fn new(text: &str) -> Result<Self, DomainError> {
        let n = text.chars().count();
        if n < MIN_LEN {
            return Err(DomainError::Invalid(format!(
                "password must be at least {MIN_LEN} characters"
            )));
        }
        if n > MAX_LEN {
            return Err(DomainError::Invalid(format!(
                "password must be at most {MAX_LEN} characters"
            )));
        }
        Ok(Password(SecretString::from(text.to_owned())))
    }

    /// For sign-in: no rules, any text is compared.
    pub fn presented(text: &str) -> Self {
        Password(SecretString::from(text.to_owned()))
    }

    /// The text, for handing to a blocking hashing task.
    pub fn expose_for_hashing(&self) -> &str {
        self.0.expose_secret()
    }

    /// An argon2id PHC string (salted; parameters embedded).
    pub fn hash(&self, _off: &OffRuntime) -> Result<String, DomainError> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(self.0.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| DomainError::Invalid("password could not be hashed".into()))
    }

    /// Constant-time verification against a stored PHC string.
    pub fn verify(&self, phc: &str, _off: &OffRuntime) -> bool {
        PasswordHash::new(phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(self.0.expose_secret().as_bytes(), &h)
                .is_ok()
        })
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Proof that the current thread belongs to no async runtime: argon2 may run here without
/// stalling request handling. Only obtainable on such a thread.
pub struct OffRuntime(());

impl OffRuntime {
    pub fn here() -> Option<Self> {
        tokio::runtime::Handle::try_current()
            .is_err()
            .then_some(OffRuntime(()))
    }
}

/// A hash to verify against when the username is unknown, so a missing user costs the same
/// argon2 work as a wrong password (no username probing by timing). Computed once per process.
pub fn decoy_hash(off: &OffRuntime) -> String {
    Password::presented("keyward-decoy-password")
        .hash(off)
        .unwrap_or_default()
}

/// Names the password an operator signed in with, without revealing anything about it: the
/// SHA-256 of its (salted) argon2 hash, which changes with every password change.
pub fn version(hash: &str) -> String {
    use sha2::Digest;
    super::encoding::hex(&sha2::Sha256::digest(hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(Password::new("short").is_err());
        assert!(Password::new("exactly-12ch").is_ok());
        assert!(Password::new(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn hash_and_verify() {
        let off = OffRuntime::here().unwrap();
        let p = Password::new("correct horse battery").unwrap();
        let h = p.hash(&off).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify(&h, &off));
        assert!(!Password::presented("correct horse battery!").verify(&h, &off));
        assert!(!p.verify("not a hash", &off));
        assert_eq!(format!("{p:?}"), "Password(..)");
    }

    #[test]
    fn no_proof_on_a_runtime_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(async { OffRuntime::here().is_none() }));
        assert!(rt.block_on(async {
            tokio::task::spawn_blocking(|| OffRuntime::here().is_none())
                .await
                .unwrap()
        }));
        assert!(OffRuntime::here().is_some());
    }
}
