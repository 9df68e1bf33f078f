//! Test support: an isolated environment per test (its own SQLite file), the real binary as a
//! stdio MCP server driven by an rmcp client, and an in-process server on a manual clock for
//! rules that depend on time.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use keyward::app::App;
use keyward::clock::ManualClock;
use keyward::domain::key::PlainKey;
use keyward::mcp::{CallerSource, KeywardServer};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ListToolsResult, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// Which database the suite runs on: `KEYWARD_TEST_BACKEND=postgres` runs every test against
/// its own PostgreSQL database; the default is SQLite.
pub fn postgres_selected() -> bool {
    std::env::var("KEYWARD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Where test databases are created: `KEYWARD_TEST_POSTGRES_URL`, by default the local
/// server with trust authentication.
pub fn postgres_admin_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs a statement on the admin connection, on a thread of its own (callers are sync).
fn postgres_admin(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(&sql)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            let _ = c.close().await;
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("admin thread panicked".into()))
}

/// One test's world: its own database (a SQLite file in a temporary directory, or a fresh
/// PostgreSQL database) and the stderr the binary wrote.
pub struct Env {
    dir: tempfile::TempDir,
    logs: AtomicUsize,
    /// The PostgreSQL database created for this test, dropped with it.
    pg_database: Option<String>,
}

impl Env {
    pub fn new() -> Self {
        if postgres_selected() {
            Self::postgres().expect("KEYWARD_TEST_BACKEND=postgres but PostgreSQL is not reachable")
        } else {
            Self::sqlite()
        }
    }

    pub fn sqlite() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            logs: AtomicUsize::new(0),
            pg_database: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (after saying so) when none is reachable. With
    /// `KEYWARD_REQUIRE_POSTGRES=1` (CI) an unreachable server is a failure instead.
    pub fn postgres() -> Option<Self> {
        let name = format!(
            "kw_test_{}",
            keyward::domain::ids::random_base62(12).to_lowercase()
        );
        match postgres_admin(format!("CREATE DATABASE {name}")) {
            Ok(()) => Some(Env {
                dir: tempfile::tempdir().expect("tempdir"),
                logs: AtomicUsize::new(0),
                pg_database: Some(name),
            }),
            Err(e) if std::env::var_os("KEYWARD_REQUIRE_POSTGRES").is_some() => {
                panic!(
                    "PostgreSQL is required (KEYWARD_REQUIRE_POSTGRES) but not reachable at {}: {e}",
                    postgres_admin_url()
                )
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: PostgreSQL is not reachable at {} ({e}); set KEYWARD_TEST_POSTGRES_URL to run this test",
                    postgres_admin_url()
                );
                None
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_database.is_some()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("keyward.db")
    }

    pub fn url(&self) -> String {
        match &self.pg_database {
            Some(name) => {
                let admin = postgres_admin_url();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
            None => format!("sqlite://{}", self.db_path().display()),
        }
    }

    /// A command for the binary, pointed at this environment's database.
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        c.env("KEYWARD_DATABASE_URL", self.url())
            .env_remove("KEYWARD_API_KEY")
            .env_remove("KEYWARD_AUTH_MODE")
            .env("RUST_LOG", "trace");
        c
    }

    /// `keyward bootstrap --json`, as an operator runs it.
    pub fn bootstrap(&self) -> Value {
        let out = self
            .command()
            .args(["bootstrap", "--json"])
            .output()
            .expect("run bootstrap");
        self.keep_stderr(&out.stderr);
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("bootstrap prints JSON")
    }

    /// Runs `keyward serve --stdio` with `key` and expects it to refuse to start; returns stderr.
    pub fn refused_start(&self, key: Option<&str>) -> String {
        let mut c = self.command();
        c.args(["serve", "--stdio"]).stdin(Stdio::null());
        if let Some(k) = key {
            c.env("KEYWARD_API_KEY", k);
        }
        let out = c.output().expect("run serve");
        self.keep_stderr(&out.stderr);
        assert!(!out.status.success(), "server started with a bad key");
        assert!(
            out.stdout.is_empty(),
            "nothing may reach stdout: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn next_log(&self) -> PathBuf {
        let n = self.logs.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("stderr-{n}.log"))
    }

    fn keep_stderr(&self, bytes: &[u8]) {
        std::fs::write(self.next_log(), bytes).expect("write log");
    }

    /// Everything the binary wrote to stderr in this environment so far.
    pub fn all_stderr(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("stderr-") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// Everything the database holds: the SQLite file (with its write-ahead log), or every row
    /// of every table in PostgreSQL as text.
    pub fn db_bytes(&self) -> Vec<u8> {
        if self.is_postgres() {
            return self.postgres_dump().into_bytes();
        }
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.db_path().display()));
            bytes.extend(std::fs::read(p).unwrap_or_default());
        }
        bytes
    }

    /// Every audit journal file (SQLite) as it is now: live processes' records not yet
    /// moved, and anything set aside.
    pub fn journal_bytes(&self) -> Vec<u8> {
        let dir = keyward::store::journal::journal_dir(&self.db_path());
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
        bytes
    }

    fn postgres_dump(&self) -> String {
        let url = self.url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                let mut out = String::new();
                for t in tables {
                    let rows: Option<String> = sqlx::query_scalar(&format!(
                        "SELECT string_agg(t::text, E'\\n') FROM {t} t"
                    ))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    out.push_str(&rows.unwrap_or_default());
                    out.push('\n');
                }
                out
            })
        })
        .join()
        .unwrap()
    }

    /// Spawns `keyward serve --stdio` with `key` and connects with the legacy `initialize`
    /// handshake (protocol 2025-06-18 / 2025-11-25 clients).
    pub async fn stdio(&self, key: &str) -> Client {
        self.stdio_with(key, ClientLifecycleMode::Initialize).await
    }

    /// Same, as a 2026-07-28 client: `server/discover` and no session.
    pub async fn stdio_discover(&self, key: &str) -> Client {
        let mode = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        self.stdio_with(key, mode).await
    }

    async fn stdio_with(&self, key: &str, mode: ClientLifecycleMode) -> Client {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["serve", "--stdio"])
            .env("KEYWARD_DATABASE_URL", self.url())
            .env("KEYWARD_API_KEY", key)
            .env_remove("KEYWARD_AUTH_MODE");
        self.connect(cmd, mode).await
    }

    /// Connects a legacy client to the stdio server started by `cmd`.
    pub async fn stdio_command(&self, cmd: tokio::process::Command) -> Client {
        self.connect(cmd, ClientLifecycleMode::Initialize).await
    }

    async fn connect(&self, mut cmd: tokio::process::Command, mode: ClientLifecycleMode) -> Client {
        // The most talkative setting, so the secrets scan covers every log line.
        cmd.env("RUST_LOG", "trace");
        let log = std::fs::File::create(self.next_log()).expect("log file");
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(log)
            .spawn()
            .expect("spawn keyward");
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keyward-it", "1.2.3"),
        );
        let service = info
            .serve_with_lifecycle(transport, mode)
            .await
            .expect("connect over stdio");
        Client { service }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_database {
            let _ = postgres_admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

pub struct Client {
    service: RunningService<RoleClient, ClientConfig>,
}

impl Client {
    pub fn from_service(service: RunningService<RoleClient, ClientConfig>) -> Self {
        Client { service }
    }

    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(map) = args else {
            panic!("arguments must be an object")
        };
        self.service
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map))
            .await
            .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
    }

    /// Calls a tool and returns the protocol-level result (for tools that do not exist).
    pub async fn try_call(
        &self,
        tool: &str,
        args: Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let Value::Object(map) = args else {
            panic!("arguments must be an object")
        };
        self.service
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map))
            .await
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        assert_ne!(r.is_error, Some(true), "{tool} failed: {}", text(&r));
        r.structured_content
            .unwrap_or_else(|| panic!("{tool} returned no structured content"))
    }

    /// Calls a tool that must fail with a tool error; returns its message.
    pub async fn err(&self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args).await;
        assert_eq!(
            r.is_error,
            Some(true),
            "{tool} unexpectedly succeeded: {:?}",
            r.structured_content
        );
        text(&r)
    }

    /// The server's `instructions`, from its handshake.
    pub fn server_instructions(&self) -> Option<String> {
        self.service
            .peer()
            .peer_info()
            .and_then(|i| i.instructions.clone())
    }

    pub async fn list(&self) -> ListToolsResult {
        self.service.list_tools(None).await.expect("tools/list")
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .list()
            .await
            .tools
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        names
    }

    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }

    /// A reader key named `name`, made over a stateless (2026-07-28) connection that opens no
    /// session; returns (secret, id).
    pub async fn mint_with(
        s: &crate::http_support::Server,
        admin: &str,
        name: &str,
    ) -> (String, String) {
        let c = s.client_2026(admin).await;
        let made = c.mint(name, "reader", &["*"]).await;
        c.close().await;
        made
    }

    /// Creates a key with `role` in `tenants` and returns (secret, id).
    pub async fn mint(&self, name: &str, role: &str, tenants: &[&str]) -> (String, String) {
        let v = self
            .ok(
                "key_create",
                json!({"name": name, "role": role, "tenants": tenants}),
            )
            .await;
        (
            v["api_key"].as_str().expect("api_key").to_owned(),
            v["key"]["id"].as_str().expect("id").to_owned(),
        )
    }

    /// Events matching `filters` (a JSON object of audit_query arguments).
    pub async fn audit(&self, filters: Value) -> Vec<Value> {
        let v = self.ok("audit_query", filters).await;
        v["events"].as_array().expect("events").clone()
    }

    /// The same events in full (audit_get of each): reasons, arguments, client claims.
    pub async fn audit_full(&self, filters: Value) -> Vec<Value> {
        let mut out = Vec::new();
        for e in self.audit(filters).await {
            out.push(self.ok("audit_get", json!({"id": e["id"]})).await["event"].clone());
        }
        out
    }
}

pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn secret(v: &Value) -> String {
    v["api_key"].as_str().expect("api_key").to_owned()
}

/// An in-process keyward on a manual clock, reached over an in-memory stream by a real rmcp
/// client: for rules that depend on time (expiry, rotation grace) without sleeping.
pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    _env: Env,
}

impl Harness {
    pub async fn at(start: DateTime<Utc>) -> Self {
        let env = Env::new();
        let clock = Arc::new(ManualClock::new(start));
        let (app, _writer) = keyward::open_app(&env.url(), clock.clone(), Default::default())
            .await
            .expect("open app");
        Harness {
            app,
            clock,
            _env: env,
        }
    }

    pub fn url(&self) -> String {
        self._env.url()
    }

    pub async fn bootstrap(&self) -> String {
        let meta = keyward::ops::CallMeta::new(keyward::domain::audit::Source::Cli);
        let first = keyward::ops::bootstrap::FirstAdmin {
            key_name: "admin",
            expires_at: None,
            operator: None,
        };
        let created = keyward::ops::bootstrap::bootstrap(&self.app, first, &meta)
            .await
            .expect("bootstrap");
        created.key.api_key
    }

    pub async fn client(&self, key: &str) -> Client {
        let caller = CallerSource::StdioKey(PlainKey::parse(key).expect("well-formed key"));
        let server = KeywardServer::new(self.app.clone(), caller);
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            if let Ok(running) = server.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keyward-it", "1.2.3"),
        );
        let service = info.serve(client_io).await.expect("connect in-process");
        Client { service }
    }
}
