use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::operators::NoArgs;
use crate::mcp::KeywardServer;
use crate::mcp::error::{OrFail, ToolError};
use crate::ops::{self, Call, GrantList, GrantRevoked};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantIdArgs {
    /// The grant's id (gr_…), as shown by grant_list.
    pub grant_id: String,
}

#[tool_router(router = grant_tools, vis = "pub(crate)")]
impl KeywardServer {
    #[tool(
        name = "grant_list",
        description = "List live OAuth grants: which client acts for which key or operator, within \
which ceiling (permissions and tenants), since when, last used and until when. Everyone sees their \
own grants; grant:read shows every grant within your tenants.",
        annotations(
            title = "List OAuth grants",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn grant_list(
        &self,
        Parameters(_): Parameters<NoArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<GrantList>, ToolError> {
        Ok(Json(
            ops::oauth::grants::list(&self.app, call.principal())
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "grant_revoke",
        description = "Revoke an OAuth grant: its client's tokens stop working at once and it must \
ask the person again. You may always revoke your own grants; grant:revoke reaches every grant within \
your tenants.",
        annotations(
            title = "Revoke OAuth grant",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn grant_revoke(
        &self,
        Parameters(a): Parameters<GrantIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<GrantRevoked>, ToolError> {
        Ok(Json(
            ops::oauth::grants::revoke(&self.app, &call, &a.grant_id)
                .await
                .or_fail(&call)?,
        ))
    }
}
