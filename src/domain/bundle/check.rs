//! Checking a bundle offline: what `keyward audit verify-bundle` runs, and what a third-party
//! verifier does (VERIFY.md says the same steps in prose). Every failure names the file, and
//! the line where there is one.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

use super::{
    BundleError, CHECKPOINT, EVENTS, FORMAT, HASHED, MANIFEST, MANIFEST_SIG, Manifest, PROOFS,
    ProofLine, SIG_KIND, sha256_hex,
};
use crate::domain::audit_leaf::StoredEvent;
use crate::domain::checkpoint::{self, VerifyingKey};
use crate::domain::merkle::{self, Hash};

/// The most a bundle may unpack to (the server caps what it writes far lower).
pub const MAX_UNPACKED: u64 = 1 << 30;

/// A bundle that verified.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub origin: String,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub tree_size: u64,
    pub root: String,
    pub truncated: bool,
    /// The vkey that signed the checkpoint.
    pub signed_by: String,
}

/// Reads the archive's entries: plain files named as the format names them, each once.
fn unpack(archive: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let bad = |e: std::io::Error| BundleError::Archive(e.to_string());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = entry
            .path()
            .map_err(bad)?
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let known = name == MANIFEST || name == MANIFEST_SIG || HASHED.contains(&name.as_str());
        if !known || entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::Unexpected(name));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_UNPACKED - total + 1)
            .read_to_end(&mut bytes)
            .map_err(bad)?;
        total += bytes.len() as u64;
        if total > MAX_UNPACKED {
            return Err(BundleError::TooLarge(MAX_UNPACKED));
        }
        if files.insert(name.clone(), bytes).is_some() {
            return Err(BundleError::Unexpected(format!("{name} (twice)")));
        }
    }
    Ok(files)
}

fn text<'a>(files: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Result<&'a str, BundleError> {
    let bytes = files
        .get(name)
        .ok_or_else(|| BundleError::Missing(name.to_owned()))?;
    std::str::from_utf8(bytes).map_err(|_| BundleError::Archive(format!("{name} is not UTF-8")))
}

/// Lines of a `.jsonl` file: each ends in `\n`, none is empty.
fn lines(text: &str) -> Result<Vec<&str>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text
        .strip_suffix('\n')
        .ok_or("the last line has no newline")?;
    Ok(body.split('\n').collect())
}

