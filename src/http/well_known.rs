//! OAuth 2.0 Protected Resource Metadata (RFC 9728), at the root and the `/mcp`-suffixed
//! (path-inserted) location. `resource` is exactly the MCP endpoint URL as the client reached it:
//! a mismatch makes real clients refuse to connect without saying why.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::HttpState;
use super::edge::PublicBase;
use crate::domain::permission::Permission;

pub async fn metadata(
    State(state): State<HttpState>,
    Extension(base): Extension<PublicBase>,
) -> impl IntoResponse {
    let s = &state.settings;
    // The built-in authorization server by default; configured ones replace it.
    let servers = if s.authorization_servers.is_empty() && state.app.oauth.is_some() {
        vec![base.url()]
    } else {
        s.authorization_servers.clone()
    };
    let mut doc = json!({
        "resource": base.mcp_url(),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": Permission::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "resource_name": "keyward",
    });
    if let (Some(docs), Value::Object(map)) = (&s.resource_documentation, &mut doc) {
        map.insert("resource_documentation".into(), Value::String(docs.clone()));
    }
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "Host, X-Forwarded-Proto, X-Forwarded-Host"),
        ],
        Json(doc),
    )
}
