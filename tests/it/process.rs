//! A real `keyward serve` process for reliability tests (crash, soak): started on
//! 127.0.0.1:0, its address read from its log, killed when dropped.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::{BIN, Env, secret};

pub struct Process {
    pub child: Child,
    pub mcp: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn start(env: &Env, extra: &[&str]) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--stateless", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("KEYWARD_DATABASE_URL", env.url());
        Self::spawn(cmd)
    }

    /// Starts `cmd` (a `keyward serve` on 127.0.0.1:0) and waits until it listens.
    pub fn spawn(mut cmd: Command) -> Process {
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

    /// SIGTERM, then waits for a graceful exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
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

pub fn bootstrap(env: &Env) -> String {
    let out = Command::new(BIN)
        .args(["bootstrap", "--json"])
        .env("KEYWARD_DATABASE_URL", env.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    secret(&serde_json::from_slice(&out.stdout).unwrap())
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

/// One keep-alive connection, like one client of a load balancer.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}
