//! First-admin bootstrap over HTTP, sign-in sessions (cookie attributes, CSRF, revocation)
//! and operators (people with passwords) managed through the guarded tools.

use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};

const PASSWORD: &str = "correct horse battery";

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()["set-cookie"].to_str().unwrap().to_owned()
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn bootstrap(s: &TestServer, token: &str, username: &str) -> reqwest::Response {
    http()
        .post(s.url("/auth/bootstrap"))
        .json(&json!({"setup_token": token, "username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn bootstrap_over_http_works_once_with_the_setup_token() {
    let s = TestServer::http(&[]).await;
    let token = s
        .running()
        .setup_token
        .clone()
        .expect("no admin yet, so a setup token");

    let res = bootstrap(&s, "wrong-token", "alice").await;
    assert_eq!(res.status(), 403);
    let res = http()
        .post(s.url("/auth/bootstrap"))
        .json(&json!({"setup_token": token, "username": "alice", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "password must be at least 12 characters"
    );

    let res = bootstrap(&s, &token, "Alice").await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["operator"]["username"], "alice");
    assert_eq!(body["operator"]["role"], "admin");
    assert_eq!(body["key"]["role"], "admin");
    let key = body["api_key"].as_str().unwrap().to_owned();

    // Used once: now gone, for the right token and any other.
    for t in [token.as_str(), "anything"] {
        let res = bootstrap(&s, t, "mallory").await;
        assert_eq!(res.status(), 410);
    }
    let admin = s.client(&key).await;
    let events = admin
        .audit_full(json!({"action": ["bootstrap"], "limit": 10}))
        .await;
    // (Records reach the tables by two paths, the journal and the change's own transaction,
    // so events at the same instant may list in either order.)
    let mut statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        ["failed", "failed", "failed", "success"],
        "closed attempts, and a correct token with a weak password, are audited"
    );
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "password must be at least 12 characters")
    );
    let failures = admin.audit_full(json!({"action": ["auth_failed"]})).await;
    assert_eq!(failures[0]["reason"], "wrong setup token");
    admin.close().await;
    s.stop().await;

    // With an admin already present, no token is printed and bootstrap is closed from the start.
    let s = TestServer::http(&[]).await;
    s.admin_key().await;
    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    assert!(s.running().setup_token.is_none());
    assert_eq!(bootstrap(&s, "x", "bob").await.status(), 410);
    s.stop().await;
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
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "nobody", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "unknown user answers exactly like a wrong password"
    );

    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
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
async fn operators_are_managed_within_the_callers_reach() {
    let s = TestServer::http(&[]).await;
    let admin = s.client(&s.admin_key().await).await;
    let created = admin
        .ok("operator_create", json!({"username": "Carol", "password": PASSWORD, "role": "key_manager", "tenants": ["acme"]}))
        .await;
    let carol = created["operator"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["operator"]["username"], "carol");
    assert!(!created.to_string().contains(PASSWORD));
    let msg = admin
        .err(
            "operator_create",
            json!({"username": "carol", "password": PASSWORD, "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert_eq!(msg, "that username is not available; choose another");
    let msg = admin
        .err("operator_create", json!({"username": "dave", "password": "too-short", "role": "reader", "tenants": ["*"]}))
        .await;
    assert_eq!(msg, "password must be at least 12 characters");

    // Carol signs in; as a key manager she cannot touch operators at all, and keys only in acme.
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = cookie_value(&set_cookie(&res));
    let origin = format!("http://{}", s.running().addr);
    let call = |name: &str, args: Value| json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await;
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let headers = [
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let _ = post_mcp(
        &s,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &headers,
    )
    .await;
    let text = post_mcp(&s, &call("operator_list", json!({})), &headers)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("requires operator:read"), "{text}");
    let text = post_mcp(
        &s,
        &call(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["globex"]}),
        ),
        &headers,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("globex outside your scope"), "{text}");

    // Role changes apply on the next request; a disabled operator's session stops working.
    admin
        .ok(
            "operator_set_role",
            json!({"operator_id": carol, "role": "auditor"}),
        )
        .await;
    let text = post_mcp(&s, &call("audit_query", json!({})), &headers)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"isError\":false"), "{text}");
    let listed = admin.ok("operator_list", json!({})).await;
    assert_eq!(listed["operators"][0]["role"], "auditor");
    assert!(listed["operators"][0]["last_login_at"].is_string());
    admin
        .ok("operator_disable", json!({"operator_id": carol}))
        .await;
    let res = post_mcp(&s, &call("whoami", json!({})), &headers).await;
    assert_eq!(res.status(), 401);
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    admin
        .ok("operator_enable", json!({"operator_id": carol}))
        .await;

    // Containment: an acme admin cannot create an all-tenant operator nor promote beyond itself.
    let (acme_key, _) = admin.mint("acme-admin", "key_manager", &["acme"]).await;
    let acme = s.client(&acme_key).await;
    let msg = acme.err("operator_list", json!({})).await;
    assert!(msg.contains("requires operator:read"), "{msg}");
    admin.ok("role_create", json!({"name": "people", "permissions": ["operator:read", "operator:write", "key:read", "role:read"]})).await;
    // Operators never expire, so only a key that never expires may manage them.
    let people_key = admin
        .ok(
            "key_create",
            json!({"name": "people", "role": "people", "tenants": ["acme"], "expires": "never"}),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let people = s.client(&people_key).await;
    let msg = people
        .err(
            "operator_create",
            json!({"username": "eve", "password": PASSWORD, "role": "admin", "tenants": ["acme"]}),
        )
        .await;
    assert!(
        msg.starts_with("cannot create an operator with role 'admin'"),
        "{msg}"
    );
    let msg = people
        .err(
            "operator_set_role",
            json!({"operator_id": carol, "role": "reader"}),
        )
        .await;
    assert!(
        msg.starts_with("cannot change the role of operator 'carol'"),
        "{msg}"
    );
    people
        .ok("operator_create", json!({"username": "frank", "password": PASSWORD, "role": "reader", "tenants": ["acme"]}))
        .await;
    let seen = people.ok("operator_list", json!({})).await;
    let names: Vec<&str> = seen["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "frank"], "only operators within acme");
    for c in [acme, people, admin] {
        c.close().await;
    }
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
        let res = http()
            .post(s.url("/v1/auth/login"))
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    s.stop().await;
}

#[tokio::test]
async fn closed_bootstrap_cannot_be_hammered() {
    let s = TestServer::http(&[]).await;
    s.admin_key().await;
    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    for _ in 0..20 {
        assert_eq!(bootstrap(&s, "x", "bob").await.status(), 410);
    }
    assert_eq!(
        bootstrap(&s, "x", "bob").await.status(),
        429,
        "closed attempts count toward the lockout"
    );
    s.stop().await;
}

#[tokio::test]
async fn legacy_mode_offers_no_sign_in_or_bootstrap() {
    let s = TestServer::http(&[
        "--auth-mode",
        "legacy",
        "--legacy-api-key",
        "a-long-shared-secret-16+",
    ])
    .await;
    assert!(s.running().setup_token.is_none());
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"api_key": "kw_x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(bootstrap(&s, "x", "bob").await.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn a_managed_session_cookie_means_nothing_in_legacy_mode() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = cookie_value(&set_cookie(&res));
    let origin = format!("http://{}", s.running().addr);
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
    match &s.app().store {
        keyward::store::Store::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        keyward::store::Store::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

#[tokio::test]
async fn a_sign_out_the_trail_cannot_record_does_not_happen() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = cookie_value(&set_cookie(&res));
    let origin = format!("http://{}", s.running().addr);
    let logout = || {
        http()
            .post(s.url("/v1/auth/logout"))
            .header("cookie", &cookie)
            .header("origin", &origin)
            .send()
    };
    // The database refuses sign-out records.
    if matches!(s.app().store, keyward::store::Store::Sqlite(_)) {
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
    let drop = if matches!(s.app().store, keyward::store::Store::Sqlite(_)) {
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
async fn a_disabled_operator_signing_in_is_recorded_as_an_operator() {
    let (s, key) = TestServer::http_with_alice(&[]).await;
    let admin = s.client(&key).await;
    let bob = admin
        .ok(
            "operator_create",
            json!({"username": "bob", "password": PASSWORD, "role": "reader", "tenants": ["*"]}),
        )
        .await;
    let bob_id = bob["operator"]["id"].as_str().unwrap().to_owned();
    admin
        .ok("operator_disable", json!({"operator_id": bob_id}))
        .await;
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let failed = admin
        .audit_full(json!({"action": ["auth_failed"], "actor": [bob_id]}))
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["actor_kind"], "operator");
    assert_eq!(failed[0]["reason"], "operator is disabled");
    admin.close().await;
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
