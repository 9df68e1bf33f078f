use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::domain::permission::Permission;
use crate::mcp::KeywardServer;
use crate::mcp::error::{OrFail, ToolError};
use crate::ops::{self, Call, RoleDeleted, RoleList, RoleResult};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleNameArgs {
    /// The role's name, e.g. "auditor" or a custom role.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleCreateArgs {
    /// Name for the new role: 2-64 characters a-z, 0-9, '_' or '-', starting with a letter.
    pub name: String,
    /// Permissions the role grants; only ones you hold yourself.
    pub permissions: Vec<Permission>,
    /// What the role is for.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdateArgs {
    /// Name of the custom role to change.
    pub name: String,
    /// The complete new set of permissions (replaces the old set); omit to keep it.
    #[serde(default)]
    pub permissions: Option<Vec<Permission>>,
    /// New description; omit to keep it.
    #[serde(default)]
    pub description: Option<String>,
}

#[tool_router(router = role_tools, vis = "pub(crate)")]
impl KeywardServer {
    #[tool(
        name = "role_list",
        description = "List every role with its permissions: the built-in roles (reader, auditor, \
key_manager, admin) and custom ones. Use it to pick the narrowest role before creating a key.",
        annotations(
            title = "List roles",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn role_list(
        &self,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<RoleList>, ToolError> {
        Ok(Json(
            ops::roles::list(&self.app, call.principal())
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "role_get",
        description = "Show one role's permissions and description.",
        annotations(
            title = "Get role",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn role_get(
        &self,
        Parameters(a): Parameters<RoleNameArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<RoleResult>, ToolError> {
        let role = ops::roles::get(&self.app, call.principal(), &a.name)
            .await
            .or_fail(&call)?;
        Ok(Json(RoleResult { role }))
    }

    #[tool(
        name = "role_create",
        description = "Create a custom role: a named set of permissions (entity:action, e.g. key:read, \
audit:read) to grant to keys. You can only include permissions you hold yourself.",
        annotations(
            title = "Create role",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn role_create(
        &self,
        Parameters(a): Parameters<RoleCreateArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<RoleResult>, ToolError> {
        let input = ops::roles::RoleInput {
            name: a.name,
            description: a.description,
            permissions: Some(a.permissions),
        };
        let role = ops::roles::create(&self.app, &call, input)
            .await
            .or_fail(&call)?;
        Ok(Json(RoleResult { role }))
    }

    #[tool(
        name = "role_update",
        description = "Change a custom role's permissions or description. This immediately changes what \
every key holding the role may do. Built-in roles cannot be changed; you can only set permissions you \
hold, and only for roles whose keys are all within your tenants.",
        annotations(
            title = "Update role",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn role_update(
        &self,
        Parameters(a): Parameters<RoleUpdateArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<RoleResult>, ToolError> {
        let input = ops::roles::RoleInput {
            name: a.name,
            description: a.description,
            permissions: a.permissions,
        };
        let role = ops::roles::update(&self.app, &call, input)
            .await
            .or_fail(&call)?;
        Ok(Json(RoleResult { role }))
    }

    #[tool(
        name = "role_delete",
        description = "Delete a custom role that no active key holds. Built-in roles cannot be deleted.",
        annotations(
            title = "Delete role",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn role_delete(
        &self,
        Parameters(a): Parameters<RoleNameArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<RoleDeleted>, ToolError> {
        Ok(Json(
            ops::roles::delete(&self.app, &call, &a.name)
                .await
                .or_fail(&call)?,
        ))
    }
}
