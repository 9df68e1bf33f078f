//! The key lifecycle: create, list, get, rotate (with and without grace), disable, enable,
//! revoke, expiry, last use.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use crate::server::TestServer;
use crate::support::secret;

#[tokio::test]
async fn create_list_get_show_metadata_never_secrets() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let created = admin
        .ok(
            "key_create",
            json!({"name": "ci-deployer", "role": "key_manager", "tenants": ["acme"], "description": "deploys"}),
        )
        .await;
    let key = &created["key"];
    let secret_text = secret(&created);
    assert_eq!(key["role"], "key_manager");
    assert_eq!(key["tenants"], json!(["acme"]));
    assert_eq!(key["status"], "active");
    assert!(secret_text.starts_with(key["preview"].as_str().unwrap()));
    // Default expiry: 90 days, with an explicit offset.
    let expires =
        chrono::DateTime::parse_from_rfc3339(key["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&Utc) - Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{days}");
    assert!(key["expires_at"].as_str().unwrap().ends_with("+00:00"));

    let got = admin.ok("key_get", json!({"key_id": key["id"]})).await;
    assert_eq!(&got["key"], key);
    let listed = admin.ok("key_list", json!({"role": ["key_manager"]})).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    for v in [&got, &listed] {
        assert!(
            !v.to_string().contains(&secret_text),
            "secret leaked in a read"
        );
    }

    // "never" only when asked explicitly.
    let forever = admin
        .ok(
            "key_create",
            json!({"name": "svc", "role": "reader", "tenants": ["*"], "expires": "never"}),
        )
        .await;
    assert_eq!(forever["key"]["expires_at"], json!(null));
    admin.close().await;
}

#[tokio::test]
async fn listing_pages_with_a_cursor() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    for i in 0..5 {
        admin.mint(&format!("k{i}"), "reader", &["*"]).await;
    }
    let first = admin.ok("key_list", json!({"limit": 4})).await;
    assert_eq!(first["truncated"], true);
    assert_eq!(first["keys"].as_array().unwrap().len(), 4);
    let second = admin
        .ok(
            "key_list",
            json!({"limit": 4, "cursor": first["next_cursor"]}),
        )
        .await;
    assert_eq!(second["truncated"], false);
    assert_eq!(second["keys"].as_array().unwrap().len(), 2);
    let msg = admin.err("key_list", json!({"cursor": "garbage!"})).await;
    assert!(msg.starts_with("invalid cursor"), "{msg}");
    let msg = admin.err("key_list", json!({"limit": 1000})).await;
    assert_eq!(msg, "limit must be between 1 and 100");
    admin.close().await;
}

#[tokio::test]
async fn disable_enable_and_revoke_take_effect_on_the_next_call() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let (bot_key, bot_id) = admin.mint("bot", "reader", &["*"]).await;
    let bot = server.client(&bot_key).await;
    bot.ok("whoami", json!({})).await;

    let disabled = admin.ok("key_disable", json!({"key_id": bot_id})).await;
    assert_eq!(disabled["key"]["status"], "disabled");
    let msg = bot.err("whoami", json!({})).await;
    assert_eq!(
        msg,
        "the configured API key is no longer accepted: API key is disabled"
    );
    // Idempotent.
    admin.ok("key_disable", json!({"key_id": bot_id})).await;

    let enabled = admin.ok("key_enable", json!({"key_id": bot_id})).await;
    assert_eq!(enabled["key"]["status"], "active");
    bot.ok("whoami", json!({})).await;

    let revoked = admin.ok("key_revoke", json!({"key_id": bot_id})).await;
    assert_eq!(revoked["key"]["status"], "revoked");
    let msg = bot.err("whoami", json!({})).await;
    assert!(msg.ends_with("API key is revoked"), "{msg}");
    let msg = admin.err("key_enable", json!({"key_id": bot_id})).await;
    assert!(msg.contains("revocation is permanent"), "{msg}");
    let msg = admin.err("key_rotate", json!({"key_id": bot_id})).await;
    assert!(msg.contains("revoked and cannot be rotated"), "{msg}");
    // Revoked keys are hidden from listings unless asked for.
    let listed = admin.ok("key_list", json!({})).await;
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != bot_id.as_str())
    );
    let listed = admin.ok("key_list", json!({"include_revoked": true})).await;
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == bot_id.as_str())
    );

    // Every change carries its before and after state.
    let events = admin
        .audit(json!({"target": [bot_id], "action": ["key_revoke"]}))
        .await;
    let full = admin.ok("audit_get", json!({"id": events[0]["id"]})).await;
    assert_eq!(full["event"]["before"]["status"], "active");
    assert_eq!(full["event"]["after"]["status"], "revoked");
    bot.close().await;
    admin.close().await;
}

