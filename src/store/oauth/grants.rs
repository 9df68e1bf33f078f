//! Grants (one consent each) and their single-use authorization codes.

use chrono::{DateTime, Utc};

use crate::store::{Hold, StoreError, Tx, db, micros, on_pool, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub signer_kind: String,
    pub signer_id: String,
    pub signer_digest: Option<String>,
    pub role_name: String,
    pub permissions: String,
    pub tenants: String,
    pub resource: String,
    pub redirect_uri: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_why: Option<String>,
}

pub(super) const GRANT_COLUMNS: &str = "g.id, g.client_id, g.client_name, g.signer_kind, g.signer_id, \
    g.signer_digest, g.role_name, g.permissions, g.tenants, g.resource, g.redirect_uri, \
    g.created_at, g.expires_at, g.last_used_at, g.revoked_at, g.revoked_why";

pub async fn insert_grant(tx: &mut Tx, g: &GrantRow) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO oauth_grants (id, client_id, client_name, signer_kind, signer_id, \
         signer_digest, role_name, permissions, tenants, resource, redirect_uri, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&g.id)
    .bind(&g.client_id)
    .bind(&g.client_name)
    .bind(&g.signer_kind)
    .bind(&g.signer_id)
    .bind(&g.signer_digest)
    .bind(&g.role_name)
    .bind(&g.permissions)
    .bind(&g.tenants)
    .bind(&g.resource)
    .bind(&g.redirect_uri)
    .bind(g.created_at)
    .bind(g.expires_at)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// The grant a code or refresh token belongs to, read without holding anything (to check its
/// signer before a write transaction begins: on SQLite, that check's own write would wait on
/// the transaction's lock).
pub async fn grant_of(
    store: &crate::store::Store,
    table: TokenTable,
    digest: &str,
) -> Result<Option<GrantRow>, StoreError> {
    let table = match table {
        TokenTable::Code => "oauth_codes",
        TokenTable::Refresh => "oauth_refresh_tokens",
    };
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM {table} t JOIN oauth_grants g ON g.id = t.grant_id \
         WHERE t.digest = $1"
    );
    on_pool!(store, p => sqlx::query_as(&sql).bind(digest).fetch_optional(p).await.map_err(db))
}

/// Which kind of secret `grant_of` looks up.
#[derive(Debug, Clone, Copy)]
pub enum TokenTable {
    Code,
    Refresh,
}

/// Reads a grant inside `tx`, held until it ends (after its token or code was: see
/// `revoke_grant` for the lock order).
pub async fn get_grant_in(tx: &mut Tx, id: &str) -> Result<Option<GrantRow>, StoreError> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.id = $1{}",
        tx.hold(Hold::Update)
    );
    on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await.map_err(db))
}

/// Reads a grant inside `tx` without holding it (to revoke it: `revoke_grant` then takes its
/// locks in the one order).
pub async fn peek_grant_in(tx: &mut Tx, id: &str) -> Result<Option<GrantRow>, StoreError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.id = $1");
    on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await.map_err(db))
}

/// Live grants (not revoked, not expired), newest first; of one signer when given.
pub async fn list_grants(
    store: &crate::store::Store,
    signer_id: Option<&str>,
    now: DateTime<Utc>,
    limit: i64,
    offset: i64,
) -> Result<Vec<GrantRow>, StoreError> {
    let mut sql = format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.revoked_at IS NULL AND g.expires_at > $1"
    );
    if signer_id.is_some() {
        sql.push_str(" AND g.signer_id = $4");
    }
    sql.push_str(" ORDER BY g.created_at DESC, g.id LIMIT $2 OFFSET $3");
    on_pool!(store, p => {
        let mut q = sqlx::query_as(&sql).bind(micros(now)).bind(limit).bind(offset);
        if let Some(s) = signer_id {
            q = q.bind(s);
        }
        q.fetch_all(p).await.map_err(db)
    })
}

