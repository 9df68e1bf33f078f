//! Audit use cases: filtered pages sized for a model's context, one full event, and grouped
//! counts. Callers see only events whose tenants all lie within their own.

pub mod fold;
mod novel;
mod summary;

pub use novel::{Novel, novel, novel_counted};
pub use summary::{Counting, GroupBy, summary, summary_counted};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::OpsError;
use super::views::{
    AuditBrief, AuditEventResult, AuditEventView, AuditPage, ClientClaims, Established, Window,
};
use crate::domain::audit::{Action, Source, Status};
use crate::domain::limits::distinct;
use crate::domain::permission::Permission;
use crate::domain::principal::Principal;
use crate::domain::role::validate_role_name;
use crate::domain::tenant::validate_tenant;
use crate::domain::timespec::{self, Edge};
use crate::domain::{ids, policy};
use crate::ops::app::App;
use crate::store::audit::{AuditFilter, AuditRow, BriefRow};
use crate::store::{self, from_micros, micros};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_TOP: i64 = 10;
pub const MAX_TOP: i64 = 100;
/// 0001-01-02T00:00:00Z and 9999-12-30T00:00:00Z in microseconds: the range every time
/// argument is held to (`timespec`), so a cursor's window is held to it too.
const MIN_INSTANT: i64 = -62_135_510_400_000_000;
const MAX_INSTANT: i64 = 253_402_128_000_000_000;

/// Filters as a caller gives them. Lists are OR within, AND across; empty means any.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub actors: Vec<String>,
    pub roles: Vec<String>,
    pub tenants: Vec<String>,
    pub actions: Vec<Action>,
    pub targets: Vec<String>,
    pub statuses: Vec<Status>,
    pub sources: Vec<Source>,
    pub client_ips: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub time_zone: Option<String>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.actors.is_empty()
            && self.roles.is_empty()
            && self.tenants.is_empty()
            && self.actions.is_empty()
            && self.targets.is_empty()
            && self.statuses.is_empty()
            && self.sources.is_empty()
            && self.client_ips.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.time_zone.is_none()
    }
}

/// Filters after validation, with the window resolved to absolute instants. This is what a
/// cursor carries, so later pages see exactly the same window even when it was "last 24h".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Resolved {
    pub(crate) actors: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) tenants: Vec<String>,
    pub(crate) actions: Vec<String>,
    pub(crate) targets: Vec<String>,
    pub(crate) statuses: Vec<String>,
    pub(crate) sources: Vec<String>,
    pub(crate) client_ips: Vec<String>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
    pub(crate) tz: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    f: Resolved,
    /// Time (µs) and id of the last event returned.
    after_at: i64,
    after_id: i64,
    limit: i64,
}

/// Checks the filters and resolves the window to instants: the one reading of the audit
/// filters, for queries, summaries and exports alike.
pub(crate) fn resolve(input: &Filters, now: DateTime<Utc>) -> Result<Resolved, OpsError> {
    let tz_name = input.time_zone.as_deref().unwrap_or("UTC");
    let tz = timespec::parse_time_zone(tz_name)?;
    let since = input
        .since
        .as_deref()
        .map(|s| timespec::parse_time_bound(s, tz, now, Edge::Start))
        .transpose()?;
    let until = input
        .until
        .as_deref()
        .map(|s| timespec::parse_time_bound(s, tz, now, Edge::End))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(OpsError::invalid(format!(
            "the window is empty: since ({}) is not before until ({})",
            timespec::format_in(s, tz),
            timespec::format_in(u, tz)
        )));
    }
    let check = |name: &str, values: &[String], f: &dyn Fn(&str) -> Result<String, OpsError>| {
        let checked = distinct(name, values)?
            .iter()
            .map(|v| f(v))
            .collect::<Result<Vec<_>, _>>()?;
        // Different spellings of one value (an IP written two ways) count once.
        Ok::<_, OpsError>(distinct(name, &checked)?)
    };
    let texts = |name: &str, values: Vec<&'static str>| -> Result<Vec<String>, OpsError> {
        Ok(distinct(name, &values)?
            .into_iter()
            .map(str::to_owned)
            .collect())
    };
    Ok(Resolved {
        actors: check("actor", &input.actors, &|v| {
            ids::check_id("actor", v)
                .or_else(|_| ids::check_key_name(v))
                .map_err(|_| {
                    OpsError::invalid(
                        "invalid actor: give a key id (key_…), a key preview (kw_…), a key name, \
                         an operator id (op_…) or a username",
                    )
                })
        })?,
        roles: check("role", &input.roles, &|v| Ok(validate_role_name(v)?))?,
        tenants: check("tenant", &input.tenants, &|v| Ok(validate_tenant(v)?))?,
        actions: texts("action", input.actions.iter().map(|a| a.as_str()).collect())?,
        targets: check("target", &input.targets, &|v| {
            ids::check_id("target", v).map_err(|_| {
                OpsError::invalid("invalid target: give a key id, a role name or an event id")
            })
        })?,
        statuses: texts(
            "status",
            input.statuses.iter().map(|s| s.as_str()).collect(),
        )?,
        sources: texts("source", input.sources.iter().map(|s| s.as_str()).collect())?,
        client_ips: check("client_ip", &input.client_ips, &|v| {
            v.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| OpsError::invalid("invalid client_ip: give an IPv4 or IPv6 address"))
        })?,
        // Bounds past what any time zone can show (year 10000, say) mean "no bound" in
        // practice; clamped, they also survive the round trip through a cursor.
        since: since.map(|t| micros(t).clamp(MIN_INSTANT, MAX_INSTANT)),
        until: until.map(|t| micros(t).clamp(MIN_INSTANT, MAX_INSTANT)),
        tz: tz_name.to_owned(),
    })
}

