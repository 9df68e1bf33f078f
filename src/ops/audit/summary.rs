//! Grouped counts of audit events: validation of the grouping, the count itself (from the
//! per-quarter counts where the question allows, else from the hourly and daily roll-ups where
//! it allows, else from the events), and the merge of 15-minute buckets into local hours and
//! days.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::Timelike;
use chrono_tz::Tz;
use serde::Deserialize;

use super::{DEFAULT_TOP, Filters, MAX_TOP, Resolved, bounded, resolve, visible};
use crate::domain::permission::Permission;
use crate::domain::policy;
use crate::domain::principal::Principal;
use crate::domain::tenant::TenantScope;
use crate::domain::timespec;
use crate::ops::OpsError;
use crate::ops::app::App;
use crate::ops::views::{AuditGroup, AuditSummary};
use crate::store::audit::{
    AuditFilter, CountDim, CountQuery, Dim, Group, QUARTER, Summary, rollup,
};
use crate::store::{self, from_micros};

/// Most 15-minute buckets (times the other dimension's values) a time grouping may read.
const MAX_TIME_BUCKETS: i64 = 50_000;

/// A dimension to group by, as callers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Actor,
    Action,
    Status,
    Source,
    Role,
    Target,
    ClientIp,
    Hour,
    Day,
}

impl GroupBy {
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Actor => "actor",
            GroupBy::Action => "action",
            GroupBy::Status => "status",
            GroupBy::Source => "source",
            GroupBy::Role => "role",
            GroupBy::Target => "target",
            GroupBy::ClientIp => "client_ip",
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
        }
    }

    fn dim(self) -> Dim {
        match self {
            GroupBy::Actor => Dim::Actor,
            GroupBy::Action => Dim::Action,
            GroupBy::Status => Dim::Status,
            GroupBy::Source => Dim::Source,
            GroupBy::Role => Dim::Role,
            GroupBy::Target => Dim::Target,
            GroupBy::ClientIp => Dim::ClientIp,
            GroupBy::Hour | GroupBy::Day => Dim::Quarter,
        }
    }

    fn is_time(self) -> bool {
        matches!(self, GroupBy::Hour | GroupBy::Day)
    }

    /// How many stored values this dimension reads.
    fn width(self) -> usize {
        match self {
            GroupBy::Actor | GroupBy::Target => 2,
            _ => 1,
        }
    }
}

/// Where a summary's counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// The cheapest source the question allows: per-quarter counts, roll-ups, or the events.
    Fastest,
    /// The events alone (what the other sources are held to).
    EventsOnly,
}

/// Counts grouped by one or two dimensions, largest first, with first and last seen.
pub async fn summary(
    app: &App,
    p: &Principal,
    filters: &Filters,
    group_by: &[GroupBy],
    top: Option<i64>,
) -> Result<AuditSummary, OpsError> {
    summary_counted(app, p, filters, group_by, top, Counting::Fastest).await
}

