//! The authorization server's rows: registered clients and pending browser requests here;
//! grants and codes in `grants.rs`, tokens in `tokens.rs`. Every secret arrives as a digest.

mod grants;
mod tokens;

pub use grants::*;
pub use tokens::*;

use chrono::{DateTime, Utc};

use crate::store::{StoreError, Tx, db, micros, on_pool, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: String,
    pub grant_types: String,
    pub auth_method: String,
    pub secret_digest: Option<String>,
    pub fingerprint: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const CLIENT: &str = "SELECT id, name, redirect_uris, grant_types, auth_method, secret_digest, \
    fingerprint, metadata, created_at, last_used_at FROM oauth_clients";

pub async fn insert_client(store: &crate::store::Store, c: &ClientRow) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query(
        "INSERT INTO oauth_clients (id, name, redirect_uris, grant_types, auth_method, \
         secret_digest, fingerprint, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&c.id)
    .bind(&c.name)
    .bind(&c.redirect_uris)
    .bind(&c.grant_types)
    .bind(&c.auth_method)
    .bind(&c.secret_digest)
    .bind(&c.fingerprint)
    .bind(&c.metadata)
    .bind(c.created_at)
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

pub async fn find_client(
    store: &crate::store::Store,
    id: &str,
) -> Result<Option<ClientRow>, StoreError> {
    let sql = format!("{CLIENT} WHERE id = $1");
    on_pool!(store, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await.map_err(db))
}

pub async fn find_client_by_fingerprint(
    store: &crate::store::Store,
    fingerprint: &str,
) -> Result<Option<ClientRow>, StoreError> {
    let sql = format!("{CLIENT} WHERE fingerprint = $1 ORDER BY created_at LIMIT 1");
    on_pool!(store, p => sqlx::query_as(&sql).bind(fingerprint).fetch_optional(p).await.map_err(db))
}

/// Marks a client used (its first code redeemed or token refreshed), at most once a minute.
pub async fn touch_client(
    store: &crate::store::Store,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stale = micros(now - chrono::Duration::minutes(1));
    on_pool!(store, p => sqlx::query(
        "UPDATE oauth_clients SET last_used_at = $1 WHERE id = $2 \
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

/// Deletes registered clients never used since `unused_before`, or idle since `idle_before`,
/// that hold no live grant.
pub async fn expire_clients(
    store: &crate::store::Store,
    unused_before: DateTime<Utc>,
    idle_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    on_pool!(store, p => sqlx::query(
        "DELETE FROM oauth_clients WHERE \
         ((last_used_at IS NULL AND created_at < $1) OR last_used_at < $2) \
         AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = oauth_clients.id \
                         AND g.revoked_at IS NULL)",
    )
    .bind(micros(unused_before))
    .bind(micros(idle_before))
    .execute(p)
    .await
    .map(|r| r.rows_affected())
    .map_err(db))
}

/// An authorization request waiting for the person in the browser.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub scopes: String,
    pub browser_digest: String,
    pub csrf_digest: String,
    pub signer_kind: Option<String>,
    pub signer_id: Option<String>,
    pub signer_digest: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

const REQUEST: &str = "SELECT id, client_id, client_name, redirect_uri, state, code_challenge, \
    resource, scopes, browser_digest, csrf_digest, signer_kind, signer_id, signer_digest, \
    created_at, expires_at FROM oauth_requests";

pub async fn insert_request(store: &crate::store::Store, r: &RequestRow) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query(
        "INSERT INTO oauth_requests (id, client_id, client_name, redirect_uri, state, \
         code_challenge, resource, scopes, browser_digest, csrf_digest, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&r.id)
    .bind(&r.client_id)
    .bind(&r.client_name)
    .bind(&r.redirect_uri)
    .bind(&r.state)
    .bind(&r.code_challenge)
    .bind(&r.resource)
    .bind(&r.scopes)
    .bind(&r.browser_digest)
    .bind(&r.csrf_digest)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

pub async fn find_request(
    store: &crate::store::Store,
    id: &str,
) -> Result<Option<RequestRow>, StoreError> {
    let sql = format!("{REQUEST} WHERE id = $1");
    on_pool!(store, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await.map_err(db))
}

/// Records who signed in for a request.
pub async fn set_request_signer(
    store: &crate::store::Store,
    id: &str,
    kind: &str,
    signer_id: &str,
    digest: Option<&str>,
) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query(
        "UPDATE oauth_requests SET signer_kind = $1, signer_id = $2, signer_digest = $3 WHERE id = $4",
    )
    .bind(kind)
    .bind(signer_id)
    .bind(digest)
    .bind(id)
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Deletes a request inside `tx`; false when another decision took it first.
pub async fn take_request(tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
    on_tx!(tx, c => sqlx::query("DELETE FROM oauth_requests WHERE id = $1")
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db))
}
