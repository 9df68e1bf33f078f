//! Operator usernames: the rule for new ones, and the keyed hash under which a typed name is
//! counted (the per-username sign-in delay) and recorded when no such operator exists, so a
//! password typed into the username field never reaches the trail.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::DomainError;

/// How a typed name is compared: trimmed, lowercase.
pub fn normalize(typed: &str) -> String {
    typed.trim().to_lowercase()
}

/// Usernames are case-insensitive identifiers (stored lowercase): 3-128 letters, digits and
/// . _ - @ +, not starting with `kw_` (which reads as a key preview in the trail).
pub fn check(text: &str) -> Result<String, DomainError> {
    let u = normalize(text);
    let ok = (3..=128).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@+".contains(&b))
        && !u.starts_with(super::key::PREFIX);
    if ok {
        Ok(u)
    } else {
        Err(DomainError::Invalid(
            "invalid username: 3-128 characters, letters, digits and . _ - @ +, not starting \
             with kw_"
                .into(),
        ))
    }
}

/// The HMAC key for typed names: random, kept in the database so every replica hashes alike.
/// Its `Debug` prints nothing.
pub struct NameKey([u8; 32]);

impl NameKey {
    /// A fresh key, as stored (hex).
    pub fn generate_hex() -> String {
        super::encoding::hex(&rand::random::<[u8; 32]>())
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        super::encoding::from_hex32(text).map(NameKey)
    }

    /// HMAC-SHA256 of the normalised name, hex: the same for every spelling that signs in as
    /// the same user, and useless to anyone without the key.
    pub fn hash(&self, typed: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(normalize(typed).as_bytes());
        super::encoding::hex(&mac.finalize().into_bytes())
    }

    /// What the trail shows for a typed name that is no operator's: a short prefix of its hash.
    pub fn label(&self, typed: &str) -> String {
        format!("name#{}", &self.hash(typed)[..16])
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rule() {
        assert_eq!(check(" Alice ").unwrap(), "alice");
        assert!(check("kw_abcdefgh").is_err());
        assert!(check("KW_abcdefgh").is_err());
        assert!(check("al").is_err());
        assert!(check("al ice").is_err());
        assert!(check("bob@example.com").is_ok());
    }

    #[test]
    fn typed_names_hash_alike_per_key_and_hide_the_name() {
        let k = NameKey::from_hex(&NameKey::generate_hex()).unwrap();
        let other = NameKey::from_hex(&NameKey::generate_hex()).unwrap();
        assert_eq!(k.hash("Alice"), k.hash(" alice"));
        assert_ne!(k.hash("alice"), other.hash("alice"));
        assert_eq!(k.hash("x").len(), 64);
        assert!(!k.label("Summer2026Rocks").to_lowercase().contains("summer"));
        assert_eq!(format!("{k:?}"), "NameKey(..)");
    }
}
