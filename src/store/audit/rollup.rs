//! Roll-ups: counts of events per hour and per day (UTC) for each combination of role,
//! tenants, action, status and source, in five tables (`Shape`): that core alone, with the
//! target, with the actor and client address, the last without the action, and the target
//! with status and source alone. A fold adds
//! the events the log has placed since the last fold (by seq, so an event that arrives late
//! for its hour is simply folded later, into that hour); compaction merges an hour's partial rows once it is past,
//! and makes each finished day's rows. Neither is on a call's path. Folds are serialised among
//! themselves (and with retention and rekey, which claim first, then take the log's lock) by
//! claiming the progress row; on PostgreSQL they never take the sequencer lock, on SQLite they
//! hold the database's write lock like every write (audit records wait in the journal; other
//! writes wait out one fold transaction).
//!
//! A summary reads the buckets wholly inside its window from here, and from the events the
//! rest: the partial hours at either end, the events not folded yet (seq at or above
//! `folded_seq`, read in the same statement, so no event is counted twice or missed), and the
//! events from before the log (no seq), which are never folded.

use super::exec::exec;
use super::read::{
    AuditFilter, Dim, GroupedSql, Rows, Scans, Summary, grouped, push_where_in, run_summary,
};
use crate::domain::tenant::TenantScope;
use crate::store::sql::{Dialect, Sql};
use crate::store::{Store, StoreError, Tx, db, on_tx};

/// An hour and a day, in micros: the two bucket widths.
pub const HOUR: i64 = 3_600_000_000;
pub const DAY: i64 = 86_400_000_000;

/// Events folded per transaction at most: bounds how long one fold holds its claim.
pub const FOLD_CHUNK: i64 = 20_000;
/// Hours compacted per transaction at most.
const COMPACT_HOURS: i64 = 48;

/// A roll-up table: which combination its rows count. Every fold, compaction, refold and reset
/// does all five in one transaction, so they always cover the same events; a summary reads
/// the narrowest that holds what it groups by and filters on (`answers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Role, tenants, action, status, source: the fewest rows.
    Core,
    /// The target with status and source alone (and the greatest target name): a week by
    /// target for an all-tenant caller reads 40% fewer rows than `Targets` holds for it.
    /// Neither the tenants, the role nor the action, so nothing scoped or filtered by them.
    TargetStatus,
    /// The core and the target (with the greatest target name).
    Targets,
    /// The actor and the client address with role, tenants, status and source, but not the
    /// action (with the greatest preview and name): a row per actor and address an hour.
    Actors,
    /// The core, the actor (with the greatest name) and the client address.
    Wide,
}