/// Checks `archive` against `trusted` keys: every file hash, both signatures, every event
/// line canonical and proven in the checkpoint's tree, seq order and the manifest's counts.
pub fn check(archive: &[u8], trusted: &[VerifyingKey]) -> Result<Verified, BundleError> {
    let files = unpack(archive)?;
    let manifest_bytes = files
        .get(MANIFEST)
        .ok_or_else(|| BundleError::Missing(MANIFEST.into()))?;

    // 1. The manifest is the one the log's key signed.
    let sig = text(&files, MANIFEST_SIG)?;
    let opened_sig = checkpoint::open(sig, trusted).map_err(|e| BundleError::Signature {
        file: MANIFEST_SIG,
        why: e.to_string(),
    })?;
    let sig_cp = opened_sig.checkpoint;
    if sig_cp.kind != SIG_KIND
        || sig_cp.extension("manifest") != Some(sha256_hex(manifest_bytes).as_str())
    {
        return Err(BundleError::Signature {
            file: MANIFEST_SIG,
            why: "it does not sign this manifest.json (edited or replaced)".into(),
        });
    }
    let m: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| BundleError::Manifest(format!("unreadable: {e}")))?;
    if m.format != FORMAT {
        return Err(BundleError::Manifest(format!(
            "format {:?}, expected {FORMAT:?}",
            m.format
        )));
    }

    // 2. Every listed file is there, unchanged, and nothing else is.
    let listed: Vec<&str> = m.files.keys().map(String::as_str).collect();
    if listed != {
        let mut h = HASHED.to_vec();
        h.sort_unstable();
        h
    } {
        return Err(BundleError::Manifest(format!(
            "lists {listed:?}, expected {HASHED:?}"
        )));
    }
    for (name, want) in &m.files {
        let bytes = files
            .get(name)
            .ok_or_else(|| BundleError::Missing(name.clone()))?;
        if &sha256_hex(bytes) != want {
            return Err(BundleError::FileHash(name.clone()));
        }
    }

    // 3. The checkpoint is signed by a trusted key and is the tree the manifest names.
    let opened = checkpoint::open(text(&files, CHECKPOINT)?, trusted).map_err(|e| {
        BundleError::Signature {
            file: CHECKPOINT,
            why: e.to_string(),
        }
    })?;
    let cp = opened.checkpoint;
    let root_b64 = B64.encode(cp.root);
    for (what, claimed, actual) in [
        ("origin", m.origin.clone(), cp.origin.clone()),
        ("tree_size", m.tree_size.to_string(), cp.size.to_string()),
        ("root", m.root.clone(), root_b64.clone()),
        (
            "manifest.sig origin",
            sig_cp.origin.clone(),
            cp.origin.clone(),
        ),
        (
            "manifest.sig tree_size",
            sig_cp.size.to_string(),
            cp.size.to_string(),
        ),
        (
            "manifest.sig root",
            B64.encode(sig_cp.root),
            root_b64.clone(),
        ),
    ] {
        if claimed != actual {
            return Err(BundleError::Count {
                what,
                claimed,
                actual,
            });
        }
    }

    // 4. Each event line is canonical, in seq order, and its leaf is in the tree.
    let events = lines(text(&files, EVENTS)?).map_err(|why| BundleError::Event { line: 0, why })?;
    let proofs = lines(text(&files, PROOFS)?).map_err(|why| BundleError::Proof { line: 0, why })?;
    if events.len() != proofs.len() {
        return Err(BundleError::Count {
            what: "proofs",
            claimed: events.len().to_string(),
            actual: proofs.len().to_string(),
        });
    }
    let mut last: Option<u64> = None;
    let mut first: Option<u64> = None;
    for (i, (e, p)) in events.iter().zip(&proofs).enumerate() {
        let line = i + 1;
        let event = StoredEvent::from_canonical(e).ok_or_else(|| BundleError::Event {
            line,
            why: "not a canonical leaf (edited, reformatted or an unknown field)".into(),
        })?;
        let seq = u64::try_from(event.seq).map_err(|_| BundleError::Event {
            line,
            why: "a negative seq".into(),
        })?;
        if last.is_some_and(|l| seq <= l) {
            return Err(BundleError::Event {
                line,
                why: format!("seq {seq} is out of order (after {})", last.unwrap_or(0)),
            });
        }
        first.get_or_insert(seq);
        last = Some(seq);
        let proof: ProofLine = serde_json::from_str(p).map_err(|e| BundleError::Proof {
            line,
            why: format!("unreadable: {e}"),
        })?;
        if proof.seq != seq || proof.leaf_index != seq || proof.tree_size != cp.size {
            return Err(BundleError::Proof {
                line,
                why: format!(
                    "is for seq {} (index {}, size {}), the event is seq {seq} in a tree of {}",
                    proof.seq, proof.leaf_index, proof.tree_size, cp.size
                ),
            });
        }
        let path = proof
            .path
            .iter()
            .map(|h| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| Hash::try_from(b.as_slice()).ok())
            })
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| BundleError::Proof {
                line,
                why: "a path hash is not 32 bytes of base64".into(),
            })?;
        let leaf = merkle::leaf_hash(e.as_bytes());
        if !merkle::verify_inclusion(seq, cp.size, &leaf, &path, &cp.root) {
            return Err(BundleError::Proof {
                line,
                why: format!("event seq {seq} is not proven in the checkpoint's tree"),
            });
        }
    }

    // 5. The manifest's counts are the bundle's.
    for (what, claimed, actual) in [
        ("events", m.events.to_string(), events.len().to_string()),
        (
            "first_seq",
            format!("{:?}", m.first_seq),
            format!("{first:?}"),
        ),
        ("last_seq", format!("{:?}", m.last_seq), format!("{last:?}")),
    ] {
        if claimed != actual {
            return Err(BundleError::Count {
                what,
                claimed,
                actual,
            });
        }
    }
    Ok(Verified {
        origin: cp.origin,
        events: m.events,
        first_seq: first,
        last_seq: last,
        tree_size: cp.size,
        root: root_b64,
        truncated: m.truncated,
        signed_by: opened
            .signed_by
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
    })
}
