//! The closed set of permissions (`entity:action`) and sets of them.
//!
//! A permission set is a bitset so the guard's decision is a single AND; the text form
//! (space-separated, like OAuth scopes) is what the database and the tools exchange.

use std::fmt;
use std::str::FromStr;

use super::closed::closed_enum;

macro_rules! permissions {
    ($($var:ident = $text:literal: $doc:literal;)+) => {
        closed_enum!(
            /// One thing a principal may do. Parsing unknown text is an error, never a silent no-op.
            Permission { $(#[doc = $doc] $var = $text),+ }
        );

        impl Permission {
            /// What the permission allows, in one sentence (the variant's doc, the README's list).
            pub const fn description(self) -> &'static str {
                match self { $(Permission::$var => $doc),+ }
            }
        }
    };
}

permissions! {
    KeyRead       = "key:read":       "Read API keys' metadata (never their secrets).";
    KeyCreate     = "key:create":     "Create API keys.";
    KeyUpdate     = "key:update":     "Rotate, enable and disable API keys.";
    KeyRevoke     = "key:revoke":     "Revoke API keys permanently.";
    RoleRead      = "role:read":      "Read roles and their permissions.";
    RoleWrite     = "role:write":     "Create, update and delete custom roles.";
    AuditRead     = "audit:read":     "Query and summarise the audit log.";
    AuditVerify   = "audit:verify":   "Verify the audit log against its signed checkpoints, and read them.";
    AuditExport   = "audit:export":   "Export the audit log as a signed, offline-verifiable bundle.";
    OperatorRead  = "operator:read":  "List operators (people who sign in with a password).";
    OperatorWrite = "operator:write": "Create operators, disable and enable them, change their role, reset their password.";
    GrantRead     = "grant:read":     "List every OAuth grant in your tenants (everyone may list their own).";
    GrantRevoke   = "grant:revoke":   "Revoke any OAuth grant in your tenants (everyone may revoke their own).";
}

// A permission set is a `u32` bitset.
const _: () = assert!(Permission::COUNT <= 32);

impl Permission {
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Text that names no permission (clipped, so hostile input cannot bloat the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission '{0}'")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(truncate_for_message(s)))
    }
}

/// Keeps hostile input from bloating an error message.
fn truncate_for_message(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub fn all() -> Self {
        Permission::ALL.into_iter().collect()
    }

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }

    pub const fn is_subset_of(self, other: PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn union(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 | other.0)
    }

    /// Permissions in both sets.
    pub fn intersect(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 & other.0)
    }

    /// Permissions in `self` that `other` lacks.
    pub fn missing_from(self, other: PermissionSet) -> Vec<Permission> {
        self.iter().filter(|p| !other.contains(*p)).collect()
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    pub fn to_vec(self) -> Vec<Permission> {
        self.iter().collect()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// Space-separated, in the stable order.
impl fmt::Display for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(p.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl FromStr for PermissionSet {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_whitespace().map(Permission::from_str).collect()
    }
}

/// Formats a list of permissions for a refusal message: `key:create, audit:read`.
pub fn list(perms: &[Permission]) -> String {
    perms
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_round_trips_through_text() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }

    #[test]
    fn unknown_text_is_an_error() {
        for bad in [
            "",
            "key",
            "key:delete",
            "KEY:READ",
            "key:read ",
            "*",
            "admin",
        ] {
            assert!(bad.parse::<Permission>().is_err(), "{bad:?} parsed");
        }
        let err = "key:read key:explode".parse::<PermissionSet>().unwrap_err();
        assert_eq!(err.to_string(), "unknown permission 'key:explode'");
    }

    #[test]
    fn set_text_round_trips_and_subset_works() {
        let set: PermissionSet = "audit:read key:read".parse().unwrap();
        assert_eq!(set.to_string(), "key:read audit:read");
        assert!(set.is_subset_of(PermissionSet::all()));
        assert!(!PermissionSet::all().is_subset_of(set));
        assert_eq!(
            PermissionSet::all().missing_from(set),
            vec![
                Permission::KeyCreate,
                Permission::KeyUpdate,
                Permission::KeyRevoke,
                Permission::RoleRead,
                Permission::RoleWrite,
                Permission::AuditVerify,
                Permission::AuditExport,
                Permission::OperatorRead,
                Permission::OperatorWrite,
                Permission::GrantRead,
                Permission::GrantRevoke
            ]
        );
        assert_eq!("".parse::<PermissionSet>().unwrap(), PermissionSet::EMPTY);
    }

    #[test]
    fn intersection_keeps_only_shared_permissions() {
        let a: PermissionSet = "key:read key:create audit:read".parse().unwrap();
        let b: PermissionSet = "key:create audit:read role:read".parse().unwrap();
        assert_eq!(a.intersect(b).to_string(), "key:create audit:read");
        assert_eq!(a.intersect(PermissionSet::EMPTY), PermissionSet::EMPTY);
        assert_eq!(a.intersect(PermissionSet::all()), a);
    }
}
