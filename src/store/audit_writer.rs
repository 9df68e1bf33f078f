//! The audit writer: one per process, through which every audit record outside a change's
//! own transaction is committed. A caller's `record` returns once its record is committed, so
//! an answered call is never missing from the trail; when the trail cannot take records,
//! `record` fails and so does the call (fail closed).
//!
//! On SQLite a record is committed by appending it to the process's audit journal and moved
//! into the indexed tables in large transactions in the background (`journal`); readers
//! call `sync` first. On PostgreSQL, where the database is shared by replicas and must hold
//! the trail itself, a task on a thread of its own group-commits on a connection of its own:
//! whatever arrived while the previous batch was being written goes into the next single
//! transaction. Its queue is bounded (callers wait when it is full). When the database
//! refuses a batch, its events are tried one by one, so an event the database cannot take
//! fails only its own call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::AuditUnavailable;
use super::journal::{self, Journal};
use super::{Db, Store, StoreError, audit};
use crate::domain::audit::AuditEvent;

enum Job {
    Record {
        event: Box<AuditEvent>,
        done: oneshot::Sender<Result<i64, AuditUnavailable>>,
    },
    /// Take no more events; write what is queued, then stop.
    Close,
}

/// Closes the journal when the last writer handle goes, so its mover ends even if nobody
/// called `close`.
struct Closing(Arc<Journal>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[derive(Clone)]
enum Sink {
    Journal(Arc<Closing>),
    Queue {
        queue: mpsc::Sender<Job>,
        healthy: Arc<AtomicBool>,
    },
}

#[derive(Clone)]
pub struct AuditWriter {
    sink: Sink,
    timeout: Duration,
}

pub struct WriterConfig {
    /// Events waiting to be written before callers are made to wait (PostgreSQL).
    pub queue: usize,
    /// Most events per transaction (PostgreSQL).
    pub max_batch: usize,
    /// Longest a caller waits for its record before the call fails.
    pub timeout: Duration,
    /// Size at which a SQLite audit journal is replaced by a fresh file.
    pub journal_rotate_bytes: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 4096,
            max_batch: audit::MAX_ROWS_PER_STATEMENT,
            timeout: Duration::from_secs(10),
            journal_rotate_bytes: journal::ROTATE_BYTES,
        }
    }
}

impl AuditWriter {
    /// Starts the writer (on SQLite: first moves what stopped processes left in their
    /// journals). It runs until `close`, writing out whatever is committed but not yet moved;
    /// the handle finishes then.
    pub async fn start(
        store: Store,
        config: &WriterConfig,
    ) -> Result<(AuditWriter, JoinHandle<()>), StoreError> {
        match &store.db {
            Db::Sqlite(pool) => {
                let path = pool.connect_options().get_filename().to_path_buf();
                let options = journal::Options {
                    full_sync: super::SQLITE_SYNCHRONOUS == "FULL",
                    rotate_bytes: config.journal_rotate_bytes,
                    seal: store.seal.clone(),
                };
                let (journal, finished) = tokio::task::spawn_blocking(move || {
                    let conn = journal::open_sqlite(&path)?;
                    Journal::open(&path, conn, options)
                })
                .await
                .map_err(|_| StoreError::Corrupt("audit journal start-up failed".into()))??;
                let handle = tokio::spawn(async move {
                    let _ = finished.await;
                });
                Ok((
                    AuditWriter {
                        sink: Sink::Journal(Arc::new(Closing(journal))),
                        timeout: config.timeout,
                    },
                    handle,
                ))
            }
            Db::Postgres(_) => {
                let (queue, rx) = mpsc::channel(config.queue.max(1));
                let healthy = Arc::new(AtomicBool::new(true));
                let handle =
                    spawn_own_thread(store, rx, config.max_batch.max(1), healthy.clone()).await?;
                Ok((
                    AuditWriter {
                        sink: Sink::Queue { queue, healthy },
                        timeout: config.timeout,
                    },
                    handle,
                ))
            }
        }
    }

