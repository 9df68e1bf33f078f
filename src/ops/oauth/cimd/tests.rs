//! Fetches against a TLS server on 127.0.0.1 whose certificate (for `localhost`) comes from a
//! throwaway CA; the fetcher trusts that CA and, for these tests only, loopback addresses.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeZone;
use http_body_util::combinators::BoxBody;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, Response};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::document::{DEFAULT_TTL, MAX_TTL, MIN_TTL};
use super::*;

type Body = BoxBody<Bytes, Infallible>;

/// The server's answer to a request for the document at a URL; `None` never answers.
type Answer = dyn Fn(&str) -> Option<Response<Body>> + Send + Sync;

struct Server {
    port: u16,
    ca: CertificateDer<'static>,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Each request as `path host accept user-agent`.
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn url(&self) -> String {
        format!("https://localhost:{}/client.json", self.port)
    }

    fn settings(&self) -> CimdSettings {
        CimdSettings {
            allow_loopback: true,
            extra_roots: vec![self.ca.clone()],
            ..CimdSettings::default()
        }
    }

    fn cimd(&self) -> Cimd {
        Cimd::new(self.settings())
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(answer: impl Fn(&str) -> Option<Response<Body>> + Send + Sync + 'static) -> Server {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer: Arc<Answer> = Arc::new(answer);
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, r, s) = (connections.clone(), requests.clone(), seen.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (acceptor, answer, r, s) = (acceptor.clone(), answer.clone(), r.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        r.fetch_add(1, Ordering::SeqCst);
                        let header = |name: hyper::header::HeaderName| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let line = format!(
                            "{} {} {} {}",
                            req.uri(),
                            header(HOST),
                            header(ACCEPT),
                            header(USER_AGENT)
                        );
                        s.lock().unwrap().push(line);
                        let answer = answer(&format!("https://localhost:{port}{}", req.uri()));
                        async move {
                            match answer {
                                Some(response) => Ok::<_, Infallible>(response),
                                None => std::future::pending().await,
                            }
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        port,
        ca: ca.der().clone(),
        connections,
        requests,
        seen,
        task,
    }
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "  Test\u{202E} Client\n ",
        "redirect_uris": ["https://client.example/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "client_uri": "https://client.example/",
        "logo_uri": "http://client.example/logo.png",
    })
}

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

fn json_reply(value: &Value) -> Response<Body> {
    reply(200, "application/json", value.to_string())
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

#[tokio::test]
async fn a_valid_document_is_fetched_then_served_from_the_cache() {
    let server = serve(|url| Some(json_reply(&document(url)))).await;
    let cimd = server.cimd();
    let doc = cimd.fetch(&server.url(), t0()).await.unwrap();
    assert_eq!(
        doc,
        ClientDocument {
            client_id: server.url(),
            client_name: Some("Test Client".into()),
            redirect_uris: vec!["https://client.example/callback".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            token_endpoint_auth_method: "none".into(),
            client_uri: Some("https://client.example/".into()),
            logo_uri: None,
            pinned: false,
        }
    );
    assert_eq!(
        *server.seen.lock().unwrap(),
        [format!(
            "/client.json localhost:{} application/json keyward",
            server.port
        )]
    );
    let again = cimd
        .fetch(&server.url(), t0() + TimeDelta::minutes(59))
        .await
        .unwrap();
    assert_eq!(again, doc);
    assert_eq!(server.requests(), 1, "the second fetch came from the cache");
    // Without Cache-Control a document is kept an hour.
    cimd.fetch(&server.url(), t0() + TimeDelta::minutes(61))
        .await
        .unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_document_naming_another_client_id_is_invalid() {
    let server = serve(|_| {
        Some(json_reply(&document(
            "https://elsewhere.example/client.json",
        )))
    })
    .await;
    let err = server.cimd().fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn a_document_not_served_as_json_is_refused() {
    let server = serve(|url| Some(reply(200, "text/html", document(url).to_string()))).await;
    let err = server.cimd().fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::NotJson), "{err:?}");
}

#[tokio::test]
async fn a_document_larger_than_the_limit_is_refused() {
    // Declared by Content-Length.
    let server = serve(|_| Some(json_reply(&json!({ "pad": "x".repeat(6000) })))).await;
    let err = server.cimd().fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::TooLarge), "{err:?}");
    // Chunked, with no declared length: cut off while reading.
    let server = serve(|_| {
        let chunks =
            (0..10).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 1000]))));
        let body = BoxBody::new(StreamBody::new(futures::stream::iter(chunks)));
        Some(
            Response::builder()
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body)
                .unwrap(),
        )
    })
    .await;
    let err = server.cimd().fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::TooLarge), "{err:?}");
}

