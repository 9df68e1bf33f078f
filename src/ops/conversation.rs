//! Audit in conversation: the data behind keyward's MCP resources and prompts (the newest
//! signed checkpoint, the role and permission catalogue, recent events, and the small
//! summaries a prompt attaches). Each reuses the use case its tool calls, so permissions and
//! tenant scoping are the same as the tools'; nothing here writes.

use serde::Serialize;

use super::OpsError;
use super::app::App;
use super::audit::{Filters, GroupBy};
use super::views::{AuditPage, AuditSummary, KeyView, RoleView};
use crate::domain::ids;
use crate::domain::permission::Permission;
use crate::domain::policy;
use crate::domain::principal::Principal;
use crate::store::audit::checkpoints;

/// How many events the recent-events resource shows (newest first).
pub const RECENT_EVENTS: i64 = 50;

/// The newest signed checkpoint, as its C2SP signed note (verbatim).
pub async fn latest_checkpoint(app: &App, p: &Principal) -> Result<String, OpsError> {
    policy::require(p, Permission::AuditVerify)?;
    checkpoints::latest(&app.store)
        .await?
        .map(|c| c.note)
        .ok_or_else(|| {
            OpsError::NotFound(
                "no checkpoint has been signed yet: the signer signs one shortly after the first \
                 events (audit_verify tells more)"
                    .into(),
            )
        })
}

/// One permission and what it allows.
#[derive(Debug, Clone, Serialize)]
pub struct PermissionEntry {
    pub permission: Permission,
    pub description: &'static str,
}

/// Every role (built-in and custom) with its permissions, and every permission described.
#[derive(Debug, Clone, Serialize)]
pub struct RoleCatalog {
    pub roles: Vec<RoleView>,
    pub permissions: Vec<PermissionEntry>,
}

pub async fn role_catalog(app: &App, p: &Principal) -> Result<RoleCatalog, OpsError> {
    let roles = super::roles::list(app, p).await?.roles;
    let permissions = Permission::ALL
        .into_iter()
        .map(|permission| PermissionEntry {
            permission,
            description: permission.description(),
        })
        .collect();
    Ok(RoleCatalog { roles, permissions })
}

/// The newest events the caller may see: `audit_query` with no filters.
pub async fn recent_events(app: &App, p: &Principal) -> Result<AuditPage, OpsError> {
    super::audit::query(app, p, &Filters::default(), Some(RECENT_EVENTS), None).await
}

/// What happened over a window, counted by action and outcome (this also validates the
/// window and time zone exactly as the audit tools will read them).
pub async fn window_summary(
    app: &App,
    p: &Principal,
    since: &str,
    time_zone: Option<&str>,
) -> Result<AuditSummary, OpsError> {
    let filters = Filters {
        since: Some(since.to_owned()),
        time_zone: time_zone.map(str::to_owned),
        ..Filters::default()
    };
    super::audit::summary(
        app,
        p,
        &filters,
        &[GroupBy::Action, GroupBy::Status],
        Some(20),
    )
    .await
}

/// One key as an investigation starts: its metadata (for callers holding `key:read`), what it
/// did and what was done to it, counted.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInvestigation {
    /// Absent when the caller may not read keys' metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyView>,
    pub did: AuditSummary,
    pub done_to_it: AuditSummary,
}

pub async fn key_investigation(
    app: &App,
    p: &Principal,
    key_id: &str,
) -> Result<KeyInvestigation, OpsError> {
    policy::require(p, Permission::AuditRead)?;
    let id = ids::check_id("key", key_id)?;
    let key = if p.has(Permission::KeyRead) {
        Some(super::keys::get(app, p, &id).await?)
    } else {
        None
    };
    let by = |actors: Vec<String>, targets: Vec<String>| Filters {
        actors,
        targets,
        ..Filters::default()
    };
    let groups = [GroupBy::Action, GroupBy::Status];
    let (did, done_to_it) = (by(vec![id.clone()], vec![]), by(vec![], vec![id.clone()]));
    let did = super::audit::summary(app, p, &did, &groups, Some(20)).await?;
    let done_to_it = super::audit::summary(app, p, &done_to_it, &groups, Some(20)).await?;
    if key.is_none() && did.total_events == 0 && done_to_it.total_events == 0 {
        return Err(OpsError::NotFound(format!(
            "no key with id {id}: no audit event in your tenants mentions it"
        )));
    }
    Ok(KeyInvestigation {
        key,
        did,
        done_to_it,
    })
}
