//! What an attacker (or a sloppy client) tries in the browser flow, each refused with the right
//! error and nothing changed: unregistered or dangerous redirects, PKCE missing or wrong, code
//! replay, foreign resources, forged consent, a ceiling above the signer, dead keys; and what
//! real clients send that must work (Cursor's URIs, loopback ports, Claude's spellings).

use chrono::Duration;
use serde_json::json;

use crate::oauth_support::{
    Creds, REDIRECT, approve, assert_invalid_token, authorize_url, count, decide, exchange, grant,
    grant_ids, hidden, issuer, location, mcp_status, open_url, param, park, pkce, post_page,
    post_token, public_client, query, refresh, register, resource, sign_in,
};
use crate::server::TestServer;

/// A 400 HTML page, never a redirect.
async fn assert_page(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status(), status);
    assert!(res.headers().get("location").is_none(), "redirected");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    res.text().await.unwrap()
}

/// A 303 back to `REDIRECT` carrying `error`, with state and iss.
fn assert_error_redirect(s: &TestServer, res: &reqwest::Response, error: &str) {
    let to = location(res);
    assert!(to.as_str().starts_with(REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some(error), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&to, "iss"), Some(issuer(s)));
    assert!(param(&to, "code").is_none());
}

#[tokio::test]
async fn an_unregistered_redirect_or_client_gets_a_page_never_a_redirect() {
    let s = TestServer::http(&[]).await;
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    for (client, redirect) in [
        (id.as_str(), "https://evil.example/callback"),
        (id.as_str(), "http://localhost:53076/other"),
        ("kwc_unknown", REDIRECT),
    ] {
        let url = authorize_url(&s, &query(&s, client, redirect, &challenge));
        let html = assert_page(open_url(&url).await, 400).await;
        assert!(!html.contains("evil.example"), "{html}");
    }
    // Even with PKCE missing too: the redirect is judged first.
    let mut q = query(&s, &id, "https://evil.example/callback", &challenge);
    q.retain(|(k, _)| !k.starts_with("code_challenge"));
    assert_page(open_url(&authorize_url(&s, &q)).await, 400).await;
    s.stop().await;
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_its_verifier_checked() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let mut missing = query(&s, &id, REDIRECT, &challenge);
    missing.retain(|(k, _)| !k.starts_with("code_challenge"));
    let res = open_url(&authorize_url(&s, &missing)).await;
    assert_error_redirect(&s, &res, "invalid_request");
    let mut plain = query(&s, &id, REDIRECT, &verifier);
    plain.retain(|(k, _)| *k != "code_challenge_method");
    plain.push(("code_challenge_method", "plain".to_owned()));
    let res = open_url(&authorize_url(&s, &plain)).await;
    assert_error_redirect(&s, &res, "invalid_request");

    // A wrong verifier at /token.
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    let back = crate::oauth_support::consent(&s, &url, Creds::Key(&admin), "").await;
    let code = param(&back, "code").unwrap();
    let (other, _) = pkce();
    let (status, v) = exchange(&s, &id, &code, &other, REDIRECT).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (status, v) = exchange(&s, &id, &code, "", REDIRECT).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert_eq!(count(&s, "oauth_token").await, 0, "nothing issued");
    s.stop().await;
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_ends_what_it_issued() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let t = grant(&s, Creds::Key(&admin), "").await;
    assert_eq!(mcp_status(&s, &t.access).await.0, 200);
    let (status, v) = exchange(&s, &t.client_id, &t.code, &t.verifier, REDIRECT).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(v.get("access_token").is_none());
    assert_invalid_token(&s, &t.access).await;
    let (status, v) = refresh(&s, &t.client_id, &t.refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    let admin_c = s.client(&admin).await;
    let denied = admin_c
        .audit(json!({"action": ["oauth_token"], "status": ["denied"]}))
        .await;
    assert_eq!(denied.len(), 1);
    admin_c.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_foreign_resource_is_refused_at_authorize_and_at_token() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let mut q = query(&s, &id, REDIRECT, &challenge);
    q.retain(|(k, _)| *k != "resource");
    q.push(("resource", "https://other.example/mcp".to_owned()));
    let res = open_url(&authorize_url(&s, &q)).await;
    assert_error_redirect(&s, &res, "invalid_target");

    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    let back = crate::oauth_support::consent(&s, &url, Creds::Key(&admin), "").await;
    let code = param(&back, "code").unwrap();
    let form = |res: &'static str| {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", id.as_str()),
            ("resource", res),
        ]
    };
    for foreign in ["https://other.example/mcp", "http://127.0.0.1:1/mcp"] {
        let (status, v) = post_token(&s, "/token", &form(foreign), None).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_target")),
            "{v}"
        );
    }
    assert_eq!(count(&s, "oauth_token").await, 0, "nothing issued");
    s.stop().await;
}

