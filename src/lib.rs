//! keyward: an MCP server through which AI agents administer API keys, roles and the audit
//! log, with a least-privilege check and an audit record on every call.
//!
//! Dependencies run one way: surfaces (`mcp`, `stdio`, `cli`) → `ops` (use cases) →
//! `domain` (pure rules) and `store` (all SQL).

mod audit_command;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod ops;
mod rekey_command;
pub mod schemas;
pub mod stdio;
mod stdio_lines;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use anyhow::Context;

use cli::{AuthMode, Cli, Command};
use clock::{Clock, SystemClock};
use domain::audit::Source;
use ops::app::{self, App};
use store::Store;
use store::audit_writer::{AuditWriter, WriterConfig};

/// How long a verified key or a lock state may be reused before it is read again: the bound
/// on how long another replica's revocation or lockout can go unnoticed here.
pub const CACHE_TTL: chrono::Duration = chrono::Duration::seconds(1);

impl Default for app::AppOptions {
    fn default() -> Self {
        app::AppOptions {
            lockout: domain::lockout::LockoutPolicy::default(),
            cache_ttl: CACHE_TTL,
            development: false,
            audit_log: Default::default(),
            exports: Default::default(),
            encryption: None,
        }
    }
}

/// Opens the store and starts the audit writer. The returned handle finishes once the writer
/// is closed (`app.audit.close()`) and the queue is written out.
pub async fn open_app(
    database_url: &str,
    clock: Arc<dyn Clock>,
    options: app::AppOptions,
) -> anyhow::Result<(App, tokio::task::JoinHandle<()>)> {
    open_app_with(database_url, clock, options, Some(Default::default())).await
}

/// `open_app` with the authorization server's settings (`None`: off).
pub async fn open_app_with(
    database_url: &str,
    clock: Arc<dyn Clock>,
    options: app::AppOptions,
    oauth: Option<ops::oauth::OAuthSettings>,
) -> anyhow::Result<(App, tokio::task::JoinHandle<()>)> {
    let store = Store::open_with(database_url, options.encryption.clone())
        .await
        .with_context(|| format!("cannot open database {}", config::redact_url(database_url)))?;
    let share = store::seal::hold(&store, false)
        .await?
        .context("a keyward rekey is re-sealing this database; start again when it has finished")?;
    store.keep(share);
    claim_purpose(&store, options.development).await?;
    let name_key = store::settings::secret_get_or_insert(
        &store,
        store::settings::NAME_HASH_KEY,
        &domain::username::NameKey::generate_hex(),
    )
    .await?;
    let name_key = domain::username::NameKey::from_hex(&name_key)
        .context("the stored username hash key is malformed")?;
    let audit_log = ops::audit_log::AuditLog::open(&store, options.audit_log.clone())
        .await
        .context("cannot open the audit log's signing key")?;
    let (audit, writer) = AuditWriter::start(store.clone(), &WriterConfig::default())
        .await
        .context("cannot start the audit trail")?;
    let app = App::new(app::AppState {
        store,
        clock,
        audit,
        lockout: options.lockout,
        metrics: metrics::Metrics::new(),
        inflight: Arc::new(app::InFlight::default()),
        key_cache: ops::cache::TtlCache::new(options.cache_ttl, 10_000),
        lock_cache: ops::cache::TtlCache::new(options.cache_ttl, 10_000),
        token_cache: ops::cache::TtlCache::new(options.cache_ttl, 10_000),
        oauth: oauth.map(ops::oauth::OAuth::new),
        audit_log: Arc::new(audit_log),
        exports: options.exports,
        name_key,
        passwords: ops::password_work::PasswordWork::start(
            ops::password_work::PasswordWork::default_width(),
        ),
    });
    Ok((app, writer))
}

