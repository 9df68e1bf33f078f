//! The audit trail: appending events (in a caller's transaction), filtered pages, one event,
//! and grouped counts.

use serde_json::Value;

use super::sql::{Sql, bind_args, nul_free};
use super::{StoreError, Tx, db, micros, on_pool, on_tx};
use crate::domain::audit::AuditEvent;
use crate::domain::tenant::{ALL_TENANTS, TenantScope};

const INSERT_EVENTS: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, \
    role, tenants, action, target_type, target_id, status, reason, source, request_source, \
    client_name, client_version, request_id, client_ip, user_agent, args, before_state, \
    after_state) VALUES ";

/// Most rows in one INSERT: bounds the number of distinct statements the cache must hold.
pub const MAX_ROWS_PER_STATEMENT: usize = 64;

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

fn is_all(tenants: &[String]) -> bool {
    tenants.iter().any(|t| t == ALL_TENANTS)
}

fn opt(q: &mut Sql, v: Option<&str>) {
    match v {
        Some(t) => q.text(t),
        None => q.push("NULL"),
    };
}

/// `INSERT INTO audit_events … VALUES (…), (…)` for `events` (every value bound).
fn push_insert(q: &mut Sql, events: &[AuditEvent]) {
    q.push(INSERT_EVENTS);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        let (args, before, after) = (
            json_text(&e.args),
            json_text(&e.before),
            json_text(&e.after),
        );
        q.push("(")
            .int(micros(e.at))
            .push(", ")
            .text(&e.actor_kind)
            .push(", ");
        opt(q, e.actor_id.as_deref());
        q.push(", ");
        opt(q, e.actor_preview.as_deref());
        q.push(", ");
        opt(q, e.role.as_deref());
        q.push(", ")
            .text(&e.tenants.join(" "))
            .push(", ")
            .text(e.action.as_str())
            .push(", ");
        opt(q, e.target_type.as_deref());
        q.push(", ");
        opt(q, e.target_id.as_deref());
        q.push(", ").text(e.status.as_str()).push(", ");
        opt(q, e.reason.as_deref());
        q.push(", ").text(e.source.as_str());
        for v in [
            e.request_source.as_deref(),
            e.client_name.as_deref(),
            e.client_version.as_deref(),
            e.request_id.as_deref(),
            e.client_ip.as_deref(),
            e.user_agent.as_deref(),
            args.as_deref(),
            before.as_deref(),
            after.as_deref(),
        ] {
            q.push(", ");
            opt(q, v);
        }
        q.push(")");
    }
}

/// The ids of `n` rows inserted by one statement whose last id is `last`: one statement under
/// the SQLite write lock takes consecutive AUTOINCREMENT ids.
fn consecutive(last: i64, n: usize) -> Vec<i64> {
    (last - n as i64 + 1..=last).collect()
}

/// Appends `events` inside `tx` and returns their ids, in order.
pub async fn append(tx: &mut Tx, events: &[AuditEvent]) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut q = Sql::default();
        push_insert(&mut q, chunk);
        match tx {
            Tx::Sqlite(t) => {
                q.anonymous();
                let r = bind_args!(sqlx::query(&q.text), q)
                    .execute(&mut **t)
                    .await
                    .map_err(db)?;
                if r.rows_affected() != chunk.len() as u64 {
                    return Err(StoreError::Corrupt(
                        "audit insert wrote the wrong number of rows".into(),
                    ));
                }
                ids.extend(consecutive(r.last_insert_rowid(), chunk.len()));
            }
            Tx::Postgres(t) => {
                q.push(" RETURNING id");
                let mut got: Vec<i64> = bind_args!(sqlx::query_scalar(&q.text), q)
                    .fetch_all(&mut **t)
                    .await
                    .map_err(db)?;
                // One statement assigns ids in VALUES order.
                got.sort_unstable();
                if got.len() != chunk.len() {
                    return Err(StoreError::Corrupt(
                        "audit insert returned the wrong number of ids".into(),
                    ));
                }
                ids.extend(got);
            }
        }
    }
    append_tenants(tx, &ids, events).await?;
    Ok(ids)
}

