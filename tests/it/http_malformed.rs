//! Malformed input at the HTTP edge, property-tested: random and truncated JSON-RPC bodies,
//! wrong content types, huge headers, invalid UTF-8, unknown methods and tools, SQL
//! metacharacters in every audit filter and in names, absurd time ranges and limits.
//!
//! Each test starts one real server (stateless, in-process) and runs a bounded number of
//! cases against it. Every case must get a clear error (a JSON-RPC error, keyward's JSON error,
//! a tool error with a message, or a plain-text 4xx) or a correct answer: never a 5xx, a panic
//! or a hang. A valid `whoami` still works after each case, and nothing changes that the case
//! did not legitimately change.

use std::cell::Cell;
use std::time::Duration;

use keyward::domain::tenant::TenantScope;
use keyward::mcp::catalog::ToolName;
use keyward::store::audit::AuditFilter;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::server::{TestServer, write_tools};

/// Cases per property: enough to find the classes of bug, few enough for a debug build.
const CASES: u32 = 48;

type CaseResult = Result<(), TestCaseError>;

/// Fails the case with a message (proptest then shrinks it).
macro_rules! fail {
    ($($t:tt)*) => { return Err(TestCaseError::fail(format!($($t)*))) };
}

/// Actions whose success changes state: the catalogue's write tools, and signing in and out
/// and bootstrap.
fn changes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = write_tools().into_iter().map(ToolName::wire).collect();
    v.extend(["bootstrap", "login", "logout"]);
    v
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// One HTTP answer, read in full.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// What an answer says.
#[derive(Debug)]
enum Answer {
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

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

fn tool_text(result: &Value) -> String {
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Option<Value> {
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

    fn answer(&self) -> Answer {
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

    fn describe(&self) -> String {
        let text = clip(&self.text(), 600);
        format!("HTTP {} ({}) {text}", self.status, self.content_type)
    }

    /// Never a 5xx, and nothing unrecognisable: an error, if it is one, says what was wrong.
    /// Returns the answer for further checks.
    fn sane(&self) -> Result<Answer, TestCaseError> {
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
    fn clear_error(&self) -> Result<Answer, TestCaseError> {
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
    fn refused(&self) -> Result<Answer, TestCaseError> {
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
struct Snapshot {
    keys: Vec<String>,
    roles: Vec<String>,
    changes: usize,
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    key: String,
    http: reqwest::Client,
}

impl Fixture {
    fn start(extra: &[&str]) -> Self {
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

    fn stop(self) {
        let Fixture { rt, server, .. } = self;
        let env = rt.block_on(server.stop());
        drop(rt);
        drop(env);
    }

    /// Runs `test` on each of `examples` (the named cases, every time), then on `CASES` inputs
    /// drawn from `strategy`, failing loudly with the smallest failing input.
    fn check<S>(
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
    fn headers(&self) -> HeaderMap {
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

    fn send(&self, body: Vec<u8>, headers: HeaderMap) -> Result<Reply, reqwest::Error> {
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
    fn post(&self, body: Vec<u8>, headers: HeaderMap) -> Result<Reply, TestCaseError> {
        self.send(body, headers).map_err(|e| {
            TestCaseError::fail(format!("no answer (timeout: {}): {e:?}", e.is_timeout()))
        })
    }

    fn call(&self, tool: &str, args: &Value) -> Result<Reply, TestCaseError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        self.post(body.to_string().into_bytes(), self.headers())
    }

    /// Calls a tool that must succeed.
    fn ok(&self, tool: &str, args: &Value) -> Result<Value, TestCaseError> {
        let r = self.call(tool, args)?;
        match r.sane()? {
            Answer::ToolOk(v) => Ok(v),
            _ => fail!("{tool} {args} failed: {}", r.describe()),
        }
    }

    /// The server still serves a valid call.
    fn alive(&self) -> CaseResult {
        let me = self.ok("whoami", &json!({}))?;
        if me["role"] != "admin" {
            fail!("whoami after the case: {me}");
        }
        Ok(())
    }

    fn events(&self, actions: &[&str], statuses: &[&str]) -> Vec<keyward::store::audit::AuditRow> {
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

    fn snapshot(&self) -> Snapshot {
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
    fn finish(&self) {
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

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Strings that break naive SQL, LIKE patterns, JSON or logs.
const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "'; DROP TABLE audit_events; --",
    "\"; DROP TABLE audit_events; --",
    "1; DELETE FROM api_keys; --",
    "') UNION SELECT id, name FROM api_keys --",
    "admin'--",
    "' AND 1=(SELECT COUNT(*) FROM roles) --",
    "%",
    "%%",
    "_",
    "__",
    "key_%",
    "kw_%",
    "%' OR '%'='",
    "\\",
    "\\'",
    "\\\"",
    "\\%",
    "\0",
    "a\0b",
    "'\0'",
    "*",
    "?",
    "$1",
    "?1",
    ":name",
    "@p1",
    "NULL",
    "null",
    "/*",
    "*/",
    "--",
    ";",
    "`",
    "'||'",
    "CHAR(39)",
    "0x27",
    "\u{202e}admin",
    "\u{feff}",
    "🔑",
    "Ω≈ç√",
    "ключ",
    "鍵",
    "é",
    "\r\n",
    "\t",
    " ",
    "",
    "127.0.0.1' OR '1'='1",
    "::1; --",
    "UTC'; --",
    "reader' OR role_name LIKE '%",
];

/// Repeated into very long strings.
const REPEATED: &[&str] = &["'", "%", "_", "\\", "x", "é", "\0", "🔑"];

fn injection() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(INJECTIONS).prop_map(str::to_owned),
        2 => (select(INJECTIONS), select(INJECTIONS)).prop_map(|(a, b)| format!("{a}{b}")),
        1 => "(key|kw|evt)?_[_%]{1,40}",
        1 => "[ -~]{0,80}",
        1 => any::<String>(),
        1 => (select(REPEATED), 1usize..6000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Object keys that make random JSON look a little like JSON-RPC.
const KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "name",
    "arguments",
    "result",
    "error",
    "_meta",
];

/// Strings that make random JSON look a little like MCP (none that could create anything).
const WORDS: &[&str] = &[
    "2.0",
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "whoami",
    "key_list",
    "audit_query",
    "role_get",
    "",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![select(KEYS).prop_map(str::to_owned), any::<String>()],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Methods a client may send.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "logging/setLevel",
    "completion/complete",
    "notifications/initialized",
    "notifications/cancelled",
];

/// A JSON-RPC-shaped message with random parts.
fn rpc_shaped() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("2.0")), Just(json!("1.0")), arb_json()],
        prop::option::of(arb_json()),
        prop_oneof![
            select(METHODS).prop_map(Value::from),
            "[a-z/]{0,20}".prop_map(Value::from),
            arb_json()
        ],
        prop::option::of(arb_json()),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut m = serde_json::Map::new();
            m.insert("jsonrpc".into(), jsonrpc);
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            m.insert("method".into(), method);
            if let Some(p) = params {
                m.insert("params".into(), p);
            }
            Value::Object(m)
        })
}

fn key_create_body(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "key_create",
        "arguments": {"name": name, "role": "reader", "tenants": ["*"], "description": "clé ключ 鍵"}}})
    .to_string()
}

/// Whether rmcp takes this Content-Type as JSON (its own rule).
fn is_json_content_type(ct: &str) -> bool {
    ct.split_once(';')
        .map_or(ct, |(essence, _)| essence)
        .trim()
        .eq_ignore_ascii_case("application/json")
}

// ---------------------------------------------------------------------------------------------
// 1. Random bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn random_bodies_get_clear_answers_and_change_nothing() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        rpc_shaped().prop_map(|v| v.to_string().into_bytes()),
    ];
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let examples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"tools/call\"".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}".to_vec(),
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[]}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":42}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\",\"arguments\":[]}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\",\"method\":\"tools/list\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing".to_vec(),
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".as_bytes().to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}".to_vec(),
        nested(100),
        nested(200_000),
    ];
    f.check("random bodies", examples, bodies, |body| {
        let reply = f.post(body.clone(), f.headers())?;
        let answer = reply.sane()?;
        if matches!(answer, Answer::Accepted) {
            // Only a notification (a message without id) may be accepted without an answer.
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !v.is_object() || v.get("id").is_some() {
                fail!(
                    "accepted without an answer: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        f.alive()?;
        let now = f.snapshot();
        prop_assert_eq!(&now, &before, "state changed");
        Ok(())
    });
    // Odd but valid request ids: the call works and the answer carries the id back.
    for id in [
        json!("a\u{0}b"),
        json!("' OR 1=1 --"),
        json!("🔑 ключ"),
        json!(""),
        json!("x".repeat(10_000)),
        json!(-1),
        json!(i64::MAX),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}});
        let reply = f.post(body.to_string().into_bytes(), f.headers()).unwrap();
        let answer = reply
            .sane()
            .unwrap_or_else(|e| panic!("request id {}: {e}", clip(&id.to_string(), 80)));
        assert!(
            matches!(answer, Answer::ToolOk(ref me) if me["role"] == "admin")
                && reply.json().is_some_and(|v| v["id"] == id),
            "request id {}: {}",
            clip(&id.to_string(), 80),
            reply.describe()
        );
    }
    assert_eq!(f.snapshot(), before);
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 2. Truncated bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_key_create_bodies_create_nothing() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let body = key_create_body("truncated-name");
    let len = body.len();
    // Every end of the body, and cuts inside multi-byte characters.
    let mut examples = vec![0, 1, len / 2, len - 2, len - 1];
    examples.extend(
        body.char_indices()
            .filter(|(_, c)| c.len_utf8() > 1)
            .map(|(i, _)| i + 1),
    );
    f.check("truncated bodies", examples, 0..len, |cut| {
        let reply = f.post(body.as_bytes()[..cut].to_vec(), f.headers())?;
        reply.refused()?;
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "a truncated body changed state");
        Ok(())
    });
    // Control: the whole body is a valid call, so the cuts above were what it refused.
    let whole = f.post(body.into_bytes(), f.headers()).unwrap();
    match whole.sane().unwrap() {
        Answer::ToolOk(v) => assert_eq!(v["key"]["name"], "truncated-name"),
        _ => panic!("the whole body must work: {}", whole.describe()),
    }
    assert_eq!(f.snapshot().keys.len(), before.keys.len() + 1);
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong content types (and Accept headers)
// ---------------------------------------------------------------------------------------------

