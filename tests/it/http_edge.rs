//! The HTTP edge: the 401 challenge, protected-resource metadata and its URL derivation,
//! Host/Origin checks, CORS modes and protocol versions.

use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};

fn www_authenticate(res: &reqwest::Response) -> String {
    res.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn unauthenticated_requests_get_a_challenge_pointing_at_the_metadata() {
    let s = TestServer::http(&[]).await;
    let base = format!("http://{}", s.running().addr);

    let res = post_mcp(&s, &initialize_body(), &[]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        www_authenticate(&res),
        format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"")
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "unauthorized", "message": "authentication required"})
    );

    // A presented but bad token adds error="invalid_token" and says nothing more.
    for token in [
        "kw_garbage",
        "kw_Dh4bnhx2tv71iTwNy5SHPwMeGXEdy4r8ZV1erX31R3s2vasEc",
        "",
    ] {
        let res = post_mcp(
            &s,
            &initialize_body(),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(res.status(), 401);
        assert!(
            www_authenticate(&res).ends_with(", error=\"invalid_token\""),
            "{token}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["message"], "invalid or expired credentials");
    }
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("authorization", "Basic dXNlcjpwYXNz")],
    )
    .await;
    assert_eq!(res.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn metadata_resource_follows_forwarded_headers_only_from_trusted_proxies() {
    // Loopback is a trusted proxy by default; the forwarded host must be an allowed one.
    let s = TestServer::http(&["--allowed-hosts", "kw.example.com"]).await;
    let own = format!("http://{}", s.running().addr);
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let doc: Value = http()
            .get(s.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], format!("{own}/mcp"), "{path}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["resource_name"], "keyward");
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("audit:read"))
        );
        // The built-in authorization server, at the same public base.
        assert_eq!(doc["authorization_servers"], json!([own]));

        let doc: Value = http()
            .get(s.url(path))
            .header("x-forwarded-proto", "https, http")
            .header("x-forwarded-host", "kw.example.com")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], "https://kw.example.com/mcp", "{path}");
    }
    // The challenge uses the same derivation and points at the /mcp-suffixed document, whose
    // resource is exactly the MCP endpoint.
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "kw.example.com"),
        ],
    )
    .await;
    assert_eq!(
        www_authenticate(&res),
        "Bearer resource_metadata=\"https://kw.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    // A forwarded host nobody configured is refused rather than echoed.
    let res = http()
        .get(s.url("/.well-known/oauth-protected-resource"))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    s.stop().await;

    // From an untrusted peer the forwarded headers are ignored: the connection's own scheme and Host.
    let s = TestServer::http(&["--trusted-proxies", "10.0.0.0/8"]).await;
    let doc: Value = http()
        .get(s.url("/.well-known/oauth-protected-resource/mcp"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "kw.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], format!("http://{}/mcp", s.running().addr));
    s.stop().await;

    // A configured public URL overrides everything, and is an allowed Host.
    let s = TestServer::http(&[
        "--public-url",
        "https://mcp.example.com",
        "--authorization-servers",
        "https://auth.example.com",
        "--resource-documentation",
        "https://docs.example.com/keyward",
    ])
    .await;
    let doc: Value = http()
        .get(s.url("/.well-known/oauth-protected-resource"))
        .header("host", "mcp.example.com")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example.com/"])
    );
    assert_eq!(
        doc["resource_documentation"],
        "https://docs.example.com/keyward"
    );
    s.stop().await;
}

#[tokio::test]
async fn foreign_origins_and_hosts_get_403_before_authentication_on_every_route() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    for path in [
        "/mcp",
        "/healthz",
        "/v1/auth/login",
        "/metrics",
        "/authorize/sign-in",
        "/authorize/decision",
    ] {
        let res = http()
            .post(s.url(path))
            .header("origin", "https://evil.example")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["message"], "Origin is not allowed");
    }
    // The public OAuth routes (no cookies, no ambient authority) skip the Origin allow-list
    // and answer CORS `*` without credentials; the Host check stays.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
    ] {
        let res = http()
            .get(s.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
        let res = http()
            .get(s.url(path))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}: the Host check stays");
    }
    // No Origin (a non-browser client) passes on to authentication.
    let res = post_mcp(&s, &initialize_body(), &[]).await;
    assert_eq!(res.status(), 401);
    // Same origin is fine.
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("origin", &format!("http://{}", s.running().addr))],
    )
    .await;
    assert_eq!(res.status(), 401, "same origin passes to authentication");
    // DNS rebinding: a foreign Host is refused even without Origin.
    let res = http()
        .get(s.url("/healthz"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nothing was audited or changed by the refusals above.
    s.app().audit.sync().await.unwrap();
    let events = keyward::store::audit::page(
        &s.app().store,
        &keyward::store::audit::AuditFilter::visible_to(keyward::domain::tenant::TenantScope::All),
        None,
        100,
    )
    .await
    .unwrap();
    assert!(
        events.iter().all(|e| e.action != "auth_failed"),
        "403s happen before authentication"
    );
    s.stop().await;
}

#[tokio::test]
async fn cors_has_three_modes() {
    let preflight = |s: &TestServer, origin: &str| {
        http()
            .request(reqwest::Method::OPTIONS, s.mcp())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-protocol-version",
            )
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // Authentication disabled: any origin, no credentials.
    let s = TestServer::http(&["--auth-mode", "disabled"]).await;
    let r = preflight(&s, "https://anything.example").await.unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    s.stop().await;

    // Authentication on, no allowed origins: no CORS headers; cross-origin requests refused.
    let s = TestServer::http(&[]).await;
    let r = http()
        .get(s.url("/healthz"))
        .header("origin", &format!("http://{}", s.running().addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = preflight(&s, "https://app.example.com").await.unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;

    // Allowed origins: echoed only when listed, with credentials and Vary: Origin.
    let s = TestServer::http(&[
        "--allowed-origins",
        "https://app.example.com,http://localhost:*",
    ])
    .await;
    let r = preflight(&s, "https://app.example.com").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&r, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(
        header(&r, "vary")
            .unwrap()
            .to_lowercase()
            .contains("origin")
    );
    let allowed = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    for h in [
        "content-type",
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    let r = post_mcp(
        &s,
        &initialize_body(),
        &[("origin", "http://localhost:5173")],
    )
    .await;
    assert_eq!(r.status(), 401);
    let exposed = header(&r, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("mcp-session-id") && exposed.contains("mcp-protocol-version"),
        "{exposed}"
    );
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    let r = preflight(&s, "https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_versions_are_refused_with_400() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let auth = format!("Bearer {key}");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let res = post_mcp(
        &s,
        &list,
        &[
            ("authorization", &auth),
            ("mcp-protocol-version", "1999-01-01"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    s.stop().await;
}