impl Resolved {
    fn filter(&self, p: &Principal) -> AuditFilter {
        self.filter_within(p.tenants().clone())
    }

    /// The filter, seeing only events within `scope`.
    pub(crate) fn filter_within(&self, scope: crate::domain::tenant::TenantScope) -> AuditFilter {
        AuditFilter {
            visible_to: scope,
            actors: self.actors.clone(),
            roles: self.roles.clone(),
            tenants: self.tenants.clone(),
            actions: self.actions.clone(),
            targets: self.targets.clone(),
            statuses: self.statuses.clone(),
            sources: self.sources.clone(),
            client_ips: self.client_ips.clone(),
            since: self.since,
            until: self.until,
            named_keys: None,
        }
    }

    fn tz(&self) -> Tz {
        timespec::parse_time_zone(&self.tz).unwrap_or(Tz::UTC)
    }

    /// The window as answered, saying whether it reaches into what retention removed.
    async fn window(&self, app: &App) -> Result<Window, OpsError> {
        let tz = self.tz();
        let pruned = crate::store::audit::tree::head(&app.store)
            .await?
            .pruned_until;
        let reaches_back = pruned > 0 && self.since.is_none_or(|s| s <= pruned);
        Ok(Window {
            since: self.since.map(|t| timespec::format_in(from_micros(t), tz)),
            until: self.until.map(|t| timespec::format_in(from_micros(t), tz)),
            time_zone: self.tz.clone(),
            pruned_through: reaches_back.then(|| timespec::format_in(from_micros(pruned), tz)),
        })
    }
}

/// Newest events first. Either filters (and a limit), or a cursor from a previous page alone.
pub async fn query(
    app: &App,
    p: &Principal,
    filters: &Filters,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<AuditPage, OpsError> {
    policy::require(p, Permission::AuditRead)?;
    app.audit.sync().await?;
    let (resolved, before, limit) = match cursor {
        Some(c) => {
            if !filters.is_empty() || limit.is_some() {
                return Err(OpsError::invalid(
                    "pass next_cursor alone: it already carries the filters, window and limit of the first page",
                ));
            }
            let c = decode(c)?;
            let end = store::audit::PageEnd {
                at: c.after_at,
                id: c.after_id,
            };
            (c.f, Some(end), c.limit)
        }
        None => (
            resolve(filters, app.now())?,
            None,
            bounded(limit, DEFAULT_LIMIT, MAX_LIMIT, "limit")?,
        ),
    };
    // The window's pruning mark is read beside the page, not after it: one round trip less
    // on a page's path (a PostgreSQL page costs a few of them).
    let filter = resolved.filter(p);
    let (mut rows, window) = tokio::try_join!(
        async {
            store::audit::briefs(&app.store, &filter, before, limit + 1)
                .await
                .map_err(OpsError::from)
        },
        resolved.window(app)
    )?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let tz = resolved.tz();
    let next_cursor = match rows.last() {
        Some(last) if truncated => Some(encode(&Cursor {
            f: resolved.clone(),
            after_at: last.at,
            after_id: last.id,
            limit,
        })?),
        _ => None,
    };
    Ok(AuditPage {
        window,
        events: rows.iter().map(|r| brief(r, tz)).collect(),
        truncated,
        next_cursor,
    })
}

pub async fn get(
    app: &App,
    p: &Principal,
    id: i64,
    time_zone: Option<&str>,
) -> Result<AuditEventResult, OpsError> {
    policy::require(p, Permission::AuditRead)?;
    app.audit.sync().await?;
    let tz = timespec::parse_time_zone(time_zone.unwrap_or("UTC"))?;
    let row = store::audit::get(&app.store, id, p.tenants())
        .await?
        .ok_or_else(|| {
            OpsError::NotFound(format!(
                "no audit event {id} (or it is outside your tenants)"
            ))
        })?;
    Ok(AuditEventResult {
        event: full(&row, tz),
    })
}

fn bounded(v: Option<i64>, default: i64, max: i64, name: &str) -> Result<i64, OpsError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(OpsError::invalid(format!(
            "{name} must be between 1 and {max}"
        ))),
    }
}

