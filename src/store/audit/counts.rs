//! Counts of events per quarter hour (UTC, `at / 900 s`, the buckets summaries group time
//! by) for one dimension at a time: action, status, source, role. They are written with the
//! events, in the same transaction, so they always agree with the events; a summary that
//! groups and filters by at most one of these (plus time), over all tenants, reads thousands
//! of count rows instead of every event in its window.

use std::collections::BTreeMap;

use super::read::{FromSqlite, all_rows};
use crate::domain::audit::AuditEvent;
use crate::store::sql::{Sql, bind_args, nul_free};
use crate::store::{StoreError, Tx, TxConn, db, micros, on_tx};

/// Microseconds in a quarter hour: the bucket.
pub const QUARTER: i64 = 900_000_000;

/// A dimension the counts are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CountDim {
    Action,
    Status,
    Source,
    Role,
}

impl CountDim {
    const ALL: [CountDim; 4] = [
        CountDim::Action,
        CountDim::Status,
        CountDim::Source,
        CountDim::Role,
    ];

    fn name(self) -> &'static str {
        match self {
            CountDim::Action => "action",
            CountDim::Status => "status",
            CountDim::Source => "source",
            CountDim::Role => "role",
        }
    }

    /// The stored value; '' stands for none (only a role can be missing).
    fn of(self, e: &AuditEvent) -> &str {
        match self {
            CountDim::Action => e.action.as_str(),
            CountDim::Status => e.status.as_str(),
            CountDim::Source => e.source.as_str(),
            CountDim::Role => e.role.as_deref().unwrap_or(""),
        }
    }
}

/// One count row to add: (dimension, quarter, value) → (events, first, last).
type Key<'a> = (CountDim, i64, &'a str);

fn aggregate<'a>(events: &[&'a AuditEvent]) -> BTreeMap<Key<'a>, (i64, i64, i64)> {
    let mut rows: BTreeMap<Key<'a>, (i64, i64, i64)> = BTreeMap::new();
    for e in events {
        let at = micros(e.at);
        for dim in CountDim::ALL {
            let row = rows
                .entry((dim, at / QUARTER, dim.of(e)))
                .or_insert((0, at, at));
            row.0 += 1;
            row.1 = row.1.min(at);
            row.2 = row.2.max(at);
        }
    }
    rows
}

/// Rows already there grow: more events, the earliest first and the latest last.
pub(super) const ON_CONFLICT: &str = " ON CONFLICT (dim, quarter, value) DO UPDATE SET \
    n = audit_counts.n + excluded.n, \
    first_at = CASE WHEN excluded.first_at < audit_counts.first_at \
        THEN excluded.first_at ELSE audit_counts.first_at END, \
    last_at = CASE WHEN excluded.last_at > audit_counts.last_at \
        THEN excluded.last_at ELSE audit_counts.last_at END";

/// Adds `events` to the counts, on a native SQLite connection, in the caller's transaction.
pub fn add_sqlite(conn: &rusqlite::Connection, events: &[&AuditEvent]) -> Result<(), StoreError> {
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at) \
         VALUES (?, ?, ?, ?, ?, ?){ON_CONFLICT}"
    ))?;
    for ((dim, quarter, value), (n, first, last)) in aggregate(events) {
        upsert.execute(rusqlite::params![
            quarter,
            dim.name(),
            value,
            n,
            first,
            last
        ])?;
    }
    Ok(())
}

/// The count rows `events` add, as columns (quarter, dim, value, n, first, last): bound as
/// arrays, so the PostgreSQL writer's one statement keeps one text whatever the batch holds.
pub(super) type Columns = (
    Vec<i64>,
    Vec<&'static str>,
    Vec<String>,
    Vec<i64>,
    Vec<i64>,
    Vec<i64>,
);

pub(super) fn columns(events: &[&AuditEvent]) -> Columns {
    let mut c = Columns::default();
    for ((dim, quarter, value), (n, first, last)) in aggregate(events) {
        c.0.push(quarter);
        c.1.push(dim.name());
        c.2.push(nul_free(value).into_owned());
        c.3.push(n);
        c.4.push(first);
        c.5.push(last);
    }
    c
}

