//! Reading the trail for an export: the seqs of the logged events a filter selects, in seq
//! order, below a tree size. The rows themselves come from `tree::rows_at`; the WHERE clause
//! is `read.rs`'s own, so an export selects exactly what `audit_query` would.

use crate::store::audit::AuditFilter;
use crate::store::sql::{Sql, bind_args};
use crate::store::{Store, StoreError, db, on_pool};

/// Up to `limit` seqs in `[from, below)` of events `f` selects, ascending.
pub async fn seqs(
    store: &Store,
    f: &AuditFilter,
    from: u64,
    below: u64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let f = super::read::with_named_keys(store, f).await?;
    let mut q = Sql::new("SELECT e.seq FROM audit_events e");
    super::read::push_where(&mut q, &f, &store.seal);
    q.push(" AND e.seq >= ")
        .int(from as i64)
        .push(" AND e.seq < ")
        .int(below as i64);
    q.push(" ORDER BY e.seq LIMIT ").int(limit);
    on_pool!(store, p => bind_args!(sqlx::query_scalar(&q.text), q).fetch_all(p).await.map_err(db))
}
