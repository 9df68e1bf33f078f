//! The OAuth sign-in and consent pages in a real headless Chromium, offline: a public client
//! registers, a person signs in with an API key they hold and approves (then, once more,
//! denies), and the browser lands on the client's loopback callback with the code (or the
//! refusal), `state` and `iss`; the code is exchanged with PKCE. Separately, the headers that
//! keep the sign-in page out of frames, caches and other sites' forms.
//!
//! The browser is Debian's `chromium`, driven through `chromedriver` (package
//! `chromium-driver`) over the W3C WebDriver protocol, spoken here with reqwest: a missing
//! driver fails the test (CI installs both), it never skips.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use keyward::domain::encoding::random_base62;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::server::{TestServer, http};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser flow (two authorizations) ends well within this.
const FLOW_LIMIT: Duration = Duration::from_secs(50);
const SCOPE: &str = "key:read audit:read";

#[tokio::test]
async fn a_person_approves_and_denies_in_a_real_browser() {
    let started = Instant::now();
    let driver = ChromeDriver::start().await;
    tokio::time::timeout(FLOW_LIMIT, browser_flow(&driver))
        .await
        .expect("the browser flow finished in time");
    eprintln!("oauth browser flow: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_sign_in_page_forbids_frames_caches_and_foreign_forms() {
    tokio::time::timeout(Duration::from_secs(20), sign_in_page_headers())
        .await
        .expect("the sign-in page was checked in time");
}

async fn sign_in_page_headers() {
    let s = TestServer::http(&[]).await;
    let base = s.url("");
    // Never reached: only the sign-in page is fetched.
    let redirect_uri = "http://127.0.0.1:9/callback";
    let client_id = register(&s, redirect_uri).await;
    let verifier = random_base62(64);
    let url = authorize_url(
        &base,
        &client_id,
        redirect_uri,
        &challenge(&verifier),
        "xyz",
    );
    let res = http().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        let values: Vec<String> = res
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(!values.is_empty(), "no {name} header");
        values
    };
    let csp = header("content-security-policy").join(", ");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("form-action"), "{csp}");
    assert_eq!(header("cache-control"), ["no-store"]);
    assert_eq!(header("referrer-policy"), ["same-origin"]);
    assert_eq!(header("x-frame-options"), ["DENY"]);
    let cookies = header("set-cookie");
    assert!(
        cookies
            .iter()
            .any(|c| c.contains("HttpOnly") && c.contains("SameSite=Lax")),
        "{cookies:?}"
    );
    s.stop().await;
}

