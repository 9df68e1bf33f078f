//! The provable trail, attacked for real: rows edited, deleted, swapped and truncated in SQL,
//! checkpoints replaced by ones another key signed, a writer killed mid-stride, a backup
//! restored. Each gives its verdict through `audit_verify` (as a model calls it) and through
//! `keyward audit verify` (exit 0 only on ok), on whichever backend the suite runs.

use std::sync::Arc;

use keyward::domain::checkpoint::{Checkpoint, SigningKey};
use keyward::ops::audit_log::{self, Why};
use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::Env;

async fn sql(s: &TestServer, statements: &[&str]) {
    for q in statements {
        s.sql(q).await;
    }
}

/// A server with some history, every event covered by a checkpoint: returns the log size.
async fn with_history() -> (TestServer, i64) {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    for i in 0..6 {
        admin
            .ok(
                "key_create",
                json!({"name": format!("k{i}"), "role": "reader", "tenants": ["*"]}),
            )
            .await;
    }
    admin.ok("whoami", json!({})).await;
    s.app().audit.sync().await.unwrap();
    let signed = audit_log::sign(s.app(), Why::Commit).await.unwrap();
    assert!(signed.is_some(), "a checkpoint is signed");
    let size = s.scalar("SELECT size FROM audit_head").await;
    assert!(size >= 8, "{size}");
    admin.close().await;
    (s, size)
}

/// `audit_verify` as an admin calls it.
async fn verify(s: &TestServer, full: bool) -> Value {
    let admin = s.admin().await;
    let r = admin.ok("audit_verify", json!({"full": full})).await;
    admin.close().await;
    r
}

fn verdict(r: &Value) -> &str {
    r["verdict"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_untouched_trail_verifies_and_names_its_checkpoint_and_key() {
    let (s, size) = with_history().await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "ok", "{r:#}");
    assert!(r["first_problem"].is_null());
    assert!(r["checkpoint"]["size"].as_i64().unwrap() >= size);
    assert!(
        r["checkpoint"]["note"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} keyward/")
    );
    let vkey = r["public_key"].as_str().unwrap();
    assert_eq!(Some(vkey.to_owned()), s.app().audit_log.public_key());
    let full = verify(&s, true).await;
    assert_eq!(verdict(&full), "ok", "{full:#}");
    assert!(full["checked"]["bodies_rehashed"].as_u64().unwrap() >= size as u64);
    // Every event carries its place and leaf hash; the sequence has no gap.
    let n = s
        .scalar("SELECT COUNT(*) FROM audit_events WHERE seq IS NOT NULL AND leaf_hash IS NOT NULL")
        .await;
    let max = s.scalar("SELECT MAX(seq) FROM audit_events").await;
    assert_eq!(n, max + 1);
    s.stop().await;
}

#[tokio::test]
async fn an_edited_field_is_tampered_at_its_seq() {
    let (s, _) = with_history().await;
    sql(
        &s,
        &["UPDATE audit_events SET client_ip = '6.6.6.6' WHERE seq = 3"],
    )
    .await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "tampered", "{r:#}");
    assert_eq!(r["first_problem"]["seq"], 3);
    assert_eq!(r["first_problem"]["kind"], "body_mismatch");
    assert!(!r["next_step"].as_str().unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_edit_with_a_recomputed_leaf_hash_is_a_rewrite() {
    let (s, _) = with_history().await;
    // Whoever edits a row and recomputes its leaf hash still cannot match the signed root.
    let (mut row, _) = keyward::store::audit::tree::rows_from(&s.app().store, 2, 1)
        .await
        .unwrap()
        .remove(0);
    row.reason = Some("nothing to see".into());
    let set_leaf = format!(
        "UPDATE audit_events SET reason = 'nothing to see', leaf_hash = {} WHERE seq = 2",
        s.bytes_literal(&row.leaf_hash())
    );
    sql(&s, &[&set_leaf]).await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "rewritten", "{r:#}");
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_middle_row_is_tampered_at_its_seq() {
    let (s, _) = with_history().await;
    sql(&s, &["DELETE FROM audit_events WHERE seq = 4"]).await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "tampered", "{r:#}");
    assert_eq!(r["first_problem"]["seq"], 4);
    assert_eq!(r["first_problem"]["kind"], "missing_event");
    s.stop().await;
}

#[tokio::test]
async fn deleting_the_newest_rows_is_truncation() {
    let (s, size) = with_history().await;
    let q = format!("DELETE FROM audit_events WHERE seq >= {}", size - 3);
    sql(&s, &[&q]).await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "truncated", "{r:#}");
    assert_eq!(r["first_problem"]["seq"], size - 3);
    // Rolling the head back to match (a consistent edge for the shorter tree) does not help:
    // the checkpoint covers more.
    let kept = (size - 3) as u64;
    let leaves = keyward::store::audit::tree::leaves(&s.app().store, 0, kept)
        .await
        .unwrap();
    let mut edge = keyward::domain::merkle::Frontier::default();
    for i in 0..kept {
        edge.push(leaves[&i]);
    }
    let reset = format!(
        "UPDATE audit_head SET size = {kept}, frontier = {}",
        s.bytes_literal(&edge.to_bytes())
    );
    sql(&s, &[&reset]).await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "truncated", "{r:#}");
    s.stop().await;
}

