//! keyward: an MCP server through which AI agents administer API keys, roles and the audit
//! log, with a least-privilege check and an audit record on every call.
//!
//! Dependencies run one way: surfaces (`mcp`, `stdio`, `cli`) → `ops` (use cases) →
//! `domain` (pure rules) and `store` (all SQL).

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod mcp;
pub mod ops;
pub mod schemas;
pub mod stdio;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use anyhow::Context;

use app::App;
use cli::{AuthMode, Cli, Command};
use clock::{Clock, SystemClock};
use domain::audit::Source;
use store::Store;
use store::audit_writer::{AuditWriter, WriterConfig};

/// Opens the store and starts the audit writer. The returned handle finishes once every
/// clone of the `App` is dropped and the queue is written out.
pub async fn open_app(
    database_url: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(App, tokio::task::JoinHandle<()>)> {
    let store = Store::open(database_url)
        .await
        .with_context(|| format!("cannot open database {}", config::redact_url(database_url)))?;
    let (audit, writer) = AuditWriter::start(store.clone(), &WriterConfig::default());
    Ok((
        App {
            store,
            clock,
            audit,
        },
        writer,
    ))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schemas(args) = &cli.command {
        if args.check {
            let stale = schemas::stale(&args.dir);
            anyhow::ensure!(
                stale.is_empty(),
                "stale schemas in {}: {}",
                args.dir.display(),
                stale.join(", ")
            );
            println!("schemas in {} are up to date", args.dir.display());
        } else {
            let n = schemas::write(&args.dir)?;
            println!("wrote {n} schema files to {}", args.dir.display());
        }
        return Ok(());
    }
    let url = config::database_url(cli.db.database_url.as_deref())?;
    let (app, writer) = open_app(&url, Arc::new(SystemClock)).await?;
    let result = match cli.command {
        Command::Serve(args) => {
            anyhow::ensure!(
                args.stdio,
                "HTTP serving is not available yet: use `keyward serve --stdio`"
            );
            tracing::info!(database = %config::redact_url(&url), backend = app.store.backend(), "keyward starting on stdio");
            let caller = stdio::resolve_caller(
                &app,
                args.api_key.as_deref(),
                args.auth_mode == AuthMode::Disabled,
            )
            .await?;
            stdio::serve(app.clone(), caller).await
        }
        Command::Bootstrap(args) => bootstrap(&app, &args).await,
        Command::Migrate => {
            println!("database {} is up to date", config::redact_url(&url));
            Ok(())
        }
        Command::Schemas(_) => Ok(()),
    };
    let store = app.store.clone();
    drop(app);
    // Every answered call's record is committed already; this drains anything still queued.
    let _ = writer.await;
    store.close().await;
    result
}

async fn bootstrap(app: &App, args: &cli::BootstrapArgs) -> anyhow::Result<()> {
    let now = app.now();
    let expires_at = match args.expires.as_deref() {
        None => None,
        Some(text) => match domain::timespec::parse_expiry(Some(text), now)? {
            domain::policy::ExpiryRequest::At(t) => Some(t),
            _ => None,
        },
    };
    let name = domain::ids::check_label("name", &args.name, 100, false)?;
    let created =
        ops::auth::bootstrap(app, &name, expires_at, &ops::CallMeta::new(Source::Cli)).await?;
    if args.json {
        let out = serde_json::json!({
            "api_key": created.api_key,
            "id": created.key.id,
            "role": created.key.role,
            "tenants": created.key.tenants,
            "preview": created.key.preview,
            "expires_at": created.key.expires_at,
        });
        println!("{out}");
    } else {
        println!(
            "Created the first admin key {} (role admin, all tenants, expires {}).\n\
             Store it now: it is shown only this once.\n\n{}\n",
            created.key.id,
            created.key.expires_at.as_deref().unwrap_or("never"),
            created.api_key
        );
    }
    Ok(())
}
