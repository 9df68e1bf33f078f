//! Attacks on tokens and the public endpoints, each refused with the right error and nothing
//! changed: refresh after revocation, racing refreshes, a stale refresh token after the grace
//! window, lockout accounting for genuine and unknown tokens, the server switched off, and
//! CORS on the public routes only.

use chrono::Duration;
use keyward::domain::oauth::token::{OAuthSecret, TokenKind};
use serde_json::json;

use crate::oauth_support::{
    Creds, REDIRECT, assert_invalid_token, authorize_url, count, grant, grant_for, grant_ids,
    issuer, mcp_status, open_url, park, pkce, post_page, post_token, public_client, query, refresh,
    register,
};
use crate::server::TestServer;
#[tokio::test]
async fn refresh_after_revocation_is_invalid_grant() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    let (status, _) = post_token(
        &s,
        "/revoke",
        &[("client_id", &t.client_id), ("token", &t.refresh)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Revoking an access token ends only that token.
    let t = grant(&s, Creds::Key(&admin), "").await;
    let form = [("client_id", t.client_id.as_str()), ("token", &t.access)];
    assert_eq!(post_token(&s, "/revoke", &form, None).await.0, 200);
    assert_invalid_token(&s, &t.access).await;
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn twenty_parallel_refreshes_rotate_once_and_converge() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    // A minute on: the signer's key is out of the verification cache (1 s) and its last use
    // is due to be recorded, as when a client's refreshes arrive together later on.
    s.clock().advance(Duration::seconds(61));
    let all =
        futures::future::join_all((0..20).map(|_| refresh(&s, &t.client_id, &t.refresh))).await;
    let first = &all[0].1;
    for (status, v) in &all {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(v["access_token"], first["access_token"]);
        assert_eq!(v["refresh_token"], first["refresh_token"]);
    }
    assert_eq!(count(&s, "oauth_refresh").await, 1, "one rotation");
    assert_eq!(count(&s, "oauth_refresh_reuse").await, 0);
    assert_eq!(
        mcp_status(&s, first["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    let (status, v) = refresh(&s, &t.client_id, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "the converged refresh token works: {v}");
    s.stop().await;
}

#[tokio::test]
async fn a_stale_refresh_token_after_the_grace_window_revokes_only_its_grant() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let client = public_client(&s, REDIRECT).await;
    let t1 = grant_for(&s, &client, Creds::Key(&admin), "").await;
    let t2 = grant_for(&s, &client, Creds::Key(&admin), "").await;
    let (status, next) = refresh(&s, &client, &t1.refresh).await;
    assert_eq!(status, 200);
    s.clock()
        .advance(Duration::minutes(2) + Duration::seconds(1));
    // The signer's key verification is no longer cached (past its 1 s bound): the refresh
    // checks the key afresh, and must not wait on its own transaction to do so.
    let started = std::time::Instant::now();
    let (status, v) = refresh(&s, &client, &t1.refresh).await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "the refresh stalled {took:?}"
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert_invalid_token(&s, next["access_token"].as_str().unwrap()).await;
    let (status, _) = refresh(&s, &client, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the whole grant ended");
    assert_eq!(count(&s, "oauth_refresh_reuse").await, 1);
    // The signer's other grant with the same client is untouched.
    assert_eq!(mcp_status(&s, &t2.access).await.0, 200);
    let (status, v) = refresh(&s, &client, &t2.refresh).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(grant_ids(&s).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_not_counted_toward_the_lockout_but_an_unknown_one_is() {
    let s = TestServer::http(&["--lockout-threshold", "3"]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    // Hours later, after housekeeping ran: the token is still known as genuine.
    s.clock().advance(Duration::hours(6));
    keyward::ops::oauth::sweep(s.app()).await.unwrap();
    for _ in 0..6 {
        assert_invalid_token(&s, &t.access).await;
    }
    assert_eq!(mcp_status(&s, &admin).await.0, 200, "not locked out");
    assert_eq!(count(&s, "auth_failed").await, 0, "not audited");

    let unknown = OAuthSecret::generate(TokenKind::Access);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(mcp_status(&s, unknown.expose()).await.0);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429],
        "counted like an unknown key"
    );
    let admin_c = s.client(&admin).await;
    assert_eq!(
        admin_c
            .audit(json!({"action": ["auth_lockout"]}))
            .await
            .len(),
        1
    );
    admin_c.close().await;
    s.stop().await;
}

#[tokio::test]
async fn with_oauth_off_there_is_no_authorization_server() {
    let s = TestServer::http(&["--oauth", "off"]).await;
    let admin = s.admin_key().await;
    let res = reqwest::get(s.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, _) = register(&s, &json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 404);
    let (status, _) = post_token(&s, "/token", &[("grant_type", "refresh_token")], None).await;
    assert_eq!(status, 404);
    let res = open_url(&s.url("/authorize?response_type=code")).await;
    assert_eq!(res.status(), 404);
    let token = OAuthSecret::generate(TokenKind::Access);
    assert_eq!(mcp_status(&s, token.expose()).await.0, 401);
    assert_eq!(mcp_status(&s, &admin).await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn public_routes_answer_any_origin_and_the_pages_none() {
    let s = TestServer::http(&[]).await;
    let evil = "https://evil.example";
    let acao = |res: &reqwest::Response| {
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let c = crate::oauth_support::browser();
    let res = c
        .get(s.url("/.well-known/oauth-authorization-server"))
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(acao(&res).as_deref(), Some("*"), "metadata");
    let meta: serde_json::Value = res.json().await.unwrap();
    assert_eq!(meta["issuer"], issuer(&s).as_str());
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    let res = c
        .post(s.url("/register"))
        .header("origin", evil)
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(acao(&res).as_deref(), Some("*"), "register");
    let id = res.json::<serde_json::Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/token", "/revoke"] {
        let res = c
            .post(s.url(path))
            .header("origin", evil)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=refresh_token&token=x")
            .send()
            .await
            .unwrap();
        assert_eq!(acao(&res).as_deref(), Some("*"), "{path}");
        let pre = c
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", evil)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(acao(&pre).as_deref(), Some("*"), "{path} preflight");
    }
    let (_, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    let res = c.get(&url).header("origin", evil).send().await.unwrap();
    assert_eq!(acao(&res), None, "the sign-in page");
    let p = park(&url).await;
    let body = [
        ("request_id", p.request_id.as_str()),
        ("csrf_token", &p.csrf),
    ];
    for path in ["/authorize/sign-in", "/authorize/decision"] {
        let res = post_page(&s, path, &body, &[("origin", evil), ("cookie", &p.cookie)]).await;
        assert_eq!(acao(&res), None, "{path}");
    }
    s.stop().await;
}

/// Runs `sql` on the server's database.
async fn exec(s: &TestServer, sql: &str) {
    match &s.app().store.db {
        keyward::store::Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        keyward::store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

#[tokio::test]
async fn a_refresh_the_database_cannot_check_is_not_invalid_grant() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    // The signer's key cannot be read (and its verification is no longer cached: past 1 s).
    s.clock().advance(Duration::seconds(2));
    exec(&s, "ALTER TABLE key_secrets RENAME TO key_secrets_away").await;
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    exec(&s, "ALTER TABLE key_secrets_away RENAME TO key_secrets").await;
    // invalid_grant would make the client throw its refresh token away and ask the person
    // again; a failure of the server's own is a 5xx the client retries.
    assert!(status >= 500, "{status} {v}");
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 200, "the refresh token still works: {v}");
    s.stop().await;
}

#[tokio::test]
async fn another_clients_tokens_are_not_its_to_use_or_revoke() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    // (Identical public registrations share one client_id: this one differs.)
    let other = public_client(&s, "http://localhost/other").await;
    assert_ne!(other, t.client_id);
    let (status, v) = refresh(&s, &other, &t.refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    // RFC 7009 §2.1: answered 200, and nothing changes.
    for token in [&t.refresh, &t.access] {
        let form = [("client_id", other.as_str()), ("token", token.as_str())];
        assert_eq!(post_token(&s, "/revoke", &form, None).await.0, 200);
    }
    assert_eq!(mcp_status(&s, &t.access).await.0, 200);
    assert_eq!(count(&s, "oauth_revoke").await, 0);
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn codes_and_sign_in_pages_expire_and_a_denial_grants_nothing() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    // A code is good for 60 s.
    let back = crate::oauth_support::consent(&s, &url, Creds::Key(&admin), "").await;
    let code = crate::oauth_support::param(&back, "code").unwrap();
    s.clock().advance(Duration::seconds(61));
    let (status, v) = crate::oauth_support::exchange(&s, &id, &code, &verifier, REDIRECT).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    // A sign-in page for 10 min.
    let p = park(&url).await;
    s.clock()
        .advance(Duration::minutes(10) + Duration::seconds(1));
    let res = crate::oauth_support::sign_in(&s, &p, Creds::Key(&admin)).await;
    assert_eq!(res.status(), 400);
    // Deny: back to the client with access_denied, no grant.
    let p = park(&url).await;
    assert_eq!(
        crate::oauth_support::sign_in(&s, &p, Creds::Key(&admin))
            .await
            .status(),
        200
    );
    let fields = [
        ("request_id", p.request_id.as_str()),
        ("csrf_token", &p.csrf),
        ("decision", "deny"),
    ];
    let to = crate::oauth_support::location(&crate::oauth_support::decide(&s, &p, &fields).await);
    assert_eq!(
        crate::oauth_support::param(&to, "error").as_deref(),
        Some("access_denied")
    );
    assert!(crate::oauth_support::param(&to, "code").is_none());
    assert_eq!(grant_ids(&s).await.len(), 1, "only the first approval's");
    s.stop().await;
}

#[tokio::test]
async fn a_grant_never_outlives_its_signing_key() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let key = admin
        .ok(
            "key_create",
            json!({"name": "brief", "role": "reader", "tenants": ["*"], "expires": "30m"}),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = grant(&s, Creds::Key(&key), "").await;
    let grants = admin.ok("grant_list", json!({})).await;
    let expires = grants["grants"][0]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    assert!(
        at <= keyward::clock::Clock::now(s.clock().as_ref()) + Duration::minutes(30),
        "{expires}"
    );
    s.clock().advance(Duration::minutes(31));
    assert_invalid_token(&s, &t.access).await;
    let (status, _) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 400);
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn key_sign_in_can_be_turned_off() {
    let s = TestServer::http(&["--oauth-key-sign-in", "false"]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let p = park(&authorize_url(&s, &query(&s, &id, REDIRECT, &challenge))).await;
    let res = crate::oauth_support::sign_in(&s, &p, Creds::Key(&admin)).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(!html.contains("name=\"api_key\""), "no key field offered");
    assert!(grant_ids(&s).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_not_counted_toward_the_lockout() {
    let s = TestServer::http(&["--lockout-threshold", "3"]).await;
    let admin = s.admin_key().await;
    // Ended three ways: its grant revoked by the client (RFC 7009), by grant_revoke, and
    // the access token revoked on its own.
    let by_client = grant(&s, Creds::Key(&admin), "").await;
    let form = [
        ("client_id", by_client.client_id.as_str()),
        ("token", &by_client.refresh),
    ];
    assert_eq!(post_token(&s, "/revoke", &form, None).await.0, 200);
    let by_tool = grant(&s, Creds::Key(&admin), "").await;
    let c = s.client(&by_tool.access).await;
    let id = c.ok("whoami", json!({})).await["oauth"]["grant_id"].clone();
    c.ok("grant_revoke", json!({"grant_id": id})).await;
    c.close().await;
    let alone = grant(&s, Creds::Key(&admin), "").await;
    let form = [
        ("client_id", alone.client_id.as_str()),
        ("token", &alone.access),
    ];
    assert_eq!(post_token(&s, "/revoke", &form, None).await.0, 200);
    // Housekeeping a few minutes later forgets none of them.
    s.clock().advance(Duration::minutes(15));
    keyward::ops::oauth::sweep(s.app()).await.unwrap();
    for t in [&by_client, &by_tool, &alone] {
        for _ in 0..4 {
            assert_invalid_token(&s, &t.access).await;
        }
    }
    assert_eq!(
        count(&s, "auth_failed").await,
        0,
        "a revoked token is not audited"
    );
    assert_eq!(count(&s, "auth_lockout").await, 0);
    s.stop().await;
}
