//! HTTP test support: the real router on 127.0.0.1:0, in-process, built through the same
//! command-line parsing and validation as `keyward serve`, on a manual clock; plus a plain
//! HTTP client and rmcp streamable-HTTP clients holding a bearer key.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Parser;
use keyward::app::App;
use keyward::cli::{Cli, Command, ServeArgs};
use keyward::clock::{Clock, ManualClock, SystemClock};
use keyward::http::Running;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::{Client, Env};

pub struct Server {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub running: Running,
    pub env: Env,
    /// The database actually served: the environment's, or, with authentication disabled, a
    /// throwaway one of the server's own (kept until the server is dropped).
    pub _database: keyward::config::Database,
}

/// Parses `keyward serve --listen 127.0.0.1:0 <extra…>` exactly as the binary would.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["keyward", "serve", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Serve(args) => *args,
        _ => unreachable!("serve"),
    }
}

impl Server {
    pub async fn start(extra: &[&str]) -> Self {
        Self::try_start(Env::new(), extra)
            .await
            .expect("server starts")
    }

    /// Starts on an existing environment (its database), e.g. to restart.
    pub async fn try_start(env: Env, extra: &[&str]) -> anyhow::Result<Self> {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let args = serve_args(extra);
        let mut options = keyward::config::app_options(&args)?;
        let database = if args.auth_mode == keyward::cli::AuthMode::Disabled {
            keyward::config::database(None, true)?
        } else {
            keyward::config::database(Some(&env.url()), false)?
        };
        options.development = database.throwaway.is_some();
        let (app, _writer) = keyward::open_app(&database.url, clock.clone(), options).await?;
        let settings = keyward::config::http_settings(&args, &app).await?;
        let running = keyward::http::start(app.clone(), settings).await?;
        Ok(Server {
            app,
            clock,
            running,
            env,
            _database: database,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    pub fn mcp(&self) -> String {
        self.url("/mcp")
    }

    /// Creates the first admin (key only) and returns its secret.
    pub async fn admin_key(&self) -> String {
        let meta = keyward::ops::CallMeta::new(keyward::domain::audit::Source::Cli);
        let first = keyward::ops::bootstrap::FirstAdmin {
            key_name: "admin",
            expires_at: None,
            operator: None,
        };
        keyward::ops::bootstrap::bootstrap(&self.app, first, &meta)
            .await
            .expect("bootstrap")
            .key
            .api_key
    }

    /// A server whose first admin is the operator `alice` (password `correct horse battery`),
    /// bootstrapped over HTTP with the setup token; returns it with the admin key.
    pub async fn with_alice(extra: &[&str]) -> (Self, String) {
        let s = Self::start(extra).await;
        let token = s.running.setup_token.clone().expect("a setup token");
        let res = http()
            .post(s.url("/auth/bootstrap"))
            .json(&json!({"setup_token": token, "username": "alice",
                "password": "correct horse battery"}))
            .send()
            .await
            .expect("bootstrap");
        assert_eq!(res.status(), 201);
        let key = res.json::<Value>().await.expect("JSON")["api_key"]
            .as_str()
            .expect("api_key")
            .to_owned();
        (s, key)
    }

    /// An rmcp client over streamable HTTP with `Authorization: Bearer <key>` (legacy
    /// `initialize` lifecycle).
    pub async fn client(&self, key: &str) -> Client {
        self.client_with(key, ClientLifecycleMode::Initialize, HashMap::new())
            .await
    }

    /// A 2026-07-28 client: `server/discover`, no session.
    pub async fn client_2026(&self, key: &str) -> Client {
        let mode = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        self.client_with(key, mode, HashMap::new()).await
    }

    pub async fn client_with(
        &self,
        key: &str,
        mode: ClientLifecycleMode,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
    ) -> Client {
        let config = StreamableHttpClientTransportConfig::with_uri(self.mcp())
            .auth_header(key.to_owned())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::from_config(config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keyward-it", "1.2.3"),
        );
        let service = info
            .serve_with_lifecycle(transport, mode)
            .await
            .expect("connect over HTTP");
        Client::from_service(service)
    }

    pub async fn stop(self) -> Env {
        self.running.shutdown.cancel();
        let _ = self.running.task.await;
        self.app.audit.close().await;
        self.env
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("reqwest client")
}

/// A JSON-RPC `initialize` body, for raw requests.
pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

/// POSTs a JSON-RPC body to /mcp with the headers MCP requires, plus `extra`.
pub async fn post_mcp(server: &Server, body: &Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http()
        .post(server.mcp())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}