#[tokio::test]
async fn rotation_without_grace_stops_the_old_secret_at_once() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let (old, id) = admin.mint("bot", "auditor", &["acme"]).await;
    let rotated = admin.ok("key_rotate", json!({"key_id": id})).await;
    let new = secret(&rotated);
    assert_ne!(new, old);
    assert_eq!(rotated["key"]["id"], id.as_str());
    assert_eq!(rotated["key"]["role"], "auditor");
    assert_eq!(rotated["key"]["tenants"], json!(["acme"]));
    assert!(rotated.get("previous_secret_valid_until").is_none());

    let err = server.refused_start(Some(&old));
    assert!(err.contains("rotated"), "{err}");
    let bot = server.client(&new).await;
    assert_eq!(bot.ok("whoami", json!({})).await["key_id"], id.as_str());
    bot.close().await;
    admin.close().await;
}

#[tokio::test]
async fn rotation_grace_keeps_the_old_secret_until_it_ends() {
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    let h = TestServer::in_process(start).await;
    let admin = h.admin().await;
    let created = admin
        .ok(
            "key_create",
            json!({"name": "bot", "role": "reader", "tenants": ["*"], "expires": "30d"}),
        )
        .await;
    let (old, id) = (
        secret(&created),
        created["key"]["id"].as_str().unwrap().to_owned(),
    );

    let msg = admin
        .err("key_rotate", json!({"key_id": id, "grace_period": "25h"}))
        .await;
    assert_eq!(msg, "grace_period may be at most 24h");
    let rotated = admin
        .ok("key_rotate", json!({"key_id": id, "grace_period": "1h"}))
        .await;
    assert_eq!(
        rotated["previous_secret_valid_until"],
        "2026-05-01T13:00:00.000000+00:00"
    );
    // The original expiry is inherited, not renewed.
    assert_eq!(rotated["key"]["expires_at"], created["key"]["expires_at"]);

    let old_client = h.client(&old).await;
    let new_client = h.client(&secret(&rotated)).await;
    h.clock().advance(Duration::minutes(59));
    old_client.ok("whoami", json!({})).await;
    new_client.ok("whoami", json!({})).await;
    h.clock().advance(Duration::minutes(1));
    let msg = old_client.err("whoami", json!({})).await;
    assert!(msg.ends_with("grace period is over"), "{msg}");
    new_client.ok("whoami", json!({})).await;

    // And the key itself expires on its original date, whichever secret is used.
    h.clock().advance(Duration::days(30));
    let msg = new_client.err("whoami", json!({})).await;
    assert!(msg.ends_with("API key has expired"), "{msg}");
}

#[tokio::test]
async fn a_created_key_cannot_outlive_its_creator() {
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    let h = TestServer::in_process(start).await;
    let admin = h.admin().await;
    let created = admin
        .ok(
            "key_create",
            json!({"name": "km", "role": "key_manager", "tenants": ["*"], "expires": "10d"}),
        )
        .await;
    let km = h.client(&secret(&created)).await;
    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"], "expires": "11d"}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot create a key with role 'reader': its expiry 2026-05-12T00:00:00+00:00 is after your own (2026-05-11T00:00:00+00:00)"
    );
    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"], "expires": "never"}),
        )
        .await;
    assert!(
        msg.contains("it never expires, so it would outlive you"),
        "{msg}"
    );
    // The default 90 days is shortened to the creator's own expiry.
    let v = km
        .ok(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert_eq!(v["key"]["expires_at"], "2026-05-11T00:00:00.000000+00:00");
}

#[tokio::test]
async fn last_use_is_recorded() {
    let h = TestServer::in_process(Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()).await;
    let admin = h.admin().await;
    let (key, id) = admin.mint("bot", "reader", &["*"]).await;
    let before = admin.ok("key_get", json!({"key_id": id})).await;
    assert_eq!(before["key"]["last_used_at"], json!(null));
    h.clock().advance(Duration::minutes(5));
    let bot = h.client(&key).await;
    bot.ok("whoami", json!({})).await;
    let after = admin.ok("key_get", json!({"key_id": id})).await;
    assert_eq!(
        after["key"]["last_used_at"],
        "2026-05-01T00:05:00.000000+00:00"
    );
}

