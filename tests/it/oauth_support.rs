//! OAuth test support: registering clients, the browser's steps with plain reqwest (open
//! `/authorize`, read `request_id` and `csrf_token` from the page, sign in and decide with the
//! issuer's `Origin` and the binding cookie, read the 303 `Location`), the token endpoint as
//! a raw form, an `oauth2::AsyncHttpClient` over reqwest, and a log capture for the secrets scan.
//! Every request goes to the test server on 127.0.0.1; redirects are never followed.

use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

use crate::server::{TestServer, initialize_body, post_mcp};

/// A loopback redirect URI (never fetched: redirects are read, not followed).
pub const REDIRECT: &str = "http://localhost:53076/callback";

/// The issuer: the base URL, no trailing slash.
pub fn issuer(s: &TestServer) -> String {
    s.url("")
}

/// The canonical resource: the MCP endpoint.
pub fn resource(s: &TestServer) -> String {
    s.url("/mcp")
}

/// A client that never follows a redirect (the 303s are the answers under test).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v);
    }
    f.finish()
}

/// `oauth2`'s HTTP client: one request over reqwest, redirects not followed.
pub async fn oauth_http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let res = browser()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    let bytes = res.bytes().await?;
    Ok(out.body(bytes.to_vec()).expect("a response"))
}

// -- registration -----------------------------------------------------------------------------

/// `POST /register` with `body`: (status, JSON).
pub async fn register(s: &TestServer, body: &Value) -> (u16, Value) {
    let res = browser()
        .post(s.url("/register"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A public client (PKCE only) that may refresh, redirecting to `redirect`; its client_id.
pub async fn public_client(s: &TestServer, redirect: &str) -> String {
    let (status, v) = register(
        s,
        &json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "client_name": "oauth-it"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["client_id"].as_str().expect("client_id").to_owned()
}

/// A confidential client authenticating with `method` (client_secret_basic or _post).
pub async fn confidential_client(s: &TestServer, method: &str) -> (String, String) {
    let (status, v) = register(
        s,
        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code", "refresh_token"], "client_name": method}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["client_secret_expires_at"], 0, "{v}");
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned(),
    )
}

/// A fresh (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    (verifier.secret().clone(), challenge.as_str().to_owned())
}

// -- the browser --------------------------------------------------------------------------------

/// What the sign-in page handed the browser.
#[derive(Debug, Clone)]
pub struct Parked {
    pub request_id: String,
    pub csrf: String,
    /// `keyward_authz=…`
    pub cookie: String,
}

/// How the person signs in.
#[derive(Clone, Copy)]
pub enum Creds<'a> {
    Key(&'a str),
    Password(&'a str, &'a str),
}

/// The value of the hidden input `name` on an HTML page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

/// `GET` an authorization URL, raw.
pub async fn open_url(url: &str) -> reqwest::Response {
    browser().get(url).send().await.unwrap()
}
/// Opens an authorization URL that must show the sign-in page; what the browser keeps.
pub async fn park(url: &str) -> Parked {
    let res = open_url(url).await;
    assert_eq!(res.status(), 200, "sign-in page expected");
    let cookie = res
        .headers()
        .get("set-cookie")
        .expect("binding cookie")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("keyward_authz=kwrq_"), "{cookie}");
    let html = res.text().await.unwrap();
    Parked {
        request_id: hidden(&html, "request_id").expect("request_id"),
        csrf: hidden(&html, "csrf_token").expect("csrf_token"),
        cookie,
    }
}

/// A standard authorization query for `client_id` with `challenge`.
pub fn query<'a>(
    s: &TestServer,
    client_id: &'a str,
    redirect: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, String)> {
    vec![
        ("response_type", "code".to_owned()),
        ("client_id", client_id.to_owned()),
        ("redirect_uri", redirect.to_owned()),
        ("code_challenge", challenge.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
        ("state", "st-1".to_owned()),
        ("resource", resource(s)),
    ]
}

pub fn authorize_url(s: &TestServer, q: &[(&str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    format!("{}?{}", s.url("/authorize"), form(&pairs))
}

/// POSTs a form to one of the pages with exactly `headers` (no Origin or cookie added).
pub async fn post_page(
    s: &TestServer,
    path: &str,
    body: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browser()
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(body));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Signs in on a parked request as a browser on the issuer's page would.
pub async fn sign_in(s: &TestServer, p: &Parked, creds: Creds<'_>) -> reqwest::Response {
    let mut body = vec![
        ("request_id", p.request_id.as_str()),
        ("csrf_token", &p.csrf),
    ];
    match creds {
        Creds::Key(k) => body.extend([("api_key", k), ("method", "api_key")]),
        Creds::Password(u, pw) => {
            body.extend([("username", u), ("password", pw), ("method", "password")]);
        }
    }
    let origin = issuer(s);
    post_page(
        s,
        "/authorize/sign-in",
        &body,
        &[("origin", &origin), ("cookie", &p.cookie)],
    )
    .await
}

/// The consent form's fields for approving with `role` ("" = the default) over `tenants`.
pub fn approve<'a>(p: &'a Parked, role: &'a str, tenants: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("request_id", p.request_id.as_str()),
        ("csrf_token", p.csrf.as_str()),
        ("role", role),
        ("tenants", tenants),
        ("decision", "approve"),
    ]
}

/// POSTs the decision as the issuer's page would.
pub async fn decide(s: &TestServer, p: &Parked, fields: &[(&str, &str)]) -> reqwest::Response {
    let origin = issuer(s);
    post_page(
        s,
        "/authorize/decision",
        fields,
        &[("origin", &origin), ("cookie", &p.cookie)],
    )
    .await
}

/// The `Location` of a 303.
pub fn location(res: &reqwest::Response) -> url::Url {
    assert_eq!(res.status(), 303, "a redirect expected");
    url::Url::parse(res.headers()["location"].to_str().unwrap()).expect("a URL")
}

pub fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Opens `url`, signs in with `creds`, approves with `role`: the redirect back (with the code).
pub async fn consent(s: &TestServer, url: &str, creds: Creds<'_>, role: &str) -> url::Url {
    let p = park(url).await;
    let res = sign_in(s, &p, creds).await;
    assert_eq!(res.status(), 200, "consent page expected");
    let html = res.text().await.unwrap();
    assert!(html.contains("/authorize/decision"), "{html}");
    let res = decide(s, &p, &approve(&p, role, "")).await;
    location(&res)
}

// -- the token endpoint --------------------------------------------------------------------------

/// `POST /token` (or `/revoke`) with a form, optionally with HTTP Basic: (status, JSON).
pub async fn post_token(
    s: &TestServer,
    path: &str,
    body: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = browser()
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(body));
    if let Some((id, secret)) = basic {
        let enc = |v: &str| form(&[("x", v)])[2..].to_owned();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(id),
            enc(secret)
        ));
        req = req.header("authorization", format!("Basic {b64}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Exchanges `code` as a public client.
pub async fn exchange(
    s: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
    redirect: &str,
) -> (u16, Value) {
    post_token(
        s,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect),
        ],
        None,
    )
    .await
}

pub async fn refresh(s: &TestServer, client_id: &str, refresh_token: &str) -> (u16, Value) {
    post_token(
        s,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ],
        None,
    )
    .await
}

