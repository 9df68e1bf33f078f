//! Reading the audit trail: filtered pages, one event, grouped counts.

use super::grouping::Grouper;
pub use super::grouping::{Group, Summary};
use crate::domain::at_rest::Place;
use crate::domain::audit::{Source, Status};
use crate::domain::tenant::{ALL_TENANTS, TenantScope, validate_tenant};
use crate::store::sql::{Dialect, Sql, bind_args};
use crate::store::{Db, Seal, StoreError, db, on_pool};

/// A row struct that both drivers read: sqlx's `FromRow`, and `from_sqlite` for rusqlite's rows
/// (each field from the column of its name, as `FromRow` reads it).
macro_rules! row_struct {
    ($(#[$meta:meta])* pub struct $row:ident { $(pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, sqlx::FromRow)]
        pub struct $row { $(pub $field: $ty,)* }

        impl FromSqlite for $row {
            fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<$row> {
                Ok($row { $($field: r.get(stringify!($field))?,)* })
            }
        }
    };
}

/// A row rusqlite's connections read (see `sqlite_reads`).
pub(super) trait FromSqlite: Sized {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// Every row of `q`: on a SQLite file from its read connections (no per-row hand-over between
/// threads), otherwise from the pool.
pub(super) async fn all_rows<T>(store: &crate::store::Store, q: Sql) -> Result<Vec<T>, StoreError>
where
    T: FromSqlite
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
        + 'static,
{
    match store.sqlite_reads() {
        Some(reads) => reads.all(q, T::from_sqlite).await,
        None => {
            on_pool!(store, p => bind_args!(sqlx::query_as(&q.text), q).fetch_all(p).await.map_err(db))
        }
    }
}

row_struct! {
    /// A full stored event.
    pub struct AuditRow {
        pub id: i64,
        pub at: i64,
        pub actor_kind: String,
        pub actor_id: Option<String>,
        pub actor_name: Option<String>,
        pub actor_preview: Option<String>,
        pub role: Option<String>,
        pub tenants: String,
        pub action: String,
        pub target_type: Option<String>,
        pub target_id: Option<String>,
        pub target_name: Option<String>,
        pub status: String,
        pub reason: Option<String>,
        pub source: String,
        pub request_source: Option<String>,
        pub client_name: Option<String>,
        pub client_version: Option<String>,
        pub request_id: Option<String>,
        pub client_ip: Option<String>,
        pub user_agent: Option<String>,
        pub channel: Option<String>,
        pub args: Option<String>,
        pub before_state: Option<String>,
        pub after_state: Option<String>,
    }
}

const COLUMNS: &str = "e.id, e.at, e.actor_kind, e.actor_id, e.actor_name, e.actor_preview, \
    e.role, e.tenants, e.action, e.target_type, e.target_id, e.target_name, e.status, e.reason, e.source, \
    e.request_source, e.client_name, e.client_version, e.request_id, e.client_ip, \
    e.user_agent, e.channel, e.args, e.before_state, e.after_state";

row_struct! {
    /// What a page of the trail shows of each event (the full event is one `get` away).
    pub struct BriefRow {
        pub id: i64,
        pub at: i64,
        pub actor_kind: String,
        pub actor_id: Option<String>,
        pub actor_name: Option<String>,
        pub actor_preview: Option<String>,
        pub role: Option<String>,
        pub action: String,
        pub target_type: Option<String>,
        pub target_id: Option<String>,
        pub target_name: Option<String>,
        pub status: String,
        pub source: String,
    }
}

const BRIEF_COLUMNS: &str = "e.id, e.at, e.actor_kind, e.actor_id, e.actor_name, \
    e.actor_preview, e.role, e.action, e.target_type, e.target_id, e.target_name, e.status, \
    e.source";

/// Which events a query considers. Every list is OR within itself and AND across lists.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    /// Only events whose every tenant lies within this scope.
    pub visible_to: TenantScope,
    /// Key or operator ids, key previews, usernames or key names.
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
    /// The ids of the keys named by `actors`, once looked up (`with_named_keys`). `None`
    /// leaves the lookup to the query itself, which costs the query its actor index.
    pub named_keys: Option<Vec<String>>,
}

impl AuditFilter {
    /// Whether any list names values to match (beyond the window and the caller's scope).
    pub fn names_values(&self) -> bool {
        let AuditFilter {
            actors,
            roles,
            tenants,
            actions,
            targets,
            statuses,
            sources,
            client_ips,
            visible_to: _,
            since: _,
            until: _,
            named_keys: _,
        } = self;
        [
            actors, roles, tenants, actions, targets, statuses, sources, client_ips,
        ]
        .iter()
        .any(|l| !l.is_empty())
    }

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
            named_keys: None,
        }
    }
}

/// Most key ids a filter's names are replaced by; past it the names are matched in the query.
const MAX_NAMED_KEYS: usize = 1000;

