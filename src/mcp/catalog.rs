//! The closed tool catalogue: every tool keyward serves, and what each requires.
//!
//! `access` is an exhaustive match, so a tool cannot be added without declaring its
//! permission; a tool routed but missing here is refused at run time and fails the test
//! `every_routed_tool_is_catalogued`.

use crate::domain::audit::Action;
use crate::domain::permission::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolName {
    Whoami,
    KeyCreate,
    KeyList,
    KeyGet,
    KeyRotate,
    KeyDisable,
    KeyEnable,
    KeyRevoke,
    RoleList,
    RoleGet,
    RoleCreate,
    RoleUpdate,
    RoleDelete,
    AuditQuery,
    AuditGet,
    AuditSummary,
    OperatorCreate,
    OperatorList,
    OperatorDisable,
    OperatorEnable,
    OperatorSetRole,
}

/// What a caller needs to see and call a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated caller (only `whoami`: knowing yourself needs no permission).
    Authenticated,
    Needs(Permission),
}

impl ToolName {
    pub const ALL: [ToolName; 21] = [
        ToolName::Whoami,
        ToolName::KeyCreate,
        ToolName::KeyList,
        ToolName::KeyGet,
        ToolName::KeyRotate,
        ToolName::KeyDisable,
        ToolName::KeyEnable,
        ToolName::KeyRevoke,
        ToolName::RoleList,
        ToolName::RoleGet,
        ToolName::RoleCreate,
        ToolName::RoleUpdate,
        ToolName::RoleDelete,
        ToolName::AuditQuery,
        ToolName::AuditGet,
        ToolName::AuditSummary,
        ToolName::OperatorCreate,
        ToolName::OperatorList,
        ToolName::OperatorDisable,
        ToolName::OperatorEnable,
        ToolName::OperatorSetRole,
    ];

    pub fn access(self) -> Access {
        use Permission::*;
        match self {
            ToolName::Whoami => Access::Authenticated,
            ToolName::KeyList | ToolName::KeyGet => Access::Needs(KeyRead),
            ToolName::KeyCreate => Access::Needs(KeyCreate),
            ToolName::KeyRotate | ToolName::KeyDisable | ToolName::KeyEnable => {
                Access::Needs(KeyUpdate)
            }
            ToolName::KeyRevoke => Access::Needs(KeyRevoke),
            ToolName::RoleList | ToolName::RoleGet => Access::Needs(RoleRead),
            ToolName::RoleCreate | ToolName::RoleUpdate | ToolName::RoleDelete => {
                Access::Needs(RoleWrite)
            }
            ToolName::AuditQuery | ToolName::AuditGet | ToolName::AuditSummary => {
                Access::Needs(AuditRead)
            }
            ToolName::OperatorList => Access::Needs(OperatorRead),
            ToolName::OperatorCreate
            | ToolName::OperatorDisable
            | ToolName::OperatorEnable
            | ToolName::OperatorSetRole => Access::Needs(OperatorWrite),
        }
    }

    /// The audit action, whose text is also the tool's wire name.
    pub fn action(self) -> Action {
        match self {
            ToolName::Whoami => Action::Whoami,
            ToolName::KeyCreate => Action::KeyCreate,
            ToolName::KeyList => Action::KeyList,
            ToolName::KeyGet => Action::KeyGet,
            ToolName::KeyRotate => Action::KeyRotate,
            ToolName::KeyDisable => Action::KeyDisable,
            ToolName::KeyEnable => Action::KeyEnable,
            ToolName::KeyRevoke => Action::KeyRevoke,
            ToolName::RoleList => Action::RoleList,
            ToolName::RoleGet => Action::RoleGet,
            ToolName::RoleCreate => Action::RoleCreate,
            ToolName::RoleUpdate => Action::RoleUpdate,
            ToolName::RoleDelete => Action::RoleDelete,
            ToolName::AuditQuery => Action::AuditQuery,
            ToolName::AuditGet => Action::AuditGet,
            ToolName::AuditSummary => Action::AuditSummary,
            ToolName::OperatorCreate => Action::OperatorCreate,
            ToolName::OperatorList => Action::OperatorList,
            ToolName::OperatorDisable => Action::OperatorDisable,
            ToolName::OperatorEnable => Action::OperatorEnable,
            ToolName::OperatorSetRole => Action::OperatorSetRole,
        }
    }

    /// Tools that may take minutes (none yet; full audit verification and export will): their
    /// answers get `--long-request-timeout` instead of `--request-timeout`.
    pub fn long_running(self) -> bool {
        let _ = self;
        false
    }

    pub fn wire(self) -> &'static str {
        self.action().as_str()
    }

    pub fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|t| t.wire() == name)
    }

    /// The kind of thing the tool acts on, and the argument naming it (for records the guard
    /// writes itself: reads, denials and failures).
    pub fn target(self) -> Option<(&'static str, &'static str)> {
        match self {
            ToolName::KeyGet
            | ToolName::KeyRotate
            | ToolName::KeyDisable
            | ToolName::KeyEnable
            | ToolName::KeyRevoke => Some(("key", "key_id")),
            ToolName::RoleGet
            | ToolName::RoleCreate
            | ToolName::RoleUpdate
            | ToolName::RoleDelete => Some(("role", "name")),
            ToolName::AuditGet => Some(("audit_event", "id")),
            ToolName::OperatorDisable | ToolName::OperatorEnable | ToolName::OperatorSetRole => {
                Some(("operator", "operator_id"))
            }
            ToolName::Whoami
            | ToolName::KeyCreate
            | ToolName::KeyList
            | ToolName::RoleList
            | ToolName::AuditQuery
            | ToolName::AuditSummary
            | ToolName::OperatorCreate
            | ToolName::OperatorList => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_and_parse_back() {
        for t in ToolName::ALL {
            assert_eq!(ToolName::parse(t.wire()), Some(t));
        }
        let mut names: Vec<_> = ToolName::ALL.iter().map(|t| t.wire()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ToolName::ALL.len());
        assert_eq!(ToolName::parse("key_delete"), None);
    }

    #[test]
    fn only_whoami_needs_no_permission() {
        for t in ToolName::ALL {
            assert_eq!(
                t.access() == Access::Authenticated,
                t == ToolName::Whoami,
                "{t:?}"
            );
        }
    }
}
