//! First-admin bootstrap over HTTP, and operators (people with passwords) managed through the
//! guarded tools.

use serde_json::{Value, json};

use crate::http_sessions::{PASSWORD, bootstrap, login, session};
use crate::server::{TestServer, http, initialize_body, post_mcp};

#[tokio::test]
async fn bootstrap_over_http_works_once_with_the_setup_token() {
    let s = TestServer::http(&[]).await;
    let token = s
        .running()
        .setup_token
        .clone()
        .expect("no admin yet, so a setup token");

    let res = bootstrap(&s, "wrong-token", "alice").await;
    assert_eq!(res.status(), 403);
    let res = http()
        .post(s.url("/auth/bootstrap"))
        .json(&json!({"setup_token": token, "username": "alice", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "password must be at least 12 characters"
    );

    let res = bootstrap(&s, &token, "Alice").await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["operator"]["username"], "alice");
    assert_eq!(body["operator"]["role"], "admin");
    assert_eq!(body["key"]["role"], "admin");
    let key = body["api_key"].as_str().unwrap().to_owned();

    // Used once: now gone, for the right token and any other.
    for t in [token.as_str(), "anything"] {
        let res = bootstrap(&s, t, "mallory").await;
        assert_eq!(res.status(), 410);
    }
    let admin = s.client(&key).await;
    let events = admin
        .audit_full(json!({"action": ["bootstrap"], "limit": 10}))
        .await;
    // (Records reach the tables by two paths, the journal and the change's own transaction,
    // so events at the same instant may list in either order.)
    let mut statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        ["failed", "failed", "failed", "success"],
        "closed attempts, and a correct token with a weak password, are audited"
    );
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "password must be at least 12 characters")
    );
    let failures = admin.audit_full(json!({"action": ["auth_failed"]})).await;
    assert_eq!(failures[0]["reason"], "wrong setup token");
    admin.close().await;
    s.stop().await;

    // With an admin already present, no token is printed and bootstrap is closed from the start.
    let s = TestServer::http(&[]).await;
    s.admin_key().await;
    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    assert!(s.running().setup_token.is_none());
    assert_eq!(bootstrap(&s, "x", "bob").await.status(), 410);
    s.stop().await;
}

#[tokio::test]
async fn operators_are_managed_within_the_callers_reach() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let created = admin
        .ok("operator_create", json!({"username": "Carol", "password": PASSWORD, "role": "key_manager", "tenants": ["acme"]}))
        .await;
    let carol = created["operator"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["operator"]["username"], "carol");
    assert!(!created.to_string().contains(PASSWORD));
    let msg = admin
        .err(
            "operator_create",
            json!({"username": "carol", "password": PASSWORD, "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert_eq!(msg, "that username is not available; choose another");
    let msg = admin
        .err("operator_create", json!({"username": "dave", "password": "too-short", "role": "reader", "tenants": ["*"]}))
        .await;
    assert_eq!(msg, "password must be at least 12 characters");

    // Carol signs in; as a key manager she cannot touch operators at all, and keys only in acme.
    let (cookie, origin) = session(&s, "carol").await;
    let call = |name: &str, args: Value| json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let headers = [
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let _ = post_mcp(
        &s,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &headers,
    )
    .await;
    let text = post_mcp(&s, &call("operator_list", json!({})), &headers)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("requires operator:read"), "{text}");
    let text = post_mcp(
        &s,
        &call(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["globex"]}),
        ),
        &headers,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("globex outside your scope"), "{text}");

    // Role changes apply on the next request; a disabled operator's session stops working.
    admin
        .ok(
            "operator_set_role",
            json!({"operator_id": carol, "role": "auditor"}),
        )
        .await;
    let text = post_mcp(&s, &call("audit_query", json!({})), &headers)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"isError\":false"), "{text}");
    let listed = admin.ok("operator_list", json!({})).await;
    assert_eq!(listed["operators"][0]["role"], "auditor");
    assert!(listed["operators"][0]["last_login_at"].is_string());
    admin
        .ok("operator_disable", json!({"operator_id": carol}))
        .await;
    let res = post_mcp(&s, &call("whoami", json!({})), &headers).await;
    assert_eq!(res.status(), 401);
    let res = login(&s, "carol").await;
    assert_eq!(res.status(), 401);
    admin
        .ok("operator_enable", json!({"operator_id": carol}))
        .await;

    // Containment: an acme admin cannot create an all-tenant operator nor promote beyond itself.
    let (acme_key, _) = admin.mint("acme-admin", "key_manager", &["acme"]).await;
    let acme = s.client(&acme_key).await;
    let msg = acme.err("operator_list", json!({})).await;
    assert!(msg.contains("requires operator:read"), "{msg}");
    admin.ok("role_create", json!({"name": "people", "permissions": ["operator:read", "operator:write", "key:read", "role:read"]})).await;
    // Operators never expire, so only a key that never expires may manage them.
    let people_key = admin
        .ok(
            "key_create",
            json!({"name": "people", "role": "people", "tenants": ["acme"], "expires": "never"}),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let people = s.client(&people_key).await;
    let msg = people
        .err(
            "operator_create",
            json!({"username": "eve", "password": PASSWORD, "role": "admin", "tenants": ["acme"]}),
        )
        .await;
    assert!(
        msg.starts_with("cannot create an operator with role 'admin'"),
        "{msg}"
    );
    let msg = people
        .err(
            "operator_set_role",
            json!({"operator_id": carol, "role": "reader"}),
        )
        .await;
    assert!(
        msg.starts_with("cannot change the role of operator 'carol'"),
        "{msg}"
    );
    people
        .ok("operator_create", json!({"username": "frank", "password": PASSWORD, "role": "reader", "tenants": ["acme"]}))
        .await;
    let seen = people.ok("operator_list", json!({})).await;
    let names: Vec<&str> = seen["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "frank"], "only operators within acme");
    for c in [acme, people, admin.client] {
        c.close().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn closed_bootstrap_cannot_be_hammered() {
    let s = TestServer::http(&[]).await;
    s.admin_key().await;
    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    for _ in 0..20 {
        assert_eq!(bootstrap(&s, "x", "bob").await.status(), 410);
    }
    assert_eq!(
        bootstrap(&s, "x", "bob").await.status(),
        429,
        "closed attempts count toward the lockout"
    );
    s.stop().await;
}

#[tokio::test]
async fn legacy_mode_offers_no_sign_in_or_bootstrap() {
    let s = TestServer::http(&[
        "--auth-mode",
        "legacy",
        "--legacy-api-key",
        "a-long-shared-secret-16+",
    ])
    .await;
    assert!(s.running().setup_token.is_none());
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"api_key": "kw_x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(bootstrap(&s, "x", "bob").await.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn a_disabled_operator_signing_in_is_recorded_as_an_operator() {
    let (s, key) = TestServer::http_with_alice(&[]).await;
    let admin = s.client(&key).await;
    let bob = admin
        .ok(
            "operator_create",
            json!({"username": "bob", "password": PASSWORD, "role": "reader", "tenants": ["*"]}),
        )
        .await;
    let bob_id = bob["operator"]["id"].as_str().unwrap().to_owned();
    admin
        .ok("operator_disable", json!({"operator_id": bob_id}))
        .await;
    let res = login(&s, "bob").await;
    assert_eq!(res.status(), 401);
    let failed = admin
        .audit_full(json!({"action": ["auth_failed"], "actor": [bob_id]}))
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["established"]["actor_kind"], "operator");
    assert_eq!(failed[0]["reason"], "operator is disabled");
    admin.close().await;
    s.stop().await;
}
