//! Novelty: per actor, the values of something the caller reports about itself (client IP,
//! client name, User-Agent) seen for the first time inside a window.

use super::read::{
    AuditFilter, Dim, Scans, Summary, pg_rows, push_where, read_group, with_named_keys,
};
use super::rollup::{Plan, Shape, push_rows};
use crate::domain::at_rest::Place;
use crate::store::sql::{Sql, bind_args};
use crate::store::{Db, Seal, StoreError, db};

/// What a caller reports about itself that novelty can track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NovelColumn {
    ClientIp,
    ClientName,
    UserAgent,
}

impl NovelColumn {
    fn column(self) -> &'static str {
        match self {
            NovelColumn::ClientIp => "e.client_ip",
            NovelColumn::ClientName => "e.client_name",
            NovelColumn::UserAgent => "e.user_agent",
        }
    }
}

/// Whether roll-ups keep `column`: client addresses only (with the actor, so they hold
/// novelty's pairs in the shape `rollup::answers` picks for `PAIRS`).
pub fn rolled_up(column: NovelColumn) -> bool {
    column == NovelColumn::ClientIp
}

/// The dimensions novelty's pairs are, for `rollup::answers`.
pub const PAIRS: [Dim; 2] = [Dim::Actor, Dim::ClientIp];

/// Per (actor, value): events matching `f` whose value was never seen for that actor, under
/// the same filter, before `since`. Every event of such a pair lies inside the window, so the
/// count, first and last times are over the window. Groups are `[actor_kind, actor_id, value]`,
/// largest first, at most `limit`. With `rollups` (a plan for `f`'s window and the shape
/// `rollup::answers` picked for `PAIRS`, for a column `rolled_up`), the window's pairs are read from roll-ups where they hold
/// them, as a summary's groups are; what came before is always read from the events.
pub async fn novel(
    store: &crate::store::Store,
    f: &AuditFilter,
    since: i64,
    column: NovelColumn,
    limit: i64,
    rollups: Option<(&Plan, Shape)>,
) -> Result<Summary, StoreError> {
    let f = with_named_keys(store, f).await?;
    let q = novel_sql(store, &f, since, column, limit, rollups);
    let rows = match &store.db {
        Db::Sqlite(p) => {
            let rows = bind_args!(sqlx::query(&q.text), q)
                .fetch_all(p)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| read_group(r, 3))
                .collect::<Result<Vec<_>, _>>()
        }
        // Without bitmap scans, for this statement only. Each pair's "seen before" reads the
        // latest earlier sighting; PostgreSQL, estimating that one earlier event at most
        // matches (it multiplies the actor's, address's and tenants' selectivities, which an
        // actor's events share), collected the actor's (or address's) whole earlier history
        // by bitmap and sorted it, rather than walking its index back to the first match: 25
        // ms a pair for a tenant-scoped caller on a million events, 0.1 ms walking.
        Db::Postgres(p) => pg_rows(p, &q, Scans::NoBitmapScan)
            .await?
            .iter()
            .map(|r| read_group(r, 3))
            .collect::<Result<Vec<_>, _>>(),
    }
    .map_err(db)?;
    let mut out = Summary::default();
    let place = match column {
        NovelColumn::ClientIp => Some(Place::AuditClientIp),
        NovelColumn::UserAgent => Some(Place::AuditUserAgent),
        NovelColumn::ClientName => None,
    };
    for (mut group, total_events, total_groups) in rows {
        // The value is the group's third key; sealed columns are opened.
        if let Some(place) = place
            && let Some(v) = group.values.get_mut(2)
        {
            store.seal.open_in(place, v)?;
        }
        out.total_events = total_events;
        out.total_groups = total_groups;
        out.groups.push(group);
    }
    Ok(out)
}