/// `f` with the keys its actors name looked up (when it names actors and they are not looked
/// up yet). Each query looks them up afresh, just before it runs: names never change and keys
/// are never deleted, so the only difference from matching in the query is a key created
/// between the two, whose events (all newer than the lookup) the query then leaves out.
///
/// Why: the actor filter then reads one index range in time order, `actor_id IN (…)`. Matched
/// in the query instead, an `OR` across the literal ids and the names' subquery led SQLite to
/// walk the whole window's time index and test each event (a page for an actor with a hundred
/// events a day read every event of the day: 24 ms against 2.1 ms for the page on a million
/// events).
pub async fn with_named_keys<'a>(
    store: &crate::store::Store,
    f: &'a AuditFilter,
) -> Result<std::borrow::Cow<'a, AuditFilter>, StoreError> {
    let (names, _) = actor_values(f);
    if names.is_empty() || f.named_keys.is_some() {
        return Ok(std::borrow::Cow::Borrowed(f));
    }
    let mut q = Sql::new("SELECT id FROM api_keys WHERE name IN ");
    q.text_list(&names);
    q.limit(MAX_NAMED_KEYS as i64 + 1);
    let ids: Vec<String> = on_pool!(store, p => bind_args!(sqlx::query_scalar(&q.text), q).fetch_all(p).await.map_err(db))?;
    if ids.len() > MAX_NAMED_KEYS {
        // A name given to more keys than a statement should bind: matched in the query.
        return Ok(std::borrow::Cow::Borrowed(f));
    }
    Ok(std::borrow::Cow::Owned(AuditFilter {
        named_keys: Some(ids),
        ..f.clone()
    }))
}

/// The rows a WHERE clause is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rows {
    /// `audit_events`: its time, and its tenant rows for a tenant-scoped caller.
    Events,
    /// The roll-up tables: no time of their own, and tenants by their stored text alone, so
    /// only for callers with at most `MAX_SUBSET_TENANTS` tenants.
    Rollup,
}

pub(super) fn push_where(q: &mut Sql, f: &AuditFilter, seal: &Seal) {
    push_where_in(q, f, seal, Rows::Events)
}

/// Whether `push_where_in` can express `f`'s tenant scope on roll-up rows.
pub(super) fn rollup_scope(f: &AuditFilter) -> bool {
    match &f.visible_to {
        TenantScope::All => true,
        TenantScope::Only(mine) => mine.len() <= MAX_SUBSET_TENANTS,
    }
}

/// The columns an actor filter's values are tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActorColumns {
    Both,
    Ids,
    Previews,
}

/// A value is tested only against the column it can match: ids (key_…, op_…) never start
/// with "kw_"; previews are "kw_…" for keys and the lowercase username for operators, so a
/// lowercase value that is not "kw_…" (a key name, a username) is tried as both.
fn actor_values(f: &AuditFilter) -> (Vec<&String>, Vec<&String>) {
    let ids = f.actors.iter().filter(|a| !a.starts_with("kw_")).collect();
    let previews = f
        .actors
        .iter()
        .filter(|a| a.starts_with("kw_") || !a.bytes().any(|b| b.is_ascii_uppercase()))
        .collect();
    (ids, previews)
}

pub(super) fn push_where_in(q: &mut Sql, f: &AuditFilter, seal: &Seal, rows: Rows) {
    push_where_actors(q, f, seal, rows, ActorColumns::Both)
}

fn push_where_actors(q: &mut Sql, f: &AuditFilter, seal: &Seal, rows: Rows, only: ActorColumns) {
    q.push(" WHERE 1 = 1");
    if rows == Rows::Events {
        if let Some(s) = f.since {
            q.push(" AND e.at >= ").int(s);
        }
        if let Some(u) = f.until {
            q.push(" AND e.at < ").int(u);
        }
    }
    // A key id needs one index range, already in page order. Key names (never "kw_…") are
    // read as the ids of the keys so named: names do not change, so that is the name at the
    // time of the event, through the same index.
    let (mut ids, mut previews) = actor_values(f);
    match only {
        ActorColumns::Both => {}
        ActorColumns::Ids => previews.clear(),
        ActorColumns::Previews => ids.clear(),
    }
    // The actor filter is one index range (ids with their names looked up, or previews alone).
    let actor_range = if ids.is_empty() {
        !previews.is_empty()
    } else {
        previews.is_empty() && f.named_keys.is_some()
    };
    if let TenantScope::Only(mine) = &f.visible_to {
        // Visible when every tenant of the event is the caller's: never an all-tenant event.
        let mine: Vec<&String> = mine.iter().collect();
        q.push(" AND e.tenants <> ").constant(ALL_TENANTS);
        // Stored tenants are sorted and space-joined, so for a caller with few tenants the
        // events it may see carry one of a few exact texts: the tenants index then yields them
        // in time order, instead of every event in the window being tested one by one. The
        // test below stays for events, so a row stored otherwise is hidden, never shown; a
        // roll-up row carries the text alone, and a caller with more tenants never reads them.
        //
        // Given an actor's range as well, the events are read by that, and `|| ''` keeps the
        // tenants index out of the choice (the test stays the same). A tenant-scoped key's
        // events are its tenants', so the actor's window is mostly what the caller may see,
        // where the tenant's window holds every actor's: SQLite chose the latter, 10 ms for a
        // key with 6 such events in a week on a million, 0.3 ms by the actor. The cost: an
        // actor whose events the caller mostly may not see (an all-tenant key) has its window
        // read to find none, bounded by that actor's events as the other way is by the
        // tenant's.
        if mine.len() <= MAX_SUBSET_TENANTS {
            let column = if actor_range && rows == Rows::Events {
                " AND (e.tenants || '')"
            } else {
                " AND e.tenants"
            };
            q.push(column).is_in(&subsets(&mine));
        } else if rows == Rows::Rollup {
            q.push(" AND 1 = 0");
        }
        if rows == Rows::Events {
            q.push(" AND NOT EXISTS (SELECT 1 FROM audit_tenants vt WHERE vt.event_id = e.id AND vt.tenant NOT IN ");
            q.text_list(&mine).push(")");
        }
    }
    if !f.actors.is_empty() {
        q.push(" AND (");
        if !ids.is_empty() {
            match &f.named_keys {
                // One list, so one index range per value (see `with_named_keys`).
                Some(named) => {
                    let mut all: Vec<&String> = ids.clone();
                    all.extend(named.iter().filter(|n| !ids.contains(n)));
                    q.push("e.actor_id").is_in(&all);
                }
                None => {
                    q.push("e.actor_id").is_in(&ids);
                    q.push(" OR e.actor_id IN (SELECT nk.id FROM api_keys nk WHERE nk.name IN ");
                    q.text_list(&ids).push(")");
                }
            }
        }
        if !ids.is_empty() && !previews.is_empty() {
            q.push(" OR ");
        }
        if !previews.is_empty() {
            q.push("e.actor_preview").is_in(&previews);
        }
        q.push(")");
    }
    // Client IPs are stored sealed for equality: compare sealed with sealed.
    let client_ips: Vec<String> = f
        .client_ips
        .iter()
        .map(|ip| seal.eq(Place::AuditClientIp, ip).into_owned())
        .collect();
    // Denials, failures and errors are indexed apart from the successes that make up most of
    // the trail; saying so lets both databases use that partial index.
    let success = Status::Success.as_str();
    if !f.statuses.is_empty() && f.statuses.iter().all(|s| s != success) {
        q.push(" AND e.status <> ").constant(success);
    }
    // Likewise calls from the command line and over stdio, apart from the HTTP calls.
    let http = Source::Http.as_str();
    if !f.sources.is_empty() && f.sources.iter().all(|s| s != http) {
        q.push(" AND e.source <> ").constant(http);
    }
    for (column, values) in [
        ("e.role", &f.roles),
        ("e.action", &f.actions),
        ("e.target_id", &f.targets),
        ("e.status", &f.statuses),
        ("e.source", &f.sources),
        ("e.client_ip", &client_ips),
    ] {
        if !values.is_empty() {
            q.push(" AND ").push(column).is_in(values);
        }
    }
    if !f.tenants.is_empty() {
        // An event scoped to all tenants concerns every tenant; another names the tenant in its
        // own stored text (space-joined valid names, so a valid name with its wildcards escaped
        // matches only itself): tested on the row itself, with no lookup per event.
        // The pattern stays bound (it is the caller's), so SQLite prepares this statement again
        // at each execution: its LIKE optimisation reads the bound pattern.
        q.push(" AND (e.tenants = ").constant(ALL_TENANTS);
        for t in f.tenants.iter().filter(|t| validate_tenant(t).is_ok()) {
            q.push(" OR ' ' || e.tenants || ' ' LIKE ")
                .text(&format!("% {} %", like_escaped(t)))
                .push(" ESCAPE '!'");
        }
        q.push(")");
    }
}

