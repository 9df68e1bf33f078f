//! A verified key as the cache keeps it: what deciding its state needs, nothing more. It
//! depends on no state, so `App` can hold a cache of them.

use std::sync::atomic::AtomicI64;

use chrono::{DateTime, Utc};

use super::refusal::AuthFailure;
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::domain::tenant::TenantScope;
use crate::store::{self, StoreError, from_micros};

/// A key as verification needs it, cached by the digest of one of its secrets.
pub struct CachedKey {
    pub id: String,
    /// The key's name (for the trail: refusals name the key too).
    pub name: String,
    /// Preview of this secret (not necessarily the key's current one).
    pub preview: String,
    pub tenants: Vec<String>,
    revoked: bool,
    disabled: bool,
    expires_at: Option<DateTime<Utc>>,
    /// Set when this secret was superseded by a rotation.
    secret_valid_until: Option<DateTime<Utc>>,
    /// `None` when the key's role was deleted: it then grants nothing.
    pub(super) principal: Option<Principal>,
    /// Microseconds; 0 when never used.
    pub(super) last_used: AtomicI64,
}

impl CachedKey {
    pub(super) fn from_row(row: store::keys::AuthRow) -> Result<Self, StoreError> {
        let names: Vec<&str> = row.tenants.split_whitespace().collect();
        let tenants = TenantScope::parse(&names)
            .map_err(|e| StoreError::Corrupt(format!("key {}: {e}", row.id)))?;
        let principal = match row.permissions.as_deref() {
            None => None,
            Some(p) => {
                let permissions: PermissionSet = p
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("role '{}': {e}", row.role_name)))?;
                Some(Principal::new(
                    Actor::Key {
                        id: row.id.clone(),
                        preview: row.secret_preview.clone(),
                        name: row.name.clone(),
                    },
                    row.role_name.clone(),
                    permissions,
                    tenants.clone(),
                    row.expires_at.map(from_micros),
                ))
            }
        };
        Ok(CachedKey {
            tenants: tenants.to_vec(),
            id: row.id,
            name: row.name,
            preview: row.secret_preview,
            revoked: row.revoked_at.is_some(),
            disabled: row.disabled_at.is_some(),
            expires_at: row.expires_at.map(from_micros),
            secret_valid_until: row.secret_valid_until.map(from_micros),
            principal,
            last_used: AtomicI64::new(row.last_used_at.unwrap_or(0)),
        })
    }

    /// Why the key is refused at `now`, if it is.
    pub(super) fn refusal(&self, now: DateTime<Utc>) -> Option<AuthFailure> {
        let passed = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= now);
        if self.revoked {
            Some(AuthFailure::Revoked)
        } else if self.disabled {
            Some(AuthFailure::Disabled)
        } else if passed(self.expires_at) {
            Some(AuthFailure::Expired)
        } else if passed(self.secret_valid_until) {
            Some(AuthFailure::Rotated)
        } else if self.principal.is_none() {
            Some(AuthFailure::RoleDeleted)
        } else {
            None
        }
    }
}

/// A verified OAuth access token: the principal it stands for (the grant's ceiling met with
/// its signer), until when.
pub struct CachedToken {
    pub(super) principal: Principal,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) grant_id: String,
}