/// A throwaway development database is marked as such when it is made; any other use of a
/// database so marked is refused, since anything created while authentication was disabled
/// (by any web page, any local process) must never be served as real.
async fn claim_purpose(store: &Store, development: bool) -> anyhow::Result<()> {
    use store::settings::{self, DEVELOPMENT_DATABASE};
    if development {
        settings::get_or_insert(store, DEVELOPMENT_DATABASE, "true").await?;
    } else if settings::get(store, DEVELOPMENT_DATABASE).await?.is_some() {
        anyhow::bail!(
            "this database was created by --auth-mode disabled: anything (keys, operators) may \
             have been created in it without authentication, so only a development server may \
             use it; point keyward at another database"
        );
    }
    Ok(())
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
    let encryption = ops::at_rest::load_key(
        cli.encryption.encryption_key_file.as_deref(),
        std::env::var("KEYWARD_ENCRYPTION_KEY").ok().as_deref(),
    )?;
    if let Command::Audit(cli::AuditCommand::VerifyBundle(args)) = &cli.command {
        return audit_command::verify_bundle(args, encryption);
    }
    let disabled = matches!(&cli.command, Command::Serve(a) if a.auth_mode == AuthMode::Disabled);
    let database = config::database(cli.db.database_url.as_deref(), disabled)?;
    if let Some(dir) = &database.create_dir {
        store::private::create_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    }
    let url = database.url.clone();
    if let Command::Rekey(args) = &cli.command {
        return rekey_command::run(
            &url,
            encryption,
            args,
            cli.audit_log.audit_export_dir.clone(),
        )
        .await;
    }
    let mut options = match &cli.command {
        Command::Serve(args) => args.app_options()?,
        _ => app::AppOptions::default(),
    };
    options.development = database.throwaway.is_some();
    options.encryption = encryption;
    options.audit_log = cli.audit_log.settings()?;
    // Only a server (or a command that writes the trail) makes a signing key for a new log.
    options.audit_log.create_key = matches!(
        &cli.command,
        Command::Serve(_) | Command::Bootstrap(_) | Command::Recover(_) | Command::Migrate
    );
    options.exports = cli.audit_log.export_settings()?;
    if matches!(&cli.command, Command::Serve(_))
        && options.audit_log.signing_key.is_none()
        && !url.starts_with("sqlite:")
    {
        anyhow::bail!(
            "on PostgreSQL the audit log needs --audit-signing-key (KEYWARD_AUDIT_SIGNING_KEY): a \
             file outside the database, the same on every replica (created 0600 when missing)"
        );
    }
    let oauth = match &cli.command {
        Command::Serve(args) => args.oauth_settings()?,
        _ => None,
    };
    let (app, writer) = open_app_with(&url, Arc::new(SystemClock), options, oauth).await?;
    let writes = matches!(cli.command, Command::Bootstrap(_) | Command::Recover(_));
    let signer = match &cli.command {
        Command::Serve(args) => {
            let source = if args.stdio {
                Source::Stdio
            } else {
                Source::Http
            };
            ops::audit_log::check_at_start(&app, source).await;
            Some((
                ops::audit_log::start(app.clone()),
                ops::audit::fold::start(app.clone()),
            ))
        }
        _ => None,
    };
    let result = match cli.command {
        Command::Serve(args) => serve(app.clone(), &args, &url).await,
        Command::Bootstrap(args) => bootstrap(&app, &args).await,
        Command::Recover(args) => recover(&app, &args).await,
        Command::Audit(command) => audit_command::run(&app, command).await,
        Command::Migrate => {
            println!("database {} is up to date", config::redact_url(&url));
            Ok(())
        }
        Command::Schemas(_) | Command::Rekey(_) => Ok(()),
    };
    let store = app.store.clone();
    // Every answered call's record is committed already; this writes out anything still queued.
    app.audit.close().await;
    let _ = writer.await;
    // Then the last checkpoint covers everything written: the signer's at clean shutdown, or
    // one for what a command wrote.
    if let Some((signer, folder)) = signer {
        folder.stop().await;
        signer.stop().await;
    } else if writes && let Err(e) = ops::audit_log::sign(&app, ops::audit_log::Why::Commit).await {
        tracing::error!(error = %e, "audit checkpoint not signed");
    }
    drop(app);
    store.close().await;
    // The throwaway database of a development server goes with it.
    drop(database);
    result
}