/// Callers with at most this many tenants match events by their exact tenants text (at most
/// 2^4 - 1 = 15 texts).
const MAX_SUBSET_TENANTS: usize = 4;

/// Every non-empty subset of `sorted`, each joined by spaces in order: the texts an event's
/// tenants within them can be stored as.
fn subsets(sorted: &[&String]) -> Vec<String> {
    (1..1usize << sorted.len())
        .map(|mask| {
            sorted
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `text` with LIKE's wildcards (and the escape character) escaped by `!`: a character that
/// reads the same in every string-literal mode, where a backslash does not on PostgreSQL.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out
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
    store: &crate::store::Store,
    f: &AuditFilter,
    after: Option<PageEnd>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let f = with_named_keys(store, f).await?;
    let q = page_sql(COLUMNS, &f, after, limit, &store.seal);
    let rows: Vec<AuditRow> = all_rows(store, q).await?;
    rows.into_iter().map(|r| r.opened(&store.seal)).collect()
}

/// The same page as `page`, each event in brief (what `audit_query` shows).
pub async fn briefs(
    store: &crate::store::Store,
    f: &AuditFilter,
    after: Option<PageEnd>,
    limit: i64,
) -> Result<Vec<BriefRow>, StoreError> {
    let f = with_named_keys(store, f).await?;
    let q = page_sql(BRIEF_COLUMNS, &f, after, limit, &store.seal);
    all_rows(store, q).await
}

fn page_sql(
    columns: &str,
    f: &AuditFilter,
    after: Option<PageEnd>,
    limit: i64,
    seal: &Seal,
) -> Sql {
    // The page's ids first, then their rows: the filter and the ordering then run on index
    // entries alone (every index carries the id, most right after the time), and only `limit`
    // rows are read.
    let mut q = Sql::new(&format!(
        "SELECT {columns} FROM audit_events e WHERE e.id IN ("
    ));
    let page_ids = |q: &mut Sql, only: ActorColumns| {
        q.push("SELECT e.id FROM audit_events e");
        push_where_actors(q, f, seal, Rows::Events, only);
        if let Some(end) = after {
            q.push(" AND e.at <= ").int(end.at);
            q.push(" AND (e.at < ").int(end.at);
            q.push(" OR e.id < ").int(end.id).push(")");
        }
        q.push(" ORDER BY e.at DESC, e.id DESC");
        page_limit(q, f, limit);
    };
    let (by_id, by_preview) = actor_values(f);
    if by_id.is_empty() || by_preview.is_empty() {
        page_ids(&mut q, ActorColumns::Both);
        q.push(") ORDER BY e.at DESC, e.id DESC");
    } else {
        // A value that may be an id or a preview (a lowercase key name, a username): the
        // page of each column's matches, by that column's index, then the newest of both.
        // As one `OR`, SQLite walked the window's time index instead (28.6 ms for a day's
        // page of an actor with a hundred events a day, on a million; 0.35 ms this way, in
        // the SQLite 3.51 shell).
        q.push("SELECT id FROM (");
        page_ids(&mut q, ActorColumns::Ids);
        q.push(") by_id UNION ALL SELECT id FROM (");
        page_ids(&mut q, ActorColumns::Previews);
        q.push(") by_preview) ORDER BY e.at DESC, e.id DESC");
        page_limit(&mut q, f, limit);
    }
    q
}

/// A page's `LIMIT`: written into the statement when `f` filters by nothing but its window and
/// the caller's tenants, bound otherwise. Written, PostgreSQL keeps one generic plan for the
/// statement after five executions (see `Sql::limit`), which for these pages is the plan every
/// value gets: the time index, or the tenants index for a tenant-scoped caller. Under a filter
/// the value chooses the index (a rare source by its own index, a common one by the tenants'):
/// a tenant caller's page under a rare source took 1.7–2.1 ms under the generic plan made after
/// five pages of a common one, and 0.6 ms planned for itself. So each filtered page is planned
/// for its values, as a bound `LIMIT` makes PostgreSQL do. Both are tested on PostgreSQL's own
/// counts of generic and custom plans (`tests/it/audit_plans.rs`).
fn page_limit(q: &mut Sql, f: &AuditFilter, limit: i64) {
    if f.names_values() {
        q.push(" LIMIT ").int(limit);
    } else {
        q.limit(limit);
    }
}

pub async fn get(
    store: &crate::store::Store,
    id: i64,
    visible_to: &TenantScope,
) -> Result<Option<AuditRow>, StoreError> {
    let f = AuditFilter::visible_to(visible_to.clone());
    let mut q = Sql::new(&format!("SELECT {COLUMNS} FROM audit_events e"));
    push_where(&mut q, &f, &store.seal);
    q.push(" AND e.id = ").int(id);
    let row: Option<AuditRow> = on_pool!(store, p => bind_args!(sqlx::query_as(&q.text), q).fetch_optional(p).await.map_err(db))?;
    row.map(|r| r.opened(&store.seal)).transpose()
}

impl AuditRow {
    /// The row with its sealed columns opened.
    fn opened(mut self, seal: &Seal) -> Result<AuditRow, StoreError> {
        seal.open_in(Place::AuditReason, &mut self.reason)?;
        seal.open_in(Place::AuditClientIp, &mut self.client_ip)?;
        seal.open_in(Place::AuditUserAgent, &mut self.user_agent)?;
        seal.open_in(Place::AuditArgs, &mut self.args)?;
        seal.open_in(Place::AuditBefore, &mut self.before_state)?;
        seal.open_in(Place::AuditAfter, &mut self.after_state)?;
        Ok(self)
    }
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
    pub(super) fn exprs(self) -> &'static [&'static str] {
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

/// Counts grouped by `dims`, largest first, at most `limit` groups when given.
pub async fn summarise(
    store: &crate::store::Store,
    f: &AuditFilter,
    dims: &[Dim],
    limit: Option<i64>,
) -> Result<Summary, StoreError> {
    let f = with_named_keys(store, f).await?;
    let q = summarise_sql(store, &f, dims, limit);
    let scans = Scans::for_summary(&f, dims);
    run_summary(store, q, dims, scans).await
}

/// How PostgreSQL plans a statement: as it chooses, or with one kind of scan off for that
/// statement alone (`SET LOCAL`, in a transaction of its own). SQLite ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scans {
    Any,
    /// Plain index scans off, and with them index-only scans.
    NoIndexScan,
    NoBitmapScan,
}

impl Scans {
    /// For a summary of `f` by `dims` counted from the events. Under an actor or an address,
    /// for an all-tenant caller, PostgreSQL (seeing the window's events lie on disk in time
    /// order) walked the time index and tested every event of the window: 80 ms for a common
    /// address over a week of a million events. With index scans off, it read that column's
    /// own index as a bitmap, in disk order: 30 ms. Not for a tenant-scoped caller, whose
    /// tenants that index carries, so walking it tests them before reading an event. Nor where
    /// that index may answer alone, judged by the grouping and the actor filter only (by time
    /// alone; by address under addresses alone): index-only scans go off with index scans,
    /// and a common actor's week by hour took 22 ms against 6–9, a common address's by
    /// address 14–21 ms against 4.
    fn for_summary(f: &AuditFilter, dims: &[Dim]) -> Scans {
        let index_alone =
            dims == [Dim::Quarter] || (dims == [Dim::ClientIp] && f.actors.is_empty());
        let walks_time = matches!(f.visible_to, TenantScope::All)
            && !(f.actors.is_empty() && f.client_ips.is_empty())
            && !index_alone;
        if walks_time {
            Scans::NoIndexScan
        } else {
            Scans::Any
        }
    }

    /// The transaction's first message: `BEGIN` and the setting.
    fn begin(self) -> Option<&'static str> {
        match self {
            Scans::Any => None,
            Scans::NoIndexScan => Some("BEGIN; SET LOCAL enable_indexscan = off"),
            Scans::NoBitmapScan => Some("BEGIN; SET LOCAL enable_bitmapscan = off"),
        }
    }
}

/// `q`'s rows on PostgreSQL, planned with `scans`: with a setting, two round trips more than
/// the statement alone (`BEGIN` with the setting, and `COMMIT`).
pub(super) async fn pg_rows(
    p: &sqlx::PgPool,
    q: &Sql,
    scans: Scans,
) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
    let Some(begin) = scans.begin() else {
        return bind_args!(sqlx::query(&q.text), q)
            .fetch_all(p)
            .await
            .map_err(db);
    };
    let mut tx = crate::store::begin_pg(p, Some(begin)).await?;
    let rows = bind_args!(sqlx::query(&q.text), q)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(rows)
}

