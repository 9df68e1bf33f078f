use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::mcp::KeywardServer;
use crate::mcp::error::{OrFail, ToolError};
use crate::ops::{self, Call, OperatorList, OperatorResult};

/// Its `Debug` leaves the password out.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorCreateArgs {
    /// Sign-in name: 3-128 characters, letters, digits and . _ - @ + (not starting with kw_;
    /// stored lowercase).
    pub username: String,
    /// Initial password, at least 12 characters. Prefer letting the person choose it; it is never stored
    /// or logged in plain text.
    pub password: String,
    /// Role to grant (see role_list); only a role whose permissions you hold.
    pub role: String,
    /// Tenants the operator may act in, e.g. ["acme"]; ["*"] for all (only if you have all).
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for OperatorCreateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCreateArgs")
            .field("username", &self.username)
            .field("password", &"..")
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .finish()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorIdArgs {
    /// The operator's id (op_…), as shown by operator_list.
    pub operator_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSetRoleArgs {
    /// The operator's id (op_…), as shown by operator_list.
    pub operator_id: String,
    /// The new role; only one whose permissions you hold.
    pub role: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Its `Debug` leaves the passwords out.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSetPasswordArgs {
    /// The operator's id (op_…): your own (see whoami), or another's to reset it (needs
    /// operator:write, within your reach).
    pub operator_id: String,
    /// Your current password: required when you change your own.
    #[serde(default)]
    pub old_password: Option<String>,
    /// The new password, at least 12 characters. Never stored or logged in plain text.
    pub new_password: String,
}

impl std::fmt::Debug for OperatorSetPasswordArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSetPasswordArgs")
            .field("operator_id", &self.operator_id)
            .finish_non_exhaustive()
    }
}

#[tool_router(router = operator_tools, vis = "pub(crate)")]
impl KeywardServer {
    #[tool(
        name = "operator_create",
        description = "Create an operator: a person who signs in to keyward with a username and \
password (for example through a web console), holding one role and a set of tenants. You can only \
grant a role whose permissions you hold and tenants within your own.",
        annotations(
            title = "Create operator",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn operator_create(
        &self,
        Parameters(a): Parameters<OperatorCreateArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorResult>, ToolError> {
        let input = ops::operators::CreateOperator {
            username: a.username,
            password: a.password,
            role: a.role,
            tenants: a.tenants,
        };
        let operator = ops::operators::create(&self.app, &call, input)
            .await
            .or_fail(&call)?;
        Ok(Json(OperatorResult { operator }))
    }

    #[tool(
        name = "operator_list",
        description = "List the operators (people who sign in with a password) you can see: username, \
role, tenants, status and last sign-in. Never shows passwords.",
        annotations(
            title = "List operators",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn operator_list(
        &self,
        Parameters(_): Parameters<NoArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorList>, ToolError> {
        Ok(Json(
            ops::operators::list(&self.app, call.principal())
                .await
                .or_fail(&call)?,
        ))
    }

    #[tool(
        name = "operator_disable",
        description = "Block an operator from signing in and end what their sessions can do, until \
operator_enable. You cannot disable yourself.",
        annotations(
            title = "Disable operator",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn operator_disable(
        &self,
        Parameters(a): Parameters<OperatorIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorResult>, ToolError> {
        let operator = ops::operators::set_enabled(&self.app, &call, &a.operator_id, false)
            .await
            .or_fail(&call)?;
        Ok(Json(OperatorResult { operator }))
    }

    #[tool(
        name = "operator_enable",
        description = "Allow a disabled operator to sign in again.",
        annotations(
            title = "Enable operator",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn operator_enable(
        &self,
        Parameters(a): Parameters<OperatorIdArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorResult>, ToolError> {
        let operator = ops::operators::set_enabled(&self.app, &call, &a.operator_id, true)
            .await
            .or_fail(&call)?;
        Ok(Json(OperatorResult { operator }))
    }

    #[tool(
        name = "operator_set_role",
        description = "Give an operator another role. Takes effect on their next request. You can only \
assign a role whose permissions you hold, to an operator within your reach.",
        annotations(
            title = "Change operator role",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn operator_set_role(
        &self,
        Parameters(a): Parameters<OperatorSetRoleArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorResult>, ToolError> {
        let operator = ops::operators::set_role(&self.app, &call, &a.operator_id, &a.role)
            .await
            .or_fail(&call)?;
        Ok(Json(OperatorResult { operator }))
    }

    #[tool(
        name = "operator_set_password",
        description = "Set an operator's password: your own (give old_password), or reset another operator's within your reach (needs operator:write). Either way every sign-in session and OAuth grant of that operator ends at once.",
        annotations(
            title = "Set operator password",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn operator_set_password(
        &self,
        Parameters(a): Parameters<OperatorSetPasswordArgs>,
        Extension(call): Extension<Arc<Call>>,
    ) -> Result<Json<OperatorResult>, ToolError> {
        let input = ops::operators::SetPassword {
            operator_id: a.operator_id,
            old_password: a.old_password,
            new_password: a.new_password,
        };
        let operator = ops::operators::set_password(&self.app, &call, input)
            .await
            .or_fail(&call)?;
        Ok(Json(OperatorResult { operator }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_prints() {
        let a: OperatorCreateArgs = serde_json::from_value(serde_json::json!({
            "username": "bob", "password": "correct horse battery", "role": "reader", "tenants": ["*"]
        }))
        .unwrap();
        assert!(!format!("{a:?}").contains("horse"));
    }
}
