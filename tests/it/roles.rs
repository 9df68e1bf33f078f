//! Custom roles: creation, change and deletion within the caller's own reach.

use serde_json::json;

use crate::server::TestServer;
use crate::support::secret;

#[tokio::test]
async fn custom_roles_lifecycle() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let roles = admin.ok("role_list", json!({})).await;
    let names: Vec<&str> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "auditor", "key_manager", "reader"]);

    let created = admin
        .ok("role_create", json!({"name": "rotator", "permissions": ["key:read", "key:update"], "description": "rotates keys"}))
        .await;
    assert_eq!(
        created["role"]["permissions"],
        json!(["key:read", "key:update"])
    );
    let msg = admin
        .err(
            "role_create",
            json!({"name": "rotator", "permissions": ["key:read"]}),
        )
        .await;
    assert_eq!(msg, "a role named 'rotator' already exists");
    let msg = admin
        .err(
            "role_create",
            json!({"name": "admin", "permissions": ["key:read"]}),
        )
        .await;
    assert_eq!(msg, "'admin' is a built-in role");
    let msg = admin
        .err(
            "role_update",
            json!({"name": "reader", "permissions": ["key:read"]}),
        )
        .await;
    assert!(msg.contains("built-in role and cannot be changed"), "{msg}");
    let msg = admin.err("role_delete", json!({"name": "auditor"})).await;
    assert!(msg.contains("built-in role"), "{msg}");

    let (_, holder) = admin.mint("rot", "rotator", &["*"]).await;
    let msg = admin.err("role_delete", json!({"name": "rotator"})).await;
    assert!(msg.contains("held by 1 key(s)"), "{msg}");
    let updated = admin
        .ok(
            "role_update",
            json!({"name": "rotator", "permissions": ["key:read", "key:update", "key:revoke"]}),
        )
        .await;
    assert_eq!(
        updated["role"]["description"], "rotates keys",
        "omitted fields stay"
    );

    admin.ok("key_revoke", json!({"key_id": holder})).await;
    let deleted = admin.ok("role_delete", json!({"name": "rotator"})).await;
    assert_eq!(deleted["deleted"], "rotator");
    let msg = admin.err("role_get", json!({"name": "rotator"})).await;
    assert!(msg.contains("does not exist"), "{msg}");
    // The name can be used again.
    admin
        .ok(
            "role_create",
            json!({"name": "rotator", "permissions": ["key:read"]}),
        )
        .await;

    let events = admin
        .audit(json!({"target": ["rotator"], "action": ["role_update"]}))
        .await;
    let full = admin.ok("audit_get", json!({"id": events[0]["id"]})).await;
    assert_eq!(
        full["event"]["before"]["permissions"],
        json!(["key:read", "key:update"])
    );
    assert_eq!(
        full["event"]["after"]["permissions"],
        json!(["key:read", "key:update", "key:revoke"])
    );
    admin.close().await;
}

#[tokio::test]
async fn a_key_cannot_raise_its_own_role_or_grant_what_it_lacks() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    admin
        .ok(
            "role_create",
            json!({"name": "role_admin", "permissions": ["role:read", "role:write", "key:read"]}),
        )
        .await;
    let (key, _) = admin.mint("ra", "role_admin", &["*"]).await;
    let me = server.client(&key).await;

    let msg = me
        .err("role_update", json!({"name": "role_admin", "permissions": ["role:read", "role:write", "key:read", "key:create"]}))
        .await;
    assert_eq!(
        msg,
        "cannot give role 'role_admin' these permissions: it holds key:create which you lack"
    );
    let msg = me
        .err(
            "role_create",
            json!({"name": "sneaky", "permissions": ["audit:read"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot create role 'sneaky': it holds audit:read which you lack"
    );
    // Nor change a role that holds more than it does.
    admin
        .ok(
            "role_create",
            json!({"name": "viewer", "permissions": ["key:read", "audit:read"]}),
        )
        .await;
    let msg = me
        .err(
            "role_update",
            json!({"name": "viewer", "permissions": ["key:read"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot change role 'viewer': it holds audit:read which you lack"
    );

    let who = me.ok("whoami", json!({})).await;
    assert_eq!(
        who["permissions"],
        json!(["key:read", "role:read", "role:write"])
    );
    me.close().await;
    admin.close().await;
}

#[tokio::test]
async fn tenant_scoped_callers_cannot_change_roles_held_elsewhere() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    admin
        .ok(
            "role_create",
            json!({"name": "shared", "permissions": ["key:read"]}),
        )
        .await;
    admin.mint("g", "shared", &["globex"]).await;
    let (acme_admin, _) = admin.mint("acme-admin", "admin", &["acme"]).await;
    let acme = server.client(&acme_admin).await;
    let msg = acme
        .err(
            "role_update",
            json!({"name": "shared", "permissions": ["key:read", "role:read"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot change role 'shared': it is held by keys or operators in tenants outside your scope"
    );
    assert!(!msg.contains("globex"), "other tenants' names stay hidden");
    acme.close().await;
    admin.close().await;
}

#[tokio::test]
async fn a_role_a_legacy_shared_key_holds_counts_as_held_everywhere_forever() {
    let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap();
    let h = TestServer::in_process(start).await;
    let admin = h.admin().await;
    admin
        .ok(
            "role_create",
            json!({"name": "shared", "permissions": ["key:read"]}),
        )
        .await;
    // A legacy replica on the same database starts with --legacy-role shared.
    keyward::ops::auth::LegacyKey::new(h.app(), "a-long-shared-secret-16+", "shared")
        .await
        .unwrap();
    let (acme_admin, _) = admin.mint("acme-admin", "admin", &["acme"]).await;
    let acme = h.client(&acme_admin).await;
    let msg = acme
        .err(
            "role_update",
            json!({"name": "shared", "permissions": ["key:read", "audit:read"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot change role 'shared': it is held by keys or operators in tenants outside your scope"
    );
    let temp = admin
        .ok(
            "key_create",
            json!({"name": "temp", "role": "admin", "tenants": ["*"], "expires": "1d"}),
        )
        .await;
    let temp = h.client(&secret(&temp)).await;
    let msg = temp
        .err(
            "role_update",
            json!({"name": "shared", "permissions": ["key:read", "audit:read"]}),
        )
        .await;
    assert!(msg.contains("outlive you"), "{msg}");
    let msg = admin.err("role_delete", json!({"name": "shared"})).await;
    assert!(msg.contains("held by a legacy shared key"), "{msg}");
    for c in [acme, temp, admin.client] {
        c.close().await;
    }
}
