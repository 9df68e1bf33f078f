//! The one test server every integration test starts from, in the style of crates.io's
//! `TestApp`: `TestServer` runs keyward one of four ways over its own database (`Env`):
//!
//! - `TestServer::stdio()`: the real binary, spawned per client (`keyward serve --stdio` with
//!   the client's key), as MCP clients run it;
//! - `TestServer::http(flags)`: the real HTTP router on 127.0.0.1:0, in-process, built through
//!   the same argument parsing as `keyward serve`, on a manual clock;
//! - `TestServer::in_process(start)`: the MCP server in-process over an in-memory stream, on a
//!   manual clock, for rules that depend on time (expiry, rotation grace) without sleeping;
//! - `TestServer::process_on(env, flags)`: a real `keyward serve` process (crash, soak,
//!   replicas; `spawned(cmd)` for one started its own way).
//!
//! Callers are `Persona`s: `.admin()` bootstraps once and connects the first admin;
//! `.persona(role, tenants)` mints a key and connects with it.

use std::collections::HashMap;
use std::ops::Deref;
use std::process::{Child, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Parser;
use keyward::cli::{Cli, Command, ServeArgs};
use keyward::clock::{Clock, ManualClock, SystemClock};
use keyward::domain::key::PlainKey;
use keyward::http::Running;
use keyward::mcp::{CallerSource, KeywardServer};
use keyward::ops::app::App;
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::support::{BIN, Client, Env, secret};

/// The two MCP transports a client can reach keyward over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Stdio, Transport::Http];
}

pub struct TestServer {
    /// The database (and the stderr the binary wrote); shared by replicas of one database.
    pub env: Arc<Env>,
    kind: Kind,
    /// The first admin's (secret, id), once bootstrapped.
    admin: OnceCell<(String, String)>,
}

enum Kind {
    /// Nothing runs until a client connects: each client spawns its own `serve --stdio`.
    Stdio,
    InProcess {
        app: App,
        clock: Arc<ManualClock>,
        /// Finishes once the audit writer has moved what it holds and let go of its journal.
        writer: tokio::task::JoinHandle<()>,
    },
    Http {
        app: App,
        clock: Arc<ManualClock>,
        running: Running,
        writer: tokio::task::JoinHandle<()>,
        /// The database actually served: the environment's, or, with authentication disabled,
        /// a throwaway one of the server's own (kept until the server is dropped).
        _database: keyward::config::Database,
    },
    Process(Process),
}

/// A caller connected to a `TestServer`: its client, key secret and key id. Derefs to the
/// client, so `persona.ok(…)` calls a tool as that caller.
pub struct Persona {
    pub client: Client,
    pub key: String,
    pub id: String,
}

impl Deref for Persona {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Persona {
    pub async fn close(self) {
        self.client.close().await;
    }
}

impl TestServer {
    fn with(env: Arc<Env>, kind: Kind) -> Self {
        TestServer {
            env,
            kind,
            admin: OnceCell::new(),
        }
    }

    /// The server reached over `transport`, with default flags.
    pub async fn start(transport: Transport) -> Self {
        match transport {
            Transport::Stdio => Self::stdio().await,
            Transport::Http => Self::http(&[]).await,
        }
    }

    /// `keyward serve --stdio` on a fresh database.
    pub async fn stdio() -> Self {
        Self::stdio_on(Arc::new(Env::new()))
    }

    /// `keyward serve --stdio` on an existing database.
    pub fn stdio_on(env: Arc<Env>) -> Self {
        Self::with(env, Kind::Stdio)
    }

    /// The MCP server in-process on a manual clock starting at `start`.
    pub async fn in_process(start: DateTime<Utc>) -> Self {
        Self::in_process_with(start, |_| {}).await
    }

    /// The same, with options changed by `change` (e.g. the audit log's settings).
    pub async fn in_process_with(
        start: DateTime<Utc>,
        change: impl FnOnce(&mut keyward::ops::app::AppOptions),
    ) -> Self {
        let env = Env::new();
        let clock = Arc::new(ManualClock::new(start));
        let mut options = env.options(Default::default());
        change(&mut options);
        let (app, writer) = keyward::open_app(&env.url(), clock.clone(), options)
            .await
            .expect("open app");
        Self::with(Arc::new(env), Kind::InProcess { app, clock, writer })
    }

    /// `keyward serve --listen 127.0.0.1:0 <flags…>` in-process on a fresh database.
    pub async fn http(flags: &[&str]) -> Self {
        Self::try_http_on(Arc::new(Env::new()), flags)
            .await
            .expect("server starts")
    }

