//! Operator passwords: the length rule, and argon2id hashing. Hashing and verifying are slow
//! on purpose (tens of milliseconds), so callers run them in `spawn_blocking`.

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
    pub fn hash(&self) -> Result<String, DomainError> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(self.0.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| DomainError::Invalid("password could not be hashed".into()))
    }

    /// Constant-time verification against a stored PHC string.
    pub fn verify(&self, phc: &str) -> bool {
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

/// A hash to verify against when the username is unknown, so a missing user takes as long as
/// a wrong password (no username probing by timing).
pub fn decoy_hash() -> String {
    Password::presented("keyward-decoy-password")
        .hash()
        .unwrap_or_default()
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
        let p = Password::new("correct horse battery").unwrap();
        let h = p.hash().unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify(&h));
        assert!(!Password::presented("correct horse battery!").verify(&h));
        assert!(!p.verify("not a hash"));
        assert_eq!(format!("{p:?}"), "Password(..)");
    }
}
