//! The export directory: bundles the server made, each beside a small sidecar naming its
//! exporter and when it was made. The directory is 0700 and every file 0600; names are the
//! server's own choosing (a caller never names a path); at most `keep` bundles stay, none older
//! than `max_age`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ExportSettings;
use crate::domain::at_rest::Place;
use crate::domain::principal::Principal;
use crate::ops::app::App;
use crate::store::{Seal, private};

const PREFIX: &str = "keyward-audit-";
const SUFFIX: &str = ".tar.gz";

pub fn export_dir(app: &App) -> Option<PathBuf> {
    app.exports.dir.clone().or_else(|| beside(&app.store))
}

/// The default export directory: `<database file>.exports/` beside a SQLite database.
pub fn beside(store: &crate::store::Store) -> Option<PathBuf> {
    let db = store.sqlite_file()?;
    let mut name = db.file_name()?.to_os_string();
    name.push(".exports");
    Some(db.with_file_name(name))
}

/// Who may fetch a bundle: the exporting key or operator.
pub fn owner(p: &Principal) -> String {
    format!(
        "{}:{}",
        p.actor().kind(),
        p.actor().id().unwrap_or_default()
    )
}

/// A name the server could have chosen: `keyward-audit-<time>-<random>.tar.gz`, nothing else
/// (no separators, no dots but the suffix's).
pub fn valid_name(name: &str) -> bool {
    name.len() <= 80
        && name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .is_some_and(|mid| {
                !mid.is_empty() && mid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    owner: String,
    created_at: i64,
    bytes: u64,
    sha256: String,
}

fn sidecar(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("part");
    let mut f = private::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn sidecars(dir: &Path) -> Vec<(String, Sidecar)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_owned();
            let name = file.strip_suffix(".json")?;
            if !valid_name(name) {
                return None;
            }
            let s = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((name.to_owned(), s))
        })
        .collect()
}

fn remove(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(name));
    let _ = std::fs::remove_file(sidecar(dir, name));
}

/// Expires bundles past `max_age`, then the oldest until `room` more fit under `keep`.
fn expire(dir: &Path, s: &ExportSettings, now: DateTime<Utc>, room: usize) {
    let cutoff = (now - s.max_age).timestamp_micros();
    let mut live: Vec<(String, Sidecar)> = Vec::new();
    for (name, side) in sidecars(dir) {
        if side.created_at < cutoff {
            remove(dir, &name);
        } else {
            live.push((name, side));
        }
    }
    live.sort_by(|a, b| (a.1.created_at, &a.0).cmp(&(b.1.created_at, &b.0)));
    let over = (live.len() + room).saturating_sub(s.keep);
    for (name, _) in live.iter().take(over) {
        remove(dir, name);
    }
}

/// Writes the bundle under a fresh name and returns the name.
pub async fn save(
    dir: &Path,
    s: &ExportSettings,
    owner: &str,
    bytes: &[u8],
    now: DateTime<Utc>,
    seal: &Seal,
) -> std::io::Result<String> {
    let name = format!(
        "{PREFIX}{}-{}{SUFFIX}",
        now.format("%Y%m%dT%H%M%SZ"),
        crate::domain::encoding::random_base62(12)
    );
    let side = serde_json::to_vec(&Sidecar {
        owner: owner.to_owned(),
        created_at: now.timestamp_micros(),
        bytes: bytes.len() as u64,
        sha256: crate::domain::bundle::sha256_hex(bytes),
    })?;
    // With encryption at rest the file is sealed (the download is not: its reader is
    // authenticated, and the bundle is theirs to keep).
    let stored = seal.record(Place::Export, bytes.to_vec());
    let (dir, s, bytes, n) = (dir.to_owned(), s.clone(), stored, name.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        private::create_dir(&dir)?;
        expire(&dir, &s, now, 1);
        write_private(&dir.join(&n), &bytes)?;
        write_private(&sidecar(&dir, &n), &side)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(name)
}

/// The bytes of `name` when `owner` made it and it has not expired (else `None`).
pub async fn read(
    dir: &Path,
    s: &ExportSettings,
    owner: &str,
    name: &str,
    now: DateTime<Utc>,
    seal: &Seal,
) -> std::io::Result<Option<Vec<u8>>> {
    let (dir, s, owner, name) = (dir.to_owned(), s.clone(), owner.to_owned(), name.to_owned());
    let seal = seal.clone();
    tokio::task::spawn_blocking(move || {
        expire(&dir, &s, now, 0);
        let side: Option<Sidecar> = std::fs::read(sidecar(&dir, &name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if side.is_none_or(|s| s.owner != owner) {
            return None;
        }
        let stored = std::fs::read(dir.join(&name)).ok()?;
        seal.open_record(Place::Export, &stored)
    })
    .await
    .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_server_chooses_are_valid() {
        assert!(valid_name(
            "keyward-audit-20250101T000000Z-abcDEF123456.tar.gz"
        ));
        for bad in [
            "../keyward.db",
            "keyward-audit-../../x.tar.gz",
            "keyward-audit-a/b.tar.gz",
            "keyward-audit-.tar.gz",
            "keyward-audit-x.tar.gz.json",
            "keyward-audit-a%2Fb.tar.gz",
            "/etc/passwd",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
