//! The audit writer: one task per process that appends audit events in batches.
//!
//! Callers hand over an event and wait until the transaction holding it has committed, so an
//! answered call is never missing from the trail. Whatever arrived while the previous batch was
//! being written goes into the next single transaction (group commit), so a busy server pays one
//! commit for many calls. The queue is bounded: when it is full, callers wait (backpressure);
//! when the database refuses a batch, every caller in it gets an error and must fail the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

struct Job {
    event: AuditEvent,
    done: oneshot::Sender<Result<i64, AuditUnavailable>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Job>,
    closing: CancellationToken,
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
            max_batch: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

impl AuditWriter {
    /// Starts the writer task. It runs until every `AuditWriter` clone is dropped (or `close`
    /// is called), writing whatever is still queued before it ends.
    pub fn start(store: Store, config: &WriterConfig) -> (AuditWriter, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let closing = CancellationToken::new();
        let handle = tokio::spawn(run(
            store,
            rx,
            config.max_batch.max(1),
            healthy.clone(),
            closing.clone(),
        ));
        (
            AuditWriter {
                queue,
                closing,
                healthy,
                timeout: config.timeout,
            },
            handle,
        )
    }

    /// Queues `event` and waits until it is committed; returns its id.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, AuditUnavailable> {
        let (done, wait) = oneshot::channel();
        let job = Job { event, done };
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

    /// Stops taking new events (callers then get `Closed`, so nothing runs unaudited) and
    /// lets the task write out what is queued and end.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// False after the last batch failed, until one succeeds: lets callers refuse work up
    /// front instead of running it and then failing to record it.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
    closing: CancellationToken,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut closed = false;
    loop {
        let n = if closed {
            rx.recv_many(&mut batch, max_batch).await
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch, max_batch) => n,
                () = closing.cancelled() => {
                    // No new events; what is already queued is still written below.
                    rx.close();
                    closed = true;
                    continue;
                }
            }
        };
        if n == 0 {
            break;
        }
        let events: Vec<AuditEvent> = batch.iter().map(|j| j.event.clone()).collect();
        let result = write(&store, &events).await;
        healthy.store(result.is_ok(), Ordering::Relaxed);
        match result {
            Ok(ids) => {
                for (job, id) in batch.drain(..).zip(ids) {
                    let _ = job.done.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), events = batch.len(), "audit batch not written");
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(AuditUnavailable::Unavailable));
                }
            }
        }
    }
    tracing::debug!("audit writer stopped");
}

async fn write(store: &Store, events: &[AuditEvent]) -> Result<Vec<i64>, super::StoreError> {
    let mut tx = store.begin().await?;
    let ids = audit::append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(ids)
}
