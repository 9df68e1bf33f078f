//! kill -9 in the middle of write load: every call that was answered with success is in the
//! trail after a restart, the database passes its integrity check, and the server serves again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::process::{Process, bootstrap, call, client};
use crate::support::Env;

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_call() {
    let env = Env::new();
    let admin = bootstrap(&env);
    let server = Process::start(&env, &[]);
    let mcp = server.mcp.clone();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (mcp, admin, answered) = (mcp.clone(), admin.clone(), answered.clone());
        writers.push(tokio::spawn(async move {
            let http = client();
            let mut acked = Vec::new();
            for i in 0..100_000 {
                let args = json!({"name": format!("crash-{w}-{i}"), "role": "reader", "tenants": ["acme"]});
                match call(&http, &mcp, &admin, "key_create", args, &[]).await {
                    Some((200, v)) if v["result"]["isError"] == false => {
                        acked.push(v["result"]["structuredContent"]["key"]["id"].as_str().unwrap().to_owned());
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    while answered.load(Ordering::SeqCst) < 150 {
        tokio::task::yield_now().await;
    }
    drop(server); // SIGKILL, mid-load
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 150);

    // The database is consistent.
    let clock = Arc::new(keyward::clock::SystemClock);
    let (app, _writer) = keyward::open_app(&env.url(), clock, Default::default())
        .await
        .unwrap();
    match &app.store {
        keyward::store::Store::Sqlite(p) => {
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(p)
                .await
                .unwrap();
            assert_eq!(check, "ok");
            let fk: Vec<(String,)> =
                sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                    .fetch_all(p)
                    .await
                    .unwrap();
            assert!(fk.is_empty(), "foreign keys hold: {fk:?}");
        }
        keyward::store::Store::Postgres(p) => {
            // PostgreSQL survives a client crash by design; check keyward's own invariants.
            let orphans: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_tenants t LEFT JOIN audit_events e ON e.id = t.event_id WHERE e.id IS NULL",
            )
            .fetch_one(p)
            .await
            .unwrap();
            assert_eq!(orphans, 0);
        }
    }
    // Every acknowledged change is there, with its audit record.
    let filter = keyward::store::audit::AuditFilter {
        actions: vec!["key_create".into()],
        statuses: vec!["success".into()],
        ..keyward::store::audit::AuditFilter::visible_to(keyward::domain::tenant::TenantScope::All)
    };
    let trail: HashSet<String> = keyward::store::audit::page(&app.store, &filter, None, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.target_id)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !trail.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged calls missing from the trail",
        missing.len(),
        acked.len()
    );
    for id in acked.iter().step_by(25) {
        assert!(
            keyward::store::keys::get(&app.store, id)
                .await
                .unwrap()
                .is_some(),
            "key {id} lost"
        );
    }

    // And the server serves again.
    let server = Process::start(&env, &[]);
    let (status, v) = call(&client(), &server.mcp, &admin, "whoami", json!({}), &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["result"]["structuredContent"]["role"], "admin");
}
