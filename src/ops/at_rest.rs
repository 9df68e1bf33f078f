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
    let env_text = env_text.filter(|t| !t.trim().is_empty());
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
}

/// Re-seals `store` (opened with its current key) to `to`. First moves what stopped
/// processes left in their audit journals (sealed under the current key), and refuses while
/// another process is writing.
pub async fn rekey(store: &Store, to: &Seal) -> Result<Rekeyed, RekeyError> {
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
    Ok(crate::store::rekey::rekey(store, to).await?)
}
