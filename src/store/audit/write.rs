//! Writing the audit trail: events (and their tenant rows, and the per-quarter counts) inside
//! a caller's transaction through sqlx (changes), in transactions of their own on the
//! PostgreSQL writer's connection (`PgWriter`), or on a native SQLite connection (the
//! journal's mover).

use std::borrow::Cow;

use super::{counts, log};
use crate::domain::at_rest::Place;
use crate::domain::audit::AuditEvent;
use crate::domain::audit_leaf::{StoredEvent, tenant_set};
use crate::domain::merkle::Hash;
use crate::domain::tenant::ALL_TENANTS;
use crate::store::sql::{Sql, bind_args, nul_free};
use crate::store::{Seal, StoreError, Tx, TxConn, db, on_tx};

const INSERT_EVENTS_COLUMNS: &str = "INSERT INTO audit_events (at, actor_kind, actor_id, \
    actor_name, actor_preview, role, tenants, action, target_type, target_id, target_name, \
    status, reason, source, request_source, client_name, client_version, request_id, client_ip, \
    user_agent, channel, args, before_state, after_state, seq, leaf_hash, salt)";

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

/// The text columns of `e`'s row, from `actor_kind` to `after_state`, in
/// `INSERT_EVENTS_COLUMNS`'s order (sealed where `SealedColumns` says).
fn texts<'r>(e: &'r StoredEvent<'_>, sealed: &'r SealedColumns<'_>) -> [Option<&'r str>; TEXTS] {
    [
        Some(&*e.actor_kind),
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
    ]
}

const TEXTS: usize = 23;

