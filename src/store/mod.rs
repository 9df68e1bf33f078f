//! Storage: the sqlx pools, migrations, and every SQL statement keyward runs.
//!
//! One `Store` enum with two known variants (no trait objects): each function writes its SQL
//! once, with `$N` placeholders that both SQLite and PostgreSQL accept, and the `on_pool!` /
//! `on_tx!` macros run it against whichever backend is configured. Times are stored as BIGINT
//! microseconds (UTC) on both, so ordering and arithmetic match.

pub mod audit;
pub mod audit_writer;
pub mod error;
pub mod journal;
pub mod keys;
pub mod lockout;
pub mod oauth;
pub mod operators;
pub mod private;
pub mod rekey;
pub mod roles;
pub mod seal;
pub mod sessions;
pub mod settings;
mod sql;
mod sqlite_reads;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

pub use error::StoreError;
pub use seal::Seal;

use crate::domain::at_rest::AtRestKey;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite's durability level. In WAL mode, NORMAL keeps every committed transaction through a
/// process crash (kill -9); only an operating-system crash or power loss can take the last
/// commits before a checkpoint. FULL adds an fsync per commit.
pub(crate) const SQLITE_SYNCHRONOUS: &str = "NORMAL";

/// Page cache per SQLite connection (negative: KiB): the pooled connections and the audit
/// journal's mover each hold one.
pub(crate) const SQLITE_CACHE_KIB: &str = "-512";

/// Pooled SQLite connections: two per core, between 4 and 16. Each holds its own page cache,
/// statement cache and worker thread, and WAL readers never wait for the writer, so more
/// connections than the cores can keep busy only cost memory.
fn sqlite_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    (2 * cores).clamp(4, 16)
}

/// sqlx logs a statement that runs long at WARN with its whole text (a query with fifty
/// placeholders is kilobytes); keyward logs slow tool calls itself, by name, instead. The
/// per-statement DEBUG log stays, for whoever asks for it.
fn quiet<O: sqlx::ConnectOptions>(opts: O) -> O {
    opts.log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
}

/// A connection of the audit writer's own (`Store::writer_options`), set up as the pool's are.
/// A transaction it leaves idle (a process hung mid-batch) is ended by the database after a
/// minute, so the sequencer lock it holds cannot stop every replica's writer for longer.
pub(crate) async fn connect_writer(
    options: &PgConnectOptions,
) -> Result<sqlx::PgConnection, StoreError> {
    use sqlx::ConnectOptions;
    let mut conn = options.connect().await.map_err(db)?;
    jit_off(&mut conn).await.map_err(db)?;
    // A batch written after the head it remembers is a transaction of its own: read committed
    // whatever the database's default (its compare-and-set on the head rereads the row another
    // writer changed, where repeatable read would fail it), and waiting at most 1 s for the
    // head's row (a locked batch holds it for a few round trips), then going locked, whose
    // transaction waits up to 9 s for the lock, within the 10 s a caller waits.
    sqlx::Executor::execute(
        &mut conn,
        "SET default_transaction_isolation = 'read committed'; SET lock_timeout = '1s'",
    )
    .await
    .map_err(db)?;
    // Lowered to 60 s, never raised past a stricter setting of the operator's.
    if let Err(e) = sqlx::query(
        "SELECT set_config('idle_in_transaction_session_timeout', '60s', false) \
         WHERE current_setting('idle_in_transaction_session_timeout')::interval \
         NOT BETWEEN '1 ms' AND '60 s'",
    )
    .execute(&mut conn)
    .await
    {
        tracing::debug!(error = %e, "PostgreSQL idle-in-transaction timeout left as configured");
    }
    Ok(conn)
}

/// No JIT on keyward's sessions: its statements are short, and PostgreSQL compiles one whose
/// estimate looks large (an audit summary over a week) in hundreds of ms, more than running it
/// takes. A `SET` after connecting rather than a startup option, which connection poolers
/// refuse; a server or pooler that refuses the `SET` too keeps its JIT, and keyward still
/// connects.
async fn jit_off(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    if let Err(e) = sqlx::query("SET jit = off").execute(&mut *conn).await {
        tracing::debug!(error = %e, "PostgreSQL JIT left as configured");
    }
    Ok(())
}

