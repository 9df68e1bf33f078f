//! Authentication over HTTP: bearer keys per request, legacy shared key, the failed-auth
//! lockout and its expiry on a controlled clock, and the audit trail of HTTP calls.

use std::collections::HashMap;

use chrono::Duration;
use keyward::domain::role::BuiltinRole;
use rmcp::service::ClientLifecycleMode;
use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};
use crate::support::{all_tools, role_tools};

#[tokio::test]
async fn each_caller_sees_its_tools_and_a_denied_call_is_audited_with_http_context() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (reader_key, reader_id) = admin.mint("reader-bot", "reader", &["*"]).await;
    assert_eq!(admin.tool_names().await, all_tools());

    let mut headers = HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-request-source"),
        http::HeaderValue::from_static("cli"),
    );
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("keyward-it/1.2.3"),
    );
    let reader = s
        .client_with(&reader_key, ClientLifecycleMode::Initialize, headers)
        .await;
    assert_eq!(reader.tool_names().await, role_tools(BuiltinRole::Reader));
    let msg = reader
        .err(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert!(msg.contains("requires key:create"), "{msg}");

    let denied = admin
        .audit(json!({"actor": [reader_id], "status": ["denied"], "source": ["http"]}))
        .await;
    assert_eq!(denied.len(), 1);
    let full = admin.ok("audit_get", json!({"id": denied[0]["id"]})).await["event"].clone();
    assert_eq!(full["established"]["client_ip"], "127.0.0.1");
    // What the client said of itself is grouped apart: anyone can claim to be the CLI.
    assert_eq!(full["established"]["source"], "http");
    assert_eq!(full["claimed"]["request_source"], "cli");
    assert_eq!(full["claimed"]["client_name"], "keyward-it");
    assert_eq!(full["claimed"]["user_agent"], "keyward-it/1.2.3");
    reader.close().await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_its_very_next_request() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let bot = s.persona("reader", &["*"]).await;
    let (key, id) = (bot.key.clone(), bot.id.clone());
    bot.ok("whoami", json!({})).await;
    admin.ok("key_revoke", json!({"key_id": id})).await;
    let res = post_mcp(
        &s,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(res.status(), 401);
    bot.close().await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn twenty_failures_lock_the_ip_and_the_lock_expires() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    let bad = "Bearer kw_not_a_real_key";
    for i in 1..=20 {
        let res = post_mcp(&s, &initialize_body(), &[("authorization", bad)]).await;
        assert_eq!(res.status(), 401, "failure {i}");
    }
    // Failures from the locked address are refused outright, and no longer counted.
    for _ in 0..3 {
        let res = post_mcp(&s, &initialize_body(), &[("authorization", bad)]).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "60");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "locked_out");
    }
    // A valid key cannot be guessed: it is still looked up and served, so one agent holding a
    // stale key cannot lock every other agent on its host out.
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"api_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "signing in with a valid key works too");
    // A password can be guessed: refused while locked.
    let res = http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": "someone", "password": "whatever password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "password sign-in is locked");

    s.clock().advance(Duration::seconds(59));
    let res = post_mcp(&s, &initialize_body(), &[("authorization", bad)]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    s.clock().advance(Duration::seconds(1));
    let res = post_mcp(&s, &initialize_body(), &[("authorization", bad)]).await;
    assert_eq!(res.status(), 401, "the lock has expired");
    let admin = s.client(&key).await;
    let lockouts = admin.audit(json!({"action": ["auth_lockout"]})).await;
    assert_eq!(lockouts.len(), 1);
    let failures = admin
        .audit(json!({"action": ["auth_failed"], "client_ip": ["127.0.0.1"], "limit": 100}))
        .await;
    assert_eq!(failures.len(), 21, "20, then one after the lock expired");
    let metrics = s.metrics().await;
    assert!(metrics.contains("keyward_lockouts_total 1"), "{metrics}");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn parallel_failures_cannot_slip_past_the_threshold() {
    let s = TestServer::http(&[]).await;
    let body = initialize_body();
    let attempts = (0..40).map(|_| post_mcp(&s, &body, &[("authorization", "Bearer kw_wrong")]));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized, 20, "{statuses:?}");
    assert_eq!(locked, 20, "{statuses:?}");
    s.stop().await;
}