#[tokio::test]
async fn a_redirect_is_an_error_and_is_not_followed() {
    let server = serve(|url| {
        if url.ends_with("/client.json") {
            let mut response = reply(302, "text/plain", "");
            let location = url.replace("/client.json", "/moved.json");
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, location.parse().unwrap());
            Some(response)
        } else {
            Some(json_reply(&document(url)))
        }
    })
    .await;
    let err = server.cimd().fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::Status(302)), "{err:?}");
    assert_eq!(server.requests(), 1, "the Location was not followed");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = serve(|_| None).await;
    let cimd = Cimd::new(CimdSettings {
        timeout: Duration::from_millis(300),
        ..server.settings()
    });
    let err = cimd.fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::Timeout), "{err:?}");
}

#[tokio::test]
async fn by_default_a_loopback_host_is_refused_before_connecting() {
    let server = serve(|url| Some(json_reply(&document(url)))).await;
    let cimd = Cimd::new(CimdSettings::default());
    let url = format!("https://localhost:{}/x", server.port);
    let err = cimd.fetch(&url, t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::PrivateAddress), "{err:?}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let server = serve(|url| Some(json_reply(&document(url)))).await;
    let cimd = Cimd::new(CimdSettings {
        allow_loopback: true,
        ..CimdSettings::default()
    });
    let err = cimd.fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::Tls(_)), "{err:?}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn addresses_are_checked_before_any_network_use() {
    let cimd = Cimd::new(CimdSettings::default());
    let refused = async |url: &str| cimd.fetch(url, t0()).await.unwrap_err();
    assert!(matches!(
        refused("http://client.example/client.json").await,
        CimdError::NotHttps
    ));
    for url in [
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://10.0.0.1/x",
        "https://client.example/",
        "https://client.example",
        "https://client.example/a#b",
        "https://user:pw@client.example/a",
        "https://Client.Example/a",
        "https://client.example:443/a",
        "https://client.example/a/../b",
        "not a url",
    ] {
        let err = refused(url).await;
        assert!(matches!(err, CimdError::BadUrl(_)), "{url}: {err:?}");
    }
    // Even in test mode only loopback literals pass the URL checks.
    assert!(check_url("https://127.0.0.1:8443/x", true).is_ok());
    assert!(check_url("https://10.0.0.1/x", true).is_err());
    assert!(check_url("https://client.example:8443/x?y=1", false).is_ok());
}

