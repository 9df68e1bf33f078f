//! `App`: the shared state built once at start and cloned (cheaply) into every transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::lockout::LockoutPolicy;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::audit_writer::AuditWriter;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub audit: AuditWriter,
    pub lockout: LockoutPolicy,
    pub metrics: Arc<Metrics>,
    /// Tool calls under way, so shutdown can let them finish.
    pub inflight: Arc<InFlight>,
}

/// Counts work in progress and lets shutdown wait for it to drain.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held while a call runs; dropping it marks the call done.
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn current(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight, or `max` has passed.
    pub async fn wait_idle(&self, max: std::time::Duration) {
        let drained = async {
            loop {
                let notified = self.idle.notified();
                if self.current() == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(max, drained).await.is_err() {
            tracing::warn!(
                in_flight = self.current(),
                "calls still in flight at the end of the grace period"
            );
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl App {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
