//! Encryption at rest: the rules for sealing a sensitive value before it is stored and opening
//! it when it is read. Pure (no I/O); the store decides which columns are sealed.
//!
//! One 256-bit key (`KEYWARD_ENCRYPTION_KEY`) gives, through HKDF-SHA256, three independent
//! subkeys: an AES-256-GCM key, an HMAC-SHA256 key that derives deterministic nonces, and one
//! that names the key (its id, stored in the database so a wrong key is refused). A value is
//! sealed with its column's name as associated data, so a sealed value moved to another column
//! does not open.
//!
//! Two modes:
//! - `seal`: a random 96-bit nonce. Reveals only the value's length (and whether it is null).
//! - `seal_eq`: the nonce is HMAC(column, value), so equal values give equal sealed text and
//!   `=`, `IN` and `GROUP BY` keep working on the sealed column (client IPs, user agents).
//!   Reveals which stored values are equal within that column, nothing else: a synthetic-IV
//!   construction, safe because a nonce repeats only for the same column and plaintext.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Prefix of every sealed text value (format version 1).
pub const SEALED_PREFIX: &str = "kw1:";
/// First byte of a sealed binary record (journal frames, private exports); plaintext records
/// start with `{`.
pub const SEALED_RECORD: u8 = 0x01;
const TAG_LEN: usize = 16;
const SALT: &[u8] = b"keyward/at-rest/v1";

/// Where a sealed value lives: its associated data, so it opens only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    AuditReason,
    AuditSalt,
    AuditArgs,
    AuditBefore,
    AuditAfter,
    AuditClientIp,
    AuditUserAgent,
    KeyDescription,
    RoleDescription,
    FailureIp,
    KnownIp,
    Setting,
    Journal,
    Export,
}

impl Place {
    fn aad(self) -> &'static [u8] {
        match self {
            Place::AuditReason => b"audit_events.reason",
            Place::AuditSalt => b"audit_events.salt",
            Place::AuditArgs => b"audit_events.args",
            Place::AuditBefore => b"audit_events.before_state",
            Place::AuditAfter => b"audit_events.after_state",
            Place::AuditClientIp => b"audit_events.client_ip",
            Place::AuditUserAgent => b"audit_events.user_agent",
            Place::KeyDescription => b"api_keys.description",
            Place::RoleDescription => b"roles.description",
            Place::FailureIp => b"auth_failures.client_ip",
            Place::KnownIp => b"signin_known.client_ip",
            Place::Setting => b"settings.value",
            Place::Journal => b"audit journal frame",
            Place::Export => b"audit export",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyTextError {
    #[error(
        "the encryption key must be 32 random bytes, as 64 hex digits or base64 (generate one with `openssl rand -base64 32`)"
    )]
    Malformed,
    #[error("the encryption key is all one byte; generate a random one")]
    Weak,
}

/// A sealed value that does not open with this key (another key, damage, or not sealed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a sealed value does not open with this encryption key")]
pub struct Unopenable;

/// The key and its subkeys. Debug shows the id only.
pub struct AtRestKey {
    aead: LessSafeKey,
    nonce: hmac::Key,
    id: String,
}

impl std::fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtRestKey({})", self.id)
    }
}

fn subkey<'a, L: ring::hkdf::KeyType>(
    prk: &'a ring::hkdf::Prk,
    info: &'a [&'a [u8]],
    len: L,
) -> ring::hkdf::Okm<'a, L> {
    // Expanding at most 32 bytes from SHA-256 never fails.
    #[allow(clippy::expect_used)]
    prk.expand(info, len).expect("HKDF output within one block")
}