/// Tenant rows, for events scoped to named tenants. Events concerning all tenants ("*", most of
/// them) need none: queries test the events' own `tenants` column for that case.
fn tenant_rows(ids: &[i64], events: &[AuditEvent]) -> Vec<Sql> {
    let pairs: Vec<(i64, &str)> = ids
        .iter()
        .zip(events)
        .filter(|(_, e)| !is_all(&e.tenants))
        .flat_map(|(id, e)| e.tenants.iter().map(move |t| (*id, t.as_str())))
        .collect();
    pairs
        .chunks(MAX_ROWS_PER_STATEMENT)
        .map(|chunk| {
            let mut q = Sql::new("INSERT INTO audit_tenants (event_id, tenant) VALUES ");
            for (i, (id, tenant)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(").int(*id).push(", ").text(tenant).push(")");
            }
            q
        })
        .collect()
}

async fn append_tenants(tx: &mut Tx, ids: &[i64], events: &[AuditEvent]) -> Result<(), StoreError> {
    for mut q in tenant_rows(ids, events) {
        if matches!(tx, Tx::Sqlite(_)) {
            q.anonymous();
        }
        on_tx!(tx, c => bind_args!(sqlx::query(&q.text), q).execute(c).await.map(|_| ()).map_err(db))?;
    }
    Ok(())
}

fn opt_text(v: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    v.map(nul_free)
}

/// One event's row, every value bound: the single-row statement the SQLite writer prepares
/// once and runs per event.
const INSERT_ONE: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, \
    role, tenants, action, target_type, target_id, status, reason, source, request_source, \
    client_name, client_version, request_id, client_ip, user_agent, args, before_state, \
    after_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const INSERT_TENANT: &str = "INSERT INTO audit_tenants (event_id, tenant) VALUES (?, ?)";

/// Writes a batch in one IMMEDIATE transaction of its own on a native SQLite connection.
pub fn write_batch_sqlite(
    conn: &mut rusqlite::Connection,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let ids = insert_sqlite(&tx, events)?;
    tx.commit()?;
    Ok(ids)
}

