//! `--auth-mode disabled` is for local development only: it never serves a named database
//! (so a web page that drives it from the developer's browser cannot mint anything real), and
//! nothing created in its throwaway database survives into a real deployment. Also: the files
//! that hold credentials and the trail are owner-only.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::{BIN, Env};

const EVIL: &str = "http://evil.example";

/// A home of its own: data directory (the default database) and temporary directory.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn tmp(&self) -> std::path::PathBuf {
        let t = self.dir.path().join("tmp");
        std::fs::create_dir_all(&t).unwrap();
        t
    }

    /// `keyward <args>` with this home, no database URL, under a permissive umask.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"umask 022; exec "$0" "$@""#)
            .arg(BIN)
            .args(args)
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.data())
            .env("TMPDIR", self.tmp())
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_AUTH_MODE")
            .env_remove("KEYWARD_API_KEY");
        c
    }

    fn throwaway_dirs(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("keyward-dev-")
            })
            .collect()
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn preflight(mcp: &str, origin: &str) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, mcp)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
}

/// POSTs a JSON-RPC message to /mcp as a page on `origin` would.
async fn post(mcp: &str, origin: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(mcp)
        .header("origin", origin)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.body(body.to_string()).send().await.unwrap()
}

/// The JSON-RPC answer in a JSON or SSE body.
async fn answer(res: reqwest::Response) -> Value {
    let text = res.text().await.unwrap();
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| !d.trim().is_empty())
        .unwrap_or(&text);
    serde_json::from_str(json).unwrap_or(Value::Null)
}

#[tokio::test]
async fn disabled_mode_never_serves_a_named_database() {
    let env = Env::sqlite();
    // Bootstrapped first: the database holds a real admin.
    env.bootstrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = env.url();
    for named in [
        vec!["--database-url", url.as_str()],
        vec![], // the same, through KEYWARD_DATABASE_URL
    ] {
        let mut c = Command::new(BIN);
        c.args(["serve", "--auth-mode", "disabled", "--listen", &listen])
            .args(&named)
            .env("KEYWARD_DATABASE_URL", env.url());
        let out = c.output().unwrap();
        assert!(
            !out.status.success(),
            "disabled mode started on a named database"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--auth-mode disabled runs only on a throwaway database"),
            "{err}"
        );
    }
    // Nothing listens: a foreign page's preflight and initialize reach nothing.
    let mcp = format!("http://{listen}/mcp");
    assert!(preflight(&mcp, EVIL).await.is_err());
    assert!(
        reqwest::Client::new()
            .post(&mcp)
            .header("origin", EVIL)
            .body("{}")
            .send()
            .await
            .is_err()
    );
    // Over stdio too.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--stdio",
            "--auth-mode",
            "disabled",
            "--confirm-disabled-stdio",
        ])
        .env("KEYWARD_DATABASE_URL", env.url())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn nothing_made_with_auth_disabled_survives_into_managed_mode() {
    let home = Home::new();
    let dev = TestServer::spawned(home.command(&[
        "serve",
        "--auth-mode",
        "disabled",
        "--listen",
        "127.0.0.1:0",
    ]));
    // The development CORS mode stays on the throwaway database: a foreign page can call it.
    let r = preflight(&dev.mcp(), EVIL).await.unwrap();
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "page", "version": "0"}}});
    let res = post(&dev.mcp(), EVIL, None, init).await;
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = answer(res).await;
    post(
        &dev.mcp(),
        EVIL,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let made = answer(
        post(
            &dev.mcp(),
            EVIL,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "key_create",
                "arguments": {"name": "drive-by", "role": "admin", "tenants": ["*"], "expires": "never"}}}),
        )
        .await,
    )
    .await;
    let key = made["result"]["structuredContent"]["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("the throwaway database took the key: {made}"))
        .to_owned();

    // Its database is a throwaway of its own, which no other mode serves.
    let dirs = home.throwaway_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let throwaway = format!("sqlite://{}", dirs[0].join("keyward.db").display());
    let out = home
        .command(&[
            "--database-url",
            &throwaway,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "managed mode served a development database"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created by --auth-mode disabled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(dev.terminate(), "clean exit");
    assert!(
        home.throwaway_dirs().is_empty(),
        "the throwaway database is deleted at exit"
    );

    // Managed mode on the default database knows nothing of that key.
    let managed = TestServer::spawned(home.command(&["serve", "--listen", "127.0.0.1:0"]));
    let (status, _) = crate::server::call(
        &crate::server::keep_alive_client(),
        &managed.mcp(),
        &key,
        "whoami",
        json!({}),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn stdio_with_auth_disabled_needs_its_own_confirmation() {
    let home = Home::new();
    let out = home
        .command(&["serve", "--stdio", "--auth-mode", "disabled"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--confirm-disabled-stdio"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn credential_files_are_owner_only() {
    let home = Home::new();
    let server = TestServer::spawned(home.command(&["serve", "--listen", "127.0.0.1:0"]));
    // A call makes the server write its journal and the database its WAL.
    let (status, _) = crate::server::call(
        &crate::server::keep_alive_client(),
        &server.mcp(),
        "kw_not_a_key",
        "whoami",
        json!({}),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let dir = home.data().join("keyward");
    let db = dir.join("keyward.db");
    assert_eq!(mode(&dir), 0o700, "data directory");
    for suffix in ["", "-wal", "-shm"] {
        let f = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let journal = keyward::store::journal::journal_dir(&db);
    assert_eq!(mode(&journal), 0o700, "journal directory");
    let files: Vec<_> = std::fs::read_dir(&journal).unwrap().flatten().collect();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    drop(server);
}
