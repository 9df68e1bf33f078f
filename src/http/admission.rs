//! Before rmcp sees an `/mcp` request from an authenticated caller: a session id must be the
//! caller's own (another's is answered like an unknown one), and at the global session cap a
//! new session is refused with 503, `Retry-After` and a JSON-RPC error, audited once per burst
//! so the trail cannot be flooded.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::HttpState;
use super::error::HttpError;
use crate::domain::audit::{Action, AuditEvent, Status};
use crate::domain::principal::Principal;
use crate::ops::CallMeta;

/// Refusals closer together than this are one burst, audited once.
const BURST: Duration = Duration::seconds(60);
/// What a refused client is told to wait.
const RETRY_AFTER_SECS: u32 = 30;

/// The request, to pass on; or the answer that refuses it.
pub async fn check(
    state: &HttpState,
    req: Request,
    principal: &Principal,
    meta: &CallMeta,
) -> Result<Request, Response> {
    if state.settings.stateless {
        return Ok(req);
    }
    if let Some(id) = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        if state.sessions.may_use(id, principal) {
            return Ok(req);
        }
        tracing::warn!("refused a request naming another principal's (or no live) MCP session");
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not Found: Session not found",
        )
        .into_response());
    }
    if req.method() != Method::POST || !state.sessions.full_for(principal) {
        return Ok(req);
    }
    // At the cap: only an `initialize` opens a session, so look at what this is.
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, state.settings.max_body_bytes)
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body exceeds {} bytes",
                    state.settings.max_body_bytes
                ),
            )
            .into_response()
        })?;
    #[derive(Deserialize)]
    struct Probe {
        method: Option<String>,
        id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(&bytes) {
        Ok(p) if p.method.as_deref() == Some("initialize") => {
            Err(refuse(state, principal, meta, p.id).await)
        }
        _ => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

async fn refuse(
    state: &HttpState,
    principal: &Principal,
    meta: &CallMeta,
    id: Option<serde_json::Value>,
) -> Response {
    let app = &state.app;
    app.metrics.sessions_refused.inc();
    let now = app.now();
    if first_of_burst(state, now) {
        let limits = state.sessions.limits();
        tracing::warn!(
            max = limits.max,
            "MCP session cap reached; refusing new sessions"
        );
        let event = AuditEvent {
            reason: Some(format!(
                "{} live MCP sessions, the server's cap (--max-sessions): new sessions refused; \
                 further refusals within {} s are counted in metrics, not recorded",
                limits.max,
                BURST.num_seconds()
            )),
            ..meta.event_by(now, Action::SessionLimit, Status::Denied, principal)
        };
        if let Err(e) = app.audit.record(event).await {
            return HttpError::from(crate::ops::OpsError::from(e)).into_response();
        }
    }
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": {
            "code": -32000,
            "message": format!(
                "the server holds as many MCP sessions as it allows; try again in {RETRY_AFTER_SECS} s"
            ),
        },
    });
    let mut res = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    res
}

/// Whether a refusal at `now` starts a new burst (and so is audited).
fn first_of_burst(state: &HttpState, now: DateTime<Utc>) -> bool {
    let mut last = state
        .session_refusal_audited
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match *last {
        Some(t) if now - t < BURST && now >= t => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}
