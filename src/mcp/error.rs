//! The one mapping from use-case errors to MCP tool results.
//!
//! Failures the caller can act on (denied, invalid, not found, conflict) become tool results
//! with `isError: true` and a message the model reads. The error's kind travels in `_meta` so
//! the guard can audit the right status. Internal details are logged once, here, and never
//! returned.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, MetaObject};

use crate::ops::{ErrorKind, OpsError};

/// `_meta` key carrying the error kind of a failed tool result.
pub const ERROR_META: &str = "keyward/error";

#[derive(Debug)]
pub struct ToolError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ToolError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ToolError {
            kind,
            message: message.into(),
        }
    }

    pub fn into_result(self) -> CallToolResult {
        let mut meta = serde_json::Map::new();
        meta.insert(ERROR_META.into(), self.kind.code().into());
        CallToolResult::error(vec![ContentBlock::text(self.message)])
            .with_meta(Some(MetaObject(meta)))
    }
}

impl From<OpsError> for ToolError {
    fn from(e: OpsError) -> Self {
        let kind = e.kind();
        if matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "tool call failed");
        }
        ToolError::new(kind, e.public_message())
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.into_result().into())
    }
}

/// The error kind a tool result carries, if it is an error.
pub fn kind_of(result: &CallToolResult) -> Option<&str> {
    if result.is_error != Some(true) {
        return None;
    }
    Some(
        result
            .meta
            .as_ref()
            .and_then(|m| m.0.get(ERROR_META))
            .and_then(|v| v.as_str())
            .unwrap_or("invalid_argument"),
    )
}
