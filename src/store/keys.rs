//! API key rows, their tenant rows and their secrets (digests only).

use chrono::{DateTime, Utc};

use super::sql::{Sql, bind_args};
use super::{Seal, StoreError, Tx, TxConn, db, from_micros, micros, on_pool, on_tx};
use crate::domain::at_rest::Place;
use crate::domain::key::KeyDigest;
use crate::domain::tenant::TenantScope;

/// A key's metadata as stored. Carries no secret and no digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub role_name: String,
    pub tenants: String,
    pub preview: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rotated_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl KeyRow {
    fn opened(mut self, seal: &Seal) -> Result<KeyRow, StoreError> {
        self.description = seal.open(Place::KeyDescription, self.description)?;
        Ok(self)
    }

    pub fn tenant_scope(&self) -> Result<TenantScope, StoreError> {
        let names: Vec<&str> = self.tenants.split_whitespace().collect();
        TenantScope::parse(&names).map_err(|e| StoreError::Corrupt(format!("key {}: {e}", self.id)))
    }

    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.expires_at.map(from_micros)
    }
}

/// What authentication needs, found by the digest of the presented secret.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthRow {
    pub id: String,
    pub name: String,
    pub role_name: String,
    /// `None` when the role has been deleted: the key then grants nothing.
    pub permissions: Option<String>,
    pub tenants: String,
    pub expires_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Preview of the presented secret (not necessarily the key's current one).
    pub secret_preview: String,
    /// Set when the presented secret was superseded by a rotation: valid until then.
    pub secret_valid_until: Option<i64>,
}

/// A new key to insert.
pub struct NewKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub role_name: &'a str,
    pub tenants: &'a TenantScope,
    pub preview: &'a str,
    pub digest: &'a KeyDigest,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "k.id, k.name, k.description, k.role_name, k.tenants, k.preview, \
    k.created_by, k.created_at, k.expires_at, k.disabled_at, k.revoked_at, k.rotated_at, \
    k.last_used_at";

pub async fn insert(tx: &mut Tx, key: &NewKey<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
    let tenants = key.tenants.to_vec();
    let sql = "INSERT INTO api_keys (id, name, description, role_name, tenants, preview, \
               created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    let tenants_text = tenants.join(" ");
    let unknown_role = format!("role '{}' does not exist", key.role_name);
    // Ids are 95 random bits: a clash is the name, unique among live keys ignoring case.
    let taken = format!(
        "a live key named '{}' already exists (names are unique ignoring case); pick another name",
        key.name
    );
    let description = tx
        .seal
        .text(Place::KeyDescription, key.description)
        .into_owned();
    on_tx!(tx, c => sqlx::query(sql)
        .bind(key.id)
        .bind(key.name)
        .bind(description.as_str())
        .bind(key.role_name)
        .bind(tenants_text.as_str())
        .bind(key.preview)
        .bind(key.created_by)
        .bind(micros(now))
        .bind(key.expires_at.map(micros))
        .execute(c)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::on_constraint(e, &taken, &unknown_role)))?;
    for t in &tenants {
        on_tx!(tx, c => sqlx::query("INSERT INTO key_tenants (key_id, tenant) VALUES ($1, $2)")
            .bind(key.id)
            .bind(t.as_str())
            .execute(c)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    insert_secret(tx, key.id, key.digest, key.preview, now).await
}

async fn insert_secret(
    tx: &mut Tx,
    key_id: &str,
    digest: &KeyDigest,
    preview: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let hex = digest.to_hex();
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO key_secrets (digest, key_id, preview, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hex.as_str())
    .bind(key_id)
    .bind(preview)
    .bind(micros(now))
    .execute(c)
    .await
    .map(|_| ())
    .map_err(|e| StoreError::on_constraint(e, "secret collision, retry", "key vanished")))
}

pub async fn find_by_digest(
    store: &super::Store,
    digest_hex: &str,
) -> Result<Option<AuthRow>, StoreError> {
    let sql = "SELECT k.id, k.name, k.role_name, r.permissions, k.tenants, k.expires_at, k.disabled_at, \
               k.revoked_at, k.last_used_at, s.preview AS secret_preview, \
               s.valid_until AS secret_valid_until \
               FROM key_secrets s JOIN api_keys k ON k.id = s.key_id \
               LEFT JOIN roles r ON r.name = k.role_name AND r.deleted_at IS NULL \
               WHERE s.digest = $1";
    on_pool!(store, p => sqlx::query_as(sql).bind(digest_hex).fetch_optional(p).await.map_err(db))
}

