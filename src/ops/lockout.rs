//! Brute-force protection across every replica: failed authentications are counted per client
//! IP in the database; crossing the threshold locks the IP and is audited once.

use chrono::{DateTime, Utc};

use super::OpsError;
use super::auth::{Rejected, record_rejection};
use super::call::CallMeta;
use crate::app::App;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::store;
use crate::store::lockout::FailureCount;

/// Until when `ip` is locked out, if it is.
pub async fn locked_until(app: &App, ip: &str) -> Result<Option<DateTime<Utc>>, OpsError> {
    Ok(store::lockout::locked_until(&app.store, ip, app.now()).await?)
}

/// Records one refused credential from `ip`: audited, counted, and, on reaching the threshold,
/// the IP is locked (audited as `auth_lockout`). Returns the count and the lock, if any.
pub async fn record_failure(
    app: &App,
    ip: &str,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<FailureCount, OpsError> {
    record_rejection(app, rejected, meta).await?;
    let now = app.now();
    let count = store::lockout::record_failure(&app.store, ip, now, &app.lockout).await?;
    if count.failures == app.lockout.threshold
        && let Some(until) = count.locked_until
    {
        tracing::warn!(client_ip = ip, failures = count.failures, until = %until, "client IP locked out after repeated authentication failures");
        app.metrics.lockouts.inc();
        let event = AuditEvent {
            reason: Some(format!(
                "{} failed authentications within {} s; locked until {}",
                count.failures,
                app.lockout.window.num_seconds(),
                crate::domain::timespec::format_utc(until)
            )),
            ..meta.event(now, Action::AuthLockout, Status::Denied, "anonymous")
        };
        app.audit.record(event).await?;
    }
    Ok(count)
}
