//! No secret reaches the database in plain text, the audit trail, or the logs: this test
//! creates secrets along every path, then scans the database file and all captured stderr
//! (written at RUST_LOG=debug, the most talkative setting).

use keyward::domain::key::PlainKey;
use serde_json::json;

use crate::server::TestServer;
use crate::support::secret;

#[tokio::test]
async fn secrets_never_reach_the_database_file_the_trail_or_the_logs() {
    let server = TestServer::stdio().await;
    let boot = server.env.bootstrap();
    let mut secrets = vec![secret(&boot)];
    let admin = server.client(&secrets[0]).await;
    let (k1, k1_id) = admin.mint("one", "key_manager", &["*"]).await;
    secrets.push(k1.clone());
    let rotated = admin
        .ok("key_rotate", json!({"key_id": k1_id, "grace_period": "1h"}))
        .await;
    secrets.push(secret(&rotated));
    // A secret pasted into arguments where it does not belong.
    let pasted = PlainKey::generate();
    secrets.push(pasted.expose().to_owned());
    admin
        .err("key_get", json!({"key_id": pasted.expose()}))
        .await;
    let msg = admin
        .err("key_create", json!({"name": "x", "role": "reader", "tenants": ["*"], "description": format!("old key was {}", pasted.expose())}))
        .await;
    assert_eq!(
        msg,
        "description appears to contain an API key; never put secrets in names or descriptions"
    );
    // Nor behind a zero-width space after its prefix.
    let hidden = format!("kw_\u{200B}{}", &pasted.expose()[3..]);
    let msg = admin
        .err(
            "key_create",
            json!({"name": "y", "role": "reader", "tenants": ["*"], "description": hidden}),
        )
        .await;
    assert!(msg.contains("appears to contain an API key"), "{msg}");
    let unknown = admin
        .try_call(
            "no_such_tool_with_secret",
            json!({"api_key": pasted.expose()}),
        )
        .await;
    assert!(unknown.is_err());
    // Refused credentials, at start-up.
    let forged = PlainKey::generate();
    secrets.push(forged.expose().to_owned());
    server.refused_start(Some(forged.expose()));
    let km = server.client(&k1).await;
    km.ok("whoami", json!({})).await;
    km.close().await;

    let digests: Vec<String> = secrets
        .iter()
        .map(|s| PlainKey::parse(s).unwrap().digest().to_hex())
        .collect();
    let events = admin.audit(json!({"limit": 100})).await;
    let mut trail = String::new();
    for e in &events {
        trail.push_str(
            &admin
                .ok("audit_get", json!({"id": e["id"]}))
                .await
                .to_string(),
        );
    }
    assert!(
        events.len() >= 8,
        "the scan covered the trail: {}",
        events.len()
    );
    // The live server's journal holds records too (SQLite).
    let journal = server.env.journal_bytes();
    assert!(
        server.env.is_postgres() || !journal.is_empty(),
        "the journal was scanned"
    );
    admin.close().await;

    let mut db = server.env.db_bytes();
    db.extend(journal);
    db.extend(server.env.journal_bytes());
    let logs = server.env.all_stderr();
    assert!(
        logs.contains("stdio caller authenticated"),
        "stderr was captured"
    );
    for (s, d) in secrets.iter().zip(&digests) {
        assert!(
            !contains(&db, s.as_bytes()),
            "a secret is in the database file"
        );
        assert!(!logs.contains(s.as_str()), "a secret is in the logs");
        assert!(
            !trail.contains(s.as_str()),
            "a secret is in the audit trail"
        );
        assert!(
            !trail.contains(d.as_str()),
            "a digest is in the audit trail"
        );
        assert!(!logs.contains(d.as_str()), "a digest is in the logs");
        // Even the checksum-less body must not appear.
        assert!(!logs.contains(&s[3..40]), "part of a secret is in the logs");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