const WRONG_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/plain; charset=utf-8",
    "multipart/form-data; boundary=----x",
    "application/x-www-form-urlencoded",
    "application/jsonl",
    "application/json-patch+json",
    "application/ld+json",
    "application/vnd.api+json",
    "application/json5",
    "application/json/x",
    "application\\json",
    "application/ json",
    "text/json",
    "json",
    "",
    "application/",
    "/json",
    ";application/json",
    "application/*",
    "*/*",
    "text/event-stream",
    "application/octet-stream",
    "application/xml",
];

const ACCEPTS: &[Option<&str>] = &[
    Some("application/json, text/event-stream"),
    Some("application/json, text/event-stream"),
    Some("application/json, text/event-stream"),
    Some("application/json"),
    Some("text/event-stream"),
    Some("*/*"),
    Some(""),
    Some("text/html"),
    None,
];

#[test]
fn wrong_content_types_are_refused_with_4xx() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let content_types = prop_oneof![
        Just(None),
        select(WRONG_CONTENT_TYPES).prop_map(|s| Some(s.to_owned())),
        "[ -~]{0,60}"
            .prop_filter("not JSON", |s| !is_json_content_type(s))
            .prop_map(Some),
    ];
    let body = key_create_body("content-type-probe");
    let mut examples: Vec<(Option<String>, Option<&str>)> = WRONG_CONTENT_TYPES
        .iter()
        .map(|ct| (Some((*ct).to_owned()), ACCEPTS[0]))
        .collect();
    examples.push((None, ACCEPTS[0]));
    f.check(
        "content types",
        examples,
        (content_types, select(ACCEPTS)),
        |(ct, accept)| {
            let mut h = f.headers();
            h.remove("content-type");
            h.remove("accept");
            if let Some(ct) = &ct {
                h.insert("content-type", HeaderValue::from_str(ct).unwrap());
            }
            if let Some(a) = accept {
                h.insert("accept", HeaderValue::from_str(a).unwrap());
            }
            let reply = f.post(body.clone().into_bytes(), h)?;
            reply.refused()?;
            if ![400, 406, 415].contains(&reply.status) {
                fail!("expected 400, 406 or 415: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "a refused body changed state");
            Ok(())
        },
    );
    // Control: with JSON (any case, with parameters) the same body works.
    let mut h = f.headers();
    h.insert(
        "content-type",
        HeaderValue::from_static("Application/JSON; charset=utf-8"),
    );
    let whole = f.post(body.into_bytes(), h).unwrap();
    assert!(
        matches!(whole.sane().unwrap(), Answer::ToolOk(_)),
        "{}",
        whole.describe()
    );
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. Huge headers
// ---------------------------------------------------------------------------------------------

const BIG_HEADER_NAMES: &[&str] = &[
    "x-pad",
    "user-agent",
    "x-request-source",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "mcp-protocol-version",
    "mcp-session-id",
    "accept-language",
    "traceparent",
];

const FILLS: &[char] = &['a', '0', ' ', ',', ';', '=', '%', '\''];

#[derive(Debug, Clone)]
struct Padding {
    name: &'static str,
    count: usize,
    size: usize,
    fill: char,
}

fn padding() -> impl Strategy<Value = Padding> {
    let fill = select(FILLS);
    prop_oneof![
        // A few huge values.
        (
            select(BIG_HEADER_NAMES),
            1usize..=6,
            16 * 1024..=64 * 1024usize,
            fill.clone()
        ),
        // Many small ones.
        (select(BIG_HEADER_NAMES), 20usize..=250, 1usize..=64, fill),
    ]
    .prop_map(|(name, count, size, fill)| Padding {
        name,
        count,
        size,
        fill,
    })
}

#[test]
fn huge_headers_are_refused_or_served_never_5xx_never_hang() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let whoami = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}})
    .to_string();
    let tally = Cell::new((0usize, 0usize, 0usize));
    let pad = |name, count, size| Padding {
        name,
        count,
        size,
        fill: 'a',
    };
    let examples = vec![
        pad("x-pad", 1, 16 * 1024),
        pad("x-pad", 1, 64 * 1024),
        pad("user-agent", 1, 64 * 1024),
        pad("cookie", 1, 64 * 1024),
        pad("mcp-protocol-version", 1, 64 * 1024),
        pad("x-forwarded-for", 1, 64 * 1024),
        pad("x-pad", 8, 64 * 1024),
        pad("x-pad", 95, 1),
        pad("x-pad", 101, 1),
        pad("x-pad", 1000, 8),
    ];
    f.check("huge headers", examples, padding(), |p| {
        let mut h = f.headers();
        let value = p.fill.to_string().repeat(p.size);
        for i in 0..p.count {
            let name = if p.name == "x-pad" {
                HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap()
            } else {
                HeaderName::from_static(p.name)
            };
            h.append(name, HeaderValue::from_str(&value).unwrap());
        }
        let total = p.count * (p.size + p.name.len() + 8);
        let (mut served, mut refused, mut dropped) = tally.get();
        match f.send(whoami.clone().into_bytes(), h) {
            Ok(reply) => match reply.sane()? {
                Answer::ToolOk(me) if me["role"] == "admin" => served += 1,
                Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted => {
                    fail!("wrong answer: {}", reply.describe())
                }
                _ if (400..500).contains(&reply.status) => refused += 1,
                _ => fail!("neither served nor refused: {}", reply.describe()),
            },
            // A request far past the header limit may be cut off while it is still being
            // written; that is a refusal too, but only for such a request, and never a hang.
            Err(e) if !e.is_timeout() && total > 256 * 1024 => dropped += 1,
            Err(e) => fail!(
                "no answer for {total} header bytes (timeout: {}): {e:?}",
                e.is_timeout()
            ),
        }
        tally.set((served, refused, dropped));
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    let (served, refused, dropped) = tally.get();
    eprintln!("huge headers: {served} served, {refused} refused, {dropped} cut off");
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. Invalid UTF-8
// ---------------------------------------------------------------------------------------------

const UTF8_HEADER_NAMES: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "mcp-protocol-version",
    "mcp-session-id",
    "user-agent",
    "x-request-source",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "origin",
    "x-custom",
];

/// What comes before the invalid bytes in a header value.
const PREFIXES: &[&str] = &["", "application/json", "Bearer ", "2025-06-18", "x"];

#[derive(Debug, Clone)]
enum BadUtf8 {
    /// Bytes ≥ 0x80 spliced into a valid key_create body at a position.
    Body { at: usize, bytes: Vec<u8> },
    /// A header (replacing the well-behaved one) with such bytes in its value.
    Header {
        name: &'static str,
        prefix: &'static str,
        bytes: Vec<u8>,
    },
}

fn bad_utf8() -> impl Strategy<Value = BadUtf8> {
    // Lone continuation bytes, truncated sequences, overlongs, surrogates, > U+10FFFF, 0xFF.
    let bytes = prop_oneof![
        prop::collection::vec(0x80u8..=0xFF, 1..6),
        select(vec![
            vec![0xC0, 0x80],
            vec![0xED, 0xA0, 0x80],
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xE2, 0x82],
            vec![0xFF, 0xFE],
            vec![0xF0, 0x9F, 0x94],
        ]),
    ];
    prop_oneof![
        (0usize..400, bytes.clone()).prop_map(|(at, bytes)| BadUtf8::Body { at, bytes }),
        (select(UTF8_HEADER_NAMES), select(PREFIXES), bytes).prop_map(|(name, prefix, bytes)| {
            BadUtf8::Header {
                name,
                prefix,
                bytes,
            }
        }),
    ]
}

