//! Bootstrap and start-up authentication over stdio.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::server::TestServer;
use crate::support::secret;

#[tokio::test]
async fn bootstrap_works_once_and_then_refuses() {
    let server = TestServer::stdio().await;
    let boot = server.env.bootstrap();
    assert!(boot["api_key"].as_str().unwrap().starts_with("kw_"));
    assert_eq!(boot["role"], "admin");
    assert!(boot["id"].as_str().unwrap().starts_with("key_"));

    let again = server
        .env
        .command()
        .args(["bootstrap", "--json"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("bootstrap is closed"), "{err}");
    assert!(again.stdout.is_empty());

    // The refusal created nothing: still exactly one admin key; both attempts are in the trail.
    let admin = server.client(&secret(&boot)).await;
    let keys = admin.ok("key_list", json!({})).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let events = admin.audit(json!({"action": ["bootstrap"]})).await;
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "success"]);
    assert!(events.iter().all(|e| e["source"] == "cli"));
    admin.close().await;
}

#[tokio::test]
async fn bad_keys_stop_the_server_with_one_clear_line_and_are_audited() {
    let server = TestServer::stdio().await;
    let boot = server.env.bootstrap();
    let good = secret(&boot);
    let truncated = &good[..good.len() - 1];
    let mut typo = good.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let forged = keyward::domain::key::PlainKey::generate();

    let cases = [
        (None, "KEYWARD_API_KEY is not set"),
        (Some("not-a-key"), "not a keyward API key"),
        (Some(truncated), "not a keyward API key"),
        (Some(typo.as_str()), "checksum mismatch"),
        (Some(forged.expose()), "unknown API key"),
    ];
    for (key, expected) in cases {
        let err = server.refused_start(key);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("keyward:")).collect();
        assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
        assert!(
            lines[0].contains(expected),
            "{expected:?} not in {:?}",
            lines[0]
        );
    }

    let admin = server.client(&good).await;
    let failures = admin
        .audit_full(json!({"action": ["auth_failed"], "source": ["stdio"]}))
        .await;
    assert_eq!(failures.len(), 5, "{failures:#?}");
    let reasons: Vec<&str> = failures
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"unknown API key"));
    assert!(reasons.contains(&"no API key presented"));
    assert!(failures.iter().all(|e| e["status"] == "denied"));
    // The forged key's preview is recorded so repeated attempts can be correlated.
    assert!(
        failures
            .iter()
            .any(|e| e["established"]["actor_preview"] == forged.preview())
    );
    admin.close().await;
}

#[tokio::test]
async fn disabled_revoked_and_expired_keys_cannot_start_a_session() {
    // Create a key that expired yesterday by running the server a while in the past.
    let h = TestServer::in_process(Utc::now() - Duration::days(10)).await;
    let admin_key = h.admin_key().await;
    let admin = h.client(&admin_key).await;
    let v = admin
        .ok(
            "key_create",
            json!({"name": "short", "role": "reader", "tenants": ["*"], "expires": "9d"}),
        )
        .await;
    let expired = secret(&v);
    let (disabled, disabled_id) = admin.mint("paused", "reader", &["*"]).await;
    let (revoked, revoked_id) = admin.mint("gone", "reader", &["*"]).await;
    admin
        .ok("key_disable", json!({"key_id": disabled_id}))
        .await;
    admin.ok("key_revoke", json!({"key_id": revoked_id})).await;
    admin.close().await;

    for (key, expected) in [
        (&expired, "API key has expired"),
        (&disabled, "API key is disabled"),
        (&revoked, "API key is revoked"),
    ] {
        let err = h.refused_start(Some(key));
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[tokio::test]
async fn development_mode_runs_without_a_key_and_says_so() {
    let server = TestServer::stdio().await;
    let mut cmd = tokio::process::Command::new(crate::support::BIN);
    cmd.args([
        "serve",
        "--stdio",
        "--auth-mode",
        "disabled",
        "--confirm-disabled-stdio",
    ])
    .env_remove("KEYWARD_DATABASE_URL")
    .env_remove("KEYWARD_API_KEY");
    let client = server.stdio_command(cmd).await;
    let who = client.ok("whoami", json!({})).await;
    assert_eq!(who["actor_kind"], "development");
    assert_eq!(who["role"], "admin");
    client.close().await;
    assert!(
        server
            .env
            .all_stderr()
            .contains("authentication is DISABLED")
    );
}
