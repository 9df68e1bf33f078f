//! The harness of the malformed-input tests (`http_malformed_*`): malformed input at the HTTP
//! edge, property-tested: random and truncated JSON-RPC bodies, wrong content types, huge
//! headers, invalid UTF-8, unknown methods and tools, SQL metacharacters in every audit filter
//! and in names, absurd time ranges and limits.
//!
//! Each test starts one real server (stateless, in-process) and runs a bounded number of
//! cases against it. Every case must get a clear error (a JSON-RPC error, keyward's JSON error,
//! a tool error with a message, or a plain-text 4xx) or a correct answer: never a 5xx, a panic
//! or a hang. A valid `whoami` still works after each case, and nothing changes that the case
//! did not legitimately change.

use std::time::Duration;

use keyward::domain::catalog::ToolName;
use keyward::domain::tenant::TenantScope;
use keyward::store::audit::AuditFilter;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::write_tools;

/// Cases per property: enough to find the classes of bug, few enough for a debug build.
pub const CASES: u32 = 48;

pub type CaseResult = Result<(), TestCaseError>;

/// Fails the case with a message (proptest then shrinks it).
macro_rules! fail {
    ($($t:tt)*) => { return Err(proptest::test_runner::TestCaseError::fail(format!($($t)*))) };
}
pub(crate) use fail;

/// Actions whose success changes state: the catalogue's write tools, and signing in and out
/// and bootstrap.
pub fn changes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = write_tools().into_iter().map(ToolName::wire).collect();
    v.extend(["bootstrap", "login", "logout"]);
    v
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// One HTTP answer, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What an answer says.
#[derive(Debug)]
pub enum Answer {
    /// A JSON-RPC error object.
    RpcError { code: i64, message: String },
    /// keyward's HTTP error shape: `{"error": code, "message": text}`.
    HttpError { code: String, message: String },
    /// A tool result with `isError: true`; `kind` is keyward's error kind.
    ToolError { kind: String, message: String },
    /// A successful tool result (its structured content).
    ToolOk(Value),
    /// Any other JSON-RPC result.
    RpcResult,
    /// `202` and no body: a notification was accepted.
    Accepted,
    /// A plain-text body.
    Text(String),
    /// No body at all (not 202).
    Empty,
    /// Nothing recognisable.
    Other,
}

pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

