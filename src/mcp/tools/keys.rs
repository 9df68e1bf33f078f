use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::mcp::KeywardServer;
use crate::mcp::error::{OrFail, ToolError};
use crate::ops::{self, Call, KeyPage, KeyResult, KeyWithSecret};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreateArgs {
    /// Short name saying who or what will use the key, e.g. "ci-deployer": 1-64 letters, digits,
    /// '.', '_' or '-', unique among live keys ignoring case.
    pub name: String,
    /// Role to grant (see role_list). You can only grant a role whose permissions you hold yourself.
    pub role: String,
    /// Tenants the key may act in, e.g. ["acme"]. ["*"] means all tenants and needs all tenants yourself.
    pub tenants: Vec<String>,
    /// Optional note on what the key is for.
    #[serde(default)]
    pub description: Option<String>,
    /// When the key expires: a duration from now ("30d", "12h"), an RFC 3339 time, or "never". Omit for
    /// the default of 90 days (shortened to your own expiry if that comes sooner). Use "never" only when
    /// the user explicitly asks for a key that does not expire.
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyListArgs {
    /// Only keys with one of these roles.
    #[serde(default)]
    pub role: Vec<String>,
    /// Also list revoked keys (hidden by default).
    #[serde(default)]
    pub include_revoked: bool,
    /// Keys per page: 1-100, default 20.
    #[serde(default)]
    pub limit: Option<i64>,
    /// next_cursor from a previous page, to continue from there.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIdArgs {
    /// The key's id (key_…), as shown by key_list. Not the secret.
    pub key_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotateArgs {
    /// The key's id (key_…), as shown by key_list. Not the secret.
    pub key_id: String,
    /// How long the old secret keeps working so clients can switch, e.g. "1h"; at most "24h".
    /// Omit to stop the old secret immediately.
    #[serde(default)]
    pub grace_period: Option<String>,
}

#[tool_router(router = key_tools, vis = "pub(crate)")]
impl KeywardServer {
    #[tool(
        name = "key_create",
        description = "Create a new API key for an agent or service, bound to one role and a set of \
tenants. The response contains the secret exactly once: give it to whoever needs it right away, it \
cannot be shown again. You can only grant a role whose permissions you hold, tenants within your own, \
and an expiry no later than yours. Prefer the narrowest role that does the job.",
        annotations(
            title = "Create API key",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn key_create(
        &self,
        Parameters(a): Parameters<KeyCreateArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyWithSecret>, ToolError> {
        let input = ops::keys::CreateKey {
            name: a.name,
            description: a.description,
            role: a.role,
            tenants: a.tenants,
            expires: a.expires,
        };
        Ok(Json(
            ops::keys::create(&self.app, &call, input)
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "key_list",
        description = "List the API keys you can see: metadata only (id, name, role, tenants, preview, \
status, expiry, last use), never secrets. Newest first; revoked keys are hidden unless include_revoked \
is true. When truncated is true, call again with cursor set to next_cursor.",
        annotations(
            title = "List API keys",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn key_list(
        &self,
        Parameters(a): Parameters<KeyListArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyPage>, ToolError> {
        let input = ops::keys::ListKeys {
            roles: a.role,
            include_revoked: a.include_revoked,
            limit: a.limit,
            cursor: a.cursor,
        };
        Ok(Json(
            ops::keys::list(&self.app, call.principal(), input)
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "key_get",
        description = "Show one API key's metadata by id: role, tenants, preview, status (active, \
disabled, revoked, expired), expiry, rotation and last use. Never shows the secret.",
        annotations(
            title = "Get API key",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn key_get(
        &self,
        Parameters(a): Parameters<KeyIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyResult>, ToolError> {
        let key = ops::keys::get(&self.app, call.principal(), &a.key_id)
            .await
            .or_fail(&call)?;
        Ok(Json(KeyResult { key }))
    }

    #[tool(
        name = "key_rotate",
        description = "Replace a key's secret, for example after a leak or on a schedule. The key keeps \
its id, role, tenants and expiry. The old secret stops working immediately, or after grace_period (at \
most 24h) so its users can switch. The response contains the new secret exactly once.",
        annotations(
            title = "Rotate API key",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn key_rotate(
        &self,
        Parameters(a): Parameters<KeyRotateArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyWithSecret>, ToolError> {
        Ok(Json(
            ops::keys::rotate(&self.app, &call, &a.key_id, a.grace_period.as_deref())
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "key_disable",
        description = "Temporarily block an API key: every request with it is refused until key_enable \
is called. Use this to pause a key you may want back; use key_revoke to end it for good.",
        annotations(
            title = "Disable API key",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn key_disable(
        &self,
        Parameters(a): Parameters<KeyIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyResult>, ToolError> {
        let key = ops::keys::set_enabled(&self.app, &call, &a.key_id, false)
            .await
            .or_fail(&call)?;
        Ok(Json(KeyResult { key }))
    }

    #[tool(
        name = "key_enable",
        description = "Re-enable an API key that was disabled with key_disable. Revoked and expired keys \
cannot be brought back.",
        annotations(
            title = "Enable API key",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn key_enable(
        &self,
        Parameters(a): Parameters<KeyIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyResult>, ToolError> {
        let key = ops::keys::set_enabled(&self.app, &call, &a.key_id, true)
            .await
            .or_fail(&call)?;
        Ok(Json(KeyResult { key }))
    }

    #[tool(
        name = "key_revoke",
        description = "Permanently revoke an API key: it stops working at once and can never be \
re-enabled. Confirm with the user before revoking a key they did not name explicitly. For a temporary \
block, use key_disable instead.",
        annotations(
            title = "Revoke API key",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn key_revoke(
        &self,
        Parameters(a): Parameters<KeyIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<KeyResult>, ToolError> {
        let key = ops::keys::revoke(&self.app, &call, &a.key_id)
            .await
            .or_fail(&call)?;
        Ok(Json(KeyResult { key }))
    }
}
