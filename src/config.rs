//! Settings derived from the command line and environment, validated once at start.

use std::path::PathBuf;

/// The database a command runs on.
pub struct Database {
    pub url: String,
    /// Set for `--auth-mode disabled`: a throwaway database of its own, in a fresh private
    /// directory that is deleted when this is dropped. It is marked as such, and no other mode
    /// ever serves it.
    pub throwaway: Option<tempfile::TempDir>,
}

/// The database URL: the one given, or `keyward.db` in the user's data directory (created
/// owner-only if needed), so `keyward serve` works on a fresh machine wherever it is started
/// from. With authentication disabled, never a named database: any web page the developer
/// opens could otherwise mint keys into the database managed mode serves.
pub fn database(given: Option<&str>, disabled: bool) -> anyhow::Result<Database> {
    let given = given.map(str::trim).filter(|u| !u.is_empty());
    if disabled {
        anyhow::ensure!(
            given.is_none(),
            "--auth-mode disabled runs only on a throwaway database of its own, never a named one: \
             unset --database-url / KEYWARD_DATABASE_URL (anything created with authentication \
             disabled must not survive into a real deployment)"
        );
        let dir = tempfile::Builder::new()
            .prefix("keyward-dev-")
            .tempdir()
            .map_err(|e| anyhow::anyhow!("cannot create a throwaway database directory: {e}"))?;
        return Ok(Database {
            url: format!("sqlite://{}", dir.path().join("keyward.db").display()),
            throwaway: Some(dir),
        });
    }
    if let Some(url) = given {
        return Ok(Database {
            url: url.to_owned(),
            throwaway: None,
        });
    }
    let dir = directories::ProjectDirs::from("", "", "keyward")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    crate::store::private::create_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    Ok(Database {
        url: format!("sqlite://{}", dir.join("keyward.db").display()),
        throwaway: None,
    })
}

/// The URL with any password removed, for log lines.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

use crate::cli::{AuthMode, ServeArgs};
use crate::domain::lockout::LockoutPolicy;
use crate::http::HttpSettings;
use crate::http::auth::HttpAuth;
use crate::http::edge::EdgeConfig;
use crate::http::origin::{OriginPolicy, check_origin_entry};
use crate::ops::app::App;

/// The lockout rule from the command line.
pub fn lockout_policy(args: &ServeArgs) -> anyhow::Result<LockoutPolicy> {
    anyhow::ensure!(
        args.lockout_threshold >= 1,
        "--lockout-threshold must be at least 1"
    );
    let d =
        |v: std::time::Duration| chrono::Duration::from_std(v).map_err(|e| anyhow::anyhow!("{e}"));
    Ok(LockoutPolicy {
        threshold: args.lockout_threshold,
        window: d(args.lockout_window)?,
        duration: d(args.lockout_duration)?,
        names: crate::domain::lockout::NameThrottle::default(),
    })
}

/// The app's behaviour from the command line: lockout rule and cache bound (at most 1 s). A
/// stdio server serves one local caller: no verification cache, so a key revoked anywhere stops
/// working on its very next call.
pub fn app_options(args: &ServeArgs) -> anyhow::Result<crate::ops::app::AppOptions> {
    let ttl = chrono::Duration::from_std(if args.stdio {
        std::time::Duration::ZERO
    } else {
        args.auth_cache_ttl
    })?;
    anyhow::ensure!(
        ttl <= crate::CACHE_TTL,
        "--auth-cache-ttl may be at most 1s"
    );
    Ok(crate::ops::app::AppOptions {
        lockout: lockout_policy(args)?,
        cache_ttl: ttl,
        development: false,
    })
}

