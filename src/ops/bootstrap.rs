//! The first admin, once, and break-glass recovery.
//!
//! Bootstrap creates the first admin key (and, over HTTP, the first admin operator). It closes
//! for good in the same transaction (`bootstrap_closed_at` in the settings), whatever later
//! happens to keys, operators or roles, so a setup token read from old logs is worthless. Every
//! attempt is audited, refused ones included. When every admin is lost, `keyward recover
//! --admin` mints a new admin key: offline, so it needs the database and the machine, which
//! already are everything.

use chrono::{DateTime, Utc};

use super::call::CallMeta;
use super::views::{KeyWithSecret, OperatorView};
use super::{ErrorKind, OpsError, keys};
use crate::domain::audit::{Action, AuditEvent, Status, redact, redact_text};
use crate::domain::password::Password;
use crate::domain::role::BuiltinRole;
use crate::domain::tenant::TenantScope;
use crate::domain::{ids, timespec};
use crate::ops::app::App;
use crate::store::settings::BOOTSTRAP_CLOSED_AT;
use crate::store::{self, Tx};

/// What bootstrap creates: an admin key, and over HTTP also an admin operator.
pub struct FirstAdmin<'a> {
    pub key_name: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    /// Username and password (as typed) of the first admin operator.
    pub operator: Option<(&'a str, &'a str)>,
}

pub struct Bootstrapped {
    pub key: KeyWithSecret,
    pub operator: Option<OperatorView>,
}

/// Creates the first admin, serialised so two racing bootstraps cannot both win. A refusal
/// (closed, a weak password, a bad name) is audited too.
pub async fn bootstrap(
    app: &App,
    first: FirstAdmin<'_>,
    meta: &CallMeta,
) -> Result<Bootstrapped, OpsError> {
    let result = create_first_admin(app, first, meta).await;
    if let Err(e) = &result
        && matches!(
            e.kind(),
            ErrorKind::InvalidArgument | ErrorKind::Conflict | ErrorKind::Gone
        )
    {
        let event = AuditEvent {
            reason: Some(redact_text(&e.public_message())),
            ..meta.event(app.now(), Action::Bootstrap, Status::Failed, "anonymous")
        };
        app.audit.record(event).await?;
    }
    result
}

async fn create_first_admin(
    app: &App,
    first: FirstAdmin<'_>,
    meta: &CallMeta,
) -> Result<Bootstrapped, OpsError> {
    let now = app.now();
    if first.expires_at.is_some_and(|t| t <= now) {
        return Err(OpsError::invalid("expiry must be in the future"));
    }
    let key_name = keys::check_name(first.key_name)?;
    let operator = match first.operator {
        Some((username, password)) => {
            let username = crate::domain::username::check(username)?;
            let password = Password::new(password)?;
            Some((
                username,
                super::operators::hash_password(app, &password).await?,
            ))
        }
        None => None,
    };
    let mut tx = app.store.begin().await?;
    store::keys::lock_bootstrap(&mut tx).await?;
    if store::settings::get_in(&mut tx, BOOTSTRAP_CLOSED_AT)
        .await?
        .is_some()
    {
        return Err(OpsError::Gone(
            "bootstrap is closed: it already ran on this database; use an admin to create \
             keys and operators, or `keyward recover --admin` on the server if every admin is lost"
                .into(),
        ));
    }
    let operator_view = match &operator {
        Some((username, hash)) => {
            let id = ids::new_operator_id();
            let new = store::operators::NewOperator {
                id: &id,
                username,
                password_hash: hash,
                role_name: BuiltinRole::Admin.name(),
                tenants: &TenantScope::All,
                created_by: Some("bootstrap"),
            };
            store::operators::insert(&mut tx, &new, now).await?;
            let row = store::operators::get_in(&mut tx, &id)
                .await?
                .ok_or_else(|| OpsError::NotFound("operator vanished during bootstrap".into()))?;
            Some(super::operators::view(&row)?)
        }
        None => None,
    };
    let key = mint_admin_key(&mut tx, &key_name, first.expires_at, "bootstrap", now).await?;
    let event = AuditEvent {
        target_type: Some("key".into()),
        target_id: Some(key.key.id.clone()),
        target_name: Some(key_name.clone()),
        args: Some(redact(&serde_json::json!({
            "name": key_name,
            "operator": operator.as_ref().map(|(u, _)| u),
        }))),
        after: Some(serde_json::json!({ "key": key.key, "operator": operator_view })),
        ..meta.event(now, Action::Bootstrap, Status::Success, "system")
    };
    close_and_commit(tx, now, event).await?;
    Ok(Bootstrapped {
        key,
        operator: operator_view,
    })
}

