//! The signer beside the server: checks often whether a checkpoint is due, by the injected
//! clock (so tests move time instead of waiting), and signs a last one at clean shutdown. On
//! PostgreSQL only the replica holding the signer lock signs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::ops::app::App;
use crate::store::audit::{checkpoints, log as seqlog};

use super::sign::{Why, sign};

/// How often the signer looks (wall time). Cheap: two one-row reads.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The running signer; `stop` signs the shutdown checkpoint and ends it.
pub struct Signer {
    stop: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl Signer {
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.handle.await;
    }
}

/// Starts the signer (a no-op task when this process has no key).
pub fn start(app: App) -> Signer {
    let stop = Arc::new(Notify::new());
    let handle = tokio::spawn(run(app, stop.clone()));
    Signer { stop, handle }
}

async fn due(app: &App) -> Result<Option<Why>, crate::store::StoreError> {
    let head = crate::store::audit::tree::head(&app.store).await?;
    let Some(last) = checkpoints::latest(&app.store).await? else {
        return Ok(Some(Why::Genesis));
    };
    let since = app.now().timestamp_micros() - last.at;
    // A checkpoint from the future (a clock stepped back, a replica's fast clock) must not
    // stop signing until time catches up.
    if since < 0 {
        let grew = head.size as i64 > last.size;
        return Ok(Some(if grew { Why::Commit } else { Why::Heartbeat }));
    }
    let s = &app.audit_log.settings;
    if head.size as i64 > last.size && since >= s.every.num_microseconds().unwrap_or(0) {
        return Ok(Some(Why::Commit));
    }
    if since >= s.heartbeat.num_microseconds().unwrap_or(i64::MAX) {
        return Ok(Some(Why::Heartbeat));
    }
    Ok(None)
}

async fn run(app: App, stop: Arc<Notify>) {
    if app.audit_log.keys.is_none() {
        stop.notified().await;
        return;
    }
    let mut lock = None;
    let mut warned = false;
    let mut pruned_at: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let stopping = tokio::select! {
            () = stop.notified() => true,
            () = tokio::time::sleep(LOOK_EVERY) => false,
        };
        if lock.is_none() {
            match seqlog::try_signer_lock(&app.store).await {
                Ok(held) => lock = held,
                Err(e) => tracing::warn!(error = %e, "audit signer lock not taken"),
            }
            if lock.is_none() {
                if stopping {
                    return;
                }
                continue;
            }
        }
        let why = if stopping {
            Some(Why::Shutdown)
        } else {
            due(&app).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "audit checkpoint check failed");
                None
            })
        };
        if let Some(why) = why {
            match sign(&app, why).await {
                Ok(_) => {
                    warned = false;
                    let bad = app.audit_log.violation().is_some();
                    app.metrics.audit_integrity_violation.set(i64::from(bad));
                }
                // Only an integrity failure is a violation; a database that cannot be reached
                // is retried on the next look.
                Err(super::LogError::Integrity(detail)) if !warned => {
                    warned = true;
                    tracing::error!(error = %detail, "AUDIT CHECKPOINT NOT SIGNED: the log failed its integrity check");
                    app.audit_log.set_signing_violation(&detail);
                    app.metrics.audit_integrity_violation.set(1);
                    let mut event = crate::ops::CallMeta::new(crate::domain::audit::Source::Http)
                        .event(
                            app.now(),
                            crate::domain::audit::Action::AuditIntegrity,
                            crate::domain::audit::Status::Failed,
                            "system",
                        );
                    event.reason = Some(format!("while signing a checkpoint: {detail}"));
                    if let Err(e) = app.audit.record(event).await {
                        tracing::error!(error = %e, "the integrity failure could not be audited");
                    }
                }
                Err(super::LogError::Integrity(_)) => {}
                Err(e) => tracing::warn!(error = %e, "audit checkpoint not signed yet; retrying"),
            }
        }
        if stopping {
            return;
        }
        // Retention, at most hourly (by the injected clock), by the signer only.
        let now = app.now();
        if app.audit_log.settings.retention.is_some()
            && pruned_at.is_none_or(|t| now - t >= chrono::Duration::hours(1))
        {
            pruned_at = Some(now);
            match super::retention::prune_due(&app).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(events = n, "audit retention removed old event bodies");
                    // Perhaps more is due: look again on the next round.
                    pruned_at = None;
                }
                Err(e) => tracing::error!(error = %e, "audit retention failed"),
            }
        }
    }
}
