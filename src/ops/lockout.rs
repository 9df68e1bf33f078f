//! Brute-force protection across every replica: failed authentications are counted per client
//! address (an IPv6 /64 counts as one) in the database; crossing the threshold locks the
//! address and is audited once. Counters that hold nothing back any more are pruned.
//!
//! Two ways to count. Bearer keys on `/mcp` (256-bit secrets, the hot path) are counted after
//! they fail. Sign-in and bootstrap (passwords and one-time tokens, which can be guessed) are
//! counted *before* they are checked and forgiven if they succeed, so parallel guesses cannot
//! exceed the threshold.

use chrono::{DateTime, Utc};

use super::OpsError;
use super::auth::refusal::Rejected;
use super::auth::trail::record_rejection;
use super::call::CallMeta;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::ops::app::App;
use crate::store;
use crate::store::lockout::FailureCount;

/// Until when `ip` is locked out, if it is. The answer may be up to the lock cache's TTL
/// (≤ 1 s) old for locks set by other replicas; this replica's own locks are seen at once.
pub async fn locked_until(app: &App, ip: &str) -> Result<Option<DateTime<Utc>>, OpsError> {
    let now = app.now();
    let until = match app.lock_cache.get(ip, now) {
        Some(cached) => cached,
        None => {
            let generation = app.lock_cache.generation();
            let until = store::lockout::locked_until(&app.store, ip, now).await?;
            app.lock_cache
                .put_read(ip.to_owned(), until, now, generation);
            until
        }
    };
    Ok(until.filter(|t| *t > now))
}

/// An attempt counted before its credential is checked.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    count: FailureCount,
}

impl Reservation {
    /// Set when this attempt is past the threshold: refuse it without checking the credential.
    pub fn refused_until(&self, app: &App) -> Option<DateTime<Utc>> {
        (self.count.failures > app.lockout.threshold)
            .then_some(self.count.locked_until)
            .flatten()
    }
}

/// Counts an attempt from `ip` before checking it.
pub async fn reserve(app: &App, ip: &str) -> Result<Reservation, OpsError> {
    let now = app.now();
    let count = store::lockout::record_failure(&app.store, ip, now, &app.lockout).await?;
    app.lock_cache.put(ip.to_owned(), count.locked_until, now);
    Ok(Reservation { count })
}

/// The reserved attempt succeeded: take it back (and the lock it set, if it set one).
pub async fn forgive(app: &App, ip: &str, r: Reservation) -> Result<(), OpsError> {
    let set_lock = (r.count.failures == app.lockout.threshold)
        .then_some(r.count.locked_until)
        .flatten();
    store::lockout::forgive(&app.store, ip, set_lock).await?;
    if set_lock.is_some() {
        app.lock_cache.put(ip.to_owned(), None, app.now());
    }
    Ok(())
}

/// The reserved attempt failed: audit it, and the lockout if it was the one that set it.
pub async fn confirm(
    app: &App,
    ip: &str,
    r: Reservation,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<(), OpsError> {
    record_rejection(app, rejected, meta).await?;
    settle(app, ip, r, meta).await
}

/// The reserved attempt stays counted (the caller audited it its own way); announces the
/// lockout if this attempt set it.
pub async fn settle(app: &App, ip: &str, r: Reservation, meta: &CallMeta) -> Result<(), OpsError> {
    announce_lock(app, ip, r.count, meta).await
}

/// Records one refused credential from `ip` after the fact: audited, counted, and, on reaching
/// the threshold, the IP is locked (audited as `auth_lockout`).
pub async fn record_failure(
    app: &App,
    ip: &str,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<FailureCount, OpsError> {
    record_rejection(app, rejected, meta).await?;
    let r = reserve(app, ip).await?;
    announce_lock(app, ip, r.count, meta).await?;
    Ok(r.count)
}

async fn announce_lock(
    app: &App,
    ip: &str,
    count: FailureCount,
    meta: &CallMeta,
) -> Result<(), OpsError> {
    if count.failures != app.lockout.threshold {
        return Ok(());
    }
    let Some(until) = count.locked_until else {
        return Ok(());
    };
    tracing::warn!(client_ip = ip, failures = count.failures, until = %until, "client IP locked out after repeated authentication failures");
    app.metrics.lockouts.inc();
    let event = AuditEvent {
        reason: Some(format!(
            "{} failed authentications within {} s; locked until {}",
            count.failures,
            app.lockout.window.num_seconds(),
            crate::domain::timespec::format_utc(until)
        )),
        ..meta.event(app.now(), Action::AuthLockout, Status::Denied, "anonymous")
    };
    app.audit.record(event).await?;
    Ok(())
}

/// Deletes counters that no longer hold anything back (run periodically by the HTTP server).
pub async fn prune(app: &App) -> Result<u64, OpsError> {
    Ok(store::lockout::prune(&app.store, app.now(), &app.lockout).await?)
}
