//! Which stored values are sealed, and the database's record of the key that seals them.
//!
//! A `Seal` is carried by the store and by every transaction it begins, so no write path can
//! forget it. Without a key it passes values through; with one, the sensitive columns hold
//! `kw1:` text (see `domain::at_rest`) and nothing else, on both backends.

use std::borrow::Cow;
use std::sync::Arc;

use crate::domain::at_rest::{AtRestKey, Place};

use super::StoreError;

/// The setting that names the key the database is sealed with.
pub const KEY_ID: &str = "encryption_key_id";

#[derive(Clone, Default)]
pub struct Seal(Option<Arc<AtRestKey>>);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(k) => write!(f, "Seal({})", k.id()),
            None => f.write_str("Seal(off)"),
        }
    }
}

fn unopenable(place: Place) -> StoreError {
    StoreError::Corrupt(format!(
        "a sealed value ({place:?}) does not open with the configured encryption key"
    ))
}

impl Seal {
    pub fn new(key: Option<Arc<AtRestKey>>) -> Seal {
        Seal(key)
    }

    pub fn key(&self) -> Option<&Arc<AtRestKey>> {
        self.0.as_ref()
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// `v` sealed by `how` under the key, or as it is without one.
    fn sealed<'a>(&self, v: &'a str, how: impl FnOnce(&AtRestKey) -> String) -> Cow<'a, str> {
        match &self.0 {
            Some(k) => Cow::Owned(how(k)),
            None => Cow::Borrowed(v),
        }
    }

    /// A value as stored (random nonce).
    pub fn text<'a>(&self, place: Place, v: &'a str) -> Cow<'a, str> {
        self.sealed(v, |k| k.seal(place, v))
    }

    pub fn text_opt<'a>(&self, place: Place, v: Option<&'a str>) -> Option<Cow<'a, str>> {
        v.map(|v| self.text(place, v))
    }

    /// A value as stored where it is compared or grouped (deterministic).
    pub fn eq<'a>(&self, place: Place, v: &'a str) -> Cow<'a, str> {
        self.sealed(v, |k| k.seal_eq(place, v))
    }

    pub fn eq_opt<'a>(&self, place: Place, v: Option<&'a str>) -> Option<Cow<'a, str>> {
        v.map(|v| self.eq(place, v))
    }

    /// A stored value as it was given.
    pub fn open(&self, place: Place, v: String) -> Result<String, StoreError> {
        match &self.0 {
            Some(k) => k.open(place, &v).map_err(|_| unopenable(place)),
            None => Ok(v),
        }
    }

    pub fn open_opt(&self, place: Place, v: Option<String>) -> Result<Option<String>, StoreError> {
        v.map(|v| self.open(place, v)).transpose()
    }

    /// Opens in place.
    pub fn open_in(&self, place: Place, v: &mut Option<String>) -> Result<(), StoreError> {
        if self.is_on()
            && let Some(t) = v.take()
        {
            *v = Some(self.open(place, t)?);
        }
        Ok(())
    }

    /// A binary record as stored (journal frames, private exports).
    pub fn record(&self, place: Place, plain: Vec<u8>) -> Vec<u8> {
        match &self.0 {
            Some(k) => {
                let mut out = vec![crate::domain::at_rest::SEALED_RECORD];
                out.extend(k.seal_bytes(place, &plain));
                out
            }
            None => plain,
        }
    }

    /// A stored binary record as it was given: sealed ones opened, plaintext ones (written
    /// without a key) as they are; `None` when a sealed one does not open (no key, another
    /// key, damage).
    pub fn open_record(&self, place: Place, stored: &[u8]) -> Option<Vec<u8>> {
        match (stored.first(), &self.0) {
            (Some(&crate::domain::at_rest::SEALED_RECORD), Some(k)) => {
                k.open_bytes(place, &stored[1..]).ok()
            }
            (Some(&crate::domain::at_rest::SEALED_RECORD), None) => None,
            _ => Some(stored.to_vec()),
        }
    }
}

/// Why a database and the key given for it do not go together. Nothing is changed when one
/// of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefused {
    #[error(
        "this database is encrypted (key id {id}); give its key with KEYWARD_ENCRYPTION_KEY or --encryption-key-file"
    )]
    Missing { id: String },
    #[error(
        "the encryption key given (key id {given}) is not the one this database is encrypted with (key id {expected})"
    )]
    Wrong { expected: String, given: String },
    #[error(
        "this database holds unencrypted data and an encryption key was given; encrypting it is explicit: stop every keyward process on it and run `keyward rekey --encrypt` with the key set"
    )]
    Plaintext,
    #[error(
        "the database was re-keyed while this process ran (its key id is now {now}); nothing more is written with the old key: restart with the current key"
    )]
    Changed { now: String },
}