/// Tokens of one grant, as a public client got them.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub client_id: String,
    pub access: String,
    pub refresh: String,
    pub scope: String,
    pub code: String,
    pub verifier: String,
}

/// The whole flow for a new public client on `REDIRECT`: consent with `creds` and `role`.
pub async fn grant(s: &TestServer, creds: Creds<'_>, role: &str) -> Tokens {
    let client_id = public_client(s, REDIRECT).await;
    grant_for(s, &client_id, creds, role).await
}

/// The whole flow for an existing public client.
pub async fn grant_for(s: &TestServer, client_id: &str, creds: Creds<'_>, role: &str) -> Tokens {
    let (verifier, challenge) = pkce();
    let url = authorize_url(s, &query(s, client_id, REDIRECT, &challenge));
    let back = consent(s, &url, creds, role).await;
    let code = param(&back, "code").expect("code");
    let (status, v) = exchange(s, client_id, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 200, "{v}");
    Tokens {
        client_id: client_id.to_owned(),
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        scope: v["scope"].as_str().unwrap().to_owned(),
        code,
        verifier,
    }
}

// -- /mcp with a token ----------------------------------------------------------------------------

/// The status of an `initialize` at /mcp with `Bearer <token>`, and its WWW-Authenticate.
pub async fn mcp_status(s: &TestServer, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let res = post_mcp(s, &initialize_body(), &[("authorization", &auth)]).await;
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status().as_u16(), www)
}

/// Asserts a token is refused as a genuine one past its time: 401 `invalid_token`.
pub async fn assert_invalid_token(s: &TestServer, token: &str) {
    let (status, www) = mcp_status(s, token).await;
    assert_eq!(
        status, 401,
        "a genuine token past its time answers 401 invalid_token"
    );
    assert!(www.contains("error=\"invalid_token\""), "{www}");
}

/// The ids of the live grants the admin sees.
pub async fn grant_ids(s: &TestServer) -> Vec<String> {
    let admin = s.admin().await;
    let v = admin.ok("grant_list", json!({})).await;
    admin.close().await;
    v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The operator id of `alice` (see `TestServer::http_with_alice`).
pub async fn alice_id(s: &TestServer) -> String {
    let admin = s.admin().await;
    let ops = admin.ok("operator_list", json!({})).await;
    admin.close().await;
    ops["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["username"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// How many audit records of `action` the trail holds.
pub async fn count(s: &TestServer, action: &str) -> usize {
    let admin = s.admin().await;
    let n = admin
        .audit(json!({"action": [action], "limit": 100}))
        .await
        .len();
    admin.close().await;
    n
}

// -- the server's log -----------------------------------------------------------------------------

thread_local! {
    /// The capture running on this thread, if any.
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Appends to this thread's capture.
struct Sink;
impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = c.borrow().as_ref() {
                buf.lock().unwrap().extend_from_slice(b);
            }
        });
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One process-wide subscriber, installed once, that writes only on threads capturing. (A
/// scoped subscriber per test misses events: tracing caches a callsite's interest when
/// another test's thread first reaches it.)
fn install() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // Everything at trace, less what `keyward::telemetry` drops whatever RUST_LOG says:
        // rmcp's message bodies above INFO (they carry freshly minted keys by design).
        // Decided per event (never cached per callsite): whether this thread captures.
        let filter = tracing_subscriber::filter::DynFilterFn::new(|meta, _| {
            capturing()
                && (*meta.level() <= tracing::Level::INFO || !meta.target().starts_with("rmcp"))
        })
        .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes());
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Sink)
            .with_filter(filter);
        let _ = tracing_subscriber::registry().with(fmt).try_init();
    });
}

/// Everything logged on this thread while it lives, filtered as `keyward::telemetry` filters
/// it but at trace level. Tests run on a current-thread runtime, so the in-process server's
/// tasks log here too.
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn start() -> Self {
        install();
        let buf = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buf.clone()));
        LogCapture { buf }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}