/// The database: one pool of either backend.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database and the seal its sensitive columns are stored under.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub seal: Seal,
    /// This process's share of the in-use lock (PostgreSQL), released by `close`.
    in_use: Arc<std::sync::Mutex<Option<seal::InUse>>>,
    /// A SQLite file's read connections for many-row statements (see `sqlite_reads`).
    reads: Option<Arc<sqlite_reads::Reads>>,
}

/// A write transaction's connection on either backend.
pub enum TxConn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction, carrying the store's seal.
pub struct Tx {
    pub conn: TxConn,
    pub seal: Seal,
}

/// Runs `$body` with `$pool` bound to the concrete pool.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &($store).db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut ($tx).conn {
            $crate::store::TxConn::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::TxConn::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

impl Store {
    /// Connects to `url` (`sqlite:` or `postgres:`), runs the embedded migrations and brings
    /// the built-in roles up to date. No encryption at rest.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, None).await
    }

    /// `open`, with the sensitive columns sealed under `key`. The database records which key
    /// seals it: a missing or wrong key, or a key for a database that holds plaintext, is
    /// refused before anything is changed (migrations included).
    pub async fn open_with(url: &str, key: Option<Arc<AtRestKey>>) -> Result<Store, StoreError> {
        let db = Store::connect(url).await?;
        let before = seal::recorded(&db).await?;
        seal::check(key.as_deref(), &before)?;
        match &db {
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
        }
        let mut store = Store {
            db,
            seal: Seal::new(key),
            in_use: Arc::default(),
            reads: None,
        };
        // (A file that is not there after migrating is no file: an in-memory database.)
        store.reads = store
            .sqlite_file()
            .filter(|f| f.is_file())
            .map(|f| sqlite_reads::Reads::new(&f, sqlite_pool_size() as usize));
        seal::record(&store).await?;
        roles::sync_builtins(&store, now_for_setup()).await?;
        Ok(store)
    }

    /// Connects without migrating or checking anything.
    async fn connect(url: &str) -> Result<Db, StoreError> {
        Ok(
            if url.starts_with("postgres:") || url.starts_with("postgresql:") {
                let opts = quiet(PgConnectOptions::from_str(url).map_err(StoreError::Config)?);
                let pool = PgPoolOptions::new()
                    .after_connect(|conn, _| Box::pin(jit_off(conn)))
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Db::Postgres(pool)
            } else if url.starts_with("sqlite:") {
                let opts = SqliteConnectOptions::from_str(url).map_err(StoreError::Config)?;
                // Created here, owner-only, before SQLite would create it with the umask's mode.
                let file = opts.get_filename();
                if !file.as_os_str().is_empty() && file != std::path::Path::new(":memory:") {
                    private::touch(file).map_err(StoreError::Create)?;
                    private::warn_if_shared(file);
                    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                        private::warn_if_shared(dir);
                    }
                }
                let opts = opts
                    .create_if_missing(true)
                    // WAL: readers never block the writer. Durability: see SQLITE_SYNCHRONOUS.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if SQLITE_SYNCHRONOUS == "FULL" {
                        SqliteSynchronous::Full
                    } else {
                        SqliteSynchronous::Normal
                    })
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Each pooled connection keeps its own page cache, so SQLite's default (2 MiB
                    // each) would hold up to 16 MiB of mostly duplicated pages; the OS page cache
                    // serves the misses. Negative = KiB.
                    .pragma("cache_size", SQLITE_CACHE_KIB)
                    // Every statement the product runs, with room for the audit filters' shapes;
                    // each cached statement holds memory in every connection.
                    .statement_cache_capacity(64);
                let opts = quiet(opts);
                let pool = SqlitePoolOptions::new()
                    .max_connections(sqlite_pool_size())
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Db::Sqlite(pool)
            } else {
                return Err(StoreError::UnsupportedUrl);
            },
        )
    }

    /// How the PostgreSQL audit writer connects (none on SQLite): as the pool does, under a
    /// name of its own, so an operator can tell its session apart.
    pub(crate) fn writer_options(&self) -> Option<PgConnectOptions> {
        let Db::Postgres(pool) = &self.db else {
            return None;
        };
        Some(
            (*pool.connect_options())
                .clone()
                .application_name("keyward-audit-writer"),
        )
    }

    /// The SQLite database's file (none for PostgreSQL or an in-memory database).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.db {
            Db::Sqlite(p) => {
                let opts = p.connect_options();
                let file = opts.get_filename();
                (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:"))
                    .then(|| file.to_path_buf())
            }
            Db::Postgres(_) => None,
        }
    }

    /// The database its statements are written for.
    pub(crate) fn dialect(&self) -> sql::Dialect {
        match &self.db {
            Db::Sqlite(_) => sql::Dialect::Sqlite,
            Db::Postgres(_) => sql::Dialect::Postgres,
        }
    }

    /// The read connections, on a SQLite file.
    pub(crate) fn sqlite_reads(&self) -> Option<&Arc<sqlite_reads::Reads>> {
        self.reads.as_ref()
    }

    pub fn backend(&self) -> &'static str {
        match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front (IMMEDIATE), so
    /// concurrent writers queue on the busy timeout instead of failing to upgrade a read lock.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let conn = match &self.db {
            Db::Sqlite(p) => TxConn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await.map_err(db)?),
            Db::Postgres(p) => TxConn::Postgres(begin_pg(p, None).await?),
        };
        Ok(Tx {
            conn,
            seal: self.seal.clone(),
        })
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()).map_err(db))
    }

    /// Holds `share` (this process's share of the in-use lock) until `close`.
    pub fn keep(&self, share: seal::InUse) {
        *self.in_use.lock().unwrap_or_else(|e| e.into_inner()) = Some(share);
    }

    /// Releases the in-use lock, then closes the pool.
    pub async fn close(&self) {
        let share = self.in_use.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(share) = share {
            share.release().await;
        }
        if let Some(reads) = &self.reads {
            reads.close();
        }
        on_pool!(self, p => p.close().await)
    }
}

