//! API keys as credentials: a presented key (or the key a session was opened with) resolved
//! to its principal, through a short-lived cache of verified keys.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Duration;
use tracing::instrument;

use super::cached::CachedKey;
use super::refusal::{AuthError, AuthFailure, Rejected};
use crate::domain::key::{KeyDigest, KeyFormatError, PlainKey};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::store::{self, StoreError, from_micros};

/// How often `last_used_at` is refreshed for a busy key.
const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

/// Resolves a presented key to a principal: format and checksum offline, then one lookup by
/// SHA-256 digest, then state (revoked, disabled, expired, rotated out, role deleted).
#[instrument(level = "debug", skip_all)]
pub async fn authenticate_key(app: &App, presented: &str) -> Result<Principal, AuthError> {
    let digest = PlainKey::digest_of(presented).map_err(|e| {
        AuthError::Rejected(Rejected::new(match e {
            KeyFormatError::Malformed => AuthFailure::Malformed,
            KeyFormatError::BadChecksum => AuthFailure::BadChecksum,
        }))
    })?;
    authenticate_digest(app, &digest, || Some(PlainKey::preview_of(presented))).await
}

/// Resolves a key by the digest of its secret (a presented key, or the key a session was
/// opened with), checking its state now.
pub async fn authenticate_digest(
    app: &App,
    digest: &KeyDigest,
    preview: impl FnOnce() -> Option<String>,
) -> Result<Principal, AuthError> {
    let now = app.now();
    let key = match app.key_cache.get(digest, now) {
        Some(k) => k,
        None => {
            let generation = app.key_cache.generation();
            let Some(row) = store::keys::find_by_digest(&app.store, &digest.to_hex()).await? else {
                // Unknown keys are not cached: guessing must not fill memory.
                return Err(AuthError::Rejected(Rejected {
                    preview: preview(),
                    ..Rejected::new(AuthFailure::UnknownKey)
                }));
            };
            let key = Arc::new(CachedKey::from_row(row)?);
            app.key_cache
                .put_read(digest.clone(), key.clone(), now, generation);
            key
        }
    };
    if let Some(failure) = key.refusal(now) {
        return Err(AuthError::Rejected(Rejected {
            actor_kind: Some("key"),
            key_id: Some(key.id.clone()),
            name: Some(key.name.as_str().into()),
            preview: Some(key.preview.clone()),
            tenants: Some(key.tenants.clone()),
            ..Rejected::new(failure)
        }));
    }
    let principal = key
        .principal
        .clone()
        .ok_or_else(|| AuthError::Rejected(Rejected::new(AuthFailure::RoleDeleted)))?;
    let last = key.last_used.load(Ordering::Relaxed);
    if last == 0 || from_micros(last) < now - LAST_USED_RESOLUTION {
        key.last_used.store(store::micros(now), Ordering::Relaxed);
        if let Err(e) =
            store::keys::touch_last_used(&app.store, &key.id, now, LAST_USED_RESOLUTION).await
        {
            // Losing a last-used stamp is not worth refusing a valid caller.
            tracing::warn!(error = %e, key_id = %key.id, "could not record key use");
        }
    }
    Ok(principal)
}

/// Resolves an operator row to a principal, checking its state.
pub(crate) fn operator_principal(
    row: store::operators::OperatorAuthRow,
) -> Result<Principal, AuthError> {
    let reject = |failure| {
        AuthError::Rejected(Rejected {
            actor_kind: Some("operator"),
            key_id: Some(row.id.clone()),
            name: Some(row.username.as_str().into()),
            preview: Some(row.username.clone()),
            tenants: Some(row.tenants.split_whitespace().map(str::to_owned).collect()),
            ..Rejected::new(failure)
        })
    };
    if row.disabled_at.is_some() {
        return Err(reject(AuthFailure::OperatorDisabled));
    }
    let Some(perms) = row.permissions.as_deref() else {
        return Err(reject(AuthFailure::RoleDeleted));
    };
    let permissions: PermissionSet = perms
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("role '{}': {e}", row.role_name)))?;
    let names: Vec<&str> = row.tenants.split_whitespace().collect();
    let tenants = TenantScope::parse(&names)
        .map_err(|e| StoreError::Corrupt(format!("operator {}: {e}", row.id)))?;
    Ok(Principal::new(
        Actor::Operator {
            id: row.id,
            username: row.username,
        },
        row.role_name,
        permissions,
        tenants,
        None,
    ))
}
