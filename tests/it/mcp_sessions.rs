//! An MCP session belongs to the principal that opened it: another principal naming its id
//! gets the same 404 as for an unknown session, and cannot close or listen to it; the owner
//! keeps it across a key rotation.

use serde_json::json;

use crate::http_support::{Server, http, initialize_body};
use crate::support::secret;

fn post(
    s: &Server,
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

fn whoami() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
}

#[tokio::test]
async fn a_session_answers_only_the_principal_that_opened_it() {
    let s = Server::start(&[]).await;
    let admin = s.client(&s.admin_key().await).await;
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
    let res = http()
        .delete(s.mcp())
        .header("authorization", format!("Bearer {mallory}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

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
    let res = http()
        .delete(s.mcp())
        .header("authorization", format!("Bearer {alice}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    admin.close().await;
    s.stop().await;
}
