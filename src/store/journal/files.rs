//! Journal files and their positions: creating a file with its row, moving frames into the
//! tables with the position advanced in the same transaction, catching up on a journal read
//! back from disk (another live process's, or one left by a process that died), removing one
//! once moved.
//!
//! A position only moves forward, and only from the value the mover read: the update names
//! the expected old offset, so two processes moving the same frames cannot both succeed and
//! each record is moved exactly once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::frame::{self, HEADER, MAGIC, MAX_FRAME};
use crate::domain::audit::AuditEvent;
use crate::store::audit;
use crate::store::{Seal, StoreError};

/// Frames moved per transaction.
pub const MOVE_BATCH: usize = 4096;

pub fn io(context: &str, e: &std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("audit journal: {context}: {e}"))
}

/// `<dir>/<database file name>-audit`.
pub fn journal_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-audit");
    db.with_file_name(name)
}

/// Journal files in `dir`, oldest first (names start with their creation time).
pub fn list(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io("cannot list its directory", &e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    Ok(names)
}

fn file_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{secs:012}-{:010}-{:08x}.log",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// A new journal file, locked for this process, with its position row at the first frame.
pub fn create(dir: &Path, conn: &rusqlite::Connection) -> Result<(File, String), StoreError> {
    let name = file_name();
    let mut file = crate::store::private::file_options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(&name))
        .map_err(|e| io("cannot create a journal file", &e))?;
    file.try_lock()
        .map_err(|e| StoreError::Corrupt(format!("audit journal: cannot lock {name}: {e}")))?;
    file.write_all(MAGIC)
        .map_err(|e| io("cannot write a journal header", &e))?;
    // The row exists before any record is appended, so a file without one holds none.
    conn.execute(
        "INSERT INTO audit_journals (name, moved) VALUES (?, ?)",
        rusqlite::params![name, HEADER as i64],
    )?;
    Ok((file, name))
}

/// How far `name` has been moved; `None` once it is forgotten.
pub fn position(conn: &rusqlite::Connection, name: &str) -> Result<Option<u64>, StoreError> {
    match conn.query_row(
        "SELECT moved FROM audit_journals WHERE name = ?",
        rusqlite::params![name],
        |r| r.get::<_, i64>(0),
    ) {
        Ok(v) => Ok(Some(v.max(0) as u64)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a move found.
pub enum Moved {
    Done,
    /// Someone else moved from `from` first; the position is now this.
    Raced(Option<u64>),
}

/// Moves `events`, the frames from offset `from` to `to` of `name`, in one transaction.
pub fn move_frames<'a>(
    conn: &mut rusqlite::Connection,
    name: &str,
    events: impl IntoIterator<Item = &'a AuditEvent>,
    from: u64,
    to: u64,
    seal: &Seal,
) -> Result<Moved, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let claimed = tx.execute(
        "UPDATE audit_journals SET moved = ? WHERE name = ? AND moved = ?",
        rusqlite::params![to as i64, name, from as i64],
    )?;
    if claimed != 1 {
        let now = position(&tx, name)?;
        return Ok(Moved::Raced(now));
    }
    audit::insert_sqlite(&tx, seal, events)?;
    tx.commit()?;
    Ok(Moved::Done)
}

/// Removes a moved journal: its file, then its row (a row whose file is gone means nothing
/// is left, never "start again").
pub fn forget(conn: &rusqlite::Connection, dir: &Path, name: &str) -> Result<(), StoreError> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot remove a moved journal", &e)),
    }
    conn.execute(
        "DELETE FROM audit_journals WHERE name = ?",
        rusqlite::params![name],
    )?;
    Ok(())
}

/// Whose journal is being read back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A live process still appending: its last frame may be half-written.
    Alive,
    /// A process that died: whatever follows the last intact frame was never acknowledged.
    Dead,
}

/// What catching up on a journal did.
#[derive(Debug, Default)]
pub struct CaughtUp {
    /// Records this call moved.
    pub moved: u64,
    /// Set when reading stopped at a damaged frame rather than at the end.
    pub damaged: Option<String>,
}

/// Moves every intact frame of `name` past its position, reading the file from disk.
pub fn catch_up(
    conn: &mut rusqlite::Connection,
    dir: &Path,
    name: &str,
    owner: Owner,
    seal: &Seal,
) -> Result<CaughtUp, StoreError> {
    let mut file = match File::open(dir.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CaughtUp::default()),
        Err(e) => return Err(io("cannot read a journal", &e)),
    };
    let mut magic = [0u8; MAGIC.len()];
    if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(CaughtUp {
            moved: 0,
            // A live one may just be writing its header.
            damaged: (owner == Owner::Dead).then(|| "no valid header".to_owned()),
        });
    }
    let mut done = CaughtUp::default();
    loop {
        let Some(from) = position(conn, name)? else {
            return Ok(done);
        };
        let end = file
            .metadata()
            .map_err(|e| io("cannot read a journal", &e))?
            .len();
        if from >= end {
            return Ok(done);
        }
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(from))
            .map_err(|e| io("cannot seek in a journal", &e))?;
        (&mut file)
            .take((end - from).min(MAX_FRAME + (4 << 20)))
            .read_to_end(&mut bytes)
            .map_err(|e| io("cannot read a journal", &e))?;
        let parsed = frame::decode(&bytes, MOVE_BATCH, seal);
        if parsed.events.is_empty() {
            // A live process may be writing that frame right now; only a dead one's counts.
            if owner == Owner::Dead {
                done.damaged = parsed.damaged;
            }
            return Ok(done);
        }
        let to = from + parsed.used;
        if let Moved::Done = move_frames(conn, name, &parsed.events, from, to, seal)? {
            done.moved += parsed.events.len() as u64;
        }
    }
}

/// Moves and removes the journals of processes that have died (their lock is free).
pub fn recover_dead(
    dir: &Path,
    conn: &mut rusqlite::Connection,
    seal: &Seal,
) -> Result<(), StoreError> {
    for name in list(dir)? {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(&name))
        else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {}
            // Its process is alive and moves it itself.
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock a journal", &e)),
        }
        // No row: created but never used, or moved in full before its owner died.
        if position(conn, &name)?.is_some() {
            let done = match catch_up(conn, dir, &name, Owner::Dead, seal) {
                Err(StoreError::Corrupt(why)) => CaughtUp {
                    moved: 0,
                    damaged: Some(why),
                },
                other => other?,
            };
            if done.moved > 0 {
                tracing::info!(journal = %name, records = done.moved, "moved an audit journal left by a stopped process");
            }
            if let Some(why) = done.damaged {
                // A crash tears at most the last frame, which was never acknowledged; the
                // file is kept beside the others in case it is more than that.
                tracing::warn!(journal = %name, %why, "audit journal of a stopped process ends in a damaged record; kept as .damaged");
                let kept = dir.join(format!("{name}.damaged"));
                std::fs::rename(dir.join(&name), kept)
                    .map_err(|e| io("cannot set a damaged journal aside", &e))?;
            }
        }
        forget(conn, dir, &name)?;
        drop(file);
    }
    Ok(())
}
