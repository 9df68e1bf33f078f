//! Access and refresh tokens, and the housekeeping of every OAuth table.

use chrono::{DateTime, Utc};

use super::grants::{GRANT_COLUMNS, GrantRow};
use crate::store::{Hold, StoreError, Tx, db, micros, on_pool, on_tx};

/// How long an expired (or revoked) access token's row is kept, in microseconds: a week.
pub const ACCESS_KEPT_US: i64 = 7 * 24 * 3600 * 1_000_000;

pub async fn insert_access(
    tx: &mut Tx,
    digest: &str,
    grant_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO oauth_access_tokens (digest, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(digest)
    .bind(grant_id)
    .bind(micros(now))
    .bind(micros(expires_at))
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// An access token with its grant, as authentication needs them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessRow {
    pub token_expires_at: i64,
    #[sqlx(flatten)]
    pub grant: GrantRow,
}

pub async fn find_access(
    store: &crate::store::Store,
    digest: &str,
) -> Result<Option<AccessRow>, StoreError> {
    let sql = format!(
        "SELECT t.expires_at AS token_expires_at, {GRANT_COLUMNS} FROM oauth_access_tokens t \
         JOIN oauth_grants g ON g.id = t.grant_id WHERE t.digest = $1"
    );
    on_pool!(store, p => sqlx::query_as(&sql).bind(digest).fetch_optional(p).await.map_err(db))
}

/// Ends one access token (RFC 7009) by moving its expiry to `now`: the row stays until the
/// sweep, so the token is still known as genuine (`invalid_token`, never counted as a guess).
/// Returns its grant when it existed.
pub async fn expire_access(
    tx: &mut Tx,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let grant: Option<String> = on_tx!(tx, c => sqlx::query_scalar(
        "SELECT grant_id FROM oauth_access_tokens WHERE digest = $1",
    )
    .bind(digest)
    .fetch_optional(c)
    .await
    .map_err(db))?;
    on_tx!(tx, c => sqlx::query(
        "UPDATE oauth_access_tokens SET expires_at = $1 WHERE digest = $2 AND expires_at > $1",
    )
    .bind(micros(now))
    .bind(digest)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))?;
    Ok(grant)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub digest: String,
    pub grant_id: String,
    pub generation: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    pub successor_sealed: Option<String>,
}

pub async fn insert_refresh(tx: &mut Tx, r: &RefreshRow) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO oauth_refresh_tokens (digest, grant_id, generation, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.digest)
    .bind(&r.grant_id)
    .bind(r.generation)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Reads a refresh token held until `tx` ends: concurrent refreshes of one token queue here,
/// so exactly one rotates it.
pub async fn get_refresh_in(tx: &mut Tx, digest: &str) -> Result<Option<RefreshRow>, StoreError> {
    let sql = format!(
        "SELECT digest, grant_id, generation, created_at, expires_at, rotated_at, successor_sealed \
         FROM oauth_refresh_tokens WHERE digest = $1{}",
        tx.hold(Hold::Update)
    );
    on_tx!(tx, c => sqlx::query_as(&sql).bind(digest).fetch_optional(c).await.map_err(db))
}

/// Reads a refresh token inside `tx` without holding it (the grace walk only reads
/// successors; locking them could deadlock against a refresh of the successor itself).
pub async fn peek_refresh_in(tx: &mut Tx, digest: &str) -> Result<Option<RefreshRow>, StoreError> {
    on_tx!(tx, c => sqlx::query_as(
        "SELECT digest, grant_id, generation, created_at, expires_at, rotated_at, successor_sealed \
         FROM oauth_refresh_tokens WHERE digest = $1",
    )
    .bind(digest)
    .fetch_optional(c)
    .await
    .map_err(db))
}

pub async fn mark_rotated(
    tx: &mut Tx,
    digest: &str,
    now: DateTime<Utc>,
    sealed: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "UPDATE oauth_refresh_tokens SET rotated_at = $1, successor_sealed = $2 WHERE digest = $3",
    )
    .bind(micros(now))
    .bind(sealed)
    .bind(digest)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Housekeeping: expired requests, codes and tokens go; sealed successors past the grace
/// window are dropped (the rotated rows stay, so a late reuse is still recognised).
pub async fn sweep(
    store: &crate::store::Store,
    now: DateTime<Utc>,
    grace_ended: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = micros(now);
    for (sql, at) in [
        ("DELETE FROM oauth_requests WHERE expires_at <= $1", now),
        ("DELETE FROM oauth_codes WHERE expires_at <= $1", now),
        // A week past expiry, not at once: until then an old token (a laptop waking up, a
        // revoked one) is still known as genuine, answered `invalid_token` and never counted
        // as a guess.
        (
            "DELETE FROM oauth_access_tokens WHERE expires_at <= $1",
            now - ACCESS_KEPT_US,
        ),
        (
            "DELETE FROM oauth_refresh_tokens WHERE expires_at <= $1",
            now,
        ),
        (
            "UPDATE oauth_refresh_tokens SET successor_sealed = NULL \
             WHERE successor_sealed IS NOT NULL AND rotated_at <= $1",
            micros(grace_ended),
        ),
    ] {
        on_pool!(store, p => sqlx::query(sql).bind(at).execute(p).await.map(|_| ()).map_err(db))?;
    }
    Ok(())
}
