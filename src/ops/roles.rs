//! Role use cases. Roles are global, so changing one changes what every key holding it may
//! do: a caller may only create, change or delete roles within its own permissions, and only
//! roles whose live holders all sit within its own tenants.

use super::OpsError;
use super::call::{Call, Target, changed};
use super::views::{RoleDeleted, RoleList, RoleView};
use crate::domain::error::{DomainError, Escalation};
use crate::domain::ids;
use crate::domain::permission::{Permission, PermissionSet};
use crate::domain::policy::{self, Reach};
use crate::domain::principal::Principal;
use crate::domain::role::{BuiltinRole, Role, validate_role_name};
use crate::ops::app::App;
use crate::store::{self, Hold, Tx};

pub async fn list(app: &App, p: &Principal) -> Result<RoleList, OpsError> {
    policy::require(p, Permission::RoleRead)?;
    let roles = store::roles::list(&app.store).await?;
    Ok(RoleList {
        roles: roles.iter().map(view).collect(),
    })
}

pub async fn get(app: &App, p: &Principal, name: &str) -> Result<RoleView, OpsError> {
    policy::require(p, Permission::RoleRead)?;
    let name = validate_role_name(name)?;
    let role = store::roles::get(&app.store, &name)
        .await?
        .ok_or_else(|| super::keys::unknown_role(&name))?;
    Ok(view(&role))
}

pub struct RoleInput {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Option<Vec<Permission>>,
}

pub async fn create(app: &App, call: &Call, input: RoleInput) -> Result<RoleView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::RoleWrite)?;
    let name = validate_role_name(&input.name)?;
    if BuiltinRole::from_name(&name).is_some() {
        return Err(OpsError::Conflict(format!("'{name}' is a built-in role")));
    }
    let permissions = non_empty(&input.permissions.unwrap_or_default())?;
    let description = ids::check_label(
        "description",
        input.description.as_deref().unwrap_or(""),
        1000,
        true,
    )?;
    policy::within(
        p,
        format!("cannot create role '{name}'"),
        &Reach {
            permissions,
            tenants: None,
            expires_at: None,
        },
    )?;
    let role = Role {
        name,
        description,
        permissions,
        builtin: false,
    };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    store::roles::insert(&mut tx, &role, now).await?;
    call.commit_with(
        tx,
        now,
        changed(Target::role(&role.name), None, None, Some(&view(&role))),
    )
    .await?;
    Ok(view(&role))
}

/// Replaces a custom role's description and/or permissions (omitted fields stay as they are).
pub async fn update(app: &App, call: &Call, input: RoleInput) -> Result<RoleView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::RoleWrite)?;
    let name = validate_role_name(&input.name)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let current = load_managed(&mut tx, p, &name, "change").await?;
    let permissions = match input.permissions {
        Some(perms) => non_empty(&perms)?,
        None => current.permissions,
    };
    policy::within(
        p,
        format!("cannot give role '{name}' these permissions"),
        &Reach {
            permissions,
            tenants: None,
            expires_at: None,
        },
    )?;
    // Adding permissions hands them to every holder: none may outlive an expiring caller
    // (a legacy shared key holding the role never expires).
    let added = permissions.missing_from(current.permissions);
    if let Some(mine) = p.expires_at()
        && !added.is_empty()
        && (store::roles::holders_outliving(&mut tx, &name, mine).await? > 0
            || store::settings::is_legacy_role(&mut tx, &name).await?)
    {
        return Err(OpsError::Domain(DomainError::Exceeds(Escalation {
            action: format!("cannot add permissions to role '{name}'"),
            missing_permissions: Vec::new(),
            missing_tenants: Vec::new(),
            held_outside_scope: false,
            expiry: Some(format!(
                "it is held by keys or operators that outlive you (you expire at {})",
                mine.to_rfc3339()
            )),
        })));
    }
    let description = match input.description {
        Some(d) => ids::check_label("description", &d, 1000, true)?,
        None => current.description.clone(),
    };
    let updated = Role {
        description,
        permissions,
        ..current.clone()
    };
    store::roles::update(&mut tx, &updated, now).await?;
    call.commit_with(
        tx,
        now,
        changed(
            Target::role(&name),
            None,
            Some(&view(&current)),
            Some(&view(&updated)),
        ),
    )
    .await?;
    // A role's permissions are part of every cached verification of its holders.
    app.forget_credentials();
    Ok(view(&updated))
}

/// Deletes a custom role that no live key holds.
pub async fn delete(app: &App, call: &Call, name: &str) -> Result<RoleDeleted, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::RoleWrite)?;
    let name = validate_role_name(name)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let current = load_managed(&mut tx, p, &name, "delete").await?;
    if store::settings::is_legacy_role(&mut tx, &name).await? {
        return Err(OpsError::Conflict(format!(
            "role '{name}' is held by a legacy shared key (--legacy-role); it cannot be deleted"
        )));
    }
    let holders = store::roles::live_holders(&mut tx, &name).await?;
    if holders > 0 {
        return Err(OpsError::Conflict(format!(
            "role '{name}' is held by {holders} key(s) that are not revoked; revoke them or \
             create them anew with another role first"
        )));
    }
    store::roles::delete(&mut tx, &name, now).await?;
    call.commit_with(
        tx,
        now,
        changed(Target::role(&name), None, Some(&view(&current)), None),
    )
    .await?;
    app.forget_credentials();
    Ok(RoleDeleted { deleted: name })
}

/// A custom role the caller may change: within its permissions, held only within its tenants.
async fn load_managed(
    tx: &mut Tx,
    p: &Principal,
    name: &str,
    verb: &str,
) -> Result<Role, OpsError> {
    let role = store::roles::get_in(tx, name, Hold::Update)
        .await?
        .ok_or_else(|| super::keys::unknown_role(name))?;
    if role.builtin {
        return Err(OpsError::Conflict(format!(
            "'{name}' is a built-in role and cannot be changed or deleted; create a custom role instead"
        )));
    }
    let outside: Vec<String> = if p.tenants().is_all() {
        Vec::new()
    } else {
        let mut held = store::roles::tenants_of_holders(tx, name).await?;
        // A legacy shared key holds its role over all tenants.
        if store::settings::is_legacy_role(tx, name).await? {
            held.push("*".into());
        }
        held.into_iter()
            .filter(|t| !matches!(p.tenants(), crate::domain::tenant::TenantScope::Only(mine) if mine.contains(t)))
            .collect()
    };
    let missing_permissions = role.permissions.missing_from(p.permissions());
    if !missing_permissions.is_empty() || !outside.is_empty() {
        return Err(OpsError::Domain(DomainError::Exceeds(Escalation {
            action: format!("cannot {verb} role '{name}'"),
            missing_permissions,
            // Which other tenants hold it is not the caller's to learn.
            missing_tenants: Vec::new(),
            held_outside_scope: !outside.is_empty(),
            expiry: None,
        })));
    }
    Ok(role)
}

fn non_empty(perms: &[Permission]) -> Result<PermissionSet, OpsError> {
    let set: PermissionSet = crate::domain::limits::distinct("permissions", perms)?
        .into_iter()
        .collect();
    if set.is_empty() {
        return Err(OpsError::invalid("a role needs at least one permission"));
    }
    Ok(set)
}

pub fn view(role: &Role) -> RoleView {
    RoleView {
        name: role.name.clone(),
        description: crate::domain::text::neutralize(&role.description, true).into_owned(),
        permissions: role.permissions.to_vec(),
        builtin: role.builtin,
    }
}