fn encode(c: &Cursor) -> Result<String, OpsError> {
    let json =
        serde_json::to_vec(c).map_err(|_| OpsError::invalid("cursor could not be encoded"))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode(text: &str) -> Result<Cursor, OpsError> {
    let bad = || OpsError::invalid("invalid cursor: pass next_cursor exactly as returned");
    if text.len() > 8192 {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&raw).map_err(|_| bad())?;
    // A cursor is caller-supplied: re-validate what it carries as if it were fresh input.
    let again = Filters {
        actors: c.f.actors.clone(),
        roles: c.f.roles.clone(),
        tenants: c.f.tenants.clone(),
        actions: c
            .f
            .actions
            .iter()
            .map(|a| Action::parse(a).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        targets: c.f.targets.clone(),
        statuses: c
            .f
            .statuses
            .iter()
            .map(|s| Status::parse(s).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        sources: c
            .f
            .sources
            .iter()
            .map(|s| Source::parse(s).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        client_ips: c.f.client_ips.clone(),
        since: None,
        until: None,
        time_zone: Some(c.f.tz.clone()),
    };
    // What is used is the checked (de-duplicated) form, never the raw lists.
    let checked = resolve(&again, DateTime::<Utc>::UNIX_EPOCH).map_err(|_| bad())?;
    let mut c = c;
    c.f = Resolved {
        since: c.f.since,
        until: c.f.until,
        ..checked
    };
    // Instants must be ones chrono can show in any time zone (years 1 to 9999).
    let sane = |t: Option<i64>| t.is_none_or(|t| (MIN_INSTANT..=MAX_INSTANT).contains(&t));
    let sane_at = (MIN_INSTANT..=MAX_INSTANT).contains(&c.after_at);
    // The same window given as arguments would be refused when empty.
    let empty = matches!((c.f.since, c.f.until), (Some(s), Some(u)) if s >= u);
    if !(1..=MAX_LIMIT).contains(&c.limit)
        || !sane(c.f.since)
        || !sane(c.f.until)
        || !sane_at
        || c.after_id < 1
        || empty
    {
        return Err(bad());
    }
    Ok(c)
}

fn target_text(target_type: Option<&str>, target_id: Option<&str>) -> Option<String> {
    match (target_type, target_id) {
        (Some(k), Some(id)) => Some(format!("{k}:{id}")),
        _ => None,
    }
}

fn brief(r: &BriefRow, tz: Tz) -> AuditBrief {
    AuditBrief {
        id: r.id,
        at: timespec::format_in(from_micros(r.at), tz),
        actor: r.actor_id.clone().unwrap_or_else(|| r.actor_kind.clone()),
        actor_name: r.actor_name.as_deref().map(visible),
        actor_preview: r.actor_preview.clone(),
        role: r.role.clone(),
        action: r.action.clone(),
        target: target_text(r.target_type.as_deref(), r.target_id.as_deref()),
        target_name: r.target_name.as_deref().map(visible),
        status: r.status.clone(),
        source: r.source.clone(),
    }
}

pub(super) fn visible(text: &str) -> String {
    crate::domain::text::neutralize(text, false).into_owned()
}

fn full(r: &AuditRow, tz: Tz) -> AuditEventView {
    let json = |t: &Option<String>| {
        t.as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .map(|v| crate::domain::text::neutralize_json(&v))
    };
    AuditEventView {
        id: r.id,
        at: timespec::format_in(from_micros(r.at), tz),
        action: r.action.clone(),
        status: r.status.clone(),
        // Records written before free text was neutralised on the way in are shown the same.
        reason: r.reason.as_deref().map(visible),
        tenants: r.tenants.split_whitespace().map(str::to_owned).collect(),
        target_type: r.target_type.clone(),
        target_id: r.target_id.clone(),
        target_name: r.target_name.as_deref().map(visible),
        established: Established {
            source: r.source.clone(),
            actor_kind: r.actor_kind.clone(),
            actor_id: r.actor_id.clone(),
            actor_name: r.actor_name.as_deref().map(visible),
            actor_preview: r.actor_preview.clone(),
            role: r.role.clone(),
            client_ip: r.client_ip.clone(),
            channel: r.channel.clone(),
        },
        claimed: ClientClaims {
            request_source: r.request_source.as_deref().map(visible),
            client_name: r.client_name.as_deref().map(visible),
            client_version: r.client_version.as_deref().map(visible),
            request_id: r.request_id.as_deref().map(visible),
            user_agent: r.user_agent.as_deref().map(visible),
        },
        args: json(&r.args),
        before: json(&r.before_state),
        after: json(&r.after_state),
    }
}