pub async fn get(store: &super::Store, id: &str) -> Result<Option<KeyRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys k WHERE k.id = $1");
    let row: Option<KeyRow> =
        on_pool!(store, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await.map_err(db))?;
    row.map(|r| r.opened(&store.seal)).transpose()
}

/// Reads a key inside a write transaction, so the check and the change see the same row.
/// Reads a key inside a write transaction, locked until it ends (see `Hold`).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<KeyRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys k WHERE k.id = $1{}",
        tx.hold(super::Hold::Update)
    );
    let row: Option<KeyRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await.map_err(db))?;
    row.map(|r| r.opened(&tx.seal)).transpose()
}

pub struct ListFilter<'a> {
    /// Only keys whose every tenant lies within this scope.
    pub visible_to: &'a TenantScope,
    pub roles: &'a [String],
    pub include_revoked: bool,
    /// Continue after this (created_at, id), newest first.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

pub async fn list(store: &super::Store, f: &ListFilter<'_>) -> Result<Vec<KeyRow>, StoreError> {
    let mut q = Sql::new(&format!("SELECT {COLUMNS} FROM api_keys k WHERE 1 = 1"));
    if let TenantScope::Only(tenants) = f.visible_to {
        let tenants: Vec<&String> = tenants.iter().collect();
        q.push(" AND NOT EXISTS (SELECT 1 FROM key_tenants kt WHERE kt.key_id = k.id AND kt.tenant NOT IN ");
        q.text_list(&tenants).push(")");
    }
    if !f.roles.is_empty() {
        q.push(" AND k.role_name IN ").text_list(f.roles);
    }
    if !f.include_revoked {
        q.push(" AND k.revoked_at IS NULL");
    }
    if let Some((at, id)) = &f.after {
        q.push(" AND (k.created_at < ")
            .int(*at)
            .push(" OR (k.created_at = ")
            .int(*at);
        q.push(" AND k.id < ").text(id).push("))");
    }
    q.push(" ORDER BY k.created_at DESC, k.id DESC LIMIT ")
        .int(f.limit);
    let rows: Vec<KeyRow> = on_pool!(store, p => bind_args!(sqlx::query_as(&q.text), q).fetch_all(p).await.map_err(db))?;
    rows.into_iter().map(|r| r.opened(&store.seal)).collect()
}

pub async fn set_disabled(
    tx: &mut Tx,
    id: &str,
    disabled_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query("UPDATE api_keys SET disabled_at = $1 WHERE id = $2")
        .bind(disabled_at.map(micros))
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

pub async fn set_revoked(tx: &mut Tx, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(micros(at))
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

/// Adds a new secret and ends the old ones at `old_valid_until` (now, or the grace end).
pub async fn rotate(
    tx: &mut Tx,
    id: &str,
    digest: &KeyDigest,
    preview: &str,
    old_valid_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let end = micros(old_valid_until);
    on_tx!(tx, c => sqlx::query(
        "UPDATE key_secrets SET valid_until = $1 WHERE key_id = $2 \
         AND (valid_until IS NULL OR valid_until > $1)",
    )
    .bind(end)
    .bind(id)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))?;
    insert_secret(tx, id, digest, preview, now).await?;
    on_tx!(tx, c => sqlx::query("UPDATE api_keys SET preview = $1, rotated_at = $2 WHERE id = $3")
        .bind(preview)
        .bind(micros(now))
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

/// Records use, at most once per `resolution` per key, so hot keys do not write on every call.
pub async fn touch_last_used(
    store: &super::Store,
    id: &str,
    now: DateTime<Utc>,
    resolution: chrono::Duration,
) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
         AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(micros(now))
    .bind(id)
    .bind(micros(now - resolution))
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Serialises bootstrap across processes: on PostgreSQL an advisory transaction lock (SQLite
/// transactions already hold the write lock from BEGIN IMMEDIATE).
pub async fn lock_bootstrap(tx: &mut Tx) -> Result<(), StoreError> {
    if let TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock(7355608)")
            .execute(&mut **t)
            .await
            .map(|_| ())
            .map_err(db)?;
    }
    Ok(())
}
