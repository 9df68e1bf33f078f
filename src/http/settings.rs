//! The HTTP edge's settings from the command line, validated once at start: unsafe
//! combinations are refused with a clear reason.

use crate::cli::{AuthMode, ServeArgs};
use crate::ops::auth::LegacyKey;

use super::HttpSettings;
use super::auth::HttpAuth;
use super::edge::EdgeConfig;
use super::origin::{OriginPolicy, check_origin_entry};

/// Validates the HTTP settings once, refusing unsafe combinations with a clear reason. Legacy
/// mode's shared key comes from `legacy`, called only once TLS and the listen address have
/// passed (making it marks its role in the database).
pub async fn from_args<F, Fut>(args: &ServeArgs, legacy: F) -> anyhow::Result<HttpSettings>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<LegacyKey>>>,
{
    let loopback = args.listen.ip().is_loopback();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(super::listener::tls_config(cert, key)?),
        _ => None,
    };
    if !loopback && tls.is_none() && !args.behind_tls_proxy {
        anyhow::bail!(
            "refusing to listen on {} without TLS: pass --tls-cert and --tls-key, or --behind-tls-proxy \
             if TLS ends at a trusted proxy in front of keyward",
            args.listen
        );
    }
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
    let session_max_age = chrono::Duration::from_std(args.session_max_age)?;
    let setup_token_lifetime = chrono::Duration::from_std(args.setup_token_lifetime)?;
    // Last: making the legacy key marks its role in the database, so every other check has
    // passed by now.
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
            let Some(shared) = legacy().await? else {
                anyhow::bail!("--auth-mode legacy needs KEYWARD_LEGACY_API_KEY");
            };
            HttpAuth::Legacy(shared)
        }
    };
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
        session_max_age,
        authorization_servers: args
            .authorization_servers
            .iter()
            .map(|u| u.to_string())
            .collect(),
        resource_documentation: args.resource_documentation.as_ref().map(|u| u.to_string()),
        shutdown_grace: std::time::Duration::from_secs(10),
        setup_token_lifetime,
        metrics_allow: args.metrics_allow.clone(),
        connections: super::server::ConnLimits {
            max: connection_cap(args.max_connections),
            write_timeout: args.request_timeout,
            per_ip: args.max_connections_per_ip.max(1),
            header_read_timeout: args.header_read_timeout,
            trusted: args.trusted_proxies.clone(),
        },
        sessions: super::sessions::SessionLimits {
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
