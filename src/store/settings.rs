//! Server-wide facts and secrets that every process on the database shares (the `settings`
//! table): whether bootstrap has closed, whether this is a throwaway development database,
//! the key for hashing typed usernames, and the roles legacy shared keys hold.

use super::{StoreError, Tx, db, on_pool, on_tx};
use crate::domain::at_rest::Place;

pub const BOOTSTRAP_CLOSED_AT: &str = "bootstrap_closed_at";
pub const DEVELOPMENT_DATABASE: &str = "development_database";
pub const NAME_HASH_KEY: &str = "name_hash_key";
const LEGACY_ROLE_PREFIX: &str = "legacy_role:";

pub async fn get(store: &super::Store, name: &str) -> Result<Option<String>, StoreError> {
    on_pool!(store, p => sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(p)
        .await
        .map_err(db))
}

pub async fn get_in(tx: &mut Tx, name: &str) -> Result<Option<String>, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(c)
        .await
        .map_err(db))
}

/// Sets `name` unless it is set already; returns the value now stored (the first writer's,
/// when several processes race).
pub async fn get_or_insert(
    store: &super::Store,
    name: &str,
    value: &str,
) -> Result<String, StoreError> {
    on_pool!(store, p => sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))?;
    get(store, name)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("setting '{name}' vanished")))
}

/// A secret setting (the username hash key): sealed at rest like the sensitive columns. Set
/// unless it is set already; returns the value now stored, opened.
pub async fn secret_get_or_insert(
    store: &super::Store,
    name: &str,
    value: &str,
) -> Result<String, StoreError> {
    let sealed = store.seal.text(Place::Setting, value);
    let stored = get_or_insert(store, name, &sealed).await?;
    store.seal.open(Place::Setting, stored)
}

/// Sets `name` within a transaction unless it is set already.
pub async fn insert_in(tx: &mut Tx, name: &str, value: &str) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Records that a legacy shared key holds `role` over every tenant, so the role's holder
/// checks count it.
pub async fn mark_legacy_role(store: &super::Store, role: &str) -> Result<(), StoreError> {
    get_or_insert(store, &format!("{LEGACY_ROLE_PREFIX}{role}"), "*")
        .await
        .map(|_| ())
}

/// Whether a legacy shared key holds `role`.
pub async fn is_legacy_role(tx: &mut Tx, role: &str) -> Result<bool, StoreError> {
    Ok(get_in(tx, &format!("{LEGACY_ROLE_PREFIX}{role}"))
        .await?
        .is_some())
}
