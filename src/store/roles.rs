//! Role rows. Built-in roles are rows too (so keys can reference any role by foreign key), and
//! are rewritten from code at every start so their permissions always match this version.

use chrono::{DateTime, Utc};

use super::{Hold, Seal, StoreError, Tx, db, micros, on_pool, on_tx};
use crate::domain::at_rest::Place;
use crate::domain::permission::PermissionSet;
use crate::domain::role::{BuiltinRole, Role};

#[derive(sqlx::FromRow)]
struct RoleRow {
    name: String,
    description: String,
    permissions: String,
    builtin: bool,
}

impl RoleRow {
    fn into_role(self, seal: &Seal) -> Result<Role, StoreError> {
        let permissions: PermissionSet = self
            .permissions
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("role '{}': {e}", self.name)))?;
        Ok(Role {
            name: self.name,
            description: seal.open(Place::RoleDescription, self.description)?,
            permissions,
            builtin: self.builtin,
        })
    }
}

const SELECT: &str =
    "SELECT name, description, permissions, builtin FROM roles WHERE deleted_at IS NULL";

pub async fn sync_builtins(store: &super::Store, now: DateTime<Utc>) -> Result<(), StoreError> {
    let sql = "INSERT INTO roles (name, description, permissions, builtin, created_at, updated_at) \
               VALUES ($1, $2, $3, TRUE, $4, $4) \
               ON CONFLICT (name) DO UPDATE SET description = excluded.description, \
               permissions = excluded.permissions, builtin = TRUE, deleted_at = NULL";
    for r in BuiltinRole::ALL {
        let perms = r.permissions().to_string();
        let description = store.seal.text(Place::RoleDescription, r.description());
        on_pool!(store, p => sqlx::query(sql)
            .bind(r.name())
            .bind(description.as_ref())
            .bind(perms.as_str())
            .bind(micros(now))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    Ok(())
}

pub async fn list(store: &super::Store) -> Result<Vec<Role>, StoreError> {
    let sql = format!("{SELECT} ORDER BY builtin DESC, name");
    let rows: Vec<RoleRow> =
        on_pool!(store, p => sqlx::query_as(&sql).fetch_all(p).await.map_err(db))?;
    rows.into_iter().map(|r| r.into_role(&store.seal)).collect()
}

pub async fn get(store: &super::Store, name: &str) -> Result<Option<Role>, StoreError> {
    let sql = format!("{SELECT} AND name = $1");
    let row: Option<RoleRow> = on_pool!(store, p => sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(p)
        .await
        .map_err(db))?;
    row.map(|r| r.into_role(&store.seal)).transpose()
}

/// Reads a role inside a write transaction, held (see `Hold`) so a check and the change that
/// follows it see the same row: `Share` to assign it, `Update` to change or delete it.
pub async fn get_in(tx: &mut Tx, name: &str, hold: Hold) -> Result<Option<Role>, StoreError> {
    let sql = format!("{SELECT} AND name = $1{}", tx.hold(hold));
    let row: Option<RoleRow> = on_tx!(tx, c => sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(c)
        .await
        .map_err(db))?;
    row.map(|r| r.into_role(&tx.seal)).transpose()
}

/// Creates a custom role; a previously deleted role of the same name is brought back with the
/// new definition.
pub async fn insert(tx: &mut Tx, role: &Role, now: DateTime<Utc>) -> Result<(), StoreError> {
    let perms = role.permissions.to_string();
    let description = tx
        .seal
        .text(Place::RoleDescription, &role.description)
        .into_owned();
    let revive = "UPDATE roles SET description = $1, permissions = $2, updated_at = $3, \
                  created_at = $3, deleted_at = NULL \
                  WHERE name = $4 AND builtin = FALSE AND deleted_at IS NOT NULL";
    let revived = on_tx!(tx, c => sqlx::query(revive)
        .bind(description.as_str())
        .bind(perms.as_str())
        .bind(micros(now))
        .bind(role.name.as_str())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        .map_err(db))?;
    if revived == 1 {
        return Ok(());
    }
    let sql = "INSERT INTO roles (name, description, permissions, builtin, created_at, updated_at) \
               VALUES ($1, $2, $3, FALSE, $4, $4)";
    let what = format!("a role named '{}' already exists", role.name);
    on_tx!(tx, c => sqlx::query(sql)
        .bind(role.name.as_str())
        .bind(description.as_str())
        .bind(perms.as_str())
        .bind(micros(now))
        .execute(c)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::on_constraint(e, &what, &what)))
}

pub async fn update(tx: &mut Tx, role: &Role, now: DateTime<Utc>) -> Result<(), StoreError> {
    let sql = "UPDATE roles SET description = $1, permissions = $2, updated_at = $3 \
               WHERE name = $4 AND builtin = FALSE AND deleted_at IS NULL";
    let perms = role.permissions.to_string();
    let description = tx
        .seal
        .text(Place::RoleDescription, &role.description)
        .into_owned();
    on_tx!(tx, c => sqlx::query(sql)
        .bind(description.as_str())
        .bind(perms.as_str())
        .bind(micros(now))
        .bind(role.name.as_str())
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db))
}

/// Marks a custom role deleted. The caller checks first that no live key holds it.
pub async fn delete(tx: &mut Tx, name: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    on_tx!(tx, c => sqlx::query(
        "UPDATE roles SET deleted_at = $1 WHERE name = $2 AND builtin = FALSE AND deleted_at IS NULL",
    )
    .bind(micros(now))
    .bind(name)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Tenants of the live keys holding `role`: changing the role changes what those keys can do.
pub async fn tenants_of_holders(tx: &mut Tx, role: &str) -> Result<Vec<String>, StoreError> {
    let sql = "SELECT kt.tenant FROM key_tenants kt JOIN api_keys k ON k.id = kt.key_id \
               WHERE k.role_name = $1 AND k.revoked_at IS NULL \
               UNION SELECT ot.tenant FROM operator_tenants ot JOIN operators o ON o.id = ot.operator_id \
               WHERE o.role_name = $1 ORDER BY 1";
    on_tx!(tx, c => sqlx::query_scalar(sql).bind(role).fetch_all(c).await.map_err(db))
}

/// Number of live (not revoked) keys and of operators that hold `role`.
pub async fn live_holders(tx: &mut Tx, role: &str) -> Result<i64, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM api_keys WHERE role_name = $1 AND revoked_at IS NULL) \
         + (SELECT COUNT(*) FROM operators WHERE role_name = $1)",
    )
    .bind(role)
    .fetch_one(c)
    .await
    .map_err(db))
}

/// Live holders of `role` that outlive `t`: keys not revoked with no expiry or a later one, and
/// operators (who do not expire).
pub async fn holders_outliving(
    tx: &mut Tx,
    role: &str,
    t: DateTime<Utc>,
) -> Result<i64, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM api_keys WHERE role_name = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)) + (SELECT COUNT(*) FROM operators WHERE role_name = $1)",
    )
    .bind(role)
    .bind(micros(t))
    .fetch_one(c)
    .await
    .map_err(db))
}