/// `INSERT INTO audit_events … VALUES (…), (…)` for `rows` (every value bound).
fn push_insert(q: &mut Sql, seal: &Seal, rows: &[StoredEvent<'_>], leaves: &[Hash]) {
    q.push(INSERT_EVENTS_COLUMNS).push(" VALUES ");
    for (i, (e, leaf)) in rows.iter().zip(leaves).enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(").int(e.at);
        let sealed = SealedColumns::of(seal, e);
        for v in texts(e, &sealed) {
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

/// Writes a batch in a transaction of its own, through `append` (the PostgreSQL writer uses
/// `PgWriter`).
pub async fn write_batch(
    store: &crate::store::Store,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut tx = store.begin().await?;
    let ids = append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Longest a PostgreSQL batch may take before its connection is dropped: no caller waits
/// longer for its record (`WriterConfig::timeout`), and a connection hung on a dead peer would
/// otherwise hold up every batch after it.
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A kept connection unused this long is pinged before its next batch: a connection a
/// firewall or a vanished server dropped without a word would otherwise hang that batch until
/// `BATCH_TIMEOUT` and fail its calls.
const IDLE_PING: std::time::Duration = std::time::Duration::from_secs(30);
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The PostgreSQL audit writer's connection, its own and kept between batches (a pooled one
/// would be pinged on every return to the pool, a round trip per batch for nothing), with
/// when it was last used; and the head its last batch left.
///
/// A batch goes one of two ways. **Locked**, in three round trips: `BEGIN` with the sequencer
/// lock and the head (its row locked), the batch statement, `COMMIT`. **After the head it
/// left**, in one: when the writer's last locked batch found the head where its previous
/// batch had left it (nothing else wrote to the log in between), the next batch is placed
/// after that head and written by the batch statement alone, as a transaction of its own,
/// which writes only if the head's size, edge and epoch, and the database's key, are still
/// those (a compare-and-set on the head's row: when another writer's batch, a change's own
/// record or a rekey moved it, it writes nothing). Then the writer goes back to locked batches
/// until it again finds itself alone, and tries again no sooner than `backoff` later, twice as
/// long each time that happens in a row.
pub struct PgWriter {
    options: sqlx::postgres::PgConnectOptions,
    seal: Seal,
    conn: Option<(sqlx::PgConnection, std::time::Instant)>,
    /// The head this writer's last batch left.
    left: Option<log::Head>,
    /// Whether the last locked batch found the head where this writer's batch before it left it.
    alone: bool,
    /// How long after a batch found the head moved the writer waits before writing after the
    /// head again (zero once one lands), and until when.
    backoff: std::time::Duration,
    retry_at: Option<std::time::Instant>,
}

/// The first and the longest wait after a batch written after the head found it moved: replicas
/// writing at once soon try at most once a second, a lone writer whose own changes moved the
/// head is back within milliseconds.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);
const MOST_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a PostgreSQL batch failed, which says what may be done next.
#[derive(Debug)]
pub enum BatchError {
    /// The session ended (the connection failed, or the server closed it) before `COMMIT`
    /// was sent: nothing was written, and the batch may be tried on a fresh connection.
    Lost(StoreError),
    /// The database refused the write (an error, before `COMMIT`): nothing was written, and
    /// the batch's events may be tried one by one.
    Refused(StoreError),
    /// Anything else before `COMMIT` (no connection, the lock or the head refused, a key
    /// that no longer seals the database): nothing was written.
    Failed(StoreError),
    /// `COMMIT` failed, or the batch timed out, and what happened could not be settled: it may
    /// or may not be committed, so it is never written again.
    Unknown(StoreError),
}

impl From<BatchError> for StoreError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Lost(e)
            | BatchError::Refused(e)
            | BatchError::Failed(e)
            | BatchError::Unknown(e) => e,
        }
    }
}

/// Whether `e` ended the session: the connection failed, or the server closed it (a FATAL
/// or PANIC, as when a backend is ended or the server shuts down).
fn ended(e: &StoreError) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match e {
        StoreError::Unavailable(_) => true,
        StoreError::Database(sqlx::Error::Database(d)) => d
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|p| matches!(p.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        StoreError::Database(
            sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed,
        ) => true,
        _ => false,
    }
}

impl PgWriter {
    /// Connects at once, so a server whose writer cannot reach the database does not start.
    pub async fn connect(store: &crate::store::Store) -> Result<PgWriter, StoreError> {
        let options = store
            .writer_options()
            .ok_or_else(|| StoreError::Corrupt("the audit writer needs PostgreSQL".into()))?;
        let mut w = PgWriter {
            options,
            seal: store.seal.clone(),
            conn: None,
            left: None,
            alone: false,
            backoff: std::time::Duration::ZERO,
            retry_at: None,
        };
        w.connection().await?;
        Ok(w)
    }

    /// The kept connection (pinged first if it sat unused), or a new one.
    async fn connection(&mut self) -> Result<&mut sqlx::PgConnection, StoreError> {
        let stale = match &mut self.conn {
            Some((c, used)) if used.elapsed() >= IDLE_PING => {
                let ping = tokio::time::timeout(PING_TIMEOUT, sqlx::Connection::ping(c)).await;
                !matches!(ping, Ok(Ok(())))
            }
            _ => false,
        };
        if stale {
            self.conn = None;
        }
        if self.conn.is_none() {
            // A new session may reach another database than the last (a failover, a restore):
            // the head is read there before anything is placed after it.
            self.forget();
            let connect = crate::store::connect_writer(&self.options);
            let conn = tokio::time::timeout(BATCH_TIMEOUT, connect)
                .await
                .map_err(|_| timed_out())??;
            self.conn = Some((conn, std::time::Instant::now()));
        }
        let (conn, used) = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("audit writer connection".into()))?;
        *used = std::time::Instant::now();
        Ok(conn)
    }

    /// Writes `events` in a transaction of their own and returns their ids, in order: after
    /// the head this writer left when it is alone, otherwise locked. When the session ends
    /// before a locked batch's `COMMIT` is sent (a restart, an ended backend), nothing was
    /// written, and the batch is tried once more on a fresh connection; when a batch written
    /// after the head ends without an answer, `settle` finds out whether it landed.
    pub async fn write(&mut self, events: &[AuditEvent]) -> Result<Vec<i64>, BatchError> {
        // The connection first: a new one forgets the head, which is then read afresh.
        self.connection().await.map_err(BatchError::Failed)?;
        let due = self.retry_at.is_none_or(|t| std::time::Instant::now() >= t);
        if let Some(head) = self.left.clone().filter(|_| self.alone && due)
            && let Some(ids) = self.write_after(&head, events).await?
        {
            return Ok(ids);
        }
        let mut retried = false;
        loop {
            let seal = self.seal.clone();
            let conn = self.connection().await.map_err(BatchError::Failed)?;
            let written = tokio::time::timeout(BATCH_TIMEOUT, batch_locked(conn, &seal, events))
                .await
                .unwrap_or_else(|_| Err(BatchError::Unknown(timed_out())));
            let e = match written {
                Ok((ids, read, left)) => {
                    self.alone = self.left.as_ref() == Some(&read);
                    self.left = Some(left);
                    return Ok(ids);
                }
                Err(e) => e,
            };
            // The transaction may be open, aborted or of unknown outcome: the connection is
            // not used again (failures are rare, and a new connection takes milliseconds).
            self.conn = None;
            self.forget();
            match e {
                BatchError::Lost(e) if !retried => {
                    tracing::warn!(
                        error = %e,
                        source = ?std::error::Error::source(&e),
                        "audit writer's session ended before its batch was written; trying it on a new connection"
                    );
                    retried = true;
                }
                e => return Err(e),
            }
        }
    }

    /// Back to locked batches, with no head remembered.
    fn forget(&mut self) {
        self.left = None;
        self.alone = false;
    }

    /// `events` placed after `head` and written in one round trip: their ids, or `None` when
    /// the head moved (nothing was written; the caller writes them locked).
    async fn write_after(
        &mut self,
        head: &log::Head,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<i64>>, BatchError> {
        let seal = self.seal.clone();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let placed = log::place_after(head, &refs, seal.is_on()).map_err(BatchError::Failed)?;
        let conn = self.connection().await.map_err(BatchError::Failed)?;
        let written = tokio::time::timeout(
            BATCH_TIMEOUT,
            write_placed(conn, &seal, &refs, &placed, head),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        match written {
            Ok(ids) if ids.len() == events.len() => {
                self.left = Some(head.after(&placed));
                (self.backoff, self.retry_at) = (std::time::Duration::ZERO, None);
                Ok(Some(ids))
            }
            Ok(ids) if ids.is_empty() => {
                self.moved();
                Ok(None)
            }
            Ok(_) => {
                self.conn = None;
                self.forget();
                Err(BatchError::Failed(wrong_ids()))
            }
            Err(e) => self.unanswered(e, events, &placed).await,
        }
    }

    /// After a batch written after the head found it moved: locked batches for a while.
    fn moved(&mut self) {
        self.alone = false;
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MOST_BACKOFF);
        self.retry_at = Some(std::time::Instant::now() + self.backoff);
    }

    /// A batch written after the head that failed with `e`. The server's ERROR rolled it back:
    /// waiting for a lock, or a deadlock, says another writer holds the head (go locked);
    /// otherwise the rows were refused. Anything else (the session ended, no answer in time,
    /// an answer the driver could not read): it may have committed, and `settle` finds out.
    async fn unanswered(
        &mut self,
        e: StoreError,
        events: &[AuditEvent],
        placed: &log::Sequenced<'_>,
    ) -> Result<Option<Vec<i64>>, BatchError> {
        match rolled_back(&e) {
            Some(true) => {
                self.conn = None;
                self.forget();
                self.moved();
                Ok(None)
            }
            Some(false) => {
                self.conn = None;
                self.forget();
                Err(BatchError::Refused(e))
            }
            None => {
                tracing::warn!(
                    error = %e,
                    source = ?std::error::Error::source(&e),
                    "audit writer's batch ended without an answer; finding out whether it was written"
                );
                self.conn = None;
                self.forget();
                let Some(first) = placed.rows.first().map(|r| r.seq) else {
                    return Err(BatchError::Failed(wrong_ids()));
                };
                self.settle(events, first, &placed.leaves).await.map(Some)
            }
        }
    }

    /// After a batch written after the head ended without an answer: on a fresh connection,
    /// with the sequencer lock and the head's row held, reads what is at the batch's places.
    /// Its leaves there mean the batch landed: its ids. Otherwise it is written now, in that
    /// transaction, which moves the head: the old statement, if it still runs and holds the
    /// row, was waited for (and its rows would have been found); if it has not reached the
    /// row yet, it will find the head moved and write nothing. `Unknown` when this fails too.
    async fn settle(
        &mut self,
        events: &[AuditEvent],
        first_seq: i64,
        leaves: &[Hash],
    ) -> Result<Vec<i64>, BatchError> {
        let seal = self.seal.clone();
        let settled = match self.connection().await {
            Ok(conn) => tokio::time::timeout(
                BATCH_TIMEOUT,
                settle_on(conn, &seal, events, first_seq, leaves),
            )
            .await
            .unwrap_or_else(|_| Err(timed_out())),
            Err(e) => Err(e),
        };
        match settled {
            Ok((ids, left)) => {
                self.left = Some(left);
                Ok(ids)
            }
            Err(e) => {
                self.conn = None;
                Err(BatchError::Unknown(e))
            }
        }
    }
}

/// For a statement run as a transaction of its own: `Some` when the server answered it with
/// an ERROR, so nothing of it was committed (an ERROR during the statement or its commit rolls
/// it back), and then whether the cause was waiting (a lock timeout, a deadlock, a
/// serialization failure, a statement timeout) rather than the rows. `None` for anything else,
/// after which it may have committed.
fn rolled_back(e: &StoreError) -> Option<bool> {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    let StoreError::Database(sqlx::Error::Database(d)) = e else {
        return None;
    };
    let pg = d.try_downcast_ref::<PgDatabaseError>()?;
    if pg.severity() != PgSeverity::Error {
        return None;
    }
    let code = pg.code();
    // Serialization failure, deadlock, lock not available, statement timeout.
    Some(matches!(code, "40001" | "40P01" | "55P03" | "57014"))
}

fn timed_out() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "audit batch timed out",
    )))
}

