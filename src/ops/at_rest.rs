//! Encryption at rest as an operator meets it: where the key comes from, and re-sealing a
//! database (`keyward rekey`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::at_rest::{AtRestKey, KeyTextError};
use crate::store::audit_writer::{AuditWriter, WriterConfig};
use crate::store::rekey::Rekeyed;
use crate::store::{Db, Seal, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("KEYWARD_ENCRYPTION_KEY and --encryption-key-file are both set; give the key once")]
    Twice,
    #[error("cannot read the encryption key file {path}: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error(
        "the encryption key file setting names no file (it is not shown, in case it holds the key itself): give the path of an existing key file, or put the key in KEYWARD_ENCRYPTION_KEY"
    )]
    KeyForPath,
    #[error(
        "KEYWARD_ENCRYPTION_KEY is set but empty (a secret that failed to load?): set it to the key, or unset it to run without encryption"
    )]
    Empty,
    #[error(
        "the encryption key file {path} is readable by other users (mode {mode:o}); run chmod 600 on it"
    )]
    Shared { path: PathBuf, mode: u32 },
    #[error("{from}: {why}")]
    Malformed { from: String, why: KeyTextError },
}

/// The configured key: from `KEYWARD_ENCRYPTION_KEY` (`env_text`) or a key file, or none.
pub fn load_key(
    file: Option<&Path>,
    env_text: Option<&str>,
) -> Result<Option<Arc<AtRestKey>>, KeyLoadError> {
    // Set but empty is a failed injection, never a choice to run in plaintext.
    if env_text.is_some_and(|t| t.trim().is_empty()) {
        return Err(KeyLoadError::Empty);
    }
    match (file, env_text) {
        (Some(_), Some(_)) => Err(KeyLoadError::Twice),
        (None, Some(t)) => AtRestKey::parse(t)
            .map(|k| Some(Arc::new(k)))
            .map_err(|why| KeyLoadError::Malformed {
                from: "KEYWARD_ENCRYPTION_KEY".into(),
                why,
            }),
        (Some(path), None) => read_key_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// A key file: owner-only, one key.
pub fn read_key_file(path: &Path) -> Result<Arc<AtRestKey>, KeyLoadError> {
    // A key (or something like one) given where its file was expected must not be echoed
    // back: a setting that names no file is not shown.
    if !path.exists() {
        return Err(KeyLoadError::KeyForPath);
    }
    let unreadable = |e: std::io::Error| KeyLoadError::Unreadable {
        path: path.to_owned(),
        why: e.to_string(),
    };
    if let Some(mode) = crate::store::private::shared_mode(path).map_err(unreadable)? {
        return Err(KeyLoadError::Shared {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    AtRestKey::parse(&text)
        .map(Arc::new)
        .map_err(|why| KeyLoadError::Malformed {
            from: path.display().to_string(),
            why,
        })
}

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "another keyward process is still writing to this database ({0} audit journal(s) in use); stop every keyward process on it, then run rekey again"
    )]
    InUse(i64),
    #[error("the audit trail's pending records could not be moved before re-sealing")]
    Journal,
    #[error(
        "another keyward process has this database open; stop every keyward process on it (every replica), then run rekey again"
    )]
    Open,
    #[error(
        "re-sealed and committed ({0} values): the database now opens only with the key rekey left it under; but the old values' space could not be reclaimed ({1}): once nothing else has the database open, run VACUUM and PRAGMA wal_checkpoint(TRUNCATE) on it (SQLite) or VACUUM (FULL, ANALYZE) on its tables (PostgreSQL)"
    )]
    Reclaim(u64, StoreError),
}

/// Re-seals `store` (opened with its current key) to `to`, then reclaims the old values'
/// space. First moves what stopped processes left in their audit journals (sealed under the
/// current key), and refuses while another process has the database open.
pub async fn rekey(store: &Store, to: &Seal) -> Result<Rekeyed, RekeyError> {
    // A replica that closed its session a moment ago may still show as holding its share.
    let mut lock = None;
    for _ in 0..10 {
        lock = crate::store::seal::hold(store, true).await?;
        if lock.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let exclusive = lock.ok_or(RekeyError::Open)?;
    if let Db::Sqlite(_) = &store.db {
        let (writer, finished) = AuditWriter::start(store.clone(), &WriterConfig::default())
            .await
            .map_err(|_| RekeyError::Journal)?;
        writer.close().await;
        let _ = finished.await;
        let in_use = crate::store::rekey::journals_in_use(store).await?;
        if in_use > 0 {
            return Err(RekeyError::InUse(in_use));
        }
    }
    let done = crate::store::rekey::rekey(store, to).await?;
    let reclaimed = crate::store::rekey::reclaim(store).await;
    exclusive.release().await;
    reclaimed.map_err(|e| RekeyError::Reclaim(done.values, e))?;
    Ok(done)
}
