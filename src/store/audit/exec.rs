//! One statement with integer arguments inside a transaction: what retention and the roll-ups
//! run, kept apart so neither imports the other for it.

use crate::store::{StoreError, Tx, db, on_tx};

/// Runs `sql` with integer `binds` inside `tx`; the rows it changed.
pub(super) async fn exec(tx: &mut Tx, sql: &str, binds: &[i64]) -> Result<u64, StoreError> {
    on_tx!(tx, c => {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(c).await.map(|r| r.rows_affected()).map_err(db)
    })
}