fn wrong_ids() -> StoreError {
    StoreError::Corrupt("audit insert returned the wrong number of ids".into())
}

/// A locked batch in three round trips, where `append` in a pooled transaction of its own
/// takes eight, with the pool's pings: on a busy machine every round trip waits to be
/// scheduled on both sides, and those waits, more than the rows, bound the writer. `BEGIN`
/// with the sequencer lock and the head (`log::begin_sequenced_pg`); then the batch statement
/// (`write_placed`); then `COMMIT`. Returns the events' ids in order, the head read and the
/// head left.
async fn batch_locked(
    conn: &mut sqlx::PgConnection,
    seal: &Seal,
    events: &[AuditEvent],
) -> Result<(Vec<i64>, log::Head, log::Head), BatchError> {
    let refs: Vec<&AuditEvent> = events.iter().collect();
    let (head, placed) =
        log::begin_sequenced_pg(conn, seal, &refs)
            .await
            .map_err(|e| match ended(&e) {
                true => BatchError::Lost(e),
                false => BatchError::Failed(e),
            })?;
    let ids = write_placed(conn, seal, &refs, &placed, &head)
        .await
        .map_err(|e| match ended(&e) {
            true => BatchError::Lost(e),
            false => BatchError::Refused(e),
        })?;
    // The head's row is locked: nothing can have moved it.
    if ids.len() != events.len() {
        return Err(BatchError::Failed(wrong_ids()));
    }
    sqlx::Executor::execute(&mut *conn, "COMMIT")
        .await
        .map_err(|e| BatchError::Unknown(db(e)))?;
    let left = head.after(&placed);
    Ok((ids, head, left))
}

