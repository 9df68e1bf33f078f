//! The outside review's attacks on the provable trail, each a regression test: someone holding
//! the database (not the signing key) deletes a prefix and calls it retention, renames the log,
//! replays old checkpoints into an anchor, invents events from before the log, edits an event
//! and recomputes its hash inside a complete chunk, or adds rows past the head. And the false
//! alarms it found: another instance's checkpoints or a torn record in a shared anchor file.

use std::io::Write;

use chrono::{TimeZone, Utc};
use keyward::domain::audit::{Action, Source, Status};
use keyward::ops::CallMeta;
use keyward::ops::audit_log::{self, Mode, Verdict, Why};

use crate::server::TestServer;

async fn sql(s: &TestServer, q: &str) {
    s.sql(q).await;
}

/// A server with `n` events recorded directly and a checkpoint covering them.
async fn with_events(n: usize) -> TestServer {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let s = TestServer::in_process(start).await;
    for _ in 0..n {
        let e = CallMeta::new(Source::Http).event(
            s.app().now(),
            Action::Whoami,
            Status::Success,
            "key",
        );
        s.app().audit.record(e).await.unwrap();
    }
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    s
}

async fn verdict(s: &TestServer, mode: Mode) -> (Verdict, String) {
    let r = audit_log::verify(s.app(), mode, false, &|_, _| {})
        .await
        .unwrap();
    let detail = r.first_problem.map(|p| p.detail).unwrap_or_default();
    (r.verdict, detail)
}

fn checkpoint_log(s: &TestServer) -> std::path::PathBuf {
    s.app()
        .audit_log
        .checkpoint_log
        .clone()
        .expect("a checkpoint log file")
}

#[tokio::test]
async fn a_deleted_prefix_dressed_as_retention_is_tampering() {
    let s = with_events(600).await;
    sql(&s, "DELETE FROM audit_events WHERE seq < 512").await;
    sql(&s, "UPDATE audit_head SET pruned_below = 512").await;
    // A prune record with no place in the log does not excuse it either.
    sql(&s, "INSERT INTO audit_events (at, actor_kind, tenants, action, status, source, after_state) \
             VALUES (1, 'system', '*', 'audit_prune', 'success', 'cli', '{\"from_seq\":0,\"to_seq\":512}')").await;
    for mode in [Mode::Quick, Mode::Full] {
        let (v, _) = verdict(&s, mode).await;
        assert_eq!(v, Verdict::Tampered, "{mode:?}");
    }
}

#[tokio::test]
async fn renaming_the_log_in_the_database_hides_nothing() {
    let s = with_events(40).await;
    let before = s.app().audit_log.origin.clone();
    sql(
        &s,
        "UPDATE settings SET value = 'keyward/other' WHERE name = 'audit_log_origin'",
    )
    .await;
    // The log is named by its key, not by the row: reopened, it is the same log.
    let env = s.stop().await;
    let again = TestServer::try_http_on(env, &[]).await.unwrap();
    assert_eq!(again.app().audit_log.origin, before);
    let (v, d) = verdict(&again, Mode::Quick).await;
    assert_eq!(v, Verdict::Ok, "{d}");
}

#[tokio::test]
async fn replaying_old_checkpoints_into_the_anchor_file_is_noticed() {
    let s = with_events(30).await;
    let old = keyward::store::audit::checkpoints::latest(&s.app().store)
        .await
        .unwrap()
        .unwrap()
        .note;
    // Later history, signed and anchored.
    s.clock().advance(chrono::Duration::minutes(5));
    for _ in 0..10 {
        let e = CallMeta::new(Source::Http).event(
            s.app().now(),
            Action::Whoami,
            Status::Success,
            "key",
        );
        s.app().audit.record(e).await.unwrap();
    }
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(checkpoint_log(&s))
        .unwrap();
    for _ in 0..1500 {
        f.write_all(format!("{old}\n").as_bytes()).unwrap();
    }
    let (v, d) = verdict(&s, Mode::Quick).await;
    assert_eq!(v, Verdict::Tampered, "{d}");
    assert!(d.contains("appended again"), "{d}");
}

#[tokio::test]
async fn an_invented_event_from_before_the_log_is_tampering() {
    let s = with_events(10).await;
    sql(
        &s,
        "INSERT INTO audit_events (at, actor_kind, actor_id, tenants, action, status, source) \
             VALUES (1, 'key', 'k_victim', '*', 'key_revoke', 'success', 'http')",
    )
    .await;
    let (v, d) = verdict(&s, Mode::Quick).await;
    assert_eq!(v, Verdict::Tampered, "{d}");
    assert!(d.contains("before the log"), "{d}");
}

#[tokio::test]
async fn an_edit_with_a_recomputed_hash_inside_a_complete_chunk_is_found_by_the_quick_check() {
    let s = with_events(600).await;
    let (mut row, _) = keyward::store::audit::tree::rows_from(&s.app().store, 300, 1)
        .await
        .unwrap()
        .remove(0);
    row.reason = Some("nothing to see".into());
    let q = format!(
        "UPDATE audit_events SET reason = 'nothing to see', leaf_hash = {} WHERE seq = 300",
        s.bytes_literal(&row.leaf_hash())
    );
    sql(&s, &q).await;
    let (v, d) = verdict(&s, Mode::Quick).await;
    assert_ne!(v, Verdict::Ok, "{d}");
    assert_eq!(v, Verdict::Tampered, "{d}");
}

#[tokio::test]
async fn rows_past_the_head_are_tampering() {
    let s = with_events(20).await;
    let head = keyward::store::audit::tree::head(&s.app().store)
        .await
        .unwrap();
    let q = format!(
        "INSERT INTO audit_events (at, actor_kind, tenants, action, status, source, seq) \
         VALUES (1, 'key', '*', 'whoami', 'success', 'http', {})",
        head.size
    );
    sql(&s, &q).await;
    let (v, d) = verdict(&s, Mode::Quick).await;
    assert_eq!(v, Verdict::Tampered, "{d}");
    assert!(d.contains("past the tree head"), "{d}");
}

#[tokio::test]
async fn another_instances_checkpoints_and_a_torn_record_in_a_shared_file_are_no_alarm() {
    let s = with_events(20).await;
    let other = keyward::domain::checkpoint::SigningKey::generate("keyward/another").unwrap();
    let foreign = keyward::domain::checkpoint::Checkpoint {
        origin: "keyward/another".into(),
        size: 99,
        root: [7u8; 32],
        time: s.app().now().timestamp(),
        kind: "commit".into(),
        extra: vec![],
    }
    .sign(&[&other]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(checkpoint_log(&s))
        .unwrap();
    f.write_all(format!("{foreign}\n").as_bytes()).unwrap();
    // A record cut short (a crash mid-write), then the next one appended after it.
    f.write_all(b"keyward/x\n12\n").unwrap();
    drop(f);
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Heartbeat).await.unwrap();
    let r = audit_log::verify(s.app(), Mode::Quick, false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.first_problem);
}

#[tokio::test]
async fn a_missing_key_file_is_never_silently_replaced_once_the_log_has_signed() {
    let s = with_events(5).await;
    let env = s.stop().await;
    std::fs::remove_file(env.audit_key()).unwrap();
    let e = TestServer::try_http_on(env.clone(), &[])
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{e:#}").contains("signing key file is missing"),
        "{e:#}"
    );
    // A read-only command goes on without it, and verifies with the public key alone.
    let out = env.command().args(["audit", "verify"]).output().unwrap();
    assert!(!out.status.success(), "no key, no verdict of ok");
    assert!(!env.audit_key().exists(), "nothing created");
}
