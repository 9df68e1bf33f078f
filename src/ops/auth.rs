//! Authentication: turning a presented API key into a `Principal`, recording refusals, the
//! first-admin bootstrap, and "who am I".

use chrono::{DateTime, Duration, Utc};
use tracing::instrument;

use super::call::CallMeta;
use super::views::{KeyWithSecret, WhoAmI};
use super::{OpsError, keys};
use crate::app::App;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::domain::key::{KeyFormatError, PlainKey};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::domain::role::BuiltinRole;
use crate::domain::tenant::TenantScope;
use crate::domain::{ids, timespec};
use crate::store::{self, StoreError, from_micros};

/// Why a credential was refused. Shown in logs and the audit trail; callers over the network
/// get only "invalid token".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    BadChecksum,
    UnknownKey,
    Disabled,
    Revoked,
    Expired,
    /// An old secret used after its rotation grace period.
    Rotated,
    /// The key's role was deleted.
    RoleDeleted,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no API key presented",
            AuthFailure::Malformed => "not a keyward API key",
            AuthFailure::BadChecksum => "API key checksum mismatch (mistyped or truncated)",
            AuthFailure::UnknownKey => "unknown API key",
            AuthFailure::Disabled => "API key is disabled",
            AuthFailure::Revoked => "API key is revoked",
            AuthFailure::Expired => "API key has expired",
            AuthFailure::Rotated => "API key secret was rotated and its grace period is over",
            AuthFailure::RoleDeleted => "API key's role was deleted",
        }
    }
}

/// A refused credential, with what is known about it (never the secret).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub failure: AuthFailure,
    pub key_id: Option<String>,
    pub preview: Option<String>,
    pub tenants: Option<Vec<String>>,
}

impl Rejected {
    pub fn new(failure: AuthFailure) -> Self {
        Rejected {
            failure,
            key_id: None,
            preview: None,
            tenants: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}", .0.failure.reason())]
    Rejected(Rejected),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often `last_used_at` is refreshed for a busy key.
const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

/// Resolves a presented key to a principal: format and checksum offline, then one lookup by
/// SHA-256 digest, then state (revoked, disabled, expired, rotated out, role deleted).
#[instrument(skip_all)]
pub async fn authenticate_key(app: &App, presented: &str) -> Result<Principal, AuthError> {
    let key = PlainKey::parse(presented).map_err(|e| {
        AuthError::Rejected(Rejected::new(match e {
            KeyFormatError::Malformed => AuthFailure::Malformed,
            KeyFormatError::BadChecksum => AuthFailure::BadChecksum,
        }))
    })?;
    let preview = key.preview();
    let Some(row) = store::keys::find_by_digest(&app.store, &key.digest()).await? else {
        return Err(AuthError::Rejected(Rejected {
            preview: Some(preview),
            ..Rejected::new(AuthFailure::UnknownKey)
        }));
    };
    let now = app.now();
    let reject = |failure| {
        AuthError::Rejected(Rejected {
            failure,
            key_id: Some(row.id.clone()),
            preview: Some(row.secret_preview.clone()),
            tenants: Some(row.tenants.split_whitespace().map(str::to_owned).collect()),
        })
    };
    let expired = |t: Option<i64>| t.is_some_and(|t| from_micros(t) <= now);
    let failure = if row.revoked_at.is_some() {
        Some(AuthFailure::Revoked)
    } else if row.disabled_at.is_some() {
        Some(AuthFailure::Disabled)
    } else if expired(row.expires_at) {
        Some(AuthFailure::Expired)
    } else if expired(row.secret_valid_until) {
        Some(AuthFailure::Rotated)
    } else if row.permissions.is_none() {
        Some(AuthFailure::RoleDeleted)
    } else {
        None
    };
    if let Some(f) = failure {
        return Err(reject(f));
    }
    let permissions: PermissionSet = row
        .permissions
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("role '{}': {e}", row.role_name)))?;
    let names: Vec<&str> = row.tenants.split_whitespace().collect();
    let tenants = TenantScope::parse(&names)
        .map_err(|e| StoreError::Corrupt(format!("key {}: {e}", row.id)))?;
    if row
        .last_used_at
        .is_none_or(|t| from_micros(t) < now - LAST_USED_RESOLUTION)
        && let Err(e) =
            store::keys::touch_last_used(&app.store, &row.id, now, LAST_USED_RESOLUTION).await
    {
        // Losing a last-used stamp is not worth refusing a valid caller.
        tracing::warn!(error = %e, key_id = %row.id, "could not record key use");
    }
    Ok(Principal::new(
        Actor::Key {
            id: row.id,
            preview: row.secret_preview,
        },
        row.role_name,
        permissions,
        tenants,
        row.expires_at.map(from_micros),
    ))
}

