//! The one mapping from use-case failures to MCP tool results.
//!
//! Failures the caller can act on (denied, invalid, not found, conflict) become tool results
//! with `isError: true` and a message the model reads; the kind also travels in `_meta` for
//! clients. A tool turns a use-case error into a `ToolError` only through [`OrFail::or_fail`],
//! which notes the failure on the call: the guard audits it and logs internal details from
//! there, once. This mapping itself has no side effects.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, MetaObject};

use crate::ops::call::Failure;
use crate::ops::{Call, ErrorKind, OpsError};

/// `_meta` key carrying the error kind of a failed tool result.
pub const ERROR_META: &str = "keyward/error";

#[derive(Debug)]
pub struct ToolError {
    kind: ErrorKind,
    message: String,
}

impl ToolError {
    /// Private: a tool's error comes only from [`OrFail::or_fail`], so every failure is noted
    /// on its call; the guard's own refusals are results built by [`result`].
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ToolError {
            kind,
            message: message.into(),
        }
    }

    pub fn into_result(self) -> CallToolResult {
        result(self.kind, self.message)
    }
}

/// An error tool result of `kind`, its kind in `_meta`.
pub(super) fn result(kind: ErrorKind, message: String) -> CallToolResult {
    let mut meta = serde_json::Map::new();
    meta.insert(ERROR_META.into(), kind.code().into());
    CallToolResult::error(vec![ContentBlock::text(message)]).with_meta(Some(MetaObject(meta)))
}

/// The same for methods answered with a protocol error (resources, prompts): a code clients
/// understand, the kind in `data`.
pub(super) fn protocol(kind: ErrorKind, message: String) -> rmcp::ErrorData {
    use rmcp::model::ErrorCode;
    let code = match kind {
        ErrorKind::NotFound => ErrorCode::RESOURCE_NOT_FOUND,
        ErrorKind::InvalidArgument | ErrorKind::Conflict | ErrorKind::Gone => {
            ErrorCode::INVALID_PARAMS
        }
        ErrorKind::PermissionDenied => ErrorCode::INVALID_REQUEST,
        ErrorKind::Unavailable | ErrorKind::Internal => ErrorCode::INTERNAL_ERROR,
    };
    let data = serde_json::json!({ ERROR_META: kind.code() });
    rmcp::ErrorData::new(code, message, Some(data))
}

impl From<&Failure> for ToolError {
    fn from(f: &Failure) -> Self {
        ToolError::new(f.kind, f.message.clone())
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.into_result().into())
    }
}

/// How a tool fails: the use case's error is noted on the call, so the guard learns the
/// outcome from the call itself, never by reading the result back.
pub trait OrFail<T> {
    fn or_fail(self, call: &Call) -> Result<T, ToolError>;
}

impl<T> OrFail<T> for Result<T, OpsError> {
    fn or_fail(self, call: &Call) -> Result<T, ToolError> {
        self.map_err(|e| ToolError::from(call.fail(&e)))
    }
}