impl Shape {
    /// Narrowest first: the order a summary looks for one that holds its dimensions.
    pub const ALL: [Shape; 5] = [
        Shape::Core,
        Shape::TargetStatus,
        Shape::Targets,
        Shape::Actors,
        Shape::Wide,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Shape::Core => "audit_tallies_core",
            Shape::TargetStatus => "audit_tallies_target_status",
            Shape::Targets => "audit_tallies_target",
            Shape::Actors => "audit_tallies_actor",
            Shape::Wide => "audit_tallies_wide",
        }
    }

    /// The combination a row counts.
    fn key(self) -> &'static str {
        match self {
            Shape::Core => "role, tenants, action, status, source",
            Shape::TargetStatus => "target_type, target_id, status, source",
            Shape::Targets => "target_type, target_id, role, tenants, action, status, source",
            Shape::Actors => "actor_kind, actor_id, role, tenants, status, source, client_ip",
            Shape::Wide => {
                "actor_kind, actor_id, actor_preview, role, tenants, action, status, source, client_ip"
            }
        }
    }

    /// The columns kept beside the key (each its greatest value): what a group shows.
    fn sides(self) -> &'static [&'static str] {
        match self {
            Shape::Core => &[],
            Shape::TargetStatus | Shape::Targets => &["target_name"],
            Shape::Actors => &["actor_preview", "actor_name"],
            Shape::Wide => &["actor_name"],
        }
    }

    /// The shape whose rows hold every column of this one's key and sides, for the three that
    /// have one: a fold groups that shape's new rows again instead of reading the events once
    /// more. Grouping groups gives what grouping the events gives: counts and the earliest
    /// and latest times add up, and the greatest of greatest values is the greatest.
    fn folded_from(self) -> Option<Shape> {
        match self {
            Shape::Core | Shape::TargetStatus => Some(Shape::Targets),
            Shape::Actors => Some(Shape::Wide),
            Shape::Targets | Shape::Wide => None,
        }
    }

    /// Whether rows of this shape can be grouped (or filtered) by `d`.
    fn holds(self, d: Dim) -> bool {
        match d {
            Dim::Status | Dim::Source | Dim::Quarter => true,
            Dim::Role => self != Shape::TargetStatus,
            Dim::Action => !matches!(self, Shape::Actors | Shape::TargetStatus),
            Dim::Target => matches!(self, Shape::Targets | Shape::TargetStatus),
            Dim::Actor | Dim::ClientIp => matches!(self, Shape::Actors | Shape::Wide),
        }
    }

    /// Whether rows of this shape carry the tenants: what a tenant filter or a tenant-scoped
    /// caller tests.
    fn has_tenants(self) -> bool {
        self != Shape::TargetStatus
    }

    /// `INSERT INTO table (span, bucket, key, n, first_at, last_at[, sides]) `.
    fn insert(self) -> String {
        let sides: String = self.sides().iter().map(|c| format!(", {c}")).collect();
        format!(
            "INSERT INTO {} (span, bucket, {}, n, first_at, last_at{sides}) ",
            self.table(),
            self.key()
        )
    }

    /// `, MAX(side)` for each side column, the greatest by bytes (`Dialect`).
    fn max_sides(self, dialect: Dialect) -> String {
        let bytewise = dialect.bytewise();
        self.sides()
            .iter()
            .map(|c| format!(", MAX({c}{bytewise})"))
            .collect()
    }
}

/// Where folding and compaction stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Every event with seq below this is in the hour rows.
    pub folded_seq: i64,
    /// Hours below this are compacted; days ending at or before its day have day rows.
    pub compacted_until: i64,
    /// Counts the times the roll-ups were dropped.
    pub generation: i64,
}

impl State {
    /// Days before this have day rows.
    pub fn days_until(&self) -> i64 {
        floor(self.compacted_until, DAY)
    }
}

pub fn floor(t: i64, span: i64) -> i64 {
    t.div_euclid(span) * span
}

pub fn ceil(t: i64, span: i64) -> i64 {
    -floor(-t, span)
}

async fn one(tx: &mut Tx, sql: &str) -> Result<i64, StoreError> {
    on_tx!(tx, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await.map_err(db))
}

/// Claims the state row for this transaction (a concurrent fold, prune or rekey waits until it
/// ends) and reads it.
pub(crate) async fn claim(tx: &mut Tx) -> Result<State, StoreError> {
    exec(
        tx,
        "UPDATE audit_tallies_progress SET folded_seq = folded_seq WHERE id = 1",
        &[],
    )
    .await?;
    let (folded_seq, compacted_until, generation): (i64, i64, i64) = on_tx!(tx, c => sqlx::query_as(
        "SELECT folded_seq, compacted_until, generation FROM audit_tallies_progress WHERE id = 1")
        .fetch_one(c)
        .await
        .map_err(db))?;
    Ok(State {
        folded_seq,
        compacted_until,
        generation,
    })
}

async fn save(tx: &mut Tx, s: State) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE audit_tallies_progress SET folded_seq = $1, compacted_until = $2, generation = $3 \
         WHERE id = 1",
        &[s.folded_seq, s.compacted_until, s.generation],
    )
    .await
    .map(|_| ())
}

/// The greatest id of `shape`'s rows: the rows after it are the caller's. That needs every
/// writer of roll-ups to hold the claim (folds, compaction, refolds, resets), and new ids to
/// come above the greatest: SQLite's `INTEGER PRIMARY KEY` takes the greatest plus one, and
/// PostgreSQL's identity columns draw from sequences with no cache and no id ever given
/// explicitly (a migration that copied ids, or cached values, would break this).
async fn last_id(tx: &mut Tx, shape: Shape) -> Result<i64, StoreError> {
    one(
        tx,
        &format!("SELECT COALESCE(MAX(id), 0) FROM {}", shape.table()),
    )
    .await
}