/// `settle`'s transaction: the ids of the batch placed at `first_seq` if its leaves are there,
/// or the batch written now after the head; and the head left.
async fn settle_on(
    conn: &mut sqlx::PgConnection,
    seal: &Seal,
    events: &[AuditEvent],
    first_seq: i64,
    leaves: &[Hash],
) -> Result<(Vec<i64>, log::Head), StoreError> {
    let refs: Vec<&AuditEvent> = events.iter().collect();
    let (head, placed) = log::begin_sequenced_pg(conn, seal, &refs).await?;
    let found: Vec<(i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, leaf_hash FROM audit_events WHERE seq >= $1 AND seq < $2 ORDER BY seq",
    )
    .bind(first_seq)
    .bind(first_seq + events.len() as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let landed = found.len() == leaves.len()
        && found
            .iter()
            .zip(leaves)
            .all(|((_, stored), leaf)| stored.as_deref() == Some(&leaf[..]));
    let (ids, left) = if landed {
        (found.into_iter().map(|(id, _)| id).collect(), head)
    } else {
        let ids = write_placed(conn, seal, &refs, &placed, &head).await?;
        if ids.len() != events.len() {
            return Err(wrong_ids());
        }
        let left = head.after(&placed);
        (ids, left)
    };
    sqlx::Executor::execute(&mut *conn, "COMMIT")
        .await
        .map_err(db)?;
    Ok((ids, left))
}

/// The batch statement (`WRITE_BATCH_PG`: one of fixed text, the rows bound as arrays, so it
/// is prepared once per connection) for `placed`, written after `head`: what `append` writes,
/// the events, their tenant rows, the counts, the head and the completed chunks, if the head
/// is still `head`. The ids in place order; none when it was not.
async fn write_placed(
    conn: &mut sqlx::PgConnection,
    seal: &Seal,
    events: &[&AuditEvent],
    placed: &log::Sequenced<'_>,
    head: &log::Head,
) -> Result<Vec<i64>, StoreError> {
    let n = placed.rows.len();
    let mut at = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut salt = Vec::with_capacity(n);
    let mut columns: [Vec<Option<String>>; TEXTS] = std::array::from_fn(|_| Vec::with_capacity(n));
    let owned = |v: Option<&str>| v.map(|t| nul_free(t).into_owned());
    let (mut tenant_seq, mut tenant) = (Vec::new(), Vec::new());
    for (row, e) in placed.rows.iter().zip(events) {
        let sealed = SealedColumns::of(seal, row);
        for (column, v) in columns.iter_mut().zip(texts(row, &sealed)) {
            column.push(owned(v));
        }
        at.push(row.at);
        seq.push(row.seq);
        salt.push(owned(sealed.salt.as_deref()));
        if !is_all(&e.tenants) {
            for t in tenant_set(&e.tenants) {
                tenant_seq.push(row.seq);
                tenant.push(nul_free(t).into_owned());
            }
        }
    }
    let leaves: Vec<Vec<u8>> = placed.leaves.iter().map(|h| h.to_vec()).collect();
    let (chunk_idx, chunk_hash): (Vec<i64>, Vec<Vec<u8>>) =
        placed.chunks.iter().map(|(i, h)| (*i, h.to_vec())).unzip();
    let counts = counts::columns(events);
    let mut q = sqlx::query_scalar::<_, i64>(&WRITE_BATCH_PG).bind(at);
    for column in columns {
        q = q.bind(column);
    }
    q.bind(seq)
        .bind(leaves)
        .bind(salt)
        .bind(tenant_seq)
        .bind(tenant)
        .bind(counts.0)
        .bind(counts.1)
        .bind(counts.2)
        .bind(counts.3)
        .bind(counts.4)
        .bind(counts.5)
        .bind(placed.frontier.size() as i64)
        .bind(placed.frontier.to_bytes())
        .bind(placed.updated_at)
        .bind(chunk_idx)
        .bind(chunk_hash)
        .bind(head.size)
        .bind(head.epoch)
        .bind(seal.key().map(|k| k.id()))
        .bind(&head.frontier)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)
}