/// Whether bootstrap is still open on this database.
pub async fn is_open(app: &App) -> Result<bool, OpsError> {
    Ok(store::settings::get(&app.store, BOOTSTRAP_CLOSED_AT)
        .await?
        .is_none())
}

/// Break-glass: a new admin key (all tenants), whatever state the database is in. Offline
/// only (the CLI); audited as `recover`; closes bootstrap if it was still open.
pub async fn recover_admin(
    app: &App,
    key_name: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    meta: &CallMeta,
) -> Result<KeyWithSecret, OpsError> {
    let now = app.now();
    if expires_at.is_some_and(|t| t <= now) {
        return Err(OpsError::invalid("expiry must be in the future"));
    }
    let default_name = format!("recovery-admin-{}", now.format("%Y%m%d-%H%M%S"));
    let key_name = keys::check_name(key_name.unwrap_or(&default_name))?;
    let mut tx = app.store.begin().await?;
    store::keys::lock_bootstrap(&mut tx).await?;
    let key = mint_admin_key(&mut tx, &key_name, expires_at, "recover", now).await?;
    let event = AuditEvent {
        target_type: Some("key".into()),
        target_id: Some(key.key.id.clone()),
        target_name: Some(key_name.clone()),
        args: Some(redact(&serde_json::json!({ "name": key_name }))),
        after: Some(serde_json::json!({ "key": key.key })),
        reason: Some("break-glass recovery: an admin key created offline".into()),
        ..meta.event(now, Action::Recover, Status::Success, "system")
    };
    close_and_commit(tx, now, event).await?;
    Ok(key)
}

/// An admin key over all tenants, created by `created_by` (bootstrap or recover).
async fn mint_admin_key(
    tx: &mut Tx,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<KeyWithSecret, OpsError> {
    let description = format!("created by {created_by}");
    let new = keys::Mint {
        name,
        description: &description,
        role_name: BuiltinRole::Admin.name(),
        tenants: &TenantScope::All,
        created_by: Some(created_by),
        expires_at,
    };
    let (id, secret) = keys::mint(tx, &new, now).await?;
    let row = store::keys::get_in(tx, &id)
        .await?
        .ok_or_else(|| OpsError::NotFound(format!("key vanished during {created_by}")))?;
    Ok(KeyWithSecret {
        key: keys::view(&row, now)?,
        api_key: secret.expose().to_owned(),
        previous_secret_valid_until: None,
    })
}

/// Marks bootstrap closed and commits with the event: the admin, the flag and the record
/// exist together or not at all.
async fn close_and_commit(
    mut tx: Tx,
    now: DateTime<Utc>,
    event: AuditEvent,
) -> Result<(), OpsError> {
    store::settings::insert_in(
        &mut tx,
        BOOTSTRAP_CLOSED_AT,
        &store::micros(now).to_string(),
    )
    .await?;
    store::audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(())
}

/// For the CLI: an expiry given as a duration ("365d") or an RFC 3339 time.
pub fn parse_expiry(
    text: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, OpsError> {
    match text {
        None => Ok(None),
        Some(t) => match timespec::parse_expiry(Some(t), now)? {
            crate::domain::policy::ExpiryRequest::At(at) => Ok(Some(at)),
            _ => Ok(None),
        },
    }
}