/// Inserts `events` (and their tenant rows) on a native SQLite connection, inside whatever
/// transaction the caller holds, and returns their ids in order: one prepared single-row
/// statement run per event, its values bound straight from the event (no statement text
/// built per batch, no copies). The same rows as `append`.
pub fn insert_sqlite<'a>(
    conn: &rusqlite::Connection,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    let mut insert = conn.prepare_cached(INSERT_ONE)?;
    let mut tenant = conn.prepare_cached(INSERT_TENANT)?;
    for e in events {
        let (args, before, after) = (
            json_text(&e.args),
            json_text(&e.before),
            json_text(&e.after),
        );
        let written = insert.execute(rusqlite::params![
            micros(e.at),
            nul_free(&e.actor_kind),
            opt_text(e.actor_id.as_deref()),
            opt_text(e.actor_preview.as_deref()),
            opt_text(e.role.as_deref()),
            nul_free(&e.tenants.join(" ")),
            e.action.as_str(),
            opt_text(e.target_type.as_deref()),
            opt_text(e.target_id.as_deref()),
            e.status.as_str(),
            opt_text(e.reason.as_deref()),
            e.source.as_str(),
            opt_text(e.request_source.as_deref()),
            opt_text(e.client_name.as_deref()),
            opt_text(e.client_version.as_deref()),
            opt_text(e.request_id.as_deref()),
            opt_text(e.client_ip.as_deref()),
            opt_text(e.user_agent.as_deref()),
            opt_text(args.as_deref()),
            opt_text(before.as_deref()),
            opt_text(after.as_deref()),
        ])?;
        if written != 1 {
            return Err(StoreError::Corrupt(
                "audit insert wrote the wrong number of rows".into(),
            ));
        }
        let id = conn.last_insert_rowid();
        if !is_all(&e.tenants) {
            for t in &e.tenants {
                tenant.execute(rusqlite::params![id, nul_free(t)])?;
            }
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Writes a batch in a transaction of its own (the async writer's path, PostgreSQL). On SQLite, a batch of
/// all-tenant events goes as one script, `BEGIN IMMEDIATE; INSERT …; SELECT last_insert_rowid();
/// COMMIT`: one round trip to the database thread instead of three.
pub async fn write_batch(
    store: &super::Store,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    if let super::Store::Sqlite(pool) = store
        && !events.is_empty()
        && events.len() <= MAX_ROWS_PER_STATEMENT
        && events.iter().all(|e| is_all(&e.tenants))
    {
        let mut q = Sql::new("BEGIN IMMEDIATE; ");
        push_insert(&mut q, events);
        q.push("; SELECT last_insert_rowid(); COMMIT");
        q.anonymous();
        let mut conn = pool.acquire().await.map_err(db)?;
        let result: Result<Vec<i64>, sqlx::Error> = bind_args!(sqlx::query_scalar(&q.text), q)
            .fetch_all(&mut *conn)
            .await;
        return match result.as_deref() {
            Ok([last]) => Ok(consecutive(*last, events.len())),
            _ => {
                // Whatever failed, leave no transaction open on a pooled connection.
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
                Err(match result {
                    Err(e) => db(e),
                    Ok(_) => StoreError::Corrupt("audit batch returned no id".into()),
                })
            }
        };
    }
    let mut tx = store.begin().await?;
    let ids = append(&mut tx, events).await?;
    tx.commit().await?;
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
        // Visible when every tenant of the event is the caller's: never an all-tenant event.
        let mine: Vec<&String> = mine.iter().collect();
        q.push(" AND e.tenants <> ").text(ALL_TENANTS);
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
        q.push(" AND (e.tenants = ").text(ALL_TENANTS);
        q.push(
            " OR EXISTS (SELECT 1 FROM audit_tenants ft WHERE ft.event_id = e.id AND ft.tenant IN ",
        );
        q.text_list(&f.tenants).push("))");
    }
}

/// Where a page ends: the time and id of its last (oldest) event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEnd {
    pub at: i64,
    pub id: i64,
}

/// Newest first (by time, then id: records reach the table in batches, so ids alone do not
/// follow time), strictly after `after` in that order when given; at most `limit` rows.
pub async fn page(
    store: &super::Store,
    f: &AuditFilter,
    after: Option<PageEnd>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    // The page's ids first, then their rows: the filter and the ordering then run on index
    // entries alone (every index ends in (at, id)), and only `limit` full rows are read.
    let mut q = Sql::new(&format!(
        "SELECT {COLUMNS} FROM audit_events e WHERE e.id IN (SELECT e.id FROM audit_events e"
    ));
    push_where(&mut q, f);
    if let Some(end) = after {
        q.push(" AND e.at <= ").int(end.at);
        q.push(" AND (e.at < ").int(end.at);
        q.push(" OR e.id < ").int(end.id).push(")");
    }
    q.push(" ORDER BY e.at DESC, e.id DESC LIMIT ")
        .int(limit)
        .push(") ORDER BY e.at DESC, e.id DESC");
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
    // Only actor groups show a preview; reading it otherwise would cost a table lookup per
    // event where the time index alone answers (e.g. counts by action).
    let preview = if dims.contains(&Dim::Actor) {
        "MAX(e.actor_preview)"
    } else {
        "CAST(NULL AS TEXT)"
    };
    // Window functions run before LIMIT, so the totals cover every group.
    let mut q = Sql::new(&format!(
        "SELECT {}, COUNT(*) AS n, MIN(e.at) AS first_at, MAX(e.at) AS last_at, \
         {preview} AS preview, CAST(SUM(COUNT(*)) OVER () AS BIGINT) AS total_events, \
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
