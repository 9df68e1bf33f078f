//! Re-sealing every sealed value from one seal to another (plaintext to a key, one key to
//! the next, or back to plaintext) in one transaction, then reclaiming the space the old
//! values held so no copy of them stays in the database files.

use crate::domain::at_rest::Place;

use super::audit::SEALED as AUDIT;
use super::seal::KEY_ID;
use super::settings::NAME_HASH_KEY;
use super::{Db, Seal, Store, StoreError, db, on_tx};

/// Sealed columns keyed by a text primary key (or two).
struct TextKeyed {
    table: &'static str,
    keys: &'static [&'static str],
    column: &'static str,
    place: Place,
    /// Sealed for equality (compared and grouped) rather than with a random nonce.
    eq: bool,
    /// Extra condition (which setting).
    only: &'static str,
}

const TEXT_KEYED: &[TextKeyed] = &[
    TextKeyed {
        table: "api_keys",
        keys: &["id"],
        column: "description",
        place: Place::KeyDescription,
        eq: false,
        only: "",
    },
    TextKeyed {
        table: "roles",
        keys: &["name"],
        column: "description",
        place: Place::RoleDescription,
        eq: false,
        only: "",
    },
    TextKeyed {
        table: "auth_failures",
        keys: &["client_ip"],
        column: "client_ip",
        place: Place::FailureIp,
        eq: true,
        only: "",
    },
    TextKeyed {
        table: "signin_known",
        keys: &["name_hash", "client_ip"],
        column: "client_ip",
        place: Place::KnownIp,
        eq: true,
        only: "",
    },
    TextKeyed {
        table: "settings",
        keys: &["name"],
        column: "value",
        place: Place::Setting,
        eq: false,
        only: NAME_HASH_KEY,
    },
];

/// Audit rows re-sealed per read.
const PAGE: i64 = 2000;

/// How many values were re-sealed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rekeyed {
    pub values: u64,
    pub events: u64,
}

/// A value the current key does not open: named, so it can be found and mended (a value edited
/// in the database outside keyward). Nothing has been changed when this is returned.
fn unopenable(table: &str, column: &str, row: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{table}.{column} of row {row} does not open with the current encryption key (edited outside keyward?); nothing was re-sealed"
    ))
}

/// `column = $n` for each of `columns`, numbered from `first`.
fn assignments(columns: &[&str], first: usize) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + first))
        .collect()
}

fn reseal(to: &Seal, place: Place, eq: bool, plain: &str) -> String {
    if eq {
        to.eq(place, plain).into_owned()
    } else {
        to.text(place, plain).into_owned()
    }
}

/// Re-seals every value sealed under `store.seal` to `to` and records `to`'s key (or none),
/// all in one transaction: it either completes or changes nothing. A value that does not
/// open under the current seal stops it.
pub async fn rekey(store: &Store, to: &Seal) -> Result<Rekeyed, StoreError> {
    let from = &store.seal;
    let mut tx = store.begin().await?;
    // The roll-ups' state first (dropped below), in the order folds and retention take it.
    super::audit::rollup::claim(&mut tx).await?;
    // Audit batches in flight finish first; later ones wait, then find the new key recorded
    // and refuse to write under the old one (SQLite: the write lock does both).
    // A writer placing batches after the head it remembers, without the lock, writes only
    // where the head's epoch is the one it read with the old key: moved here, it waits for
    // this transaction and then finds the head moved.
    if let super::TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::audit::log::SEQUENCER_LOCK)
            .execute(&mut **t)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE audit_head SET epoch = epoch + 1 WHERE id = 1")
            .execute(&mut **t)
            .await
            .map_err(db)?;
    }
    let mut done = Rekeyed::default();
    for c in TEXT_KEYED {
        let keys = c.keys.join(", ");
        let mut select = format!(
            "SELECT {keys}, {} FROM {} WHERE {} IS NOT NULL",
            c.column, c.table, c.column
        );
        if !c.only.is_empty() {
            select.push_str(" AND name = $1");
        }
        let rows: Vec<Vec<String>> = on_tx!(&mut tx, conn => {
            let q = sqlx::query(&select);
            let q = if c.only.is_empty() { q } else { q.bind(c.only) };
            let rows = q.fetch_all(conn).await.map_err(db)?;
            rows.iter()
                .map(|r| {
                    (0..=c.keys.len())
                        .map(|i| sqlx::Row::try_get::<String, usize>(r, i))
                        .collect::<Result<Vec<String>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
        });
        let filter = assignments(c.keys, 2);
        let update = format!(
            "UPDATE {} SET {} = $1 WHERE {}",
            c.table,
            c.column,
            filter.join(" AND ")
        );
        for row in rows {
            let (keys, value) = row.split_at(c.keys.len());
            let plain = from
                .open(c.place, value[0].clone())
                .map_err(|_| unopenable(c.table, c.column, &keys.join(", ")))?;
            let sealed = reseal(to, c.place, c.eq, &plain);
            on_tx!(&mut tx, conn => {
                let mut q = sqlx::query(&update).bind(sealed.as_str());
                for k in keys {
                    q = q.bind(k.as_str());
                }
                q.execute(conn).await.map(|_| ()).map_err(db)
            })?;
            done.values += 1;
        }
    }
    let columns: Vec<&str> = AUDIT.iter().map(|(c, _, _)| *c).collect();
    let select = format!(
        "SELECT id, {} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
        columns.join(", ")
    );
    let sets = assignments(&columns, 1);
    let update = format!(
        "UPDATE audit_events SET {} WHERE id = ${}",
        sets.join(", "),
        columns.len() + 1
    );
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, Vec<Option<String>>)> = on_tx!(&mut tx, conn => {
            let rows = sqlx::query(&select)
                .bind(after)
                .bind(PAGE)
                .fetch_all(conn)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let id: i64 = sqlx::Row::try_get(r, 0)?;
                    let values = (1..=AUDIT.len())
                        .map(|i| sqlx::Row::try_get::<Option<String>, usize>(r, i))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((id, values))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(db)?
        });
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, stored) in rows {
            let mut values = Vec::with_capacity(AUDIT.len());
            for ((column, place, eq), v) in AUDIT.iter().zip(stored) {
                let v = from
                    .open_opt(*place, v)
                    .map_err(|_| unopenable("audit_events", column, &id.to_string()))?;
                done.values += u64::from(v.is_some());
                values.push(v.map(|p| reseal(to, *place, *eq, &p)));
            }
            on_tx!(&mut tx, conn => {
                let mut q = sqlx::query(&update);
                for v in &values {
                    q = q.bind(v.as_deref());
                }
                q.bind(id).execute(conn).await.map(|_| ()).map_err(db)
            })?;
            done.events += 1;
        }
    }
    on_tx!(&mut tx, conn => sqlx::query("DELETE FROM settings WHERE name = $1")
        .bind(KEY_ID)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db))?;
    if let Some(k) = to.key() {
        on_tx!(&mut tx, conn => sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(KEY_ID)
            .bind(k.id())
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(db))?;
    }
    // The roll-ups hold client addresses sealed under the old key: they are refolded.
    super::audit::rollup::reset(&mut tx).await?;
    tx.commit().await?;
    Ok(done)
}

