//! OAuth secrets in the API key format (see `key.rs`): a kind prefix, 43 base62 characters
//! (256 bits) and a 6-character base62 CRC32 of everything before it. The checksum rejects a
//! mangled token before any lookup; the distinct prefixes route a bearer value (`kw_` is an
//! API key, `kwat_` an access token) and give secret scanners an unambiguous pattern. Like
//! keys, they are stored only as SHA-256 digests.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::encoding;
use crate::domain::key::checksum;

const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Every prefix is five characters, so every token is this long.
pub const TOKEN_LEN: usize = 5 + BODY_LEN + CHECKSUM_LEN;
/// Random characters in a grant or client id: 22 base62 characters, about 131 bits.
const ID_LEN: usize = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Code,
    ClientSecret,
    /// The browser's binding secret for a pending authorization request.
    Request,
}

impl TokenKind {
    pub const ALL: [TokenKind; 5] = [
        TokenKind::Access,
        TokenKind::Refresh,
        TokenKind::Code,
        TokenKind::ClientSecret,
        TokenKind::Request,
    ];

    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Access => "kwat_",
            TokenKind::Refresh => "kwrt_",
            TokenKind::Code => "kwac_",
            TokenKind::ClientSecret => "kwcs_",
            TokenKind::Request => "kwrq_",
        }
    }

    /// The kind in words, for error messages.
    pub const fn words(self) -> &'static str {
        match self {
            TokenKind::Access => "access token",
            TokenKind::Refresh => "refresh token",
            TokenKind::Code => "authorization code",
            TokenKind::ClientSecret => "client secret",
            TokenKind::Request => "authorization request token",
        }
    }
}

// `TOKEN_LEN` assumes five-character prefixes.
const _: () = {
    let mut i = 0;
    while i < TokenKind::ALL.len() {
        assert!(TokenKind::ALL[i].prefix().len() == 5);
        i += 1;
    }
};

/// Why a presented token was rejected offline. Messages never include the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("not a keyward {} (expected {} followed by 49 letters and digits)", .0.words(), .0.prefix())]
    Malformed(TokenKind),
    #[error("{} checksum mismatch (mistyped or truncated)", .0.words())]
    BadChecksum(TokenKind),
}

/// A freshly made OAuth secret. `Debug` shows only its kind; `expose` reveals it for the one
/// response that hands it out.
#[derive(Clone)]
pub struct OAuthSecret {
    kind: TokenKind,
    value: SecretString,
}

impl OAuthSecret {
    pub fn generate(kind: TokenKind) -> Self {
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(kind.prefix());
        text.push_str(&encoding::random_base62(BODY_LEN));
        let sum = checksum(&text);
        text.push_str(&sum);
        OAuthSecret {
            kind,
            value: SecretString::from(text),
        }
    }

    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// SHA-256 hex of the whole text: what storage holds and looks up.
    pub fn digest_hex(&self) -> String {
        sha256_hex(self.expose())
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }
}

impl fmt::Debug for OAuthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OAuthSecret({:?}, ..)", self.kind)
    }
}

/// The digest of a presented token after the offline checks (prefix, length, alphabet,
/// checksum); surrounding whitespace is ignored, as for API keys.
pub fn digest_of(kind: TokenKind, text: &str) -> Result<String, TokenFormatError> {
    let text = text.trim();
    let prefix = kind.prefix();
    if text.len() != TOKEN_LEN
        || !text.starts_with(prefix)
        || !text.as_bytes()[prefix.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
    {
        return Err(TokenFormatError::Malformed(kind));
    }
    let (rest, sum) = text.split_at(TOKEN_LEN - CHECKSUM_LEN);
    if checksum(rest) != sum {
        return Err(TokenFormatError::BadChecksum(kind));
    }
    Ok(sha256_hex(text))
}

/// Which kind `text` claims to be, by prefix alone (routing, not validation).
pub fn kind_of(text: &str) -> Option<TokenKind> {
    TokenKind::ALL
        .into_iter()
        .find(|k| text.starts_with(k.prefix()))
}

/// A public identifier: `prefix` and 22 base62 characters (`gr_` grants, `kwc_` clients).
pub fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + ID_LEN);
    id.push_str(prefix);
    id.push_str(&encoding::random_base62(ID_LEN));
    id
}

/// Whether `body` (49 characters) is some token kind's text without its prefix: its last six
/// characters are the checksum of that prefix and the rest.
pub(crate) fn bare_kind(body: &str) -> Option<TokenKind> {
    if body.len() != BODY_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (rest, sum) = body.split_at(BODY_LEN);
    TokenKind::ALL.into_iter().find(|k| {
        let mut whole = String::with_capacity(TOKEN_LEN);
        whole.push_str(k.prefix());
        whole.push_str(rest);
        checksum(&whole) == sum
    })
}