/// `summary`, counted from `counting`.
pub async fn summary_counted(
    app: &App,
    p: &Principal,
    filters: &Filters,
    group_by: &[GroupBy],
    top: Option<i64>,
    counting: Counting,
) -> Result<AuditSummary, OpsError> {
    policy::require(p, Permission::AuditRead)?;
    if group_by.is_empty() || group_by.len() > 2 {
        return Err(OpsError::invalid(
            "group_by takes one or two dimensions (at most 2)",
        ));
    }
    if group_by.len() == 2 && group_by[0] == group_by[1] {
        return Err(OpsError::invalid("group_by dimensions must differ"));
    }
    if group_by.iter().filter(|g| g.is_time()).count() > 1 {
        return Err(OpsError::invalid("group by hour or by day, not both"));
    }
    let top = bounded(top, DEFAULT_TOP, MAX_TOP, "top")?;
    let resolved: Resolved = resolve(filters, app.now())?;
    app.audit.sync().await?;
    let tz = resolved.tz();
    let dims: Vec<Dim> = group_by.iter().map(|g| g.dim()).collect();
    let has_time = group_by.iter().any(|g| g.is_time());
    // Time buckets are 15-minute UTC slots merged here into local hours or days (so DST and
    // half-hour offsets come out right); other groupings are ranked and cut in SQL.
    let sql_limit = if has_time { MAX_TIME_BUCKETS + 1 } else { top };
    let filter = resolved.filter(p);
    let counted = async {
        match counting {
            Counting::Fastest => count(app, &filter, group_by, &dims, sql_limit, tz).await,
            Counting::EventsOnly => {
                store::audit::summarise(&app.store, &filter, &dims, Some(sql_limit))
                    .await
                    .map_err(OpsError::from)
            }
        }
    };
    // The window's pruning mark is read beside the counting: one round trip less.
    let (summary, window) = tokio::try_join!(counted, resolved.window(app))?;
    if has_time && summary.groups.len() as i64 > MAX_TIME_BUCKETS {
        return Err(OpsError::invalid(
            "too many hour/day groups to count at once: narrow the window (since/until) or add filters",
        ));
    }

    // Merged by what each group is, not by what it shows: an actor or a target renamed within
    // an hour or a day is one group there, shown by its greatest name (by bytes, as the
    // statements pick it).
    let mut merged: BTreeMap<Vec<Option<String>>, Group> = BTreeMap::new();
    for g in summary.groups {
        match merged.entry(merge_key(group_by, &g, tz)) {
            Entry::Vacant(v) => {
                v.insert(g);
            }
            Entry::Occupied(mut o) => {
                let m = o.get_mut();
                m.count += g.count;
                m.first = m.first.min(g.first);
                m.last = m.last.max(g.last);
                m.preview = m.preview.take().max(g.preview);
                m.actor_name = m.actor_name.take().max(g.actor_name);
                m.target_name = m.target_name.take().max(g.target_name);
            }
        }
    }
    let total_groups = if has_time {
        merged.len() as i64
    } else {
        summary.total_groups
    };
    let mut groups: Vec<(Vec<Option<String>>, Group)> = merged.into_iter().collect();
    groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(b.1.last.cmp(&a.1.last)));
    groups.truncate(top as usize);
    Ok(AuditSummary {
        window,
        group_by: group_by.iter().map(|g| g.name().to_owned()).collect(),
        novel: None,
        truncated: total_groups > groups.len() as i64,
        total_events: summary.total_events,
        groups: groups
            .into_iter()
            .map(|(_, g)| AuditGroup {
                key: group_key(group_by, &g, tz).into_iter().collect(),
                count: g.count,
                first_seen: timespec::format_in(from_micros(g.first), tz),
                last_seen: timespec::format_in(from_micros(g.last), tz),
            })
            .collect(),
    })
}

/// What a group is, as quarters merge into it: the local hour or day for a time dimension,
/// the grouped values otherwise (never the names the group shows).
fn merge_key(group_by: &[GroupBy], g: &Group, tz: Tz) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    for gb in group_by {
        let v = |j: usize| g.values.get(i + j).cloned().flatten();
        match gb.is_time() {
            true => out.push(Some(time_label(*gb, v(0), tz))),
            false => out.extend((0..gb.width()).map(v)),
        }
        i += gb.width();
    }
    out
}

/// The local hour (RFC 3339, on the hour) or day of a quarter's bucket.
fn time_label(gb: GroupBy, quarter: Option<String>, tz: Tz) -> String {
    let quarter: i64 = quarter.and_then(|q| q.parse().ok()).unwrap_or_default();
    let local = from_micros(quarter * 900_000_000).with_timezone(&tz);
    if gb == GroupBy::Day {
        local.date_naive().to_string()
    } else {
        local
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| local.to_rfc3339())
    }
}

/// The display key of a group: one entry per dimension (plus the actor's preview).
fn group_key(group_by: &[GroupBy], g: &Group, tz: Tz) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    for gb in group_by {
        let v = |j: usize| g.values.get(i + j).cloned().flatten();
        let text = match gb {
            GroupBy::Actor => {
                let kind = v(0).unwrap_or_default();
                if let Some(p) = &g.preview {
                    out.push(("actor_preview".to_owned(), p.clone()));
                }
                if let Some(n) = &g.actor_name {
                    out.push(("actor_name".to_owned(), visible(n)));
                }
                v(1).unwrap_or(kind)
            }
            GroupBy::Target => match (v(0), v(1)) {
                (Some(kind), Some(id)) => {
                    if let Some(n) = &g.target_name {
                        out.push(("target_name".to_owned(), visible(n)));
                    }
                    format!("{kind}:{id}")
                }
                _ => "none".to_owned(),
            },
            GroupBy::Hour | GroupBy::Day => time_label(*gb, v(0), tz),
            _ => v(0).unwrap_or_else(|| "none".to_owned()),
        };
        out.push((gb.name().to_owned(), text));
        i += gb.width();
    }
    out
}

