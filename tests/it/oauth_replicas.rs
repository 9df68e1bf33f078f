//! The authorization server across replicas on one PostgreSQL: a code issued by one is
//! redeemed at another, refresh rotation converges whichever replica a racer reaches, and a
//! grant revoked on one is refused on the other within the verification cache's bound.
//! Ignored by default (they need PostgreSQL: `cargo test --test it -- --ignored`), and failing
//! when it is unreachable.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use crate::oauth_support::{
    REDIRECT, Tokens, assert_invalid_token, authorize_url, exchange, hidden, location, mcp_status,
    param, pkce, post_page, public_client, query, refresh,
};
use crate::server::TestServer;
use crate::support::Env;

/// The URL both replicas are reached under, behind one balancer.
const PUBLIC: &str = "http://localhost:8443";

/// Two in-process replicas (each its own clock and caches) on one fresh PostgreSQL database.
async fn replicas() -> (TestServer, TestServer) {
    let env = Arc::new(Env::postgres());
    let flags = ["--public-url", PUBLIC];
    let a = TestServer::try_http_on(env.clone(), &flags).await.unwrap();
    let b = TestServer::try_http_on(env, &flags).await.unwrap();
    (a, b)
}

/// The browser's steps on replica `s` (as reached under `PUBLIC`), signing in with `key`.
async fn consent_on(s: &TestServer, client_id: &str, challenge: &str, key: &str) -> String {
    let mut q = query(s, client_id, REDIRECT, challenge);
    // No resource: it defaults to the public MCP URL, the one both replicas serve.
    q.retain(|(k, _)| *k != "resource");
    let res = crate::oauth_support::open_url(&authorize_url(s, &q)).await;
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = res.text().await.unwrap();
    let (rq, csrf) = (
        hidden(&html, "request_id").unwrap(),
        hidden(&html, "csrf_token").unwrap(),
    );
    let headers = [("origin", PUBLIC), ("cookie", cookie.as_str())];
    let res = post_page(
        s,
        "/authorize/sign-in",
        &[("request_id", &rq), ("csrf_token", &csrf), ("api_key", key)],
        &headers,
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let fields = [
        ("request_id", rq.as_str()),
        ("csrf_token", &csrf),
        ("role", ""),
        ("decision", "approve"),
    ];
    let res = post_page(s, "/authorize/decision", &fields, &headers).await;
    let back = location(&res);
    assert_eq!(param(&back, "iss").as_deref(), Some(PUBLIC));
    param(&back, "code").expect("code")
}

/// A grant consented on `a` and its code redeemed on `b`.
async fn grant_across(a: &TestServer, b: &TestServer, key: &str) -> Tokens {
    let client_id = public_client(a, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let code = consent_on(a, &client_id, &challenge, key).await;
    let (status, v) = exchange(b, &client_id, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 200, "{v}");
    // And never again, on either replica.
    let (status, _) = exchange(a, &client_id, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 400);
    Tokens {
        client_id,
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        scope: v["scope"].as_str().unwrap().to_owned(),
        code,
        verifier,
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_code_from_one_replica_is_redeemed_on_another_and_a_revocation_reaches_both() {
    let (a, b) = replicas().await;
    let admin = a.admin_key().await;
    let first = grant_across(&a, &b, &admin).await;
    // The code's replay on A ended the grant: that is the rule, on any replica.
    assert_invalid_token(&b, &first.access).await;

    let t = {
        let client_id = public_client(&a, REDIRECT).await;
        let (verifier, challenge) = pkce();
        let code = consent_on(&a, &client_id, &challenge, &admin).await;
        let (status, v) = exchange(&b, &client_id, &code, &verifier, REDIRECT).await;
        assert_eq!(status, 200, "{v}");
        v
    };
    let access = t["access_token"].as_str().unwrap();
    // The token works on both (and A now holds its verification in its cache).
    assert_eq!(mcp_status(&a, access).await.0, 200);
    assert_eq!(mcp_status(&b, access).await.0, 200);
    let on_a = a.client(access).await;
    let grant_id = on_a.ok("whoami", json!({})).await["oauth"]["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revoked on B…
    let admin_b = b.client(&admin).await;
    let v = admin_b
        .ok("grant_revoke", json!({"grant_id": grant_id}))
        .await;
    assert_eq!(v["revoked"], true);
    assert_invalid_token(&b, access).await;
    // …and refused on A once its cached verification is older than the bound (1 s).
    a.clock().advance(Duration::seconds(1));
    assert_invalid_token(&a, access).await;
    let msg = on_a.try_call("whoami", json!({})).await;
    assert!(msg.is_err(), "the open session refuses the token too");
    on_a.close().await;
    admin_b.close().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn refresh_rotation_converges_across_replicas_and_a_late_reuse_ends_the_grant_on_both() {
    let (a, b) = replicas().await;
    let admin = a.admin_key().await;
    let client_id = public_client(&a, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let code = consent_on(&b, &client_id, &challenge, &admin).await;
    let (status, t) = exchange(&a, &client_id, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 200, "{t}");
    let old = t["refresh_token"].as_str().unwrap();

    // Rotated on A; a racer with the old token on B within the window gets the same pair.
    let (status, on_a) = refresh(&a, &client_id, old).await;
    assert_eq!(status, 200, "{on_a}");
    let (status, on_b) = refresh(&b, &client_id, old).await;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_a["access_token"], on_b["access_token"]);
    assert_eq!(on_a["refresh_token"], on_b["refresh_token"]);
    let access = on_a["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&a, access).await.0, 200);

    // Past the window on B's clock, the old token again: the grant ends, on A too.
    b.clock()
        .advance(Duration::minutes(2) + Duration::seconds(1));
    let (status, v) = refresh(&b, &client_id, old).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    a.clock().advance(Duration::seconds(1));
    assert_invalid_token(&a, access).await;
    let (status, _) = refresh(&a, &client_id, on_a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    b.stop().await;
    a.stop().await;
}