/// Runs a summary `grouped` built, and opens the grouped client IPs. On a SQLite file, through
/// its read connections (as pages are), and the rows of a summary not by time grouped as they
/// are read (`grouping`) unless they hold too many groups; otherwise, and then, the database
/// groups them.
pub(super) async fn run_summary(
    store: &crate::store::Store,
    q: GroupedSql,
    dims: &[Dim],
    scans: Scans,
) -> Result<Summary, StoreError> {
    let width = dims.iter().map(|d| d.exprs().len()).sum();
    // Time buckets are few, with short keys: grouping them here made a week by hour under a
    // role filter slower (about 2.5 ms grouped by SQLite, 5.7–8.7 ms here), so SQLite does.
    let timed = dims.contains(&Dim::Quarter);
    let here = match store.sqlite_reads().filter(|_| !timed) {
        Some(reads) => reads
            .fold(q.rows, Grouper::new(width), |g, r| g.add(r))
            .await?
            .finish(q.limit)
            .transpose()
            .map_err(StoreError::from)?,
        None => None,
    };
    if let Some(summary) = here {
        return open_addresses(store, summary, dims);
    }
    let rows: Vec<(Group, i64, i64)> = match (store.sqlite_reads(), &store.db) {
        (Some(reads), _) => {
            reads
                .all(q.grouped, move |r| group_from_sqlite(r, width))
                .await?
        }
        (None, Db::Postgres(p)) => pg_rows(p, &q.grouped, scans)
            .await?
            .iter()
            .map(|r| read_group(r, width))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?,
        (None, Db::Sqlite(p)) => {
            let q = q.grouped;
            let rows = bind_args!(sqlx::query(&q.text), q)
                .fetch_all(p)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| read_group(r, width))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
        }
    };
    let mut out = Summary::default();
    for (group, total_events, total_groups) in rows {
        out.total_events = total_events;
        out.total_groups = total_groups;
        out.groups.push(group);
    }
    open_addresses(store, out, dims)
}

