//! Server-side sessions behind the sign-in cookie, stored by digest and revocable.

use chrono::{DateTime, Utc};

use super::{StoreError, Tx, db, micros, on_pool, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub subject_kind: String,
    pub subject_id: String,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn insert(
    store: &super::Store,
    digest: &str,
    subject_kind: &str,
    subject_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query(
        "INSERT INTO sessions (digest, subject_kind, subject_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest)
    .bind(subject_kind)
    .bind(subject_id)
    .bind(micros(now))
    .bind(micros(expires_at))
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

pub async fn find(store: &super::Store, digest: &str) -> Result<Option<SessionRow>, StoreError> {
    on_pool!(store, p => sqlx::query_as(
        "SELECT subject_kind, subject_id, expires_at, revoked_at FROM sessions WHERE digest = $1",
    )
    .bind(digest)
    .fetch_optional(p)
    .await
    .map_err(db))
}

/// Revokes the session within `tx`; returns whether a live one was found.
pub async fn revoke(tx: &mut Tx, digest: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    on_tx!(tx, c => sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE digest = $2 AND revoked_at IS NULL")
        .bind(micros(now))
        .bind(digest)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db))
}

/// Revokes every live session of one subject within `tx`; returns how many.
pub async fn revoke_subject(
    tx: &mut Tx,
    kind: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    on_tx!(tx, c => sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE subject_kind = $2 AND subject_id = $3 AND revoked_at IS NULL",
    )
    .bind(micros(now))
    .bind(kind)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    .map_err(db))
}