async fn browser_flow(driver: &ChromeDriver) {
    let s = TestServer::http(&[]).await;
    let base = s.url("");
    let resource = format!("{base}/mcp");
    let key = s.admin_key().await;
    let mut app = ClientApp::start().await;
    let client_id = register(&s, &app.redirect_uri).await;
    let browser = Browser::open(driver).await;

    // Approve: sign in with the key, read who asks for what, allow.
    let verifier = random_base62(64);
    let url = authorize_url(
        &base,
        &client_id,
        &app.redirect_uri,
        &challenge(&verifier),
        "xyz",
    );
    browser.goto(&url).await;
    sign_in_with_key(&browser, &key).await;
    let consent = browser.text("body").await;
    for expected in ["Browser Test", "unverified", resource.as_str()] {
        assert!(
            consent.contains(expected),
            "the consent page does not mention {expected:?}:\n{consent}"
        );
    }
    browser
        .click("form[action='/authorize/decision'] button[name=decision][value=approve]")
        .await;
    let answer = app.next_callback().await;
    assert_eq!(answer.get("error"), None, "{answer:?}");
    let code = answer.get("code").expect("a code");
    assert!(code.starts_with("kwac_"), "{code}");
    assert_eq!(answer.get("state").map(String::as_str), Some("xyz"));
    assert_eq!(answer.get("iss"), Some(&base));

    // The client exchanges the code, proving it holds the verifier.
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &app.redirect_uri)
        .append_pair("client_id", &client_id)
        .append_pair("code_verifier", &verifier)
        .append_pair("resource", &resource)
        .finish();
    let res = http()
        .post(s.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access_token");
    assert!(access.starts_with("kwat_"), "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let scope = tokens["scope"].as_str().expect("scope");
    let granted: Vec<&str> = scope.split(' ').collect();
    assert!(
        !scope.is_empty() && granted.iter().all(|p| SCOPE.split(' ').any(|r| r == *p)),
        "granted {scope:?}, asked for {SCOPE:?}"
    );

    // Deny: a second authorization in the same browser.
    let url = authorize_url(
        &base,
        &client_id,
        &app.redirect_uri,
        &challenge(&random_base62(64)),
        "xyz-deny",
    );
    browser.goto(&url).await;
    sign_in_with_key(&browser, &key).await;
    browser
        .click("form[action='/authorize/decision'] button[name=decision][value=deny]")
        .await;
    let answer = app.next_callback().await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert_eq!(answer.get("code"), None, "{answer:?}");
    assert_eq!(answer.get("state").map(String::as_str), Some("xyz-deny"));
    assert_eq!(answer.get("iss"), Some(&base));

    browser.quit().await;
    s.stop().await;
}

/// On the sign-in page: the form as the contract has it, the key pasted, its button pressed;
/// returns once the consent form is there.
async fn sign_in_with_key(browser: &Browser, key: &str) {
    let form = "form[method=post][action='/authorize/sign-in']";
    for field in [
        "input[name=username]",
        "input[name=password]",
        "input[type=hidden][name=request_id]",
        "input[type=hidden][name=csrf_token]",
        "button[type=submit][name=method][value=password]",
    ] {
        browser.find(&format!("{form} {field}")).await;
    }
    browser
        .type_into(&format!("{form} input[name=api_key]"), key)
        .await;
    browser
        .click(&format!(
            "{form} button[type=submit][name=method][value=api_key]"
        ))
        .await;
    let consent = "form[method=post][action='/authorize/decision']";
    for field in [
        "select[name=role]",
        "input[name=tenants]",
        "input[type=hidden][name=request_id]",
        "input[type=hidden][name=csrf_token]",
        "button[type=submit][name=decision][value=approve]",
        "button[type=submit][name=decision][value=deny]",
    ] {
        browser.find(&format!("{consent} {field}")).await;
    }
}

/// `POST /register` of a public client (no secret) for `redirect_uri`; returns its client_id.
async fn register(s: &TestServer, redirect_uri: &str) -> String {
    let res = http()
        .post(s.url("/register"))
        .json(&json!({
            "client_name": "Browser Test",
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().expect("client_id").to_owned()
}

/// PKCE S256: base64url (no padding) of the verifier's SHA-256.
fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    state: &str,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("scope", SCOPE)
        .append_pair("resource", &format!("{base}/mcp"))
        .finish()
        // Spaces as %20, as most clients send them (a literal + is already %2B).
        .replace('+', "%20");
    format!("{base}/authorize?{query}")
}

// -- the OAuth client's side ----------------------------------------------------------------

/// The client application's loopback redirect target: each query string `/callback` receives.
struct ClientApp {
    redirect_uri: String,
    callbacks: mpsc::UnboundedReceiver<String>,
    server: tokio::task::JoinHandle<()>,
}

impl ClientApp {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, callbacks) = mpsc::unbounded_channel();
        let router = axum::Router::new().route(
            "/callback",
            axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
                let _ = tx.send(q.unwrap_or_default());
                async { axum::response::Html("<p>Back at the application.</p>") }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        ClientApp {
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
            callbacks,
            server,
        }
    }

    /// The next query string the callback receives, decoded (each name once).
    async fn next_callback(&mut self) -> HashMap<String, String> {
        let query = tokio::time::timeout(Duration::from_secs(15), self.callbacks.recv())
            .await
            .expect("the browser reached the callback in time")
            .expect("the callback server runs");
        let mut params = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()).into_owned() {
            assert!(
                params.insert(k.clone(), v).is_none(),
                "{k} twice in {query}"
            );
        }
        params
    }
}

impl Drop for ClientApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// -- the browser ------------------------------------------------------------------------------

/// `chromedriver` on a free loopback port, in a process group of its own: dropping it kills
/// the group, so the Chromium it started (which outlives a killed chromedriver) goes too, on
/// failure as on success.
struct ChromeDriver {
    child: Child,
    url: String,
    /// Their TMPDIR (Chromium's profile and chromedriver's scratch files), removed after the
    /// processes are gone.
    _tmp: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> Self {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: this test needs Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let tmp = tempfile::tempdir().unwrap();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .env("TMPDIR", tmp.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"))
        };
        let mut driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _tmp: tmp,
        };
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(res) = probe.get(format!("{}/status", driver.url)).send().await
                && let Ok(status) = res.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return driver;
            }
            if let Some(exit) = driver.child.try_wait().unwrap() {
                panic!("{CHROMEDRIVER} --port={port} exited at start: {exit}");
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not answer on port {port} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session: headless Chromium. Element lookups wait up to 10 s for the element
/// (the implicit wait), so nothing here sleeps.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
}

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn open(driver: &ChromeDriver) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run"],
            },
        }}});
        let created = command(&http, "POST", &format!("{}/session", driver.url), &caps).await;
        let id = created["sessionId"].as_str().expect("sessionId");
        let browser = Browser {
            http,
            session: format!("{}/session/{id}", driver.url),
        };
        browser
            .post(
                "/timeouts",
                &json!({"implicit": 10_000, "pageLoad": 15_000, "script": 5_000}),
            )
            .await;
        browser
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        command(&self.http, "POST", &format!("{}{path}", self.session), body).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", &json!({"url": url})).await;
    }

    /// The element `css` selects (waiting for it to appear).
    async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", &json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/value"), &json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/click"), &json!({})).await;
    }

    /// The rendered text of the element `css` selects.
    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        let url = format!("{}/element/{el}/text", self.session);
        let text = command(&self.http, "GET", &url, &Value::Null).await;
        text.as_str().expect("text").to_owned()
    }

    async fn quit(self) {
        command(&self.http, "DELETE", &self.session, &Value::Null).await;
    }
}

/// One WebDriver command; panics with the driver's own error when it fails.
async fn command(http: &reqwest::Client, method: &str, url: &str, body: &Value) -> Value {
    let req = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(body),
    };
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = res.status();
    let answer: Value = res
        .json()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {status}, not JSON: {e}"));
    assert!(
        status.is_success(),
        "WebDriver {method} {url} ({body}): {status} {}",
        answer["value"]
    );
    answer["value"].clone()
}