/// The PostgreSQL writer's one statement (see `write_placed`): `$1` the times, `$2`–`$24` the
/// text columns, `$25`–`$27` the places, leaves and salts; `$28`–`$29` the tenant rows by
/// place; `$30`–`$35` the count rows; `$36`–`$38` the new head; `$39`–`$40` the chunks;
/// `$41`–`$44` the size, epoch and frontier the head must still have and the key the
/// database must still be sealed with (as of the statement's start; a rekey's moved epoch is
/// what a rekey running meanwhile is caught by): every row is written only if the head's
/// update found them so (else no id is returned). Ids in place order.
static WRITE_BATCH_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let texts: Vec<String> = (2..2 + TEXTS).map(|i| format!("${i}::text[]")).collect();
    format!(
        "WITH head AS (UPDATE audit_head SET size = $36, frontier = $37, \
           updated_at = CASE WHEN updated_at > $38 THEN updated_at ELSE $38 END \
           WHERE id = 1 AND size = $41 AND frontier = $44 AND epoch = $42 AND (SELECT value FROM settings \
             WHERE name = 'encryption_key_id') IS NOT DISTINCT FROM $43::text RETURNING 1), \
         ins AS ({INSERT_EVENTS_COLUMNS} SELECT * FROM UNNEST($1::bigint[], {texts}, \
         $25::bigint[], $26::bytea[], $27::text[]) WHERE EXISTS (SELECT 1 FROM head) \
         RETURNING id, seq), \
         ten AS (INSERT INTO audit_tenants (event_id, tenant) SELECT ins.id, t.tenant \
           FROM ins JOIN UNNEST($28::bigint[], $29::text[]) AS t(seq, tenant) ON t.seq = ins.seq), \
         cnt AS (INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at) \
           SELECT * FROM UNNEST($30::bigint[], $31::text[], $32::text[], $33::bigint[], \
           $34::bigint[], $35::bigint[]) WHERE EXISTS (SELECT 1 FROM head){on_conflict}), \
         chunk AS (INSERT INTO audit_chunks (idx, hash) SELECT * FROM UNNEST($39::bigint[], \
           $40::bytea[]) WHERE EXISTS (SELECT 1 FROM head)) \
         SELECT id FROM ins ORDER BY seq",
        texts = texts.join(", "),
        on_conflict = counts::ON_CONFLICT,
    )
});

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
