//! `App`: the shared state built once at start and cloned (cheaply) into every transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::key::KeyDigest;
use crate::domain::lockout::LockoutPolicy;
use crate::metrics::Metrics;
use crate::ops::auth::cached::CachedKey;
use crate::ops::cache::TtlCache;
use crate::store::Store;
use crate::store::audit_writer::AuditWriter;

/// Cloned for every request (and every middleware layer), so one reference count, not one per
/// field.
#[derive(Clone)]
pub struct App(Arc<AppState>);

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl App {
    pub fn new(state: AppState) -> Self {
        App(Arc::new(state))
    }
}

/// Settings chosen at start that shape `App`'s behaviour.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub lockout: LockoutPolicy,
    /// How long a verified key or a lock state may be reused (at most 1 s; zero disables).
    pub cache_ttl: chrono::Duration,
    /// A throwaway database for `--auth-mode disabled`: marked so, and no other mode serves a
    /// database so marked.
    pub development: bool,
    /// Checkpoint signing, anchors and intervals of the provable audit log.
    pub audit_log: crate::ops::audit_log::LogSettings,
    /// Where `audit_export` writes bundles, and how many and how large.
    pub exports: crate::ops::audit_export::ExportSettings,
    /// The key sensitive columns, journal records and private exports are sealed with.
    pub encryption: Option<Arc<crate::domain::at_rest::AtRestKey>>,
}

pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub audit: AuditWriter,
    pub lockout: LockoutPolicy,
    pub metrics: Metrics,
    /// Tool calls under way, so shutdown can let them finish.
    pub inflight: Arc<InFlight>,
    /// Verified keys by digest, for at most the cache's TTL (≤ 1 s).
    pub key_cache: TtlCache<KeyDigest, Arc<CachedKey>>,
    /// Lock state by client IP, for at most the cache's TTL (≤ 1 s).
    pub lock_cache: TtlCache<String, Option<DateTime<Utc>>>,
    /// Where argon2 runs: threads of keyward's own, a few at a time, never the runtime's.
    pub passwords: crate::ops::password_work::PasswordWork,
    /// Hashes typed usernames (shared by every replica through the database).
    pub name_key: crate::domain::username::NameKey,
    /// Verified OAuth access tokens by digest, for at most the cache's TTL (≤ 1 s).
    pub token_cache: TtlCache<String, Arc<crate::ops::auth::cached::CachedToken>>,
    /// The built-in authorization server (managed mode, unless `--oauth off`).
    pub oauth: Option<Arc<crate::ops::oauth::OAuth>>,
    /// The provable audit log: origin, signing keys, anchors, integrity state.
    pub audit_log: Arc<crate::ops::audit_log::AuditLog>,
    /// The export directory and its caps.
    pub exports: crate::ops::audit_export::ExportSettings,
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

    /// Forgets every verified credential this process cached: after a change to keys, roles,
    /// operators or grants, the next request is checked against the database.
    pub fn forget_credentials(&self) {
        self.key_cache.clear();
        self.token_cache.clear();
    }
}
