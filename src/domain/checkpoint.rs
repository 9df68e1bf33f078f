//! Signed checkpoints of the audit log, in the C2SP formats (tlog-checkpoint inside a
//! signed-note, Ed25519) so that existing transparency-log tooling and a short third-party
//! verifier can read them:
//!
//! ```text
//! keyward/<instance>            origin
//! 1234                          tree size
//! <base64 root>                 tree root
//! time 1733350000               extension lines (keyward's): when, why, and what else
//! kind commit
//!
//! — keyward/<instance> <base64(key id ‖ signature)>
//! ```
//!
//! Signing and verification use `ring`'s Ed25519 (already built for TLS).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Ed25519's algorithm byte in C2SP signed-note keys.
const ED25519_ALG: u8 = 0x01;
const DASH: &str = "\u{2014} ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed signing key: {0}")]
    BadKey(&'static str),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("no signature on the checkpoint verifies with a trusted key")]
    Unverified,
}

/// A key name as C2SP allows it: no spaces, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n', '\t'])
}

/// The 4-byte key id: SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_ALG]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex4(id: &[u8; 4]) -> String {
    super::encoding::hex(id)
}

/// The private half: kept outside the database, in a 0600 file or a setting.
pub struct SigningKey {
    name: String,
    seed: secrecy::SecretBox<[u8; 32]>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("vkey", &self.verifying().to_string())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SigningKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("the key name must have no spaces or '+'"));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadKey("not an Ed25519 seed"))?;
        Ok(SigningKey {
            name: name.to_owned(),
            seed: secrecy::SecretBox::new(Box::new(seed)),
            pair,
        })
    }

    pub fn generate(name: &str) -> Result<SigningKey, NoteError> {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed[..]);
        Self::from_seed(name, seed)
    }

    /// `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`, the signed-note signer format.
    pub fn parse(text: &str) -> Result<SigningKey, NoteError> {
        let t = text.trim();
        let rest = t
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("expected PRIVATE+KEY+<name>+<id>+<key>"))?;
        let mut parts = rest.rsplitn(3, '+');
        let (Some(key), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected PRIVATE+KEY+<name>+<id>+<key>"));
        };
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519_ALG {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let k = Self::from_seed(name, seed)?;
        if hex4(&k.verifying().id) != id.to_ascii_lowercase() {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(k)
    }

    /// The text form `parse` reads. A secret: only ever written to the 0600 key file.
    pub fn to_secret_text(&self) -> String {
        use secrecy::ExposeSecret;
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_ALG);
        raw.extend_from_slice(self.seed.expose_secret());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex4(&self.verifying().id),
            B64.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifying(&self) -> VerifyingKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey {
            name: self.name.clone(),
            id: key_id(&self.name, &public),
            public,
        }
    }

    fn signature_line(&self, text: &str) -> String {
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.verifying().id);
        blob.extend_from_slice(sig.as_ref());
        format!("{DASH}{} {}\n", self.name, B64.encode(blob))
    }
}

/// The public half, published as a vkey: `<name>+<id>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub name: String,
    pub id: [u8; 4],
    pub public: [u8; 32],
}

impl std::fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_ALG);
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{}+{}", self.name, hex4(&self.id), B64.encode(raw))
    }
}

