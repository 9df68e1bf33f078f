//! The export bundle, `keyward-audit-bundle/1`: a gzip'd tar of a slice of the audit log that
//! anyone holding the log's public key can check offline. Building it (`build`) and checking it
//! (`check`) are pure: bytes in, bytes out, no files, no clock, no database.
//!
//! | file | what it is |
//! | --- | --- |
//! | `manifest.json` | format, origin, vkeys, filters and time zone, counts, seq range, tree size and root, SHA-256 of every file below |
//! | `manifest.sig` | a C2SP checkpoint of the same tree (kind `bundle`) whose `manifest` line is the SHA-256 of `manifest.json`, signed by the log's key: no byte of the manifest can change unnoticed |
//! | `checkpoint.txt` | the log's own signed checkpoint the proofs are against |
//! | `events.jsonl` | one canonical line per event, exactly its leaf preimage, in seq order |
//! | `proofs.jsonl` | `{"seq","leaf_index","tree_size","path":[base64…]}` per event, same order |
//! | `events.csv` | a flattened convenience view: not part of the proof |
//! | `VERIFY.md` | how to check all of this by hand |

mod check;

pub use check::{Verified, check};

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audit_leaf::StoredEvent;
use super::checkpoint::{Checkpoint, SigningKey};
use super::encoding::hex;
use super::merkle::Hash;

pub const FORMAT: &str = "keyward-audit-bundle/1";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
pub const CHECKPOINT: &str = "checkpoint.txt";
pub const EVENTS: &str = "events.jsonl";
pub const PROOFS: &str = "proofs.jsonl";
pub const CSV: &str = "events.csv";
pub const VERIFY: &str = "VERIFY.md";
/// The files the manifest lists (every file but itself and its signature).
pub const HASHED: [&str; 5] = [CHECKPOINT, EVENTS, PROOFS, CSV, VERIFY];
/// `manifest.sig`'s kind line.
pub const SIG_KIND: &str = "bundle";

/// The verifier recipe shipped in every bundle (and in `tests/fixtures/audit-bundle-v1/`).
pub const VERIFY_MD: &str = include_str!("VERIFY.md");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a readable bundle: {0}")]
    Archive(String),
    #[error("the bundle has no {0}")]
    Missing(String),
    #[error("the bundle holds an unexpected entry {0:?}")]
    Unexpected(String),
    #[error("the bundle is larger than {0} bytes unpacked")]
    TooLarge(u64),
    #[error("{0} does not match its SHA-256 in the manifest (edited or replaced)")]
    FileHash(String),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{file}: {why}")]
    Signature { file: &'static str, why: String },
    #[error("events.jsonl line {line}: {why}")]
    Event { line: usize, why: String },
    #[error("proofs.jsonl line {line}: {why}")]
    Proof { line: usize, why: String },
    #[error("the manifest says {what} {claimed}, the bundle holds {actual}")]
    Count {
        what: &'static str,
        claimed: String,
        actual: String,
    },
}

/// What the export covered, as `manifest.json` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    /// Keys that verify `checkpoint.txt` and `manifest.sig` (C2SP vkeys).
    pub vkeys: Vec<String>,
    /// When the bundle was made (RFC 3339).
    pub created_at: String,
    /// The filters applied, as resolved (absolute window).
    pub filters: serde_json::Value,
    pub time_zone: String,
    /// The exporter's tenants (`["*"]`: all); only events wholly within them are included.
    pub tenant_scope: Vec<String>,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub tree_size: u64,
    /// The checkpoint's root, base64.
    pub root: String,
    /// True when the size cap cut the export short: the events stop at `last_seq`.
    pub truncated: bool,
    /// SHA-256 (hex) of every other file but `manifest.sig`.
    pub files: BTreeMap<String, String>,
    /// Files that are views, not part of the proof.
    pub not_proof: Vec<String>,
}

/// One line of `proofs.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofLine {
    pub seq: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<String>,
}

