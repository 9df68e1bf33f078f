//! Read-only SQLite connections of rusqlite's, for statements that return many rows.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row over a channel,
//! copying each value (`sqlite3_value_dup`) and waking the caller's task: about 12 µs a row
//! here, so a page of 100 brief events took 1.5 ms through sqlx against 0.3 ms straight from
//! rusqlite on the same statement (measured on the million-event trail of `audit_scale`).
//! The audit trail's pages read here, and on SQLite its summaries' rows, grouped as they
//! come (`audit::grouping`); everything else stays on the sqlx pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::StoreError;
use super::sql::Sql;

/// As long as the sqlx pool waits for a connection before it gives up.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Reads {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("file", &self.file).finish()
    }
}

impl Reads {
    /// At most `readers` statements run at once, and as many connections stay open between
    /// them (the sqlx pool's size).
    pub(crate) fn new(file: &Path, readers: usize) -> Arc<Reads> {
        Arc::new(Reads {
            file: file.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(readers)),
        })
    }

    /// Every row of `q`, each made by `row`, on a blocking thread.
    pub(crate) async fn all<T, F>(self: &Arc<Self>, q: Sql, row: F) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.fold(q, Vec::new(), move |all, r| {
            all.push(row(r)?);
            Ok(true)
        })
        .await
    }

    /// `step` over the rows of `q` in order, from `init`, on a blocking thread, until the rows
    /// end or `step` returns `false`.
    pub(crate) async fn fold<A, F>(
        self: &Arc<Self>,
        mut q: Sql,
        init: A,
        mut step: F,
    ) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &rusqlite::Row<'_>) -> rusqlite::Result<bool> + Send + 'static,
    {
        // Closed (the store is closing): no new reads, as the sqlx pool refuses them too.
        let permit = match tokio::time::timeout(WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
            Err(_) => return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        };
        q.anonymous();
        let reads = self.clone();
        // The permit goes with the work, so a caller that stops waiting frees no slot early.
        let folded = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = reads.take()?;
            let mut acc = init;
            let done = run(&conn, &q, &mut acc, &mut step);
            reads.give_back(conn);
            done.map(|()| acc)
        })
        .await
        .map_err(|_| StoreError::from_sqlx(sqlx::Error::WorkerCrashed))?;
        Ok(folded?)
    }

    /// Refuses new reads and closes the idle connections; one in use closes when it ends.
    pub(crate) fn close(&self) {
        let mut idle = lock(&self.idle);
        self.permits.close();
        idle.clear();
    }

    fn take(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        match lock(&self.idle).pop() {
            Some(conn) => Ok(conn),
            None => open(&self.file),
        }
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        // Checked under the lock `close` clears under, so none is kept after it.
        let mut idle = lock(&self.idle);
        if !self.permits.is_closed() {
            idle.push(conn);
        }
    }
}

fn run<A>(
    conn: &rusqlite::Connection,
    q: &Sql,
    acc: &mut A,
    step: &mut impl FnMut(&mut A, &rusqlite::Row<'_>) -> rusqlite::Result<bool>,
) -> Result<(), rusqlite::Error> {
    let mut statement = conn.prepare_cached(&q.text)?;
    let mut rows = statement.query(rusqlite::params_from_iter(q.args.iter()))?;
    while let Some(r) = rows.next()? {
        if !step(acc, r)? {
            break;
        }
    }
    Ok(())
}

fn open(file: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    // Never created here: the file exists (the store made it, owner-only, and migrated it).
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // These connections only read: SQLite refuses any change through them.
    conn.pragma_update(None, "query_only", "ON")?;
    conn.pragma_update(None, "cache_size", super::SQLITE_CACHE_KIB)?;
    // The page and summary statements' shapes (filters, the actor's two columns, a cursor);
    // an unfiltered page's, one for each count it is asked for (`page_limit`).
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail() -> (tempfile::TempDir, Arc<Reads>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&file).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t (v) VALUES ('a'), ('b'), (NULL);",
        )
        .expect("schema");
        (dir, Reads::new(&file, 2))
    }

    fn text(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<String>> {
        r.get("v")
    }

    #[tokio::test]
    async fn rows_come_back_bound_in_order() {
        let (_dir, reads) = trail();
        let mut q = Sql::new("SELECT v FROM t WHERE id >= ");
        q.int(2)
            .push(" AND (v IS NULL OR v <> ")
            .text("x")
            .push(") ORDER BY id");
        let rows = reads.all(q, text).await.expect("rows");
        assert_eq!(rows, vec![Some("b".to_owned()), None]);
    }

    #[tokio::test]
    async fn nothing_is_written_through_them() {
        let (_dir, reads) = trail();
        let q = Sql::new("INSERT INTO t (v) VALUES ('z') RETURNING v");
        assert!(matches!(
            reads.all(q, text).await,
            Err(StoreError::Native(_))
        ));
        let all = reads
            .all(Sql::new("SELECT v FROM t"), text)
            .await
            .expect("rows");
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error_and_stays_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("gone.db");
        let reads = Reads::new(&file, 1);
        assert!(matches!(
            reads.all(Sql::new("SELECT 1 AS v"), text).await,
            Err(StoreError::Native(_))
        ));
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn a_closed_store_reads_nothing() {
        let (_dir, reads) = trail();
        reads
            .all(Sql::new("SELECT v FROM t"), text)
            .await
            .expect("rows");
        reads.close();
        assert!(matches!(
            reads.all(Sql::new("SELECT v FROM t"), text).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(lock(&reads.idle).is_empty());
    }
}