/// The groups for `dims`, largest first, at most `limit`. Read from the per-quarter counts
/// when the question fits them (`counts_plan`), with the partial quarters at either end of the
/// window read from the events; from the events otherwise. The groups are the same either way.
async fn count(
    app: &App,
    f: &AuditFilter,
    group_by: &[GroupBy],
    dims: &[Dim],
    limit: i64,
    tz: Tz,
) -> Result<Summary, OpsError> {
    let whole = (
        f.since
            .map(|s| s.div_euclid(QUARTER) + i64::from(s.rem_euclid(QUARTER) != 0)),
        f.until.map(|u| u.div_euclid(QUARTER)),
    );
    let plan = counts_plan(group_by, f).filter(|_| match whole {
        (Some(from), Some(to)) => from < to,
        _ => true,
    });
    let Some(mut q) = plan else {
        if let Some(s) = from_rollups(app, f, group_by, dims, limit, tz).await? {
            return Ok(s);
        }
        return Ok(store::audit::summarise(&app.store, f, dims, Some(limit)).await?);
    };
    (q.from, q.to) = whole;
    let mut merged: HashMap<Vec<Option<String>>, Group> = HashMap::new();
    let mut add = |g: Group| {
        merged
            .entry(g.values.clone())
            .and_modify(|m| {
                m.count += g.count;
                m.first = m.first.min(g.first);
                m.last = m.last.max(g.last);
            })
            .or_insert(g);
    };
    for c in store::audit::count_groups(&app.store, &q).await? {
        let values = group_by
            .iter()
            .map(|g| match g.is_time() {
                true => c.quarter.map(|q| q.to_string()),
                false => c.value.clone(),
            })
            .collect();
        add(Group {
            values,
            count: c.count,
            first: c.first,
            last: c.last,
            ..Group::default()
        });
    }
    // The partial quarters at the ends of the window, from the events.
    let edges = [
        f.since.zip(q.from).map(|(s, from)| (s, from * QUARTER)),
        f.until.zip(q.to).map(|(u, to)| (to * QUARTER, u)),
    ];
    for (since, until) in edges.into_iter().flatten().filter(|(s, u)| s < u) {
        let edge = AuditFilter {
            since: Some(since),
            until: Some(until),
            ..f.clone()
        };
        for g in store::audit::summarise(&app.store, &edge, dims, None)
            .await?
            .groups
        {
            add(g);
        }
    }
    let mut groups: Vec<Group> = merged.into_values().collect();
    // Ties broken by the key as the statements break them (by bytes, none first), so the
    // counts cut the same groups at `limit` as counting the events does.
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last.cmp(&a.last))
            .then_with(|| a.values.cmp(&b.values))
    });
    let total_events = groups.iter().map(|g| g.count).sum();
    let total_groups = groups.len() as i64;
    groups.truncate(limit.max(0) as usize);
    Ok(Summary {
        groups,
        total_events,
        total_groups,
    })
}

/// Events not folded yet above which the roll-ups are not read: the statement finds those by
/// their place in the log, not their time, so a folder far behind (just after an upgrade or a
/// rekey) would make it read more than the window.
pub(super) const MAX_UNFOLDED: i64 = 2 * rollup::FOLD_CHUNK;

/// The groups from the roll-ups, when they can answer (`rollup::answers`) and are current
/// enough; `None` to count the events instead.
async fn from_rollups(
    app: &App,
    f: &AuditFilter,
    group_by: &[GroupBy],
    dims: &[Dim],
    limit: i64,
    tz: Tz,
) -> Result<Option<Summary>, OpsError> {
    let timed = group_by.iter().any(|g| g.is_time());
    // Time alone: hour rows make fewer groups than quarters, so beside another dimension the
    // groups' cap could refuse one way and not the other.
    let Some(shape) = rollup::answers(f, dims).filter(|_| !(timed && group_by.len() > 1)) else {
        return Ok(None);
    };
    let until = f.until.unwrap_or_else(|| app.now().timestamp_micros());
    with_rollups(
        app,
        |seen| plan(f, group_by, tz, until, seen),
        |plan| async move { rollup::summarise(&app.store, f, dims, Some(limit), &plan, shape).await },
    )
    .await
}

