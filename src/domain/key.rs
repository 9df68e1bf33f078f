//! The API key format and its secret types.
//!
//! `kw_` + 43 base62 characters (256 bits of randomness) + a 6-character base62 CRC32 of
//! everything before it. The checksum lets a typo or a truncated paste be rejected offline,
//! before any database lookup, and gives secret scanners an unambiguous pattern. Keys are
//! stored only as SHA-256 digests: they are high-entropy, so a slow hash would add ~14 ms to
//! every request without adding safety (argon2 is for human passwords).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "kw_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// Characters of the body shown in a preview; 8 base62 characters identify without exposing.
const PREVIEW_BODY_LEN: usize = 8;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented key was rejected offline. Messages never include the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a keyward API key (expected kw_ followed by 49 letters and digits)")]
    Malformed,
    #[error("API key checksum mismatch (mistyped or truncated key)")]
    BadChecksum,
}

/// A plaintext API key. Its `Debug` prints nothing; only `expose` reveals it, and only the
/// create/rotate responses and the bootstrap command ever call that.
#[derive(Clone)]
pub struct PlainKey(SecretString);

impl PlainKey {
    pub fn generate() -> Self {
        let body = super::encoding::random_base62(BODY_LEN);
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(PREFIX);
        key.push_str(&body);
        let sum = checksum(&key);
        key.push_str(&sum);
        PlainKey(SecretString::from(key))
    }

    /// Checks format and checksum without touching storage.
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        let text = check(text)?;
        Ok(PlainKey(SecretString::from(text.to_owned())))
    }

    /// The digest of a presented key after the offline checks, without copying the secret:
    /// the per-request path.
    pub fn digest_of(text: &str) -> Result<KeyDigest, KeyFormatError> {
        check(text).map(|t| KeyDigest(Sha256::digest(t.as_bytes()).into()))
    }

    /// The preview of a presented key (call only after `digest_of` accepted it).
    pub fn preview_of(text: &str) -> String {
        text.trim()
            .chars()
            .take(PREFIX.len() + PREVIEW_BODY_LEN)
            .collect()
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.expose().as_bytes()).into())
    }

    /// `kw_` and the first 8 body characters: enough to tell keys apart in listings.
    pub fn preview(&self) -> String {
        self.expose()[..PREFIX.len() + PREVIEW_BODY_LEN].to_owned()
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainKey(..)")
    }
}

/// SHA-256 of a key: what storage holds and looks up. Not secret in the way the key is, but
/// still never logged, audited or returned.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    pub fn to_hex(&self) -> String {
        super::encoding::hex(&self.0)
    }

    /// Reads the hex form back (as stored for key sessions).
    pub fn from_hex(text: &str) -> Option<Self> {
        super::encoding::from_hex32(text).map(KeyDigest)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

/// Format and checksum, offline; returns the trimmed key.
fn check(text: &str) -> Result<&str, KeyFormatError> {
    let text = text.trim();
    if text.len() != KEY_LEN
        || !text.starts_with(PREFIX)
        || !text.as_bytes()[PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
    {
        return Err(KeyFormatError::Malformed);
    }
    let (rest, sum) = text.split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum_digits(rest) != sum.as_bytes() {
        return Err(KeyFormatError::BadChecksum);
    }
    Ok(text)
}

/// CRC32 of `text`, as 6 base62 digits (62^6 > 2^32), most significant first.
fn checksum_digits(text: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32fast::hash(text.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// The checksum as text; shared with the OAuth token format so both are checked alike.
pub(crate) fn checksum(text: &str) -> String {
    checksum_digits(text)
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// Whether `body` (49 characters) is a key without its `kw_`: its last six characters are the
/// checksum of `kw_` and the rest.
pub(crate) fn is_body(body: &str) -> bool {
    if body.len() != KEY_LEN - PREFIX.len() || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (rest, sum) = body.split_at(BODY_LEN);
    let mut whole = String::with_capacity(PREFIX.len() + BODY_LEN);
    whole.push_str(PREFIX);
    whole.push_str(rest);
    checksum_digits(&whole) == sum.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_have_the_documented_shape() {
        for _ in 0..200 {
            let k = PlainKey::generate();
            assert_eq!(k.expose().len(), KEY_LEN);
            assert!(k.expose().starts_with("kw_"));
            let parsed = PlainKey::parse(k.expose()).unwrap();
            assert_eq!(parsed.digest(), k.digest());
            assert_eq!(k.preview().len(), 11);
            assert!(k.expose().starts_with(&k.preview()));
        }
    }

    #[test]
    fn typos_and_truncations_are_rejected_offline() {
        let k = PlainKey::generate();
        let text = k.expose();
        // Truncated paste.
        assert_eq!(
            PlainKey::parse(&text[..KEY_LEN - 1]).err(),
            Some(KeyFormatError::Malformed)
        );
        // One character changed anywhere in the body: checksum catches it.
        for i in PREFIX.len()..KEY_LEN - CHECKSUM_LEN {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(
                PlainKey::parse(&typo).err(),
                Some(KeyFormatError::BadChecksum),
                "at {i}"
            );
        }
        assert_eq!(
            PlainKey::parse("kw_").err(),
            Some(KeyFormatError::Malformed)
        );
        assert_eq!(
            PlainKey::parse(&text.replace("kw_", "kx_")).err(),
            Some(KeyFormatError::Malformed)
        );
        let non_alnum = format!("{}-{}", &text[..10], &text[11..]);
        assert_eq!(
            PlainKey::parse(&non_alnum).err(),
            Some(KeyFormatError::Malformed)
        );
    }

    #[test]
    fn checksum_is_fixed_width_base62() {
        assert_eq!(checksum(""), "000000");
        let s = checksum("kw_hello");
        assert_eq!(s.len(), 6);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let k = PlainKey::generate();
        assert_eq!(format!("{k:?}"), "PlainKey(..)");
        assert_eq!(format!("{:?}", k.digest()), "KeyDigest(..)");
        assert_eq!(k.digest().to_hex().len(), 64);
        assert_eq!(KeyDigest::from_hex(&k.digest().to_hex()), Some(k.digest()));
        assert_eq!(PlainKey::digest_of(k.expose()), Ok(k.digest()));
        assert_eq!(PlainKey::preview_of(k.expose()), k.preview());
    }
}