#[tokio::test]
async fn legacy_mode_uses_one_shared_key_with_its_role() {
    let s = TestServer::http(&[
        "--auth-mode",
        "legacy",
        "--legacy-api-key",
        "a-long-shared-secret-16+",
    ])
    .await;
    let c = s.client("a-long-shared-secret-16+").await;
    let who = c.ok("whoami", json!({})).await;
    assert_eq!(who["actor_kind"], "legacy");
    assert_eq!(who["role"], "reader");
    assert_eq!(c.tool_names().await, role_tools(BuiltinRole::Reader));
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[("authorization", "Bearer a-long-shared-secret-17+")],
    )
    .await;
    assert_eq!(res.status(), 401);
    c.close().await;
    s.stop().await;

    let s = TestServer::http(&[
        "--auth-mode",
        "legacy",
        "--legacy-api-key",
        "short-but-ok",
        "--legacy-role",
        "auditor",
    ])
    .await;
    let c = s.client("short-but-ok").await;
    assert_eq!(c.ok("whoami", json!({})).await["role"], "auditor");
    c.close().await;
    s.stop().await;

    let env = std::sync::Arc::new(crate::support::Env::new());
    let err = TestServer::try_http_on(
        env,
        &["--auth-mode", "legacy", "--legacy-api-key", "7chars!"],
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("shorter than 8 characters; refusing to start"),
        "{err}"
    );
}

#[tokio::test]
async fn legacy_keys_of_8_to_15_characters_start_with_a_warning() {
    let env = crate::support::Env::new();
    let mut cmd = env.command();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--auth-mode",
        "legacy",
        "--request-timeout",
        "1s",
    ])
    .env("KEYWARD_LEGACY_API_KEY", "twelve-chars")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("shorter than 16 characters"), "{seen}");
    assert!(
        !seen.contains("twelve-chars"),
        "the key itself is never logged"
    );
}

/// A wrong key for a stdio server in legacy mode is refused at start with one clear line, and
/// the refusal is in the trail like every other refused credential.
#[tokio::test]
async fn a_refused_legacy_key_over_stdio_is_audited() {
    let env = std::sync::Arc::new(crate::support::Env::new());
    let out = env
        .command()
        .args(["serve", "--stdio", "--auth-mode", "legacy"])
        .env(
            "KEYWARD_LEGACY_API_KEY",
            "the-shared-legacy-key-of-40-characters!!",
        )
        .env("KEYWARD_API_KEY", "not-the-shared-key")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("KEYWARD_API_KEY is not the legacy shared key"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-shared-key"), "{stderr}");
    // The server (and its database) must outlive the persona.
    let server = TestServer::stdio_on(env);
    let admin = server.admin().await;
    let refused = admin
        .audit_full(json!({"action": ["auth_failed"], "source": ["stdio"]}))
        .await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["reason"], "unknown API key");
}

/// A legacy server that refuses to start (here: no TLS off loopback) leaves nothing behind:
/// its role is not marked as held by a shared key, so it can still be deleted.
#[tokio::test]
async fn a_legacy_server_refused_at_start_marks_no_role() {
    let env = std::sync::Arc::new(crate::support::Env::new());
    let server = TestServer::stdio_on(env.clone());
    let admin = server.admin().await;
    admin
        .ok(
            "role_create",
            json!({"name": "ops", "permissions": ["key:read"]}),
        )
        .await;
    let refused = legacy_start_refused(&env, &["--listen", "0.0.0.0:0"]);
    assert!(refused.contains("without TLS"), "{refused}");
    // On loopback, refused for a bad allowed origin instead: still nothing marked.
    let refused = legacy_start_refused(
        &env,
        &[
            "--listen",
            "127.0.0.1:0",
            "--allowed-origins",
            "not an origin",
        ],
    );
    assert!(refused.contains("origin"), "{refused}");
    admin.ok("role_delete", json!({"name": "ops"})).await;
}

/// `keyward serve` in legacy mode with role `ops` and `extra`, which must refuse to start; its
/// stderr.
fn legacy_start_refused(env: &crate::support::Env, extra: &[&str]) -> String {
    let out = env
        .command()
        .args(["serve", "--auth-mode", "legacy", "--legacy-role", "ops"])
        .args(extra)
        .env(
            "KEYWARD_LEGACY_API_KEY",
            "the-shared-legacy-key-of-40-characters!!",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}
