//! Why a domain rule refused. Every message names what is missing and never echoes a secret.

use super::permission::{self, Permission};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    UnknownPermission(#[from] permission::UnknownPermission),

    #[error(
        "invalid tenant '{0}': use 1-64 characters a-z, 0-9, '-', '_' or '.', starting with a letter or digit; '*' means all tenants"
    )]
    InvalidTenant(String),

    /// The caller's role lacks the permission an operation needs.
    #[error("permission denied: this requires {needed}, which role '{role}' does not grant")]
    Forbidden { needed: Permission, role: String },

    /// Granting, assigning or managing something more powerful than the caller.
    #[error("{0}")]
    Exceeds(Escalation),

    #[error("{0}")]
    Invalid(String),
}

/// What a caller tried to hand out, or act on, beyond its own reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// What was refused, e.g. "cannot create a key with role 'admin'".
    pub action: String,
    pub missing_permissions: Vec<Permission>,
    pub missing_tenants: Vec<String>,
    /// Set when the thing is held in tenants the caller cannot see (their names stay hidden).
    pub held_outside_scope: bool,
    /// Set when the requested expiry outlives the caller's own.
    pub expiry: Option<String>,
}

impl std::fmt::Display for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.action)?;
        let mut parts = Vec::new();
        if !self.missing_permissions.is_empty() {
            parts.push(format!(
                "it holds {} which you lack",
                permission::list(&self.missing_permissions)
            ));
        }
        if !self.missing_tenants.is_empty() {
            parts.push(format!(
                "it covers tenant(s) {} outside your scope",
                self.missing_tenants.join(", ")
            ));
        }
        if self.held_outside_scope {
            parts.push("it is held by keys or operators in tenants outside your scope".to_owned());
        }
        if let Some(expiry) = &self.expiry {
            parts.push(expiry.clone());
        }
        f.write_str(&parts.join("; "))
    }
}
