//! Session tokens: the value of the sign-in cookie. 256 random bits; stored only as a SHA-256
//! digest, so a copy of the database cannot be replayed as cookies.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "kws_";
/// The one-time bootstrap token's prefix: recognisable, so it is scrubbed like the others.
pub const SETUP_PREFIX: &str = "kwsu_";
const BODY_LEN: usize = 43;

pub struct SessionToken(SecretString);

impl SessionToken {
    pub fn generate() -> Self {
        let body = super::encoding::random_base62(BODY_LEN);
        SessionToken(SecretString::from(format!("{PREFIX}{body}")))
    }

    /// Accepts only well-formed tokens, so junk cookies never reach the database.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == PREFIX.len() + BODY_LEN
            && text.starts_with(PREFIX)
            && text[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        ok.then(|| SessionToken(SecretString::from(text.to_owned())))
    }

    /// A one-time setup token (printed at start while bootstrap is open): 256 random bits.
    pub fn setup() -> String {
        format!("{SETUP_PREFIX}{}", super::encoding::random_base62(BODY_LEN))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn digest_hex(&self) -> String {
        super::encoding::hex(&Sha256::digest(self.expose().as_bytes()))
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        let t = SessionToken::generate();
        let p = SessionToken::parse(t.expose()).unwrap();
        assert_eq!(p.digest_hex(), t.digest_hex());
        assert_eq!(t.digest_hex().len(), 64);
        assert!(SessionToken::parse("kws_short").is_none());
        assert!(SessionToken::parse(&t.expose().replace("kws_", "kwx_")).is_none());
        assert_eq!(format!("{t:?}"), "SessionToken(..)");
    }
}
