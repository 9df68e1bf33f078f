//! Edges of the authorization server: racing code exchanges, registration defaults and its
//! rate limit, repeated parameters, the protected-resource metadata naming the issuer, and a
//! disabled operator's grants.

use serde_json::json;

use crate::oauth_support::{
    Creds, REDIRECT, assert_invalid_token, authorize_url, consent, count, exchange, grant, issuer,
    mcp_status, open_url, param, pkce, post_token, public_client, query, register,
};
use crate::server::{TestServer, initialize_body, post_mcp};

#[tokio::test]
async fn racing_exchanges_of_one_code_leave_no_working_pair_behind_a_replay() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    let code = param(&consent(&s, &url, Creds::Key(&admin), "").await, "code").unwrap();
    let all =
        futures::future::join_all((0..10).map(|_| exchange(&s, &id, &code, &verifier, REDIRECT)))
            .await;
    let issued: Vec<&str> = all
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, v)| v["access_token"].as_str().unwrap())
        .collect();
    assert_eq!(issued.len(), 1, "one exchange wins: {all:?}");
    for (status, v) in all.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, v["error"].as_str()), (400, Some("invalid_grant")));
    }
    // The others were replays: the grant ended, the winner's token with it.
    assert_invalid_token(&s, issued[0]).await;
    s.stop().await;
}

#[tokio::test]
async fn registration_defaults_to_a_confidential_client_and_is_rate_limited() {
    let s = TestServer::http(&[]).await;
    let (status, v) = register(&s, &json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert!(v["client_secret"].as_str().unwrap().starts_with("kwcs_"));
    // Without the secret the confidential client is refused.
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", v["client_id"].as_str().unwrap()),
        ("refresh_token", "kwrt_x"),
    ];
    let (status, e) = post_token(&s, "/token", &form, None).await;
    assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));

    // A client without refresh_token gets no refresh token.
    let admin = s.admin_key().await;
    let (status, v) = register(
        &s,
        &json!({"redirect_uris": ["http://localhost/no-refresh"], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["client_id"].as_str().unwrap();
    let (verifier, challenge) = pkce();
    let redirect = "http://localhost/no-refresh";
    let url = authorize_url(&s, &query(&s, id, redirect, &challenge));
    let code = param(&consent(&s, &url, Creds::Key(&admin), "").await, "code").unwrap();
    let (status, t) = exchange(&s, id, &code, &verifier, redirect).await;
    assert_eq!(status, 200, "{t}");
    assert!(t.get("refresh_token").is_none(), "{t}");

    // 60 a minute from one address; then slow_down, recorded once.
    let mut statuses = Vec::new();
    for i in 0..62 {
        let body = json!({"redirect_uris": [format!("http://localhost/r{i}")],
            "token_endpoint_auth_method": "none"});
        statuses.push(register(&s, &body).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|c| **c == 201).count(),
        58,
        "{statuses:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let s = TestServer::http(&[]).await;
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let mut q = query(&s, &id, REDIRECT, &challenge);
    q.push(("redirect_uri", "https://evil.example/cb".to_owned()));
    let res = open_url(&authorize_url(&s, &q)).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", id.as_str()),
        ("code", "kwac_a"),
        ("code", "kwac_b"),
    ];
    let (status, v) = post_token(&s, "/token", &form, None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_protected_resource_metadata_names_this_issuer() {
    let s = TestServer::http(&[]).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let v: serde_json::Value = reqwest::get(s.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["authorization_servers"],
            json!([issuer(&s)]),
            "{path}: {v}"
        );
    }
    // The 401 challenge points there.
    let res = post_mcp(&s, &initialize_body(), &[]).await;
    assert_eq!(res.status(), 401);
    let www = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains(&format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            issuer(&s)
        )),
        "{www}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_disabled_operators_grants_stop() {
    let (s, admin_key) = TestServer::http_with_alice(&[]).await;
    let admin = s.client(&admin_key).await;
    admin
        .ok(
            "operator_create",
            json!({"username": "bob", "password": "correct horse battery", "role": "auditor", "tenants": ["*"]}),
        )
        .await;
    let ops = admin.ok("operator_list", json!({})).await;
    let bob = ops["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["username"] == "bob")
        .unwrap()["id"]
        .clone();
    let t = grant(&s, Creds::Password("bob", "correct horse battery"), "").await;
    assert_eq!(mcp_status(&s, &t.access).await.0, 200);
    admin
        .ok("operator_disable", json!({"operator_id": bob}))
        .await;
    assert_invalid_token(&s, &t.access).await;
    let (status, _) = crate::oauth_support::refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 400);
    assert_eq!(count(&s, "oauth_refresh").await, 0);
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_pages_show_a_clients_name_as_text_and_take_no_token_for_a_key() {
    let s = TestServer::http(&["--lockout-threshold", "3"]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    let (status, v) = register(
        &s,
        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "client_name": "<script>alert(1)</script>\u{202E}"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["client_id"].as_str().unwrap();
    let (_, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, id, REDIRECT, &challenge));
    let html = open_url(&url).await.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");

    // An access token (or refresh token) pasted as a key signs nobody in, and counts.
    let mut statuses = Vec::new();
    for pasted in [&t.access, &t.refresh, &t.access] {
        let p = crate::oauth_support::park(&url).await;
        let res = crate::oauth_support::sign_in(&s, &p, Creds::Key(pasted)).await;
        statuses.push(res.status().as_u16());
        assert!(!res.text().await.unwrap().contains("/authorize/decision"));
    }
    assert_eq!(statuses, [401, 401, 401]);
    let p = crate::oauth_support::park(&url).await;
    let res = crate::oauth_support::sign_in(&s, &p, Creds::Password("nobody", "wrong")).await;
    assert_eq!(res.status(), 429, "the address is locked out of sign-in");
    s.stop().await;
}
