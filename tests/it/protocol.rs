//! Both protocol eras over stdio, cache scope of the per-caller tool list, and hostile input.

use std::process::Stdio;

use keyward::domain::role::BuiltinRole;
use rmcp::model::CacheScope;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::server::TestServer;
use crate::support::{BIN, role_tools, secret};

#[tokio::test]
async fn legacy_initialize_clients_work() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let who = admin.ok("whoami", json!({})).await;
    assert_eq!(who["role"], "admin");
    admin.close().await;
}

#[tokio::test]
async fn sessionless_2026_clients_discover_and_get_a_private_tool_list() {
    let server = TestServer::stdio().await;
    let boot = server.env.bootstrap();
    let admin = server.client(&secret(&boot)).await;
    let (reader_key, _) = admin.mint("r", "reader", &["*"]).await;
    let reader = server.client_2026(&reader_key).await;
    let list = reader.list().await;
    assert_eq!(
        list.cache_scope,
        Some(CacheScope::Private),
        "the list varies by caller"
    );
    assert_eq!(list.ttl_ms, Some(0));
    assert_eq!(list.tools.len(), role_tools(BuiltinRole::Reader).len());
    let who = reader.ok("whoami", json!({})).await;
    assert_eq!(who["role"], "reader");
    let msg = reader
        .err("key_revoke", json!({"key_id": boot["id"]}))
        .await;
    assert!(msg.contains("requires key:revoke"), "{msg}");
    // The 2026 client's identity reaches the trail from per-request metadata.
    let e = admin
        .audit(json!({"action": ["whoami"], "role": ["reader"]}))
        .await;
    let full = admin.ok("audit_get", json!({"id": e[0]["id"]})).await;
    assert_eq!(full["event"]["claimed"]["client_name"], "keyward-it");
    reader.close().await;
    admin.close().await;
}

#[tokio::test]
async fn invalid_arguments_get_clear_errors_and_change_nothing() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let cases = [
        (
            "key_create",
            json!({"name": "x", "role": "reader"}),
            "missing field `tenants`",
        ),
        (
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"], "rol": 1}),
            "unknown field `rol`",
        ),
        (
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": "acme"}),
            "invalid type",
        ),
        (
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["Acme Corp"]}),
            "invalid tenant 'Acme Corp'",
        ),
        (
            "key_create",
            json!({"name": "x", "role": "nope", "tenants": ["*"]}),
            "role 'nope' does not exist",
        ),
        (
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"], "expires": "soonish"}),
            "invalid expiry",
        ),
        (
            "key_create",
            json!({"name": "", "role": "reader", "tenants": ["*"]}),
            "invalid key name: use 1-64 characters",
        ),
        (
            "key_create",
            json!({"name": "a\u{0007}b", "role": "reader", "tenants": ["*"]}),
            "invalid key name",
        ),
        (
            "key_create",
            json!({"name": "k\u{0456}1", "role": "reader", "tenants": ["*"]}),
            "invalid key name",
        ),
        (
            "key_create",
            json!({"name": "k1\u{202e}", "role": "reader", "tenants": ["*"]}),
            "invalid key name",
        ),
        (
            "key_create",
            json!({"name": "kw_\u{200b}abc", "role": "reader", "tenants": ["*"]}),
            "invalid key name",
        ),
        (
            "key_get",
            json!({"key_id": "key_x' OR '1'='1"}),
            "invalid key id",
        ),
        (
            "role_create",
            json!({"name": "r", "permissions": ["key:delete"]}),
            "unknown variant `key:delete`",
        ),
        (
            "role_create",
            json!({"name": "x'; DROP TABLE roles; --", "permissions": ["key:read"]}),
            "invalid role name",
        ),
        (
            "audit_query",
            json!({"actor": ["' OR 1=1 --"]}),
            "invalid actor",
        ),
        (
            "audit_query",
            json!({"tenant": ["a\") OR (1=1"]}),
            "invalid tenant",
        ),
        (
            "audit_query",
            json!({"action": ["drop table"]}),
            "unknown variant",
        ),
        (
            "audit_query",
            json!({"client_ip": ["1.2.3.4; --"]}),
            "invalid client_ip",
        ),
        (
            "audit_query",
            json!({"since": "' UNION SELECT *"}),
            "invalid time",
        ),
        (
            "audit_query",
            json!({"since": "99999999999d"}),
            "invalid time",
        ),
        (
            "audit_query",
            json!({"limit": -1}),
            "limit must be between 1 and 100",
        ),
        (
            "audit_query",
            json!({"limit": 9999999999999_i64}),
            "limit must be between 1 and 100",
        ),
        (
            "audit_summary",
            json!({"group_by": ["actor"], "top": 0}),
            "top must be between 1 and 100",
        ),
        (
            "audit_summary",
            json!({"group_by": ["actor", "actor"]}),
            "must differ",
        ),
        // A forged cursor with an instant chrono cannot show in a negative-offset zone.
        (
            "audit_query",
            json!({"cursor": forged_cursor()}),
            "invalid cursor",
        ),
    ];
    let refusals = cases.len();
    for (tool, args, expected) in cases {
        let r = admin.call(tool, args.clone()).await;
        let msg = crate::support::text(&r);
        assert_eq!(r.is_error, Some(true), "{tool} {args}");
        assert!(
            msg.contains(expected),
            "{tool} {args}: expected {expected:?} in {msg:?}"
        );
        // Every failure carries its kind for clients that branch on it.
        let kind = r
            .meta
            .as_ref()
            .and_then(|m| m.0.get("keyward/error"))
            .and_then(|v| v.as_str());
        assert!(
            matches!(kind, Some("invalid_argument" | "not_found")),
            "{tool} {args}: {kind:?}"
        );
    }
    let keys = admin.ok("key_list", json!({})).await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    let roles = admin.ok("role_list", json!({})).await;
    assert_eq!(
        roles["roles"].as_array().unwrap().len(),
        4,
        "roles table intact"
    );
    let failed = admin
        .audit(json!({"status": ["failed"], "limit": 100}))
        .await;
    assert_eq!(failed.len(), refusals, "each refusal is audited");
    admin.close().await;
}

