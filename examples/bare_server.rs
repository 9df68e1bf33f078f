//! The baseline for `examples/load.rs`: a bare rmcp streamable-HTTP server with one trivial
//! tool, no authentication, no guard, no audit. Same transport settings as `keyward serve
//! --stateless` (stateless, JSON responses, TCP_NODELAY), so the load run's ratio measures what
//! keyward adds.
//!
//!     cargo run --release --example bare_server -- 127.0.0.1:0

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{Json, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Clone)]
struct Bare {
    tool_router: Arc<ToolRouter<Bare>>,
}

/// The same fields as keyward's `whoami` answer, with values of the same size, so that the
/// load run compares what keyward adds (authentication, the guard, the audit trail), not the
/// size of the answer.
#[derive(Serialize, JsonSchema)]
struct Pong {
    actor_kind: String,
    expires_at: Option<String>,
    key_id: Option<String>,
    key_preview: Option<String>,
    permissions: Vec<String>,
    role: String,
    tenants: Vec<String>,
}

#[tool_router]
impl Bare {
    /// A trivial read-only tool shaped like keyward's `whoami`.
    #[tool(name = "whoami", annotations(read_only_hint = true))]
    async fn whoami(&self) -> Json<Pong> {
        let permissions = [
            "key:read",
            "key:create",
            "key:update",
            "key:revoke",
            "role:read",
            "role:write",
            "audit:read",
            "operator:read",
            "operator:write",
        ];
        Json(Pong {
            actor_kind: "key".into(),
            expires_at: None,
            key_id: Some("key_0123456789abcdef".into()),
            key_preview: Some("kw_01234567".into()),
            permissions: permissions.map(String::from).to_vec(),
            role: "admin".into(),
            tenants: vec!["*".into()],
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let router = Arc::new(Bare::tool_router());
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true);
    let service = StreamableHttpService::new(
        move || {
            Ok(Bare {
                tool_router: router.clone(),
            })
        },
        NeverSessionManager::default().into(),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}/mcp", tcp.local_addr()?);
    // The same accept loop and connection handling keyward serves with, so a comparison
    // measures what differs above it.
    let limits = keyward::http::server::ConnLimits::loopback();
    let listener = keyward::http::listener::PlainListener::new(
        tcp,
        keyward::http::server::Gate::new(limits.clone()),
    );
    keyward::http::server::serve(
        listener,
        app,
        &limits,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    Ok(())
}
