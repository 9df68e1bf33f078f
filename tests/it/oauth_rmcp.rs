//! rmcp's own client-side OAuth (`rmcp::transport::auth`) against keyward's authorization
//! server, as an MCP client runs it: discovery (protected resource metadata, then the
//! authorization server's metadata), dynamic registration or a client ID metadata document,
//! PKCE with the resource indicator, the code exchange, refresh, and MCP over streamable HTTP
//! with the token. The browser's part (sign-in with the admin's key, consent) is played with
//! plain HTTP requests; client metadata documents are served over TLS on 127.0.0.1 with a
//! certificate for `localhost` from a throwaway CA, which keyward trusts only through the
//! hidden `--oauth-test-cimd-ca` flag. And the SSRF guard: without that flag, a `client_id`
//! on this machine is refused before any connection is made.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::server::{TestServer, call, http};
use crate::support::Client;

/// Where rmcp asks to be sent back. Nothing listens there: the test reads the 303 itself.
/// keyward ignores the port of a loopback redirect URI, as clients pick one per sign-in.
const REDIRECT: &str = "http://127.0.0.1:8976/callback";

// -- a client metadata document host ----------------------------------------------------------

/// An https server on 127.0.0.1 with a certificate for `localhost` from its own CA, answering
/// every request with the JSON document `doc` makes of the URL asked for.
struct DocumentHost {
    port: u16,
    ca_pem: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocumentHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DocumentHost {
    async fn serve(doc: impl Fn(&str) -> Value + Send + Sync + 'static) -> Self {
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
        let doc = Arc::new(doc);
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, doc, r) = (acceptor.clone(), doc.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            r.fetch_add(1, Ordering::SeqCst);
                            let body = doc(&format!("https://localhost:{port}{}", req.uri()));
                            let res = hyper::Response::builder()
                                .header(CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap();
                            async move { Ok::<_, Infallible>(res) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        DocumentHost {
            port,
            ca_pem: ca.pem(),
            connections,
            requests,
            task,
        }
    }

    /// The document's URL, which is also the client's `client_id`.
    fn url(&self) -> String {
        format!("https://localhost:{}/client.json", self.port)
    }

    /// A keyward that trusts this host's CA and fetches documents from loopback (the CA file
    /// lives in `dir`, kept by the caller until the server stops).
    async fn keyward(&self, dir: &tempfile::TempDir) -> TestServer {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        TestServer::http(&["--oauth-test-cimd-ca", path.to_str().unwrap()]).await
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A public client's metadata document naming `client_id`.
fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "CIMD Test",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

// -- the browser ------------------------------------------------------------------------------

/// A browser that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden form field `name` in `page`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in the page:\n{page}"))
        + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_owned()
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// What the person saw and where their browser was sent at the end.
struct Approval {
    sign_in_page: String,
    location: String,
}

/// Opens `auth_url`, signs in with the API key `key`, and allows the request with the
/// ceiling the page preselects (what the client asked for, within the signer's role).
async fn approve(s: &TestServer, auth_url: &str, key: &str) -> Approval {
    let b = browser();
    let res = b.get(auth_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "the sign-in page");
    let cookie = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|c| c.starts_with("keyward_authz="))
        .expect("the browser cookie")
        .to_owned();
    let sign_in_page = res.text().await.unwrap();
    let request_id = hidden(&sign_in_page, "request_id");
    let csrf = hidden(&sign_in_page, "csrf_token");
    assert!(request_id.starts_with("rq_"), "{request_id}");
    let issuer = s.url("");
    let post = |path: &str, fields: &[(&str, &str)]| {
        b.post(s.url(path))
            .header(ORIGIN, &issuer)
            .header(COOKIE, &cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(fields))
            .send()
    };
    let res = post(
        "/authorize/sign-in",
        &[
            ("request_id", &request_id),
            ("csrf_token", &csrf),
            ("api_key", key),
            ("method", "api_key"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "the consent page");
    let consent = res.text().await.unwrap();
    assert!(
        consent.contains("action=\"/authorize/decision\""),
        "{consent}"
    );
    assert_eq!(hidden(&consent, "request_id"), request_id);
    assert_eq!(hidden(&consent, "csrf_token"), csrf);
    let res = post(
        "/authorize/decision",
        &[
            ("request_id", &request_id),
            ("csrf_token", &csrf),
            ("role", ""),
            ("tenants", "*"),
            ("decision", "approve"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    Approval {
        sign_in_page,
        location,
    }
}

// -- rmcp -------------------------------------------------------------------------------------

/// What rmcp holds after authorizing: its client id, the auth client (a handle on its token
/// store, shared with the transport), and the MCP client connected with it.
struct Authorized {
    client_id: String,
    auth: AuthClient<reqwest::Client>,
    client: Client,
    approval: Approval,
}

/// rmcp's whole flow against `s`: discovery from the MCP URL, `request`'s client
/// registration, the authorization URL, the browser's sign-in and consent as the admin,
/// the callback (state, iss, code exchange with the PKCE verifier), then an MCP connection.
async fn authorize(s: &TestServer, request: AuthorizationRequest) -> Authorized {
    let key = s.admin_key().await;
    let mut state = OAuthState::new(s.mcp(), None).await.expect("auth manager");
    state
        .start_authorization(request)
        .await
        .expect("discovery and client registration");
    let auth_url = state.get_authorization_url().await.unwrap();
    let url = url::Url::parse(&auth_url).unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(s.url("/authorize").as_str())
    );
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["resource"], s.mcp(), "RFC 8707: the canonical resource");
    assert_eq!(q["redirect_uri"], REDIRECT);
    let approval = approve(s, &auth_url, &key).await;
    let back = url::Url::parse(&approval.location).unwrap();
    let r: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert!(r["code"].starts_with("kwac_"), "{r:?}");
    assert_eq!(r["state"], q["state"]);
    assert_eq!(r["iss"], s.url(""));
    state
        .handle_callback_url(&approval.location)
        .await
        .expect("rmcp takes the callback and exchanges the code");
    let manager = state.into_authorization_manager().expect("authorized");
    let (client_id, tokens) = manager.get_credentials().await.unwrap();
    assert!(tokens.is_some(), "rmcp stored the tokens");
    let auth = AuthClient::new(reqwest::Client::default(), manager);
    let transport = StreamableHttpClientTransport::with_client(
        auth.clone(),
        StreamableHttpClientTransportConfig::with_uri(s.mcp()),
    );
    let service = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("keyward-it-oauth", "1.0.0"),
    )
    .serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
    .await
    .expect("MCP over streamable HTTP with the token");
    Authorized {
        client_id,
        auth,
        client: Client::from_service(service),
        approval,
    }
}

/// The token's caller is the admin's key acting through one grant of `client_id`, with the
/// admin's tools; returns the grant id.
async fn acts_as_admin(s: &TestServer, a: &Authorized) -> String {
    let admin = s.admin().await;
    assert_eq!(a.client.tool_names().await, admin.tool_names().await);
    let me = a.client.ok("whoami", json!({})).await;
    assert_eq!(me["actor_kind"], "key", "{me}");
    assert_eq!(me["key_id"].as_str(), Some(admin.id.as_str()), "{me}");
    assert_eq!(
        me["oauth"]["client_id"].as_str(),
        Some(a.client_id.as_str())
    );
    let grant = me["oauth"]["grant_id"]
        .as_str()
        .expect("a grant")
        .to_owned();
    assert!(grant.starts_with("gr_"), "{grant}");
    let grants = admin.ok("grant_list", json!({})).await;
    let grants = grants["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["id"], grant.as_str());
    assert_eq!(grants[0]["client_id"], a.client_id.as_str());
    admin.close().await;
    grant
}

/// A call with the admin's key itself, which stamps the key's last use. A refresh whose signer
/// key was last used over a minute ago stalls (see
/// `a_refresh_whose_signer_key_was_idle_does_not_stall_the_database`), so the tests of rmcp's
/// flows keep the stamp fresh, as an idle client's user would not.
async fn use_signer_key(s: &TestServer) {
    let admin = s.admin().await;
    admin.ok("whoami", json!({})).await;
    admin.close().await;
}

// -- the tests --------------------------------------------------------------------------------

#[tokio::test]
async fn rmcp_registers_dynamically_signs_in_calls_tools_and_refreshes() {
    let s = TestServer::http(&[]).await;
    let a = authorize(
        &s,
        AuthorizationRequest::new(REDIRECT).with_client_name("rmcp DCR Test"),
    )
    .await;
    assert!(a.client_id.starts_with("kwc_"), "{}", a.client_id);
    assert!(
        a.approval.sign_in_page.contains("rmcp DCR Test"),
        "the registered name is shown"
    );
    assert!(
        a.approval
            .sign_in_page
            .contains(&format!("registered with this server ({})", a.client_id)),
        "the identity shown is the registration"
    );
    let grant = acts_as_admin(&s, &a).await;

    // The access token lives 10 minutes on keyward's clock; rmcp's own clock still thinks it
    // fresh, sends it, gets 401 invalid_token, refreshes and retries, unseen by the caller.
    let first = a.auth.get_access_token().await.unwrap();
    assert!(first.starts_with("kwat_"), "{first}");
    s.clock().advance(Duration::minutes(11));
    use_signer_key(&s).await;
    let me = a.client.ok("whoami", json!({})).await;
    assert_eq!(me["oauth"]["grant_id"], grant.as_str(), "the same grant");
    let second = a.auth.get_access_token().await.unwrap();
    assert_ne!(second, first, "rmcp refreshed on the 401");
    let (status, _) = call(&http(), &s.mcp(), &first, "whoami", json!({}), &[])
        .await
        .unwrap();
    assert_eq!(status, 401, "the expired token stays refused");

    // And rmcp's explicit refresh: a rotated pair for the same grant.
    s.clock().advance(Duration::minutes(2));
    use_signer_key(&s).await;
    let refreshed = a.auth.auth_manager.lock().await.refresh_token().await;
    refreshed.expect("explicit refresh");
    let third = a.auth.get_access_token().await.unwrap();
    assert_ne!(third, second);
    let me = a.client.ok("whoami", json!({})).await;
    assert_eq!(me["oauth"]["grant_id"], grant.as_str());
    let admin = s.admin().await;
    assert_eq!(a.client.tool_names().await, admin.tool_names().await);
    let refreshes = admin
        .audit(json!({"action": ["oauth_refresh"], "status": ["success"]}))
        .await;
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    admin.close().await;
    a.client.close().await;
    s.stop().await;
}

#[tokio::test]
async fn rmcp_uses_a_client_id_metadata_document_and_calls_tools() {
    let host = DocumentHost::serve(document).await;
    let dir = tempfile::tempdir().unwrap();
    let s = host.keyward(&dir).await;
    let meta: Value = http()
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let a = authorize(
        &s,
        AuthorizationRequest::new(REDIRECT)
            .with_client_metadata_url(host.url())
            // Used only if rmcp fell back to dynamic registration, which it must not.
            .with_client_name("not registered"),
    )
    .await;
    assert_eq!(
        a.client_id,
        host.url(),
        "the document's URL is the client_id"
    );
    assert_eq!(host.requests(), 1, "fetched once, then cached");
    let page = &a.approval.sign_in_page;
    assert!(page.contains("CIMD Test"), "{page}");
    assert!(
        page.contains(&format!("<dd>localhost:{}</dd>", host.port)),
        "the host that vouches for the client is the identity shown: {page}"
    );
    acts_as_admin(&s, &a).await;
    // No client was registered along the way.
    let admin = s.admin().await;
    let registered = admin.audit(json!({"action": ["oauth_register"]})).await;
    assert!(registered.is_empty(), "{registered:?}");
    admin.close().await;

    // Refresh works for a document client too (client_id in the body, no secret).
    let first = a.auth.get_access_token().await.unwrap();
    s.clock().advance(Duration::minutes(11));
    use_signer_key(&s).await;
    a.client.ok("whoami", json!({})).await;
    assert_ne!(a.auth.get_access_token().await.unwrap(), first);
    assert_eq!(host.requests(), 1, "still the cached document");
    a.client.close().await;
    s.stop().await;
}

/// The 400 error page for `GET /authorize` with `client_id`: never a redirect.
async fn refused(s: &TestServer, client_id: &str) -> String {
    let mcp = s.mcp();
    let url = url::Url::parse_with_params(
        &s.url("/authorize"),
        [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1/callback"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSbW9cM0",
            ),
            ("code_challenge_method", "S256"),
            ("state", "xyz"),
            ("resource", &mcp),
        ],
    )
    .unwrap();
    let res = browser().get(url).send().await.unwrap();
    assert_eq!(res.status(), 400, "{client_id}");
    assert!(res.headers().get(LOCATION).is_none(), "{client_id}");
    assert!(res.headers().get(SET_COOKIE).is_none(), "{client_id}");
    let page = res.text().await.unwrap();
    assert!(
        page.contains("This request cannot continue"),
        "{client_id}: {page}"
    );
    page
}

#[tokio::test]
async fn without_the_test_flag_documents_on_this_machine_are_never_fetched() {
    let host = DocumentHost::serve(document).await;
    let s = TestServer::http(&[]).await;
    let page = refused(&s, &host.url()).await;
    assert!(page.contains("private or local network address"), "{page}");
    assert_eq!(host.connections(), 0, "keyward never connected");
    assert_eq!(host.requests(), 0);

    let page = refused(&s, &format!("https://127.0.0.1:{}/x", host.port)).await;
    assert!(page.contains("not an IP address"), "{page}");
    let page = refused(&s, "https://127.0.0.1/x").await;
    assert!(page.contains("not an IP address"), "{page}");
    refused(&s, "http://example.com/x").await;
    assert_eq!(host.connections(), 0);

    // rmcp, pointed at the same document, gets no further than keyward's error page.
    let mut state = OAuthState::new(s.mcp(), None).await.unwrap();
    state
        .start_authorization(
            AuthorizationRequest::new(REDIRECT).with_client_metadata_url(host.url()),
        )
        .await
        .unwrap();
    let auth_url = state.get_authorization_url().await.unwrap();
    let res = browser().get(&auth_url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get(LOCATION).is_none());
    assert_eq!(host.connections(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_document_naming_another_client_id_is_refused() {
    let host = DocumentHost::serve(|url| document(&format!("{url}?not-this-one"))).await;
    let dir = tempfile::tempdir().unwrap();
    let s = host.keyward(&dir).await;
    let page = refused(&s, &host.url()).await;
    assert!(
        page.contains("its client_id must be exactly the address it is served from"),
        "{page}"
    );
    assert_eq!(host.requests(), 1, "fetched once, then refused");
    s.stop().await;
}

/// keyward bug: `tokens::refresh` (src/ops/oauth/tokens.rs) opens its transaction (`BEGIN
/// IMMEDIATE` on SQLite) and then checks the signer with `auth::session::subject`, which, for a
/// key signer whose last use is over a minute old, writes `last_used_at` on another pooled
/// connection. On SQLite that write waits for the lock its own caller holds until the busy
/// timeout (10 s): the refresh stalls, every other database write (the audit journal's mover
/// too, so calls elsewhere fail with "the audit trail is unavailable") waits behind it, and
/// the stamp is lost. An idle client refreshing is the usual case, not a corner.
#[tokio::test]
async fn a_refresh_whose_signer_key_was_idle_does_not_stall_the_database() {
    let s = TestServer::http(&[]).await;
    let a = authorize(&s, AuthorizationRequest::new(REDIRECT)).await;
    // Another admin reads the signer key's last use: the signer's own key would stamp it.
    let admin = s.admin().await;
    let admin_id = admin.id.clone();
    admin.close().await;
    let other = s.persona("admin", &["*"]).await;
    let last_used = || async {
        other.ok("key_get", json!({"key_id": admin_id})).await["key"]["last_used_at"].clone()
    };
    let before = last_used().await;
    // Two minutes with neither the key nor the token in use; the token is still valid.
    s.clock().advance(Duration::minutes(2));
    let first = a.auth.get_access_token().await.unwrap();
    let refreshed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        a.auth.auth_manager.lock().await.refresh_token().await
    })
    .await;
    assert!(
        refreshed.is_ok(),
        "POST /token (refresh_token) took over 5 s: the signer check's last-use write waits for \
         the refresh's own SQLite transaction"
    );
    refreshed.unwrap().expect("refresh");
    assert_ne!(a.auth.get_access_token().await.unwrap(), first);
    // The signer's use through the refresh is stamped.
    assert_ne!(
        last_used().await,
        before,
        "the refresh's use of the key is stamped"
    );
    other.close().await;
    a.client.close().await;
    s.stop().await;
}
