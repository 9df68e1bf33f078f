//! MCP over streamable HTTP: both protocol eras, stateless mode, sessions across restarts,
//! and graceful shutdown that loses no audit record.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::domain::role::BuiltinRole;
use serde_json::json;

use crate::server::{TestServer, initialize_body, post_mcp};
use crate::support::role_tools;

#[tokio::test]
async fn both_protocol_eras_work_over_http() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let legacy = s.client(&key).await;
    assert_eq!(legacy.ok("whoami", json!({})).await["role"], "admin");
    let modern = s.client_2026(&key).await;
    let list = modern.list().await;
    assert_eq!(list.cache_scope, Some(rmcp::model::CacheScope::Private));
    assert_eq!(modern.ok("whoami", json!({})).await["role"], "admin");
    let (r, _) = modern.mint("r", "reader", &["*"]).await;
    let reader = s.client_2026(&r).await;
    assert_eq!(
        reader.list().await.tools.len(),
        role_tools(BuiltinRole::Reader).len()
    );
    for c in [legacy, modern, reader] {
        c.close().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn stateless_mode_serves_both_eras_without_sessions() {
    let s = TestServer::http(&["--stateless"]).await;
    let key = s.admin_key().await;
    let legacy = s.client(&key).await;
    assert_eq!(legacy.ok("whoami", json!({})).await["role"], "admin");
    let modern = s.client_2026(&key).await;
    assert_eq!(
        modern.ok("key_list", json!({})).await["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // No session id is handed out; answers are plain JSON.
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("mcp-session-id").is_none());
    assert_eq!(res.headers()["content-type"], "application/json");
    legacy.close().await;
    modern.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_session_from_before_a_restart_gets_404_and_can_start_again() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let auth = format!("Bearer {key}");
    let res = post_mcp(&s, &initialize_body(), &[("authorization", &auth)]).await;
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(res);
    let env = s.stop().await;

    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let res = post_mcp(
        &s,
        &list,
        &[
            ("authorization", &auth),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(res.status(), 404);
    let fresh = s.client(&key).await;
    fresh.ok("whoami", json!({})).await;
    fresh.close().await;
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_loses_no_audit_record() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let clients: Vec<_> = futures::future::join_all((0..8).map(|_| s.client(&key))).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for j in 0..1000 {
                let args =
                    json!({"name": format!("k-{i}-{j}"), "role": "reader", "tenants": ["*"]});
                let call = tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    c.try_call("key_create", args),
                );
                match call
                    .await
                    .unwrap_or_else(|_| panic!("call {i}/{j} hung after shutdown"))
                {
                    Ok(r) if r.is_error != Some(true) => {
                        let id = r.structured_content.unwrap()["key"]["id"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        acked.push(id);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    // Shut down while calls are in flight.
    while answered.load(Ordering::SeqCst) < 40 {
        tokio::task::yield_now().await;
    }
    s.running().shutdown.cancel();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // The stopped server let go of its database: read the trail as the next one would.
    let env = tokio::time::timeout(std::time::Duration::from_secs(30), s.stop())
        .await
        .expect("shutdown completes");
    let store = keyward::store::Store::open(&env.url()).await.unwrap();
    let filter = keyward::store::audit::AuditFilter {
        actions: vec!["key_create".into()],
        statuses: vec!["success".into()],
        ..keyward::store::audit::AuditFilter::visible_to(keyward::domain::tenant::TenantScope::All)
    };
    let trail: HashSet<String> = keyward::store::audit::page(&store, &filter, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.target_id)
        .collect();
    assert!(acked.len() >= 40);
    let missing: Vec<&String> = acked.iter().filter(|id| !trail.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged calls missing from the trail",
        missing.len()
    );
}
