//! Reading the log back for proofs and verification: the head, chunk hashes, leaf hashes,
//! the stored rows, and the signed checkpoints.

use std::collections::HashMap;

use sqlx::Row;

use std::borrow::Cow;

use crate::domain::audit_leaf::StoredEvent;
use crate::domain::merkle::{self, CHUNK, CHUNK_LEVEL, Hash, Subtrees};
use crate::store::{Store, StoreError, db, on_pool};

/// The tree head as stored.
#[derive(Debug, Clone)]
pub struct Head {
    pub size: u64,
    pub frontier: Vec<u8>,
    /// When the log last grew (micros; 0 when never).
    pub updated_at: i64,
    /// Events written before the log existed, and the highest id among them.
    pub unproven: i64,
    pub unproven_ids: i64,
    /// Events below this seq had their bodies removed by retention.
    pub pruned_below: u64,
    /// The newest pruned event's time (micros; 0 when nothing was pruned).
    pub pruned_until: i64,
}

const HEAD: &str = "SELECT size, frontier, updated_at, unproven, unproven_ids, pruned_below, \
    pruned_until FROM audit_head WHERE id = 1";

fn head_of<R: Row>(r: &R) -> Result<Head, sqlx::Error>
where
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    Ok(Head {
        size: r.try_get::<i64, _>("size")?.max(0) as u64,
        frontier: r.try_get("frontier")?,
        updated_at: r.try_get("updated_at")?,
        unproven: r.try_get("unproven")?,
        unproven_ids: r.try_get("unproven_ids")?,
        pruned_below: r.try_get::<i64, _>("pruned_below")?.max(0) as u64,
        pruned_until: r.try_get("pruned_until")?,
    })
}

pub async fn head(store: &Store) -> Result<Head, StoreError> {
    on_pool!(store, p => {
        let r = sqlx::query(HEAD).fetch_one(p).await.map_err(db)?;
        head_of(&r).map_err(db)
    })
}

fn hash_of(v: &[u8]) -> Option<Hash> {
    <Hash>::try_from(v).ok()
}

/// `(position, hash)` pairs a statement reads for `[from, to)`, by position.
async fn hashes(
    store: &Store,
    sql: &str,
    from: u64,
    to: u64,
) -> Result<HashMap<u64, Hash>, StoreError> {
    let rows: Vec<(i64, Option<Vec<u8>>)> = on_pool!(store, p => sqlx::query_as(sql)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(p)
        .await
        .map_err(db))?;
    Ok(rows
        .into_iter()
        .filter_map(|(i, h)| Some((i as u64, hash_of(&h?)?)))
        .collect())
}

/// Stored chunk hashes with idx in `[from, to)`, by idx.
pub async fn chunks(store: &Store, from: u64, to: u64) -> Result<HashMap<u64, Hash>, StoreError> {
    const SQL: &str = "SELECT idx, hash FROM audit_chunks WHERE idx >= $1 AND idx < $2";
    hashes(store, SQL, from, to).await
}

/// Stored leaf hashes with seq in `[from, to)`, by seq.
pub async fn leaves(store: &Store, from: u64, to: u64) -> Result<HashMap<u64, Hash>, StoreError> {
    const SQL: &str = "SELECT seq, leaf_hash FROM audit_events WHERE seq >= $1 AND seq < $2";
    hashes(store, SQL, from, to).await
}

/// A piece of the tree storage does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("the hash of events {0}..{1} is missing")]
    Chunk(u64, u64),
    #[error("event {0} is missing")]
    Leaf(u64),
}

/// The tree as storage holds it: every completed chunk's hash, and the leaf hashes of the
/// chunks loaded (always the last, incomplete one). Upper levels are built once, in memory.
pub struct StoredTree {
    pub size: u64,
    /// levels[0] = chunk hashes; levels[i] = pairs of levels[i - 1].
    levels: Vec<Vec<Option<Hash>>>,
    leaves: HashMap<u64, Hash>,
}