/// Whether `seal` is still the database's key, given the key id recorded now (read in the
/// transaction about to write): every audit batch checks, so a process that missed a rekey
/// (PostgreSQL: its session, and so its share of the in-use lock, lost) fails closed instead
/// of writing values nobody can open.
pub fn still_current(seal: &Seal, recorded: Option<&str>) -> Result<(), StoreError> {
    let mine = seal.key().map(|k| k.id());
    if mine == recorded {
        return Ok(());
    }
    Err(StoreError::KeyRefused(KeyRefused::Changed {
        now: recorded.unwrap_or("none: not encrypted").to_owned(),
    }))
}

/// What the database says about encryption before it is migrated.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The id of the key the database is sealed with, if any.
    pub key_id: Option<String>,
    /// No keyward schema yet: nothing is stored, so it may start sealed.
    pub fresh: bool,
}

async fn has_table(db: &super::Db, name: &str) -> Result<bool, StoreError> {
    let n: i64 = match db {
        super::Db::Sqlite(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(name)
        .fetch_one(p)
        .await
        .map_err(super::db)?,
        super::Db::Postgres(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(name)
        .fetch_one(p)
        .await
        .map_err(super::db)?,
    };
    Ok(n > 0)
}

/// Reads the recorded key id without changing anything (the schema may not exist yet).
pub async fn recorded(db: &super::Db) -> Result<Recorded, StoreError> {
    let fresh = !has_table(db, "_sqlx_migrations").await?;
    let key_id = if has_table(db, "settings").await? {
        let q = "SELECT value FROM settings WHERE name = $1";
        match db {
            super::Db::Sqlite(p) => sqlx::query_scalar(q).bind(KEY_ID).fetch_optional(p).await,
            super::Db::Postgres(p) => sqlx::query_scalar(q).bind(KEY_ID).fetch_optional(p).await,
        }
        .map_err(super::db)?
    } else {
        None
    };
    Ok(Recorded { key_id, fresh })
}

/// Whether `key` may open a database that recorded `before`.
pub fn check(key: Option<&AtRestKey>, before: &Recorded) -> Result<(), KeyRefused> {
    match (key, &before.key_id) {
        (None, Some(id)) => Err(KeyRefused::Missing { id: id.clone() }),
        (Some(k), Some(id)) if id != k.id() => Err(KeyRefused::Wrong {
            expected: id.clone(),
            given: k.id().to_owned(),
        }),
        (Some(_), None) if !before.fresh => Err(KeyRefused::Plaintext),
        _ => Ok(()),
    }
}

/// After migrating: a fresh database opened with a key records it, and the check runs again,
/// so of two processes starting on one fresh database with different keys only the first to
/// record its key proceeds. (One without a key that reads before the other records can still
/// proceed; start a new deployment's processes with the same settings.)
pub(super) async fn record(store: &super::Store) -> Result<(), StoreError> {
    let now = match store.seal.key() {
        Some(k) => Some(super::settings::get_or_insert(store, KEY_ID, k.id()).await?),
        None => super::settings::get(store, KEY_ID).await?,
    };
    check(
        store.seal.key().map(|k| &**k),
        &Recorded {
            key_id: now,
            fresh: true,
        },
    )
    .map_err(StoreError::from)
}

/// The advisory lock (PostgreSQL) every process holds shared while it has the database open,
/// and `rekey` exclusively while it re-seals ("kwuse"): a rekey cannot start while any
/// replica runs, and no replica starts during one. SQLite needs none (its audit journals show
/// which processes are live).
const IN_USE_LOCK: i64 = 0x006b_7775_7365;

/// A session holding `IN_USE_LOCK`, kept out of the pool for as long as the lock is held.
#[derive(Debug, Default)]
pub struct InUse {
    session: Option<sqlx::PgConnection>,
}

impl InUse {
    /// Ends the session, and with it the lock, now (dropping it would close it eventually).
    pub async fn release(self) {
        if let Some(c) = self.session {
            let _ = sqlx::Connection::close(c).await;
        }
    }
}

/// Takes `IN_USE_LOCK`, shared (a server or command) or exclusive (`rekey`); `false` when it is
/// held the other way.
pub async fn hold(store: &super::Store, exclusive: bool) -> Result<Option<InUse>, StoreError> {
    let super::Db::Postgres(pool) = &store.db else {
        return Ok(Some(InUse { session: None }));
    };
    let sql = if exclusive {
        "SELECT pg_try_advisory_lock($1)"
    } else {
        "SELECT pg_try_advisory_lock_shared($1)"
    };
    let mut conn = pool.acquire().await.map_err(super::db)?;
    let got: bool = sqlx::query_scalar(sql)
        .bind(IN_USE_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(super::db)?;
    Ok(got.then(|| InUse {
        session: Some(conn.detach()),
    }))
}