pub fn tool_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<Value> {
        if self.content_type.starts_with("text/event-stream") {
            // The last `data:` line that holds a JSON-RPC message.
            self.text()
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .next_back()
        } else {
            serde_json::from_slice(&self.body).ok()
        }
    }

    pub fn answer(&self) -> Answer {
        match self.json() {
            Some(v) if v["error"].is_object() => Answer::RpcError {
                code: v["error"]["code"].as_i64().unwrap_or(i64::MIN),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
            Some(v) if v["error"].is_string() => Answer::HttpError {
                code: v["error"].as_str().unwrap_or_default().to_owned(),
                message: v["message"].as_str().unwrap_or_default().to_owned(),
            },
            Some(v) if v.get("result").is_some() => {
                let r = &v["result"];
                if r["isError"] == true {
                    Answer::ToolError {
                        kind: r["_meta"]["keyward/error"]
                            .as_str()
                            .unwrap_or("(none)")
                            .to_owned(),
                        message: tool_text(r),
                    }
                } else if r["content"].is_array() {
                    Answer::ToolOk(r["structuredContent"].clone())
                } else {
                    Answer::RpcResult
                }
            }
            _ if self.body.is_empty() && self.status == 202 => Answer::Accepted,
            _ if self.body.is_empty() => Answer::Empty,
            _ => match std::str::from_utf8(&self.body) {
                Ok(t) if !t.trim().is_empty() => Answer::Text(t.to_owned()),
                _ => Answer::Other,
            },
        }
    }

    pub fn describe(&self) -> String {
        let text = clip(&self.text(), 600);
        format!("HTTP {} ({}) {text}", self.status, self.content_type)
    }

    /// Never a 5xx, and nothing unrecognisable: an error, if it is one, says what was wrong.
    /// Returns the answer for further checks.
    pub fn sane(&self) -> Result<Answer, TestCaseError> {
        if self.status >= 500 {
            fail!("server error: {}", self.describe());
        }
        let answer = self.answer();
        match &answer {
            Answer::RpcError { code, message } => {
                if *code == i64::MIN || message.trim().is_empty() {
                    fail!(
                        "JSON-RPC error without code or message: {}",
                        self.describe()
                    );
                }
            }
            Answer::HttpError { code, message } => {
                if code.is_empty() || message.trim().is_empty() {
                    fail!("HTTP error without code or message: {}", self.describe());
                }
            }
            Answer::ToolError { kind, message } => {
                if message.trim().is_empty() {
                    fail!("tool error without a message: {}", self.describe());
                }
                if kind == "internal" || kind == "unavailable" {
                    fail!("internal tool error: {}", self.describe());
                }
            }
            Answer::Text(t) => {
                if !(400..500).contains(&self.status) {
                    fail!("plain text that is not a 4xx: {}", self.describe());
                }
                if t.trim().is_empty() {
                    fail!("empty refusal: {}", self.describe());
                }
            }
            // 431 comes from hyper with no body; its status line is the message.
            Answer::Empty if self.status == 431 => {}
            Answer::Empty | Answer::Other => {
                fail!("no clear answer: {}", self.describe());
            }
            Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted => {
                if !(200..300).contains(&self.status) {
                    fail!("a result with a non-2xx status: {}", self.describe());
                }
            }
        }
        Ok(answer)
    }

    /// A clear error, never a result.
    pub fn clear_error(&self) -> Result<Answer, TestCaseError> {
        let answer = self.sane()?;
        if matches!(
            answer,
            Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted
        ) {
            fail!("expected an error, got {}", self.describe());
        }
        Ok(answer)
    }

    /// A clear error with a 4xx status.
    pub fn refused(&self) -> Result<Answer, TestCaseError> {
        let answer = self.clear_error()?;
        if !(400..500).contains(&self.status) {
            fail!("expected a 4xx refusal, got {}", self.describe());
        }
        Ok(answer)
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------------

/// What must not change: keys (without last use), roles, successful changes in the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub keys: Vec<String>,
    pub roles: Vec<String>,
    pub changes: usize,
}

pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub server: TestServer,
    pub key: String,
    pub http: reqwest::Client,
}

