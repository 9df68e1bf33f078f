//! Test support below the server: an isolated database per test (`Env`: its own SQLite file,
//! or a fresh PostgreSQL database) with the stderr the binary wrote there, and `Client`, the
//! rmcp client every transport hands out, with its helpers; and what the tool catalogue says
//! each caller may see (tests derive tool lists and counts from it, never from literals).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::domain::catalog::{Access, ToolName};
use keyward::domain::permission::PermissionSet;
use keyward::domain::role::BuiltinRole;
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ListToolsResult};
use rmcp::service::RunningService;
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

/// Whether PostgreSQL test databases are collated en-US: the server has ICU (and PostgreSQL 15
/// or later). Asked of the server once.
pub fn icu_database() -> bool {
    static ICU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ICU.get_or_init(|| {
        let name = format!(
            "kw_icu_{}",
            keyward::domain::encoding::random_base62(12).to_lowercase()
        );
        let made = postgres_admin(icu_create(&name)).is_ok();
        if made {
            let _ = postgres_admin(format!("DROP DATABASE {name}"));
        }
        made
    })
}

/// `CREATE DATABASE name`, collated en-US by ICU.
fn icu_create(name: &str) -> String {
    format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
         LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
    )
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
            Self::postgres()
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

    /// A fresh PostgreSQL database; panics when none is reachable (tests that need
    /// PostgreSQL are `#[ignore = "needs PostgreSQL"]` and must fail loudly, never skip).
    pub fn postgres() -> Self {
        let name = format!(
            "kw_test_{}",
            keyward::domain::encoding::random_base62(12).to_lowercase()
        );
        // Collated as many installs are (en-US, where case and accents come before bytes),
        // where the server has ICU, so that nothing relies on the database's collation
        // happening to order text by its bytes.
        let icu = icu_create(&name);
        // `KEYWARD_TEST_POSTGRES_ICU=required` (as `.ci/run` sets) makes a server without ICU
        // fail the test rather than run it on its default collation.
        let created = postgres_admin(icu).or_else(|e| {
            if std::env::var("KEYWARD_TEST_POSTGRES_ICU").as_deref() == Ok("required") {
                return Err(e);
            }
            eprintln!("no en-US (ICU) database, the server's default collation instead: {e}");
            postgres_admin(format!("CREATE DATABASE {name}"))
        });
        if let Err(e) = created {
            panic!(
                "PostgreSQL is needed but not reachable at {}, or cannot create an en-US (ICU) \
                 database (set KEYWARD_TEST_POSTGRES_URL): {e}",
                postgres_admin_url()
            )
        }
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            logs: AtomicUsize::new(0),
            pg_database: Some(name),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_database.is_some()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("keyward.db")
    }

    /// The audit log's checkpoint signing key: one file per environment, so every process and
    /// in-process server on its database signs with the same key (PostgreSQL requires one).
    pub fn audit_key(&self) -> PathBuf {
        self.dir.path().join("audit.key")
    }

    /// App options with this environment's audit signing key.
    pub fn options(
        &self,
        mut options: keyward::ops::app::AppOptions,
    ) -> keyward::ops::app::AppOptions {
        options.audit_log.signing_key =
            Some(keyward::ops::audit_log::KeySource::File(self.audit_key()));
        options
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
            .env("KEYWARD_AUDIT_SIGNING_KEY", self.audit_key())
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

    pub fn next_log(&self) -> PathBuf {
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

    /// Every row of every table as text, in each table's key order: what a change to the
    /// database's content would change, and nothing a reader alone changes (SQLite moving its
    /// write-ahead log into the file at close).
    pub fn logical_dump(&self) -> String {
        if self.is_postgres() {
            return self.postgres_dump();
        }
        let url = self.url();
        blocking(async move {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            let mut out = String::new();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                let row = cols
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Option<String> = sqlx::query_scalar(&format!(
                        "SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r FROM \"{t}\" ORDER BY 1)"
                    ))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                out.push_str(&format!("{t}:\n{}\n", rows.unwrap_or_default()));
            }
            out
        })
    }

    fn postgres_dump(&self) -> String {
        let url = self.url();
        blocking(async move {
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
                let rows: Option<String> =
                    sqlx::query_scalar(&format!("SELECT string_agg(t::text, E'\\n') FROM {t} t"))
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                out.push_str(&rows.unwrap_or_default());
                out.push('\n');
            }
            out
        })
    }
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own (callable from
/// inside a test's runtime).
fn blocking<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap()
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
        s: &crate::server::TestServer,
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

// -- the catalogue ----------------------------------------------------------------------------

/// Every tool's wire name, sorted.
pub fn all_tools() -> Vec<String> {
    tools_where(|_| true)
}

/// The tools `permissions` may see and call, sorted.
pub fn tools_for(permissions: PermissionSet) -> Vec<String> {
    tools_where(|t| match t.access() {
        Access::Authenticated => true,
        Access::Needs(p) => permissions.contains(p),
    })
}

/// The tools a built-in role may see and call, sorted.
pub fn role_tools(role: BuiltinRole) -> Vec<String> {
    tools_for(role.permissions())
}

fn tools_where(keep: impl Fn(ToolName) -> bool) -> Vec<String> {
    let mut v: Vec<String> = ToolName::ALL
        .into_iter()
        .filter(|t| keep(*t))
        .map(|t| t.wire().to_owned())
        .collect();
    v.sort();
    v
}

/// The tools whose success changes state.
pub fn write_tools() -> Vec<ToolName> {
    ToolName::ALL
        .into_iter()
        .filter(|t| !t.read_only())
        .collect()
}
