//! THE choke point. Every `tools/call` passes here, in this order:
//! resolve the caller → map the tool to its declared permission → allow or deny → audit →
//! run. A denied call changes nothing and is audited as denied; an allowed call is audited
//! with its outcome, and its response waits until that record is committed.

use std::sync::Arc;

use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::Value;

use super::KeywardServer;
use super::error;
use crate::domain::audit::{self, Action, Status};
use crate::domain::catalog::{Access, ToolName};
use crate::domain::error::DomainError;
use crate::domain::principal::Principal;
use crate::domain::{ids, secrets};
use crate::ops::call::{Failure, Outcome, Target};
use crate::ops::{Call, CallMeta, ErrorKind};

/// Why a call never reached its tool: the answer to send, already audited where it could be.
type Refusal = Result<CallToolResponse, McpError>;

/// A call the guard let through: the tool, the call (who, what, where from) and its target.
struct Allowed {
    tool: ToolName,
    call: Arc<Call>,
    target: Option<Target>,
}

impl KeywardServer {
    /// Decide, run, finish: a call is refused (and audited) or run, and then audited with its
    /// outcome before its answer leaves.
    pub(super) async fn guard(
        &self,
        request: CallToolRequestParams,
        mut ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let _in_flight = self.app.inflight.enter();
        let started = std::time::Instant::now();
        let allowed = match self.decide(&request, &mut ctx).await {
            Ok(allowed) => allowed,
            Err(refusal) => return refusal,
        };
        let response = self.run(&allowed, request, ctx).await;
        self.finish(&allowed, response, started).await
    }

    /// Who is calling, which tool, and whether the caller's role allows it. Refusals are
    /// audited here; nothing runs.
    async fn decide(
        &self,
        request: &CallToolRequestParams,
        ctx: &mut RequestContext<RoleServer>,
    ) -> Result<Allowed, Refusal> {
        let meta = self.call_meta(ctx);
        let principal = self
            .caller(ctx, &meta)
            .await
            .map_err(|f| Ok(error::result(f.kind, f.message).into()))?;
        let args = request
            .arguments
            .as_ref()
            .map(|a| audit::redact(&Value::Object(a.clone())));
        let Some(tool) = ToolName::parse(&request.name) else {
            let call = Call::new(principal, Action::UnknownTool, meta, args);
            let reason = format!(
                "no tool named '{}'",
                clip(&audit::redact_text(&request.name))
            );
            self.record(&call, failed(Status::Failed, None, &reason))
                .await
                .map_err(Ok)?;
            return Err(Err(McpError::invalid_params("tool not found", None)));
        };
        let target = target_of(tool, args.as_ref());
        let call = Arc::new(Call::new(principal, tool.action(), meta, args));
        let exempt = tool == ToolName::AuditVerify;
        self.admit(&call, tool.access(), target.clone(), exempt)
            .await
            .map_err(|(kind, text)| Ok(error::result(kind, text).into()))?;
        Ok(Allowed { tool, call, target })
    }

    /// The gate every tool call, resource read and prompt passes once its caller is known:
    /// the catalogue line's permission (a denial is logged, counted and audited), then nothing
    /// runs while the trail cannot take records or, when told to, after a failed integrity
    /// check (`exempt`: checking the trail again still runs).
    pub(super) async fn admit(
        &self,
        call: &Call,
        access: Access,
        target: Option<Target>,
        exempt: bool,
    ) -> Result<(), (ErrorKind, String)> {
        let label = call.action().as_str();
        if let Access::Needs(needed) = access
            && !call.principal().has(needed)
        {
            let denial = DomainError::Forbidden {
                needed,
                role: call.principal().role().to_owned(),
            };
            tracing::info!(action = label, %needed, "call denied");
            self.count(label, Status::Denied);
            let outcome = failed(Status::Denied, target, &denial.to_string());
            self.record_or(call, outcome).await?;
            return Err((ErrorKind::PermissionDenied, denial.to_string()));
        }
        // Fail closed: while the trail cannot take records, run nothing.
        if !self.app.audit.is_healthy() && self.app.store.ping().await.is_err() {
            return Err((ErrorKind::Unavailable, UNAVAILABLE.into()));
        }
        // Told to refuse on a failed integrity check: only checking the trail again runs.
        let log = &self.app.audit_log;
        if log.settings.refuse_on_violation
            && !exempt
            && let Some(v) = log.violation()
        {
            let text = format!(
                "refused: the audit trail failed its integrity check ({v}); an operator must \
                 investigate (audit_verify shows the problem)"
            );
            return Err((ErrorKind::Unavailable, text));
        }
        Ok(())
    }

