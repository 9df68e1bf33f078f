//! Novelty in a window: per actor, the client IPs, client names or User-Agents first seen
//! inside it (never before its start, for that actor, under the same filters and tenants).

use serde::Deserialize;

use super::summary::{Counting, GroupBy, with_rollups};
use super::{DEFAULT_TOP, Filters, MAX_TOP, Resolved, bounded, resolve, visible};
use crate::domain::permission::Permission;
use crate::domain::policy;
use crate::domain::principal::Principal;
use crate::domain::timespec;
use crate::ops::OpsError;
use crate::ops::app::App;
use crate::ops::views::{AuditGroup, AuditSummary};
use crate::store::audit::novel::{PAIRS, rolled_up};
use crate::store::audit::rollup::{self, Plan};
use crate::store::audit::{AuditFilter, NovelColumn, Summary, novel as store_novel};
use crate::store::from_micros;

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
    novel_counted(app, p, filters, group_by, what, top, Counting::Fastest).await
}

/// `novel`, with the window's pairs counted from `counting`.
pub async fn novel_counted(
    app: &App,
    p: &Principal,
    filters: &Filters,
    group_by: &[GroupBy],
    what: Novel,
    top: Option<i64>,
    counting: Counting,
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
    let f = resolved.filter(p);
    let summary = match counting {
        Counting::Fastest => from_rollups(app, &f, since, what, top).await?,
        Counting::EventsOnly => None,
    };
    let summary = match summary {
        Some(s) => s,
        None => store_novel(&app.store, &f, since, what.column(), top, None).await?,
    };
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

/// Novelty with the window's pairs read from roll-ups, when they hold them and are current
/// enough (as for a summary by actor and client address); `None` to count the events.
async fn from_rollups(
    app: &App,
    f: &AuditFilter,
    since: i64,
    what: Novel,
    top: i64,
) -> Result<Option<Summary>, OpsError> {
    let column = what.column();
    if !rolled_up(column) {
        return Ok(None);
    }
    let Some(shape) = rollup::answers(f, &PAIRS) else {
        return Ok(None);
    };
    let until = f.until.unwrap_or_else(|| app.now().timestamp_micros());
    with_rollups(
        app,
        |seen| Plan::new(Some(since), until, seen, true),
        |plan| async move { store_novel(&app.store, f, since, column, top, Some((&plan, shape))).await },
    )
    .await
}