impl Fixture {
    pub fn start(extra: &[&str]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut args = vec!["--stateless"];
        args.extend_from_slice(extra);
        let server = rt.block_on(TestServer::http(&args));
        let key = rt.block_on(server.admin_key());
        // A fresh connection per request: a refused request may close its connection.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Fixture {
            rt,
            server,
            key,
            http,
        }
    }

    pub fn stop(self) {
        let Fixture { rt, server, .. } = self;
        let env = rt.block_on(server.stop());
        drop(rt);
        drop(env);
    }

    /// Runs `test` on each of `examples` (the named cases, every time), then on `CASES` inputs
    /// drawn from `strategy`, failing loudly with the smallest failing input.
    pub fn check<S>(
        &self,
        name: &str,
        examples: Vec<S::Value>,
        strategy: S,
        test: impl Fn(S::Value) -> CaseResult,
    ) where
        S: Strategy,
    {
        let mut failures = Vec::new();
        for example in examples {
            let shown = format!("{example:?}");
            if let Err(TestCaseError::Fail(why)) = test(example) {
                failures.push(format!("- {}:\n  {why}", clip(&shown, 300)));
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} named cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            max_shrink_iters: 64,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, test) {
            panic!("{name}: {e}");
        }
    }

    /// The headers a well-behaved MCP client sends.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", self.key)).unwrap(),
        );
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        h
    }

    pub fn send(&self, body: Vec<u8>, headers: HeaderMap) -> Result<Reply, reqwest::Error> {
        let req = self
            .http
            .post(self.server.mcp())
            .headers(headers)
            .body(body);
        self.rt.block_on(async move {
            let res = req.send().await?;
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = res.bytes().await?.to_vec();
            Ok(Reply {
                status,
                content_type,
                body,
            })
        })
    }

    /// POSTs to /mcp; no answer (or a timeout) fails the case.
    pub fn post(&self, body: Vec<u8>, headers: HeaderMap) -> Result<Reply, TestCaseError> {
        self.send(body, headers).map_err(|e| {
            TestCaseError::fail(format!("no answer (timeout: {}): {e:?}", e.is_timeout()))
        })
    }

    pub fn call(&self, tool: &str, args: &Value) -> Result<Reply, TestCaseError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        self.post(body.to_string().into_bytes(), self.headers())
    }

    /// Calls a tool that must succeed.
    pub fn ok(&self, tool: &str, args: &Value) -> Result<Value, TestCaseError> {
        let r = self.call(tool, args)?;
        match r.sane()? {
            Answer::ToolOk(v) => Ok(v),
            _ => fail!("{tool} {args} failed: {}", r.describe()),
        }
    }

    /// The server still serves a valid call.
    pub fn alive(&self) -> CaseResult {
        let me = self.ok("whoami", &json!({}))?;
        if me["role"] != "admin" {
            fail!("whoami after the case: {me}");
        }
        Ok(())
    }

    pub fn events(
        &self,
        actions: &[&str],
        statuses: &[&str],
    ) -> Vec<keyward::store::audit::AuditRow> {
        let filter = AuditFilter {
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            statuses: statuses.iter().map(|s| (*s).to_owned()).collect(),
            ..AuditFilter::visible_to(TenantScope::All)
        };
        // Straight from the store, as the tools read it: every committed record first.
        self.rt
            .block_on(self.server.app().audit.sync())
            .expect("the audit trail is readable");
        self.rt
            .block_on(keyward::store::audit::page(
                &self.server.app().store,
                &filter,
                None,
                1_000_000,
            ))
            .expect("the audit table answers")
    }

    pub fn snapshot(&self) -> Snapshot {
        let store = &self.server.app().store;
        let keys = self
            .rt
            .block_on(keyward::store::keys::list(
                store,
                &keyward::store::keys::ListFilter {
                    visible_to: &TenantScope::All,
                    roles: &[],
                    include_revoked: true,
                    after: None,
                    limit: 1_000_000,
                },
            ))
            .expect("keys")
            .into_iter()
            .map(|k| {
                format!(
                    "{} {:?} {} [{}] {:?} {:?} {:?} {:?}",
                    k.id,
                    k.name,
                    k.role_name,
                    k.tenants,
                    k.expires_at,
                    k.disabled_at,
                    k.revoked_at,
                    k.rotated_at
                )
            })
            .collect();
        let roles = self
            .rt
            .block_on(keyward::store::roles::list(store))
            .expect("roles")
            .into_iter()
            .map(|r| format!("{} {:?} {}", r.name, r.description, r.permissions))
            .collect();
        Snapshot {
            keys,
            roles,
            changes: self.events(&changes(), &["success"]).len(),
        }
    }

    /// The end of every test: nothing failed inside, the trail still answers queries.
    pub fn finish(&self) {
        let errors = self.events(&[], &["error"]);
        assert!(
            errors.is_empty(),
            "internal errors were audited: {:?}",
            errors
                .iter()
                .map(|e| (&e.action, &e.reason))
                .collect::<Vec<_>>()
        );
        let page = self
            .ok("audit_query", &json!({"limit": 5}))
            .unwrap_or_else(|e| panic!("audit_query after the run: {e}"));
        assert!(
            !page["events"].as_array().unwrap().is_empty(),
            "the trail still holds events: {page}"
        );
        self.alive().unwrap_or_else(|e| panic!("{e}"));
    }
}
