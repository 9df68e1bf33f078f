//! Roles: named sets of permissions. Four are built in and cannot be changed or deleted.

use super::error::DomainError;
use super::permission::{Permission, PermissionSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
    pub builtin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinRole {
    Reader,
    Auditor,
    KeyManager,
    Admin,
}

impl BuiltinRole {
    pub const ALL: [BuiltinRole; 4] = [
        BuiltinRole::Reader,
        BuiltinRole::Auditor,
        BuiltinRole::KeyManager,
        BuiltinRole::Admin,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BuiltinRole::Reader => "reader",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::KeyManager => "key_manager",
            BuiltinRole::Admin => "admin",
        }
    }

    pub const fn description(self) -> &'static str {
        match self {
            BuiltinRole::Reader => "Reads API keys' metadata and roles.",
            BuiltinRole::Auditor => {
                "Reader, plus querying, summarising, verifying and exporting the audit log."
            }
            BuiltinRole::KeyManager => {
                "Reader, plus creating, rotating, disabling and revoking keys."
            }
            BuiltinRole::Admin => "Every permission, including managing operators.",
        }
    }

    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        let reader: PermissionSet = [KeyRead, RoleRead].into_iter().collect();
        match self {
            BuiltinRole::Reader => reader,
            BuiltinRole::Auditor => {
                reader.union([AuditRead, AuditVerify, AuditExport].into_iter().collect())
            }
            BuiltinRole::KeyManager => {
                reader.union([KeyCreate, KeyUpdate, KeyRevoke].into_iter().collect())
            }
            BuiltinRole::Admin => PermissionSet::all(),
        }
    }

    pub fn from_name(name: &str) -> Option<BuiltinRole> {
        BuiltinRole::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn role(self) -> Role {
        Role {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            permissions: self.permissions(),
            builtin: true,
        }
    }
}

/// Role names are identifiers: 2-64 characters, lowercase letters, digits, '_' and '-'.
pub fn validate_role_name(name: &str) -> Result<String, DomainError> {
    let ok = (2..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(DomainError::Invalid(format!(
            "invalid role name '{}': use 2-64 characters a-z, 0-9, '_' or '-', starting with a letter",
            name.chars().take(64).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles_nest_as_documented() {
        let reader = BuiltinRole::Reader.permissions();
        assert_eq!(reader.to_string(), "key:read role:read");
        assert!(reader.is_subset_of(BuiltinRole::Auditor.permissions()));
        assert!(reader.is_subset_of(BuiltinRole::KeyManager.permissions()));
        assert!(
            !BuiltinRole::KeyManager
                .permissions()
                .contains(Permission::AuditRead)
        );
        assert!(
            !BuiltinRole::Auditor
                .permissions()
                .contains(Permission::KeyCreate)
        );
        assert_eq!(BuiltinRole::Admin.permissions(), PermissionSet::all());
        for r in BuiltinRole::ALL {
            assert_eq!(BuiltinRole::from_name(r.name()), Some(r));
            validate_role_name(r.name()).unwrap();
        }
    }

    #[test]
    fn role_names_are_identifiers() {
        assert!(validate_role_name("ci_deployer").is_ok());
        for bad in ["", "a", "Admin", "9lives", "x y", "r'--", &"r".repeat(65)] {
            assert!(validate_role_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
