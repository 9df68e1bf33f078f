//! The HTTP surface: MCP streamable HTTP at `/mcp` (rmcp's server mounted in axum), the
//! protected-resource metadata, sign-in, bootstrap, health and metrics. This layer
//! authenticates; it never decides what a caller may do (the guard does).

mod admission;
pub mod auth;
pub mod edge;
pub mod error;
mod exports;
mod health;
pub mod listener;
mod oauth;
pub mod origin;
mod protocol;
pub mod server;
mod session;
pub mod sessions;
pub mod settings;
mod well_known;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::mcp::{CallerSource, KeywardServer};
use crate::metrics::{HttpLabels, RouteLabels};
use crate::ops::app::App;
use auth::HttpAuth;
use edge::EdgeConfig;
use error::HttpError;
use listener::{PlainListener, TlsListener};
use origin::OriginPolicy;

/// Everything the HTTP surface needs to know, validated once at start (see `config`).
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub edge: EdgeConfig,
    pub origins: OriginPolicy,
    pub auth: HttpAuth,
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// No server-side MCP sessions: any replica can serve any request.
    pub stateless: bool,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub session_max_age: chrono::Duration,
    pub authorization_servers: Vec<String>,
    pub resource_documentation: Option<String>,
    /// How long shutdown waits for tool calls in flight before closing streams.
    pub shutdown_grace: Duration,
    /// How long the setup token printed at start stays valid.
    pub setup_token_lifetime: chrono::Duration,
    /// Addresses that may read `/metrics` and readiness detail (never through a proxy).
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Connections at once, per address, and the header-read (and keep-alive idle) timeout.
    pub connections: server::ConnLimits,
    pub sessions: sessions::SessionLimits,
}

/// The one-time bootstrap token this process printed, and until when it may be used.
pub struct SetupToken {
    pub value: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What every handler and layer shares. Cloned for every layer a request passes (axum hands
/// each its own copy), so it is one reference count rather than one per field: counts that
/// both cores touch on every request cost more than anything else in a clone.
#[derive(Clone)]
pub struct HttpState(Arc<HttpShared>);

impl std::ops::Deref for HttpState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

pub struct HttpShared {
    pub app: App,
    pub settings: HttpSettings,
    /// The one-time bootstrap token; `None` once used or seen closed, or when bootstrap was
    /// already closed at start.
    pub setup_token: Mutex<Option<SetupToken>>,
    /// Live MCP sessions: who opened each, when last used, what is in flight.
    pub sessions: Arc<sessions::SessionTable>,
    /// When a refusal at the session cap was last audited (once per burst).
    pub session_refusal_audited: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

/// The whole HTTP application. Layers, outermost first, and why in this order:
/// 1. `edge_layer` (one layer, so one boxed future per request), in this order: metrics and
///    latency see every response, including refusals below; client IP and public base URL are
///    resolved, which every later step reads; Host and Origin are checked on every route,
///    before authentication, so a foreign Origin gets 403, never 401; the time to a response
///    is bounded, with a JSON 408;
/// 2. CORS (answers preflights from allowed origins);
/// 3. the body limit for the JSON endpoints (rmcp enforces the same limit on `/mcp`).
///
/// Authentication is a layer on `/mcp` only; the other routes authenticate themselves or are
/// public.
pub fn router(state: HttpState, mcp_shutdown: CancellationToken) -> Router {
    let s = &state.settings;
    // Host and Origin are checked by `edge_layer` on every route before anything else, with
    // keyward's own policy; rmcp would only repeat the same check (and copy its lists into
    // every request).
    let rmcp = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(s.max_body_bytes)
        .with_cancellation_token(mcp_shutdown)
        .with_legacy_session_mode(!s.stateless)
        .with_json_response(s.stateless);
    let tools = Arc::new(KeywardServer::all_tools());
    let app = state.app.clone();
    let factory = move || {
        Ok(KeywardServer::with_router(
            app.clone(),
            CallerSource::Http,
            tools.clone(),
        ))
    };
    let mcp = if s.stateless {
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, NeverSessionManager::default().into(), rmcp),
        )
    } else {
        let bound = sessions::BoundSessions::new(state.sessions.clone());
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, bound.into(), rmcp),
        )
    }
    // Inner to outer: the request is made plain JSON-RPC for rmcp, after it is authenticated.
    .layer(from_fn_with_state(state.clone(), protocol::normalize))
    .layer(from_fn_with_state(state.clone(), auth::authenticate));

    // Bundles from `audit_export`, authenticated exactly as `/mcp`.
    let exports = Router::new()
        .route("/audit/exports/{name}", get(exports::download))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));

    let cors = origin::cors(&s.origins);
    let max_body = s.max_body_bytes;
    let (oauth_public, oauth_pages) = oauth::routes();
    // Callable from any web page (no cookies): CORS `*`, no credentials, and the edge skips
    // the Origin allow-list for them (`origin::is_public_path`).
    let public = Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(well_known::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(well_known::metadata),
        )
        .merge(oauth_public)
        .layer(origin::public_cors());
    let private = Router::new()
        .merge(mcp)
        .merge(exports)
        .merge(oauth_pages)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/auth/bootstrap", post(session::bootstrap))
        .route("/v1/auth/login", post(session::login))
        .route("/v1/auth/logout", post(session::logout))
        .layer(ServiceBuilder::new().option_layer(cors));
    Router::new()
        .merge(public)
        .merge(private)
        .fallback(|| async { HttpError::not_found() })
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), edge_layer))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/mcp" | "/mcp/" => "/mcp",
        "/.well-known/oauth-protected-resource" => "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp" => "/.well-known/oauth-protected-resource/mcp",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/auth/bootstrap" => "/auth/bootstrap",
        "/v1/auth/login" => "/v1/auth/login",
        "/v1/auth/logout" => "/v1/auth/logout",
        "/.well-known/oauth-authorization-server" => "/.well-known/oauth-authorization-server",
        "/register" => "/register",
        "/token" => "/token",
        "/revoke" => "/revoke",
        "/authorize" => "/authorize",
        "/authorize/sign-in" => "/authorize/sign-in",
        "/authorize/decision" => "/authorize/decision",
        p if p.starts_with("/audit/exports/") => "/audit/exports/{name}",
        _ => "other",
    }
}

