//! Serving HTTP: body limits and request timeouts, health, readiness and metrics (and who may
//! read them), TCP_NODELAY, TLS, and listen configurations that refuse to start.

use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};

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
        json!({"status": "ready", "database": s.app().store.backend(), "audit_integrity": "ok"})
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
    let text = s.metrics().await;
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
    let text = s.metrics().await;
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
            keyward::http::settings::from_args(&args, || keyward::legacy_key(&app, &args))
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
