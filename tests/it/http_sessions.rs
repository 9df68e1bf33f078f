//! Sign-in sessions over HTTP: cookie attributes, CSRF, revocation, lockout, legacy mode and
//! a sign-out the trail cannot record.

use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};

pub const PASSWORD: &str = "correct horse battery";

pub fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()["set-cookie"].to_str().unwrap().to_owned()
}

pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// `POST /v1/auth/login` as `username` with `PASSWORD`.
pub async fn login(s: &TestServer, username: &str) -> reqwest::Response {
    http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

/// Signs `username` in: its session cookie (`name=value`) and the server's own origin, as a
/// browser on it would send them.
pub async fn session(s: &TestServer, username: &str) -> (String, String) {
    let cookie = cookie_value(&set_cookie(&login(s, username).await));
    (cookie, format!("http://{}", s.running().addr))
}

pub async fn bootstrap(s: &TestServer, token: &str, username: &str) -> reqwest::Response {
    http()
        .post(s.url("/auth/bootstrap"))
        .json(&json!({"setup_token": token, "username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_that_authenticates_and_sign_out_revokes_it() {
    let s = TestServer::http(&[]).await;
    let token = s.running().setup_token.clone().unwrap();
    let key = bootstrap(&s, &token, "alice")
        .await
        .json::<Value>()
        .await
        .unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = login(&s, "nobody").await;
    assert_eq!(
        res.status(),
        401,
        "unknown user answers exactly like a wrong password"
    );

    let res = login(&s, "alice").await;
    assert_eq!(res.status(), 200);
    let sc = set_cookie(&res);
    for attr in [
        "keyward_session=kws_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(sc.contains(attr), "{attr} missing from {sc}");
    }
    assert!(!sc.contains("Secure"), "localhost: no Secure, {sc}");
    let who: Value = res.json().await.unwrap();
    assert_eq!(who["principal"]["actor_kind"], "operator");
    let cookie = cookie_value(&sc);
    let origin = format!("http://{}", s.running().addr);

    // The cookie authenticates MCP requests; a state-changing one must carry an allowed Origin.
    let res = post_mcp(&s, &initialize_body(), &[("cookie", &cookie)]).await;
    assert_eq!(
        res.status(),
        403,
        "no Origin on a cookie-authenticated POST"
    );
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(res.status(), 200);

    // Sign-out revokes the session server-side and clears the cookie.
    let res = http()
        .post(s.url("/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "sign-out by cookie needs an Origin too");
    let res = http()
        .post(s.url("/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res).contains("Max-Age=0"));
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(res.status(), 401);

    // Sign-in with an API key works too, and ends when the key's secret is rotated.
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"api_key": key}))
        .send()
        .await
        .unwrap();
    let key_cookie = cookie_value(&set_cookie(&res));
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &key_cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let admin = s.client(&key).await;
    let id = admin.ok("whoami", json!({})).await["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = admin.ok("key_rotate", json!({"key_id": id})).await;
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &key_cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(
        res.status(),
        401,
        "rotation ends sessions opened with the old secret"
    );
    let admin = s.client(rotated["api_key"].as_str().unwrap()).await;
    let logins = admin.audit(json!({"action": ["login", "logout"]})).await;
    assert_eq!(logins.len(), 3);
    admin.close().await;
    s.stop().await;

    // Behind an https public URL the cookie is Secure.
    let s = TestServer::http(&[
        "--public-url",
        "https://kw.example.com",
        "--session-max-age",
        "1h",
    ])
    .await;
    let token = s.running().setup_token.clone().unwrap();
    bootstrap(&s, &token, "bob").await;
    let res = http()
        .post(s.url("/v1/auth/login"))
        .header("host", "kw.example.com")
        .json(&json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let sc = set_cookie(&res);
    assert!(sc.contains("Secure") && sc.contains("Max-Age=3600"), "{sc}");
    s.stop().await;
}

#[tokio::test]
async fn parallel_password_guesses_are_counted_before_they_are_checked() {
    let s = TestServer::http(&[]).await;
    let token = s.running().setup_token.clone().unwrap();
    bootstrap(&s, &token, "alice").await;
    // 39 wrong guesses (at 39 names, so the per-username delay stays out of it) and the right
    // password, all at once from one address: only 20 are checked at all, so even the right
    // one is refused if it comes after the threshold.
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            if i == 39 {
                json!({"username": "alice", "password": PASSWORD})
            } else {
                json!({"username": format!("guess{i}"), "password": format!("wrong guess {i:04}")})
            }
        })
        .collect();
    let attempts = bodies
        .iter()
        .map(|b| http().post(s.url("/v1/auth/login")).json(b).send());
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|c| **c == 401 || **c == 200).count();
    let refused = statuses.iter().filter(|c| **c == 429).count();
    assert_eq!((checked, refused), (20, 20), "{statuses:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_successful_sign_in_does_not_count_toward_the_lockout() {
    let s = TestServer::http(&["--lockout-threshold", "3"]).await;
    let token = s.running().setup_token.clone().unwrap();
    bootstrap(&s, &token, "alice").await;
    for _ in 0..5 {
        let res = login(&s, "alice").await;
        assert_eq!(res.status(), 200);
    }
    s.stop().await;
}

#[tokio::test]
async fn a_managed_session_cookie_means_nothing_in_legacy_mode() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let (cookie, origin) = session(&s, "alice").await;
    let whoami = initialize_body();
    let headers = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
    assert_eq!(post_mcp(&s, &whoami, &headers).await.status(), 200);
    let env = s.stop().await;
    // The same database, switched to one shared key to cut every per-user credential.
    let s = TestServer::try_http_on(
        env,
        &[
            "--auth-mode",
            "legacy",
            "--legacy-api-key",
            "a-long-shared-secret-16+",
        ],
    )
    .await
    .unwrap();
    let origin = format!("http://{}", s.running().addr);
    let headers = [headers[0], ("origin", origin.as_str())];
    let res = post_mcp(&s, &whoami, &headers).await;
    assert_eq!(res.status(), 401, "{:?}", res.text().await);
    s.stop().await;
}

/// Runs `sql` on the server's database.
async fn exec(s: &TestServer, sql: &str) {
    match &s.app().store.db {
        keyward::store::Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        keyward::store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

#[tokio::test]
async fn a_sign_out_the_trail_cannot_record_does_not_happen() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let (cookie, origin) = session(&s, "alice").await;
    let logout = || {
        http()
            .post(s.url("/v1/auth/logout"))
            .header("cookie", &cookie)
            .header("origin", &origin)
            .send()
    };
    // The database refuses sign-out records.
    if matches!(s.app().store.db, keyward::store::Db::Sqlite(_)) {
        exec(&s, "CREATE TRIGGER no_logout BEFORE INSERT ON audit_events WHEN NEW.action = 'logout' BEGIN SELECT RAISE(ABORT, 'refused'); END").await;
    } else {
        exec(&s, "CREATE FUNCTION no_logout() RETURNS trigger AS $$ BEGIN IF NEW.action = 'logout' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql").await;
        exec(&s, "CREATE TRIGGER no_logout BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION no_logout()").await;
    }
    let res = logout().await.unwrap();
    assert!(res.status().is_server_error(), "{}", res.status());
    // Unrecorded, so not done: the session still works.
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let drop = if matches!(s.app().store.db, keyward::store::Db::Sqlite(_)) {
        "DROP TRIGGER no_logout"
    } else {
        "DROP TRIGGER no_logout ON audit_events"
    };
    exec(&s, drop).await;
    let res = logout().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(res.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn on_https_the_cookie_is_host_prefixed_and_no_other_is_taken() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    // Behind a TLS proxy on loopback (trusted by default).
    let res = http()
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let set = set_cookie(&res);
    assert!(set.starts_with("__Host-keyward_session="), "{set}");
    assert!(
        set.contains("Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let value = cookie_value(&set);
    let origin = format!("https://{}", s.running().addr);
    let headers = |cookie: &str| {
        [
            ("cookie", cookie.to_owned()),
            ("origin", origin.clone()),
            ("x-forwarded-proto", "https".to_owned()),
        ]
    };
    let h = headers(&value);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_mcp(&s, &initialize_body(), &h).await.status(), 200);
    // A cookie without the prefix (one a sibling subdomain could have set) is not taken.
    let tossed = value.replace("__Host-keyward_session", "keyward_session");
    let h = headers(&tossed);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_mcp(&s, &initialize_body(), &h).await.status(), 401);
    s.stop().await;
}