/// Counts every request by route, method and status and times it; resolves the client and
/// base URL; refuses foreign Hosts and Origins; bounds the time to a response. A `POST /mcp`
/// also counts as work in flight until its response body (which may be a stream) has ended, so
/// shutdown can wait for it.
async fn edge_layer(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    // A fixed set: a client must not be able to mint metric series with made-up methods.
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::OPTIONS => "OPTIONS",
        axum::http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let in_flight = (route == "/mcp" && req.method() == axum::http::Method::POST)
        .then(|| state.app.inflight.enter());
    let started = Instant::now();
    let limit = answer_deadline(&state.settings, req.headers());
    // Answers within a session are cut at their deadline by the session layer, with an error
    // for their request id; the others here.
    let sessionless = !req.headers().contains_key("mcp-session-id");
    edge::resolve(&state.settings.edge, &mut req);
    let mut res = match origin::check(&state.settings.origins, &req) {
        Err(refused) => refused.into_response(),
        Ok(()) => match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the request took longer than {} s", limit.as_secs()),
            )
            .into_response(),
        },
    };
    // Internal details of a failed request are logged here, once, and never sent.
    if let Some(error::InternalDetail(detail)) = res.extensions_mut().remove() {
        tracing::error!(route, error = %detail, "request failed");
    }
    // Session termination: rmcp answers 202, which some clients (the Python SDK) treat as a
    // failure; 204 says the same thing in the way every client accepts.
    if route == "/mcp" && method == "DELETE" && res.status() == StatusCode::ACCEPTED {
        *res.status_mut() = StatusCode::NO_CONTENT;
    }
    // A complete body (a JSON answer) means the call is over; only a stream (SSE) is still
    // work in flight. Wrapping a complete body would also turn its Content-Length into
    // chunked encoding, one more write per response.
    if let Some(guard) = in_flight
        && axum::body::HttpBody::size_hint(res.body())
            .exact()
            .is_none()
    {
        let cut = sessionless.then(|| tokio::time::sleep_until((started + limit).into()));
        res = res.map(|body| {
            let stream = body.into_data_stream().map(move |chunk| {
                let _held_until_the_body_ends = &guard;
                chunk
            });
            match cut {
                Some(at) => axum::body::Body::from_stream(stream.take_until(at)),
                None => axum::body::Body::from_stream(stream),
            }
        });
    }
    let m = &state.app.metrics;
    m.http_latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: res.status().as_u16(),
        })
        .inc();
    res
}

