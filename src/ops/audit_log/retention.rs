//! `--audit-retention`: event bodies older than the cutoff are removed in small batches of
//! whole chunks, never past the newest signed checkpoint (so what goes stays provable through
//! the chunk hashes kept), each batch recorded in the trail as `audit_prune`.

use crate::domain::audit::{Action, Source, Status};
use crate::domain::merkle::CHUNK;
use crate::ops::CallMeta;
use crate::ops::app::App;
use crate::store::audit::{checkpoints, prune, tree};

use super::LogError;

/// Events per transaction (whole chunks).
const BATCH: u64 = 4 * CHUNK;
/// Batches per call: a large backlog is worked off over several calls, so the signer keeps
/// signing in between.
const BATCHES_PER_CALL: usize = 16;

/// Prunes what is due now; returns how many events' bodies were removed.
pub async fn prune_due(app: &App) -> Result<i64, LogError> {
    let Some(retention) = app.audit_log.settings.retention else {
        return Ok(0);
    };
    let cutoff = (app.now() - retention).timestamp_micros();
    let store = &app.store;
    let head = tree::head(store).await?;
    // Never beyond what a checkpoint signed: the chunk hashes left must verify against it.
    let signed = checkpoints::largest(store)
        .await?
        .map_or(0, |c| c.size.max(0) as u64);
    let kept = prune::first_kept(store, head.pruned_below, cutoff)
        .await?
        .unwrap_or(head.size);
    let end = kept.min(signed).min(head.size) / CHUNK * CHUNK;
    let mut from = head.pruned_below;
    let mut removed = 0;
    let mut batches = 0;
    while from < end && batches < BATCHES_PER_CALL {
        batches += 1;
        let to = (from + BATCH).min(end);
        let days = retention.num_days();
        let record = |done: &prune::Pruned| {
            let mut event = CallMeta::new(Source::Cli).event(
                app.now(),
                Action::AuditPrune,
                Status::Success,
                "system",
            );
            event.reason = Some(format!(
                "retention {days}d: removed the bodies of {} events, seq {}..{} (their hashes stay)",
                done.events,
                done.from,
                done.to.saturating_sub(1)
            ));
            event.after = Some(serde_json::json!({
                "from_seq": done.from, "to_seq": done.to, "events": done.events,
                "policy": format!("{days}d"),
            }));
            event
        };
        let Some(done) = prune::prune(store, from, to, record).await? else {
            break;
        };
        removed += done.events;
        from = to;
        tokio::task::yield_now().await;
    }
    Ok(removed)
}
