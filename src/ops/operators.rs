//! Operator use cases: people who sign in with a username and password. Like keys, an operator
//! has a role and tenants, and nobody can create or manage an operator beyond their own reach.

use chrono::{DateTime, Utc};

use super::call::{Call, Target, changed, ensure_reach};
use super::views::{OperatorList, OperatorView};
use super::{OpsError, keys};
use crate::domain::password::Password;
use crate::domain::permission::{Permission, PermissionSet};
use crate::domain::policy::{self, Reach};
use crate::domain::principal::Principal;
use crate::domain::role::validate_role_name;
use crate::domain::tenant::TenantScope;
use crate::domain::{ids, timespec};
use crate::ops::app::App;
use crate::store::{self, Hold, Tx, from_micros, operators::OperatorRow};

/// Its `Debug` leaves the password out.
pub struct CreateOperator {
    pub username: String,
    pub password: String,
    pub role: String,
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for CreateOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateOperator")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// argon2id is deliberately slow: hash on the password threads.
pub async fn hash_password(app: &App, p: &Password) -> Result<String, OpsError> {
    let hash_input = Password::presented(p.expose_for_hashing());
    app.passwords
        .run(move |off| hash_input.hash(off))
        .await
        .ok_or_else(|| OpsError::Busy("password work is busy; try again shortly".into()))?
        .map_err(OpsError::from)
}

pub async fn create(
    app: &App,
    call: &Call,
    input: CreateOperator,
) -> Result<OperatorView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::OperatorWrite)?;
    let username = crate::domain::username::check(&input.username)?;
    let password = Password::new(&input.password)?;
    let role_name = validate_role_name(&input.role)?;
    let scope = TenantScope::parse(&input.tenants)?;
    let hash = hash_password(app, &password).await?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let role = store::roles::get_in(&mut tx, &role_name, Hold::Share)
        .await?
        .ok_or_else(|| keys::unknown_role(&role_name))?;
    policy::within(
        p,
        format!("cannot create an operator with role '{role_name}'"),
        &Reach {
            permissions: role.permissions,
            tenants: Some(&scope),
            // Operators do not expire: an expiring caller cannot create one.
            expires_at: Some(None),
        },
    )?;
    let id = ids::new_operator_id();
    let new = store::operators::NewOperator {
        id: &id,
        username: &username,
        password_hash: &hash,
        role_name: &role_name,
        tenants: &scope,
        created_by: p.actor().id(),
    };
    store::operators::insert(&mut tx, &new, now).await?;
    commit_change(call, tx, now, &id, None).await
}

pub async fn list(app: &App, p: &Principal) -> Result<OperatorList, OpsError> {
    policy::require(p, Permission::OperatorRead)?;
    let rows = store::operators::list(&app.store, p.tenants()).await?;
    Ok(OperatorList {
        operators: rows.iter().map(view).collect::<Result<_, _>>()?,
    })
}

pub async fn set_enabled(
    app: &App,
    call: &Call,
    id: &str,
    enabled: bool,
) -> Result<OperatorView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::OperatorWrite)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let verb = if enabled { "enable" } else { "disable" };
    // Bringing an operator back hands its power out again, and operators never expire: an
    // expiring caller cannot.
    let lifetime = enabled.then_some(None);
    let before = load_managed(&mut tx, p, id, verb, lifetime).await?;
    if !enabled && p.actor().id() == Some(before.id.as_str()) {
        return Err(OpsError::invalid(
            "you cannot disable yourself; ask another admin",
        ));
    }
    store::operators::set_disabled(&mut tx, &before.id, (!enabled).then_some(now)).await?;
    if !enabled {
        // Disabling ends what the operator consented to: enabling again revives nothing.
        crate::ops::oauth::grants::end_signer(
            &mut tx,
            call,
            &before.id,
            now,
            "the operator was disabled",
        )
        .await?;
    }
    let done = commit_change(call, tx, now, &before.id, Some(&before)).await;
    app.forget_credentials();
    done
}

/// Gives an operator another role: one the caller could grant, to an operator it may manage.
pub async fn set_role(
    app: &App,
    call: &Call,
    id: &str,
    role: &str,
) -> Result<OperatorView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::OperatorWrite)?;
    let role_name = validate_role_name(role)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let before = load_managed(&mut tx, p, id, "change the role of", None).await?;
    let role = store::roles::get_in(&mut tx, &role_name, Hold::Share)
        .await?
        .ok_or_else(|| keys::unknown_role(&role_name))?;
    let held = store::roles::get_in(&mut tx, &before.role, Hold::Share)
        .await?
        .map_or(PermissionSet::EMPTY, |r| r.permissions);
    // A raise hands out more power to someone who never expires: only a caller that never
    // expires either may. Narrowing is always fine.
    let raises = !role.permissions.is_subset_of(held);
    policy::within(
        p,
        format!(
            "cannot give operator '{}' role '{role_name}'",
            before.username
        ),
        &Reach {
            permissions: role.permissions,
            tenants: None,
            expires_at: raises.then_some(None),
        },
    )?;
    store::operators::set_role(&mut tx, &before.id, &role_name).await?;
    let done = commit_change(call, tx, now, &before.id, Some(&before)).await;
    app.forget_credentials();
    done
}

