//! kill -9 in the middle of write and read load: every call that was answered with success is
//! in the trail after a restart (changes with their records; reads from the journal the dead
//! process left), the database passes its integrity check, and the server serves again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::server::{TestServer, call, keep_alive_client as client};
use crate::support::{Env, secret};

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_call() {
    let env = Arc::new(Env::new());
    let admin = secret(&env.bootstrap());
    let server = TestServer::process_on(&env, &[]);
    let mcp = server.mcp();
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
    // Reads too: their records are committed on their own (on SQLite, to the journal).
    let mut readers = Vec::new();
    for r in 0..4 {
        let (mcp, admin, answered) = (mcp.clone(), admin.clone(), answered.clone());
        readers.push(tokio::spawn(async move {
            let http = client();
            let mut acked = Vec::new();
            for i in 0..100_000 {
                let marker = format!("crash-read-{r}-{i}");
                let extra = [("x-request-source", marker.as_str())];
                match call(&http, &mcp, &admin, "whoami", json!({}), &extra).await {
                    Some((200, v)) if v["result"]["isError"] == false => {
                        acked.push(marker);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    while answered.load(Ordering::SeqCst) < 300 {
        tokio::task::yield_now().await;
    }
    drop(server); // SIGKILL, mid-load
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let mut acked_reads = Vec::new();
    for r in readers {
        acked_reads.extend(r.await.unwrap());
    }
    assert!(acked.len() + acked_reads.len() >= 300);
    assert!(!acked.is_empty() && !acked_reads.is_empty());

    // On SQLite the killed server left its journal behind; starting again moves and
    // removes it.
    let journals = || {
        std::fs::read_dir(keyward::store::journal::journal_dir(&env.db_path()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let sqlite = !env.is_postgres();
    if sqlite {
        assert_eq!(journals(), 1, "the dead process's journal is left on disk");
    }

    // The database is consistent.
    let clock = Arc::new(keyward::clock::SystemClock);
    let (app, _writer) = keyward::open_app(&env.url(), clock, env.options(Default::default()))
        .await
        .unwrap();
    if sqlite {
        assert_eq!(journals(), 1, "only the new process's own journal remains");
    }
    match &app.store.db {
        keyward::store::Db::Sqlite(p) => {
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
        keyward::store::Db::Postgres(p) => {
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
    // Every acknowledged change is there with its audit record, and every acknowledged read.
    app.audit.sync().await.unwrap();
    let changes = successes(&app, "key_create").await;
    let changes: HashSet<String> = changes.into_iter().filter_map(|e| e.target_id).collect();
    assert_all_on_trail(&acked, &changes, "changes");
    let reads = successes(&app, "whoami").await;
    let reads: HashSet<String> = reads.into_iter().filter_map(|e| e.request_source).collect();
    assert_all_on_trail(&acked_reads, &reads, "reads");
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
    let server = TestServer::process_on(&env, &[]);
    let (status, v) = call(&client(), &server.mcp(), &admin, "whoami", json!({}), &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["result"]["structuredContent"]["role"], "admin");
}

async fn successes(
    app: &keyward::ops::app::App,
    action: &str,
) -> Vec<keyward::store::audit::AuditRow> {
    let filter = keyward::store::audit::AuditFilter {
        actions: vec![action.into()],
        statuses: vec!["success".into()],
        ..keyward::store::audit::AuditFilter::visible_to(keyward::domain::tenant::TenantScope::All)
    };
    keyward::store::audit::page(&app.store, &filter, None, 1_000_000)
        .await
        .unwrap()
}

fn assert_all_on_trail(acked: &[String], trail: &HashSet<String>, what: &str) {
    let missing = acked.iter().filter(|m| !trail.contains(*m)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged {what} missing from the trail",
        acked.len()
    );
}