#[tokio::test]
async fn two_swapped_rows_are_tampered() {
    let (s, _) = with_history().await;
    // Everything but the position moves: each row now sits where the other was.
    sql(
        &s,
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 1",
            "UPDATE audit_events SET seq = 1 WHERE seq = 5",
            "UPDATE audit_events SET seq = 5 WHERE seq = -1",
        ],
    )
    .await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "tampered", "{r:#}");
    assert_eq!(r["first_problem"]["seq"], 1);
    s.stop().await;
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_forged() {
    let (s, _) = with_history().await;
    let log = &s.app().audit_log;
    let head = keyward::store::audit::tree::head(&s.app().store)
        .await
        .unwrap();
    let frontier =
        keyward::domain::merkle::Frontier::from_bytes(head.size, &head.frontier).unwrap();
    let other = SigningKey::generate(&log.origin).unwrap();
    let forged = Checkpoint {
        origin: log.origin.clone(),
        size: head.size,
        root: frontier.root(),
        time: s.app().now().timestamp(),
        kind: "commit".into(),
        extra: vec![],
    }
    .sign(&[&other]);
    let q = format!(
        "UPDATE audit_checkpoints SET note = '{}' WHERE id = (SELECT MAX(id) FROM audit_checkpoints)",
        forged.replace('\'', "''")
    );
    sql(&s, &[&q]).await;
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "forged", "{r:#}");
    assert_eq!(r["first_problem"]["kind"], "bad_signature");
    s.stop().await;
}

#[tokio::test]
async fn no_checkpoint_past_the_heartbeat_is_stale_and_a_heartbeat_mends_it() {
    let (s, _) = with_history().await;
    s.clock().advance(chrono::Duration::minutes(16));
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "stale", "{r:#}");
    assert_eq!(r["first_problem"]["kind"], "no_recent_checkpoint");
    audit_log::sign(s.app(), Why::Heartbeat).await.unwrap();
    let r = verify(&s, false).await;
    assert_eq!(verdict(&r), "ok", "{r:#}");
    s.stop().await;
}