    /// The same on an existing database (e.g. to restart), or the reason it would not start.
    pub async fn try_http_on(env: Arc<Env>, flags: &[&str]) -> anyhow::Result<Self> {
        Self::try_http_with(env, flags, |_| {}).await
    }

    /// `http(flags)` with the app's options adjusted first (settings that are not `serve`
    /// flags: the audit signing key, the export directory and its caps).
    pub async fn http_with(
        flags: &[&str],
        tweak: impl FnOnce(&mut keyward::ops::app::AppOptions),
    ) -> Self {
        Self::try_http_with(Arc::new(Env::new()), flags, tweak)
            .await
            .expect("server starts")
    }

    pub async fn try_http_with(
        env: Arc<Env>,
        flags: &[&str],
        tweak: impl FnOnce(&mut keyward::ops::app::AppOptions),
    ) -> anyhow::Result<Self> {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let args = serve_args(flags);
        let mut options = env.options(args.app_options()?);
        tweak(&mut options);
        let database = if args.auth_mode == keyward::cli::AuthMode::Disabled {
            keyward::config::database(None, true)?
        } else {
            keyward::config::database(Some(&env.url()), false)?
        };
        options.development = database.throwaway.is_some();
        let (app, writer) = keyward::open_app_with(
            &database.url,
            clock.clone(),
            options,
            args.oauth_settings()?,
        )
        .await?;
        let legacy = || keyward::legacy_key(&app, &args);
        let settings = keyward::http::settings::from_args(&args, legacy).await?;
        let running = keyward::http::start(app.clone(), settings).await?;
        let kind = Kind::Http {
            app,
            clock,
            running,
            writer,
            _database: database,
        };
        Ok(Self::with(env, kind))
    }

    /// An HTTP server whose first admin is the operator `alice` (password `correct horse
    /// battery`), bootstrapped over HTTP with the setup token; returns it with the admin key.
    pub async fn http_with_alice(flags: &[&str]) -> (Self, String) {
        let s = Self::http(flags).await;
        let token = s.running().setup_token.clone().expect("a setup token");
        let res = http()
            .post(s.url("/auth/bootstrap"))
            .json(&json!({"setup_token": token, "username": "alice",
                "password": "correct horse battery"}))
            .send()
            .await
            .expect("bootstrap");
        assert_eq!(res.status(), 201);
        let v = res.json::<Value>().await.expect("JSON");
        let key = v["api_key"].as_str().expect("api_key").to_owned();
        let id = v["key"]["id"].as_str().expect("key id").to_owned();
        s.admin.set((key.clone(), id)).expect("first bootstrap");
        (s, key)
    }

    /// A real `keyward serve --stateless --listen 127.0.0.1:0 <flags…>` process on `env`'s
    /// database (several make replicas; one after another, restarts).
    pub fn process_on(env: &Arc<Env>, flags: &[&str]) -> Self {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["serve", "--stateless", "--listen", "127.0.0.1:0"])
            .args(flags)
            .env("KEYWARD_DATABASE_URL", env.url())
            .env("KEYWARD_AUDIT_SIGNING_KEY", env.audit_key());
        Self::with(env.clone(), Kind::Process(Process::spawn(cmd)))
    }

    /// A `keyward serve` process started by `cmd` (which names its own database, e.g. through
    /// its home directory); the server's `env` is then an unused one of its own.
    pub fn spawned(cmd: std::process::Command) -> Self {
        Self::with(Arc::new(Env::sqlite()), Kind::Process(Process::spawn(cmd)))
    }

    // -- callers --------------------------------------------------------------------------

    /// The first admin's key secret, bootstrapping once: with the CLI (`keyward bootstrap`)
    /// for servers run as processes, in-process otherwise.
    pub async fn admin_key(&self) -> String {
        self.admin_pair().await.0
    }

    async fn admin_pair(&self) -> (String, String) {
        self.admin
            .get_or_init(|| async {
                match &self.kind {
                    Kind::Stdio | Kind::Process(_) => {
                        let boot = self.env.bootstrap();
                        let id = boot["id"].as_str().expect("id").to_owned();
                        (secret(&boot), id)
                    }
                    Kind::InProcess { app, .. } | Kind::Http { app, .. } => {
                        let key = bootstrap_in_process(app).await;
                        (key.api_key, key.key.id)
                    }
                }
            })
            .await
            .clone()
    }

    /// The first admin (bootstrapped once), connected.
    pub async fn admin(&self) -> Persona {
        let (key, id) = self.admin_pair().await;
        Persona {
            client: self.client(&key).await,
            key,
            id,
        }
    }

