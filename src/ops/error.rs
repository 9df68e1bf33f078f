//! What a use case can fail with, and the kind each failure is (mapped once by each surface).

use crate::domain::DomainError;
use crate::store::StoreError;
use crate::store::error::AuditUnavailable;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Something that existed only once is over (first-admin bootstrap).
    #[error("{0}")]
    Gone(String),
    /// A credential was refused (the reason is for logs; callers over the network get less).
    #[error("{0}")]
    Unauthenticated(String),
    /// Too much work of one kind is queued (argon2): try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => OpsError::Conflict(what),
            other => OpsError::Store(other),
        }
    }
}

/// The caller-facing class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing permission, or reaching beyond the caller's own permissions/tenants/lifetime.
    PermissionDenied,
    InvalidArgument,
    NotFound,
    Conflict,
    Gone,
    /// The database or the audit trail cannot take the call right now.
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Gone => "gone",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl OpsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpsError::Domain(DomainError::Forbidden { .. } | DomainError::Exceeds(_)) => {
                ErrorKind::PermissionDenied
            }
            OpsError::Domain(_) => ErrorKind::InvalidArgument,
            OpsError::NotFound(_) => ErrorKind::NotFound,
            OpsError::Conflict(_) => ErrorKind::Conflict,
            OpsError::Gone(_) => ErrorKind::Gone,
            OpsError::Unauthenticated(_) => ErrorKind::PermissionDenied,
            OpsError::Busy(_)
            | OpsError::Audit(_)
            | OpsError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            OpsError::Store(_) => ErrorKind::Internal,
        }
    }

    /// Text safe to show the caller: internal details never leave the process.
    pub fn public_message(&self) -> String {
        match self.kind() {
            ErrorKind::Internal => "internal error; the server log has the details".to_owned(),
            ErrorKind::Unavailable => match self {
                OpsError::Audit(a) => a.to_string(),
                OpsError::Busy(why) => why.clone(),
                _ => "the database is unavailable; try again shortly".to_owned(),
            },
            _ => self.to_string(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        OpsError::Domain(DomainError::Invalid(msg.into()))
    }
}