#[tokio::test]
async fn forged_consent_is_refused_and_creates_nothing() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let p = park(&authorize_url(&s, &query(&s, &id, REDIRECT, &challenge))).await;
    // Sign-in from another origin is refused before anything is checked.
    let body = [
        ("request_id", p.request_id.as_str()),
        ("csrf_token", &p.csrf),
        ("api_key", &admin),
    ];
    let res = post_page(&s, "/authorize/sign-in", &body, &[("cookie", &p.cookie)]).await;
    assert_page(res, 403).await;
    let res = sign_in(&s, &p, Creds::Key(&admin)).await;
    assert_eq!(res.status(), 200);

    let own = issuer(&s);
    let good = approve(&p, "", "");
    let with = |k: &str, v: &'static str| -> Vec<(&str, &str)> {
        good.iter()
            .map(|(n, x)| if *n == k { (*n, v) } else { (*n, *x) })
            .collect()
    };
    let no_csrf: Vec<_> = good
        .iter()
        .filter(|(n, _)| *n != "csrf_token")
        .copied()
        .collect();
    let wrong_csrf = with(
        "csrf_token",
        "kwrq_0000000000000000000000000000000000000000000000",
    );
    let cookie = p.cookie.as_str();
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Form, Form, u16)> = vec![
        (
            "no CSRF token",
            no_csrf,
            vec![("origin", &own), ("cookie", cookie)],
            400,
        ),
        (
            "a wrong CSRF token",
            wrong_csrf,
            vec![("origin", &own), ("cookie", cookie)],
            400,
        ),
        ("no Origin", good.clone(), vec![("cookie", cookie)], 403),
        (
            "Origin: null",
            good.clone(),
            vec![("origin", "null"), ("cookie", cookie)],
            403,
        ),
        (
            "a foreign Origin",
            good.clone(),
            vec![("origin", "https://evil.example"), ("cookie", cookie)],
            403,
        ),
        ("no cookie", good.clone(), vec![("origin", &own)], 400),
    ];
    for (what, fields, headers, status) in cases {
        let res = post_page(&s, "/authorize/decision", &fields, &headers).await;
        assert_eq!(res.status(), status, "{what}");
        assert!(
            res.headers().get("location").is_none(),
            "{what}: redirected"
        );
        assert!(grant_ids(&s).await.is_empty(), "{what}: a grant was made");
    }
    // The genuine form still works: the refusals consumed nothing.
    let res = decide(&s, &p, &good).await;
    assert!(param(&location(&res), "code").is_some());
    assert_eq!(grant_ids(&s).await.len(), 1);
    // And it is single-use.
    let res = decide(&s, &p, &good).await;
    assert_page(res, 400).await;
    assert_eq!(grant_ids(&s).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_ceiling_above_the_signer_is_refused() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (reader, _) = admin.mint("reader", "reader", &["*"]).await;
    let (acme, _) = admin.mint("acme", "reader", &["acme"]).await;
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    for (key, role, tenants) in [
        (&reader, "admin", ""),
        (&reader, "auditor", ""),
        (&acme, "", "*"),
    ] {
        let p = park(&url).await;
        let res = sign_in(&s, &p, Creds::Key(key)).await;
        let html = res.text().await.unwrap();
        assert!(!html.contains("value=\"admin\""), "not offered: {html}");
        let res = decide(&s, &p, &approve(&p, role, tenants)).await;
        assert_page(res, 400).await;
        assert!(grant_ids(&s).await.is_empty(), "{role} {tenants}");
    }
    assert_eq!(count(&s, "oauth_authorize").await, 0);
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_or_expired_pasted_key_cannot_sign_in() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (revoked, revoked_id) = admin.mint("revoked", "reader", &["*"]).await;
    admin.ok("key_revoke", json!({"key_id": revoked_id})).await;
    let expiring = admin
        .ok(
            "key_create",
            json!({"name": "short", "role": "reader", "tenants": ["*"], "expires": "1h"}),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    s.clock().advance(Duration::hours(2));
    let id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &id, REDIRECT, &challenge));
    for key in [&revoked, &expiring] {
        let p = park(&url).await;
        let html = assert_page(sign_in(&s, &p, Creds::Key(key)).await, 401).await;
        assert!(html.contains("Sign-in failed"), "{html}");
        assert!(!html.contains("/authorize/decision"), "no consent form");
        // The form again, without the key in it.
        assert_eq!(
            hidden(&html, "request_id").as_deref(),
            Some(p.request_id.as_str())
        );
        assert!(!html.contains(&key[3..]), "the key echoed back");
        let res = decide(&s, &p, &approve(&p, "", "")).await;
        assert_page(res, 400).await;
    }
    assert!(grant_ids(&s).await.is_empty());
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn registration_takes_cursors_uris_and_refuses_dangerous_ones() {
    let s = TestServer::http(&[]).await;
    let cursor = [
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "https://www.cursor.com/agents/mcp/oauth/callback",
        "http://localhost:8787/callback",
    ];
    let (status, v) = register(
        &s,
        &json!({"client_name": "Cursor", "redirect_uris": cursor,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["redirect_uris"], json!(cursor));
    for bad in [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///x",
        "https://app.example/callback#frag",
        "https://user:pw@app.example/callback",
        "cursor://anysphere.cursor-mcp/other",
    ] {
        let (status, v) = register(
            &s,
            &json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_redirect_uri")),
            "{bad}: {v}"
        );
    }
    let admin = s.admin().await;
    let ok = admin
        .audit(json!({"action": ["oauth_register"], "status": ["success"]}))
        .await;
    assert_eq!(ok.len(), 1, "only Cursor registered");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn loopback_redirects_match_on_any_port_but_not_another_host() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, "http://localhost/callback").await;
    let (verifier, challenge) = pkce();
    let ported = "http://localhost:53076/callback";
    let url = authorize_url(&s, &query(&s, &id, ported, &challenge));
    let back = crate::oauth_support::consent(&s, &url, Creds::Key(&admin), "").await;
    assert!(back.as_str().starts_with(ported), "{back}");
    let code = param(&back, "code").unwrap();
    let (status, v) = exchange(&s, &id, &code, &verifier, ported).await;
    assert_eq!(status, 200, "{v}");
    for other in [
        "http://127.0.0.1:1/x",
        "http://127.0.0.1/callback",
        "http://localhost:1/x",
    ] {
        let url = authorize_url(&s, &query(&s, &id, other, &challenge));
        assert_page(open_url(&url).await, 400).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn claudes_scope_and_trailing_slash_resource_are_accepted() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let slashed = format!("{}/", resource(&s));
    let mut q = query(&s, &id, REDIRECT, &challenge);
    q.retain(|(k, _)| *k != "resource");
    q.extend([
        ("resource", slashed.clone()),
        ("scope", " offline_access".to_owned()),
    ]);
    let back =
        crate::oauth_support::consent(&s, &authorize_url(&s, &q), Creds::Key(&admin), "").await;
    let code = param(&back, "code").expect("code");
    let (status, v) = post_token(
        &s,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &id),
            ("resource", &slashed),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&s, access).await.0, 200);
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", id.as_str()),
        ("refresh_token", v["refresh_token"].as_str().unwrap()),
        ("resource", &slashed),
    ];
    let (status, v) = post_token(&s, "/token", &form, None).await;
    assert_eq!(status, 200, "{v}");
    s.stop().await;
}
