//! Why a credential was refused.

use chrono::{DateTime, Utc};

use crate::ops::OpsError;
use crate::store::StoreError;

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
    /// The key's name or the operator's username, when known (boxed: a refusal stays small
    /// enough to return by value).
    pub name: Option<Box<str>>,
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
            name: None,
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
    Audit(#[from] crate::store::error::AuditUnavailable),
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