#[tokio::test]
async fn the_signer_refuses_to_sign_over_a_rewritten_log() {
    let (s, _) = with_history().await;
    sql(&s, &["DELETE FROM audit_events WHERE seq = 0"]).await;
    sql(&s, &["DELETE FROM audit_chunks"]).await;
    let e = audit_log::sign(s.app(), Why::Heartbeat).await.unwrap_err();
    assert!(e.to_string().contains("integrity"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn a_reader_cannot_verify_and_an_auditor_can() {
    let (s, _) = with_history().await;
    let reader = s.persona("reader", &["*"]).await;
    let e = reader.err("audit_verify", json!({})).await;
    assert!(e.contains("audit:verify"), "{e}");
    reader.close().await;
    let auditor = s.persona("auditor", &["*"]).await;
    let r = auditor.ok("audit_verify", json!({})).await;
    assert_eq!(verdict(&r), "ok", "{r:#}");
    auditor.close().await;
    s.stop().await;
}

fn cli_verify(env: &Env) -> (bool, Value) {
    let out = env
        .command()
        .args(["audit", "verify", "--json"])
        .output()
        .expect("run keyward audit verify");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), report)
}

#[tokio::test]
async fn after_kill_9_and_a_restart_the_trail_verifies_from_the_command_line() {
    let env = Arc::new(Env::new());
    let server = TestServer::process_on(&env, &[]);
    let admin = server.admin().await;
    for i in 0..5 {
        admin
            .ok(
                "key_create",
                json!({"name": format!("k{i}"), "role": "reader", "tenants": ["*"]}),
            )
            .await;
    }
    admin.close().await;
    let key = server.admin_key().await;
    drop(server); // SIGKILL
    let again = TestServer::process_on(&env, &[]);
    let admin = again.client(&key).await;
    admin.ok("whoami", json!({})).await;
    admin.close().await;
    assert!(again.terminate(), "a clean stop");
    let (ok, report) = cli_verify(&env);
    assert!(ok, "{report:#}");
    assert_eq!(report["verdict"], "ok");
    assert_eq!(report["checkpoint"]["kind"], "shutdown", "{report:#}");
    assert_eq!(report["checkpoint"]["size"], report["tree"]["size"]);
}

#[tokio::test]
async fn the_command_line_exits_non_zero_on_tampering_and_prints_the_key() {
    let env = Arc::new(Env::new());
    env.bootstrap();
    let (ok, report) = cli_verify(&env);
    assert!(ok, "bootstrap signs what it wrote: {report:#}");
    let out = env
        .command()
        .args(["audit", "public-key"])
        .output()
        .unwrap();
    let vkey = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(vkey.starts_with("keyward/"), "{vkey}");
    assert_eq!(report["public_key"], vkey.as_str());
    let s = TestServer::try_http_on(env.clone(), &[]).await.unwrap();
    sql(
        &s,
        &["UPDATE audit_events SET action = 'whoami' WHERE seq = 0"],
    )
    .await;
    s.stop().await;
    let (ok, report) = cli_verify(&env);
    assert!(!ok);
    assert_eq!(report["verdict"], "tampered", "{report:#}");
}

#[tokio::test]
async fn a_failed_check_at_start_is_loud_and_refuse_mode_stops_calls() {
    let (s, _) = with_history().await;
    let key = s.admin_key().await;
    sql(
        &s,
        &["UPDATE audit_events SET client_ip = '6.6.6.6' WHERE seq = 2"],
    )
    .await;
    let env = s.stop().await;
    // Warn (the default): served, but readiness detail, metrics and the trail say so.
    let warn = TestServer::process_on(&env, &[]);
    let ready: Value = reqwest::get(warn.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(
        ready["audit_integrity"]
            .as_str()
            .unwrap()
            .starts_with("tampered"),
        "{ready}"
    );
    let metrics = reqwest::get(warn.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keyward_audit_integrity_violation 1"),
        "{metrics}"
    );
    let admin = warn.client(&key).await;
    admin.ok("whoami", json!({})).await;
    let page = admin
        .ok("audit_query", json!({"action": ["audit_integrity"]}))
        .await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page:#}");
    admin.close().await;
    drop(warn);
    // Refuse: not ready, and only audit_verify runs.
    let refuse = TestServer::process_on(&env, &["--audit-on-violation", "refuse"]);
    let r = reqwest::get(refuse.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let admin = refuse.client(&key).await;
    let e = admin.err("whoami", json!({})).await;
    assert!(e.contains("integrity"), "{e}");
    let v = admin.ok("audit_verify", json!({})).await;
    assert_eq!(v["verdict"], "tampered");
    admin.close().await;
}

/// Copies the SQLite database's files (`keyward.db`, `-wal`, `-shm`) from one name to another.
fn copy_db(env: &Env, from_suffix: &str, to_suffix: &str) {
    let db = env.db_path();
    for ext in ["", "-wal", "-shm"] {
        let name = |s: &str| {
            let mut p = db.clone().into_os_string();
            p.push(s);
            p.push(ext);
            std::path::PathBuf::from(p)
        };
        let (from, to) = (name(from_suffix), name(to_suffix));
        // New files, never a rewrite in place: a connection of the stopped in-process server
        // may still map the old `-shm`, and rewriting it under that map broke a reopen once.
        let _ = std::fs::remove_file(&to);
        if from.exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

#[tokio::test]
async fn a_restored_backup_reads_as_truncated_until_it_is_declared_and_then_verifies() {
    let env = Arc::new(Env::sqlite());
    let key = env.bootstrap()["api_key"].as_str().unwrap().to_owned();
    // The backup: the database while nothing runs (the signing key is kept with it).
    copy_db(&env, "", ".bak");
    let s = TestServer::try_http_on(env.clone(), &[]).await.unwrap();
    let admin = s.client(&key).await;
    admin.ok("whoami", json!({})).await;
    admin.close().await;
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    s.stop().await;
    let (ok, _) = cli_verify(&env);
    assert!(ok);
    // Restored: the checkpoint file outside the database remembers more than it holds.
    copy_db(&env, ".bak", "");
    let (ok, report) = cli_verify(&env);
    assert!(!ok);
    assert_eq!(report["verdict"], "truncated", "{report:#}");
    // Declared (audited, signed and anchored like any checkpoint), it verifies again, and
    // keeps verifying as the log grows past the old size.
    let out = env
        .command()
        .args(["audit", "restored", "--confirm"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, report) = cli_verify(&env);
    assert!(ok, "{report:#}");
    let s = TestServer::try_http_on(env.clone(), &[]).await.unwrap();
    let admin = s.client(&key).await;
    for _ in 0..4 {
        admin.ok("whoami", json!({})).await;
    }
    let page = admin
        .ok("audit_query", json!({"action": ["audit_restore"]}))
        .await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    admin.close().await;
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    s.stop().await;
    let (ok, report) = cli_verify(&env);
    assert!(ok, "{report:#}");
}

#[tokio::test]
async fn a_rotated_key_is_vouched_for_by_the_old_one_and_both_verify() {
    let env = Arc::new(Env::new());
    let key = env.bootstrap()["api_key"].as_str().unwrap().to_owned();
    let old = env
        .command()
        .args(["audit", "public-key"])
        .output()
        .unwrap();
    let out = env
        .command()
        .args(["audit", "rotate-key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = TestServer::try_http_on(env.clone(), &[]).await.unwrap();
    let admin = s.client(&key).await;
    admin.ok("whoami", json!({})).await;
    s.app().audit.sync().await.unwrap();
    let signed = audit_log::sign(s.app(), Why::Commit)
        .await
        .unwrap()
        .unwrap();
    // The first checkpoint of the new key: signed by both, naming the new key.
    assert_eq!(
        signed.note.matches("\n\u{2014} ").count(),
        2,
        "{}",
        signed.note
    );
    let new = s.app().audit_log.public_key().unwrap();
    assert!(signed.note.contains(&format!("key {new}")));
    assert_ne!(String::from_utf8_lossy(&old.stdout).trim(), new);
    let r = admin.ok("audit_verify", json!({"full": true})).await;
    assert_eq!(r["verdict"], "ok", "{r:#}");
    admin.close().await;
    s.stop().await;
}
