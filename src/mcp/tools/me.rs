use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::{Json, tool, tool_router};

use crate::mcp::KeywardServer;
use crate::mcp::error::ToolError;
use crate::ops::{self, Call, WhoAmI};

#[tool_router(router = me_tools, vis = "pub(crate)")]
impl KeywardServer {
    /// Tell the caller who it is to keyward.
    #[tool(
        name = "whoami",
        description = "Show who you are to keyward: your key id and preview, role, permissions, \
tenants and expiry. Call this first to learn what you may do; every other tool requires one of \
the permissions listed here.",
        annotations(
            title = "Who am I",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn whoami(
        &self,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<WhoAmI>, ToolError> {
        Ok(Json(ops::auth::whoami(call.principal())))
    }
}
