//! The audit trail: appending events (in a caller's transaction), filtered pages, one event,
//! and grouped counts.

use serde_json::Value;

use super::sql::{Sql, bind_args};
use super::{StoreError, Tx, db, micros, on_pool, on_tx};
use crate::domain::audit::AuditEvent;
use crate::domain::tenant::TenantScope;

const INSERT: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, role, \
    tenants, action, target_type, target_id, status, reason, source, request_source, \
    client_name, client_version, request_id, client_ip, user_agent, args, before_state, \
    after_state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
    $16, $17, $18, $19, $20, $21) RETURNING id";

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

/// Appends `events` inside `tx` and returns their ids, in order.
pub async fn append(tx: &mut Tx, events: &[AuditEvent]) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        let tenants = e.tenants.join(" ");
        let (args, before, after) = (
            json_text(&e.args),
            json_text(&e.before),
            json_text(&e.after),
        );
        let id: i64 = on_tx!(tx, c => sqlx::query_scalar(INSERT)
            .bind(micros(e.at))
            .bind(e.actor_kind.as_str())
            .bind(e.actor_id.as_deref())
            .bind(e.actor_preview.as_deref())
            .bind(e.role.as_deref())
            .bind(tenants.as_str())
            .bind(e.action.as_str())
            .bind(e.target_type.as_deref())
            .bind(e.target_id.as_deref())
            .bind(e.status.as_str())
            .bind(e.reason.as_deref())
            .bind(e.source.as_str())
            .bind(e.request_source.as_deref())
            .bind(e.client_name.as_deref())
            .bind(e.client_version.as_deref())
            .bind(e.request_id.as_deref())
            .bind(e.client_ip.as_deref())
            .bind(e.user_agent.as_deref())
            .bind(args.as_deref())
            .bind(before.as_deref())
            .bind(after.as_deref())
            .fetch_one(c)
            .await
            .map_err(db))?;
        for t in &e.tenants {
            on_tx!(tx, c => sqlx::query("INSERT INTO audit_tenants (event_id, tenant) VALUES ($1, $2)")
                .bind(id)
                .bind(t.as_str())
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db))?;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// A full stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_preview: Option<String>,
    pub role: Option<String>,
    pub tenants: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub source: String,
    pub request_source: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub args: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
}

const COLUMNS: &str = "e.id, e.at, e.actor_kind, e.actor_id, e.actor_preview, e.role, \
    e.tenants, e.action, e.target_type, e.target_id, e.status, e.reason, e.source, \
    e.request_source, e.client_name, e.client_version, e.request_id, e.client_ip, \
    e.user_agent, e.args, e.before_state, e.after_state";

/// Which events a query considers. Every list is OR within itself and AND across lists.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    /// Only events whose every tenant lies within this scope.
    pub visible_to: TenantScope,
    /// Key ids or previews.
    pub actors: Vec<String>,
    pub roles: Vec<String>,
    pub tenants: Vec<String>,
    pub actions: Vec<String>,
    pub targets: Vec<String>,
    pub statuses: Vec<String>,
    pub sources: Vec<String>,
    pub client_ips: Vec<String>,
    /// Inclusive lower and exclusive upper bound, in microseconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl AuditFilter {
    /// Everything the scope may see, no other filter.
    pub fn visible_to(scope: TenantScope) -> Self {
        AuditFilter {
            visible_to: scope,
            actors: vec![],
            roles: vec![],
            tenants: vec![],
            actions: vec![],
            targets: vec![],
            statuses: vec![],
            sources: vec![],
            client_ips: vec![],
            since: None,
            until: None,
        }
    }
}

fn push_where(q: &mut Sql, f: &AuditFilter) {
    q.push(" WHERE 1 = 1");
    if let Some(s) = f.since {
        q.push(" AND e.at >= ").int(s);
    }
    if let Some(u) = f.until {
        q.push(" AND e.at < ").int(u);
    }
    if let TenantScope::Only(mine) = &f.visible_to {
        let mine: Vec<&String> = mine.iter().collect();
        q.push(" AND NOT EXISTS (SELECT 1 FROM audit_tenants vt WHERE vt.event_id = e.id AND vt.tenant NOT IN ");
        q.text_list(&mine).push(")");
    }
    if !f.actors.is_empty() {
        q.push(" AND (e.actor_id IN ").text_list(&f.actors);
        q.push(" OR e.actor_preview IN ")
            .text_list(&f.actors)
            .push(")");
    }
    for (column, values) in [
        ("e.role", &f.roles),
        ("e.action", &f.actions),
        ("e.target_id", &f.targets),
        ("e.status", &f.statuses),
        ("e.source", &f.sources),
        ("e.client_ip", &f.client_ips),
    ] {
        if !values.is_empty() {
            q.push(" AND ").push(column).push(" IN ").text_list(values);
        }
    }
    if !f.tenants.is_empty() {
        // An event scoped to all tenants concerns every tenant.
        let mut wanted = f.tenants.clone();
        wanted.push("*".into());
        q.push(" AND EXISTS (SELECT 1 FROM audit_tenants ft WHERE ft.event_id = e.id AND ft.tenant IN ");
        q.text_list(&wanted).push(")");
    }
}