/// Adds the events with seq in `[from, to)` (and, when given, `at` below `before`) to `span`
/// rows of every shape. Events dated before 1970 (a clock that was wrong) are never folded:
/// readers count them from the events, and buckets never need negative division.
async fn fold_events(
    tx: &mut Tx,
    span: i64,
    from: i64,
    to: i64,
    before: Option<i64>,
) -> Result<(), StoreError> {
    // The shapes read from the events first, each noting its greatest id before; then the
    // others, from those rows (`Shape::folded_from`): two passes over the events, not five
    // (the folder was 6.6% of the server's CPU under load on SQLite, with five).
    let mut last_before = Vec::new();
    for shape in Shape::ALL.into_iter().filter(|s| s.folded_from().is_none()) {
        last_before.push((shape, last_id(tx, shape).await?));
        let (insert, key, name) = (shape.insert(), shape.key(), shape.max_sides(tx.dialect()));
        let sql = format!(
            "{insert}SELECT {span}, at / {span} * {span}, {key}, COUNT(*), MIN(at), MAX(at){name} \
             FROM audit_events WHERE seq >= $1 AND seq < $2 AND at >= 0 AND at < $3 \
             GROUP BY at / {span} * {span}, {key}"
        );
        exec(tx, &sql, &[from, to, before.unwrap_or(i64::MAX)]).await?;
    }
    for shape in Shape::ALL {
        let Some(source) = shape.folded_from() else {
            continue;
        };
        // A shape regrouped from another regrouped one would find no rows of this fold.
        let last = last_before
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, last)| *last)
            .ok_or_else(|| StoreError::Corrupt(format!("{shape:?} folds from {source:?}")))?;
        let (insert, key, name) = (shape.insert(), shape.key(), shape.max_sides(tx.dialect()));
        let sql = format!(
            "{insert}SELECT span, bucket, {key}, SUM(n), MIN(first_at), MAX(last_at){name} \
             FROM {} WHERE id > $1 GROUP BY span, bucket, {key}",
            source.table()
        );
        exec(tx, &sql, &[last]).await?;
    }
    Ok(())
}

/// Rebuilds `span` rows of every shape with buckets in `[from, to)`: hour rows from the events
/// folded (seq below `folded`), day rows from the hour rows.
async fn refold(tx: &mut Tx, span: i64, from: i64, to: i64, folded: i64) -> Result<(), StoreError> {
    for shape in Shape::ALL {
        let (table, insert, key, name) = (
            shape.table(),
            shape.insert(),
            shape.key(),
            shape.max_sides(tx.dialect()),
        );
        exec(
            tx,
            &format!("DELETE FROM {table} WHERE span = $1 AND bucket >= $2 AND bucket < $3"),
            &[span, from, to],
        )
        .await?;
        if span == HOUR {
            let sql = format!(
                "{insert}SELECT {HOUR}, at / {HOUR} * {HOUR}, {key}, COUNT(*), MIN(at), MAX(at)\
                 {name} FROM audit_events WHERE at >= $1 AND at < $2 AND at >= 0 AND seq < $3 \
                 GROUP BY at / {HOUR} * {HOUR}, {key}"
            );
            exec(tx, &sql, &[from, to, folded]).await?;
        } else {
            let sql = format!(
                "{insert}SELECT {DAY}, bucket / {DAY} * {DAY}, {key}, SUM(n), MIN(first_at), \
                 MAX(last_at){name} FROM {table} WHERE span = {HOUR} \
                 AND bucket >= $1 AND bucket < $2 GROUP BY bucket / {DAY} * {DAY}, {key}"
            );
            exec(tx, &sql, &[from, to]).await?;
        }
    }
    Ok(())
}