/// Its `Debug` leaves both passwords out.
pub struct SetPassword {
    pub operator_id: String,
    /// Required when the caller changes its own password.
    pub old_password: Option<String>,
    pub new_password: String,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetPassword")
            .field("operator_id", &self.operator_id)
            .finish_non_exhaustive()
    }
}

/// Sets an operator's password: one's own (the current password required), or another
/// operator's within reach with `operator:write` (a reset). Either way every sign-in session
/// and OAuth grant of that operator ends, in the same transaction as the change.
pub async fn set_password(
    app: &App,
    call: &Call,
    input: SetPassword,
) -> Result<OperatorView, OpsError> {
    let p = call.principal();
    let id = ids::check_id("operator", &input.operator_id)?;
    let own = matches!(p.actor(), crate::domain::principal::Actor::Operator { id: mine, .. } if *mine == id);
    if own {
        let Some(old) = input.old_password else {
            return Err(OpsError::invalid(
                "old_password is required to change your own password",
            ));
        };
        let row = store::operators::find_by_id(&app.store, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let hash = row.password_hash.clone();
        let presented = Password::presented(&old);
        let ok = app
            .passwords
            .run(move |off| presented.verify(&hash, off))
            .await
            .ok_or_else(|| OpsError::Busy("password work is busy; try again shortly".into()))?;
        if !ok {
            return Err(OpsError::Unauthenticated(
                "old_password is not your current password".into(),
            ));
        }
    } else {
        policy::require(p, Permission::OperatorWrite)?;
    }
    let password = Password::new(&input.new_password)?;
    let hash = hash_password(app, &password).await?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let before = if own {
        let row = store::operators::get_in(&mut tx, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        view(&row)?
    } else {
        load_managed(&mut tx, p, &id, "reset the password of", None).await?
    };
    store::operators::set_password(&mut tx, &before.id, &hash).await?;
    let sessions = store::sessions::revoke_subject(&mut tx, "operator", &before.id, now).await?;
    let grants = crate::ops::oauth::grants::end_signer(
        &mut tx,
        call,
        &before.id,
        now,
        "the operator's password was changed",
    )
    .await?;
    tracing::info!(operator_id = %before.id, sessions, grants, own, "operator password set");
    let done = commit_change(call, tx, now, &before.id, Some(&before)).await;
    app.forget_credentials();
    done
}

/// An operator the caller may manage: visible (tenants within its own) and holding no more
/// than the caller does.
async fn load_managed(
    tx: &mut Tx,
    p: &Principal,
    id: &str,
    verb: &str,
    lifetime: Option<Option<DateTime<Utc>>>,
) -> Result<OperatorView, OpsError> {
    let id = ids::check_id("operator", id)?;
    let row = store::operators::get_in(tx, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let scope = row.tenant_scope()?;
    if !scope.is_within(p.tenants()) {
        return Err(not_found(&id));
    }
    let action = format!(
        "cannot {verb} operator '{}' (role '{}')",
        row.username, row.role_name
    );
    ensure_reach(tx, p, &row.role_name, &scope, lifetime, action).await?;
    view(&row)
}

async fn commit_change(
    call: &Call,
    mut tx: Tx,
    now: DateTime<Utc>,
    id: &str,
    before: Option<&OperatorView>,
) -> Result<OperatorView, OpsError> {
    let row = store::operators::get_in(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let after = view(&row)?;
    let target = Target::new("operator", id, Some(&row.username));
    call.commit_with(
        tx,
        now,
        changed(target, Some(after.tenants.clone()), before, Some(&after)),
    )
    .await?;
    Ok(after)
}

pub fn view(row: &OperatorRow) -> Result<OperatorView, OpsError> {
    let fmt = |t: Option<i64>| t.map(|t| timespec::format_utc(from_micros(t)));
    Ok(OperatorView {
        id: row.id.clone(),
        username: row.username.clone(),
        role: row.role_name.clone(),
        tenants: row.tenant_scope()?.to_vec(),
        status: if row.disabled_at.is_some() {
            "disabled"
        } else {
            "active"
        }
        .to_owned(),
        created_at: timespec::format_utc(from_micros(row.created_at)),
        created_by: row.created_by.clone(),
        last_login_at: fmt(row.last_login_at),
    })
}

fn not_found(id: &str) -> OpsError {
    OpsError::NotFound(format!(
        "no operator with id {id} (or it is outside your tenants)"
    ))
}
