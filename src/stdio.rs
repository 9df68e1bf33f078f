//! The stdio transport: the caller is the key in KEYWARD_API_KEY, checked once at start (a
//! refused key ends the process with one clear error line on stderr, after the usual
//! "authentication failed" log line) and again on every call.

use rmcp::ServiceExt;

use crate::domain::audit::Source;
use crate::domain::key::PlainKey;
use crate::mcp::{CallerSource, KeywardServer};
use crate::ops::app::App;
use crate::ops::auth::{AuthFailure, Credential, Origin, Refused};
use crate::ops::{self, CallMeta};

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("API key refused: {0}")]
    Refused(&'static str),
    #[error(
        "KEYWARD_API_KEY is not set: run `keyward bootstrap` to create the first admin key, then pass a key in KEYWARD_API_KEY (or use --auth-mode disabled for local development)"
    )]
    Missing,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<Refused> for StdioError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Credential { rejected, .. } if rejected.failure == AuthFailure::Missing => {
                StdioError::Missing
            }
            Refused::Credential { rejected, .. } => StdioError::Refused(rejected.failure.reason()),
            other => StdioError::Other(crate::ops::OpsError::from(other).into()),
        }
    }
}

/// Checks the configured credential (through `ops::auth`, which audits a refusal) and returns
/// who will be calling.
pub async fn resolve_caller(
    app: &App,
    credential: Credential<'_>,
) -> Result<CallerSource, StdioError> {
    let meta = CallMeta::new(Source::Stdio);
    let key = match &credential {
        Credential::ApiKey(text) => Some(*text),
        _ => None,
    };
    let development = matches!(credential, Credential::Development);
    let principal = ops::auth::authenticate(app, credential, &meta, Origin::Local).await?;
    if development {
        tracing::warn!(
            "authentication is DISABLED: every stdio call runs as an all-powerful development principal; never do this outside local development"
        );
        return Ok(CallerSource::Development(Source::Stdio));
    }
    tracing::info!(
        key_id = principal.actor().id(),
        role = principal.role(),
        "stdio caller authenticated"
    );
    match key {
        // A managed key is checked again on every call: revoking it stops this process.
        Some(text) => {
            let key = PlainKey::parse(text).map_err(|e| StdioError::Other(e.into()))?;
            Ok(CallerSource::StdioKey(key))
        }
        // The legacy shared key cannot change while the process runs.
        None => Ok(CallerSource::Fixed(principal)),
    }
}

/// Serves MCP on stdin/stdout until the client closes the stream.
pub async fn serve(app: App, caller: CallerSource, max_line: usize) -> anyhow::Result<()> {
    let server = KeywardServer::new(app, caller);
    // Every line is checked before rmcp sees it, so a bad one gets an error reply.
    let wire = crate::stdio_lines::filter(tokio::io::stdin(), tokio::io::stdout(), max_line);
    let running = server.serve(wire.rmcp).await?;
    running.waiting().await?;
    // The last answers are on their way to stdout.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wire.writer).await;
    Ok(())
}
