//! The mover: one thread per process that takes the records this process journaled (from
//! memory, in journal order) and moves them into the tables in large transactions, rotating
//! to a fresh journal file when the current one is large and removing old ones once moved.
//! A record the database refuses stays queued and the journal turns unhealthy until a later
//! pass moves it; nothing is skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::files::{self, MOVE_BATCH, Moved};
use super::frame::HEADER;
use super::{Journal, MOVE_AT, MOVE_EVERY, lock};
use crate::domain::audit::AuditEvent;
use crate::store::StoreError;

/// A record taken from the journal and not yet in the tables.
struct Taken {
    file: Arc<str>,
    event: AuditEvent,
    /// The file offset just past its frame: the file's position once it is moved.
    end: u64,
}

/// One of this process's files and how far it is moved.
struct Owned {
    name: Arc<str>,
    moved: u64,
    /// A rotated-out file's handle, kept open (and so locked) until the file is forgotten:
    /// another process that found it unlocked would take it for a dead process's and move it.
    handle: Option<std::fs::File>,
}

pub(super) struct Mover {
    journal: Arc<Journal>,
    conn: rusqlite::Connection,
    queue: VecDeque<Taken>,
    /// This process's files, oldest first; the last is the one appended to.
    files: VecDeque<Owned>,
    moved: u64,
    failing: bool,
}

impl Mover {
    pub(super) fn new(journal: Arc<Journal>, conn: rusqlite::Connection) -> Self {
        let name: Arc<str> = lock(&journal.active).name.as_str().into();
        Mover {
            journal,
            conn,
            queue: VecDeque::new(),
            files: VecDeque::from([Owned {
                name,
                moved: HEADER,
                handle: None,
            }]),
            moved: 0,
            failing: false,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let closing = self.wait();
            if closing {
                lock(&self.journal.active).sealed = true;
            }
            let pass = self.pass();
            let j = &self.journal;
            match pass {
                Ok(()) => {
                    if self.failing {
                        tracing::info!("audit trail writable again");
                    }
                    self.failing = false;
                    j.healthy.store(true, Ordering::Relaxed);
                    j.progress.send_modify(|p| p.moved = self.moved);
                }
                Err(e) => {
                    if !self.failing {
                        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "audit records could not be moved into the trail; refusing calls until they can");
                    }
                    self.failing = true;
                    j.healthy.store(false, Ordering::Relaxed);
                    j.progress.send_modify(|p| p.failures += 1);
                }
            }
            if closing {
                self.finish();
                return;
            }
        }
    }

    /// Sleeps until there is work; returns whether the journal is closing.
    fn wait(&self) -> bool {
        let j = &self.journal;
        let mut s = lock(&j.signal);
        while !s.flush && !s.close {
            let pending = j.pending.load(Ordering::Relaxed);
            if pending >= MOVE_AT {
                break;
            }
            if pending == 0 && !self.failing {
                s = j.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            } else {
                let (g, timeout) = j
                    .wake
                    .wait_timeout(s, MOVE_EVERY)
                    .unwrap_or_else(|e| e.into_inner());
                s = g;
                if timeout.timed_out() {
                    break;
                }
            }
        }
        s.flush = false;
        j.pending.store(0, Ordering::Relaxed);
        s.close
    }

    /// Takes what was appended (rotating to a fresh file when the current one is large),
    /// moves it in batches, and removes rotated files once they are moved.
    fn pass(&mut self) -> Result<(), StoreError> {
        let next = if lock(&self.journal.active).len >= self.journal.rotate_bytes {
            Some(files::create(&self.journal.dir, &self.conn)?)
        } else {
            None
        };
        {
            let mut a = lock(&self.journal.active);
            let current = self.current();
            for (event, end) in a.staged.drain(..) {
                self.queue.push_back(Taken {
                    file: current.clone(),
                    event,
                    end,
                });
            }
            if let Some((file, name)) = next {
                let rotated_out = std::mem::replace(&mut a.file, file);
                if let Some(last) = self.files.back_mut() {
                    last.handle = Some(rotated_out);
                }
                a.len = HEADER;
                a.broken = false;
                a.name.clone_from(&name);
                lock(&self.journal.own).push(name.clone());
                self.files.push_back(Owned {
                    name: name.into(),
                    moved: HEADER,
                    handle: None,
                });
            }
        }
        while let Some(first) = self.queue.front() {
            let file = first.file.clone();
            let n = self
                .queue
                .iter()
                .take(MOVE_BATCH)
                .take_while(|t| t.file == file)
                .count();
            let to = self.queue[n - 1].end;
            let from = self.position(&file);
            let batch = self.queue.iter().take(n).map(|t| &t.event);
            match files::move_frames(&mut self.conn, &file, batch, from, to, &self.journal.seal)? {
                Moved::Done => {
                    self.queue.drain(..n);
                    self.advance(&file, to, n as u64);
                }
                // A reader in another process moved some of them already (from the file).
                Moved::Raced(Some(now)) if now > from => {
                    let skipped = self
                        .queue
                        .iter()
                        .take_while(|t| t.file == file && t.end <= now)
                        .count();
                    self.queue.drain(..skipped);
                    self.advance(&file, now, skipped as u64);
                }
                Moved::Raced(now) => {
                    return Err(StoreError::Corrupt(format!(
                        "audit journal {file} position went from {from} to {now:?}"
                    )));
                }
            }
        }
        // Files before the last are rotated out: done once nothing queued is from them.
        while self.files.len() > 1 {
            let name = self.files[0].name.clone();
            if self.queue.iter().any(|t| t.file == name) {
                break;
            }
            files::forget(&self.conn, &self.journal.dir, &name)?;
            lock(&self.journal.own).retain(|n| **n != *name);
            // Only now is its lock released (the handle closes with it).
            self.files.pop_front();
        }
        Ok(())
    }

    fn current(&self) -> Arc<str> {
        self.files
            .back()
            .map_or_else(|| Arc::from(""), |f| f.name.clone())
    }

    fn position(&self, name: &str) -> u64 {
        self.files
            .iter()
            .find(|f| &*f.name == name)
            .map_or(HEADER, |f| f.moved)
    }

    fn advance(&mut self, name: &str, to: u64, records: u64) {
        if let Some(f) = self.files.iter_mut().find(|f| &*f.name == name) {
            f.moved = to;
        }
        self.moved += records;
    }

    /// At close: once everything is moved, this process's journals are removed; otherwise
    /// they stay for the next start to move.
    fn finish(&mut self) {
        if self.failing || !self.queue.is_empty() {
            tracing::error!(
                "audit journal left unmoved at shutdown; it is moved at the next start"
            );
            return;
        }
        for f in self.files.drain(..) {
            if let Err(e) = files::forget(&self.conn, &self.journal.dir, &f.name) {
                tracing::error!(error = %e, "moved audit journal not removed; it is cleared at the next start");
            }
        }
    }
}
