//! What ends a grant or a sign-in, and what the issuer looks like behind TLS: a forwarded
//! `https` makes every advertised URL https and the binding cookie host-only; a password reset
//! kills a sign-in still awaiting consent; re-enabling a key revives none of its grants; a
//! client acting through a grant owns only that grant; registered clients nobody used expire.

use serde_json::{Value, json};

use crate::oauth_support::{
    Creds, REDIRECT, approve, assert_invalid_token, authorize_url, decide, grant, grant_for,
    mcp_status, open_url, park, pkce, public_client, query, refresh, sign_in,
};
use crate::server::{TestServer, http};

#[tokio::test]
async fn forwarded_https_makes_every_url_https_and_the_cookie_host_only() {
    // Loopback is a trusted proxy by default: its X-Forwarded-Proto counts.
    let s = TestServer::http(&[]).await;
    let https = s.url("").replacen("http://", "https://", 1);
    let meta: Value = http()
        .get(s.url("/.well-known/oauth-authorization-server"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], https);
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "revocation_endpoint",
    ] {
        assert!(
            meta[endpoint]
                .as_str()
                .unwrap()
                .starts_with(&format!("{https}/")),
            "{endpoint}: {}",
            meta[endpoint]
        );
    }
    let prm: Value = http()
        .get(s.url("/.well-known/oauth-protected-resource/mcp"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([https]));
    assert_eq!(prm["resource"], format!("{https}/mcp"));

    // The sign-in page reached over https binds the browser with a __Host- cookie.
    let client_id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let mut q = query(&s, &client_id, REDIRECT, &challenge);
    q.retain(|(k, _)| *k != "resource");
    let res = crate::oauth_support::browser()
        .get(authorize_url(&s, &q))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-keyward_authz=kwrq_"), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    s.stop().await;
}

#[tokio::test]
async fn a_sign_in_awaiting_consent_dies_with_a_password_reset() {
    let (s, _admin_key) = TestServer::http_with_alice(&[]).await;
    let admin = s.admin().await;
    let client_id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let parked = park(&authorize_url(
        &s,
        &query(&s, &client_id, REDIRECT, &challenge),
    ))
    .await;
    let signed = sign_in(
        &s,
        &parked,
        Creds::Password("alice", "correct horse battery"),
    )
    .await;
    assert_eq!(signed.status(), 200, "consent page");

    // Alice's password is reset (it may have been stolen) before the consent is sent.
    let alice = crate::oauth_support::alice_id(&s).await;
    admin
        .ok(
            "operator_set_password",
            json!({"operator_id": alice, "new_password": "a brand new long password"}),
        )
        .await;

    let res = decide(&s, &parked, &approve(&parked, "", "*")).await;
    assert_eq!(res.status(), 400, "the parked sign-in is gone");
    assert!(res.headers().get("location").is_none());
    let grants = admin.ok("grant_list", json!({})).await;
    assert_eq!(grants["grants"], json!([]), "no grant was made");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn re_enabling_a_key_revives_none_of_its_grants() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (key, key_id) = admin.mint("signer", "reader", &["*"]).await;
    let t = grant(&s, Creds::Key(&key), "").await;
    assert_eq!(mcp_status(&s, &t.access).await.0, 200);

    admin.ok("key_disable", json!({"key_id": key_id})).await;
    assert_invalid_token(&s, &t.access).await;
    admin.ok("key_enable", json!({"key_id": key_id})).await;

    assert_invalid_token(&s, &t.access).await;
    let (status, body) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let grants = admin.ok("grant_list", json!({})).await;
    assert_eq!(grants["grants"], json!([]), "disabling ended the grant");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_client_owns_only_its_own_grant() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    // A reader signs twice; a reader has neither grant:read nor grant:revoke.
    let (key, _) = admin.mint("two-clients", "reader", &["*"]).await;
    let a = grant(&s, Creds::Key(&key), "").await;
    let other = public_client(&s, "http://127.0.0.1/other").await;
    assert_ne!(other, a.client_id);
    let b = grant_for_redirect(&s, &other, &key).await;

    let signer = s.client(&key).await;
    let all = signer.ok("grant_list", json!({})).await;
    assert_eq!(
        all["grants"].as_array().unwrap().len(),
        2,
        "the signer sees both"
    );
    signer.close().await;

    let through_a = s.client(&a.access).await;
    let own = through_a.ok("grant_list", json!({})).await;
    let ids: Vec<&str> = own["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "client A sees only its own grant: {own}");
    let b_id = all["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .find(|id| id != ids[0])
        .unwrap();
    let msg = through_a
        .err("grant_revoke", json!({"grant_id": b_id}))
        .await;
    assert!(msg.contains("no grant with id"), "{msg}");
    through_a.close().await;
    assert_eq!(mcp_status(&s, &b).await.0, 200, "B's grant still works");
    admin.close().await;
    s.stop().await;
}

/// A grant for `client_id` registered on `http://127.0.0.1/other` (any port matches).
async fn grant_for_redirect(s: &TestServer, client_id: &str, key: &str) -> String {
    let redirect = "http://127.0.0.1:40999/other";
    let (verifier, challenge) = pkce();
    let url = authorize_url(s, &query(s, client_id, redirect, &challenge));
    let parked = park(&url).await;
    assert_eq!(sign_in(s, &parked, Creds::Key(key)).await.status(), 200);
    let back =
        crate::oauth_support::location(&decide(s, &parked, &approve(&parked, "", "*")).await);
    let code = crate::oauth_support::param(&back, "code").unwrap();
    let (status, v) =
        crate::oauth_support::exchange(s, client_id, &code, &verifier, redirect).await;
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn registered_clients_nobody_used_expire() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let unused = public_client(&s, "http://127.0.0.1/unused").await;
    let used = grant(&s, Creds::Key(&admin.key), "").await;

    s.clock().advance(chrono::Duration::hours(25));
    keyward::ops::oauth::sweep(s.app()).await.unwrap();

    let (_, challenge) = pkce();
    let res = open_url(&authorize_url(
        &s,
        &query(&s, &unused, "http://127.0.0.1/unused", &challenge),
    ))
    .await;
    assert_eq!(res.status(), 400, "the unused client is gone");
    let _ = grant_for(&s, &used.client_id, Creds::Key(&admin.key), "").await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn live_grants_per_signer_and_client_are_capped_least_recently_used_first() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let client_id = public_client(&s, REDIRECT).await;
    let first = grant_for(&s, &client_id, Creds::Key(&admin.key), "").await;
    let second = grant_for(&s, &client_id, Creds::Key(&admin.key), "").await;
    // The first is used after the second was made: the second is now the least recently used.
    s.clock().advance(chrono::Duration::minutes(2));
    assert_eq!(mcp_status(&s, &first.access).await.0, 200);
    s.clock().advance(chrono::Duration::seconds(2));
    let mut newest = Vec::new();
    for _ in 0..19 {
        newest.push(grant_for(&s, &client_id, Creds::Key(&admin.key), "").await);
    }
    // 21 consents, a cap of 20: the least recently used one went.
    assert_invalid_token(&s, &second.access).await;
    assert_eq!(
        mcp_status(&s, &first.access).await.0,
        200,
        "recently used: kept"
    );
    for t in &newest {
        assert_eq!(mcp_status(&s, &t.access).await.0, 200);
    }
    let grants = admin.ok("grant_list", json!({})).await;
    assert_eq!(grants["grants"].as_array().unwrap().len(), 20);
    admin.close().await;
    s.stop().await;
}