impl StoredTree {
    /// Loads the tree of `size` leaves, with the leaf hashes of the chunks holding the given
    /// sequence numbers (and of the last, incomplete chunk).
    pub async fn load(
        store: &Store,
        size: u64,
        with_leaves_at: &[u64],
    ) -> Result<Self, StoreError> {
        let full = size / CHUNK;
        let stored = chunks(store, 0, full).await?;
        let base: Vec<Option<Hash>> = (0..full).map(|i| stored.get(&i).copied()).collect();
        let mut levels = vec![base];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next = prev
                .chunks_exact(2)
                .map(|p| Some(merkle::node_hash(p[0].as_ref()?, p[1].as_ref()?)))
                .collect();
            levels.push(next);
        }
        let mut want: Vec<u64> = with_leaves_at.iter().map(|s| s / CHUNK).collect();
        if !size.is_multiple_of(CHUNK) {
            want.push(full);
        }
        want.sort_unstable();
        want.dedup();
        let mut leaves = HashMap::new();
        for c in want {
            let to = ((c + 1) * CHUNK).min(size);
            leaves.extend(self::leaves(store, c * CHUNK, to).await?);
        }
        Ok(StoredTree {
            size,
            levels,
            leaves,
        })
    }
}

impl Subtrees for StoredTree {
    type Error = Missing;
    fn perfect(&self, start: u64, level: u32) -> Result<Hash, Missing> {
        if level >= CHUNK_LEVEL {
            let l = (level - CHUNK_LEVEL) as usize;
            let idx = (start >> level) as usize;
            return self
                .levels
                .get(l)
                .and_then(|v| v.get(idx).copied().flatten())
                .or_else(|| {
                    // Not built from stored chunks: combine the halves (which may reach leaves).
                    let half = 1u64 << (level - 1);
                    Some(merkle::node_hash(
                        &self.perfect(start, level - 1).ok()?,
                        &self.perfect(start + half, level - 1).ok()?,
                    ))
                })
                .ok_or(Missing::Chunk(start, start + (1 << level)));
        }
        if level == 0 {
            return self.leaves.get(&start).copied().ok_or(Missing::Leaf(start));
        }
        let half = 1u64 << (level - 1);
        Ok(merkle::node_hash(
            &self.perfect(start, level - 1)?,
            &self.perfect(start + half, level - 1)?,
        ))
    }
}

const ROW_COLUMNS: &str = "seq, at, actor_kind, actor_id, actor_name, actor_preview, role, \
    tenants, action, target_type, target_id, target_name, status, reason, source, \
    request_source, client_name, client_version, request_id, client_ip, user_agent, channel, \
    args, before_state, after_state, salt, leaf_hash";

fn stored_of<R: Row>(r: &R) -> Result<(StoredEvent<'static>, Option<Vec<u8>>), sqlx::Error>
where
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let opt = |column: &str| {
        r.try_get::<Option<String>, _>(column)
            .map(|v| v.map(Cow::Owned))
    };
    Ok((
        StoredEvent {
            seq: r.try_get("seq")?,
            at: r.try_get("at")?,
            actor_kind: Cow::Owned(r.try_get("actor_kind")?),
            actor_id: opt("actor_id")?,
            actor_name: opt("actor_name")?,
            actor_preview: opt("actor_preview")?,
            role: opt("role")?,
            tenants: Cow::Owned(r.try_get("tenants")?),
            action: Cow::Owned(r.try_get("action")?),
            target_type: opt("target_type")?,
            target_id: opt("target_id")?,
            target_name: opt("target_name")?,
            status: Cow::Owned(r.try_get("status")?),
            reason: opt("reason")?,
            source: Cow::Owned(r.try_get("source")?),
            request_source: opt("request_source")?,
            client_name: opt("client_name")?,
            client_version: opt("client_version")?,
            request_id: opt("request_id")?,
            client_ip: opt("client_ip")?,
            user_agent: opt("user_agent")?,
            channel: opt("channel")?,
            args: opt("args")?,
            before_state: opt("before_state")?,
            after_state: opt("after_state")?,
            salt: opt("salt")?,
        },
        r.try_get("leaf_hash")?,
    ))
}