/// Merges each hour's partial rows in `[from, to)` into one row per combination, in every
/// shape. A row alone in its combination stays as it is, so hours folded in one piece (a
/// catch-up) are only read.
async fn compact_hours(tx: &mut Tx, from: i64, to: i64) -> Result<(), StoreError> {
    for shape in Shape::ALL {
        let (table, insert, key, name) = (
            shape.table(),
            shape.insert(),
            shape.key(),
            shape.max_sides(tx.dialect()),
        );
        let last = last_id(tx, shape).await?;
        let range = "span = 3600000000 AND bucket >= $1 AND bucket < $2 AND id <= $3";
        let merge = format!(
            "{insert}SELECT {HOUR}, bucket, {key}, SUM(n), MIN(first_at), MAX(last_at){name} \
             FROM {table} WHERE {range} GROUP BY bucket, {key} HAVING COUNT(*) > 1"
        );
        exec(tx, &merge, &[from, to, last]).await?;
        // The rows of combinations that had more than one (merged above): a semi-join on a
        // count over each combination, where NULLs group together on both databases.
        let merged = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, COUNT(*) OVER \
             (PARTITION BY bucket, {key}) AS rows_in FROM {table} WHERE {range}) r \
             WHERE r.rows_in > 1)"
        );
        exec(tx, &merged, &[from, to, last]).await?;
    }
    Ok(())
}

/// What one `fold_step` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    pub folded: i64,
    pub compacted_hours: i64,
    /// More is due now: call again.
    pub more: bool,
}

/// One transaction of folding: the next events the log placed (at most `FOLD_CHUNK`), then,
/// once every placed event is folded, compaction of the hours that ended before `settled`
/// (micros; later events for them are rare and fold in as small rows of their own).
pub async fn fold_step(store: &Store, settled: i64) -> Result<Step, StoreError> {
    // Nothing due: no write transaction (on SQLite, no write lock) at all; nor for a process
    // that missed a rekey.
    let seen = snapshot(store).await?;
    crate::store::seal::still_current(&store.seal, seen.key_id.as_deref())?;
    if seen.head == seen.state.folded_seq && floor(settled, HOUR) <= seen.state.compacted_until {
        return Ok(Step::default());
    }
    let mut tx = store.begin().await?;
    let mut state = claim(&mut tx).await?;
    // A process that missed a rekey writes nothing more, roll-ups included.
    let (head, key_id): (i64, Option<String>) = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT size, (SELECT value FROM settings WHERE name = 'encryption_key_id') \
         FROM audit_head WHERE id = 1")
        .fetch_one(c)
        .await
        .map_err(db))?;
    crate::store::seal::still_current(&tx.seal, key_id.as_deref())?;
    let to = head.min(state.folded_seq + FOLD_CHUNK);
    let mut step = Step::default();
    if to > state.folded_seq {
        fold_events(&mut tx, HOUR, state.folded_seq, to, None).await?;
        // Late events of days that already have day rows go there too.
        if state.days_until() > 0 {
            fold_events(&mut tx, DAY, state.folded_seq, to, Some(state.days_until())).await?;
        }
        step.folded = to - state.folded_seq;
        state.folded_seq = to;
    }
    let target = floor(settled, HOUR);
    if to == head && target > state.compacted_until {
        let was = state.compacted_until;
        // Compaction resumes where it stopped, at the next hour that has rows: an hour left
        // long ago by a clock that was wrong is not followed by decades walked 48 hours at a
        // time.
        let next: Option<i64> = on_tx!(&mut tx, c => sqlx::query_scalar(
            // (Every shape has rows in the same hours.)
            "SELECT MIN(bucket) FROM audit_tallies_wide WHERE span = 3600000000 AND bucket >= $1")
            .bind(was)
            .fetch_one(c)
            .await
            .map_err(db))?;
        let start = next.unwrap_or(target).clamp(was, target);
        let end = target.min(start + COMPACT_HOURS * HOUR);
        if end > start {
            compact_hours(&mut tx, start, end).await?;
            step.compacted_hours = (end - start) / HOUR;
        }
        // Days that end in (was, end] get their rows, from their (merged) hours; before the
        // first compaction's first hour there are none to get.
        let d0 = floor(if was == 0 { start } else { was }, DAY);
        let d1 = floor(end, DAY);
        if d1 > d0 {
            refold(&mut tx, DAY, d0, d1, state.folded_seq).await?;
        }
        state.compacted_until = end.max(was);
    }
    step.more = to < head || (to == head && target > state.compacted_until);
    save(&mut tx, state).await?;
    tx.commit().await?;
    Ok(step)
}

