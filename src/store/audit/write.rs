//! Writing the audit trail: events (and their tenant rows, and the per-quarter counts) inside
//! a caller's transaction, through sqlx (changes, the PostgreSQL writer) or on a native
//! SQLite connection (the journal's mover).

use serde_json::Value;

use super::counts;
use crate::domain::audit::AuditEvent;
use crate::domain::tenant::ALL_TENANTS;
use crate::store::sql::{Sql, bind_args, nul_free};
use crate::store::{StoreError, Tx, db, micros, on_tx};

const INSERT_EVENTS: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, \
    role, tenants, action, target_type, target_id, status, reason, source, request_source, \
    client_name, client_version, request_id, client_ip, user_agent, channel, args, \
    before_state, after_state) VALUES ";

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
            e.channel.as_deref(),
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
    counts::add(tx, &events.iter().collect::<Vec<_>>()).await?;
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
    client_name, client_version, request_id, client_ip, user_agent, channel, args, \
    before_state, after_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

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
/// built per batch, no copies). The same rows as `append`, counts included.
pub fn insert_sqlite<'a>(
    conn: &rusqlite::Connection,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<Vec<i64>, StoreError> {
    let events: Vec<&AuditEvent> = events.into_iter().collect();
    let mut ids = Vec::with_capacity(events.len());
    let mut insert = conn.prepare_cached(INSERT_ONE)?;
    let mut tenant = conn.prepare_cached(INSERT_TENANT)?;
    for e in events.iter().copied() {
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
            opt_text(e.channel.as_deref()),
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
    counts::add_sqlite(conn, &events)?;
    Ok(ids)
}

/// Writes a batch in a transaction of its own (the PostgreSQL writer's path).
pub async fn write_batch(
    store: &crate::store::Store,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut tx = store.begin().await?;
    let ids = append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(ids)
}