/// Which roll-up rows a summary of `f` by `group_by` up to `until` reads, by `seen`; `None` to
/// count the events.
fn plan(
    f: &AuditFilter,
    group_by: &[GroupBy],
    tz: Tz,
    until: i64,
    seen: &rollup::Snapshot,
) -> Option<rollup::Plan> {
    let timed = group_by.iter().any(|g| g.is_time());
    // A window with no start reaches back to the earliest event, which then bounds the hours
    // to check and the quarters the window may hold. (An event dated earlier still, recorded
    // after the snapshot, is counted by the statement all the same; only its hour's offset
    // goes unchecked.)
    let start = f.since.or(seen.earliest);
    // Hours come from hour rows where they are local hours; days from day rows only where
    // local days are UTC's. Windows that could hold more quarters than a time grouping may
    // count go to the events, which refuse them the same way as ever.
    let days = !timed
        || (group_by.contains(&GroupBy::Day)
            && start.is_some_and(|s| {
                // From the start of its UTC day: with no `since`, that day's row is read.
                local_offsets(tz, rollup::floor(s, rollup::DAY), until, 0)
            }));
    rollup::Plan::new(f.since, until, seen, days).filter(|p| {
        !timed
            || start.is_some_and(|s| {
                local_offsets(tz, p.from.max(rollup::floor(s, rollup::HOUR)), p.to, 3600)
                    && (until - s) / QUARTER < MAX_TIME_BUCKETS
            })
    })
}

/// `read` by the plan `plan` makes from the roll-ups' snapshot, when they are current enough:
/// `None` (count the events instead) when the folder is far behind, when `plan` declines, or
/// when the roll-ups were dropped (a rekey) between the plan and the statement, since the plan
/// may name day rows that are gone. What summaries and novelty share.
pub(super) async fn with_rollups<T, Fut>(
    app: &App,
    plan: impl FnOnce(&rollup::Snapshot) -> Option<rollup::Plan>,
    read: impl FnOnce(rollup::Plan) -> Fut,
) -> Result<Option<T>, OpsError>
where
    Fut: std::future::Future<Output = Result<T, store::StoreError>>,
{
    let seen = rollup::snapshot(&app.store).await?;
    if seen.unfolded() > MAX_UNFOLDED {
        return Ok(None);
    }
    let Some(plan) = plan(&seen) else {
        return Ok(None);
    };
    let out = read(plan).await?;
    if rollup::state(&app.store).await?.generation != seen.state.generation {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Whether `tz`'s offset from UTC is a multiple of `unit` seconds (3600: every UTC hour is a
/// local hour; 0: the offset is zero, so UTC days are local days) throughout `[from, to)`
/// (micros). Offsets hold for months between changes, so looking once a day (and at the end)
/// finds any other; windows over ten years are not looked through.
fn local_offsets(tz: Tz, from: i64, to: i64, unit: i32) -> bool {
    use chrono::Offset;
    const DAY: i64 = 86_400_000_000;
    if to <= from || to - from > 3653 * DAY {
        return false;
    }
    let fits = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t).is_some_and(|t| {
            let offset = t.with_timezone(&tz).offset().fix().local_minus_utc();
            match unit {
                0 => offset == 0,
                u => offset % u == 0,
            }
        })
    };
    (from..to).step_by(DAY as usize).all(fits) && fits(to - 1)
}

/// Whether the per-quarter counts can answer: over all tenants, grouped (and filtered) by at
/// most one of action, status, source and role, plus time; nothing else filtered.
fn counts_plan<'a>(group_by: &[GroupBy], f: &'a AuditFilter) -> Option<CountQuery<'a>> {
    if !matches!(f.visible_to, TenantScope::All)
        || !f.actors.is_empty()
        || !f.tenants.is_empty()
        || !f.targets.is_empty()
        || !f.client_ips.is_empty()
    {
        return None;
    }
    let mut filtered = [
        (CountDim::Action, &f.actions),
        (CountDim::Status, &f.statuses),
        (CountDim::Source, &f.sources),
        (CountDim::Role, &f.roles),
    ]
    .into_iter()
    .filter(|(_, values)| !values.is_empty());
    let by_filter = filtered.next();
    if filtered.next().is_some() {
        return None;
    }
    let mut grouped = None;
    for g in group_by.iter().filter(|g| !g.is_time()) {
        let dim = match g {
            GroupBy::Action => CountDim::Action,
            GroupBy::Status => CountDim::Status,
            GroupBy::Source => CountDim::Source,
            GroupBy::Role => CountDim::Role,
            _ => return None,
        };
        if grouped.replace(dim).is_some() {
            return None;
        }
    }
    // Every event is counted once in each dimension; for time alone, read the one with the
    // fewest values (three sources), so the fewest count rows per quarter.
    let dim = grouped
        .or(by_filter.map(|(d, _)| d))
        .unwrap_or(CountDim::Source);
    if by_filter.is_some_and(|(d, _)| d != dim) {
        return None;
    }
    Some(CountQuery {
        dim,
        values: by_filter.map_or(&[][..], |(_, v)| v.as_slice()),
        by_value: grouped.is_some(),
        by_quarter: group_by.iter().any(|g| g.is_time()),
        from: None,
        to: None,
    })
}