    /// Runs the tool with the call in its context; what comes back is bounded and scrubbed.
    async fn run(
        &self,
        allowed: &Allowed,
        request: CallToolRequestParams,
        mut ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        ctx.extensions.insert(allowed.call.clone());
        let mut response = self
            .router
            .call(ToolCallContext::new(self, request, ctx))
            .await;
        if let Ok(CallToolResponse::Complete(result)) = &mut response
            && result.is_error == Some(true)
        {
            // An error our code did not produce comes from rmcp's deserialisation of the
            // arguments: it gets the same error kind in `_meta` as every other failure.
            if allowed.call.failure().is_none() {
                let mut meta = result.meta.take().unwrap_or_default();
                meta.0.insert(
                    super::error::ERROR_META.into(),
                    ErrorKind::InvalidArgument.code().into(),
                );
                result.meta = Some(meta);
            }
            // Error texts quote what the caller sent (rmcp's "unknown variant `…`", "no key
            // with id …"); a key pasted into the wrong field must not come back, nor a megabyte.
            for block in &mut result.content {
                if let ContentBlock::Text(t) = block {
                    t.text = clip_message(&secrets::scrub(&t.text));
                }
            }
        }
        if let Err(e) = &mut response {
            e.message = clip_message(&secrets::scrub(&e.message)).into();
        }
        response
    }

    /// Audits the outcome (unless the use case committed its record with its change) and
    /// counts it. When the record cannot be written, the answer is withheld.
    async fn finish(
        &self,
        allowed: &Allowed,
        mut response: Result<CallToolResponse, McpError>,
        started: std::time::Instant,
    ) -> Result<CallToolResponse, McpError> {
        let Allowed { tool, call, target } = allowed;
        let tool = *tool;
        let status = if call.recorded().is_some() {
            // The change and its record are committed; a failure after that (none today) is
            // still logged.
            if let Some(detail) = call.failure().and_then(|f| f.detail.as_ref()) {
                tracing::error!(tool = tool.wire(), error = %detail, "tool call failed after its change committed");
            }
            Status::Success
        } else {
            let outcome = match (call.failure(), &response) {
                (Some(failure), _) => {
                    if let Some(detail) = &failure.detail {
                        tracing::error!(tool = tool.wire(), error = %detail, "tool call failed");
                    }
                    let reason = clip_message(&secrets::scrub(&failure.message));
                    failed(failure.status(), target.clone(), &reason)
                }
                (None, Ok(CallToolResponse::Complete(result))) if result.is_error == Some(true) => {
                    failed(Status::Failed, target.clone(), &text_of(result))
                }
                (None, Err(e)) => failed(Status::Failed, target.clone(), &e.message),
                (None, Ok(_)) if !tool.read_only() => {
                    // Every change commits with its record (`Call::commit_with`); one that did
                    // not would be audited here, but not atomically with the change.
                    tracing::error!(
                        tool = tool.wire(),
                        "a change was not committed with its audit record"
                    );
                    if cfg!(debug_assertions) {
                        let refused = error::result(ErrorKind::Internal, UNRECORDED_CHANGE.into());
                        response = Ok(refused.into());
                        failed(Status::Error, target.clone(), UNRECORDED_CHANGE)
                    } else {
                        Outcome::success(target.clone())
                    }
                }
                (None, Ok(_)) => Outcome::success(target.clone()),
            };
            let status = outcome.status;
            if let Err(unrecorded) = self.record(call, outcome).await {
                // The result is withheld: nothing leaves unaudited.
                return Ok(unrecorded);
            }
            status
        };
        // Every call is in the audit trail already; the log line is for debugging.
        tracing::debug!(tool = tool.wire(), %status, actor = call.principal().actor().id(), "tool call");
        let elapsed = started.elapsed();
        if elapsed >= SLOW_CALL {
            // A summary: which tool, how long; never the statements it ran or its arguments.
            tracing::warn!(tool = tool.wire(), %status, elapsed_ms = elapsed.as_millis() as u64, "slow tool call");
        }
        self.count(tool.wire(), status);
        response
    }

