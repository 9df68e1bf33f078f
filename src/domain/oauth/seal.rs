//! Sealed refresh successors. When a refresh token rotates, the successor pair is kept (so a
//! retried refresh can be answered again) sealed under a key derived from the predecessor's
//! plaintext. Storage holds only the predecessor's digest, so a database dump alone opens
//! nothing; whoever presents the predecessor can.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// Domain separation: this key is for this purpose and format version only.
const SALT: &[u8] = b"keyward/oauth/refresh-successor/v1";

/// The AEAD key for `predecessor`: HKDF-SHA256 over its text (already 256 bits of entropy, so
/// no slow KDF is needed).
fn key_for(predecessor: &str) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(predecessor.as_bytes());
    let okm = prk.expand(&[], &CHACHA20_POLY1305).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// base64url(nonce || ciphertext || tag). `None` only if the system RNG fails. A random nonce
/// is safe: each key seals one successor, rarely more.
pub fn seal(predecessor: &str, plaintext: &[u8]) -> Option<String> {
    let key = key_for(predecessor)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .ok()?;
    out.extend_from_slice(&body);
    Some(URL_SAFE_NO_PAD.encode(out))
}

/// The plaintext sealed under `predecessor`; `None` for a wrong predecessor or any damage.
pub fn open(predecessor: &str, sealed: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
        return None;
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain = key_for(predecessor)?
        .open_in_place(nonce, Aad::empty(), &mut body)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRED: &str = "kwrt_predecessorpredecessorpredecessorpred0abc12";
    const PAIR: &[u8] = b"{\"access\":\"kwat_x\",\"refresh\":\"kwrt_y\"}";

    #[test]
    fn round_trip() {
        let sealed = seal(PRED, PAIR).unwrap();
        assert_eq!(open(PRED, &sealed).as_deref(), Some(PAIR));
        assert_eq!(open(PRED, &seal(PRED, b"").unwrap()), Some(Vec::new()));
        // A fresh nonce each time.
        assert_ne!(sealed, seal(PRED, PAIR).unwrap());
        // The plaintext is not visible in the sealed form.
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"kwat_x"));
    }

    #[test]
    fn wrong_predecessor_fails() {
        let sealed = seal(PRED, PAIR).unwrap();
        assert_eq!(open("kwrt_other", &sealed), None);
        assert_eq!(open("", &sealed), None);
        assert_eq!(open(&PRED[..PRED.len() - 1], &sealed), None);
    }

    #[test]
    fn any_flipped_byte_fails() {
        let raw = URL_SAFE_NO_PAD.decode(seal(PRED, PAIR).unwrap()).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(PRED, &URL_SAFE_NO_PAD.encode(&bad)), None, "byte {i}");
        }
    }

    #[test]
    fn truncated_or_garbage_fails_without_panic() {
        let sealed = seal(PRED, PAIR).unwrap();
        for cut in [0, 1, 10, 16, 37, sealed.len() - 1] {
            assert_eq!(open(PRED, &sealed[..cut]), None, "cut {cut}");
        }
        for junk in ["", "!!!!", "====", "a", &"A".repeat(1000), "é"] {
            assert_eq!(open(PRED, junk), None);
        }
    }
}