async fn serve(app: App, args: &cli::ServeArgs, url: &str) -> anyhow::Result<()> {
    let transport = if args.stdio { "stdio" } else { "http" };
    tracing::info!(database = %config::redact_url(url), backend = app.store.backend(), transport, "keyward starting");

    if args.stdio {
        let legacy = legacy_key(&app, args).await?;
        let presented = args.api_key.as_ref().map(cli::SecretArg::expose);
        let credential = match (args.auth_mode, &legacy) {
            (AuthMode::Legacy, Some(shared)) => ops::auth::Credential::Legacy {
                shared,
                presented: presented.unwrap_or_default(),
            },
            (AuthMode::Disabled, _) => {
                anyhow::ensure!(
                    args.confirm_disabled_stdio,
                    "--stdio with --auth-mode disabled also needs --confirm-disabled-stdio \
                     (KEYWARD_CONFIRM_DISABLED_STDIO=1): every call would run as an all-powerful \
                     development principal"
                );
                ops::auth::Credential::Development
            }
            _ => match presented.filter(|k| !k.trim().is_empty()) {
                Some(key) => ops::auth::Credential::ApiKey(key),
                None => ops::auth::Credential::None,
            },
        };
        let caller = match stdio::resolve_caller(&app, credential).await {
            Err(stdio::StdioError::Refused(_)) if legacy.is_some() => {
                anyhow::bail!("API key refused: KEYWARD_API_KEY is not the legacy shared key")
            }
            other => other?,
        };
        return stdio::serve(app, caller, args.max_body_bytes).await;
    }
    let settings = http::settings::from_args(args, || legacy_key(&app, args)).await?;
    http::serve(app, settings).await
}

/// Legacy mode's shared key (its role is read from the database), for either transport.
pub async fn legacy_key(
    app: &App,
    args: &cli::ServeArgs,
) -> anyhow::Result<Option<ops::auth::LegacyKey>> {
    if args.auth_mode != AuthMode::Legacy {
        return Ok(None);
    }
    let shared = args
        .legacy_api_key
        .as_ref()
        .map(cli::SecretArg::expose)
        .ok_or_else(|| anyhow::anyhow!("--auth-mode legacy needs KEYWARD_LEGACY_API_KEY"))?;
    Ok(Some(
        ops::auth::LegacyKey::new(app, shared, &args.legacy_role).await?,
    ))
}

async fn bootstrap(app: &App, args: &cli::BootstrapArgs) -> anyhow::Result<()> {
    let first = ops::bootstrap::FirstAdmin {
        key_name: &args.name,
        expires_at: ops::bootstrap::parse_expiry(args.expires.as_deref(), app.now())?,
        operator: None,
    };
    let created = ops::bootstrap::bootstrap(app, first, &ops::CallMeta::new(Source::Cli))
        .await?
        .key;
    print_admin_key(&created, args.json, "the first admin key");
    Ok(())
}

async fn recover(app: &App, args: &cli::RecoverArgs) -> anyhow::Result<()> {
    let expires_at = ops::bootstrap::parse_expiry(args.expires.as_deref(), app.now())?;
    let created = ops::bootstrap::recover_admin(
        app,
        args.name.as_deref(),
        expires_at,
        &ops::CallMeta::new(Source::Cli),
    )
    .await?;
    print_admin_key(&created, args.json, "a recovery admin key");
    Ok(())
}

/// The one place a minted admin key reaches stdout (for the person at the console).
fn print_admin_key(created: &ops::KeyWithSecret, json: bool, what: &str) {
    if json {
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
            "Created {what} {} (role admin, all tenants, expires {}).\n\
             Store it now: it is shown only this once.\n\n{}\n",
            created.key.id,
            created.key.expires_at.as_deref().unwrap_or("never"),
            created.api_key
        );
    }
}
