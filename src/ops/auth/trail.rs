//! A refused credential's audit record.

use super::refusal::Rejected;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::domain::tenant::TenantScope;
use crate::ops::OpsError;
use crate::ops::app::App;
use crate::ops::call::CallMeta;

/// Records a refused credential in the audit trail.
pub async fn record_rejection(
    app: &App,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Result<(), OpsError> {
    let kind = rejected.actor_kind.unwrap_or("anonymous");
    let event = AuditEvent {
        actor_id: rejected.key_id.clone(),
        actor_name: rejected.name.as_deref().map(str::to_owned),
        actor_preview: rejected.preview.clone(),
        tenants: rejected
            .tenants
            .clone()
            .unwrap_or_else(|| TenantScope::All.to_vec()),
        reason: Some(rejected.failure.reason().to_owned()),
        ..meta.event(app.now(), Action::AuthFailed, Status::Denied, kind)
    };
    app.audit.record(event).await?;
    Ok(())
}