/// `read_group` for rusqlite's rows.
fn group_from_sqlite(r: &rusqlite::Row<'_>, width: usize) -> rusqlite::Result<(Group, i64, i64)> {
    let group = Group {
        values: (0..width).map(|i| r.get(i)).collect::<Result<_, _>>()?,
        count: r.get("n")?,
        first: r.get("first_at")?,
        last: r.get("last_at")?,
        preview: r.get("preview")?,
        actor_name: r.get("actor_name")?,
        target_name: r.get("target_name")?,
    };
    Ok((group, r.get("total_events")?, r.get("total_groups")?))
}

/// `out` with its grouped client IPs opened.
fn open_addresses(
    store: &crate::store::Store,
    mut out: Summary,
    dims: &[Dim],
) -> Result<Summary, StoreError> {
    // Grouped client IPs are sealed values: open them where they sit in the key.
    let mut at = 0;
    let mut ip_at = None;
    for d in dims {
        if *d == Dim::ClientIp {
            ip_at = Some(at);
        }
        at += d.exprs().len();
    }
    if let Some(i) = ip_at {
        for group in &mut out.groups {
            if let Some(v) = group.values.get_mut(i) {
                store.seal.open_in(Place::AuditClientIp, v)?;
            }
        }
    }
    Ok(out)
}

fn summarise_sql(
    store: &crate::store::Store,
    f: &AuditFilter,
    dims: &[Dim],
    limit: Option<i64>,
) -> GroupedSql {
    grouped(store.dialect(), dims, Rows::Events, limit, |q| {
        q.push("audit_events e");
        push_where(q, f, &store.seal);
    })
}

/// One summary as two statements over the same rows: `grouped`, grouped by the database, and
/// `rows`, the rows themselves for `grouping::Grouper` (the key values as text, `n`, `first_at`,
/// `last_at`, `preview`, `actor_name`, `target_name`), with the `limit` it applies.
pub(super) struct GroupedSql {
    pub grouped: Sql,
    pub rows: Sql,
    pub limit: Option<i64>,
}

