//! Writing the audit trail: events (and their tenant rows, and the per-quarter counts) inside
//! a caller's transaction, through sqlx (changes, the PostgreSQL writer) or on a native
//! SQLite connection (the journal's mover).

use std::borrow::Cow;

use super::{counts, log};
use crate::domain::at_rest::Place;
use crate::domain::audit::AuditEvent;
use crate::domain::audit_leaf::{StoredEvent, tenant_set};
use crate::domain::merkle::Hash;
use crate::domain::tenant::ALL_TENANTS;
use crate::store::sql::{Sql, bind_args, nul_free};
use crate::store::{Seal, StoreError, Tx, TxConn, db, on_tx};

const INSERT_EVENTS: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_name, \
    actor_preview, role, tenants, action, target_type, target_id, target_name, status, reason, \
    source, request_source, client_name, client_version, request_id, client_ip, user_agent, \
    channel, args, before_state, after_state, seq, leaf_hash, salt) VALUES ";

/// Most rows in one INSERT: bounds the number of distinct statements the cache must hold.
pub const MAX_ROWS_PER_STATEMENT: usize = 64;

fn is_all(tenants: &[String]) -> bool {
    tenants.iter().any(|t| t == ALL_TENANTS)
}

fn opt(q: &mut Sql, v: Option<&str>) {
    match v {
        Some(t) => q.text(t),
        None => q.push("NULL"),
    };
}

/// Every sealed column of `audit_events`, its place, and whether it is sealed for equality
/// (what `SealedColumns` writes and `keyward rekey` re-seals).
pub(crate) const SEALED: &[(&str, Place, bool)] = &[
    ("reason", Place::AuditReason, false),
    ("salt", Place::AuditSalt, false),
    ("client_ip", Place::AuditClientIp, true),
    ("user_agent", Place::AuditUserAgent, true),
    ("args", Place::AuditArgs, false),
    ("before_state", Place::AuditBefore, false),
    ("after_state", Place::AuditAfter, false),
];

/// The columns `seal` hides, as stored: client IP and User-Agent sealed for equality (filters,
/// grouping and novelty compare them); the reason (it can quote arguments), arguments, states
/// and the leaf's salt with a random nonce.
pub(crate) struct SealedColumns<'a> {
    pub reason: Option<Cow<'a, str>>,
    pub client_ip: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub args: Option<Cow<'a, str>>,
    pub before_state: Option<Cow<'a, str>>,
    pub after_state: Option<Cow<'a, str>>,
    pub salt: Option<Cow<'a, str>>,
}

impl<'a> SealedColumns<'a> {
    pub(crate) fn of(seal: &Seal, e: &'a StoredEvent<'_>) -> Self {
        SealedColumns {
            reason: seal.text_opt(Place::AuditReason, e.reason.as_deref()),
            salt: seal.text_opt(Place::AuditSalt, e.salt.as_deref()),
            client_ip: seal.eq_opt(Place::AuditClientIp, e.client_ip.as_deref()),
            user_agent: seal.eq_opt(Place::AuditUserAgent, e.user_agent.as_deref()),
            args: seal.text_opt(Place::AuditArgs, e.args.as_deref()),
            before_state: seal.text_opt(Place::AuditBefore, e.before_state.as_deref()),
            after_state: seal.text_opt(Place::AuditAfter, e.after_state.as_deref()),
        }
    }
}

