//! Liveness, readiness and metrics. `/healthz` and the readiness status are for anyone (load
//! balancers); the metrics and the readiness detail tell an attacker what is being tried and
//! what runs behind, so they are answered only to allowed addresses (`--metrics-allow`,
//! loopback by default) on requests no proxy forwarded.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;
use super::edge::ClientIp;
use super::error::HttpError;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Whether this request may see metrics and readiness detail: from an allowed address, and not
/// through a proxy (the shipped proxy examples forward from loopback).
fn inside(state: &HttpState, ip: ClientIp, headers: &HeaderMap) -> bool {
    let forwarded = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    ]
    .iter()
    .any(|h| headers.contains_key(*h));
    !forwarded
        && state
            .settings
            .metrics_allow
            .iter()
            .any(|n| n.contains(&ip.0))
}

/// The database answers (status for everyone; which database, for allowed addresses).
pub async fn readyz(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    let detail = inside(&state, ip, &headers);
    let backend = state.app.store.backend();
    let log = &state.app.audit_log;
    let violation = log.violation();
    let (status, text) = match state.app.store.ping().await {
        // Only a server told to refuse on a violation stops being ready for it.
        Ok(()) if violation.is_some() && log.settings.refuse_on_violation => {
            (StatusCode::SERVICE_UNAVAILABLE, "audit_integrity_violation")
        }
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let body = if detail {
        json!({ "status": text, "database": backend, "audit_integrity": violation.as_deref().unwrap_or("ok") })
    } else {
        json!({ "status": text })
    };
    (status, Json(body)).into_response()
}

/// Prometheus text format, for allowed addresses.
pub async fn metrics(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    if !inside(&state, ip, &headers) {
        return HttpError::forbidden(
            "metrics are served only to addresses in --metrics-allow (loopback by default), \
             never through a proxy",
        )
        .into_response();
    }
    let m = &state.app.metrics;
    m.mcp_sessions
        .set(i64::try_from(state.sessions.len()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
