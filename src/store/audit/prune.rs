//! Retention: removing old event bodies while the log stays provable. Only whole chunks go,
//! so their stored chunk hashes keep every root and proof computable; the per-quarter counts
//! of the quarters touched are recounted, and the roll-ups of the hours touched refolded, from
//! what remains, in the same transaction, so summaries still equal counting the events.

use super::exec::exec;
use crate::domain::audit::AuditEvent;
use crate::store::audit::counts::QUARTER;
use crate::store::{Store, StoreError, Tx, db, on_pool, on_tx};

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pruned {
    pub from: u64,
    pub to: u64,
    pub events: i64,
    /// The newest removed event's time (micros).
    pub until: i64,
}

/// The first seq at or above `from` whose event is at or after `cutoff` (micros), if any.
pub async fn first_kept(store: &Store, from: u64, cutoff: i64) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = on_pool!(store, p => sqlx::query_scalar(
        "SELECT MIN(seq) FROM audit_events WHERE seq >= $1 AND at >= $2")
        .bind(from as i64)
        .bind(cutoff)
        .fetch_one(p)
        .await
        .map_err(db))?;
    Ok(seq.map(|s| s.max(0) as u64))
}

/// Recounts one quarter's rows from the events left in it.
async fn recount(tx: &mut Tx, quarter: i64) -> Result<(), StoreError> {
    exec(
        tx,
        "DELETE FROM audit_counts WHERE quarter = $1",
        &[quarter],
    )
    .await?;
    for (dim, expr) in [
        ("action", "action"),
        ("status", "status"),
        ("source", "source"),
        ("role", "COALESCE(role, '')"),
    ] {
        let sql = format!(
            "INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at) \
             SELECT $1, '{dim}', {expr}, COUNT(*), MIN(at), MAX(at) FROM audit_events \
             WHERE at > $2 AND at < $3 AND at / 900000000 = $1 GROUP BY {expr}"
        );
        // The quarter as the writer computed it (division toward zero, which differs from
        // the range [q, q + 1) quarters only before 1970), found through the time index.
        exec(
            tx,
            &sql,
            &[quarter, (quarter - 1) * QUARTER, (quarter + 1) * QUARTER],
        )
        .await?;
    }
    Ok(())
}

/// Removes the events with seq in `[from, to)` (their tenant rows go with them), recounts the
/// quarters they were in, records the new pruned boundary and appends the record of it that
/// `record` makes: all in one transaction, so no prune is ever without its record.
/// `Ok(None)` when another process pruned this range first.
pub async fn prune(
    store: &Store,
    from: u64,
    to: u64,
    record: impl FnOnce(&Pruned) -> AuditEvent,
) -> Result<Option<Pruned>, StoreError> {
    let mut tx = store.begin().await?;
    // The roll-ups' state before the log's lock, as folds take it: writers never wait on a fold.
    super::rollup::claim(&mut tx).await?;
    let range = [from as i64, to as i64];
    let (events, until): (i64, Option<i64>) = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT COUNT(*), MAX(at) FROM audit_events WHERE seq >= $1 AND seq < $2")
        .bind(range[0])
        .bind(range[1])
        .fetch_one(c)
        .await
        .map_err(db))?;
    let quarters: Vec<i64> = on_tx!(&mut tx, c => sqlx::query_scalar(
        "SELECT DISTINCT at / 900000000 FROM audit_events WHERE seq >= $1 AND seq < $2")
        .bind(range[0])
        .bind(range[1])
        .fetch_all(c)
        .await
        .map_err(db))?;
    let done = Pruned {
        from,
        to,
        events,
        until: until.unwrap_or(0),
    };
    // First, as every writer does: the sequencer lock, then the head row.
    super::append(&mut tx, &[record(&done)]).await?;
    let moved = exec(
        &mut tx,
        "UPDATE audit_head SET pruned_below = $1, \
         pruned_until = CASE WHEN pruned_until > $2 THEN pruned_until ELSE $2 END \
         WHERE id = 1 AND pruned_below = $3",
        &[range[1], until.unwrap_or(0), range[0]],
    )
    .await?;
    if moved != 1 {
        return Ok(None);
    }
    exec(
        &mut tx,
        "DELETE FROM audit_events WHERE seq >= $1 AND seq < $2",
        &range,
    )
    .await?;
    let mut hours: Vec<i64> = Vec::new();
    for q in quarters {
        recount(&mut tx, q).await?;
        let h = super::rollup::floor(q * QUARTER, super::rollup::HOUR);
        if !hours.contains(&h) {
            hours.push(h);
        }
    }
    super::rollup::refold_hours(&mut tx, &hours).await?;
    tx.commit().await?;
    Ok(Some(done))
}
