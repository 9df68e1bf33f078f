//! The stdio transport: the caller is the key in KEYWARD_API_KEY, checked once at start (a
//! refused key ends the process with one clear line on stderr) and again on every call.

use rmcp::ServiceExt;

use crate::app::App;
use crate::domain::audit::Source;
use crate::domain::key::PlainKey;
use crate::mcp::{CallerSource, KeywardServer};
use crate::ops::{self, CallMeta, auth::AuthError, auth::AuthFailure, auth::Rejected};

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

/// Checks the configured key and returns who will be calling.
pub async fn resolve_caller(
    app: &App,
    key: Option<&str>,
    disabled: bool,
) -> Result<CallerSource, StdioError> {
    if disabled {
        tracing::warn!(
            "authentication is DISABLED: every stdio call runs as an all-powerful development principal; never do this outside local development"
        );
        return Ok(CallerSource::Development(Source::Stdio));
    }
    let meta = CallMeta::new(Source::Stdio);
    let refuse = |r: Rejected| async move {
        ops::auth::record_rejection(app, &r, &meta)
            .await
            .map_err(|e| StdioError::Other(anyhow::anyhow!("{e}")))?;
        Err::<CallerSource, _>(if r.failure == AuthFailure::Missing {
            StdioError::Missing
        } else {
            StdioError::Refused(r.failure.reason())
        })
    };
    let Some(text) = key.filter(|k| !k.trim().is_empty()) else {
        return refuse(Rejected::new(AuthFailure::Missing)).await;
    };
    match ops::auth::authenticate_key(app, text).await {
        Ok(p) => {
            tracing::info!(
                key_id = p.actor().id(),
                role = p.role(),
                "stdio caller authenticated"
            );
            let key = PlainKey::parse(text).map_err(|e| StdioError::Other(e.into()))?;
            Ok(CallerSource::StdioKey(key))
        }
        Err(AuthError::Rejected(r)) => refuse(r).await,
        Err(e) => Err(StdioError::Other(e.into())),
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