#[tokio::test]
async fn unknown_tools_are_refused_and_recorded() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let err = admin
        .service_call_raw("key_delete_everything")
        .await
        .expect_err("unknown tools are a protocol error");
    assert!(err.contains("tool not found"), "{err}");
    let events = admin.audit_full(json!({"action": ["unknown_tool"]})).await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("key_delete_everything")
    );
    admin.close().await;
}

/// Sends raw lines to a stdio server and reads what comes back.
async fn raw_session(
    server: &TestServer,
    key: &str,
    lines: &[String],
    expect_responses: usize,
) -> Vec<Value> {
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--stdio"])
        .env("KEYWARD_DATABASE_URL", server.env.url())
        .env("KEYWARD_AUDIT_SIGNING_KEY", server.env.audit_key())
        .env("KEYWARD_API_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        stdin.write_all(l.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }
    stdin.flush().await.unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut responses = Vec::new();
    let read = async {
        while responses.len() < expect_responses {
            match out.next_line().await.unwrap() {
                Some(line) => responses.push(
                    serde_json::from_str::<Value>(&line).expect("stdout carries only JSON-RPC"),
                ),
                None => break,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("server answered");
    drop(stdin);
    let _ = child.wait().await;
    responses
}

#[tokio::test]
async fn malformed_json_rpc_does_not_break_the_session() {
    let server = TestServer::stdio().await;
    let key = server.admin_key().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let lines = vec![
        init.to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        "{not json".to_owned(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "no/such/method"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 42}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}).to_string(),
    ];
    let responses = raw_session(&server, &key, &lines, 5).await;
    let by_id = |id: i64| {
        responses
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no response {id}: {responses:?}"))
    };
    // The line that is not JSON is answered too (id null), not dropped.
    let parse_error = responses.iter().find(|r| r["id"].is_null()).unwrap();
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(by_id(2)["error"]["code"], -32601);
    assert_eq!(
        by_id(3)["error"]["code"],
        -32602,
        "a tools/call that does not parse"
    );
    assert_eq!(by_id(4)["result"]["structuredContent"]["role"], "admin");
    // ...and it is on the record, under who sent it.
    let admin = server.client(&key).await;
    let events = admin.audit_full(json!({"action": ["invalid_call"]})).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["args"], json!({"name": 42}));
    admin.close().await;
}

trait RawCall {
    async fn service_call_raw(&self, name: &str) -> Result<Value, String>;
}

impl RawCall for crate::support::Client {
    async fn service_call_raw(&self, name: &str) -> Result<Value, String> {
        self.try_call(name, json!({}))
            .await
            .map(|r| json!(r.structured_content))
            .map_err(|e| e.to_string())
    }
}

fn forged_cursor() -> String {
    use base64::Engine;
    let c = json!({"f": {"actors": [], "roles": [], "tenants": [], "actions": [], "targets": [], "statuses": [],
        "sources": [], "client_ips": [], "since": i64::MIN, "until": null, "tz": "Etc/GMT+5"}, "before": 1, "limit": 20});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
}