/// Adds `events` to the counts inside `tx`: one statement (a round trip on PostgreSQL).
pub async fn add(tx: &mut Tx, events: &[&AuditEvent]) -> Result<(), StoreError> {
    let rows = aggregate(events);
    if rows.is_empty() {
        return Ok(());
    }
    let mut q =
        Sql::new("INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at) VALUES ");
    for (i, ((dim, quarter, value), (n, first, last))) in rows.into_iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(")
            .int(quarter)
            .push(", ")
            .text(dim.name())
            .push(", ")
            .text(value);
        q.push(", ")
            .int(n)
            .push(", ")
            .int(first)
            .push(", ")
            .int(last)
            .push(")");
    }
    q.push(ON_CONFLICT);
    if matches!(tx.conn, TxConn::Sqlite(_)) {
        q.anonymous();
    }
    on_tx!(tx, c => bind_args!(sqlx::query(&q.text), q).execute(c).await.map(|_| ()).map_err(db))
}

/// A group read from the counts: a value of the dimension (when grouped by it), a quarter
/// (when grouped by time), and its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountGroup {
    pub value: Option<String>,
    pub quarter: Option<i64>,
    pub count: i64,
    pub first: i64,
    pub last: i64,
}

/// What to read from the counts.
#[derive(Debug, Clone)]
pub struct CountQuery<'a> {
    pub dim: CountDim,
    /// Only these values of `dim` (any when empty).
    pub values: &'a [String],
    /// One group per value of `dim` (else all values together).
    pub by_value: bool,
    /// One group per quarter (else all quarters together).
    pub by_quarter: bool,
    /// Quarters `from..to`, each bound optional.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// value, quarter, events, first, last (aggregates are NULL over no rows).
type CountRow = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl FromSqlite for CountRow {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    }
}

/// The groups of `q`, in no particular order.
pub async fn count_groups(
    store: &crate::store::Store,
    q: &CountQuery<'_>,
) -> Result<Vec<CountGroup>, StoreError> {
    let value = if q.by_value {
        "value"
    } else {
        "CAST(NULL AS TEXT)"
    };
    let quarter = if q.by_quarter {
        "quarter"
    } else {
        "CAST(NULL AS BIGINT)"
    };
    let mut s = Sql::new(&format!(
        "SELECT {value} AS value, {quarter} AS quarter, CAST(SUM(n) AS BIGINT) AS n, \
         MIN(first_at) AS first_at, MAX(last_at) AS last_at FROM audit_counts WHERE dim = "
    ));
    s.text(q.dim.name());
    if let Some(from) = q.from {
        s.push(" AND quarter >= ").int(from);
    }
    if let Some(to) = q.to {
        s.push(" AND quarter < ").int(to);
    }
    if !q.values.is_empty() {
        s.push(" AND value IN ").text_list(q.values);
    }
    let mut group: Vec<&str> = Vec::new();
    if q.by_value {
        group.push("value");
    }
    if q.by_quarter {
        group.push("quarter");
    }
    if !group.is_empty() {
        s.push(" GROUP BY ").push(&group.join(", "));
    }
    // On a SQLite file, through the read connections the pages and summaries use: their
    // caches then hold the counts too.
    let rows: Vec<CountRow> = all_rows(store, s).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(value, quarter, n, first, last)| {
            Some(CountGroup {
                value: value.filter(|v| !v.is_empty()),
                quarter,
                count: n.filter(|n| *n > 0)?,
                first: first?,
                last: last?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::Action;

    fn event(at: i64, action: Action, role: Option<&str>) -> AuditEvent {
        AuditEvent {
            at: chrono::DateTime::from_timestamp_micros(at).unwrap(),
            action,
            role: role.map(str::to_owned),
            ..crate::domain::audit::sample_event("")
        }
    }

    #[test]
    fn events_count_once_per_dimension_in_their_quarter() {
        let q = 2_000_000 * QUARTER;
        let events = [
            event(q + 5, Action::Whoami, Some("admin")),
            event(q + 1, Action::Whoami, None),
            event(q + QUARTER, Action::KeyList, Some("admin")),
        ];
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let rows = aggregate(&refs);
        assert_eq!(
            rows[&(CountDim::Action, 2_000_000, "whoami")],
            (2, q + 1, q + 5)
        );
        assert_eq!(
            rows[&(CountDim::Action, 2_000_001, "key_list")],
            (1, q + QUARTER, q + QUARTER)
        );
        assert_eq!(
            rows[&(CountDim::Role, 2_000_000, "")],
            (1, q + 1, q + 1),
            "no role: ''"
        );
        assert_eq!(rows[&(CountDim::Status, 2_000_000, "success")].0, 2);
        let per_dim = |d: CountDim| {
            rows.iter()
                .filter(|(k, _)| k.0 == d)
                .map(|(_, v)| v.0)
                .sum::<i64>()
        };
        for d in CountDim::ALL {
            assert_eq!(per_dim(d), 3, "every event once in {d:?}");
        }
    }
}