/// Records a refused credential in the audit trail.
pub async fn record_rejection(
    app: &App,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<(), OpsError> {
    let kind = if rejected.key_id.is_some() {
        "key"
    } else {
        "anonymous"
    };
    let event = AuditEvent {
        actor_id: rejected.key_id.clone(),
        actor_preview: rejected.preview.clone(),
        tenants: rejected
            .tenants
            .clone()
            .unwrap_or_else(|| TenantScope::All.to_vec()),
        reason: Some(rejected.failure.reason().to_owned()),
        ..meta.event(app.now(), Action::AuthFailed, Status::Denied, kind)
    };
    app.audit.record(event).await?;
    Ok(())
}

/// The principal used when authentication is explicitly disabled for local development.
pub fn development_principal() -> Principal {
    Principal::new(
        Actor::Development,
        BuiltinRole::Admin.name().to_owned(),
        BuiltinRole::Admin.permissions(),
        TenantScope::All,
        None,
    )
}

pub fn whoami(p: &Principal) -> WhoAmI {
    WhoAmI {
        actor_kind: p.actor().kind().to_owned(),
        key_id: p.actor().id().map(str::to_owned),
        key_preview: p.actor().preview().map(str::to_owned),
        role: p.role().to_owned(),
        permissions: p.permissions().to_vec(),
        tenants: p.tenants().to_vec(),
        expires_at: p.expires_at().map(timespec::format_utc),
    }
}

/// Creates the first admin key. Allowed only while no active admin key exists (none that is
/// unrevoked, enabled and unexpired), and serialised so two racing bootstraps cannot both win.
pub async fn bootstrap(
    app: &App,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    meta: &CallMeta,
) -> Result<KeyWithSecret, OpsError> {
    let now = app.now();
    if expires_at.is_some_and(|t| t <= now) {
        return Err(OpsError::invalid("expiry must be in the future"));
    }
    let mut tx = app.store.begin().await?;
    store::keys::lock_bootstrap(&mut tx).await?;
    if store::keys::count_active_admins(&mut tx, now).await? > 0 {
        return Err(OpsError::Conflict(
            "an active admin key already exists: bootstrap works only while there is none; \
             use that key to create more"
                .into(),
        ));
    }
    let secret = PlainKey::generate();
    let id = ids::new_key_id();
    let preview = secret.preview();
    let new = store::keys::NewKey {
        id: &id,
        name,
        description: "created by bootstrap",
        role_name: BuiltinRole::Admin.name(),
        tenants: &TenantScope::All,
        preview: &preview,
        digest: &secret.digest(),
        created_by: Some("bootstrap"),
        expires_at,
    };
    store::keys::insert(&mut tx, &new, now).await?;
    let row = store::keys::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| OpsError::NotFound("key vanished during bootstrap".into()))?;
    let view = keys::view(&row, now)?;
    let event = AuditEvent {
        target_type: Some("key".into()),
        target_id: Some(id.clone()),
        args: Some(crate::domain::audit::redact(
            &serde_json::json!({ "name": name }),
        )),
        after: serde_json::to_value(&view).ok(),
        ..meta.event(now, Action::Bootstrap, Status::Success, "system")
    };
    store::audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(KeyWithSecret {
        key: view,
        api_key: secret.expose().to_owned(),
        previous_secret_valid_until: None,
    })
}