/// Refolds the hours (and their days) that `hours` names, inside a transaction that has just
/// removed events from them (retention) and claimed the state before taking the log's lock:
/// roll-ups then count only what remains.
pub(crate) async fn refold_hours(tx: &mut Tx, hours: &[i64]) -> Result<(), StoreError> {
    let state = claim(tx).await?;
    let mut days: Vec<i64> = Vec::new();
    // Hours before 1970 hold no roll-ups (their events are never folded).
    for h in hours.iter().filter(|h| **h >= 0) {
        refold(tx, HOUR, *h, *h + HOUR, state.folded_seq).await?;
        let d = floor(*h, DAY);
        if d < state.days_until() && !days.contains(&d) {
            days.push(d);
        }
    }
    for d in days {
        refold(tx, DAY, d, d + DAY, state.folded_seq).await?;
    }
    Ok(())
}

/// Drops every roll-up (a rekey changed the sealed client addresses they hold): folding starts
/// over, and until it catches up summaries read the events.
pub(crate) async fn reset(tx: &mut Tx) -> Result<(), StoreError> {
    let was = claim(tx).await?;
    for shape in Shape::ALL {
        exec(tx, &format!("DELETE FROM {}", shape.table()), &[]).await?;
    }
    save(
        tx,
        State {
            generation: was.generation + 1,
            ..State::default()
        },
    )
    .await
}

/// The state, with the log's size, its count of events from before the log, the key the
/// database is sealed with now, and the time of the earliest event (if any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub state: State,
    pub head: i64,
    pub unproven: i64,
    pub key_id: Option<String>,
    pub earliest: Option<i64>,
}

impl Snapshot {
    /// Events the log placed that are not folded yet.
    pub fn unfolded(&self) -> i64 {
        self.head - self.state.folded_seq
    }
}

pub async fn snapshot(store: &Store) -> Result<Snapshot, StoreError> {
    type Row = (i64, i64, i64, i64, i64, Option<String>, Option<i64>);
    let (folded_seq, compacted_until, generation, head, unproven, key_id, earliest): Row = crate::store::on_pool!(store, p => sqlx::query_as(
            "SELECT s.folded_seq, s.compacted_until, s.generation, h.size, h.unproven, \
             (SELECT value FROM settings WHERE name = 'encryption_key_id'), \
             (SELECT MIN(at) FROM audit_events) \
             FROM audit_tallies_progress s, audit_head h WHERE s.id = 1 AND h.id = 1")
            .fetch_one(p)
            .await
            .map_err(db))?;
    Ok(Snapshot {
        state: State {
            folded_seq,
            compacted_until,
            generation,
        },
        head,
        unproven,
        key_id,
        earliest,
    })
}

pub async fn state(store: &Store) -> Result<State, StoreError> {
    Ok(snapshot(store).await?.state)
}

/// Which rows a summary over `[since, until)` reads: the whole buckets inside `[from, to)`
/// from roll-ups (days for `days`, hours for the rest), everything else from the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub from: i64,
    pub to: i64,
    pub days: Option<(i64, i64)>,
    /// `folded_seq` when planned (the statement also reads it, in its own snapshot).
    pub folded_seq: i64,
    /// Whether events from before the log may exist.
    pub unproven: bool,
}

impl Plan {
    /// The plan for `[since, until)` (`until` given: the caller's now when open-ended) with
    /// roll-ups as `state` says, day rows only when `days` (a UTC day is no local day);
    /// `None` when no whole hour lies inside the window.
    pub fn new(since: Option<i64>, until: i64, seen: &Snapshot, days: bool) -> Option<Plan> {
        let state = seen.state;
        let from = since.map_or(0, |s| ceil(s, HOUR)).max(0);
        let to = floor(until, HOUR);
        if to <= from {
            return None;
        }
        let d0 = ceil(from, DAY);
        let d1 = floor(to, DAY).min(state.days_until());
        Some(Plan {
            from,
            to,
            days: (days && d1 > d0).then_some((d0, d1)),
            folded_seq: state.folded_seq,
            unproven: seen.unproven > 0,
        })
    }