/// `INSERT INTO audit_events … VALUES (…), (…)` for `rows` (every value bound).
fn push_insert(q: &mut Sql, seal: &Seal, rows: &[StoredEvent<'_>], leaves: &[Hash]) {
    q.push(INSERT_EVENTS);
    for (i, (e, leaf)) in rows.iter().zip(leaves).enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(").int(e.at).push(", ").text(&e.actor_kind);
        let sealed = SealedColumns::of(seal, e);
        for v in [
            e.actor_id.as_deref(),
            e.actor_name.as_deref(),
            e.actor_preview.as_deref(),
            e.role.as_deref(),
            Some(&*e.tenants),
            Some(&*e.action),
            e.target_type.as_deref(),
            e.target_id.as_deref(),
            e.target_name.as_deref(),
            Some(&*e.status),
            sealed.reason.as_deref(),
            Some(&*e.source),
            e.request_source.as_deref(),
            e.client_name.as_deref(),
            e.client_version.as_deref(),
            e.request_id.as_deref(),
            sealed.client_ip.as_deref(),
            sealed.user_agent.as_deref(),
            e.channel.as_deref(),
            sealed.args.as_deref(),
            sealed.before_state.as_deref(),
            sealed.after_state.as_deref(),
        ] {
            q.push(", ");
            opt(q, v);
        }
        q.push(", ").int(e.seq).push(", ").bytes(leaf).push(", ");
        opt(q, sealed.salt.as_deref());
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
    let refs: Vec<&AuditEvent> = events.iter().collect();
    let placed = log::sequence(tx, &refs).await?;
    let mut ids = Vec::with_capacity(events.len());
    for (chunk, leaves) in placed
        .rows
        .chunks(MAX_ROWS_PER_STATEMENT)
        .zip(placed.leaves.chunks(MAX_ROWS_PER_STATEMENT))
    {
        let mut q = Sql::default();
        push_insert(&mut q, &tx.seal, chunk, leaves);
        match &mut tx.conn {
            TxConn::Sqlite(t) => {
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
            TxConn::Postgres(t) => {
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
    counts::add(tx, &refs).await?;
    log::advance(tx, &placed).await?;
    Ok(ids)
}

/// Tenant rows, for events scoped to named tenants. Events concerning all tenants ("*", most of
/// them) need none: queries test the events' own `tenants` column for that case.
fn tenant_rows(ids: &[i64], events: &[AuditEvent]) -> Vec<Sql> {
    let pairs: Vec<(i64, &str)> = ids
        .iter()
        .zip(events)
        .filter(|(_, e)| !is_all(&e.tenants))
        .flat_map(|(id, e)| tenant_set(&e.tenants).into_iter().map(move |t| (*id, t)))
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
        if matches!(tx.conn, TxConn::Sqlite(_)) {
            q.anonymous();
        }
        on_tx!(tx, c => bind_args!(sqlx::query(&q.text), q).execute(c).await.map(|_| ()).map_err(db))?;
    }
    Ok(())
}

/// One event's row, every value bound: the single-row statement the SQLite writer prepares
/// once and runs per event.
const INSERT_ONE: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, actor_name, \
    actor_preview, role, tenants, action, target_type, target_id, target_name, status, reason, \
    source, request_source, client_name, client_version, request_id, client_ip, user_agent, \
    channel, args, before_state, after_state, seq, leaf_hash, salt) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const INSERT_TENANT: &str = "INSERT INTO audit_tenants (event_id, tenant) VALUES (?, ?)";

/// Writes a batch in one IMMEDIATE transaction of its own on a native SQLite connection.
pub fn write_batch_sqlite(
    conn: &mut rusqlite::Connection,
    seal: &Seal,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let ids = insert_sqlite(&tx, seal, events)?;
    tx.commit()?;
    Ok(ids)
}

/// Inserts `events` (and their tenant rows) on a native SQLite connection, inside whatever
/// transaction the caller holds, and returns their ids in order: one prepared single-row
/// statement run per event, its values bound straight from the event (no statement text
/// built per batch, no copies). The same rows as `append`, counts included.
pub fn insert_sqlite<'a>(
    conn: &rusqlite::Connection,
    seal: &Seal,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<Vec<i64>, StoreError> {
    let events: Vec<&AuditEvent> = events.into_iter().collect();
    let mut ids = Vec::with_capacity(events.len());
    let mut insert = conn.prepare_cached(INSERT_ONE)?;
    let mut tenant = conn.prepare_cached(INSERT_TENANT)?;
    let placed = log::sequence_sqlite(conn, &events, seal)?;
    for ((e, row), leaf) in events.iter().zip(&placed.rows).zip(&placed.leaves) {
        let sealed = SealedColumns::of(seal, row);
        let written = insert.execute(rusqlite::params![
            row.at,
            row.actor_kind,
            row.actor_id,
            row.actor_name,
            row.actor_preview,
            row.role,
            row.tenants,
            row.action,
            row.target_type,
            row.target_id,
            row.target_name,
            row.status,
            sealed.reason,
            row.source,
            row.request_source,
            row.client_name,
            row.client_version,
            row.request_id,
            sealed.client_ip,
            sealed.user_agent,
            row.channel,
            sealed.args,
            sealed.before_state,
            sealed.after_state,
            row.seq,
            &leaf[..],
            sealed.salt,
        ])?;
        if written != 1 {
            return Err(StoreError::Corrupt(
                "audit insert wrote the wrong number of rows".into(),
            ));
        }
        let id = conn.last_insert_rowid();
        if !is_all(&e.tenants) {
            for t in tenant_set(&e.tenants) {
                tenant.execute(rusqlite::params![id, nul_free(t)])?;
            }
        }
        ids.push(id);
    }
    counts::add_sqlite(conn, &events)?;
    log::advance_sqlite(conn, &placed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Arg;

    #[test]
    fn an_event_names_each_of_its_tenants_once() {
        let mut e = crate::domain::audit::sample_event("");
        e.tenants = vec!["globex".into(), "acme".into(), "globex".into()];
        let all = AuditEvent {
            tenants: vec![ALL_TENANTS.into()],
            ..e.clone()
        };
        let rows = tenant_rows(&[7, 8], &[e, all]);
        assert_eq!(rows.len(), 1);
        let args: Vec<String> = rows[0]
            .args
            .iter()
            .map(|a| match a {
                Arg::Int(i) => i.to_string(),
                Arg::Text(t) => t.clone(),
                Arg::Bytes(_) => "bytes".into(),
            })
            .collect();
        assert_eq!(
            args,
            ["7", "acme", "7", "globex"],
            "sorted, once each; '*' has none"
        );
    }
}
