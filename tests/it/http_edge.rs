//! The HTTP edge: the 401 challenge, protected-resource metadata and its URL derivation,
//! Host/Origin checks, CORS modes, protocol versions, limits, TLS, health and metrics.

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
        assert_eq!(doc["authorization_servers"], json!([]));

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
        "/.well-known/oauth-protected-resource",
        "/v1/auth/login",
        "/metrics",
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

#[tokio::test]
async fn bodies_are_limited_and_slow_requests_time_out_with_clear_errors() {
    let s = TestServer::http(&["--max-body-bytes", "65536"]).await;
    let key = s.admin_key().await;
    let big = "x".repeat(100_000);
    let res = http()
        .post(s.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(json!({"username": big, "password": "p"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    let res = post_mcp(
        &s,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": big}}),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(res.status(), 413);
    s.stop().await;

    // A client that announces a body and never finishes sending it: the server cannot
    // answer before the limit, whatever the machine's speed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::http(&["--request-timeout", "50ms"]).await;
    let mut tcp = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{\"username\":",
        s.running().addr.port()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"error\":\"timeout\""), "{response}");
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let r = http().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: Value = http()
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "database": s.app().store.backend()})
    );
    // Through a proxy: the status, never the detail or the metrics.
    let proxied = |path: &str| {
        http()
            .get(s.url(path))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
    };
    let r = proxied("/readyz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));
    assert_eq!(proxied("/metrics").await.unwrap().status(), 403);

    let c = s.client(&key).await;
    c.ok("whoami", json!({})).await;
    let _ = post_mcp(
        &s,
        &initialize_body(),
        &[("authorization", "Bearer kw_nope")],
    )
    .await;
    let text = http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("keyward_tool_calls_total{tool=\"whoami\",outcome=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyward_auth_failures_total{reason=\"malformed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyward_http_requests_total{route=\"/mcp\",method=\"POST\",status=\"401\"}"),
        "{text}"
    );
    assert!(
        text.contains("keyward_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("keyward_lockouts_total 0"), "{text}");
    c.close().await;
    let r = http().get(s.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Made-up methods do not mint metric series.
    for i in 0..5 {
        let m = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let _ = http().request(m, s.url("/healthz")).send().await.unwrap();
    }
    let text = http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("M3") && text.contains("method=\"other\""),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn metrics_are_for_allowed_addresses_only() {
    let s = TestServer::http(&["--metrics-allow", "10.0.0.0/8"]).await;
    let r = http().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 403, "loopback is not on this list");
    let r = http().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));
    s.stop().await;
}

#[tokio::test]
async fn accepted_sockets_set_tcp_nodelay() {
    use keyward::http::server::{ConnLimits, Gate, Incoming};
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut listener =
        keyward::http::listener::PlainListener::new(tcp, Gate::new(ConnLimits::loopback()));
    let connect = tokio::net::TcpStream::connect(addr);
    let (accepted, _client) = tokio::join!(listener.accept(), connect);
    assert!(accepted.unwrap().0.get_ref().nodelay().unwrap());
}

#[tokio::test]
async fn tls_serves_https_with_the_given_certificate() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};

    let dir = tempfile::tempdir().unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let s = TestServer::http(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;

    let mut roots = RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Like curl and browsers, prefer HTTP/2: the server must not agree to what it cannot speak.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!(
        "GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        s.running().addr.port()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Over TLS the advertised resource is https.
    assert!(
        response.contains(&format!(
            "\"resource\":\"https://localhost:{}/mcp\"",
            s.running().addr.port()
        )),
        "{response}"
    );

    // A plain-text client gets no HTTP answer from the TLS port.
    let plain = http().get(s.url("/healthz")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    s.stop().await;
}

#[tokio::test]
async fn unsafe_listen_configurations_refuse_to_start() {
    let env = crate::support::Env::new();
    let start = |extra: &'static [&'static str]| {
        let url = env.url();
        async move {
            let clock = std::sync::Arc::new(keyward::clock::ManualClock::starting_now());
            let (app, _w) = keyward::open_app(&url, clock, Default::default())
                .await
                .unwrap();
            let mut argv = vec!["keyward", "serve"];
            argv.extend_from_slice(extra);
            let cli = <keyward::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
            let keyward::cli::Command::Serve(args) = cli.command else {
                unreachable!()
            };
            keyward::config::http_settings(&args, &app)
                .await
                .err()
                .map(|e| e.to_string())
        }
    };
    let err = start(&["--listen", "0.0.0.0:0"]).await.unwrap();
    assert!(
        err.starts_with("refusing to listen on 0.0.0.0:0 without TLS"),
        "{err}"
    );
    assert!(
        start(&["--listen", "0.0.0.0:0", "--behind-tls-proxy"])
            .await
            .is_none()
    );
    let err = start(&[
        "--listen",
        "0.0.0.0:0",
        "--behind-tls-proxy",
        "--auth-mode",
        "disabled",
    ])
    .await
    .unwrap();
    assert!(
        err.starts_with("refusing to run with authentication disabled"),
        "{err}"
    );
    assert!(
        start(&["--auth-mode", "disabled"]).await.is_none(),
        "loopback is fine"
    );
    let err = start(&["--public-url", "https://x.example/keyward"])
        .await
        .unwrap();
    assert!(err.contains("no path"), "{err}");
    let err = start(&["--allowed-origins", "app.example.com"])
        .await
        .unwrap();
    assert!(err.contains("invalid allowed origin"), "{err}");
}
