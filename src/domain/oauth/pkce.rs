//! PKCE (RFC 7636), S256 only: OAuth 2.1 drops `plain`, which protects nothing against a
//! stolen authorization request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An S256 challenge is a SHA-256 digest in base64url without padding: 43 characters.
const CHALLENGE_LEN: usize = 43;

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// Whether `c` can be an S256 `code_challenge`: exactly 43 base64url characters.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == CHALLENGE_LEN && c.bytes().all(is_base64url)
}

/// Whether `verifier` (43 to 128 unreserved characters, RFC 7636 §4.1) hashes to `challenge`.
/// Compared in constant time so the digest cannot be learned byte by byte.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_vector_verifies() {
        assert!(valid_challenge(CHALLENGE));
        assert!(verify_s256(VERIFIER, CHALLENGE));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let mut other = VERIFIER.to_owned();
        other.replace_range(0..1, "e");
        assert!(!verify_s256(&other, CHALLENGE));
        // Too short, too long, a character outside the unreserved set.
        assert!(!verify_s256(&VERIFIER[..42], CHALLENGE));
        assert!(!verify_s256(&"a".repeat(129), CHALLENGE));
        assert!(verify_s256(
            &"a".repeat(128),
            &URL_SAFE_NO_PAD.encode(Sha256::digest("a".repeat(128)))
        ));
        let spaced = format!("{} ", &VERIFIER[..43]);
        assert!(!verify_s256(&spaced, CHALLENGE));
        let plus = VERIFIER.replace('-', "+");
        assert!(!verify_s256(
            &plus,
            &URL_SAFE_NO_PAD.encode(Sha256::digest(&plus))
        ));
        // `plain` is not accepted: the verifier as its own challenge fails.
        assert!(!verify_s256(VERIFIER, VERIFIER));
        assert!(!verify_s256(VERIFIER, ""));
        assert!(!verify_s256(VERIFIER, &CHALLENGE[..42]));
    }

    #[test]
    fn challenge_shape() {
        assert!(!valid_challenge(""));
        assert!(!valid_challenge(&CHALLENGE[..42]));
        assert!(!valid_challenge(&format!("{CHALLENGE}=")));
        assert!(!valid_challenge(&format!("{CHALLENGE}A")));
        assert!(!valid_challenge(&CHALLENGE.replace('-', "+")));
        assert!(!valid_challenge(&CHALLENGE.replace('-', "/")));
        assert!(valid_challenge(&"_".repeat(43)));
    }
}