impl VerifyingKey {
    pub fn parse(vkey: &str) -> Result<VerifyingKey, NoteError> {
        let mut parts = vkey.trim().rsplitn(3, '+');
        let (Some(key), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected <name>+<id>+<key>"));
        };
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519_ALG || !valid_name(name) {
            return Err(NoteError::BadKey("not an Ed25519 verifier key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let k = VerifyingKey {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        };
        if hex4(&k.id) != id.to_ascii_lowercase() {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(k)
    }

    pub fn key_id(&self) -> String {
        hex4(&self.id)
    }
}

/// What a checkpoint states. `time` and `kind` are keyward's extension lines; `extra` keeps
/// any other (`unproven …`, `restored …`, `key …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Unix seconds when it was signed.
    pub time: i64,
    /// `genesis`, `commit`, `heartbeat`, `shutdown`, `restored` or `rotated`.
    pub kind: String,
    pub extra: Vec<String>,
}

impl Checkpoint {
    /// The note text that is signed: every line ends in a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\ntime {}\nkind {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.time,
            self.kind
        );
        for e in &self.extra {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("the text must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Malformed("no origin"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|_| true)
            .ok_or(NoteError::Malformed("no tree size"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or(NoteError::Malformed("no tree root"))?;
        let (mut time, mut kind, mut extra) = (None, None, Vec::new());
        for line in lines {
            if line.is_empty() {
                return Err(NoteError::Malformed("an empty line inside the checkpoint"));
            }
            if let Some(t) = line.strip_prefix("time ") {
                time = t.parse::<i64>().ok();
            } else if let Some(k) = line.strip_prefix("kind ") {
                kind = Some(k.to_owned());
            } else {
                extra.push(line.to_owned());
            }
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            time: time.ok_or(NoteError::Malformed("no time line"))?,
            kind: kind.ok_or(NoteError::Malformed("no kind line"))?,
            extra,
        })
    }

    /// The signed note: the body, a blank line, one signature line per key.
    pub fn sign(&self, keys: &[&SigningKey]) -> String {
        let body = self.body();
        let mut note = format!("{body}\n");
        for k in keys {
            note.push_str(&k.signature_line(&body));
        }
        note
    }

    /// An extension line's value (`restored 42` → `Some("42")`).
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }
}

/// A checkpoint whose note carried at least one valid signature by a trusted key.
#[derive(Debug, Clone)]
pub struct Opened {
    pub checkpoint: Checkpoint,
    /// Trusted keys whose signatures verified.
    pub signed_by: Vec<VerifyingKey>,
}

/// Parses a signed note and checks its signatures against `trusted`. Signatures by unknown
/// keys are ignored (as C2SP says); at least one trusted one must verify.
pub fn open(note: &str, trusted: &[VerifyingKey]) -> Result<Opened, NoteError> {
    let split = note
        .find("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    let checkpoint = Checkpoint::parse_body(body)?;
    let mut signed_by = Vec::new();
    for line in sigs.lines().filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix(DASH)
            .ok_or(NoteError::Malformed("a signature line must start with an em dash"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("a signature line needs a name and a signature"))?;
        let Ok(blob) = B64.decode(blob) else {
            return Err(NoteError::Malformed("a signature is not base64"));
        };
        if blob.len() != 68 {
            continue;
        }
        for k in trusted.iter().filter(|k| k.name == name && k.id == blob[..4]) {
            let public = UnparsedPublicKey::new(&ED25519, &k.public);
            if public.verify(body.as_bytes(), &blob[4..]).is_ok() && !signed_by.contains(k) {
                signed_by.push(k.clone());
            }
        }
    }
    if signed_by.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(Opened {
        checkpoint,
        signed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "keyward/test".into(),
            size: 7,
            root: [9u8; 32],
            time: 1_733_350_000,
            kind: "commit".into(),
            extra: vec!["restored 5".into()],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_reads_back_the_same() {
        let k = SigningKey::generate("keyward/test").expect("key");
        let note = cp().sign(&[&k]);
        assert!(note.contains("\n\n\u{2014} keyward/test "));
        let opened = open(&note, &[k.verifying()]).expect("verifies");
        assert_eq!(opened.checkpoint, cp());
        assert_eq!(opened.checkpoint.extension("restored"), Some("5"));
    }

    #[test]
    fn another_key_or_an_edited_byte_does_not_verify() {
        let k = SigningKey::generate("keyward/test").expect("key");
        let other = SigningKey::generate("keyward/test").expect("key");
        let note = cp().sign(&[&other]);
        assert_eq!(
            open(&note, &[k.verifying()]).map(|_| ()),
            Err(NoteError::Unverified)
        );
        let note = cp().sign(&[&k]);
        let edited = note.replacen("\n7\n", "\n8\n", 1);
        assert_eq!(
            open(&edited, &[k.verifying()]).map(|_| ()),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let k = SigningKey::generate("keyward/abc").expect("key");
        let back = SigningKey::parse(&k.to_secret_text()).expect("parses");
        assert_eq!(back.verifying(), k.verifying());
        let vkey = k.verifying().to_string();
        assert_eq!(VerifyingKey::parse(&vkey).expect("vkey"), k.verifying());
        assert!(vkey.starts_with("keyward/abc+"));
        assert!(!format!("{k:?}").contains(&k.to_secret_text()));
        let mut tampered = vkey.clone();
        tampered.replace_range(12..13, if &vkey[12..13] == "0" { "1" } else { "0" });
        assert!(VerifyingKey::parse(&tampered).is_err());
    }

    #[test]
    fn the_go_note_key_id_rule_holds() {
        // sumdb's published test key (golang.org/x/mod/sumdb/note): name, id and public key.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let k = VerifyingKey::parse(vkey).expect("the published key parses, its id matching");
        assert_eq!(k.key_id(), "c74f20a3");
    }
}