/// `SELECT … FROM <from> GROUP BY … ORDER BY … LIMIT`: groups by `dims`, largest first, with
/// first and last time, names, and totals over every group. `rows` says what is counted:
/// events (one each) or roll-up rows (`n`, `first_at`, `last_at` each); `from` writes the
/// FROM clause's rows, named `e`, and their WHERE. With the same rows ungrouped.
pub(super) fn grouped(
    dialect: Dialect,
    dims: &[Dim],
    rows: Rows,
    limit: Option<i64>,
    from: impl FnOnce(&mut Sql),
) -> GroupedSql {
    let exprs: Vec<&str> = dims
        .iter()
        .flat_map(|d| d.exprs().iter().copied())
        .collect();
    // Groups are ordered, and names compared, as SQLite compares text (`Dialect`), so that at
    // a tie both databases keep the same groups, and name them the same.
    let (collate, nulls) = (dialect.bytewise(), dialect.nulls_first());
    // Every grouped value is read back as text so one row type serves all dimensions.
    let select: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("CAST({e} AS TEXT){collate} AS g{i}"))
        .collect();
    // Only actor groups show a preview and a name, only target groups a name; reading them
    // otherwise would cost a table lookup per event where the time index alone answers (e.g.
    // counts by action).
    let named = |dim, column: &str| match dims.contains(&dim) {
        true => (format!("MAX({column}{collate})"), column.to_owned()),
        false => ("CAST(NULL AS TEXT)".to_owned(), "NULL".to_owned()),
    };
    let (preview, actor_name, target_name) = (
        named(Dim::Actor, "e.actor_preview"),
        named(Dim::Actor, "e.actor_name"),
        named(Dim::Target, "e.target_name"),
    );
    let ((n, first, last), (row_n, row_first, row_last)) = match rows {
        Rows::Events => (
            ("COUNT(*)".to_owned(), "MIN(e.at)", "MAX(e.at)"),
            ("1", "e.at", "e.at"),
        ),
        Rows::Rollup => (
            (
                dialect.sum_counts("e.n"),
                "MIN(e.first_at)",
                "MAX(e.last_at)",
            ),
            ("e.n", "e.first_at", "e.last_at"),
        ),
    };
    let total = dialect.sum_counts(&n);
    let mut body = Sql::default();
    from(&mut body);
    // Window functions run before LIMIT, so the totals cover every group.
    let mut q = Sql::new(&format!(
        "SELECT {}, CAST({n} AS BIGINT) AS n, {first} AS first_at, {last} AS last_at, \
         {} AS preview, {} AS actor_name, {} AS target_name, \
         CAST({total} OVER () AS BIGINT) AS total_events, \
         CAST(COUNT(*) OVER () AS BIGINT) AS total_groups FROM {}",
        select.join(", "),
        preview.0,
        actor_name.0,
        target_name.0,
        body.text
    ));
    let ungrouped = Sql {
        text: format!(
            "SELECT {}, {row_n} AS n, {row_first} AS first_at, {row_last} AS last_at, \
             {} AS preview, {} AS actor_name, {} AS target_name FROM {}",
            select.join(", "),
            preview.1,
            actor_name.1,
            target_name.1,
            body.text
        ),
        args: body.args.clone(),
    };
    // The body's values come first in both, numbered as the body numbered them.
    q.args = body.args;
    // By the text values selected, not the bare columns: SQLite would otherwise walk a whole
    // index in the grouped column's order (to skip a sort) rather than the window's range.
    let keys: Vec<String> = (0..exprs.len()).map(|i| format!("g{i}")).collect();
    q.push(" GROUP BY ").push(&keys.join(", "));
    // Ties broken by the key, so every plan (and both databases) cut the same groups at
    // `limit`.
    let order: Vec<String> = keys.iter().map(|k| format!("{k}{nulls}")).collect();
    q.push(" ORDER BY n DESC, last_at DESC, ")
        .push(&order.join(", "));
    // Bound, so that PostgreSQL plans each summary for its window and values. A generic plan
    // (which a written LIMIT allows) estimates a two-sided window at 0.5% of the rows: a
    // summary of 16,566 events, estimated at 24, took 21–22 ms against 14–18 ms planned for
    // its own values.
    if let Some(l) = limit {
        q.push(" LIMIT ").int(l);
    }
    GroupedSql {
        grouped: q,
        rows: ungrouped,
        limit,
    }
}

/// The statements behind `page` and `summarise`, for `explain`.
pub enum Statement<'a> {
    Page {
        filter: &'a AuditFilter,
        limit: i64,
    },
    Summary {
        filter: &'a AuditFilter,
        dims: &'a [Dim],
        limit: Option<i64>,
    },
}

/// How the database runs a statement (for benchmarks and for an operator chasing a slow
/// question): `EXPLAIN QUERY PLAN` as an indented tree on SQLite; `EXPLAIN (ANALYZE,
/// BUFFERS)` on PostgreSQL, which runs it once to show actual rows and times. With the
/// statement's text first.
pub async fn explain(
    store: &crate::store::Store,
    statement: &Statement<'_>,
) -> Result<Vec<String>, StoreError> {
    let q = match statement {
        Statement::Page { filter, limit } => {
            let filter = with_named_keys(store, filter).await?;
            page_sql(BRIEF_COLUMNS, &filter, None, *limit, &store.seal)
        }
        Statement::Summary {
            filter,
            dims,
            limit,
        } => {
            let filter = with_named_keys(store, filter).await?;
            let q = summarise_sql(store, &filter, dims, *limit);
            // The statement that runs: the rows alone where keyward groups them.
            match store.sqlite_reads() {
                Some(_) if !dims.contains(&Dim::Quarter) => q.rows,
                _ => q.grouped,
            }
        }
    };
    let mut out = vec![q.text.clone()];
    match &store.db {
        crate::store::Db::Sqlite(p) => {
            let sql = format!("EXPLAIN QUERY PLAN {}", q.text);
            let rows: Vec<(i64, i64, i64, String)> = bind_args!(sqlx::query_as(&sql), q)
                .fetch_all(p)
                .await
                .map_err(db)?;
            let mut depth = std::collections::HashMap::new();
            for (id, parent, _, detail) in rows {
                let d = depth.get(&parent).map_or(0, |d| d + 1);
                depth.insert(id, d);
                out.push(format!("{}{detail}", "  ".repeat(d)));
            }
        }
        crate::store::Db::Postgres(p) => {
            let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {}", q.text);
            let rows: Vec<(String,)> = bind_args!(sqlx::query_as(&sql), q)
                .fetch_all(p)
                .await
                .map_err(db)?;
            out.extend(rows.into_iter().map(|(line,)| line));
        }
    }
    Ok(out)
}

