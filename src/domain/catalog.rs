//! The catalogue: every tool keyward serves, one line each, and every other action the audit
//! trail records. From a tool's line come its enum variant, its wire name (which is also its
//! audit action), whether it only reads, the permission it needs and the argument naming its
//! target. A tool cannot be declared without a permission: the line does not parse. A tool
//! routed by the MCP surface but missing here is refused at run time and fails the test
//! `every_routed_tool_is_catalogued`. A second table (`offers!`) does the same for the MCP
//! resources and prompts.

use super::closed::closed_enum;
use super::permission::Permission;

/// What a caller needs to see and call a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated caller: knowing yourself, your own OAuth grants and your own password
    /// need no permission (the use case checks what goes beyond oneself).
    Authenticated,
    Needs(Permission),
}

macro_rules! catalogue {
    (
        tools { $($tool:ident = $wire:literal: $mode:ident, $access:expr $(, target($kind:literal, $field:literal))?;)+ }
        $(#[$am:meta])* other actions { $($(#[$om:meta])* $other:ident = $otext:literal),+ $(,)? }
    ) => {
        /// A tool keyward serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ToolName { $($tool),+ }

        closed_enum!(
            $(#[$am])*
            Action { $($tool = $wire,)+ $($(#[$om])* $other = $otext),+ }
        );

        impl ToolName {
            /// How many tools keyward serves.
            pub const COUNT: usize = [$($wire),+].len();

            /// Every tool, in catalogue order.
            pub const ALL: [ToolName; ToolName::COUNT] = [$(ToolName::$tool),+];

            /// What a caller needs to see and call the tool.
            pub fn access(self) -> Access {
                use {Access::*, Permission::*};
                match self { $(ToolName::$tool => $access),+ }
            }

            /// The audit action, whose text is also the tool's wire name.
            pub const fn action(self) -> Action {
                match self { $(ToolName::$tool => Action::$tool),+ }
            }

            /// True when the tool changes nothing; every other tool commits its change together
            /// with its audit record.
            pub const fn read_only(self) -> bool {
                match self { $(ToolName::$tool => catalogue!(@read_only $mode)),+ }
            }

            /// The kind of thing the tool acts on, and the argument naming it (for records the
            /// guard writes itself: reads, denials and failures).
            pub const fn target(self) -> Option<(&'static str, &'static str)> {
                match self { $(ToolName::$tool => catalogue!(@target $(($kind, $field))?)),+ }
            }
        }
    };
    (@read_only read) => { true };
    (@read_only write) => { false };
    (@target) => { None };
    (@target ($kind:literal, $field:literal)) => { Some(($kind, $field)) };
}

catalogue! {
    tools {
        Whoami          = "whoami":            read,  Authenticated;
        KeyCreate       = "key_create":        write, Needs(KeyCreate);
        KeyList         = "key_list":          read,  Needs(KeyRead);
        KeyGet          = "key_get":           read,  Needs(KeyRead),       target("key", "key_id");
        KeyRotate       = "key_rotate":        write, Needs(KeyUpdate),     target("key", "key_id");
        KeyDisable      = "key_disable":       write, Needs(KeyUpdate),     target("key", "key_id");
        KeyEnable       = "key_enable":        write, Needs(KeyUpdate),     target("key", "key_id");
        KeyRevoke       = "key_revoke":        write, Needs(KeyRevoke),     target("key", "key_id");
        RoleList        = "role_list":         read,  Needs(RoleRead);
        RoleGet         = "role_get":          read,  Needs(RoleRead),      target("role", "name");
        RoleCreate      = "role_create":       write, Needs(RoleWrite),     target("role", "name");
        RoleUpdate      = "role_update":       write, Needs(RoleWrite),     target("role", "name");
        RoleDelete      = "role_delete":       write, Needs(RoleWrite),     target("role", "name");
        AuditQuery      = "audit_query":       read,  Needs(AuditRead);
        AuditGet        = "audit_get":         read,  Needs(AuditRead),     target("audit_event", "id");
        AuditSummary    = "audit_summary":     read,  Needs(AuditRead);
        AuditVerify     = "audit_verify":      read,  Needs(AuditVerify);
        AuditExport     = "audit_export":      read,  Needs(AuditExport);
        OperatorCreate  = "operator_create":   write, Needs(OperatorWrite);
        OperatorList    = "operator_list":     read,  Needs(OperatorRead);
        OperatorDisable = "operator_disable":  write, Needs(OperatorWrite), target("operator", "operator_id");
        OperatorEnable  = "operator_enable":   write, Needs(OperatorWrite), target("operator", "operator_id");
        OperatorSetRole = "operator_set_role": write, Needs(OperatorWrite), target("operator", "operator_id");
        OperatorSetPassword = "operator_set_password": write, Authenticated, target("operator", "operator_id");
        GrantList       = "grant_list":        read,  Authenticated;
        GrantRevoke     = "grant_revoke":      write, Authenticated,        target("grant", "grant_id");
    }
    /// What was attempted. Tool calls are recorded under the tool's name.
    other actions {
        /// A call naming a tool that does not exist.
        UnknownTool = "unknown_tool",
        /// A `tools/call` whose parameters do not parse (no tool name, arguments not an object).
        InvalidCall = "invalid_call",
        /// A credential was presented and refused.
        AuthFailed = "auth_failed",
        /// The first admin key (and, over HTTP, the first admin operator) was created.
        Bootstrap = "bootstrap",
        /// An admin key created offline by break-glass recovery (`keyward recover --admin`).
        Recover = "recover",
        /// New MCP sessions were refused at the server's cap (recorded once per burst).
        SessionLimit = "session_limit",
        /// A client IP crossed the failed-authentication threshold and was locked out.
        AuthLockout = "auth_lockout",
        /// A session cookie was issued (password or API key sign-in).
        Login = "login",
        /// A session was ended.
        Logout = "logout",
        /// An OAuth client registered (or an identical registration was answered with it).
        OauthRegister = "oauth_register",
        /// A person approved or denied a client's authorization request.
        OauthAuthorize = "oauth_authorize",
        /// An authorization code was exchanged for tokens (or replayed).
        OauthToken = "oauth_token",
        /// A refresh token was exchanged for a new pair.
        OauthRefresh = "oauth_refresh",
        /// A rotated refresh token came back after its grace window: its grant was revoked.
        OauthRefreshReuse = "oauth_refresh_reuse",
        /// A token was revoked (RFC 7009).
        OauthRevoke = "oauth_revoke",
        /// The audit log failed its integrity check (at start, or a signer's consistency check).
        AuditIntegrity = "audit_integrity",
        /// Retention removed the bodies of old events (their hashes stay).
        AuditPrune = "audit_prune",
        /// A restored database's log was re-anchored ("restored at seq N").
        AuditRestore = "audit_restore",
        /// An MCP resource was read or a prompt fetched: one action per `offers!` line.
        ReadAuditCheckpoint = "read_audit_checkpoint",
        ReadRoleCatalog = "read_role_catalog",
        ReadAuditEvents = "read_audit_events",
        PromptSecurityReview = "prompt_security_review",
        PromptInvestigateKey = "prompt_investigate_key",
        /// A client subscribed to (or unsubscribed from) a resource's updates.
        ResourceSubscribe = "resource_subscribe",
        ResourceUnsubscribe = "resource_unsubscribe",
        /// A resource or prompt that keyward does not offer was asked for.
        UnknownOffer = "unknown_offer",
        /// An exported bundle was downloaded (`GET /audit/exports/{name}`), or the download refused.
        AuditExportFetch = "audit_export_fetch",
    }
}

/// Whether an offer is an MCP resource (read by URI) or a prompt (fetched by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    Resource,
    Prompt,
}

/// The second table: what keyward offers besides tools (MCP resources and prompts), one line
/// each with its name, the URI of a resource, the permission it needs and its audit action.
/// The guard serves them through the same gate as tools; lists show each caller only what
/// it may read.
macro_rules! offers {
    ($($offer:ident = $kind:ident $name:literal $(at $uri:literal)?: $access:expr, $action:ident;)+) => {
        /// A resource or prompt keyward offers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Offer { $($offer),+ }

        impl Offer {
            pub const ALL: [Offer; [$($name),+].len()] = [$(Offer::$offer),+];

            pub fn access(self) -> Access {
                use {Access::*, Permission::*};
                match self { $(Offer::$offer => $access),+ }
            }

            pub const fn action(self) -> Action {
                match self { $(Offer::$offer => Action::$action),+ }
            }

            pub const fn kind(self) -> OfferKind {
                match self { $(Offer::$offer => OfferKind::$kind),+ }
            }

            /// The resource's name or the prompt's (what a client asks `prompts/get` for).
            pub const fn name(self) -> &'static str {
                match self { $(Offer::$offer => $name),+ }
            }

            /// The URI a resource is read at; `None` for a prompt.
            pub const fn uri(self) -> Option<&'static str> {
                match self { $(Offer::$offer => offers!(@uri $($uri)?)),+ }
            }
        }
    };
    (@uri) => { None };
    (@uri $uri:literal) => { Some($uri) };
}

offers! {
    AuditCheckpoint = Resource "audit_checkpoint" at "keyward://audit/checkpoint/latest": Needs(AuditVerify), ReadAuditCheckpoint;
    RoleCatalog     = Resource "role_catalog"     at "keyward://catalog/roles":           Needs(RoleRead),    ReadRoleCatalog;
    AuditEvents     = Resource "audit_events"     at "keyward://audit/events/recent":     Needs(AuditRead),   ReadAuditEvents;
    SecurityReview  = Prompt   "security_review":  Needs(AuditRead), PromptSecurityReview;
    InvestigateKey  = Prompt   "investigate_key":  Needs(AuditRead), PromptInvestigateKey;
}

impl Offer {
    pub fn resource(uri: &str) -> Option<Offer> {
        Offer::ALL.into_iter().find(|o| o.uri() == Some(uri))
    }

    pub fn prompt(name: &str) -> Option<Offer> {
        Offer::ALL
            .into_iter()
            .find(|o| o.kind() == OfferKind::Prompt && o.name() == name)
    }
}

impl ToolName {
    /// The name clients call the tool by.
    pub const fn wire(self) -> &'static str {
        self.action().as_str()
    }

    pub fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|t| t.wire() == name)
    }

    /// Tools that may take minutes (an export reads and proves every event it holds): their
    /// answers get `--long-request-timeout` instead of `--request-timeout`.
    pub fn long_running(self) -> bool {
        matches!(self, ToolName::AuditExport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_and_parse_back() {
        for t in ToolName::ALL {
            assert_eq!(ToolName::parse(t.wire()), Some(t));
            assert_eq!(Action::parse(t.wire()), Some(t.action()));
        }
        let mut names: Vec<_> = ToolName::ALL.iter().map(|t| t.wire()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ToolName::COUNT);
        assert_eq!(ToolName::parse("key_delete"), None);
        assert_eq!(
            ToolName::parse("auth_failed"),
            None,
            "not every action is a tool"
        );
    }

    #[test]
    fn only_self_service_tools_need_no_permission() {
        let own = [
            ToolName::Whoami,
            ToolName::GrantList,
            ToolName::GrantRevoke,
            ToolName::OperatorSetPassword,
        ];
        for t in ToolName::ALL {
            assert_eq!(
                t.access() == Access::Authenticated,
                own.contains(&t),
                "{t:?}"
            );
        }
    }

    #[test]
    fn offers_are_found_by_uri_or_name_and_need_a_permission() {
        for o in Offer::ALL {
            assert!(matches!(o.access(), Access::Needs(_)), "{o:?}");
            assert_eq!(o.uri().is_some(), o.kind() == OfferKind::Resource);
            match o.uri() {
                Some(uri) => assert_eq!(Offer::resource(uri), Some(o)),
                None => assert_eq!(Offer::prompt(o.name()), Some(o)),
            }
            assert_eq!(ToolName::parse(o.action().as_str()), None);
        }
        assert_eq!(Offer::prompt("audit_checkpoint"), None);
    }

    #[test]
    fn a_target_argument_names_an_id() {
        for t in ToolName::ALL {
            if let Some((kind, field)) = t.target() {
                assert!(
                    !kind.is_empty() && (field == "name" || field.ends_with("id")),
                    "{t:?}"
                );
            }
        }
    }
}
