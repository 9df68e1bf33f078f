//! The check a server runs on its own trail before serving: a failure is logged loudly,
//! audited, shown on metrics and readiness detail, and (only when told to refuse) stops calls.

use crate::domain::audit::{Action, Source, Status};
use crate::ops::CallMeta;
use crate::ops::app::App;

use super::verify::{Mode, Verdict, verify};

/// Runs the quick check; returns the problem, if any (already reported everywhere).
pub async fn check_at_start(app: &App, source: Source) -> Option<String> {
    let problem = match verify(app, Mode::Quick, false, &|_, _| {}).await {
        Ok(r) if matches!(r.verdict, Verdict::Ok | Verdict::Unverifiable) => None,
        Ok(r) => Some(format!(
            "{}: {}",
            serde_json::to_value(r.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.first_problem.map(|p| p.detail).unwrap_or_default()
        )),
        Err(e) => Some(format!("the check could not run: {e}")),
    };
    let Some(problem) = problem else {
        app.metrics.audit_integrity_violation.set(0);
        return None;
    };
    tracing::error!(problem = %problem, refuse = app.audit_log.settings.refuse_on_violation, "AUDIT TRAIL INTEGRITY CHECK FAILED at start");
    app.metrics.audit_integrity_violation.set(1);
    app.audit_log.set_violation(Some(problem.clone()));
    let mut event =
        CallMeta::new(source).event(app.now(), Action::AuditIntegrity, Status::Failed, "system");
    event.reason = Some(problem.clone());
    if let Err(e) = app.audit.record(event).await {
        tracing::error!(error = %e, "the integrity failure could not be audited");
    }
    Some(problem)
}