    /// The bucket ranges to read: `(span, from, to)`.
    fn ranges(&self) -> Vec<(i64, i64, i64)> {
        match self.days {
            Some((d0, d1)) => vec![(HOUR, self.from, d0), (DAY, d0, d1), (HOUR, d1, self.to)],
            None => vec![(HOUR, self.from, self.to)],
        }
        .into_iter()
        .filter(|(_, a, b)| a < b)
        .collect()
    }
}

/// What each branch of the statement yields for `dims`, events first and roll-up rows second:
/// the grouped columns (an actor with its preview and name), its time when grouped by time,
/// then count, first and last. Only those, so no row carries columns nobody reads.
fn branch_columns(dims: &[Dim]) -> (String, String) {
    let mut events: Vec<&str> = Vec::new();
    let mut rollup: Vec<&str> = Vec::new();
    for d in dims {
        let columns: &[&str] = match d {
            Dim::Actor => &[
                "e.actor_kind AS actor_kind",
                "e.actor_id AS actor_id",
                "e.actor_preview AS actor_preview",
                "e.actor_name AS actor_name",
            ],
            Dim::Action => &["e.action AS action"],
            Dim::Status => &["e.status AS status"],
            Dim::Source => &["e.source AS source"],
            Dim::Role => &["e.role AS role"],
            Dim::ClientIp => &["e.client_ip AS client_ip"],
            Dim::Target => &[
                "e.target_type AS target_type",
                "e.target_id AS target_id",
                "e.target_name AS target_name",
            ],
            Dim::Quarter => {
                events.push("e.at AS at");
                rollup.push("e.bucket AS at");
                continue;
            }
        };
        events.extend(columns);
        rollup.extend(columns);
    }
    events.extend(["1 AS n", "e.at AS first_at", "e.at AS last_at"]);
    rollup.extend(["e.n AS n", "e.first_at AS first_at", "e.last_at AS last_at"]);
    (events.join(", "), rollup.join(", "))
}

/// The shape `summarise` should answer `f` grouped by `dims` from, if any: the narrowest
/// that holds the grouping and the filters (the tenants too, for a tenant-scoped caller or a
/// tenant filter), when no filter names an actor, a target or an address (a few events, which
/// the events' own indexes find faster than the window's roll-up rows could be read; in the
/// wide table, actions and statuses have indexes of their own, statuses in the actors' and
/// the target-status table too, and the narrower tables hold fewer rows). Time
/// (`Dim::Quarter`) comes from hour rows, each counted in its first quarter: right only for
/// hours that start local hours, which the caller checks.
pub fn answers(f: &AuditFilter, dims: &[Dim]) -> Option<Shape> {
    if !(f.targets.is_empty()
        && f.actors.is_empty()
        && f.client_ips.is_empty()
        && super::read::rollup_scope(f))
    {
        return None;
    }
    // Status and source are in every shape; the action, the role and the tenants are not.
    let filtered = [
        (!f.actions.is_empty()).then_some(Dim::Action),
        (!f.roles.is_empty()).then_some(Dim::Role),
    ];
    let tenants = !matches!(f.visible_to, TenantScope::All) || !f.tenants.is_empty();
    Shape::ALL.into_iter().find(|shape| {
        (shape.has_tenants() || !tenants)
            && dims
                .iter()
                .chain(filtered.iter().flatten())
                .all(|d| shape.holds(*d))
    })
}

/// `summarise` for `f` by `plan` (made for `f`'s window; with no `until`, the events after
/// the plan's last hour are all counted, as from the events alone): one statement, so the roll-ups and the
/// events not folded yet are read in one snapshot.
pub async fn summarise(
    store: &Store,
    f: &AuditFilter,
    dims: &[Dim],
    limit: Option<i64>,
    plan: &Plan,
    shape: Shape,
) -> Result<Summary, StoreError> {
    // (No actor names to look up: `answers` sends actor filters to the events.)
    let q = summarise_sql(store, f, dims, limit, plan, shape);
    run_summary(store, q, dims, Scans::Any).await
}

fn summarise_sql(
    store: &Store,
    f: &AuditFilter,
    dims: &[Dim],
    limit: Option<i64>,
    plan: &Plan,
    shape: Shape,
) -> GroupedSql {
    grouped(store.dialect(), dims, Rows::Rollup, limit, |q| {
        push_rows(q, store, f, dims, plan, shape)
    })
}

