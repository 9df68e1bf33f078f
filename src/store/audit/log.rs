//! The sequencer: gives each event written its gapless place in the log and its leaf hash, in
//! the transaction that writes it, and advances the tree head once per batch. Serialised per
//! database: on SQLite by the write lock every writing transaction takes up front (`BEGIN
//! IMMEDIATE`); on PostgreSQL by a transaction-scoped advisory lock taken just before the
//! head is read, with the head's row locked, so one replica's batch waits for another's to
//! commit. A writer alone on the database places its batch after the head it left instead,
//! and its one statement compares and sets the head's row (`Head`, `write.rs`).

use crate::domain::audit::AuditEvent;
use crate::domain::audit_leaf::StoredEvent;
use crate::domain::merkle::{Frontier, Hash};
use crate::store::{StoreError, Tx, TxConn, db, on_tx};

/// The advisory lock key that serialises appends to the log on PostgreSQL ("kwlog").
pub const SEQUENCER_LOCK: i64 = 0x006b_776c_6f67;

/// A batch placed in the log, ready to insert.
pub struct Sequenced<'a> {
    /// The events' rows, borrowing their text.
    pub rows: Vec<StoredEvent<'a>>,
    pub leaves: Vec<Hash>,
    /// Chunks the batch completed: `(chunk index, hash)`.
    pub chunks: Vec<(i64, Hash)>,
    pub frontier: Frontier,
    /// The newest event time in the batch (micros): when the log last grew.
    pub updated_at: i64,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("audit log head: {e}"))
}

/// Places `events` after the head `(size, frontier)`; `salted` (encryption at rest) gives each
/// a random salt in its leaf.
fn place<'a>(
    size: i64,
    frontier: &[u8],
    events: &[&'a AuditEvent],
    salted: bool,
) -> Result<Sequenced<'a>, StoreError> {
    let size = u64::try_from(size).map_err(corrupt)?;
    let mut frontier = Frontier::from_bytes(size, frontier).map_err(corrupt)?;
    let mut out = Sequenced {
        rows: Vec::with_capacity(events.len()),
        leaves: Vec::with_capacity(events.len()),
        chunks: Vec::new(),
        frontier: Frontier::default(),
        updated_at: 0,
    };
    let mut preimage = Vec::with_capacity(1024);
    for e in events {
        let mut row = StoredEvent::of(e, frontier.size() as i64);
        if salted {
            // 131 random bits: no guess of the event's sealed values can be tested against
            // its leaf hash without opening the salt.
            row.salt = Some(crate::domain::encoding::random_base62(22).into());
        }
        let leaf = row.leaf_hash_in(&mut preimage);
        if let Some((idx, h)) = frontier.push(leaf) {
            out.chunks.push((idx as i64, h));
        }
        out.updated_at = out.updated_at.max(row.at);
        out.rows.push(row);
        out.leaves.push(leaf);
    }
    out.frontier = frontier;
    Ok(out)
}

const INSERT_CHUNK: &str = "INSERT INTO audit_chunks (idx, hash) VALUES ($1, $2)";
/// The head, and the key the database is sealed with now: a batch sealed under another key
/// (a rekey ran while this process kept its old one) must not be written.
const READ_HEAD: &str = "SELECT size, frontier, \
    (SELECT value FROM settings WHERE name = 'encryption_key_id') FROM audit_head WHERE id = 1";
const WRITE_HEAD: &str = "UPDATE audit_head SET size = $1, frontier = $2, \
    updated_at = CASE WHEN updated_at > $3 THEN updated_at ELSE $3 END WHERE id = 1";
/// Takes the sequencer lock (PostgreSQL) and places `events` after the head, inside `tx`.
pub async fn sequence<'a>(
    tx: &mut Tx,
    events: &[&'a AuditEvent],
) -> Result<Sequenced<'a>, StoreError> {
    let (size, frontier, key_id): (i64, Vec<u8>, Option<String>) = match &mut tx.conn {
        TxConn::Sqlite(t) => sqlx::query_as(READ_HEAD)
            .fetch_one(&mut **t)
            .await
            .map_err(db)?,
        TxConn::Postgres(t) => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK)
                .execute(&mut **t)
                .await
                .map_err(db)?;
            // The row locked, as the writer's batches lock it (`READ_HEAD_PG`).
            let (size, frontier, key_id, _epoch): (i64, Vec<u8>, Option<String>, i64) =
                sqlx::query_as(READ_HEAD_PG)
                    .fetch_one(&mut **t)
                    .await
                    .map_err(db)?;
            (size, frontier, key_id)
        }
    };
    crate::store::seal::still_current(&tx.seal, key_id.as_deref())?;
    place(size, &frontier, events, tx.seal.is_on())
}

/// The head as a PostgreSQL writer last read or left it: where its next batch goes when no
/// other writer moved it meanwhile. `epoch` counts the rekeys (each moves it, in the
/// transaction that changes the key), so a batch placed after a remembered head can only
/// land while the key it was sealed under is still the database's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub size: i64,
    pub frontier: Vec<u8>,
    pub epoch: i64,
}

impl Head {
    /// The head once `placed` is written after this one.
    pub fn after(&self, placed: &Sequenced<'_>) -> Head {
        Head {
            size: placed.frontier.size() as i64,
            frontier: placed.frontier.to_bytes(),
            epoch: self.epoch,
        }
    }
}

