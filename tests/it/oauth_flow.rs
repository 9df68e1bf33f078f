//! The OAuth 2.1 flow end to end: the `oauth2` crate as the client (registration, PKCE,
//! RFC 8707 resource, code exchange, refresh, RFC 7009 revocation), a browser's steps with
//! plain reqwest, and the token at /mcp through an rmcp client; the consent ceiling, grants
//! narrowing with their signer, grant tools, and a trail with every step and no secret.

use keyward::domain::permission::PermissionSet;
use keyward::domain::role::BuiltinRole;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, RedirectUrl, RevocationUrl, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde_json::json;

use crate::oauth_support::{
    Creds, LogCapture, REDIRECT, assert_invalid_token, confidential_client, consent, count, grant,
    grant_ids, issuer, mcp_status, oauth_http, param, post_token, public_client, resource,
};
use crate::server::TestServer;
use crate::support::{role_tools, tools_for};

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet>;

fn oauth_client(s: &TestServer, id: &str, secret: Option<&str>) -> Client {
    let c = BasicClient::new(ClientId::new(id.to_owned()))
        .set_auth_uri(AuthUrl::new(s.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(s.url("/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
        .set_revocation_url(RevocationUrl::new(s.url("/revoke")).unwrap());
    match secret {
        Some(sec) => c.set_client_secret(ClientSecret::new(sec.to_owned())),
        None => c,
    }
}

/// The code flow with `client`: the URL built by oauth2, the browser's steps, the exchange.
async fn code_flow(
    s: &TestServer,
    client: &Client,
    scopes: &[&str],
    creds: Creds<'_>,
    role: &str,
) -> oauth2::basic::BasicTokenResponse {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("resource", resource(s));
    for sc in scopes {
        req = req.add_scope(Scope::new((*sc).to_owned()));
    }
    let (url, state) = req.url();
    let back = consent(s, url.as_str(), creds, role).await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss"), Some(issuer(s)));
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let code = param(&back, "code").expect("code");
    client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .add_extra_param("resource", resource(s))
        .request_async(&oauth_http)
        .await
        .expect("code exchange")
}

fn scope_of(t: &oauth2::basic::BasicTokenResponse) -> String {
    t.scopes()
        .map(|v| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_oauth2_crate_completes_the_flow_and_its_token_reaches_mcp() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let id = public_client(&s, REDIRECT).await;
    let client = oauth_client(&s, &id, None);
    let t = code_flow(
        &s,
        &client,
        &["key:read", "audit:read", "offline_access"],
        Creds::Key(&admin.key),
        "",
    )
    .await;
    let asked: PermissionSet = "key:read audit:read".parse().unwrap();
    assert_eq!(scope_of(&t), asked.to_string(), "the scope granted");
    let access = t.access_token().secret().clone();
    assert!(access.starts_with("kwat_"));
    assert!(t.expires_in().is_some());

    // tools/list is exactly the ceiling's tools; whoami names the grant and the signer.
    let c = s.client(&access).await;
    assert_eq!(c.tool_names().await, tools_for(asked));
    let me = c.ok("whoami", json!({})).await;
    assert_eq!(me["actor_kind"], "key");
    assert_eq!(me["key_id"], admin.id.as_str());
    assert_eq!(me["oauth"]["client_id"], id.as_str());
    let grant_id = me["oauth"]["grant_id"].as_str().unwrap().to_owned();
    assert!(grant_id.starts_with("gr_"), "{me}");
    // Beyond the ceiling: the tool is not there.
    let refused = c
        .try_call(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert!(
        refused.is_err() || refused.as_ref().unwrap().is_error == Some(true),
        "{refused:?}"
    );
    c.close().await;

    // A refresh gives a working new pair.
    let rt = t.refresh_token().expect("refresh token").clone();
    let t2 = client
        .exchange_refresh_token(&rt)
        .add_extra_param("resource", resource(&s))
        .request_async(&oauth_http)
        .await
        .expect("refresh");
    let access2 = t2.access_token().secret().clone();
    assert_ne!(access2, access);
    let rt2 = t2.refresh_token().expect("rotated").clone();
    assert_ne!(rt2.secret(), rt.secret());
    assert_eq!(mcp_status(&s, &access2).await.0, 200);

    // RFC 7009: revoking the refresh token ends the grant, its access tokens with it. (oauth2
    // refuses a revocation URL that is not https, so the request it would send goes raw.)
    let refused = client.revoke_token(StandardRevocableToken::RefreshToken(rt2.clone()));
    assert!(matches!(
        refused,
        Err(oauth2::ConfigurationError::InsecureUrl(_))
    ));
    let (status, _) = post_token(
        &s,
        "/revoke",
        &[
            ("token", rt2.secret()),
            ("token_type_hint", "refresh_token"),
            ("client_id", &id),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_invalid_token(&s, &access2).await;
    assert_invalid_token(&s, &access).await;
    assert!(!grant_ids(&s).await.contains(&grant_id));
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn confidential_clients_authenticate_by_basic_and_by_post() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    for (method, auth) in [
        ("client_secret_basic", AuthType::BasicAuth),
        ("client_secret_post", AuthType::RequestBody),
    ] {
        let (id, secret) = confidential_client(&s, method).await;
        assert!(secret.starts_with("kwcs_"));
        let client = oauth_client(&s, &id, Some(&secret)).set_auth_type(auth.clone());
        let t = code_flow(&s, &client, &[], Creds::Key(&admin.key), "").await;
        assert_eq!(
            mcp_status(&s, t.access_token().secret()).await.0,
            200,
            "{method}"
        );
        let rt = t.refresh_token().unwrap().clone();
        client
            .exchange_refresh_token(&rt)
            .request_async(&oauth_http)
            .await
            .unwrap_or_else(|e| panic!("{method}: refresh {e:?}"));

        // The wrong secret: invalid_client, nothing issued.
        let wrong = oauth_client(&s, &id, Some("kwcs_wrong")).set_auth_type(auth);
        let err = wrong
            .exchange_refresh_token(&rt)
            .request_async(&oauth_http)
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("invalid_client"),
            "{method}: {err:?}"
        );
    }
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn an_operator_signs_in_by_password() {
    let (s, _admin_key) = TestServer::http_with_alice(&[]).await;
    let id = public_client(&s, REDIRECT).await;
    let client = oauth_client(&s, &id, None);
    let t = code_flow(
        &s,
        &client,
        &[],
        Creds::Password("alice", "correct horse battery"),
        "",
    )
    .await;
    let c = s.client(t.access_token().secret()).await;
    let me = c.ok("whoami", json!({})).await;
    assert_eq!(me["actor_kind"], "operator", "{me}");
    assert_eq!(me["oauth"]["client_id"], id.as_str());
    assert_eq!(c.tool_names().await, role_tools(BuiltinRole::Admin));
    c.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_consent_ceiling_caps_what_an_admin_signer_grants() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let t = grant(&s, Creds::Key(&admin.key), "reader").await;
    let reader = BuiltinRole::Reader.permissions();
    assert_eq!(
        t.scope,
        reader.to_string(),
        "the token response says what was granted"
    );
    let c = s.client(&t.access).await;
    assert_eq!(c.tool_names().await, role_tools(BuiltinRole::Reader));
    let me = c.ok("whoami", json!({})).await;
    let perms: Vec<String> = serde_json::from_value(me["permissions"].clone()).unwrap();
    assert_eq!(perms.join(" "), reader.to_string(), "{me}");
    let msg = c.err("key_revoke", json!({"key_id": admin.id})).await;
    assert!(!msg.is_empty());
    c.close().await;
    // The admin key itself is untouched.
    admin.ok("key_get", json!({"key_id": admin.id})).await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn narrowing_the_signer_narrows_its_live_grants_at_once() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    // A key of a custom role, then the role loses a permission.
    admin
        .ok(
            "role_create",
            json!({"name": "ops", "permissions": ["key:read", "role:read", "audit:read"]}),
        )
        .await;
    let (ops_key, _) = admin.mint("ops", "ops", &["*"]).await;
    let t = grant(&s, Creds::Key(&ops_key), "").await;
    let c = s.client(&t.access).await;
    let ops: PermissionSet = "key:read role:read audit:read".parse().unwrap();
    assert_eq!(c.tool_names().await, tools_for(ops));
    admin
        .ok(
            "role_update",
            json!({"name": "ops", "permissions": ["key:read"]}),
        )
        .await;
    let narrow: PermissionSet = "key:read".parse().unwrap();
    assert_eq!(
        c.tool_names().await,
        tools_for(narrow),
        "on the next request"
    );
    c.close().await;

    // An operator whose role is lowered.
    admin
        .ok(
            "operator_create",
            json!({"username": "bob", "password": "correct horse battery", "role": "admin", "tenants": ["*"]}),
        )
        .await;
    let bob_id = admin.ok("operator_list", json!({})).await["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["username"] == "bob")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = grant(&s, Creds::Password("bob", "correct horse battery"), "").await;
    let c = s.client(&t.access).await;
    assert_eq!(c.tool_names().await, role_tools(BuiltinRole::Admin));
    admin
        .ok(
            "operator_set_role",
            json!({"operator_id": bob_id, "role": "reader"}),
        )
        .await;
    assert_eq!(c.tool_names().await, role_tools(BuiltinRole::Reader));
    c.close().await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn revoking_or_disabling_the_signing_key_ends_its_grants() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (k1, id1) = admin.mint("disabled", "reader", &["*"]).await;
    let (k2, id2) = admin.mint("revoked", "reader", &["*"]).await;
    let t1 = grant(&s, Creds::Key(&k1), "").await;
    let t2 = grant(&s, Creds::Key(&k2), "").await;
    assert_eq!(mcp_status(&s, &t1.access).await.0, 200);
    assert_eq!(mcp_status(&s, &t2.access).await.0, 200);
    admin.ok("key_disable", json!({"key_id": id1})).await;
    assert_invalid_token(&s, &t1.access).await;
    admin.ok("key_revoke", json!({"key_id": id2})).await;
    assert_invalid_token(&s, &t2.access).await;
    // Nor can they refresh.
    let (status, v) = crate::oauth_support::refresh(&s, &t2.client_id, &t2.refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    let (status, v) = crate::oauth_support::refresh(&s, &t1.client_id, &t1.refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn grant_tools_reach_own_grants_and_with_permission_all() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (reader_key, reader_id) = admin.mint("reader", "reader", &["*"]).await;
    let mine = grant(&s, Creds::Key(&reader_key), "").await;
    let theirs = grant(&s, Creds::Key(&admin.key), "").await;

    // A reader's token sees and revokes only the reader's own grants.
    let c = s.client(&mine.access).await;
    let own = c.ok("grant_list", json!({})).await;
    let grants = own["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{own}");
    assert_eq!(grants[0]["signer_id"], reader_id.as_str());
    let my_grant = grants[0]["id"].as_str().unwrap().to_owned();
    let all = grant_ids(&s).await;
    assert_eq!(all.len(), 2, "the admin sees every grant");
    let other = all.iter().find(|g| **g != my_grant).unwrap().clone();
    let msg = c.err("grant_revoke", json!({"grant_id": other})).await;
    assert!(msg.contains("no grant"), "{msg}");
    assert_eq!(mcp_status(&s, &theirs.access).await.0, 200, "untouched");
    let v = c.ok("grant_revoke", json!({"grant_id": my_grant})).await;
    assert_eq!(v["revoked"], true);
    c.close().await;
    assert_invalid_token(&s, &mine.access).await;

    // The admin revokes anyone's.
    let v = admin.ok("grant_revoke", json!({"grant_id": other})).await;
    assert_eq!(v["revoked"], true);
    assert_invalid_token(&s, &theirs.access).await;
    assert!(grant_ids(&s).await.is_empty());
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn setting_an_operators_password_revokes_her_grants() {
    let (s, admin_key) = TestServer::http_with_alice(&[]).await;
    let t = grant(&s, Creds::Password("alice", "correct horse battery"), "").await;
    assert_eq!(mcp_status(&s, &t.access).await.0, 200);
    let admin = s.client(&admin_key).await;
    let alice = admin.ok("operator_list", json!({})).await["operators"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .ok(
            "operator_set_password",
            json!({"operator_id": alice, "new_password": "another horse battery"}),
        )
        .await;
    assert_invalid_token(&s, &t.access).await;
    let (status, v) = crate::oauth_support::refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_trail_records_every_step_and_no_secret() {
    let log = LogCapture::start();
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (pasted, _) = admin.mint("pasted", "auditor", &["*"]).await;
    let t = grant(&s, Creds::Key(&pasted), "").await;
    let (status, r) = crate::oauth_support::refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!(status, 200, "{r}");
    let access2 = r["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r["refresh_token"].as_str().unwrap().to_owned();
    // A tool call made with the token carries its channel.
    let c = s.client(&access2).await;
    let grant_id = c.ok("whoami", json!({})).await["oauth"]["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok("key_list", json!({})).await;
    c.close().await;
    let (status, _) = crate::oauth_support::post_token(
        &s,
        "/revoke",
        &[("client_id", &t.client_id), ("token", &refresh2)],
        None,
    )
    .await;
    assert_eq!(status, 200);

    for action in [
        "oauth_register",
        "oauth_authorize",
        "oauth_token",
        "oauth_refresh",
        "oauth_revoke",
    ] {
        assert!(count(&s, action).await >= 1, "no {action} record");
    }
    let calls = admin.audit_full(json!({"action": ["key_list"]})).await;
    let channel = calls[0]["established"]["channel"]
        .as_str()
        .expect("channel on the call");
    assert!(
        channel.contains(&grant_id) && channel.contains(&t.client_id),
        "{channel}"
    );

    let trail = serde_json::to_string(&admin.audit_full(json!({"limit": 100})).await).unwrap();
    let logged = log.text();
    assert!(
        logged.contains("oauth token: code exchanged"),
        "the log was captured"
    );
    let mut stored = s.env.db_bytes();
    stored.extend(s.env.journal_bytes());
    let secrets = [
        ("access token", t.access.as_str()),
        ("refresh token", t.refresh.as_str()),
        ("new access token", &access2),
        ("new refresh token", &refresh2),
        ("code", &t.code),
        ("verifier", &t.verifier),
        ("pasted key", &pasted),
    ];
    for (what, secret) in secrets {
        let part = &secret[secret.len() - 24..];
        assert!(!trail.contains(part), "the {what} is in the trail");
        let hits: Vec<&str> = logged.lines().filter(|l| l.contains(part)).collect();
        assert!(hits.is_empty(), "the {what} is in the log: {hits:#?}");
        assert!(
            !stored.windows(part.len()).any(|w| w == part.as_bytes()),
            "the {what} is stored in the clear"
        );
    }
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_refresh_when_the_access_token_expires_answers_at_once() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    // As a client does: refresh once the access token has expired. The pasted key was last
    // used at sign-in, ten minutes ago.
    s.clock()
        .advance(chrono::Duration::minutes(10) + chrono::Duration::seconds(1));
    assert_invalid_token(&s, &t.access).await;
    let started = std::time::Instant::now();
    let (status, v) = crate::oauth_support::refresh(&s, &t.client_id, &t.refresh).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "the refresh took {took:?}"
    );
    assert_eq!(
        mcp_status(&s, v["access_token"].as_str().unwrap()).await.0,
        200
    );
    s.stop().await;
}