    /// Resources and prompts pass the same gate as tools: the caller, the catalogue line's
    /// permission, a denial audited; `run` gets the call, and its outcome is recorded before
    /// the answer leaves. Refusals and failures are protocol errors (these methods have no
    /// error result), their texts scrubbed and bounded.
    pub(super) async fn guard_offer<T, Fut>(
        &self,
        ctx: &mut RequestContext<RoleServer>,
        (action, access): (Action, Access),
        args: Option<Value>,
        target: Option<Target>,
        run: impl FnOnce(Arc<Call>) -> Fut,
    ) -> Result<T, McpError>
    where
        Fut: std::future::Future<Output = Result<T, crate::ops::OpsError>>,
    {
        let _in_flight = self.app.inflight.enter();
        let meta = self.call_meta(ctx);
        let principal =
            (self.caller(ctx, &meta).await).map_err(|f| error::protocol(f.kind, f.message))?;
        let args = args.map(|a| audit::redact(&a));
        let call = Arc::new(Call::new(principal, action, meta, args));
        let to_error = |(kind, text): (ErrorKind, String)| error::protocol(kind, text);
        self.admit(&call, access, target.clone(), false)
            .await
            .map_err(to_error)?;
        let result = run(call.clone()).await.map_err(|e| call.fail(&e).clone());
        let outcome = match &result {
            Ok(_) => Outcome::success(target),
            Err(f) => {
                if let Some(detail) = &f.detail {
                    tracing::error!(action = action.as_str(), error = %detail, "call failed");
                }
                failed(
                    f.status(),
                    target,
                    &clip_message(&secrets::scrub(&f.message)),
                )
            }
        };
        let status = outcome.status;
        self.record_or(&call, outcome).await.map_err(to_error)?;
        self.count(action.as_str(), status);
        result.map_err(|f| error::protocol(f.kind, clip_message(&secrets::scrub(&f.message))))
    }

    /// A `tools/call` whose params do not parse: recorded (who sent it, what it sent, with
    /// secrets removed), then refused as invalid params.
    pub(super) async fn malformed_call(
        &self,
        params: Option<&Value>,
        mut ctx: RequestContext<RoleServer>,
    ) -> McpError {
        const WHY: &str = "invalid tools/call: params need \"name\" (a string naming a tool) and, \
                           optionally, \"arguments\" (an object)";
        let meta = self.call_meta(&mut ctx);
        let principal = match self.caller(&mut ctx, &meta).await {
            Ok(p) => p,
            Err(e) => return McpError::invalid_request(e.message, None),
        };
        let call = Call::new(
            principal,
            Action::InvalidCall,
            meta,
            params.map(audit::redact),
        );
        if self
            .record(&call, failed(Status::Failed, None, WHY))
            .await
            .is_err()
        {
            return McpError::internal_error(
                "the audit trail is unavailable, so no call can be taken; try again shortly",
                None,
            );
        }
        McpError::invalid_params(WHY, None)
    }

    /// Counts a call by its action (a tool's wire name, or a resource's or prompt's action).
    fn count(&self, action: &'static str, status: Status) {
        self.app
            .metrics
            .tool_calls
            .get_or_create(&crate::metrics::ToolLabels {
                tool: action,
                outcome: status.as_str(),
            })
            .inc();
    }