    /// A key with `role` over `tenants`, minted by the admin, connected.
    pub async fn persona(&self, role: &str, tenants: &[&str]) -> Persona {
        let admin = self.admin().await;
        let (key, id) = admin.mint(&format!("{role}-persona"), role, tenants).await;
        admin.close().await;
        Persona {
            client: self.client(&key).await,
            key,
            id,
        }
    }

    /// A client holding `key`, with the legacy `initialize` handshake (protocol 2025-06-18 /
    /// 2025-11-25 clients).
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

    /// A client with `mode`; over HTTP also with extra `headers` on every request.
    pub async fn client_with(
        &self,
        key: &str,
        mode: ClientLifecycleMode,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
    ) -> Client {
        match &self.kind {
            Kind::Stdio => {
                assert!(headers.is_empty(), "stdio carries no headers");
                let mut cmd = tokio::process::Command::new(BIN);
                cmd.args(["serve", "--stdio"])
                    .env("KEYWARD_DATABASE_URL", self.env.url())
                    .env("KEYWARD_AUDIT_SIGNING_KEY", self.env.audit_key())
                    .env("KEYWARD_API_KEY", key)
                    .env_remove("KEYWARD_AUTH_MODE");
                self.stdio_connect(cmd, mode).await
            }
            Kind::InProcess { app, .. } => {
                assert!(headers.is_empty(), "an in-memory stream carries no headers");
                let caller = CallerSource::StdioKey(PlainKey::parse(key).expect("well-formed key"));
                let server = KeywardServer::new(app.clone(), caller);
                let (server_io, client_io) = tokio::io::duplex(1 << 16);
                tokio::spawn(async move {
                    if let Ok(running) = server.serve(server_io).await {
                        let _ = running.waiting().await;
                    }
                });
                let service = client_info()
                    .serve_with_lifecycle(client_io, mode)
                    .await
                    .expect("connect in-process");
                Client::from_service(service)
            }
            Kind::Http { .. } | Kind::Process(_) => {
                let config = StreamableHttpClientTransportConfig::with_uri(self.mcp())
                    .auth_header(key.to_owned())
                    .custom_headers(headers);
                let transport = StreamableHttpClientTransport::from_config(config);
                let service = client_info()
                    .serve_with_lifecycle(transport, mode)
                    .await
                    .expect("connect over HTTP");
                Client::from_service(service)
            }
        }
    }

    /// Connects a legacy client to the stdio server `cmd` starts (its own flags and
    /// environment), its stderr kept with this server's.
    pub async fn stdio_command(&self, cmd: tokio::process::Command) -> Client {
        self.stdio_connect(cmd, ClientLifecycleMode::Initialize)
            .await
    }

    async fn stdio_connect(
        &self,
        mut cmd: tokio::process::Command,
        mode: ClientLifecycleMode,
    ) -> Client {
        // The most talkative setting, so the secrets scan covers every log line.
        cmd.env("RUST_LOG", "trace");
        let log = std::fs::File::create(self.env.next_log()).expect("log file");
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(log)
            .spawn()
            .expect("spawn keyward");
        let service = client_info()
            .serve_with_lifecycle(transport, mode)
            .await
            .expect("connect over stdio");
        Client::from_service(service)
    }

    /// Runs `keyward serve --stdio` with `key` and expects it to refuse to start; returns
    /// stderr.
    pub fn refused_start(&self, key: Option<&str>) -> String {
        self.env.refused_start(key)
    }

    // -- the running server ---------------------------------------------------------------

    /// The application state of an in-process server.
    pub fn app(&self) -> &App {
        match &self.kind {
            Kind::InProcess { app, .. } | Kind::Http { app, .. } => app,
            Kind::Stdio | Kind::Process(_) => panic!("only an in-process server has an App"),
        }
    }

    /// Runs `q` on the database as someone with write access to it would (tampering tests).
    pub async fn sql(&self, q: &str) {
        match &self.app().store.db {
            keyward::store::Db::Sqlite(p) => {
                sqlx::query(q).execute(p).await.expect(q);
            }
            keyward::store::Db::Postgres(p) => {
                sqlx::query(q).execute(p).await.expect(q);
            }
        }
    }

    /// One integer read with raw SQL on this server's database, whichever the backend.
    pub async fn scalar(&self, q: &str) -> i64 {
        match &self.app().store.db {
            keyward::store::Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await.expect(q),
            keyward::store::Db::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await.expect(q),
        }
    }

