//! The journal against a real SQLite database: rotation, a reader in another process moving
//! frames the owner then skips (exactly once), and recovery of a dead process's journal with
//! a torn last frame.

use std::io::Write;
use std::sync::Arc;

use super::files::{self, Owner};
use super::frame;
use super::{Journal, Options};
use crate::domain::audit::sample_event as event;
use crate::store::Store;
use crate::store::journal::open_sqlite;

async fn database() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    (dir, db, store)
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    open_sqlite(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn journal(db: &std::path::Path, rotate_bytes: u64) -> Arc<Journal> {
    let options = Options {
        full_sync: false,
        rotate_bytes,
        seal: crate::store::Seal::default(),
    };
    Journal::open(db, open_sqlite(db).unwrap(), options)
        .unwrap()
        .0
}

#[tokio::test]
async fn rotation_keeps_every_record_once_and_removes_moved_files() {
    let (_dir, db, _store) = database().await;
    let j = journal(&db, 4096);
    for round in 0..5 {
        for i in 0..20 {
            j.append(event(&format!("r{round}-{i}"))).unwrap();
        }
        j.sync().await.unwrap();
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events"), 100);
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT reason) FROM audit_events"),
        100
    );
    let files = files::list(&super::journal_dir(&db)).unwrap();
    assert!(
        files.len() <= 2,
        "rotated files are removed once moved: {files:?}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_journals") as usize,
        files.len()
    );
    j.close();
}

#[tokio::test]
async fn frames_a_reader_moved_from_the_file_are_not_moved_again() {
    let (_dir, db, _store) = database().await;
    let j = journal(&db, super::ROTATE_BYTES);
    for i in 0..10 {
        j.append(event(&format!("a{i}"))).unwrap();
    }
    // Another process's reader gets there first, from the file.
    let name = files::list(&super::journal_dir(&db)).unwrap().remove(0);
    let mut other = open_sqlite(&db).unwrap();
    let done = files::catch_up(
        &mut other,
        &super::journal_dir(&db),
        &name,
        Owner::Alive,
        &crate::store::Seal::default(),
    )
    .unwrap();
    assert_eq!(done.moved, 10);
    for i in 10..15 {
        j.append(event(&format!("a{i}"))).unwrap();
    }
    j.sync().await.unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events"), 15);
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT reason) FROM audit_events"),
        15
    );
    j.close();
}

#[tokio::test]
async fn a_dead_process_journal_is_moved_up_to_its_torn_last_frame() {
    let (_dir, db, _store) = database().await;
    let dir = super::journal_dir(&db);
    std::fs::create_dir_all(&dir).unwrap();
    // What a process killed mid-write leaves: its row, two whole frames and half a third.
    let conn = open_sqlite(&db).unwrap();
    let (mut file, name) = files::create(&dir, &conn).unwrap();
    for r in ["d0", "d1"] {
        file.write_all(&frame::encode(&event(r), &crate::store::Seal::default()).unwrap())
            .unwrap();
    }
    let torn = frame::encode(&event("d2"), &crate::store::Seal::default()).unwrap();
    file.write_all(&torn[..torn.len() / 2]).unwrap();
    drop(file); // the lock goes with the process

    let j = journal(&db, super::ROTATE_BYTES);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_events WHERE reason IN ('d0', 'd1')"
        ),
        2
    );
    assert!(!dir.join(&name).exists(), "the moved journal is removed");
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM audit_journals WHERE name = '{name}'")
        ),
        0
    );
    j.close();
}

#[tokio::test]
async fn a_live_process_journal_is_left_to_its_owner() {
    let (_dir, db, _store) = database().await;
    let owner = journal(&db, super::ROTATE_BYTES);
    owner.append(event("live")).unwrap();
    // A second process starting on the same database does not take it over...
    let second = journal(&db, super::ROTATE_BYTES);
    assert_eq!(files::list(&super::journal_dir(&db)).unwrap().len(), 2);
    // ...but its readers see the owner's committed record.
    second.sync().await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_events WHERE reason = 'live'"
        ),
        1
    );
    owner.sync().await.unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events"), 1, "once");
    owner.close();
    second.close();
}

#[tokio::test]
async fn a_rotated_file_stays_locked_until_it_is_forgotten() {
    let (_dir, db, _store) = database().await;
    // The database refuses records for a while, so rotated files keep records not yet moved.
    let conn = open_sqlite(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER hold BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'held'); END",
    )
    .unwrap();
    let j = journal(&db, 512);
    for i in 0..5 {
        j.append(event(&format!("h{i}"))).unwrap();
    }
    // The mover rotates (the file is over 512 bytes), then cannot move the records.
    assert!(j.sync().await.is_err(), "the database refuses for now");
    let dir = super::journal_dir(&db);
    let names = files::list(&dir).unwrap();
    assert!(names.len() >= 2, "rotated: {names:?}");
    // Another process looking for dead journals in this window must find every one locked.
    for name in &names {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(name))
            .unwrap();
        assert!(
            matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "{name} is unlocked while its records are not yet moved"
        );
    }
    let mut other = open_sqlite(&db).unwrap();
    files::recover_dead(&dir, &mut other, &crate::store::Seal::default()).unwrap();
    assert_eq!(files::list(&dir).unwrap(), names, "nothing adopted");
    conn.execute_batch("DROP TRIGGER hold").unwrap();
    j.sync().await.unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_events"),
        5,
        "every record, once"
    );
    j.close();
}