/// How long an answer may take: `--request-timeout`, or `--long-request-timeout` for a call
/// to a long-running tool (named by the `Mcp-Name` header that 2026-07-28 clients send).
fn answer_deadline(s: &HttpSettings, headers: &axum::http::HeaderMap) -> Duration {
    let long = headers
        .get("mcp-name")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::domain::catalog::ToolName::parse)
        .is_some_and(crate::domain::catalog::ToolName::long_running);
    if long {
        s.sessions.long_request_timeout
    } else {
        s.request_timeout
    }
}

/// A server that is running, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The one-time bootstrap token, when no admin existed at start (also printed to stderr).
    pub setup_token: Option<String>,
    /// Cancel to shut down gracefully.
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Binds and starts serving. Shutdown (cancel `Running::shutdown`): stop accepting, let tool
/// calls in flight finish (up to the grace period), then close MCP streams and sessions.
pub async fn start(app: App, settings: HttpSettings) -> anyhow::Result<Running> {
    let managed = matches!(settings.auth, HttpAuth::Managed);
    let setup_token = if managed && crate::ops::bootstrap::is_open(&app).await? {
        let token = crate::domain::session::SessionToken::setup();
        let minutes = settings.setup_token_lifetime.num_minutes().max(1);
        // Deliberately on stderr, once: the operator at the console needs it, nobody else.
        eprintln!(
            "keyward: no admin exists yet. Create one with POST /auth/bootstrap \
             {{\"setup_token\", \"username\", \"password\"}} using this one-time setup token \
             (valid for {minutes} min, or until bootstrap happens anywhere):\n\n    {token}\n"
        );
        Some(token)
    } else {
        None
    };
    let expires_at = app.now() + settings.setup_token_lifetime;
    let tls = settings.tls.clone();
    let grace = settings.shutdown_grace;
    let settings_sessions = settings.sessions;
    let conn_limits = settings.connections.clone();
    let state = HttpState(Arc::new(HttpShared {
        app: app.clone(),
        settings,
        setup_token: Mutex::new(
            setup_token
                .clone()
                .map(|value| SetupToken { value, expires_at }),
        ),
        sessions: Arc::new(sessions::SessionTable::new(settings_sessions)),
        session_refusal_audited: Mutex::default(),
    }));
    let listen = state.settings.listen;
    let mcp_shutdown = CancellationToken::new();
    let router = router(state, mcp_shutdown.clone());
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = tcp.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "listening on {scheme}://{addr}/mcp");
    let shutdown = CancellationToken::new();
    {
        let (shutdown, inflight) = (shutdown.clone(), app.inflight.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new connections; waiting for calls in flight");
            inflight.wait_idle(grace).await;
            mcp_shutdown.cancel();
        });
    }
    {
        // Expired lockout counters and sign-in throttles are deleted, so failures from ever
        // new addresses cannot grow the tables without bound; so are expired OAuth requests,
        // codes and tokens, and registered clients nobody used.
        let (app, stop) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(e) = crate::ops::lockout::prune(&app).await {
                            tracing::warn!(error = %e, "could not prune expired lockout counters");
                        }
                        if let Err(e) = crate::ops::oauth::sweep(&app).await {
                            tracing::warn!(error = %e, "could not sweep expired OAuth state");
                        }
                    }
                }
            }
        });
    }
    let gate = server::Gate::new(conn_limits.clone());
    let stop = shutdown.clone();
    let task = match tls {
        Some(cfg) => {
            let listener = TlsListener::new(tcp, cfg, gate);
            tokio::spawn(async move {
                server::serve(listener, router, &conn_limits, stop).await;
                Ok(())
            })
        }
        None => {
            let listener = PlainListener::new(tcp, gate);
            tokio::spawn(async move {
                server::serve(listener, router, &conn_limits, stop).await;
                Ok(())
            })
        }
    };
    Ok(Running {
        addr,
        setup_token,
        shutdown,
        task,
    })
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(app: App, settings: HttpSettings) -> anyhow::Result<()> {
    let running = start(app, settings).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.cancel();
    });
    running.task.await??;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
