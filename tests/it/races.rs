//! Management use cases that check and then act hold the rows they rest on: on PostgreSQL
//! (READ COMMITTED) racing calls used to pass each other's checks. Run on both backends.

use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::server::TestServer;
use crate::support::secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_rotations_leave_exactly_one_live_secret() {
    let h = TestServer::in_process(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()).await;
    let admin = h.admin_key().await;
    let root = h.client(&admin).await;
    let (_, id) = root.mint("contested", "reader", &["*"]).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(h.client(&admin).await);
    }
    let rotations = clients
        .iter()
        .map(|c| c.call("key_rotate", json!({"key_id": id})));
    let secrets: Vec<String> = futures::future::join_all(rotations)
        .await
        .into_iter()
        .filter(|r| r.is_error != Some(true))
        .map(|r| secret(r.structured_content.as_ref().unwrap()))
        .collect();
    assert!(!secrets.is_empty());
    let mut live = 0;
    for s in &secrets {
        if keyward::ops::auth::authenticate_key(h.app(), s)
            .await
            .is_ok()
        {
            live += 1;
        }
    }
    assert_eq!(
        live,
        1,
        "{} rotations answered, {live} secrets work",
        secrets.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_being_deleted_is_never_handed_out() {
    let h = TestServer::in_process(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()).await;
    let admin = h.admin_key().await;
    let (a, b) = (h.client(&admin).await, h.client(&admin).await);
    for i in 0..12 {
        let role = format!("fleeting{i}");
        a.ok(
            "role_create",
            json!({"name": role, "permissions": ["key:read"]}),
        )
        .await;
        let (deleted, created) = tokio::join!(
            a.call("role_delete", json!({"name": role})),
            b.call(
                "key_create",
                json!({"name": format!("holder{i}"), "role": role, "tenants": ["*"]})
            ),
        );
        let deleted = deleted.is_error != Some(true);
        let created = created.is_error != Some(true);
        assert!(
            !(deleted && created),
            "round {i}: the role was deleted and a key was minted with it"
        );
        assert!(deleted || created, "round {i}: one of them wins");
    }
}