    /// Writes the call's record via the audit writer. When it cannot be written, the call
    /// fails with a tool error saying so: its result, if any, is withheld, never returned
    /// unaudited.
    async fn record(&self, call: &Call, outcome: Outcome) -> Result<(), CallToolResponse> {
        self.record_or(call, outcome)
            .await
            .map_err(|(kind, text)| error::result(kind, text).into())
    }

    /// The same, for any surface: the error to answer with when the record is not written.
    async fn record_or(&self, call: &Call, outcome: Outcome) -> Result<(), (ErrorKind, String)> {
        match self
            .app
            .audit
            .record(call.event(self.app.now(), outcome))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "audit record not written; failing the call");
                Err((ErrorKind::Unavailable, e.to_string()))
            }
        }
    }

    /// The caller of this request: the configured stdio key (re-checked on every call, so a
    /// revoked or expired key stops working at once), or the principal the HTTP layer attached.
    pub(super) async fn caller(
        &self,
        ctx: &mut RequestContext<RoleServer>,
        meta: &CallMeta,
    ) -> Result<Principal, Failure> {
        self.caller_source.resolve(&self.app, ctx, meta).await
    }

    /// Where the call came from; over HTTP, taken out of the request the edge resolved it in
    /// (client IP, User-Agent, x-request-source).
    pub(super) fn call_meta(&self, ctx: &mut RequestContext<RoleServer>) -> CallMeta {
        let mut meta = super::http_parts_mut(ctx)
            .and_then(|parts| parts.extensions.remove::<CallMeta>())
            .unwrap_or_else(|| CallMeta::new(self.caller_source.source()));
        // Asserted by the client: kept as claims (scrubbed, visible, bounded).
        meta.request_id = Some(audit::claim(&request_id_text(&ctx.id), 128));
        if let Some(client) = ctx.client_info() {
            meta.client_name = Some(audit::claim(&client.name, 128));
            meta.client_version = Some(audit::claim(&client.version, 128));
        }
        meta
    }
}

/// Debug builds refuse to answer a change that bypassed `Call::commit_with`, so the suite
/// catches an op that commits by itself.
const UNRECORDED_CHANGE: &str =
    "internal error: this change was not committed together with its audit record";

/// A tool call taking this long is logged (at WARN).
const SLOW_CALL: std::time::Duration = std::time::Duration::from_secs(1);

const UNAVAILABLE: &str = "the audit trail is unavailable, so no tool can run; try again shortly";

pub(super) fn failed(status: Status, target: Option<Target>, reason: &str) -> Outcome {
    Outcome {
        status,
        reason: Some(audit::redact_text(reason)),
        ..Outcome::success(target)
    }
}

/// The text of an error result rmcp produced itself.
fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The target named in the arguments, when it is a well-formed id.
fn target_of(tool: ToolName, args: Option<&Value>) -> Option<Target> {
    let (kind, field) = tool.target()?;
    let id = match args?.get(field)? {
        Value::String(s) => ids::check_id(kind, s).ok()?,
        Value::Number(n) => n.as_i64()?.to_string(),
        _ => return None,
    };
    // A role's name is its id; other names are read by the use case, which knows the row.
    let name = (kind == "role").then(|| id.clone());
    Some(Target::new(kind, &id, name.as_deref()))
}

fn request_id_text(id: &rmcp::model::RequestId) -> String {
    match id {
        rmcp::model::NumberOrString::Number(n) => n.to_string(),
        rmcp::model::NumberOrString::String(s) => s.to_string(),
    }
}

/// Client-supplied text kept in the trail is bounded (always after scrubbing it: a key cut
/// short loses its checksum and could no longer be recognised).
pub(super) fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

/// Bounds an error message returned to the caller.
pub(super) fn clip_message(s: &str) -> String {
    const MAX: usize = 1000;
    if s.chars().count() <= MAX {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX).collect();
    out.push('…');
    out
}