    /// Commits `event`, waiting until it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        match &self.sink {
            Sink::Journal(closing) => {
                let j = &closing.0;
                // Bounded backlog: when the mover falls this far behind, callers wait for it.
                if j.backlog() > journal::MAX_PENDING {
                    let caught_up = j.appended().saturating_sub(journal::MAX_PENDING / 2);
                    j.wait_moved(caught_up).await?;
                }
                j.append(event)
            }
            Sink::Queue { queue, .. } => {
                let (done, wait) = oneshot::channel();
                let job = Job::Record {
                    event: Box::new(event),
                    done,
                };
                let send_and_wait = async {
                    queue
                        .send(job)
                        .await
                        .map_err(|_| AuditUnavailable::Closed)?;
                    wait.await.map_err(|_| AuditUnavailable::Closed)?
                };
                tokio::time::timeout(self.timeout, send_and_wait)
                    .await
                    .unwrap_or(Err(AuditUnavailable::Unavailable))
                    .map(|_| ())
            }
        }
    }

    /// Returns once every record committed before the call is visible to queries.
    pub async fn sync(&self) -> Result<(), AuditUnavailable> {
        match &self.sink {
            Sink::Journal(j) => j.0.sync().await,
            Sink::Queue { .. } => Ok(()),
        }
    }

    /// Stops taking new events (callers then get `Closed`, so nothing runs unaudited) and lets
    /// the writer write out what is committed and end.
    pub async fn close(&self) {
        match &self.sink {
            Sink::Journal(j) => j.0.close(),
            Sink::Queue { queue, .. } => {
                let _ = queue.send(Job::Close).await;
            }
        }
    }

    /// False after the last write failed, until one succeeds: lets callers refuse work up
    /// front instead of running it and then failing to record it.
    pub fn is_healthy(&self) -> bool {
        match &self.sink {
            Sink::Journal(j) => j.0.is_healthy(),
            Sink::Queue { healthy, .. } => healthy.load(Ordering::Relaxed),
        }
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

/// Runs the PostgreSQL writer on a thread and runtime of its own, with a connection of its
/// own: each batch takes a few round trips, and on the server's runtime every reply would wait
/// for a worker to finish the requests it is serving before the writer could send the next
/// statement (measured: ~400 µs a round trip under load). Returns once the writer is connected;
/// the handle finishes when it stops.
async fn spawn_own_thread(
    store: Store,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StoreError> {
    let (ready, started) = oneshot::channel::<Result<(), StoreError>>();
    let (stopped, finished) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("keyward-audit-writer".into())
        .spawn(move || {
            // However the writer ends (a panic included), it reports itself unhealthy.
            let _unhealthy = Unhealthy(healthy.clone());
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send(Err(StoreError::Writer(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let connected = audit::PgWriter::connect(&store).await;
                drop(store);
                let writer = match connected {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                run_async(writer, rx, max_batch, healthy).await;
            });
            let _ = stopped.send(());
        })
        .map_err(StoreError::Writer)?;
    started
        .await
        .map_err(|_| StoreError::Corrupt("the audit writer did not start".into()))??;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// Marks the writer unhealthy when dropped.
struct Unhealthy(Arc<AtomicBool>);

impl Drop for Unhealthy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

async fn run_async(
    mut writer: audit::PgWriter,
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
        let result = writer.write(&events).await;
        // Only a refused write is tried one by one: a batch that may have been committed is
        // never written again, and when the database is unreachable one by one would only
        // wait longer for the same answer.
        let isolate = events.len() > 1 && matches!(&result, Err(audit::BatchError::Refused(_)));
        if isolate {
            for (event, done) in events.iter().zip(waiters.drain(..)) {
                let one = writer.write(std::slice::from_ref(event)).await;
                answer(one.map_err(Into::into), &mut vec![done], &healthy);
            }
        } else {
            answer(result.map_err(Into::into), &mut waiters, &healthy);
        }
        events.clear();
    }
    tracing::debug!("audit writer stopped");
}