/// `(…) e`: the rows `f` selects in `plan`'s window, from `shape`'s roll-ups and the events
/// they do not hold, with the columns `dims` need beside `n`, `first_at` and `last_at` (an
/// event is a row of `n` 1).
pub(super) fn push_rows(
    q: &mut Sql,
    store: &Store,
    f: &AuditFilter,
    dims: &[Dim],
    plan: &Plan,
    shape: Shape,
) {
    let seal = &store.seal;
    let (event_columns, rollup_columns) = branch_columns(dims);
    let events = |q: &mut Sql, since: Option<i64>, until: Option<i64>| {
        q.push("SELECT ")
            .push(&event_columns)
            .push(" FROM audit_events e");
        let edge = AuditFilter {
            since,
            until,
            ..f.clone()
        };
        push_where_in(q, &edge, seal, Rows::Events);
    };
    let columns = "id, at, actor_kind, actor_id, actor_preview, actor_name, role, tenants, \
        action, status, source, client_ip, target_type, target_id, target_name";
    // Not folded yet, found by seq (few: the caller checked the folder keeps up; the planned
    // value gives the index its range, the state row read here keeps the count exact if a
    // fold commits meanwhile), and events from before the log if there are any: their time
    // is tested on the row. Materialised, so that neither database pushes the caller's
    // filters into it and reads a whole actor's or action's history through their indexes
    // instead.
    q.push("(WITH fresh AS MATERIALIZED (SELECT ")
        .push(columns)
        .push(" FROM audit_events WHERE seq >= ")
        .int(plan.folded_seq)
        .push(
            " AND seq >= (SELECT folded_seq FROM audit_tallies_progress WHERE id = 1) \
             AND at + 0 >= ",
        )
        .int(plan.from)
        .push(" AND at + 0 < ")
        .int(plan.to);
    if plan.unproven {
        q.push(" UNION ALL SELECT ")
            .push(columns)
            .push(" FROM audit_events WHERE seq IS NULL AND at + 0 >= ")
            .int(plan.from)
            .push(" AND at + 0 < ")
            .int(plan.to);
    }
    q.push(") ");
    for (span, a, b) in plan.ranges() {
        q.push("SELECT ")
            .push(&rollup_columns)
            .push(" FROM ")
            .push(shape.table())
            .push(" e");
        push_where_in(q, f, seal, Rows::Rollup);
        q.push(" AND e.span = ")
            .int(span)
            .push(" AND e.bucket >= ")
            .int(a)
            .push(" AND e.bucket < ")
            .int(b);
        q.push(" UNION ALL ");
    }
    q.push("SELECT ").push(&event_columns).push(" FROM fresh e");
    let unbounded = AuditFilter {
        since: None,
        until: None,
        ..f.clone()
    };
    push_where_in(q, &unbounded, seal, Rows::Events);
    // The partial hours at either end.
    // (With no `since`, whatever is dated before 1970, never folded.)
    let before = match f.since {
        Some(s) if s < plan.from => Some(Some(s)),
        Some(_) => None,
        None => Some(None),
    };
    if let Some(since) = before {
        q.push(" UNION ALL ");
        events(q, since, Some(plan.from));
    }
    q.push(" UNION ALL ");
    events(q, Some(plan.to), f.until);
    q.push(") e");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regrouped shape's key must be within its source's key (or the groups would split
    /// or merge differently from the events'), and each of its sides within the source's key
    /// or sides; its source must be read from the events.
    #[test]
    fn a_regrouped_shape_holds_only_its_sources_columns() {
        let columns = |text: &'static str| text.split(", ").collect::<Vec<_>>();
        let mut regrouped = 0;
        for shape in Shape::ALL {
            let Some(source) = shape.folded_from() else {
                continue;
            };
            regrouped += 1;
            assert_eq!(source.folded_from(), None, "{shape:?}");
            let key = columns(source.key());
            for c in columns(shape.key()) {
                assert!(
                    key.contains(&c),
                    "{shape:?}'s {c} is not in {source:?}'s key"
                );
            }
            for c in shape.sides() {
                assert!(
                    key.contains(c) || source.sides().contains(c),
                    "{shape:?}'s {c} is not in {source:?}"
                );
            }
        }
        assert_eq!(regrouped, 3);
    }
}
