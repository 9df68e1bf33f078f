//! The SQLite audit trail's journal: where a record is committed before the call that made it
//! is answered.
//!
//! A SQLite commit writes a page per index touched plus the table's, so committing a few
//! records at a time costs more than the request that made them. Here a record is committed by
//! appending one checksummed frame to this process's journal file, which survives a crash of
//! the process exactly as a SQLite commit does in WAL mode with `synchronous=NORMAL` (what
//! keyward runs). A mover thread then moves journaled records into the indexed tables in large
//! transactions, taking them from memory; the file is read back only by other processes and
//! after a crash.
//!
//! Reading: `sync` makes every record committed before it visible, in this process's journal
//! (by waiting for the mover) and in any other live process's (by moving its intact frames
//! from the file). Exactly once: `audit_journals` holds each file's moved offset, advanced
//! only from the value read and in the same transaction as the records. Order: records move in
//! journal order; one the database refuses stops the move there (nothing is skipped), the
//! journal turns unhealthy and calls fail closed until it is taken. At start, journals of
//! processes that died (their file lock is free) are moved and removed.

mod files;
mod frame;
mod mover;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::StoreError;
use super::error::AuditUnavailable;
use crate::domain::audit::AuditEvent;
pub use files::journal_dir;

/// A journal this large is replaced by a fresh one at the mover's next pass (the default).
pub const ROTATE_BYTES: u64 = 32 << 20;
/// Records journaled but not yet moved before callers are made to wait (backpressure); they
/// are held in memory until moved, so this also bounds that memory.
pub const MAX_PENDING: u64 = 20_000;
/// The mover runs when this many records wait, when a reader asks, or `MOVE_EVERY` after
/// the first record of a pass.
const MOVE_AT: u64 = 1024;
const MOVE_EVERY: Duration = Duration::from_millis(25);
/// Longest a reader or a held-back caller waits for the mover.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How far the mover has got: records of this process moved, and failed passes so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    moved: u64,
    failures: u64,
}

/// The file this process appends to.
struct Active {
    file: File,
    name: String,
    len: u64,
    /// Records appended by this process, over all its journal files.
    seq: u64,
    /// A failed write whose partial frame could not be cut off: appending stops.
    broken: bool,
    /// Closed: the mover takes what is here last; nothing more may be appended.
    sealed: bool,
    /// Appended and not yet taken by the mover, each with the offset just past its frame.
    staged: Vec<(AuditEvent, u64)>,
}

#[derive(Default)]
struct Signal {
    flush: bool,
    close: bool,
}

/// How a journal behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// fsync every record (the database runs `synchronous=FULL`).
    pub full_sync: bool,
    /// Size at which the mover starts a fresh file.
    pub rotate_bytes: u64,
    /// Records are sealed with the store's key, like the columns they become.
    pub seal: crate::store::Seal,
}

