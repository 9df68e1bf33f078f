//! Bootstrap closes for good the first time it succeeds, by any path; the setup token expires
//! and dies when bootstrap happens elsewhere; `keyward recover --admin` is the way back.

use serde_json::{Value, json};

use crate::server::{TestServer, http};
use crate::support::secret;

const PASSWORD: &str = "correct horse battery";

async fn bootstrap(s: &TestServer, token: &str) -> reqwest::Response {
    http()
        .post(s.url("/auth/bootstrap"))
        .json(&json!({"setup_token": token, "username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn bootstrap_never_reopens_whatever_happens_to_admins() {
    let s = TestServer::http(&[]).await;
    let token = s.running().setup_token.clone().expect("a setup token");

    // Bootstrapped elsewhere (the offline CLI) while this server holds its token: it dies.
    let boot = s.env.bootstrap();
    let res = bootstrap(&s, &token).await;
    assert_eq!(res.status(), 410);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bootstrap is closed"),
        "{body}"
    );

    // Power moves to a custom role and the built-in admin key is revoked: no key or operator
    // holds the role named 'admin' any more, and still bootstrap stays closed.
    let root = s.client(&secret(&boot)).await;
    let all = keyward::domain::permission::Permission::ALL
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>();
    root.ok("role_create", json!({"name": "boss", "permissions": all}))
        .await;
    let boss = root
        .ok(
            "key_create",
            json!({"name": "boss", "role": "boss", "tenants": ["*"], "expires": "never"}),
        )
        .await;
    let boss_key = secret(&boss);
    let boss = s.client(&boss_key).await;
    boss.ok("key_revoke", json!({"key_id": boot["id"]})).await;
    boss.close().await;
    root.close().await;

    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    assert!(
        s.running().setup_token.is_none(),
        "a restart prints no token once bootstrap has closed"
    );
    assert_eq!(bootstrap(&s, &token).await.status(), 410);
    let out = s
        .env
        .command()
        .args(["bootstrap", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the CLI path is closed too");

    let boss = s.client(&boss_key).await;
    let events = boss
        .audit(json!({"action": ["bootstrap"], "limit": 10}))
        .await;
    // (The in-process server's clock is its own: order by status, not time.)
    let mut statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["failed", "failed", "failed", "success"]);
    s.stop().await;
}

#[tokio::test]
async fn the_setup_token_expires() {
    let s = TestServer::http(&["--setup-token-lifetime", "5m"]).await;
    let token = s.running().setup_token.clone().unwrap();
    s.clock().advance(chrono::Duration::minutes(5));
    let res = bootstrap(&s, &token).await;
    assert_eq!(res.status(), 410);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["message"],
        "the setup token has expired; restart keyward for a new one"
    );
    // Restarting gives a new token (bootstrap never happened), which works.
    let env = s.stop().await;
    let s = TestServer::try_http_on(env, &[]).await.unwrap();
    let token = s.running().setup_token.clone().unwrap();
    let res = bootstrap(&s, &token).await;
    assert_eq!(res.status(), 201);
    let key = res.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = s.client(&key).await;
    let events = admin
        .audit(json!({"action": ["bootstrap"], "limit": 10}))
        .await;
    let failed = events.iter().find(|e| e["status"] == "failed").unwrap();
    let full = admin.ok("audit_get", json!({"id": failed["id"]})).await;
    assert_eq!(
        full["event"]["reason"],
        "bootstrap attempted with an expired setup token"
    );
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn recover_mints_an_admin_key_offline_and_is_audited() {
    let server = TestServer::stdio().await;
    let env = &server.env;
    let boot = env.bootstrap();
    // Without --admin it does nothing.
    let out = env.command().args(["recover"]).output().unwrap();
    assert!(!out.status.success());

    let out = env
        .command()
        .args(["recover", "--admin", "--json", "--expires", "1d"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["role"], "admin");
    assert_eq!(made["tenants"], json!(["*"]));
    assert!(made["expires_at"].is_string());

    let recovered = server.client(&secret(&made)).await;
    let who = recovered.ok("whoami", json!({})).await;
    assert_eq!(who["role"], "admin");
    let events = recovered.audit(json!({"action": ["recover"]})).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source"], "cli");
    assert_eq!(
        events[0]["target"],
        format!("key:{}", made["id"].as_str().unwrap())
    );
    recovered.close().await;
    drop(boot);
}