impl AtRestKey {
    /// Reads a key from its text: 64 hex digits or base64 of 32 bytes (surrounding whitespace
    /// ignored, so a key file may end in a newline).
    pub fn parse(text: &str) -> Result<AtRestKey, KeyTextError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyTextError::Malformed)?
        } else {
            STANDARD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
                .map_err(|_| KeyTextError::Malformed)?
        };
        if bytes.len() != 32 {
            return Err(KeyTextError::Malformed);
        }
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err(KeyTextError::Weak);
        }
        Ok(AtRestKey::from_bytes(&bytes))
    }

    fn from_bytes(ikm: &[u8]) -> AtRestKey {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(ikm);
        let aead = LessSafeKey::new(UnboundKey::from(subkey(&prk, &[b"aead"], &AES_256_GCM)));
        let nonce = hmac::Key::from(subkey(&prk, &[b"nonce"], hmac::HMAC_SHA256));
        let name = hmac::Key::from(subkey(&prk, &[b"id"], hmac::HMAC_SHA256));
        let tag = hmac::sign(&name, b"keyward encryption key id");
        let id = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        AtRestKey { aead, nonce, id }
    }

    /// A fresh random key, as the base64 text `parse` reads.
    pub fn generate() -> Option<String> {
        let mut k = [0u8; 32];
        SystemRandom::new().fill(&mut k).ok()?;
        Some(STANDARD.encode(k))
    }

    /// The key's public name: 16 hex digits from a one-way function of the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal_with(&self, place: Place, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        // Sealing fails only for inputs beyond GCM's 64 GiB limit, far above any record.
        let tag = self.aead.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(place.aad()),
            &mut out[NONCE_LEN..],
        );
        match tag {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            Err(_) => out.truncate(0),
        }
        out
    }

    fn random_nonce() -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        // The system RNG does not fail on a working system; a repeated nonce would break GCM,
        // so a machine without one stops here (as key and token generation would).
        if SystemRandom::new().fill(&mut n).is_err() {
            tracing::error!("system random number generator failed");
            std::process::abort();
        }
        n
    }

    /// Seals bytes with a random nonce: nonce ‖ ciphertext ‖ tag.
    pub fn seal_bytes(&self, place: Place, plain: &[u8]) -> Vec<u8> {
        self.seal_with(place, Self::random_nonce(), plain)
    }

    /// Opens what `seal_bytes` made.
    pub fn open_bytes(&self, place: Place, sealed: &[u8]) -> Result<Vec<u8>, Unopenable> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Unopenable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unopenable)?;
        let mut body = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(place.aad()), &mut body)
            .map_err(|_| Unopenable)?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }

    fn text(sealed: &[u8]) -> String {
        let mut s = String::with_capacity(SEALED_PREFIX.len() + sealed.len() * 4 / 3 + 4);
        s.push_str(SEALED_PREFIX);
        URL_SAFE_NO_PAD.encode_string(sealed, &mut s);
        s
    }

    /// Seals a text value with a random nonce.
    pub fn seal(&self, place: Place, plain: &str) -> String {
        Self::text(&self.seal_bytes(place, plain.as_bytes()))
    }

    /// Seals a text value deterministically: equal values in one place seal equally.
    pub fn seal_eq(&self, place: Place, plain: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.nonce);
        ctx.update(place.aad());
        ctx.update(&[0]);
        ctx.update(plain.as_bytes());
        let mac = ctx.sign();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&mac.as_ref()[..NONCE_LEN]);
        Self::text(&self.seal_with(place, nonce, plain.as_bytes()))
    }

    /// Opens a text value sealed by either mode.
    pub fn open(&self, place: Place, sealed: &str) -> Result<String, Unopenable> {
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or(Unopenable)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| Unopenable)?;
        let plain = self.open_bytes(place, &bytes)?;
        String::from_utf8(plain).map_err(|_| Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AtRestKey {
        let mut k = [b; 32];
        k[0] = 0;
        AtRestKey::from_bytes(&k)
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_refuse_anything_else() {
        let hex = "00".to_owned() + &"11".repeat(31);
        let b64 = STANDARD.encode([[0u8].as_slice(), &[0x11; 31]].concat());
        assert_eq!(
            AtRestKey::parse(&hex).unwrap().id(),
            AtRestKey::parse(&format!("{b64}\n")).unwrap().id()
        );
        assert_eq!(
            AtRestKey::parse("short").unwrap_err(),
            KeyTextError::Malformed
        );
        assert_eq!(
            AtRestKey::parse(&STANDARD.encode([7u8; 16])).unwrap_err(),
            KeyTextError::Malformed
        );
        assert_eq!(
            AtRestKey::parse(&"ab".repeat(32)).unwrap_err(),
            KeyTextError::Weak
        );
        let fresh = AtRestKey::generate().unwrap();
        assert_eq!(AtRestKey::parse(&fresh).unwrap().id().len(), 16);
        assert_ne!(
            AtRestKey::parse(&fresh).unwrap().id(),
            AtRestKey::parse(&hex).unwrap().id()
        );
    }

    #[test]
    fn sealed_text_round_trips_and_hides_the_value() {
        let k = key(3);
        let plain = "{\"description\":\"payroll robot\"}";
        let a = k.seal(Place::AuditArgs, plain);
        let b = k.seal(Place::AuditArgs, plain);
        assert!(a.starts_with(SEALED_PREFIX));
        assert_ne!(a, b, "a random nonce each time");
        assert!(!a.contains("payroll"));
        assert_eq!(k.open(Place::AuditArgs, &a).unwrap(), plain);
        assert_eq!(k.open(Place::AuditArgs, &b).unwrap(), plain);
        assert_eq!(
            k.open(Place::AuditArgs, &k.seal(Place::AuditArgs, ""))
                .unwrap(),
            ""
        );
    }

    #[test]
    fn equality_sealing_is_deterministic_per_place_only() {
        let k = key(3);
        let a = k.seal_eq(Place::AuditClientIp, "203.0.113.7");
        assert_eq!(a, k.seal_eq(Place::AuditClientIp, "203.0.113.7"));
        assert_ne!(a, k.seal_eq(Place::AuditClientIp, "203.0.113.8"));
        assert_ne!(a, k.seal_eq(Place::FailureIp, "203.0.113.7"));
        assert_ne!(a, key(4).seal_eq(Place::AuditClientIp, "203.0.113.7"));
        assert_eq!(k.open(Place::AuditClientIp, &a).unwrap(), "203.0.113.7");
    }

    #[test]
    fn a_value_does_not_open_elsewhere_under_another_key_or_damaged() {
        let k = key(3);
        let a = k.seal(Place::KeyDescription, "nightly backups");
        assert_eq!(k.open(Place::RoleDescription, &a), Err(Unopenable));
        assert_eq!(key(4).open(Place::KeyDescription, &a), Err(Unopenable));
        assert_eq!(
            k.open(Place::KeyDescription, "nightly backups"),
            Err(Unopenable)
        );
        let mut bad = a.clone().into_bytes();
        let i = bad.len() - 3;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open(Place::KeyDescription, &String::from_utf8(bad).unwrap()),
            Err(Unopenable)
        );
        assert_eq!(k.open(Place::KeyDescription, "kw1:"), Err(Unopenable));
        assert_eq!(k.open_bytes(Place::Journal, &[1, 2, 3]), Err(Unopenable));
    }
}
