//! The folder beside the server: every little while it folds the events the log has placed
//! into the hourly and daily roll-ups, and compacts the hours that are past (by the injected
//! clock). Every replica runs one; they take turns on the roll-ups' state row, so a second
//! finds nothing left to do. A failure is logged and retried: summaries stay exact without
//! it, only slower (they read the events not folded yet).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::ops::OpsError;
use crate::ops::app::App;
use crate::store::audit::rollup;

/// How often the folder folds at the least (wall time), and how often it looks in between at
/// how many events wait (one small read).
const FOLD_EVERY: Duration = Duration::from_secs(30);
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Events waiting that make the folder fold before `FOLD_EVERY` is up: a busy trail (past
/// ~330 audited calls a second, which fill it within 30 s) stays within what summaries read
/// roll-ups for (`summary::MAX_UNFOLDED`), while a quiet one is folded in few, larger
/// transactions.
const FOLD_AT: i64 = rollup::FOLD_CHUNK / 2;

/// Whether the folder should fold now: enough events wait, or it is time. After a fold that
/// failed, only the clock: a failure that lasts (the database away, or roll-ups kept by a
/// newer build during an upgrade, where the whole trail looks unfolded) is then tried and
/// reported every `FOLD_EVERY`, not at every look.
fn due(unfolded: i64, since_fold: Duration, failed: bool) -> bool {
    (unfolded >= FOLD_AT && !failed) || since_fold >= FOLD_EVERY
}

/// How long after an hour ends its rows are merged: events for it still arriving (a journal
/// moved late, a slow replica) fold in as rows of their own, which readers add up as well.
const SETTLE: chrono::Duration = chrono::Duration::minutes(10);

/// What `fold` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Folded {
    pub events: i64,
    pub hours_compacted: i64,
}

/// Folds until nothing is due, one bounded transaction at a time.
pub async fn fold(app: &App) -> Result<Folded, OpsError> {
    fold_until(app, &AtomicBool::new(false)).await
}

/// `fold`, ending early once `stopping` is set (between transactions).
async fn fold_until(app: &App, stopping: &AtomicBool) -> Result<Folded, OpsError> {
    let mut done = Folded::default();
    while !stopping.load(Ordering::Relaxed) {
        let settled = (app.now() - SETTLE).timestamp_micros();
        let step = rollup::fold_step(&app.store, settled).await?;
        done.events += step.folded;
        done.hours_compacted += step.compacted_hours;
        if !step.more {
            return Ok(done);
        }
        // Let writers and readers in between transactions.
        tokio::task::yield_now().await;
    }
    Ok(done)
}

/// The running folder; `stop` ends it after the transaction in progress, if any (a catch-up
/// of millions of events does not hold up shutdown).
pub struct Folder {
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Folder {
    pub async fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_one();
        let _ = self.handle.await;
    }
}

pub fn start(app: App) -> Folder {
    let stop = Arc::new(Notify::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let handle = tokio::spawn(run(app, stop.clone(), stopping.clone()));
    Folder {
        stop,
        stopping,
        handle,
    }
}

async fn run(app: App, stop: Arc<Notify>, stopping: Arc<AtomicBool>) {
    let mut last = None::<tokio::time::Instant>;
    let mut failed = false;
    loop {
        let since = last.map_or(FOLD_EVERY, |t| t.elapsed());
        // A failed look waits for the clock: the fold then reports the error, every
        // FOLD_EVERY, not every look.
        let unfolded = rollup::snapshot(&app.store)
            .await
            .map_or(0, |seen| seen.unfolded());
        if due(unfolded, since, failed) {
            last = Some(tokio::time::Instant::now());
            let folded = fold_until(&app, &stopping).await;
            failed = folded.is_err();
            match folded {
                Ok(f) if f.events > 0 || f.hours_compacted > 0 => {
                    tracing::debug!(
                        events = f.events,
                        hours = f.hours_compacted,
                        "audit roll-ups folded"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit roll-ups not folded; retrying"),
            }
        }
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_when_enough_events_wait_or_when_it_is_time() {
        let soon = Duration::from_secs(3);
        assert!(!due(0, soon, false));
        assert!(!due(FOLD_AT - 1, soon, false));
        assert!(due(FOLD_AT, soon, false));
        assert!(due(1, FOLD_EVERY, false));
        assert!(
            due(0, FOLD_EVERY + soon, false),
            "compaction is due by the clock too"
        );
        // After a failed fold, however many events wait, only the clock.
        assert!(!due(i64::MAX, soon, true));
        assert!(due(i64::MAX, FOLD_EVERY, true));
        // Summaries read roll-ups up to MAX_UNFOLDED events behind: a trail that grows by
        // another FOLD_AT while a fold runs stays within it.
        const { assert!(2 * FOLD_AT <= super::super::summary::MAX_UNFOLDED) };
    }
}