/// Everything a bundle holds, before packing.
pub struct Contents<'a> {
    pub origin: &'a str,
    pub vkeys: Vec<String>,
    pub created_at: String,
    /// Unix seconds: the tar entries' mtime and `manifest.sig`'s time.
    pub created_unix: i64,
    pub filters: serde_json::Value,
    pub time_zone: String,
    pub tenant_scope: Vec<String>,
    /// The signed note the proofs are against, exactly as signed.
    pub checkpoint: &'a str,
    pub tree_size: u64,
    pub root: Hash,
    pub truncated: bool,
    pub events: &'a [StoredEvent<'a>],
    /// The inclusion path of each event, in the same order.
    pub paths: &'a [Vec<Hash>],
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The bundle's files, in archive order, and the manifest they make.
pub fn files(c: &Contents<'_>, signer: &SigningKey) -> (Manifest, Vec<(&'static str, Vec<u8>)>) {
    let mut events = String::new();
    let mut proofs = String::new();
    for (e, path) in c.events.iter().zip(c.paths) {
        events.push_str(&e.canonical());
        events.push('\n');
        let seq = e.seq.max(0) as u64;
        let line = ProofLine {
            seq,
            leaf_index: seq,
            tree_size: c.tree_size,
            path: path.iter().map(|h| B64.encode(h)).collect(),
        };
        proofs.push_str(&serde_json::to_string(&line).unwrap_or_default());
        proofs.push('\n');
    }
    let body: Vec<(&'static str, Vec<u8>)> = vec![
        (CHECKPOINT, c.checkpoint.as_bytes().to_vec()),
        (EVENTS, events.into_bytes()),
        (PROOFS, proofs.into_bytes()),
        (CSV, csv(c.events).into_bytes()),
        (VERIFY, VERIFY_MD.as_bytes().to_vec()),
    ];
    let manifest = Manifest {
        format: FORMAT.into(),
        origin: c.origin.into(),
        vkeys: c.vkeys.clone(),
        created_at: c.created_at.clone(),
        filters: c.filters.clone(),
        time_zone: c.time_zone.clone(),
        tenant_scope: c.tenant_scope.clone(),
        events: c.events.len() as u64,
        first_seq: c.events.first().map(|e| e.seq.max(0) as u64),
        last_seq: c.events.last().map(|e| e.seq.max(0) as u64),
        tree_size: c.tree_size,
        root: B64.encode(c.root),
        truncated: c.truncated,
        files: body
            .iter()
            .map(|(n, b)| ((*n).to_owned(), sha256_hex(b)))
            .collect(),
        not_proof: vec![CSV.into()],
    };
    let mut manifest_json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    manifest_json.push(b'\n');
    let sig = Checkpoint {
        origin: c.origin.into(),
        size: c.tree_size,
        root: c.root,
        time: c.created_unix,
        kind: SIG_KIND.into(),
        extra: vec![format!("manifest {}", sha256_hex(&manifest_json))],
    }
    .sign(&[signer]);
    let mut all = vec![(MANIFEST, manifest_json), (MANIFEST_SIG, sig.into_bytes())];
    all.extend(body);
    (manifest, all)
}

/// The bundle as one `.tar.gz`: the same contents always make the same bytes.
pub fn build(c: &Contents<'_>, signer: &SigningKey) -> Result<(Manifest, Vec<u8>), BundleError> {
    let (manifest, files) = files(c, signer);
    Ok((manifest, pack(&files, c.created_unix)?))
}

/// Packs `files` as a deterministic gzip'd tar (fixed owner, mode 0600, mtime `mtime`).
pub fn pack(files: &[(&str, Vec<u8>)], mtime: i64) -> Result<Vec<u8>, BundleError> {
    let io = |e: std::io::Error| BundleError::Archive(e.to_string());
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime.max(0) as u64);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes.as_slice())
            .map_err(io)?;
    }
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush().map_err(io)?;
    gz.finish().map_err(io)
}

/// Every stored column, one row per event. A view for spreadsheets: cells that a spreadsheet
/// would run as a formula are prefixed with `'`.
pub fn csv(events: &[StoredEvent<'_>]) -> String {
    let mut out = String::new();
    let mut header = true;
    for e in events {
        let Ok(serde_json::Value::Object(m)) = serde_json::to_value(e) else {
            continue;
        };
        if header {
            out.push_str(&m.keys().map(|k| cell(k)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
            header = false;
        }
        let row: Vec<String> = m
            .values()
            .map(|v| match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => cell(s),
                other => cell(&other.to_string()),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    format!("\"{}\"", v.replace('"', "\"\""))
}

#[cfg(test)]
mod tests;