pub struct Journal {
    dir: PathBuf,
    db: PathBuf,
    full_sync: bool,
    rotate_bytes: u64,
    seal: crate::store::Seal,
    active: Mutex<Active>,
    /// This process's journal files, which readers here need not read back.
    own: Mutex<Vec<String>>,
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Appended since the mover last started a pass.
    pending: AtomicU64,
    /// `Active::seq`, readable without the lock.
    appended: AtomicU64,
    progress: watch::Sender<Progress>,
    healthy: AtomicBool,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Journal {
    /// Moves what dead processes left behind, starts this process's journal and its mover
    /// thread; the receiver completes when the mover has ended (after `close`). Blocking:
    /// call it off the async threads.
    pub fn open(
        db: &Path,
        mut conn: rusqlite::Connection,
        options: Options,
    ) -> Result<(Arc<Journal>, tokio::sync::oneshot::Receiver<()>), StoreError> {
        let dir = journal_dir(db);
        crate::store::private::create_dir(&dir)
            .map_err(|e| files::io("cannot create its directory", &e))?;
        files::recover_dead(&dir, &mut conn, &options.seal)?;
        let (file, name) = files::create(&dir, &conn)?;
        let journal = Arc::new(Journal {
            dir,
            db: db.to_path_buf(),
            full_sync: options.full_sync,
            rotate_bytes: options.rotate_bytes,
            seal: options.seal,
            active: Mutex::new(Active {
                file,
                name: name.clone(),
                len: frame::HEADER,
                seq: 0,
                broken: false,
                sealed: false,
                staged: Vec::new(),
            }),
            own: Mutex::new(vec![name]),
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
            pending: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            progress: watch::Sender::new(Progress::default()),
            healthy: AtomicBool::new(true),
            closed: AtomicBool::new(false),
        });
        let (ended, finished) = tokio::sync::oneshot::channel();
        {
            let journal = journal.clone();
            std::thread::Builder::new()
                .name("keyward-audit".into())
                .spawn(move || {
                    mover::Mover::new(journal, conn).run();
                    let _ = ended.send(());
                })
                .map_err(|e| files::io("cannot start its mover thread", &e))?;
        }
        Ok((journal, finished))
    }

    /// Commits `event`: when this returns `Ok`, the record survives a crash of the process.
    pub fn append(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditUnavailable::Closed);
        }
        if !self.is_healthy() {
            return Err(AuditUnavailable::Unavailable);
        }
        let frame = frame::encode(&event, &self.seal)?;
        {
            let mut a = lock(&self.active);
            if a.sealed {
                return Err(AuditUnavailable::Closed);
            }
            if a.broken {
                return Err(AuditUnavailable::Unavailable);
            }
            let written = a.file.write_all(&frame).and_then(|()| {
                if self.full_sync {
                    a.file.sync_data()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = written {
                tracing::error!(error = %e, journal = %a.name, "audit journal write failed");
                // Cut off the partial frame so the next one starts on a boundary.
                let len = a.len;
                let cut = a
                    .file
                    .set_len(len)
                    .and_then(|()| a.file.seek(SeekFrom::Start(len)));
                a.broken = cut.is_err();
                return Err(AuditUnavailable::Unavailable);
            }
            a.len += frame.len() as u64;
            a.seq += 1;
            let end = a.len;
            a.staged.push((event, end));
            self.appended.store(a.seq, Ordering::Release);
        }
        // The first record after a pass starts the mover's timer; a full batch starts it at
        // once. Taking the signal lock orders this wake-up after the mover's check.
        let pending = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if pending == 1 || pending == MOVE_AT {
            let _ordered = lock(&self.signal);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Records appended so far by this process.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Records appended but not moved yet.
    pub fn backlog(&self) -> u64 {
        self.appended().saturating_sub(self.progress.borrow().moved)
    }

    /// Waits until this process's mover has moved `target` records, or fails when a pass
    /// fails after the call began.
    pub async fn wait_moved(&self, target: u64) -> Result<(), AuditUnavailable> {
        let mut rx = self.progress.subscribe();
        let start = *rx.borrow_and_update();
        if start.moved >= target {
            return Ok(());
        }
        self.poke(false);
        let wait = async {
            loop {
                if rx.changed().await.is_err() {
                    return Err(AuditUnavailable::Closed);
                }
                let now = *rx.borrow_and_update();
                if now.moved >= target {
                    return Ok(());
                }
                if now.failures > start.failures {
                    return Err(AuditUnavailable::Unavailable);
                }
            }
        };
        tokio::time::timeout(WAIT_LIMIT, wait)
            .await
            .unwrap_or(Err(AuditUnavailable::Unavailable))
    }

    /// Every record committed before this call, by this or any other live process, is in
    /// the tables once this returns `Ok`.
    pub async fn sync(self: &Arc<Self>) -> Result<(), AuditUnavailable> {
        self.wait_moved(self.appended()).await?;
        let others: Vec<String> = {
            let own = lock(&self.own);
            files::list(&self.dir)
                .map_err(|e| unavailable(&e))?
                .into_iter()
                .filter(|n| !own.contains(n))
                .collect()
        };
        if others.is_empty() {
            return Ok(());
        }
        let journal = self.clone();
        let help = tokio::task::spawn_blocking(move || journal.catch_up_on(&others));
        match tokio::time::timeout(WAIT_LIMIT, help).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(unavailable(&e)),
            _ => Err(AuditUnavailable::Unavailable),
        }
    }

    /// Moves what other live processes have journaled and not moved yet.
    fn catch_up_on(&self, names: &[String]) -> Result<(), StoreError> {
        let mut conn = open_sqlite(&self.db)?;
        for name in names {
            files::catch_up(&mut conn, &self.dir, name, files::Owner::Alive, &self.seal)?;
        }
        Ok(())
    }

    /// Stops taking records; the mover moves what is journaled, removes the journal, and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.poke(true);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn poke(&self, close: bool) {
        let mut s = lock(&self.signal);
        s.flush = true;
        s.close |= close;
        self.wake.notify_one();
    }
}

fn unavailable(e: &StoreError) -> AuditUnavailable {
    tracing::error!(error = %e, "audit journals of other processes could not be read");
    AuditUnavailable::Unavailable
}

/// A native connection for the audit journal's mover, with the same settings as the pool's.
pub fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", super::SQLITE_SYNCHRONOUS)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", super::SQLITE_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}