pub(super) fn read_group<R: sqlx::Row>(
    r: &R,
    width: usize,
) -> Result<(Group, i64, i64), sqlx::Error>
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
        actor_name: r.try_get("actor_name")?,
        target_name: r.try_get("target_name")?,
    };
    Ok((
        group,
        r.try_get("total_events")?,
        r.try_get("total_groups")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_under_an_actor_or_address_of_all_tenants_turn_index_scans_off() {
        let all = AuditFilter::visible_to(TenantScope::All);
        let actor = AuditFilter {
            actors: vec!["key_a".into()],
            ..all.clone()
        };
        let address = AuditFilter {
            client_ips: vec!["10.0.0.1".into()],
            ..all.clone()
        };
        let both = AuditFilter {
            client_ips: vec!["10.0.0.1".into()],
            ..actor.clone()
        };
        let scoped = AuditFilter {
            visible_to: TenantScope::Only(["acme".to_owned()].into()),
            ..actor.clone()
        };
        let target = AuditFilter {
            targets: vec!["key_b".into()],
            ..all.clone()
        };
        let off = Scans::NoIndexScan;
        for (f, dims, scans) in [
            (&actor, &[Dim::Target][..], off),
            (&actor, &[Dim::Action, Dim::Quarter], off),
            (&actor, &[Dim::ClientIp], off),
            (&address, &[Dim::Actor], off),
            (&both, &[Dim::ClientIp], off),
            // What the filter's index may answer alone.
            (&actor, &[Dim::Quarter], Scans::Any),
            (&address, &[Dim::ClientIp], Scans::Any),
            (&address, &[Dim::Quarter], Scans::Any),
            // Left to the planner: no actor or address, a target, a tenant-scoped caller.
            (&all, &[Dim::Target], Scans::Any),
            (&target, &[Dim::Action], Scans::Any),
            (&scoped, &[Dim::Target], Scans::Any),
        ] {
            assert_eq!(Scans::for_summary(f, dims), scans, "{dims:?} {f:?}");
        }
    }

    #[test]
    fn unfiltered_pages_limits_and_partial_index_constants_are_written_into_the_statement() {
        let f = AuditFilter::visible_to(TenantScope::Only(["acme".to_owned()].into()));
        let q = page_sql(BRIEF_COLUMNS, &f, None, 21, &Seal::new(None));
        assert!(
            q.text.ends_with("LIMIT 21) ORDER BY e.at DESC, e.id DESC"),
            "{}",
            q.text
        );
        assert!(q.text.contains("e.tenants <> '*'"), "{}", q.text);
        let rare = AuditFilter {
            statuses: vec!["error".into()],
            sources: vec!["cli".into()],
            ..AuditFilter::visible_to(TenantScope::All)
        };
        let q = page_sql(BRIEF_COLUMNS, &rare, None, 21, &Seal::new(None));
        // A filtered page's LIMIT stays bound: each is planned for its values.
        assert!(
            q.text.ends_with("LIMIT $3) ORDER BY e.at DESC, e.id DESC"),
            "{}",
            q.text
        );
        assert!(q.text.contains("e.status <> 'success'"), "{}", q.text);
        assert!(q.text.contains("e.source <> 'http'"), "{}", q.text);
        // The values asked for stay bound.
        assert!(
            !q.text.contains("'error'") && !q.text.contains("'cli'"),
            "{}",
            q.text
        );
        let g = grouped(
            Dialect::Postgres,
            &[Dim::Target],
            Rows::Rollup,
            Some(7),
            |q| {
                q.push("t e WHERE 1 = 1");
            },
        );
        // A summary's too.
        assert!(g.grouped.text.ends_with(" LIMIT $1"), "{}", g.grouped.text);
        // The two-column actor form (its outer LIMIT too) under a tenants filter.
        let both = AuditFilter {
            actors: vec!["alice".into()],
            tenants: vec!["acme".into()],
            ..AuditFilter::visible_to(TenantScope::Only(["acme".to_owned()].into()))
        };
        let q = page_sql(BRIEF_COLUMNS, &both, None, 21, &Seal::new(None));
        assert!(q.text.contains("UNION ALL"), "{}", q.text);
        assert!(!q.text.contains("LIMIT 21"), "{}", q.text);
        assert!(q.text.contains("(e.tenants = '*'"), "{}", q.text);
        let bound_marker = q
            .args
            .iter()
            .any(|a| matches!(a, crate::store::sql::Arg::Text(t) if t == ALL_TENANTS));
        assert!(!bound_marker, "{}", q.text);
    }

    #[test]
    fn subsets_are_every_sorted_space_joined_combination() {
        let (a, b, c) = ("acme".to_owned(), "globex".to_owned(), "initech".to_owned());
        let mut got = subsets(&[&a, &b, &c]);
        got.sort();
        assert_eq!(
            got,
            [
                "acme",
                "acme globex",
                "acme globex initech",
                "acme initech",
                "globex",
                "globex initech",
                "initech"
            ]
        );
        assert_eq!(subsets(&[&a]), ["acme"]);
    }

    #[test]
    fn like_patterns_match_only_the_literal_text() {
        assert_eq!(like_escaped("a_b%c!d\\"), "a!_b!%c!!d\\");
        assert_eq!(like_escaped("acme"), "acme");
    }
}

/// The grouping in memory against SQLite's GROUP BY, on the same rows.
#[cfg(test)]
mod grouping_tests {
    use super::*;
    use crate::store::audit::grouping::MAX_GROUPS;

    /// Rows with few distinct values, so that groups tie on count and last seen, keys hold NULL,
    /// empty and non-ASCII text, and two-value keys could run together ("a"+"b" / "ab"+"").
    fn table() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE t (at INTEGER, actor_kind TEXT, actor_id TEXT, actor_preview TEXT,
             actor_name TEXT, action TEXT, target_type TEXT, target_id TEXT, target_name TEXT,
             n INTEGER, first_at INTEGER, last_at INTEGER)",
        )
        .expect("schema");
        let texts = [
            None,
            Some(""),
            Some("a"),
            Some("ab"),
            Some("b"),
            Some("é"),
            Some("B"),
        ];
        let mut seed: u64 = 0x5EED;
        let mut next = |m: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % m
        };
        for _ in 0..600 {
            let mut t = || texts[next(texts.len())];
            let (kind, id, preview, name, action, ttype, tid, tname) =
                (t(), t(), t(), t(), t(), t(), t(), t());
            let at = next(4) as i64 * 900_000_000 + next(3) as i64;
            let n = 1 + next(3) as i64;
            let first = at + next(5) as i64;
            let last = first + next(5) as i64;
            conn.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                rusqlite::params![
                    at, kind, id, preview, name, action, ttype, tid, tname, n, first, last
                ],
            )
            .expect("row");
        }
        conn
    }

    fn run_grouped(conn: &rusqlite::Connection, mut q: Sql, width: usize) -> Summary {
        q.anonymous();
        let mut st = conn.prepare(&q.text).expect("prepare");
        let mut rows = st
            .query(rusqlite::params_from_iter(q.args.iter()))
            .expect("query");
        let mut out = Summary::default();
        while let Some(r) = rows.next().expect("row") {
            let (group, total_events, total_groups) = group_from_sqlite(r, width).expect("group");
            out.groups.push(group);
            out.total_events = total_events;
            out.total_groups = total_groups;
        }
        out
    }

    fn run_here(conn: &rusqlite::Connection, mut q: Sql, width: usize, max: usize) -> Grouper {
        q.anonymous();
        let mut st = conn.prepare(&q.text).expect("prepare");
        let mut rows = st
            .query(rusqlite::params_from_iter(q.args.iter()))
            .expect("query");
        let mut g = Grouper::with_max(width, max);
        while let Some(r) = rows.next().expect("row") {
            if !g.add(r).expect("add") {
                break;
            }
        }
        g
    }

    #[test]
    fn groups_as_the_database_groups_them() {
        let conn = table();
        let shapes: &[&[Dim]] = &[
            &[Dim::Target],
            &[Dim::Actor],
            &[Dim::Action],
            &[Dim::Actor, Dim::Target],
            &[Dim::Quarter, Dim::Action],
            &[Dim::Target, Dim::Quarter],
        ];
        let mut compared = 0;
        for dims in shapes {
            let width: usize = dims.iter().map(|d| d.exprs().len()).sum();
            for rows in [Rows::Events, Rows::Rollup] {
                for limit in [None, Some(0), Some(1), Some(3), Some(50), Some(100_000)] {
                    let q = grouped(Dialect::Sqlite, dims, rows, limit, |q| {
                        q.push("t e WHERE e.at >= ").int(0);
                    });
                    let want = run_grouped(&conn, q.grouped, width);
                    let got = run_here(&conn, q.rows, width, MAX_GROUPS)
                        .finish(q.limit)
                        .expect("within the bound")
                        .expect("text");
                    assert_eq!(got, want, "{dims:?} {rows:?} {limit:?}");
                    assert_eq!(want.groups.is_empty(), limit == Some(0));
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 72);
    }

    /// Every row of the table `t` as roll-up rows, by target.
    fn by_target(limit: Option<i64>) -> GroupedSql {
        grouped(Dialect::Sqlite, &[Dim::Target], Rows::Rollup, limit, |q| {
            q.push("t e WHERE 1 = 1");
        })
    }

    #[test]
    fn text_is_decoded_only_in_the_groups_returned() {
        let conn = table();
        conn.execute_batch(
            "DELETE FROM t;
             INSERT INTO t (at, target_type, target_id, n, first_at, last_at)
             VALUES (0, 't', CAST(X'61FF' AS TEXT), 1, 0, 0), (0, 't', 'b', 5, 0, 0);",
        )
        .expect("rows");
        let q = by_target(Some(1));
        let kept = run_here(&conn, q.rows.clone(), 2, MAX_GROUPS)
            .finish(q.limit)
            .expect("within the bound")
            .expect("the invalid text is not returned");
        assert_eq!(kept, run_grouped(&conn, q.grouped, 2));
        assert!(
            run_here(&conn, q.rows, 2, MAX_GROUPS)
                .finish(None)
                .expect("within the bound")
                .is_err()
        );
    }

    #[test]
    fn too_many_groups_are_left_to_the_database() {
        let conn = table();
        let q = by_target(Some(5));
        let all = run_here(&conn, q.rows.clone(), 2, MAX_GROUPS)
            .finish(None)
            .expect("within the bound")
            .expect("text");
        let groups = all.total_groups as usize;
        assert!(groups > 3);
        assert!(
            run_here(&conn, q.rows.clone(), 2, groups)
                .finish(q.limit)
                .is_some()
        );
        assert!(
            run_here(&conn, q.rows, 2, groups - 1)
                .finish(q.limit)
                .is_none()
        );
    }
}