/// A PostgreSQL transaction from `p`, begun with `statement` (e.g. `BEGIN; SET LOCAL …`, one
/// message) or a plain `BEGIN`, in a task of its own: sqlx 0.8.6 leaves a transaction open on a
/// pooled connection when `begin` is dropped while awaiting the answer (a call's deadline). The
/// task always finishes, and a transaction nobody took is dropped there, which rolls it back.
pub(crate) async fn begin_pg(
    p: &PgPool,
    statement: Option<&'static str>,
) -> Result<Transaction<'static, Postgres>, StoreError> {
    let p = p.clone();
    let begun = tokio::spawn(async move {
        match statement {
            Some(s) => p.begin_with(s).await,
            None => p.begin().await,
        }
    })
    .await
    .map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))?;
    begun.map_err(db)
}

/// How a row read inside a write transaction is held until the transaction ends. SQLite's
/// transactions hold the database's write lock from `BEGIN IMMEDIATE`, so there this is a
/// no-op; PostgreSQL runs READ COMMITTED, where a check and the change that follows it need the
/// rows they rest on locked, or two transactions can each pass a check the other's change
/// breaks (two rotations both leaving a live secret, a key minted for a role being deleted).
#[derive(Debug, Clone, Copy)]
pub enum Hold {
    /// Others may read and share, not change or delete it (a role being assigned).
    Share,
    /// Nobody else may lock it until this transaction ends (the row being changed).
    Update,
}

impl Tx {
    /// The database its statements are written for.
    pub(crate) fn dialect(&self) -> sql::Dialect {
        match &self.conn {
            TxConn::Sqlite(_) => sql::Dialect::Sqlite,
            TxConn::Postgres(_) => sql::Dialect::Postgres,
        }
    }

    /// The clause to append to a single-table `SELECT` to hold its rows.
    pub fn hold(&self, hold: Hold) -> &'static str {
        match (&self.conn, hold) {
            (TxConn::Sqlite(_), _) => "",
            (TxConn::Postgres(_), Hold::Share) => " FOR SHARE",
            (TxConn::Postgres(_), Hold::Update) => " FOR UPDATE",
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await.map_err(db),
            TxConn::Postgres(t) => t.commit().await.map_err(db),
        }
    }
}

/// Migrations stamp built-in roles with a time; that is metadata, not a rule, so the wall clock
/// is read through the one sanctioned place.
fn now_for_setup() -> DateTime<Utc> {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