#[test]
fn invalid_utf8_in_bodies_and_headers_gets_clear_errors() {
    // Refused credentials must not lock the test's own address out.
    let f = Fixture::start(&["--lockout-threshold", "1000000"]);
    let before = f.snapshot();
    let body = key_create_body("utf8-probe");
    let whoami = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}})
    .to_string();
    let mut examples: Vec<BadUtf8> = UTF8_HEADER_NAMES
        .iter()
        .map(|name| BadUtf8::Header {
            name,
            prefix: "x",
            bytes: vec![0xFF],
        })
        .collect();
    examples.extend([
        BadUtf8::Body {
            at: 0,
            bytes: vec![0xFF],
        },
        BadUtf8::Body {
            at: body.len(),
            bytes: vec![0xC3],
        },
        // Inside the name string: {"jsonrpc"…"arguments":{"name":"
        BadUtf8::Body {
            at: body.find("utf8-probe").unwrap(),
            bytes: vec![0xED, 0xA0, 0x80],
        },
    ]);
    f.check("invalid UTF-8", examples, bad_utf8(), |case| {
        match &case {
            BadUtf8::Body { at, bytes } => {
                let mut b = body.clone().into_bytes();
                let at = (*at).min(b.len());
                b.splice(at..at, bytes.iter().copied());
                prop_assume!(std::str::from_utf8(&b).is_err());
                let reply = f.post(b, f.headers())?;
                reply.refused()?;
            }
            BadUtf8::Header {
                name,
                prefix,
                bytes,
            } => {
                let mut value = prefix.as_bytes().to_vec();
                value.extend_from_slice(bytes);
                value.extend_from_slice(b"z");
                let mut h = f.headers();
                h.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_bytes(&value).unwrap(),
                );
                let reply = f.post(whoami.clone().into_bytes(), h)?;
                match reply.sane()? {
                    Answer::ToolOk(me) if me["role"] == "admin" => {}
                    Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted => {
                        fail!("wrong answer: {}", reply.describe())
                    }
                    _ => {
                        reply.refused()?;
                    }
                }
                // Headers that carry meaning cannot be half-read into a success.
                let must_refuse = matches!(
                    *name,
                    "content-type" | "accept" | "authorization" | "mcp-protocol-version"
                );
                if must_refuse && reply.status < 400 {
                    fail!(
                        "{name} with invalid UTF-8 was accepted: {}",
                        reply.describe()
                    );
                }
                if *name == "authorization" && reply.status != 401 {
                    fail!("a non-text credential must get 401: {}", reply.describe());
                }
            }
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. Unknown methods and tools
// ---------------------------------------------------------------------------------------------

const NEAR_MISS_METHODS: &[&str] = &[
    "tools/Call",
    "TOOLS/LIST",
    "tools//call",
    "tools/call/",
    "/tools/call",
    "tools",
    "tool/call",
    "tools.call",
    "rpc.discover",
    "../tools/call",
    "tools/call\0",
    "tools/list?x=1",
    "initialize2",
    "keys/list",
    "audit/query",
    "admin/shutdown",
    "$/cancelRequest",
    "ping ",
    " ping",
];

const NEAR_MISS_TOOLS: &[&str] = &[
    "WHOAMI",
    "Whoami",
    "whoami ",
    " whoami",
    "whoami\0",
    "key-create",
    "keys_list",
    "key_create;",
    "audit_query' OR 1=1 --",
    "../whoami",
    "whoami/../key_create",
    "",
    "unknown_tool",
    "auth_failed",
    "bootstrap",
    "login",
    "tools/call",
    "null",
    "🔑",
    "\u{202e}etaerc_yek",
];

#[test]
fn unknown_methods_get_method_not_found() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let methods = prop_oneof![
        select(NEAR_MISS_METHODS).prop_map(str::to_owned),
        "[a-zA-Z_/.$-]{1,40}".prop_filter("unknown", |m| !METHODS.contains(&m.as_str())),
        "[ -~]{0,60}".prop_filter("unknown", |m| !METHODS.contains(&m.as_str())),
    ];
    let mut examples: Vec<(String, u32)> = NEAR_MISS_METHODS
        .iter()
        .map(|m| ((*m).to_owned(), 1))
        .collect();
    // Nothing to name, and a secret pasted where the method goes.
    examples.push((String::new(), 2));
    examples.push((f.key.clone(), 3));
    f.check(
        "unknown methods",
        examples,
        (methods, any::<u32>()),
        |(method, id)| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
            let reply = f.post(body.to_string().into_bytes(), f.headers())?;
            match reply.clear_error()? {
                Answer::RpcError { code: -32601, .. } => {}
                _ => fail!("expected method not found (-32601): {}", reply.describe()),
            }
            if reply.text().contains(&f.key) {
                fail!("the error echoes the API key: {}", reply.describe());
            }
            if let Some(v) = reply.json()
                && v["id"] != json!(id)
            {
                fail!("the error must answer request {id}: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    f.finish();
    f.stop();
}

#[test]
fn unknown_tools_get_tool_not_found_and_are_audited() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let unknown_before = f.events(&["unknown_tool"], &[]).len();
    let tools = prop_oneof![
        select(NEAR_MISS_TOOLS).prop_map(str::to_owned),
        "[a-z_]{1,30}".prop_filter("unknown", |t| ToolName::parse(t).is_none()),
        injection().prop_filter("unknown", |t| ToolName::parse(t).is_none()),
    ];
    let mut examples: Vec<(String, Value)> = NEAR_MISS_TOOLS
        .iter()
        .map(|t| ((*t).to_owned(), json!({})))
        .collect();
    examples.push((f.key.clone(), json!({})));
    examples.push(("x".repeat(100_000), json!({"name": "' OR 1=1 --"})));
    let calls = Cell::new(0usize);
    f.check(
        "unknown tools",
        examples,
        (tools, arb_json()),
        |(tool, args)| {
            let args = if args.is_object() { args } else { json!({}) };
            let reply = f.call(&tool, &args)?;
            calls.set(calls.get() + 1);
            match reply.clear_error()? {
                Answer::RpcError { message, .. } if message.contains("tool not found") => {}
                Answer::ToolError { .. } => {}
                _ => fail!("expected 'tool not found': {}", reply.describe()),
            }
            if reply.text().contains(&f.key) {
                fail!("the error echoes the API key: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    // Every call to a tool that does not exist is on the trail.
    let recorded = f.events(&["unknown_tool"], &["failed"]).len() - unknown_before;
    assert_eq!(recorded, calls.get(), "unknown-tool calls audited");
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 7. SQL metacharacters in every filter, and in names
// ---------------------------------------------------------------------------------------------

const LIST_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
];

const QUERY_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
    "since",
    "until",
    "time_zone",
    "limit",
    "cursor",
];

const SUMMARY_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
    "since",
    "until",
    "time_zone",
    "top",
    "group_by",
];

/// The injections every field gets, every time; the underscores are LIKE wildcards as long as
/// a key id (`key_` + 16) and a key preview (`kw_` + 8).
const CLASSICS: &[&str] = &[
    "' OR 1=1 --",
    "'; DROP TABLE audit_events; --",
    "\" OR \"\"=\"",
    "%",
    "_",
    "key________________",
    "kw_________",
    "\\",
    "\0",
    "🔑",
];

/// Checks that every event of a successful audit_query really matches the one filter given.
fn events_match(page: &Value, field: &str, value: &str) -> CaseResult {
    let Some(events) = page["events"].as_array() else {
        fail!("audit_query without events: {page}")
    };
    for e in events {
        let ok = match field {
            "actor" => e["actor"] == value || e["actor_preview"] == value,
            "role" => e["role"] == value,
            "action" => e["action"] == value,
            "status" => e["status"] == value,
            "source" => e["source"] == value,
            "target" => e["target"]
                .as_str()
                .and_then(|t| t.split_once(':'))
                .is_some_and(|(_, id)| id == value),
            _ => true,
        };
        if !ok {
            fail!("{field} = {value:?} matched an event it does not name: {e}");
        }
    }
    Ok(())
}

#[test]
fn sql_metacharacters_in_every_audit_filter_are_data() {
    let f = Fixture::start(&[]);
    // Some history to find (or, rather, not find).
    for i in 0..3 {
        f.ok(
            "key_create",
            &json!({"name": format!("seed-{i}"), "role": "reader", "tenants": ["acme"]}),
        )
        .unwrap();
    }
    let before = f.snapshot();
    let events_before = f.events(&[], &[]).len();
    let cases = prop_oneof![
        (Just(false), select(QUERY_FIELDS), injection()),
        (Just(true), select(SUMMARY_FIELDS), injection()),
    ];
    // Every field of both tools, with the classics.
    let mut examples = Vec::new();
    for (summary, fields) in [(false, QUERY_FIELDS), (true, SUMMARY_FIELDS)] {
        for field in fields {
            for value in CLASSICS {
                examples.push((summary, *field, (*value).to_owned()));
            }
            examples.push((summary, *field, "'".repeat(5000)));
        }
    }
    f.check(
        "audit filters",
        examples,
        cases,
        |(summary, field, value)| {
            let mut args = if summary {
                json!({"group_by": ["action"]})
            } else {
                json!({})
            };
            args[field] = if LIST_FIELDS.contains(&field) || field == "group_by" {
                json!([value])
            } else {
                json!(value)
            };
            let tool = if summary {
                "audit_summary"
            } else {
                "audit_query"
            };
            let reply = f.call(tool, &args)?;
            match reply.sane()? {
                Answer::ToolOk(v) if summary => {
                    if !v["groups"].is_array() {
                        fail!("audit_summary without groups: {v}");
                    }
                }
                Answer::ToolOk(v) => events_match(&v, field, &value)?,
                Answer::ToolError { kind, .. } if kind == "invalid_argument" => {}
                Answer::RpcError { code: -32602, .. } => {}
                _ => fail!(
                    "expected a result or an invalid-argument error: {}",
                    reply.describe()
                ),
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    // The table is still there and still growing.
    assert!(f.events(&[], &[]).len() > events_before);
    f.finish();
    f.stop();
}

/// Where a pasted key could be echoed back: every audit filter, and the enum-valued and
/// free-text arguments of the key and role tools.
const ECHO_SITES: &[(&str, &str, &str)] = &[
    ("audit_query", "actor", "list"),
    ("audit_query", "role", "list"),
    ("audit_query", "tenant", "list"),
    ("audit_query", "action", "list"),
    ("audit_query", "target", "list"),
    ("audit_query", "status", "list"),
    ("audit_query", "source", "list"),
    ("audit_query", "client_ip", "list"),
    ("audit_query", "since", "text"),
    ("audit_query", "until", "text"),
    ("audit_query", "time_zone", "text"),
    ("audit_query", "limit", "text"),
    ("audit_query", "cursor", "text"),
    ("audit_summary", "group_by", "list"),
    ("audit_summary", "top", "text"),
    ("audit_get", "id", "text"),
    ("key_create", "role", "text"),
    ("key_create", "tenants", "list"),
    ("key_create", "expires", "text"),
    ("key_create", "name", "text"),
    ("key_list", "role", "list"),
    ("key_get", "key_id", "text"),
    ("key_rotate", "grace_period", "text"),
    ("role_create", "permissions", "list"),
    ("role_create", "name", "text"),
    ("role_get", "name", "text"),
];

const ECHO_PREFIXES: &[&str] = &["", "x ", "\"", "[", "kw_"];

#[test]
fn argument_errors_never_echo_a_presented_key() {
    let f = Fixture::start(&[]);
    let me = f.ok("whoami", &json!({})).unwrap();
    let own_id = me["key_id"].as_str().unwrap().to_owned();
    let other = f
        .ok(
            "key_create",
            &json!({"name": "rotate-me", "role": "reader", "tenants": ["*"]}),
        )
        .unwrap()["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = f.snapshot();
    let base = |tool: &str| match tool {
        "audit_summary" => json!({"group_by": ["action"]}),
        "audit_get" => json!({"id": 1}),
        "key_create" => json!({"name": "echo", "role": "reader", "tenants": ["*"]}),
        "key_get" => json!({"key_id": own_id}),
        "key_rotate" => json!({"key_id": other}),
        "role_create" => json!({"name": "echo", "permissions": ["key:read"]}),
        "role_get" => json!({"name": "reader"}),
        _ => json!({}),
    };
    let case = |((tool, field, shape), prefix): ((&str, &str, &str), &str)| -> CaseResult {
        // The key as the whole value, or with something in front of it.
        let value = format!("{prefix}{}", f.key);
        let mut args = base(tool);
        args[field] = if shape == "list" {
            json!([value])
        } else {
            json!(value)
        };
        let reply = f.call(tool, &args)?;
        // A key is a well-formed actor or target id: that filter just finds nothing.
        reply.sane()?;
        if reply.text().contains(&f.key) {
            fail!(
                "{tool}.{field}: {}",
                reply.describe().replace(&f.key, "<THE KEY>")
            );
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    };
    // Every site, all reported at once.
    let echoes: Vec<String> = ECHO_SITES
        .iter()
        .filter_map(|site| case((*site, "")).err().map(|e| e.to_string()))
        .collect();
    assert!(
        echoes.is_empty(),
        "{} of {} argument errors echo the API key:\n{}",
        echoes.len(),
        ECHO_SITES.len(),
        echoes.join("\n")
    );
    f.check(
        "key echo",
        Vec::new(),
        (select(ECHO_SITES), select(ECHO_PREFIXES)),
        case,
    );
    f.finish();
    f.stop();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NameField {
    KeyName,
    KeyDescription,
    KeyRole,
    KeyTenant,
    KeyExpires,
    KeyGet,
    KeyListRole,
    RoleName,
    RoleDescription,
    RoleGet,
}

const NAME_FIELDS: &[NameField] = &[
    NameField::KeyName,
    NameField::KeyDescription,
    NameField::KeyRole,
    NameField::KeyTenant,
    NameField::KeyExpires,
    NameField::KeyGet,
    NameField::KeyListRole,
    NameField::RoleName,
    NameField::RoleDescription,
    NameField::RoleGet,
];

/// A description as stored: trimmed, hidden characters written out as `<U+XXXX>`.
fn visible(value: &str) -> String {
    keyward::domain::text::neutralize(value.trim(), true).into_owned()
}

#[test]
fn sql_metacharacters_in_names_are_stored_verbatim_or_refused() {
    let f = Fixture::start(&[]);
    let n = Cell::new(0u32);
    let fields = select(NAME_FIELDS);
    let mut examples = Vec::new();
    for field in NAME_FIELDS {
        for value in CLASSICS {
            examples.push((*field, (*value).to_owned()));
        }
        examples.push((*field, "x".repeat(5000)));
    }
    f.check(
        "names",
        examples,
        (fields, injection()),
        |(field, value)| {
            n.set(n.get() + 1);
            let unique = format!("inj-{}", n.get());
            let before = f.snapshot();
            let key = |name: &str, extra: Value| {
                let mut a = json!({"name": name, "role": "reader", "tenants": ["*"]});
                for (k, v) in extra.as_object().unwrap() {
                    a[k] = v.clone();
                }
                a
            };
            let (tool, args) = match field {
                NameField::KeyName => ("key_create", key(&value, json!({}))),
                NameField::KeyDescription => {
                    ("key_create", key(&unique, json!({"description": value})))
                }
                NameField::KeyRole => ("key_create", key(&unique, json!({"role": value}))),
                NameField::KeyTenant => ("key_create", key(&unique, json!({"tenants": [value]}))),
                NameField::KeyExpires => ("key_create", key(&unique, json!({"expires": value}))),
                NameField::KeyGet => ("key_get", json!({"key_id": value})),
                NameField::KeyListRole => ("key_list", json!({"role": [value]})),
                NameField::RoleName => (
                    "role_create",
                    json!({"name": value, "permissions": ["key:read"]}),
                ),
                NameField::RoleDescription => (
                    "role_create",
                    json!({"name": unique, "permissions": ["key:read"], "description": value}),
                ),
                NameField::RoleGet => ("role_get", json!({"name": value})),
            };
            let reply = f.call(tool, &args)?;
            let answer = reply.sane()?;
            let after = f.snapshot();
            match answer {
                Answer::ToolOk(v) => match field {
                    NameField::KeyName
                    | NameField::KeyDescription
                    | NameField::KeyTenant
                    | NameField::KeyExpires
                    | NameField::KeyRole => {
                        // Stored exactly as given (names and descriptions are trimmed).
                        let k = &v["key"];
                        let want = |got: &Value, sent: &str| got == sent.trim();
                        let same = match field {
                            NameField::KeyName => want(&k["name"], &value),
                            // Descriptions keep hidden characters as visible escapes.
                            NameField::KeyDescription => k["description"] == visible(&value),
                            NameField::KeyTenant => k["tenants"] == json!([value]),
                            NameField::KeyRole => k["role"] == value,
                            _ => true,
                        };
                        if !same {
                            fail!("{field:?} {value:?} stored as {k}");
                        }
                        let id = k["id"].as_str().unwrap_or_default().to_owned();
                        let got = f.ok("key_get", &json!({"key_id": id}))?;
                        if got["key"]["name"] != k["name"]
                            || got["key"]["description"] != k["description"]
                        {
                            fail!("key_get disagrees with key_create: {got} vs {k}");
                        }
                        prop_assert_eq!(after.keys.len(), before.keys.len() + 1);
                        prop_assert_eq!(&after.roles, &before.roles);
                    }
                    NameField::RoleName | NameField::RoleDescription => {
                        let r = &v["role"];
                        let same = match field {
                            NameField::RoleName => r["name"] == value,
                            _ => r["description"] == visible(&value),
                        };
                        if !same {
                            fail!("{field:?} {value:?} stored as {r}");
                        }
                        prop_assert_eq!(after.roles.len(), before.roles.len() + 1);
                        prop_assert_eq!(&after.keys, &before.keys);
                    }
                    NameField::KeyGet => fail!("key_get found {value:?}: {v}"),
                    NameField::RoleGet => {
                        if v["role"]["name"] != value {
                            fail!("role_get {value:?} returned {v}");
                        }
                    }
                    NameField::KeyListRole => {
                        for k in v["keys"].as_array().into_iter().flatten() {
                            if k["role"] != value {
                                fail!("key_list role {value:?} listed {k}");
                            }
                        }
                    }
                },
                Answer::ToolError { kind, .. }
                    if [
                        "invalid_argument",
                        "not_found",
                        "conflict",
                        "permission_denied",
                    ]
                    .contains(&kind.as_str()) =>
                {
                    prop_assert_eq!(&after, &before, "a refused call changed state");
                }
                Answer::RpcError { code: -32602, .. } => {
                    prop_assert_eq!(&after, &before, "a refused call changed state");
                }
                _ => fail!("expected a result or a clear error: {}", reply.describe()),
            }
            f.alive()?;
            Ok(())
        },
    );
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 8. Absurd time ranges and limits
// ---------------------------------------------------------------------------------------------

const ABSURD_TIMES: &[&str] = &[
    "99999999d",
    "-5h",
    "-0s",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999Z",
    "10000-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "0001-01-01",
    "9999-12-31",
    "0000-01-01",
    "10000-01-01",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",
    "1677-09-21T00:12:43.145224192Z",
    "2038-01-19T03:14:08Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-12:00",
    "3660d",
    "3661d",
    "87840h",
    "18446744073709551615s",
    "9223372036854775807s",
    "9223372036854775808ns",
    "1e9d",
    "0s",
    "0d",
    "now",
    "today",
    "yesterday",
    "tomorrow",
    "NaN",
    "inf",
    "",
    "  ",
    "2026-02-30",
    "2026-13-01",
    "2026-00-10T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
];

const TIME_ZONES: &[&str] = &[
    "UTC",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Europe/Paris",
    "Nowhere/Nothing",
    "",
    "+14:00",
    "UTC'; --",
];

const UNITS: &[&str] = &["s", "m", "h", "d", "w", "y", "ms", "us", "ns", ""];

fn absurd_time() -> impl Strategy<Value = String> {
    let ymd = || (0i64..=12000, 1u32..=12, 1u32..=28);
    prop_oneof![
        4 => select(ABSURD_TIMES).prop_map(str::to_owned),
        1 => ymd().prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}T00:00:00Z")),
        1 => ymd().prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        1 => ("-?[0-9]{1,25}", select(UNITS))
            .prop_map(|(n, u)| format!("{n}{u}")),
    ]
}

static ABSURD_NUMBERS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
    vec![
        json!(-1),
        json!(0),
        json!(100),
        json!(101),
        json!(1_000_000_000_000i64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(1.0),
        json!(-0.0),
        json!(1e308),
        json!("20"),
        json!(""),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
    ]
});

fn absurd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (1i64..=3).prop_map(Value::from),
        3 => select(ABSURD_NUMBERS.clone()),
        1 => any::<i64>().prop_map(Value::from),
    ]
}

#[derive(Debug, Clone)]
struct Window {
    summary: bool,
    since: Option<String>,
    until: Option<String>,
    time_zone: Option<&'static str>,
    number: Option<Value>,
    group_by: &'static [&'static str],
}

const GROUPINGS: &[&[&str]] = &[
    &["action"],
    &["day"],
    &["hour"],
    &["hour", "actor"],
    &["status", "day"],
];

fn window() -> impl Strategy<Value = Window> {
    (
        any::<bool>(),
        prop::option::of(absurd_time()),
        prop::option::of(absurd_time()),
        prop::option::weighted(0.4, select(TIME_ZONES)),
        prop::option::of(absurd_number()),
        select(GROUPINGS),
    )
        .prop_map(
            |(summary, since, until, time_zone, number, group_by)| Window {
                summary,
                since,
                until,
                time_zone,
                number,
                group_by,
            },
        )
}

fn rfc3339(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
}

#[test]
fn absurd_time_ranges_and_limits_get_clear_errors_or_correct_pages() {
    let f = Fixture::start(&[]);
    // Enough events for a page of 1-3 to be truncated.
    for _ in 0..6 {
        f.alive().unwrap();
    }
    let before = f.snapshot();
    // Every absurd time at each end of the window (with pages of one, so a cursor comes
    // back), and every absurd number as limit and as top.
    let plain = |summary: bool| Window {
        summary,
        since: None,
        until: None,
        time_zone: None,
        number: Some(json!(1)),
        group_by: GROUPINGS[0],
    };
    let mut examples = Vec::new();
    for t in ABSURD_TIMES {
        examples.push(Window {
            since: Some((*t).to_owned()),
            ..plain(false)
        });
        examples.push(Window {
            until: Some((*t).to_owned()),
            ..plain(false)
        });
        examples.push(Window {
            since: Some((*t).to_owned()),
            time_zone: Some("Pacific/Kiritimati"),
            group_by: GROUPINGS[1],
            ..plain(true)
        });
    }
    for n in ABSURD_NUMBERS.iter() {
        for summary in [false, true] {
            examples.push(Window {
                number: Some(n.clone()),
                ..plain(summary)
            });
        }
    }
    f.check("absurd windows", examples, window(), |w| {
        let mut args = if w.summary {
            json!({"group_by": w.group_by})
        } else {
            json!({})
        };
        if let Some(s) = &w.since {
            args["since"] = json!(s);
        }
        if let Some(u) = &w.until {
            args["until"] = json!(u);
        }
        if let Some(tz) = w.time_zone {
            args["time_zone"] = json!(tz);
        }
        let number_name = if w.summary { "top" } else { "limit" };
        if let Some(n) = &w.number {
            args[number_name] = n.clone();
        }
        let tool = if w.summary {
            "audit_summary"
        } else {
            "audit_query"
        };
        let reply = f.call(tool, &args)?;
        let bound = match &w.number {
            None | Some(Value::Null) if w.summary => Some(10),
            None | Some(Value::Null) => Some(20),
            Some(n) => n.as_i64().filter(|n| (1..=100).contains(n)),
        };
        match reply.sane()? {
            Answer::ToolOk(v) => {
                let Some(bound) = bound else {
                    fail!(
                        "{number_name} {:?} was accepted: {}",
                        w.number,
                        reply.describe()
                    );
                };
                let window = &v["window"];
                for edge in ["since", "until"] {
                    if !window[edge].is_null() && rfc3339(&window[edge]).is_none() {
                        fail!("window.{edge} is not RFC 3339: {window}");
                    }
                }
                if let (Some(s), Some(u)) = (rfc3339(&window["since"]), rfc3339(&window["until"]))
                    && s > u
                {
                    fail!("an inverted window was accepted: {window}");
                }
                let rows = if w.summary {
                    &v["groups"]
                } else {
                    &v["events"]
                };
                let Some(rows) = rows.as_array() else {
                    fail!("no rows: {v}")
                };
                if rows.len() as i64 > bound {
                    fail!("{} rows for {number_name} {bound}", rows.len());
                }
                // Any cursor the server hands out, it takes back.
                if let Some(cursor) = v["next_cursor"].as_str() {
                    let next = f.call("audit_query", &json!({"cursor": cursor}))?;
                    match next.sane()? {
                        Answer::ToolOk(page) if page["window"] == *window => {}
                        _ => fail!("the next page of {args} failed: {}", next.describe()),
                    }
                }
            }
            Answer::ToolError { kind, .. } if kind == "invalid_argument" => {}
            Answer::RpcError { code: -32602, .. } => {}
            _ => fail!(
                "expected a page or an invalid-argument error: {}",
                reply.describe()
            ),
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// Neighbours
// ---------------------------------------------------------------------------------------------

/// A malformed request is its sender's problem alone: valid calls in flight at the same time
/// (whose audit records may share its batch) all succeed.
#[test]
fn a_malformed_request_does_not_fail_the_calls_beside_it() {
    let f = Fixture::start(&[]);
    let mut failed = Vec::new();
    for round in 0..10 {
        let requests: Vec<_> = (0..8)
            .map(|i| {
                // The first carries a NUL in its request id, which the trail records.
                let id = if i == 0 {
                    json!(format!("evil\u{0}{round}"))
                } else {
                    json!(i)
                };
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "whoami", "arguments": {}}});
                f.http
                    .post(f.server.mcp())
                    .headers(f.headers())
                    .body(body.to_string())
            })
            .collect();
        let texts =
            f.rt.block_on(futures::future::join_all(requests.into_iter().map(
                |r| async move { r.send().await.unwrap().text().await.unwrap() },
            )));
        failed.extend(
            texts
                .into_iter()
                .skip(1)
                .filter(|t| !t.contains("\"role\":\"admin\"")),
        );
    }
    assert!(
        failed.is_empty(),
        "{} of 70 valid calls failed beside a malformed one, e.g. {}",
        failed.len(),
        failed[0]
    );
    f.finish();
    f.stop();
}