#[tokio::test]
async fn an_expiring_caller_cannot_hand_out_anything_that_outlives_it() {
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    let h = TestServer::in_process(start).await;
    let root = h.admin().await;
    let (_, forever_id) = root.mint("forever", "reader", &["*"]).await;
    let forever = root
        .ok(
            "key_create",
            json!({"name": "svc", "role": "reader", "tenants": ["*"], "expires": "never"}),
        )
        .await;
    let forever_id = forever["key"]["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or(forever_id);
    root.ok(
        "role_create",
        json!({"name": "viewer", "permissions": ["key:read"]}),
    )
    .await;
    root.ok(
        "key_create",
        json!({"name": "v", "role": "viewer", "tenants": ["*"], "expires": "never"}),
    )
    .await;
    let temp = root
        .ok(
            "key_create",
            json!({"name": "temp-admin", "role": "admin", "tenants": ["*"], "expires": "1d"}),
        )
        .await;
    let temp = h.client(&secret(&temp)).await;

    // Operators never expire.
    let msg = temp
        .err("operator_create", json!({"username": "eve", "password": "correct horse battery", "role": "reader", "tenants": ["*"]}))
        .await;
    assert!(
        msg.starts_with("cannot create an operator with role 'reader'")
            && msg.contains("it never expires"),
        "{msg}"
    );
    // Rotating a key that outlives the caller would hand over its secret.
    let msg = temp.err("key_rotate", json!({"key_id": forever_id})).await;
    assert!(
        msg.starts_with("cannot rotate key") && msg.contains("it never expires"),
        "{msg}"
    );
    // Adding permissions to a role held by keys that outlive the caller.
    let msg = temp
        .err(
            "role_update",
            json!({"name": "viewer", "permissions": ["key:read", "audit:read"]}),
        )
        .await;
    assert!(
        msg.starts_with("cannot add permissions to role 'viewer'") && msg.contains("outlive you"),
        "{msg}"
    );
    // Narrowing it is fine.
    temp.ok(
        "role_update",
        json!({"name": "viewer", "description": "read keys"}),
    )
    .await;

    // Raising an operator (who never expires) is the same grant by another route.
    let op = root
        .ok("operator_create", json!({"username": "olga", "password": "correct horse battery", "role": "reader", "tenants": ["*"]}))
        .await;
    let op_id = op["operator"]["id"].as_str().unwrap().to_owned();
    let msg = temp
        .err(
            "operator_set_role",
            json!({"operator_id": op_id, "role": "admin"}),
        )
        .await;
    assert!(
        msg.starts_with("cannot give operator 'olga' role 'admin'")
            && msg.contains("it never expires"),
        "{msg}"
    );
    root.ok(
        "operator_set_role",
        json!({"operator_id": op_id, "role": "key_manager"}),
    )
    .await;
    temp.ok(
        "operator_set_role",
        json!({"operator_id": op_id, "role": "reader"}),
    )
    .await;
    // Bringing back a disabled operator, or a disabled key that outlives the caller.
    temp.ok("operator_disable", json!({"operator_id": op_id}))
        .await;
    let msg = temp
        .err("operator_enable", json!({"operator_id": op_id}))
        .await;
    assert!(
        msg.starts_with("cannot enable operator 'olga'") && msg.contains("it never expires"),
        "{msg}"
    );
    temp.ok("key_disable", json!({"key_id": forever_id})).await;
    let msg = temp.err("key_enable", json!({"key_id": forever_id})).await;
    assert!(
        msg.starts_with("cannot enable key") && msg.contains("it never expires"),
        "{msg}"
    );
    // A key that expires before the caller may come back.
    let short = root
        .ok(
            "key_create",
            json!({"name": "short", "role": "reader", "tenants": ["*"], "expires": "2h"}),
        )
        .await;
    let short_id = short["key"]["id"].as_str().unwrap();
    temp.ok("key_disable", json!({"key_id": short_id})).await;
    temp.ok("key_enable", json!({"key_id": short_id})).await;
}