fn sha256_hex(text: &str) -> String {
    encoding::hex(&Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{key, session};

    #[test]
    fn generated_secrets_have_the_shape_and_verify() {
        for kind in TokenKind::ALL {
            for _ in 0..50 {
                let s = OAuthSecret::generate(kind);
                assert_eq!(s.kind(), kind);
                assert_eq!(s.expose().len(), TOKEN_LEN);
                assert!(s.expose().starts_with(kind.prefix()));
                assert_eq!(kind_of(s.expose()), Some(kind));
                assert_eq!(digest_of(kind, s.expose()), Ok(s.digest_hex()));
                assert_eq!(bare_kind(&s.expose()[5..]), Some(kind));
            }
        }
        let a = OAuthSecret::generate(TokenKind::Access);
        let b = OAuthSecret::generate(TokenKind::Access);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.digest_hex(), b.digest_hex());
        assert_eq!(a.digest_hex().len(), 64);
        assert_eq!(
            a.digest_hex(),
            encoding::hex(&Sha256::digest(a.expose().as_bytes()))
        );
    }

    #[test]
    fn mangled_or_wrong_kind_tokens_are_rejected() {
        let s = OAuthSecret::generate(TokenKind::Refresh);
        let text = s.expose();
        let kind = TokenKind::Refresh;
        assert_eq!(digest_of(kind, &format!(" {text}\n")), Ok(s.digest_hex()));
        assert_eq!(
            digest_of(kind, &text[..TOKEN_LEN - 1]),
            Err(TokenFormatError::Malformed(kind))
        );
        assert_eq!(
            digest_of(kind, &format!("{text}0")),
            Err(TokenFormatError::Malformed(kind))
        );
        assert_eq!(digest_of(kind, ""), Err(TokenFormatError::Malformed(kind)));
        assert_eq!(
            digest_of(TokenKind::Access, text),
            Err(TokenFormatError::Malformed(TokenKind::Access))
        );
        // The same body under another prefix fails the checksum.
        let moved = text.replacen("kwrt_", "kwat_", 1);
        assert_eq!(
            digest_of(TokenKind::Access, &moved),
            Err(TokenFormatError::BadChecksum(TokenKind::Access))
        );
        for i in 5..TOKEN_LEN {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(
                digest_of(kind, &typo),
                Err(TokenFormatError::BadChecksum(kind)),
                "at {i}"
            );
        }
        let dashed = format!("{}-{}", &text[..10], &text[11..]);
        assert_eq!(
            digest_of(kind, &dashed),
            Err(TokenFormatError::Malformed(kind))
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let s = OAuthSecret::generate(TokenKind::Code);
        assert_eq!(format!("{s:?}"), "OAuthSecret(Code, ..)");
        let mut typo = s.expose().to_owned();
        typo.replace_range(10..11, if &typo[10..11] == "a" { "b" } else { "a" });
        let err = digest_of(TokenKind::Code, &typo).unwrap_err();
        assert_eq!(
            err.to_string(),
            "authorization code checksum mismatch (mistyped or truncated)"
        );
        let err = digest_of(TokenKind::ClientSecret, "kwcs_oops").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a keyward client secret (expected kwcs_ followed by 49 letters and digits)"
        );
        assert!(!err.to_string().contains("oops"));
    }

    #[test]
    fn prefixes_route_unambiguously() {
        let key = key::PlainKey::generate();
        assert_eq!(kind_of(key.expose()), None);
        assert_eq!(kind_of("kw_"), None);
        assert_eq!(kind_of("kwat"), None);
        assert_eq!(kind_of("KWAT_abc"), None);
        assert_eq!(kind_of("kwat_"), Some(TokenKind::Access));
        assert_eq!(kind_of("kwrq_x"), Some(TokenKind::Request));
        // No keyward prefix is a prefix of another, so routing by prefix never guesses.
        let mut all: Vec<&str> = TokenKind::ALL.iter().map(|k| k.prefix()).collect();
        all.extend([key::PREFIX, session::PREFIX, session::SETUP_PREFIX]);
        for a in &all {
            for b in &all {
                if a != b {
                    assert!(!a.starts_with(b), "{a} starts with {b}");
                }
            }
        }
    }

    #[test]
    fn random_ids_have_prefix_and_22_base62() {
        let a = random_id("gr_");
        let b = random_id("gr_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
        assert!(a.starts_with("gr_"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(random_id("kwc_").len(), 26);
    }
}
