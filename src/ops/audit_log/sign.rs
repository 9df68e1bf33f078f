//! Signing a checkpoint of the log as it stands: only after proving, from what storage holds,
//! that the tree extends the largest checkpoint signed before (so a rewritten log is never
//! signed over), then recorded in the database, the checkpoint file and every anchor.

use crate::domain::checkpoint::{self, Checkpoint, SigningKey};
use crate::domain::merkle::{self, Frontier};
use crate::ops::app::App;
use crate::store::audit::{checkpoints, tree};

use super::{LogError, anchors};

/// Why a checkpoint is signed (its `kind` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The first checkpoint of this log.
    Genesis,
    /// New events since the last one.
    Commit,
    /// Nothing new, but time has passed: proves the signer was alive.
    Heartbeat,
    /// The server is stopping cleanly.
    Shutdown,
    /// The database was restored from a backup older than the newest checkpoint.
    Restored,
}

impl Why {
    fn kind(self) -> &'static str {
        match self {
            Why::Genesis => "genesis",
            Why::Commit => "commit",
            Why::Heartbeat => "heartbeat",
            Why::Shutdown => "shutdown",
            Why::Restored => "restored",
        }
    }
}

/// A checkpoint just signed.
#[derive(Debug, Clone)]
pub struct Signed {
    pub size: u64,
    pub note: String,
}

fn integrity(msg: impl Into<String>) -> LogError {
    LogError::Integrity(msg.into())
}

/// Signs a checkpoint of the current tree. `Ok(None)`: nothing to sign (no key here, or a
/// commit checkpoint with nothing new, or another signer got further first).
pub async fn sign(app: &App, why: Why) -> Result<Option<Signed>, LogError> {
    let log = &app.audit_log;
    let Some(keys) = &log.keys else {
        return Ok(None);
    };
    let store = &app.store;
    // The last checkpoint before the head: the head only grows, so another signer's newer
    // checkpoint can never look larger than the log read after it.
    let last = checkpoints::largest(store).await?;
    let head = tree::head(store).await?;
    let frontier =
        Frontier::from_bytes(head.size, &head.frontier).map_err(|e| integrity(e.to_string()))?;
    let root = frontier.root();
    let trusted = log.trusted();
    let last = match &last {
        Some(l) => Some(
            checkpoint::open(&l.note, &trusted)
                .map_err(|e| integrity(format!("the newest stored checkpoint: {e}")))?,
        ),
        None => None,
    };
    if let Some(l) = &last {
        let c = &l.checkpoint;
        if why == Why::Commit && c.size == head.size {
            return Ok(None);
        }
        if c.size > head.size && why != Why::Restored {
            return Err(integrity(format!(
                "the log holds {} events but a signed checkpoint covers {}",
                head.size, c.size
            )));
        }
    }
    // Prove from storage that the tree has the head's root and extends the last checkpoint.
    let prev = last.as_ref().map(|l| l.checkpoint.size).unwrap_or(0);
    let stored = tree::StoredTree::load(store, head.size, &[prev.min(head.size)]).await?;
    let rebuilt = merkle::root(&stored, head.size).map_err(|e| integrity(e.to_string()))?;
    if rebuilt != root {
        return Err(integrity(
            "the stored hashes do not give the tree head's root",
        ));
    }
    let mut extra = Vec::new();
    if let Some(l) = &last {
        let c = &l.checkpoint;
        if c.size <= head.size {
            let old = merkle::root(&stored, c.size).map_err(|e| integrity(e.to_string()))?;
            let proof = merkle::consistency_proof(&stored, c.size, head.size)
                .map_err(|e| integrity(e.to_string()))?;
            if old != c.root
                || !merkle::verify_consistency(c.size, head.size, &c.root, &root, &proof)
            {
                return Err(integrity(format!(
                    "the log is not an extension of the checkpoint at size {}",
                    c.size
                )));
            }
        }
    }
    let mut signers: Vec<&SigningKey> = vec![&keys.current];
    let current = keys.current.verifying();
    let rotated = last
        .as_ref()
        .is_some_and(|l| !l.signed_by.contains(&current));
    if rotated {
        // The first checkpoint of a new key: the key that signed the last one vouches for it.
        if let Some(old) = keys.retired.iter().find(|k| {
            last.as_ref()
                .is_some_and(|l| l.signed_by.contains(&k.verifying()))
        }) {
            signers.push(old);
        }
        extra.push(format!("key {current}"));
    }
    let why = if last.is_none() { Why::Genesis } else { why };
    if why == Why::Genesis {
        extra.push(format!("unproven {} {}", head.unproven, head.unproven_ids));
    }
    if why == Why::Restored {
        extra.push(format!("restored {}", head.size));
    }
    let now = app.now();
    let cp = Checkpoint {
        origin: log.origin.clone(),
        size: head.size,
        root,
        time: now.timestamp(),
        kind: why.kind().to_owned(),
        extra,
    };
    let note = cp.sign(&signers);
    let mut tx = store.begin().await?;
    let newest = checkpoints::latest_in(&mut tx).await?;
    let covered = |n: &checkpoints::StoredCheckpoint| {
        n.size as u64 > head.size || (why == Why::Commit && n.size as u64 == head.size)
    };
    if newest.as_ref().is_some_and(covered) && why != Why::Restored {
        // Another signer (another process on this SQLite file) went further meanwhile.
        return Ok(None);
    }
    checkpoints::insert(
        &mut tx,
        head.size,
        now.timestamp_micros(),
        why.kind(),
        &note,
    )
    .await?;
    tx.commit().await?;
    log.signed.send_replace(head.size);
    anchor(log, &note).await;
    // A signed checkpoint proves the log consistent again: a violation found while signing
    // clears (one found at start stays until the server restarts on a clean check).
    log.clear_signing_violation();
    Ok(Some(Signed {
        size: head.size,
        note,
    }))
}

/// Appends to the checkpoint file and sends to every anchor; a failure is logged loudly and
/// does not undo the checkpoint (the database and the other places still hold it).
async fn anchor(log: &super::AuditLog, note: &str) {
    if let Some(path) = &log.checkpoint_log {
        let (p, n) = (path.clone(), note.to_owned());
        let written = tokio::task::spawn_blocking(move || anchors::append_file(&p, &n)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(path = %path.display(), "audit checkpoint not appended to the checkpoint log file");
        }
    }
    // Remote anchors never hold up the signer (nor shutdown): sent on their own task, each
    // bounded in time.
    let remote: Vec<anchors::Anchor> = log.settings.anchors.clone();
    if remote.is_empty() {
        return;
    }
    let note = note.to_owned();
    tokio::spawn(async move {
        for a in &remote {
            let sent =
                tokio::time::timeout(std::time::Duration::from_secs(10), anchors::send(a, &note))
                    .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(anchor = ?a, error = %e, "audit checkpoint not sent to an anchor")
                }
                Err(_) => {
                    tracing::error!(anchor = ?a, "audit checkpoint not sent to an anchor: no answer in 10 s")
                }
            }
        }
    });
}
