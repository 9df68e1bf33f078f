//! Authentication: turning a presented API key into a `Principal`, recording refusals, and
//! "who am I".

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};
use tracing::instrument;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::call::CallMeta;
use super::views::WhoAmI;
use super::{OpsError, keys};
use crate::app::App;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::domain::key::{KeyDigest, KeyFormatError, PlainKey};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::domain::role::BuiltinRole;
use crate::domain::tenant::TenantScope;
use crate::domain::timespec;
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
    /// Unknown username or wrong password (deliberately not told apart).
    BadPassword,
    OperatorDisabled,
    /// A session cookie that is unknown, revoked or expired.
    BadSession,
    /// The one-time setup token for HTTP bootstrap did not match.
    BadSetupToken,
    /// Too many failed sign-ins for this username lately: the next attempt waits a little.
    NameDelayed,
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
            AuthFailure::BadPassword => "wrong username or password",
            AuthFailure::OperatorDisabled => "operator is disabled",
            AuthFailure::BadSession => "session is unknown, revoked or expired",
            AuthFailure::BadSetupToken => "wrong setup token",
            AuthFailure::NameDelayed => {
                "sign-in for this username is delayed after repeated failures"
            }
        }
    }

    /// A short stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadChecksum => "bad_checksum",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Disabled => "disabled",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::Rotated => "rotated",
            AuthFailure::RoleDeleted => "role_deleted",
            AuthFailure::BadPassword => "bad_password",
            AuthFailure::OperatorDisabled => "operator_disabled",
            AuthFailure::BadSession => "bad_session",
            AuthFailure::BadSetupToken => "bad_setup_token",
            AuthFailure::NameDelayed => "name_delayed",
        }
    }
}

/// A refused credential, with what is known about it (never the secret).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub failure: AuthFailure,
    /// What the credential belongs to, when known ("key", "operator").
    pub actor_kind: Option<&'static str>,
    pub key_id: Option<String>,
    pub preview: Option<String>,
    pub tenants: Option<Vec<String>>,
    /// Until when a delayed attempt must wait.
    pub until: Option<DateTime<Utc>>,
}

impl Rejected {
    pub fn new(failure: AuthFailure) -> Self {
        Rejected {
            failure,
            actor_kind: None,
            key_id: None,
            preview: None,
            tenants: None,
            until: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}", .0.failure.reason())]
    Rejected(Rejected),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::store::audit_writer::AuditUnavailable),
    /// Too much password work is queued already: try again shortly (not a wrong password).
    #[error("sign-in is busy; try again shortly")]
    Busy,
}

impl From<AuthError> for OpsError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Rejected(r) => OpsError::Unauthenticated(r.failure.reason().to_owned()),
            AuthError::Store(e) => e.into(),
            AuthError::Audit(e) => e.into(),
            AuthError::Busy => OpsError::Busy(e_busy()),
        }
    }
}

fn e_busy() -> String {
    AuthError::Busy.to_string()
}

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

/// A key as verification needs it, cached by the digest of one of its secrets.
pub struct CachedKey {
    pub id: String,
    /// Preview of this secret (not necessarily the key's current one).
    pub preview: String,
    pub tenants: Vec<String>,
    revoked: bool,
    disabled: bool,
    expires_at: Option<DateTime<Utc>>,
    /// Set when this secret was superseded by a rotation.
    secret_valid_until: Option<DateTime<Utc>>,
    /// `None` when the key's role was deleted: it then grants nothing.
    principal: Option<Principal>,
    /// Microseconds; 0 when never used.
    last_used: AtomicI64,
}

impl CachedKey {
    fn from_row(row: store::keys::AuthRow) -> Result<Self, StoreError> {
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
    fn refusal(&self, now: DateTime<Utc>) -> Option<AuthFailure> {
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

/// Records a refused credential in the audit trail.
pub async fn record_rejection(
    app: &App,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<(), OpsError> {
    let kind = rejected.actor_kind.unwrap_or("anonymous");
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

/// The one shared key of `legacy` auth mode, and the principal it stands for.
pub struct LegacyKey {
    digest: [u8; 32],
    principal: Principal,
    /// Shorter than `LEGACY_GUESSABLE_BELOW`: treated like a password.
    guessable: bool,
}

/// A legacy key this long or longer is treated like a bearer key; shorter ones like passwords
/// (counted before they are checked, refused while the address is locked out).
pub const LEGACY_GUESSABLE_BELOW: usize = 32;

impl LegacyKey {
    /// Under 8 characters is refused; 8 to 15 is accepted with a warning.
    pub async fn new(app: &App, secret: &str, role: &str) -> Result<Self, OpsError> {
        let n = secret.chars().count();
        if n < 8 {
            return Err(OpsError::invalid(
                "the legacy shared key is shorter than 8 characters; refusing to start",
            ));
        }
        if n < 16 {
            tracing::warn!(
                length = n,
                "the legacy shared key is shorter than 16 characters; use a longer one"
            );
        }
        let role = store::roles::get(&app.store, role)
            .await?
            .ok_or_else(|| keys::unknown_role(role))?;
        // The shared key holds this role over every tenant, forever: the role's holder checks
        // (who may change or delete it) must count it, on every replica.
        store::settings::mark_legacy_role(&app.store, &role.name).await?;
        Ok(LegacyKey {
            guessable: n < LEGACY_GUESSABLE_BELOW,
            digest: Sha256::digest(secret.as_bytes()).into(),
            principal: Principal::new(
                Actor::Legacy,
                role.name,
                role.permissions,
                TenantScope::All,
                None,
            ),
        })
    }

    pub fn guessable(&self) -> bool {
        self.guessable
    }

    /// Compares digests in constant time, so neither content nor length leaks through timing.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(d.ct_eq(&self.digest)).then(|| self.principal.clone())
    }
}

/// Resolves an operator row to a principal, checking its state.
pub(crate) fn operator_principal(
    row: store::operators::OperatorAuthRow,
) -> Result<Principal, AuthError> {
    let reject = |failure| {
        AuthError::Rejected(Rejected {
            actor_kind: Some("operator"),
            key_id: Some(row.id.clone()),
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
