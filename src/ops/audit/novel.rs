//! Novelty in a window: per actor, the client IPs, client names or User-Agents first seen
//! inside it (never before its start, for that actor, under the same filters and tenants).

use serde::Deserialize;

use super::summary::GroupBy;
use super::{DEFAULT_TOP, Filters, MAX_TOP, Resolved, bounded, resolve, visible};
use crate::domain::permission::Permission;
use crate::domain::policy;
use crate::domain::principal::Principal;
use crate::domain::timespec;
use crate::ops::OpsError;
use crate::ops::app::App;
use crate::ops::views::{AuditGroup, AuditSummary};
use crate::store::audit::NovelColumn;
use crate::store::{self, from_micros};

/// What to look for first sightings of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Novel {
    /// Client IP addresses, as the server resolved them.
    ClientIp,
    /// MCP client names (clientInfo), as callers asserted them.
    Client,
    /// HTTP User-Agent headers, as callers asserted them.
    UserAgent,
}

impl Novel {
    pub fn name(self) -> &'static str {
        match self {
            Novel::ClientIp => "client_ip",
            Novel::Client => "client",
            Novel::UserAgent => "user_agent",
        }
    }

    fn column(self) -> NovelColumn {
        match self {
            Novel::ClientIp => NovelColumn::ClientIp,
            Novel::Client => NovelColumn::ClientName,
            Novel::UserAgent => NovelColumn::UserAgent,
        }
    }
}

/// Per actor, the values of `what` first seen inside the window, largest first: one group per
/// (actor, value) with its count, first and last seen. `since` is required: "new" means new
/// since then.
pub async fn novel(
    app: &App,
    p: &Principal,
    filters: &Filters,
    group_by: &[GroupBy],
    what: Novel,
    top: Option<i64>,
) -> Result<AuditSummary, OpsError> {
    policy::require(p, Permission::AuditRead)?;
    if group_by != [GroupBy::Actor] {
        return Err(OpsError::invalid(
            "novel counts per actor: pass group_by [\"actor\"] with it",
        ));
    }
    let top = bounded(top, DEFAULT_TOP, MAX_TOP, "top")?;
    let resolved: Resolved = resolve(filters, app.now())?;
    let Some(since) = resolved.since else {
        return Err(OpsError::invalid(
            "novel needs since: the values first seen at or after it, never before",
        ));
    };
    app.audit.sync().await?;
    let tz = resolved.tz();
    let summary =
        store::audit::novel(&app.store, &resolved.filter(p), since, what.column(), top).await?;
    let groups = summary
        .groups
        .iter()
        .map(|g| {
            let v = |i: usize| g.values.get(i).cloned().flatten();
            let mut key = std::collections::BTreeMap::new();
            key.insert(
                "actor".to_owned(),
                v(1).unwrap_or_else(|| v(0).unwrap_or_default()),
            );
            if let Some(p) = &g.preview {
                key.insert("actor_preview".to_owned(), p.clone());
            }
            if let Some(n) = &g.actor_name {
                key.insert("actor_name".to_owned(), visible(n));
            }
            key.insert(what.name().to_owned(), visible(&v(2).unwrap_or_default()));
            AuditGroup {
                key,
                count: g.count,
                first_seen: timespec::format_in(from_micros(g.first), tz),
                last_seen: timespec::format_in(from_micros(g.last), tz),
            }
        })
        .collect::<Vec<_>>();
    Ok(AuditSummary {
        window: resolved.window(app).await?,
        group_by: vec!["actor".to_owned(), what.name().to_owned()],
        novel: Some(what.name().to_owned()),
        truncated: summary.total_groups > groups.len() as i64,
        total_events: summary.total_events,
        groups,
    })
}