/// The row with its sealed columns opened. A value that does not open (edited, or moved from
/// another row or column) reads as U+FFFD, which no event holds whole, so the row's leaf no
/// longer matches and verification names it tampered rather than failing.
fn opened(seal: &crate::store::Seal, mut e: StoredEvent<'static>) -> StoredEvent<'static> {
    use crate::domain::at_rest::Place;
    if !seal.is_on() {
        return e;
    }
    for (place, v) in [
        (Place::AuditReason, &mut e.reason),
        (Place::AuditSalt, &mut e.salt),
        (Place::AuditClientIp, &mut e.client_ip),
        (Place::AuditUserAgent, &mut e.user_agent),
        (Place::AuditArgs, &mut e.args),
        (Place::AuditBefore, &mut e.before_state),
        (Place::AuditAfter, &mut e.after_state),
    ] {
        let mut text = v.take().map(Cow::into_owned);
        *v = match seal.open_in(place, &mut text) {
            Ok(()) => text.map(Cow::Owned),
            Err(_) => Some(Cow::Borrowed("\u{FFFD}")),
        };
    }
    e
}

/// A stored row and the leaf hash stored beside it.
pub type StoredRow = (StoredEvent<'static>, Option<Hash>);

/// Up to `limit` rows with seq ≥ `from`, in seq order.
pub async fn rows_from(store: &Store, from: u64, limit: i64) -> Result<Vec<StoredRow>, StoreError> {
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2");
    on_pool!(store, p => {
        let rows = sqlx::query(&sql)
            .bind(from as i64)
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| stored_of(r).map(|(e, h)| (opened(&store.seal, e), h.as_deref().and_then(hash_of))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)
    })
}

/// The rows with the given seqs (any order in, seq order out).
pub async fn rows_at(store: &Store, seqs: &[i64]) -> Result<Vec<StoredRow>, StoreError> {
    let mut out = Vec::with_capacity(seqs.len());
    for part in seqs.chunks(500) {
        let mut q = crate::store::sql::Sql::new(&format!(
            "SELECT {ROW_COLUMNS} FROM audit_events WHERE seq IN ("
        ));
        for (i, s) in part.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.int(*s);
        }
        q.push(") ORDER BY seq");
        let rows = on_pool!(store, p => {
            let rows = crate::store::sql::bind_args!(sqlx::query(&q.text), q)
                .fetch_all(p)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| stored_of(r).map(|(e, h)| (opened(&store.seal, e), h.as_deref().and_then(hash_of))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)
        })?;
        out.extend(rows);
    }
    out.sort_by_key(|(e, _)| e.seq);
    Ok(out)
}

/// How many logged events are stored at or above `from`, and the highest seq among them.
pub async fn count_from(store: &Store, from: u64) -> Result<(u64, Option<u64>), StoreError> {
    let (n, max): (i64, Option<i64>) = on_pool!(store, p => sqlx::query_as(
        "SELECT COUNT(seq), MAX(seq) FROM audit_events WHERE seq >= $1")
        .bind(from as i64)
        .fetch_one(p)
        .await
        .map_err(db))?;
    Ok((n.max(0) as u64, max.map(|m| m.max(0) as u64)))
}

/// The first seq in `[from, to)` with no stored event (a hole), by bisection on counts.
pub async fn first_missing(store: &Store, from: u64, to: u64) -> Result<Option<u64>, StoreError> {
    let count = |a: u64, b: u64| async move {
        let n: i64 = on_pool!(store, p => sqlx::query_scalar(
            "SELECT COUNT(seq) FROM audit_events WHERE seq >= $1 AND seq < $2")
            .bind(a as i64)
            .bind(b as i64)
            .fetch_one(p)
            .await
            .map_err(db))?;
        Ok::<u64, StoreError>(n.max(0) as u64)
    };
    let (mut a, mut b) = (from, to);
    if a >= b || count(a, b).await? == b - a {
        return Ok(None);
    }
    while b - a > 1 {
        let mid = a + (b - a) / 2;
        if count(a, mid).await? < mid - a {
            b = mid;
        } else {
            a = mid;
        }
    }
    Ok(Some(a))
}

/// How many stored events have no place in the log (written before it existed), and their
/// highest id.
pub async fn unproven_rows(store: &Store) -> Result<(i64, i64), StoreError> {
    on_pool!(store, p => sqlx::query_as(
        "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM audit_events WHERE seq IS NULL")
        .fetch_one(p)
        .await
        .map_err(db))
}

/// The newest `audit_prune` record in the log, with its stored leaf hash.
pub async fn latest_prune(store: &Store) -> Result<Option<StoredRow>, StoreError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM audit_events WHERE action = 'audit_prune' \
         AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    );
    on_pool!(store, p => {
        let row = sqlx::query(&sql).fetch_optional(p).await.map_err(db)?;
        row.as_ref()
            .map(|r| stored_of(r).map(|(e, h)| (opened(&store.seal, e), h.as_deref().and_then(hash_of))))
            .transpose()
            .map_err(db)
    })
}