/// Newest first, strictly before event `before` when given; at most `limit` rows.
pub async fn page(
    store: &super::Store,
    f: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut q = Sql::new(&format!("SELECT {COLUMNS} FROM audit_events e"));
    push_where(&mut q, f);
    if let Some(b) = before {
        q.push(" AND e.id < ").int(b);
    }
    q.push(" ORDER BY e.id DESC LIMIT ").int(limit);
    on_pool!(store, p => bind_args!(sqlx::query_as(&q.text), q).fetch_all(p).await.map_err(db))
}

pub async fn get(
    store: &super::Store,
    id: i64,
    visible_to: &TenantScope,
) -> Result<Option<AuditRow>, StoreError> {
    let f = AuditFilter::visible_to(visible_to.clone());
    let mut q = Sql::new(&format!("SELECT {COLUMNS} FROM audit_events e"));
    push_where(&mut q, &f);
    q.push(" AND e.id = ").int(id);
    on_pool!(store, p => bind_args!(sqlx::query_as(&q.text), q).fetch_optional(p).await.map_err(db))
}

/// A dimension events can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Actor,
    Action,
    Status,
    Source,
    Role,
    Target,
    ClientIp,
    /// 15-minute UTC buckets (`at / 900 s`), merged into local hours or days by the caller.
    Quarter,
}

impl Dim {
    fn exprs(self) -> &'static [&'static str] {
        match self {
            Dim::Actor => &["e.actor_kind", "e.actor_id"],
            Dim::Action => &["e.action"],
            Dim::Status => &["e.status"],
            Dim::Source => &["e.source"],
            Dim::Role => &["e.role"],
            Dim::Target => &["e.target_type", "e.target_id"],
            Dim::ClientIp => &["e.client_ip"],
            Dim::Quarter => &["e.at / 900000000"],
        }
    }
}

/// One group: its key values (as text, in dimension order), count, first and last time, and
/// the most recent preview seen for actor groups.
#[derive(Debug, Clone)]
pub struct Group {
    pub values: Vec<Option<String>>,
    pub count: i64,
    pub first: i64,
    pub last: i64,
    pub preview: Option<String>,
}

/// Grouped counts, plus totals over every group (not only those returned).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub groups: Vec<Group>,
    pub total_events: i64,
    pub total_groups: i64,
}

/// Counts grouped by `dims`, largest first, at most `limit` groups when given.
pub async fn summarise(
    store: &super::Store,
    f: &AuditFilter,
    dims: &[Dim],
    limit: Option<i64>,
) -> Result<Summary, StoreError> {
    let exprs: Vec<&str> = dims
        .iter()
        .flat_map(|d| d.exprs().iter().copied())
        .collect();
    // Every grouped value is read back as text so one row type serves all dimensions.
    let select: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("CAST({e} AS TEXT) AS g{i}"))
        .collect();
    // Window functions run before LIMIT, so the totals cover every group.
    let mut q = Sql::new(&format!(
        "SELECT {}, COUNT(*) AS n, MIN(e.at) AS first_at, MAX(e.at) AS last_at, \
         MAX(e.actor_preview) AS preview, CAST(SUM(COUNT(*)) OVER () AS BIGINT) AS total_events, \
         CAST(COUNT(*) OVER () AS BIGINT) AS total_groups FROM audit_events e",
        select.join(", ")
    ));
    push_where(&mut q, f);
    q.push(" GROUP BY ").push(&exprs.join(", "));
    q.push(" ORDER BY n DESC, last_at DESC");
    if let Some(l) = limit {
        q.push(" LIMIT ").int(l);
    }
    let width = exprs.len();
    let rows: Vec<(Group, i64, i64)> = on_pool!(store, p => {
        let rows = bind_args!(sqlx::query(&q.text), q).fetch_all(p).await.map_err(db)?;
        rows.iter().map(|r| read_group(r, width)).collect::<Result<Vec<_>, _>>().map_err(db)?
    });
    let mut out = Summary::default();
    for (group, total_events, total_groups) in rows {
        out.total_events = total_events;
        out.total_groups = total_groups;
        out.groups.push(group);
    }
    Ok(out)
}

fn read_group<R: sqlx::Row>(r: &R, width: usize) -> Result<(Group, i64, i64), sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    for<'c> Option<String>: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> i64: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
{
    let mut values = Vec::with_capacity(width);
    for i in 0..width {
        values.push(r.try_get::<Option<String>, usize>(i)?);
    }
    let group = Group {
        values,
        count: r.try_get("n")?,
        first: r.try_get("first_at")?,
        last: r.try_get("last_at")?,
        preview: r.try_get("preview")?,
    };
    Ok((
        group,
        r.try_get("total_events")?,
        r.try_get("total_groups")?,
    ))
}
