//! The audit writer: one per process, appending audit events in batches.
//!
//! Callers hand over an event and wait until the transaction holding it has committed, so an
//! answered call is never missing from the trail. Whatever arrived while the previous batch was
//! being written goes into the next single transaction (group commit), so a busy server pays one
//! commit for many calls. The queue is bounded: when it is full, callers wait (backpressure).
//! When the database refuses a batch, its events are tried one by one, so an event the
//! database cannot take fails only its own call; every caller whose event is not written gets
//! an error and must fail the call.
//!
//! On SQLite the writer is a thread of its own with its own connection: a batch costs one
//! wake-up and direct calls, where the async pool would hop between threads for every
//! statement. On PostgreSQL it is an async task on the shared pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Store, audit};
use crate::domain::audit::AuditEvent;

/// Why an event could not be recorded. Callers turn this into a failed call: nothing runs or
/// is reported as done without its record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditUnavailable {
    #[error("the audit trail is unavailable, so the call was not completed")]
    Unavailable,
    #[error("the server is shutting down")]
    Closed,
}

enum Job {
    Record {
        event: Box<AuditEvent>,
        done: oneshot::Sender<Result<i64, AuditUnavailable>>,
    },
    /// Take no more events; write what is queued, then stop.
    Close,
}

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
    timeout: Duration,
}

pub struct WriterConfig {
    /// Events waiting to be written before callers are made to wait.
    pub queue: usize,
    /// Most events per transaction.
    pub max_batch: usize,
    /// Longest a caller waits for its record before the call fails.
    pub timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 4096,
            max_batch: audit::MAX_ROWS_PER_STATEMENT,
            timeout: Duration::from_secs(10),
        }
    }
}

impl AuditWriter {
    /// Starts the writer. It runs until `close` (or until every `AuditWriter` clone is
    /// dropped), writing whatever is still queued before it ends.
    pub fn start(store: Store, config: &WriterConfig) -> (AuditWriter, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let max_batch = config.max_batch.max(1);
        let handle = match &store {
            Store::Sqlite(pool) => {
                let path = pool.connect_options().get_filename().to_path_buf();
                let healthy = healthy.clone();
                let (finished, wait) = oneshot::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name("keyward-audit".into())
                    .spawn(move || {
                        run_sqlite(&path, rx, max_batch, &healthy);
                        let _ = finished.send(());
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not start the audit writer thread");
                }
                tokio::spawn(async move {
                    let _ = wait.await;
                })
            }
            Store::Postgres(_) => tokio::spawn(run_async(store, rx, max_batch, healthy.clone())),
        };
        (
            AuditWriter {
                queue,
                healthy,
                timeout: config.timeout,
            },
            handle,
        )
    }

    /// Queues `event` and waits until it is committed; returns its id.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, AuditUnavailable> {
        let (done, wait) = oneshot::channel();
        let job = Job::Record {
            event: Box::new(event),
            done,
        };
        let send_and_wait = async {
            self.queue
                .send(job)
                .await
                .map_err(|_| AuditUnavailable::Closed)?;
            wait.await.map_err(|_| AuditUnavailable::Closed)?
        };
        tokio::time::timeout(self.timeout, send_and_wait)
            .await
            .unwrap_or(Err(AuditUnavailable::Unavailable))
    }

    /// Stops taking new events (callers then get `Closed`, so nothing runs unaudited) and lets
    /// the writer write out what is queued and end.
    pub async fn close(&self) {
        let _ = self.queue.send(Job::Close).await;
    }

    /// False after the last batch failed, until one succeeds: lets callers refuse work up
    /// front instead of running it and then failing to record it.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

type Waiter = oneshot::Sender<Result<i64, AuditUnavailable>>;

/// Takes the queued jobs into `events`/`waiters` (up to `max`); returns false when the queue is
/// closed and empty.
fn take(
    rx: &mut mpsc::Receiver<Job>,
    first: Job,
    max: usize,
    events: &mut Vec<AuditEvent>,
    waiters: &mut Vec<Waiter>,
) {
    let mut next = Some(first);
    while let Some(job) = next {
        match job {
            Job::Record { event, done } => {
                events.push(*event);
                waiters.push(done);
            }
            // The queue keeps delivering what was sent before the close.
            Job::Close => rx.close(),
        }
        next = if events.len() < max {
            rx.try_recv().ok()
        } else {
            None
        };
    }
}

fn answer(
    result: Result<Vec<i64>, super::StoreError>,
    waiters: &mut Vec<Waiter>,
    healthy: &AtomicBool,
) {
    healthy.store(result.is_ok(), Ordering::Relaxed);
    match result {
        Ok(ids) => {
            for (done, id) in waiters.drain(..).zip(ids) {
                let _ = done.send(Ok(id));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), events = waiters.len(), "audit batch not written");
            for done in waiters.drain(..) {
                let _ = done.send(Err(AuditUnavailable::Unavailable));
            }
        }
    }
}

fn run_sqlite(
    path: &std::path::Path,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    healthy: &AtomicBool,
) {
    let mut conn = match open_sqlite(path) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "audit writer cannot open the database");
            None
        }
    };
    let (mut events, mut waiters) = (Vec::with_capacity(max_batch), Vec::with_capacity(max_batch));
    while let Some(first) = rx.blocking_recv() {
        take(&mut rx, first, max_batch, &mut events, &mut waiters);
        if events.is_empty() {
            continue;
        }
        match conn.as_mut() {
            Some(c) => {
                let result = audit::write_batch_sqlite(c, &events);
                if result.is_err() && events.len() > 1 {
                    for (event, done) in events.iter().zip(waiters.drain(..)) {
                        let one = audit::write_batch_sqlite(c, std::slice::from_ref(event));
                        answer(one, &mut vec![done], healthy);
                    }
                } else {
                    answer(result, &mut waiters, healthy);
                }
            }
            None => answer(
                Err(super::StoreError::Corrupt(
                    "audit writer has no database connection".into(),
                )),
                &mut waiters,
                healthy,
            ),
        }
        events.clear();
    }
    tracing::debug!("audit writer stopped");
}

/// The writer's own connection, with the same settings as the pool's.
pub fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", super::SQLITE_SYNCHRONOUS)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

async fn run_async(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
) {
    let (mut events, mut waiters) = (Vec::with_capacity(max_batch), Vec::with_capacity(max_batch));
    while let Some(first) = rx.recv().await {
        take(&mut rx, first, max_batch, &mut events, &mut waiters);
        if events.is_empty() {
            continue;
        }
        let result = audit::write_batch(&store, &events).await;
        // When the database is unreachable, one by one would only wait longer for the same
        // answer.
        let isolate = events.len() > 1
            && matches!(&result, Err(e) if !matches!(e, super::StoreError::Unavailable(_)));
        if isolate {
            for (event, done) in events.iter().zip(waiters.drain(..)) {
                let one = audit::write_batch(&store, std::slice::from_ref(event)).await;
                answer(one, &mut vec![done], &healthy);
            }
        } else {
            answer(result, &mut waiters, &healthy);
        }
        events.clear();
    }
    tracing::debug!("audit writer stopped");
}
