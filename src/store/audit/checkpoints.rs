//! Signed checkpoints as the database keeps them (each is also appended to a file outside it).

use crate::store::{Store, StoreError, Tx, db, on_pool, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub size: i64,
    pub at: i64,
    pub kind: String,
    pub note: String,
}

pub async fn insert(
    tx: &mut Tx,
    size: u64,
    at: i64,
    kind: &str,
    note: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO audit_checkpoints (size, at, kind, note) VALUES ($1, $2, $3, $4)")
        .bind(size as i64)
        .bind(at)
        .bind(kind)
        .bind(note)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

const LATEST: &str =
    "SELECT id, size, at, kind, note FROM audit_checkpoints ORDER BY id DESC LIMIT 1";

/// The newest checkpoint (the last signed).
pub async fn latest(store: &Store) -> Result<Option<StoredCheckpoint>, StoreError> {
    on_pool!(store, p => sqlx::query_as(LATEST)
        .fetch_optional(p)
        .await
        .map_err(db))
}

/// The newest checkpoint, read inside a transaction (the signer's).
pub async fn latest_in(tx: &mut Tx) -> Result<Option<StoredCheckpoint>, StoreError> {
    on_tx!(tx, c => sqlx::query_as(LATEST)
        .fetch_optional(c)
        .await
        .map_err(db))
}

/// The largest checkpoint stored (what the log has ever been proven to hold).
pub async fn largest(store: &Store) -> Result<Option<StoredCheckpoint>, StoreError> {
    on_pool!(store, p => sqlx::query_as(
        "SELECT id, size, at, kind, note FROM audit_checkpoints ORDER BY size DESC, id DESC LIMIT 1")
        .fetch_optional(p)
        .await
        .map_err(db))
}

/// The newest checkpoint covering at most `size` events (for an export of a range).
pub async fn latest_covering(
    store: &Store,
    size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    on_pool!(store, p => sqlx::query_as(
        "SELECT id, size, at, kind, note FROM audit_checkpoints WHERE size >= $1 \
         ORDER BY size, id DESC LIMIT 1")
        .bind(size as i64)
        .fetch_optional(p)
        .await
        .map_err(db))
}

/// The log's first checkpoint (its genesis, which counts the events from before it).
pub async fn genesis(store: &Store) -> Result<Option<StoredCheckpoint>, StoreError> {
    on_pool!(store, p => sqlx::query_as(
        "SELECT id, size, at, kind, note FROM audit_checkpoints WHERE kind = 'genesis' \
         ORDER BY id LIMIT 1")
        .fetch_optional(p)
        .await
        .map_err(db))
}
