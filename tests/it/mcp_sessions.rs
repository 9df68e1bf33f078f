//! An MCP session belongs to the principal that opened it: another principal naming its id
//! gets the same 404 as for an unknown session, and cannot close or listen to it; the owner
//! keeps it across a key rotation.

use serde_json::json;

use crate::server::{TestServer, http, initialize_body};
use crate::support::secret;

fn post(
    s: &TestServer,
    key: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    let mut req = http()
        .post(s.mcp())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", format!("Bearer {key}"));
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    req.body(body.to_string())
}

/// DELETE of `session` by `key`; the status.
async fn close(s: &TestServer, key: &str, session: &str) -> u16 {
    http()
        .delete(s.mcp())
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-session-id", session)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn whoami() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
}

#[tokio::test]
async fn a_session_answers_only_the_principal_that_opened_it() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (alice, alice_id) = admin.mint("alice", "reader", &["*"]).await;
    let (mallory, _) = admin.mint("mallory", "reader", &["*"]).await;

    let res = post(&s, &alice, None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = res.text().await;
    post(
        &s,
        &alice,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        post(&s, &alice, Some(&session), &whoami())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Another key naming it: as if it did not exist, for a call, a stream and a close.
    let res = post(&s, &mallory, Some(&session), &whoami())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = http()
        .get(s.mcp())
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {mallory}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(close(&s, &mallory, &session).await, 404);

    // The owner's key is rotated: the session stays its own.
    let rotated = admin.ok("key_rotate", json!({"key_id": alice_id})).await;
    let alice = secret(&rotated);
    assert_eq!(
        post(&s, &alice, Some(&session), &whoami())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(close(&s, &alice, &session).await, 204);
    admin.close().await;
    s.stop().await;
}

/// Opens a session for `key`: `initialize`, then `notifications/initialized`.
async fn open(s: &TestServer, key: &str) -> String {
    let res = post(s, key, None, &initialize_body()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = res.text().await;
    post(
        s,
        key,
        Some(&id),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .send()
    .await
    .unwrap();
    id
}

async fn status(s: &TestServer, key: &str, session: &str) -> u16 {
    post(s, key, Some(session), &whoami())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The JSON-RPC message carrying `id` in an SSE or JSON body.
fn answer(body: &str, id: i64) -> serde_json::Value {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .chain(std::iter::once(body))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer for id {id} in {body:?}"))
}

#[tokio::test]
async fn a_principal_at_its_cap_loses_its_least_recently_used_session() {
    let s = TestServer::http(&["--max-sessions-per-principal", "2"]).await;
    let admin = s.admin().await;
    let (agent, _) = admin.mint("agent", "reader", &["*"]).await;
    let first = open(&s, &agent).await;
    let second = open(&s, &agent).await;
    assert_eq!(
        status(&s, &agent, &first).await,
        200,
        "first is now the more recent"
    );
    let third = open(&s, &agent).await;
    assert_eq!(
        status(&s, &agent, &second).await,
        404,
        "the least recently used went"
    );
    assert_eq!(status(&s, &agent, &first).await, 200);
    assert_eq!(status(&s, &agent, &third).await, 200);
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn past_the_global_cap_new_sessions_get_503_and_one_audit_record_per_burst() {
    let s = TestServer::http(&["--max-sessions", "2"]).await;
    let admin_key = s.admin_key().await;
    let (a, _) = crate::support::Client::mint_with(&s, &admin_key, "a").await;
    let (b, _) = crate::support::Client::mint_with(&s, &admin_key, "b").await;
    let sa = open(&s, &a).await;
    let sb = open(&s, &b).await;
    for i in 0..4 {
        let res = post(&s, &b, None, &json!({"jsonrpc": "2.0", "id": 40 + i, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "30");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["id"], 40 + i);
        assert_eq!(body["error"]["code"], -32000);
    }
    // Sessions in use keep working, and a closed one makes room.
    assert_eq!(status(&s, &a, &sa).await, 200);
    assert_eq!(close(&s, &b, &sb).await, 204);
    open(&s, &b).await;
    // Four refusals, one record (stateless calls open no session, so this one is admitted).
    let admin = s.client_2026(&admin_key).await;
    let events = admin.audit(json!({"action": ["session_limit"]})).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "denied");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("keyward_mcp_sessions_refused_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("keyward_mcp_sessions 2"), "{metrics}");
    admin.close().await;
    s.stop().await;
}

/// Holds the database's write lock (key writes wait) until dropped.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn hold_writes(s: &TestServer) -> WriteLock {
    use sqlx::Connection;
    let url = s.env.url();
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .unwrap();
        WriteLock::Sqlite(c)
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query("LOCK TABLE api_keys IN EXCLUSIVE MODE")
            .execute(&mut c)
            .await
            .unwrap();
        WriteLock::Postgres(c)
    }
}

impl WriteLock {
    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
            WriteLock::Postgres(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
        }
    }
}

fn key_create(id: i64, name: &str) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "key_create",
        "arguments": {"name": name, "role": "reader", "tenants": ["*"]}}})
}

#[tokio::test]
async fn one_answer_per_request_id_and_one_initialize_per_session() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let sid = open(&s, &admin).await;
    // A second initialize in the session: refused, the identity recorded stays.
    let text = post(&s, &admin, Some(&sid), &initialize_body())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer(&text, 1)["error"]["code"], -32600, "{text}");

    // Two slow calls with the same id: whichever arrives second is refused; the first
    // gets its answer once it can run.
    let lock = hold_writes(&s).await;
    let send = |name: &'static str| {
        let req = post(&s, &admin, Some(&sid), &key_create(77, name));
        tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
    };
    let (mut one, mut two) = (send("same-id-one"), send("same-id-two"));
    let (refused, other) = tokio::select! {
        t = &mut one => (t.unwrap(), two),
        t = &mut two => (t.unwrap(), one),
    };
    let refused = answer(&refused, 77);
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    lock.release().await;
    let other = answer(&other.await.unwrap(), 77);
    assert!(
        other["result"]["structuredContent"]["api_key"].is_string(),
        "{other}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_streamed_answer_ends_at_the_request_timeout() {
    let s = TestServer::http(&["--request-timeout", "1s"]).await;
    let admin = s.admin_key().await;
    let sid = open(&s, &admin).await;
    let lock = hold_writes(&s).await;
    let text = post(&s, &admin, Some(&sid), &key_create(5, "too-slow"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let a = answer(&text, 5);
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("check the audit trail")
    );
    // The call still runs: its id stays taken until it has answered, so a new request cannot
    // receive the old one's answer.
    let text = post(&s, &admin, Some(&sid), &whoami_with_id(5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer(&text, 5)["error"]["code"], -32600, "{text}");
    lock.release().await;
    s.stop().await;
}

fn whoami_with_id(id: i64) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
}

#[tokio::test]
async fn an_idle_session_closes_after_the_configured_timeout() {
    let s = TestServer::http(&["--session-idle-timeout", "1s"]).await;
    let admin = s.admin_key().await;
    let sid = open(&s, &admin).await;
    assert_eq!(status(&s, &admin, &sid).await, 200);
    // rmcp's own timer closes it; any use would restart it, so wait past it untouched.
    let mut gone = false;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        if status(&s, &admin, &sid).await == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the idle session was not closed");
    s.stop().await;
}