fn novel_sql(
    store: &crate::store::Store,
    f: &AuditFilter,
    since: i64,
    column: NovelColumn,
    limit: i64,
    rollups: Option<(&Plan, Shape)>,
) -> Sql {
    let seal: &Seal = &store.seal;
    let col = column.column();
    // Pairs ordered, and named, as SQLite orders text (`Dialect`).
    let (b, n) = (store.dialect().bytewise(), store.dialect().nulls_first());
    let (sum_n, total) = (
        store.dialect().sum_counts("e.n"),
        store.dialect().sum_counts("c.n"),
    );
    // The pairs seen inside the window first (as many as the window's events, at most), then,
    // per pair, whether it was seen before the window under the same filter: that check stops
    // at the latest earlier sighting, so a pair seen before costs one index probe, where
    // grouping the whole history by pair cost every event ever recorded.
    let before = AuditFilter {
        since: None,
        until: Some(f.until.map_or(since, |u| u.min(since))),
        ..f.clone()
    };
    let mut q = match rollups {
        Some((plan, shape)) => {
            let mut q = Sql::new(&format!(
                "WITH c AS (SELECT e.actor_kind AS k, e.actor_id AS a, {col} AS v, \
                 CAST({sum_n} AS BIGINT) AS n, MIN(e.first_at) AS first_at, \
                 MAX(e.last_at) AS last_at, \
                 MAX(e.actor_preview{b}) AS preview, MAX(e.actor_name{b}) AS actor_name FROM "
            ));
            push_rows(&mut q, store, f, &PAIRS, plan, shape);
            q.push(" WHERE 1 = 1");
            q
        }
        None => {
            let mut q = Sql::new(&format!(
                "WITH c AS (SELECT e.actor_kind AS k, e.actor_id AS a, {col} AS v, \
                 COUNT(*) AS n, MIN(e.at) AS first_at, MAX(e.at) AS last_at, \
                 MAX(e.actor_preview{b}) AS preview, MAX(e.actor_name{b}) AS actor_name \
                 FROM audit_events e"
            ));
            push_where(&mut q, f, seal);
            q
        }
    };
    q.push(&format!(
        " AND {col} IS NOT NULL GROUP BY e.actor_kind, e.actor_id, {col}) \
         SELECT CAST(c.k AS TEXT){b} AS g0, CAST(c.a AS TEXT){b} AS g1, \
         CAST(c.v AS TEXT){b} AS g2, \
         c.n AS n, c.first_at AS first_at, c.last_at AS last_at, c.preview AS preview, \
         c.actor_name AS actor_name, CAST(NULL AS TEXT) AS target_name, \
         CAST({total} OVER () AS BIGINT) AS total_events, \
         CAST(COUNT(*) OVER () AS BIGINT) AS total_groups FROM c WHERE"
    ));
    // The latest earlier sighting, newest first and one row: both databases then walk an index
    // backward from the window's start and stop at once for a value seen before (an EXISTS
    // would let PostgreSQL collect every earlier match first). An anonymous caller has no id:
    // its own branch, so each keeps a plain index lookup (a null-safe comparison would not use
    // the index on PostgreSQL).
    let unseen_before = |q: &mut Sql, actor: &str| {
        q.push(" (SELECT e.at FROM audit_events e");
        push_where(q, &before, seal);
        q.push(&format!(
            " AND {actor} AND e.actor_kind = c.k AND {col} = c.v \
             ORDER BY e.at DESC LIMIT 1) IS NULL"
        ));
    };
    q.push(" CASE WHEN c.a IS NULL THEN");
    unseen_before(&mut q, "e.actor_id IS NULL");
    q.push(" ELSE");
    unseen_before(&mut q, "e.actor_id = c.a");
    // Ties broken by the pair, so every plan (roll-ups or events) cuts the same pairs at `limit`.
    q.push(&format!(
        " END ORDER BY n DESC, last_at DESC, g0{n}, g1{n}, g2{n} LIMIT "
    ))
    .int(limit);
    q
}
