//! Where argon2 runs: a few threads of keyward's own (cores − 1, at least one), never the async
//! runtime's, so a burst of sign-ins queues here while every other request keeps being served.
//! Each job gets the `OffRuntime` proof that `Password::hash` and `verify` require; the decoy
//! hash for unknown usernames is computed once, on first use. Runs are counted (tests compare
//! the work a known and an unknown username cost).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::domain::password::{self, OffRuntime};

type Job = Box<dyn FnOnce(&OffRuntime, &AtomicU64) + Send>;

pub struct PasswordWork {
    queue: Mutex<mpsc::Sender<Job>>,
    /// Bounds the jobs waiting or running: past it, new work is refused at once rather than
    /// queued (each waiting sign-in holds a password and a connection).
    slots: tokio::sync::Semaphore,
    runs: Arc<AtomicU64>,
    decoy: tokio::sync::OnceCell<String>,
}

/// Jobs allowed to wait for a password thread at once.
pub const MAX_QUEUED: usize = 256;

impl PasswordWork {
    /// Starts `width` worker threads; they end when this is dropped.
    pub fn start(width: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let runs = Arc::new(AtomicU64::new(0));
        for n in 0..width.max(1) {
            let (rx, runs) = (rx.clone(), runs.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("keyward-argon2-{n}"))
                .spawn(move || {
                    let Some(off) = OffRuntime::here() else {
                        return;
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        job(&off, &runs);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password work thread");
            }
        }
        PasswordWork {
            queue: Mutex::new(tx),
            slots: tokio::sync::Semaphore::new(MAX_QUEUED),
            runs,
            decoy: tokio::sync::OnceCell::new(),
        }
    }

    /// The width for this machine: one core is left to request handling.
    pub fn default_width() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1)
    }

    /// Runs `job` on a password thread and waits for it; `None` when too much work is queued
    /// already, or the threads are gone. A job whose caller has given up (its request timed
    /// out or its client left) is skipped, not run.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&OffRuntime) -> T + Send + 'static,
    ) -> Option<T> {
        let _slot = self.slots.try_acquire().ok()?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |off, runs| {
            if done.is_closed() {
                return;
            }
            runs.fetch_add(1, Ordering::Relaxed);
            let _ = done.send(job(off));
        });
        self.queue.lock().ok()?.send(job).ok()?;
        result.await.ok()
    }

    /// argon2 runs so far (each hash or verify is one).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The hash unknown usernames are verified against.
    pub async fn decoy(&self) -> Option<String> {
        self.decoy
            .get_or_try_init(|| async { self.run(password::decoy_hash).await.ok_or(()) })
            .await
            .ok()
            .cloned()
    }
}