/// Validates the HTTP settings once, refusing unsafe combinations with a clear reason.
pub async fn http_settings(args: &ServeArgs, app: &App) -> anyhow::Result<HttpSettings> {
    let loopback = args.listen.ip().is_loopback();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::listener::tls_config(cert, key)?),
        _ => None,
    };
    if !loopback && tls.is_none() && !args.behind_tls_proxy {
        anyhow::bail!(
            "refusing to listen on {} without TLS: pass --tls-cert and --tls-key, or --behind-tls-proxy \
             if TLS ends at a trusted proxy in front of keyward",
            args.listen
        );
    }
    let auth = match args.auth_mode {
        AuthMode::Managed => HttpAuth::Managed,
        AuthMode::Disabled => {
            anyhow::ensure!(
                loopback,
                "refusing to run with authentication disabled on the non-loopback address {}",
                args.listen
            );
            tracing::warn!(
                "authentication is DISABLED: every HTTP caller is an all-powerful development principal and any origin may call; never do this outside local development"
            );
            HttpAuth::Disabled
        }
        AuthMode::Legacy => {
            let Some(secret) = args
                .legacy_api_key
                .as_ref()
                .map(crate::cli::SecretArg::expose)
            else {
                anyhow::bail!("--auth-mode legacy needs KEYWARD_LEGACY_API_KEY");
            };
            HttpAuth::Legacy(
                crate::ops::auth::LegacyKey::new(app, secret, &args.legacy_role).await?,
            )
        }
    };
    let public_url = match &args.public_url {
        Some(u) => Some(public_origin(u)?),
        None => None,
    };
    let port = args.listen.port();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    if !args.listen.ip().is_unspecified() && !loopback {
        hosts.push(args.listen.to_string());
    }
    if let Some((_, host)) = &public_url {
        hosts.push(host.clone());
    }
    for h in &args.allowed_hosts {
        let h = h.trim().to_ascii_lowercase();
        anyhow::ensure!(
            h.parse::<http::uri::Authority>().is_ok(),
            "invalid allowed host '{h}'"
        );
        hosts.push(h);
    }
    let origins = args
        .allowed_origins
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| check_origin_entry(o).map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(HttpSettings {
        listen: args.listen,
        edge: EdgeConfig {
            trusted_proxies: args.trusted_proxies.clone(),
            public_url,
            tls: tls.is_some(),
            fallback_host: format!("127.0.0.1:{port}"),
        },
        origins: OriginPolicy::new(&hosts, &origins, matches!(auth, HttpAuth::Disabled)),
        auth,
        tls,
        stateless: args.stateless,
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        session_max_age: chrono::Duration::from_std(args.session_max_age)?,
        authorization_servers: args
            .authorization_servers
            .iter()
            .map(|u| u.to_string())
            .collect(),
        resource_documentation: args.resource_documentation.as_ref().map(|u| u.to_string()),
        shutdown_grace: std::time::Duration::from_secs(10),
        setup_token_lifetime: chrono::Duration::from_std(args.setup_token_lifetime)?,
        metrics_allow: args.metrics_allow.clone(),
        connections: crate::http::server::ConnLimits {
            max: connection_cap(args.max_connections),
            write_timeout: args.request_timeout,
            per_ip: args.max_connections_per_ip.max(1),
            header_read_timeout: args.header_read_timeout,
            trusted: args.trusted_proxies.clone(),
        },
        sessions: crate::http::sessions::SessionLimits {
            max: args.max_sessions.max(1),
            per_principal: args.max_sessions_per_principal.max(1),
            idle: args.session_idle_timeout,
            request_timeout: args.request_timeout,
            long_request_timeout: args.long_request_timeout.max(args.request_timeout),
        },
    })
}

/// `--max-connections`, lowered when the process may not open that many files: with the cap
/// above the descriptor limit, running out of descriptors would come first and the cap would
/// protect nothing. A margin is kept for the database, journal and log files.
fn connection_cap(asked: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3)?.parse::<usize>().ok())
        });
    // Files keyward itself keeps open (pooled database connections, journal, logs): an
    // eighth of the limit, at most 64.
    let margin = |limit: usize| (limit / 8).min(64);
    match soft {
        Some(limit) if asked + margin(limit) > limit => {
            let cap = limit.saturating_sub(margin(limit)).max(1);
            tracing::warn!(
                asked,
                open_files_limit = limit,
                cap,
                "--max-connections lowered to fit the open-files limit (raise it with ulimit -n)"
            );
            cap
        }
        _ => asked.max(1),
    }
}

/// `scheme://host[:port]` of a configured public URL, which must be a bare origin.
fn public_origin(u: &url::Url) -> anyhow::Result<(&'static str, String)> {
    let scheme = match u.scheme() {
        "https" => "https",
        "http" => "http",
        other => anyhow::bail!("public URL must be http or https, not {other}"),
    };
    anyhow::ensure!(
        (u.path() == "/" || u.path().is_empty()) && u.query().is_none() && u.fragment().is_none(),
        "public URL must be an origin like https://mcp.example.com (no path): MCP is served at /mcp"
    );
    let host = u
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("public URL has no host"))?;
    let host = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok((scheme, host.to_ascii_lowercase()))
}