    /// `bytes` as a literal of this server's backend (`x'…'` or `'\x…'::bytea`).
    pub fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match &self.app().store.db {
            keyward::store::Db::Sqlite(_) => format!("x'{hex}'"),
            keyward::store::Db::Postgres(_) => format!("'\\x{hex}'::bytea"),
        }
    }

    /// The manual clock of an in-process server.
    pub fn clock(&self) -> &Arc<ManualClock> {
        match &self.kind {
            Kind::InProcess { clock, .. } | Kind::Http { clock, .. } => clock,
            Kind::Stdio | Kind::Process(_) => panic!("only an in-process server has a clock"),
        }
    }

    /// The HTTP server's handle (address, setup token, shutdown).
    pub fn running(&self) -> &Running {
        match &self.kind {
            Kind::Http { running, .. } => running,
            _ => panic!("only an in-process HTTP server has a Running handle"),
        }
    }

    /// `http://<addr><path>` on an HTTP server.
    /// The `/metrics` page, as a client on this machine reads it.
    pub async fn metrics(&self) -> String {
        let res = http().get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        match &self.kind {
            Kind::Http { running, .. } => format!("http://{}{path}", running.addr),
            Kind::Process(p) => format!("{}{path}", p.mcp.trim_end_matches("/mcp")),
            Kind::Stdio | Kind::InProcess { .. } => panic!("not an HTTP server"),
        }
    }

    pub fn mcp(&self) -> String {
        match &self.kind {
            Kind::Process(p) => p.mcp.clone(),
            _ => self.url("/mcp"),
        }
    }

    /// The process id of a server run as a process.
    pub fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Process(p) => p.child.id(),
            _ => panic!("not a process"),
        }
    }

    /// SIGTERM to a server run as a process, then waits for a graceful exit; returns whether
    /// it exited successfully.
    pub fn terminate(self) -> bool {
        match self.kind {
            Kind::Process(p) => p.terminate(),
            _ => panic!("not a process"),
        }
    }

    /// Stops the server (gracefully, for HTTP; SIGKILL for a process) and returns its
    /// database, e.g. to start again on it.
    pub async fn stop(self) -> Arc<Env> {
        match self.kind {
            // Like a stopped process, a stopped server lets go of its database.
            // As `serve` does, it waits for the audit writer to finish: until then its journal is
            // still locked and would read as another live process's (e.g. to a rekey).
            Kind::Http {
                running,
                app,
                writer,
                ..
            } => {
                running.shutdown.cancel();
                let _ = running.task.await;
                app.audit.close().await;
                let _ = writer.await;
                app.store.close().await;
            }
            Kind::InProcess { app, writer, .. } => {
                app.audit.close().await;
                let _ = writer.await;
                app.store.close().await;
            }
            Kind::Process(p) => drop(p),
            Kind::Stdio => {}
        }
        self.env
    }
}

fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("keyward-it", "1.2.3"),
    )
}

async fn bootstrap_in_process(app: &App) -> keyward::ops::KeyWithSecret {
    let meta = keyward::ops::CallMeta::new(keyward::domain::audit::Source::Cli);
    let first = keyward::ops::bootstrap::FirstAdmin {
        key_name: "admin",
        expires_at: None,
        operator: None,
    };
    keyward::ops::bootstrap::bootstrap(app, first, &meta)
        .await
        .expect("bootstrap")
        .key
}

// -- raw HTTP -------------------------------------------------------------------------------

/// Parses `keyward serve --listen 127.0.0.1:0 <extra…>` exactly as the binary would.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["keyward", "serve", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Serve(args) => *args,
        _ => unreachable!("serve"),
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("reqwest client")
}

/// One keep-alive connection, like one client of a load balancer.
pub fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// A JSON-RPC `initialize` body, for raw requests.
pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

/// POSTs a JSON-RPC body to /mcp with the headers MCP requires, plus `extra`.
pub async fn post_mcp(
    server: &TestServer,
    body: &Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
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

/// A self-contained tools/call (no session), with optional extra headers. Returns the HTTP
/// status and body, or `None` when no answer came (connection refused or reset).
pub async fn call(
    client: &reqwest::Client,
    mcp: &str,
    key: &str,
    tool: &str,
    args: Value,
    extra: &[(&str, &str)],
) -> Option<(u16, Value)> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let mut req = client
        .post(mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

// -- processes --------------------------------------------------------------------------------

/// A `keyward serve` child process on 127.0.0.1:0, its address read from its log, killed
/// when dropped.
struct Process {
    child: Child,
    mcp: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `cmd` and waits until it listens.
    fn spawn(mut cmd: std::process::Command) -> Process {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(pos) = line.find("listening on http://")
                    && let Some(t) = tx.take()
                {
                    let url = line[pos + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default();
                    let _ = t.send(url.to_owned());
                }
            }
        });
        let mcp = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("server started");
        Process { child, mcp }
    }

    fn terminate(mut self) -> bool {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().is_ok_and(|s| s.success())
    }
}

/// Resident memory of process `pid`, in KiB (0 when unknown).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
