//! Housekeeping for the authorization server's tables.

use chrono::Duration;

use crate::ops::app::App;

/// Housekeeping, run every minute by the HTTP server: expired requests, codes and tokens go,
/// sealed refresh successors past the grace window are dropped, and registered clients never
/// used within a day (or idle for 90 days) that hold no live grant are deleted.
pub async fn sweep(app: &App) -> Result<(), crate::store::StoreError> {
    let Some(oauth) = &app.oauth else {
        return Ok(());
    };
    let now = app.now();
    crate::store::oauth::sweep(&app.store, now, now - oauth.settings.refresh_grace).await?;
    let gone = crate::store::oauth::expire_clients(
        &app.store,
        now - Duration::days(1),
        now - Duration::days(90),
    )
    .await?;
    if gone > 0 {
        tracing::info!(clients = gone, "oauth: unused registered clients expired");
    }
    Ok(())
}