/// Places `events` after `head`, as `sequence` places them after the head it reads.
pub fn place_after<'a>(
    head: &Head,
    events: &[&'a AuditEvent],
    salted: bool,
) -> Result<Sequenced<'a>, StoreError> {
    place(head.size, &head.frontier, events, salted)
}

/// `begin_sequenced_pg`'s message, built once. Read committed whatever the database's
/// default: a snapshot taken before the lock was held (repeatable read) could miss another
/// replica's batch. The simple protocol returns text, and the driver reads bytea only in hex,
/// whatever `bytea_output` the database sets. The lock is waited for less long than the writer
/// waits for a batch: a batch given up on leaves no backend queued on the lock behind it.
static BEGIN_SEQUENCED_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL bytea_output = 'hex'; \
         SET LOCAL lock_timeout = '9s'; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK}); \
         {READ_HEAD_PG}"
    )
});

/// The head with its epoch, its row locked (PostgreSQL): a writer placing a batch after a
/// remembered head (`Head`) compares and sets the row, so it waits for this transaction and
/// then finds the head moved.
const READ_HEAD_PG: &str = "SELECT size, frontier, \
    (SELECT value FROM settings WHERE name = 'encryption_key_id'), epoch \
    FROM audit_head WHERE id = 1 FOR UPDATE";

/// The PostgreSQL writer's first round trip: `BEGIN`, the sequencer lock and the head in one
/// message of the simple protocol, which runs them in order, each statement with a snapshot
/// of its own: the head is read once the lock is held. Then places `events` after it. The
/// transaction stays open on `conn`; the caller ends it. Returns the head read, too.
pub async fn begin_sequenced_pg<'a>(
    conn: &mut sqlx::PgConnection,
    seal: &crate::store::Seal,
    events: &[&'a AuditEvent],
) -> Result<(Head, Sequenced<'a>), StoreError> {
    use sqlx::{Executor, Row};
    // A statement text without arguments goes as a simple query.
    let rows = conn
        .fetch_all(BEGIN_SEQUENCED_PG.as_str())
        .await
        .map_err(db)?;
    let row = rows
        .last()
        .filter(|r| r.len() == 4)
        .ok_or_else(|| corrupt("no head row"))?;
    let head = Head {
        size: row.try_get(0).map_err(db)?,
        frontier: row.try_get(1).map_err(db)?,
        epoch: row.try_get(3).map_err(db)?,
    };
    let key_id: Option<String> = row.try_get(2).map_err(db)?;
    crate::store::seal::still_current(seal, key_id.as_deref())?;
    let placed = place_after(&head, events, seal.is_on())?;
    Ok((head, placed))
}

/// Records the new head and the completed chunks, inside `tx`.
pub async fn advance(tx: &mut Tx, s: &Sequenced<'_>) -> Result<(), StoreError> {
    let size = s.frontier.size() as i64;
    let edge = s.frontier.to_bytes();
    // Numbered placeholders and CASE read the same on both backends.
    on_tx!(tx, c => sqlx::query(WRITE_HEAD)
        .bind(size)
        .bind(edge)
        .bind(s.updated_at)
        .execute(&mut *c)
        .await
        .map(|_| ())
        .map_err(db))?;
    for (idx, h) in &s.chunks {
        on_tx!(tx, c => sqlx::query(INSERT_CHUNK)
            .bind(idx)
            .bind(&h[..])
            .execute(&mut *c)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    Ok(())
}

/// `sequence` on the SQLite writer's native connection (it holds the write lock already).
pub fn sequence_sqlite<'a>(
    conn: &rusqlite::Connection,
    events: &[&'a AuditEvent],
    seal: &crate::store::Seal,
) -> Result<Sequenced<'a>, StoreError> {
    let (size, frontier, key_id): (i64, Vec<u8>, Option<String>) = conn
        .prepare_cached(READ_HEAD)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    crate::store::seal::still_current(seal, key_id.as_deref())?;
    place(size, &frontier, events, seal.is_on())
}

/// `advance` on the SQLite writer's native connection.
pub fn advance_sqlite(conn: &rusqlite::Connection, s: &Sequenced<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(WRITE_HEAD)?.execute(rusqlite::params![
        s.frontier.size() as i64,
        s.frontier.to_bytes(),
        s.updated_at
    ])?;
    let mut chunk = conn.prepare_cached(INSERT_CHUNK)?;
    for (idx, h) in &s.chunks {
        chunk.execute(rusqlite::params![idx, &h[..]])?;
    }
    Ok(())
}

/// The advisory lock whose holder signs checkpoints on PostgreSQL ("kwsig").
const SIGNER_LOCK: i64 = 0x006b_7773_6967;

/// Held while this process is the log's signer.
pub enum SignerLock {
    /// SQLite: every process on the file may sign; the write lock orders their checkpoints.
    Shared,
    /// PostgreSQL: the session holding the advisory lock (released when it closes).
    Held(sqlx::PgConnection),
}

/// Tries to become the signer; `None` when another replica is.
pub async fn try_signer_lock(
    store: &crate::store::Store,
) -> Result<Option<SignerLock>, StoreError> {
    match &store.db {
        crate::store::Db::Sqlite(_) => Ok(Some(SignerLock::Shared)),
        crate::store::Db::Postgres(pool) => {
            let mut conn = pool.acquire().await.map_err(db)?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(SIGNER_LOCK)
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
            // Kept out of the pool: the lock lives as long as this session.
            Ok(got.then(|| SignerLock::Held(conn.detach())))
        }
    }
}