/// The live grants of one signer to one client, least recently used first.
pub async fn live_grants_of(
    tx: &mut Tx,
    signer_id: &str,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar(
        "SELECT id FROM oauth_grants WHERE signer_id = $1 AND client_id = $2 \
         AND revoked_at IS NULL AND expires_at > $3 \
         ORDER BY COALESCE(last_used_at, created_at), id",
    )
    .bind(signer_id)
    .bind(client_id)
    .bind(micros(now))
    .fetch_all(c)
    .await
    .map_err(db))
}

/// Revokes a grant and deletes its refresh tokens and codes; false when it was revoked
/// already.
pub async fn revoke_grant(
    tx: &mut Tx,
    id: &str,
    now: DateTime<Utc>,
    why: &str,
) -> Result<bool, StoreError> {
    // Refresh tokens and codes first, the grant last: the order a refresh or a code exchange
    // takes its locks in (its token, then the grant), so the two can never deadlock on
    // PostgreSQL. Access tokens stay (for a week past expiry) so that a revoked one is still
    // known as genuine: answered `invalid_token`, never counted as a guess.
    for table in ["oauth_refresh_tokens", "oauth_codes"] {
        let sql = format!("DELETE FROM {table} WHERE grant_id = $1");
        on_tx!(tx, c => sqlx::query(&sql).bind(id).execute(c).await.map(|_| ()).map_err(db))?;
    }
    on_tx!(tx, c => sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_why = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(micros(now))
    .bind(why)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1)
    .map_err(db))
}

/// Ends every grant of a signer and every authorization request it signed in to and has not
/// decided yet (a password reset, a disable, a revocation), within `tx`. Returns the grants.
pub async fn end_signer(
    tx: &mut Tx,
    signer_id: &str,
    now: DateTime<Utc>,
    why: &str,
) -> Result<Vec<String>, StoreError> {
    on_tx!(tx, c => sqlx::query("DELETE FROM oauth_requests WHERE signer_id = $1")
        .bind(signer_id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))?;
    let grants = live_grants_of_signer(tx, signer_id).await?;
    for g in &grants {
        revoke_grant(tx, g, now, why).await?;
    }
    Ok(grants)
}

/// The ids of a signer's live grants (to revoke them all, e.g. after a password change).
pub async fn live_grants_of_signer(
    tx: &mut Tx,
    signer_id: &str,
) -> Result<Vec<String>, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar(
        "SELECT id FROM oauth_grants WHERE signer_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(signer_id)
    .fetch_all(c)
    .await
    .map_err(db))
}

pub async fn touch_grant(
    store: &crate::store::Store,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stale = micros(now - chrono::Duration::minutes(1));
    on_pool!(store, p => sqlx::query(
        "UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2 \
         AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(micros(now))
    .bind(id)
    .bind(stale)
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub digest: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert_code(tx: &mut Tx, c: &CodeRow) -> Result<(), StoreError> {
    on_tx!(tx, conn => sqlx::query(
        "INSERT INTO oauth_codes (digest, grant_id, client_id, redirect_uri, code_challenge, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&c.digest)
    .bind(&c.grant_id)
    .bind(&c.client_id)
    .bind(&c.redirect_uri)
    .bind(&c.code_challenge)
    .bind(c.expires_at)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Reads a code for redemption, held until `tx` ends, and marks it used. The row returned
/// shows whether it had been used before.
pub async fn redeem_code(
    tx: &mut Tx,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<CodeRow>, StoreError> {
    let sql = format!(
        "SELECT digest, grant_id, client_id, redirect_uri, code_challenge, expires_at, used_at \
         FROM oauth_codes WHERE digest = $1{}",
        tx.hold(Hold::Update)
    );
    let row: Option<CodeRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(digest).fetch_optional(c).await.map_err(db))?;
    if let Some(r) = &row
        && r.used_at.is_none()
    {
        on_tx!(tx, c => sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE digest = $2")
            .bind(micros(now))
            .bind(&r.digest)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    Ok(row)
}
