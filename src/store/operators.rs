//! Operator rows and their tenant rows. Password hashes are read only by sign-in.

use chrono::{DateTime, Utc};

use super::{StoreError, Tx, db, micros, on_pool, on_tx};
use crate::domain::tenant::TenantScope;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRow {
    pub id: String,
    pub username: String,
    pub role_name: String,
    pub tenants: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub last_login_at: Option<i64>,
}

impl std::fmt::Debug for OperatorAuthRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAuthRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role_name", &self.role_name)
            .field("disabled", &self.disabled_at.is_some())
            .finish_non_exhaustive()
    }
}

impl OperatorRow {
    pub fn tenant_scope(&self) -> Result<TenantScope, StoreError> {
        let names: Vec<&str> = self.tenants.split_whitespace().collect();
        TenantScope::parse(&names)
            .map_err(|e| StoreError::Corrupt(format!("operator {}: {e}", self.id)))
    }
}

/// What sign-in and per-request resolution need. Its `Debug` leaves the password hash out.
#[derive(Clone, sqlx::FromRow)]
pub struct OperatorAuthRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role_name: String,
    /// `None` when the role was deleted.
    pub permissions: Option<String>,
    pub tenants: String,
    pub disabled_at: Option<i64>,
}

const COLUMNS: &str = "o.id, o.username, o.role_name, o.tenants, o.created_by, o.created_at, \
    o.disabled_at, o.last_login_at";
const AUTH: &str = "SELECT o.id, o.username, o.password_hash, o.role_name, r.permissions, o.tenants, \
    o.disabled_at FROM operators o LEFT JOIN roles r ON r.name = o.role_name AND r.deleted_at IS NULL";

pub struct NewOperator<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role_name: &'a str,
    pub tenants: &'a TenantScope,
    pub created_by: Option<&'a str>,
}

pub async fn insert(
    tx: &mut Tx,
    op: &NewOperator<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tenants = op.tenants.to_vec();
    let text = tenants.join(" ");
    // Generic on purpose: whether a username exists in another tenant is not the caller's to learn.
    let taken = "that username is not available; choose another".to_owned();
    let unknown_role = format!("role '{}' does not exist", op.role_name);
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO operators (id, username, password_hash, role_name, tenants, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(op.id)
    .bind(op.username)
    .bind(op.password_hash)
    .bind(op.role_name)
    .bind(text.as_str())
    .bind(op.created_by)
    .bind(micros(now))
    .execute(c)
    .await
    .map(|_| ())
    .map_err(|e| StoreError::on_constraint(e, &taken, &unknown_role)))?;
    for t in &tenants {
        on_tx!(tx, c => sqlx::query("INSERT INTO operator_tenants (operator_id, tenant) VALUES ($1, $2)")
            .bind(op.id)
            .bind(t.as_str())
            .execute(c)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    Ok(())
}

/// Reads an operator inside a write transaction, locked until it ends (see `Hold`).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<OperatorRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM operators o WHERE o.id = $1{}",
        tx.hold(super::Hold::Update)
    );
    on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await.map_err(db))
}

/// Operators whose every tenant lies within `visible_to`, by username.
pub async fn list(
    store: &super::Store,
    visible_to: &TenantScope,
) -> Result<Vec<OperatorRow>, StoreError> {
    let mut q = super::sql::Sql::new(&format!("SELECT {COLUMNS} FROM operators o WHERE 1 = 1"));
    if let TenantScope::Only(mine) = visible_to {
        let mine: Vec<&String> = mine.iter().collect();
        q.push(" AND NOT EXISTS (SELECT 1 FROM operator_tenants ot WHERE ot.operator_id = o.id AND ot.tenant NOT IN ");
        q.text_list(&mine).push(")");
    }
    q.push(" ORDER BY o.username LIMIT 1000");
    on_pool!(store, p => super::sql::bind_args!(sqlx::query_as(&q.text), q).fetch_all(p).await.map_err(db))
}

pub async fn find_for_login(
    store: &super::Store,
    username: &str,
) -> Result<Option<OperatorAuthRow>, StoreError> {
    let sql = format!("{AUTH} WHERE o.username = $1");
    on_pool!(store, p => sqlx::query_as(&sql).bind(username).fetch_optional(p).await.map_err(db))
}

pub async fn find_by_id(
    store: &super::Store,
    id: &str,
) -> Result<Option<OperatorAuthRow>, StoreError> {
    let sql = format!("{AUTH} WHERE o.id = $1");
    on_pool!(store, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await.map_err(db))
}

pub async fn set_disabled(
    tx: &mut Tx,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query("UPDATE operators SET disabled_at = $1 WHERE id = $2")
        .bind(at.map(micros))
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

pub async fn set_role(tx: &mut Tx, id: &str, role: &str) -> Result<(), StoreError> {
    let unknown_role = format!("role '{role}' does not exist");
    on_tx!(tx, c => sqlx::query("UPDATE operators SET role_name = $1 WHERE id = $2")
        .bind(role)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::on_constraint(e, &unknown_role, &unknown_role)))
}

pub async fn touch_login(
    store: &super::Store,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_pool!(store, p => sqlx::query("UPDATE operators SET last_login_at = $1 WHERE id = $2")
        .bind(micros(now))
        .bind(id)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(db))
}

pub async fn set_password(tx: &mut Tx, id: &str, hash: &str) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query("UPDATE operators SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_hash_never_reaches_debug() {
        let row = OperatorAuthRow {
            id: "op_1".into(),
            username: "alice".into(),
            password_hash: "$argon2id$v=19$HASH-SECRET".into(),
            role_name: "admin".into(),
            permissions: None,
            tenants: "*".into(),
            disabled_at: None,
        };
        let printed = format!("{row:?}");
        assert!(
            !printed.contains("HASH-SECRET") && printed.contains("alice"),
            "{printed}"
        );
    }
}