#[tokio::test]
async fn a_stale_copy_stands_in_when_the_server_is_gone() {
    let server = serve(|url| Some(json_reply(&document(url)))).await;
    let cimd = server.cimd();
    let url = server.url();
    let doc = cimd.fetch(&url, t0()).await.unwrap();
    drop(server);
    let stale = cimd.fetch(&url, t0() + TimeDelta::hours(2)).await.unwrap();
    assert_eq!(stale, doc);
    let err = cimd
        .fetch(&url, t0() + TimeDelta::days(8))
        .await
        .unwrap_err();
    assert!(matches!(err, CimdError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn failures_are_not_cached() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = failing.clone();
    let server = serve(move |url| {
        Some(if f.load(Ordering::SeqCst) {
            reply(500, "text/plain", "down")
        } else {
            json_reply(&document(url))
        })
    })
    .await;
    let cimd = server.cimd();
    let err = cimd.fetch(&server.url(), t0()).await.unwrap_err();
    assert!(matches!(err, CimdError::Status(500)), "{err:?}");
    failing.store(false, Ordering::SeqCst);
    assert!(cimd.fetch(&server.url(), t0()).await.is_ok());
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn the_pinned_copy_stands_in_when_the_fetch_fails() {
    let server = serve(|_| Some(reply(503, "text/plain", "down"))).await;
    let mut cimd = server.cimd();
    let pinned = ClientDocument {
        pinned: true,
        ..validate(
            &server.url(),
            document(&server.url()).to_string().as_bytes(),
        )
        .unwrap()
    };
    cimd.pinned.insert(server.url(), pinned.clone());
    assert_eq!(cimd.fetch(&server.url(), t0()).await.unwrap(), pinned);
    // An invalid live document falls back too.
    let server = serve(|_| Some(json_reply(&json!({ "client_id": "nope" })))).await;
    let mut cimd = server.cimd();
    cimd.pinned.insert(server.url(), pinned.clone());
    assert!(cimd.fetch(&server.url(), t0()).await.unwrap().pinned);
}

#[test]
fn every_pinned_document_passes_validation() {
    let cimd = Cimd::new(CimdSettings::default());
    assert_eq!(cimd.pinned.len(), PINNED.len());
    let expect = [
        (
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "Claude",
            &[
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.com/api/mcp/auth_callback",
            ],
        ),
        (
            "https://claude.ai/oauth/claude-code-client-metadata",
            "Claude Code",
            &["http://localhost/callback", "http://127.0.0.1/callback"],
        ),
        (
            "https://vscode.dev/oauth/client-metadata.json",
            "Visual Studio Code",
            &["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        ),
    ];
    for (id, name, redirects) in expect {
        let doc = &cimd.pinned[id];
        assert!(check_url(id, false).is_ok(), "{id}");
        assert_eq!(doc.client_id, id);
        assert_eq!(doc.client_name.as_deref(), Some(name));
        assert_eq!(doc.redirect_uris, redirects);
        assert_eq!(doc.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(doc.token_endpoint_auth_method, "none");
        assert!(doc.pinned);
    }
}

#[test]
fn document_rules() {
    let id = "https://client.example/c.json";
    let check = |mut change: Value| {
        let mut doc = json!({ "client_id": id, "redirect_uris": ["x:/cb"] });
        doc.as_object_mut()
            .unwrap()
            .append(change.as_object_mut().unwrap());
        validate(id, doc.to_string().as_bytes())
    };
    let minimal = check(json!({})).unwrap();
    assert_eq!(minimal.grant_types, ["authorization_code"]);
    assert_eq!(minimal.token_endpoint_auth_method, "none");
    assert_eq!(minimal.client_name, None);
    for bad in [
        json!({ "redirect_uris": [] }),
        json!({ "redirect_uris": "https://a/cb" }),
        json!({ "redirect_uris": [1] }),
        json!({ "redirect_uris": vec!["https://a/cb"; 21] }),
        json!({ "grant_types": ["client_credentials"] }),
        json!({ "grant_types": ["authorization_code", "implicit"] }),
        json!({ "grant_types": [] }),
        json!({ "token_endpoint_auth_method": "client_secret_basic" }),
        json!({ "token_endpoint_auth_method": null }),
        json!({ "client_id": "https://client.example/c.json/" }),
    ] {
        let err = check(bad.clone()).unwrap_err();
        assert!(matches!(err, CimdError::Invalid(_)), "{bad}: {err:?}");
    }
    assert!(check(json!({ "redirect_uris": vec!["https://a/cb"; 20] })).is_ok());
    assert!(matches!(validate(id, b"[1]"), Err(CimdError::Invalid(_))));
    assert!(matches!(validate(id, b"{"), Err(CimdError::NotJson)));
    let long = check(json!({ "client_name": format!(" {}", "é".repeat(150)) })).unwrap();
    assert_eq!(long.client_name, Some("é".repeat(100)));
    let blank = check(json!({ "client_name": " \u{200B}\t" })).unwrap();
    assert_eq!(blank.client_name, None);
    let uris = check(json!({ "client_uri": "javascript:alert(1)", "logo_uri": "https://a/l.png" }))
        .unwrap();
    assert_eq!(uris.client_uri, None);
    assert_eq!(uris.logo_uri.as_deref(), Some("https://a/l.png"));
}

#[test]
fn cache_lifetimes_follow_cache_control() {
    let ttl_of = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, value.parse().unwrap());
        ttl(&headers)
    };
    assert_eq!(ttl(&HeaderMap::new()), DEFAULT_TTL);
    assert_eq!(ttl_of("max-age=600"), 600);
    assert_eq!(ttl_of("public, Max-Age=10"), MIN_TTL);
    assert_eq!(ttl_of("max-age=999999999"), MAX_TTL);
    assert_eq!(ttl_of("max-age=600, no-store"), MIN_TTL);
    assert_eq!(ttl_of("max-age=soon"), DEFAULT_TTL);
}

#[test]
fn content_types() {
    let json = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, value.parse().unwrap());
        is_json(&headers)
    };
    assert!(json("application/json"));
    assert!(json("Application/JSON; charset=utf-8"));
    assert!(json("application/oauth-client+json"));
    assert!(!json("text/json+html"));
    assert!(!json("application/+json"));
    assert!(!json("text/plain"));
    assert!(!is_json(&HeaderMap::new()));
}

#[test]
fn the_cache_is_bounded_and_evicts_the_oldest() {
    let cimd = Cimd::new(CimdSettings {
        max_entries: 2,
        ..CimdSettings::default()
    });
    let doc = |id: &str| ClientDocument {
        client_id: id.into(),
        client_name: None,
        redirect_uris: vec!["https://a/cb".into()],
        grant_types: vec!["authorization_code".into()],
        token_endpoint_auth_method: "none".into(),
        client_uri: None,
        logo_uri: None,
        pinned: false,
    };
    cimd.remember("a", &doc("a"), t0(), DEFAULT_TTL);
    cimd.remember("b", &doc("b"), t0() + TimeDelta::seconds(1), DEFAULT_TTL);
    cimd.remember("c", &doc("c"), t0() + TimeDelta::seconds(2), DEFAULT_TTL);
    let now = t0() + TimeDelta::seconds(3);
    assert_eq!(cimd.fresh("a", now), None);
    assert_eq!(cimd.fresh("b", now), Some(doc("b")));
    assert_eq!(cimd.fresh("c", now), Some(doc("c")));
}

#[test]
fn errors_speak_to_the_client_developer() {
    assert_eq!(
        CimdError::PrivateAddress.to_string(),
        "the client metadata document's address resolves to a private or local network address, which this server refuses to fetch"
    );
    assert_eq!(
        CimdError::Status(302).to_string(),
        "the client metadata document's address answered HTTP status 302; it must answer 200 directly, without redirects"
    );
}