/// Rewrites the files so the replaced values leave no copy behind: SQLite rebuilds the
/// database and empties its write-ahead log (refused while any reader keeps the log); on
/// PostgreSQL the changed tables are rewritten and their statistics (which sample values)
/// taken again.
pub async fn reclaim(store: &Store) -> Result<(), StoreError> {
    match &store.db {
        Db::Sqlite(p) => {
            sqlx::query("VACUUM").execute(p).await.map_err(db)?;
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(p)
                .await
                .map_err(db)?;
            if busy != 0 {
                return Err(StoreError::Corrupt(
                    "another connection is reading the database, so its write-ahead log still holds the old values".into(),
                ));
            }
        }
        Db::Postgres(p) => {
            sqlx::query(
                "VACUUM (FULL, ANALYZE) audit_events, audit_tallies_wide, audit_tallies_core, audit_tallies_target, audit_tallies_target_status, audit_tallies_actor, api_keys, roles, auth_failures, signin_known, settings",
            )
            .execute(p)
            .await
            .map_err(db)?;
            // The statistics just taken replace the old sample values, but their pages stay in
            // the catalog's file until it is rewritten too, which needs a superuser.
            if let Err(e) = sqlx::query("VACUUM FULL pg_statistic").execute(p).await {
                tracing::warn!(error = %e, "pg_statistic could not be rewritten (it needs a superuser): old sample values of the re-sealed columns may remain in its file; run VACUUM FULL pg_statistic as a superuser");
            }
        }
    }
    Ok(())
}

/// SQLite audit journals registered whose file is still there: after this process moved
/// what stopped processes left and closed its own, each is another live process's. (A row
/// whose file is gone, e.g. after restoring a backup elsewhere, holds nothing.)
pub async fn journals_in_use(store: &Store) -> Result<i64, StoreError> {
    let (Db::Sqlite(p), Some(file)) = (&store.db, store.sqlite_file()) else {
        return Ok(0);
    };
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM audit_journals")
        .fetch_all(p)
        .await
        .map_err(db)?;
    let dir = super::journal::journal_dir(&file);
    Ok(names.iter().filter(|n| dir.join(n).exists()).count() as i64)
}

/// Files a rekey does not rewrite: journals set aside as damaged, and export bundles (each
/// as it was written, plaintext or sealed under the key of its day).
pub fn left_as_they_were(store: &Store, exports: Option<&std::path::Path>) -> Vec<String> {
    let mut out = Vec::new();
    let mut scan = |dir: std::path::PathBuf, keep: &dyn Fn(&str) -> bool| {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep(&name) {
                out.push(dir.join(name).display().to_string());
            }
        }
    };
    if let Some(file) = store.sqlite_file() {
        scan(super::journal::journal_dir(&file), &|n| {
            n.ends_with(".damaged")
        });
    }
    if let Some(dir) = exports {
        scan(dir.to_path_buf(), &|n| !n.ends_with(".json"));
    }
    out.sort();
    out
}
