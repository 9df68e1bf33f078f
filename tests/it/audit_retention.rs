//! Retention keeps the trail provable: old bodies go in whole chunks, their hashes stay, the
//! per-quarter counts are recounted and the roll-ups refolded in the same transaction
//! (summaries still equal counting the events), each removal is an audited event, and verification reports the pruned range as
//! pruned, not missing. Removing old rows any other way still reads as tampering.

use chrono::{Duration, TimeZone, Utc};
use keyward::domain::audit::{Action, Source, Status};
use keyward::ops::CallMeta;
use keyward::ops::audit::{Counting, Filters, GroupBy, fold, summary_counted};
use keyward::ops::audit_log::{self, Why, retention};
use serde_json::{Value, json};

use crate::server::TestServer;

/// `n` events recorded directly, one minute apart, starting at the clock's time.
async fn history(s: &TestServer, n: usize) {
    for i in 0..n {
        let status = if i % 3 == 0 {
            Status::Denied
        } else {
            Status::Success
        };
        let event = CallMeta::new(Source::Http).event(s.app().now(), Action::Whoami, status, "key");
        s.app().audit.record(event).await.unwrap();
        s.clock().advance(Duration::minutes(1));
    }
    s.app().audit.sync().await.unwrap();
}

async fn counted_by_action(s: &TestServer) -> Vec<(String, i64)> {
    // The summary's own record may or may not be in yet (PostgreSQL commits it at once).
    let q = "SELECT action, COUNT(*) FROM audit_events WHERE action <> 'audit_summary' \
             GROUP BY action ORDER BY action";
    match &s.app().store.db {
        keyward::store::Db::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
        keyward::store::Db::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
    }
}

fn summarised(summary: &Value) -> Vec<(String, i64)> {
    let mut groups: Vec<(String, i64)> = summary["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"]["action"].as_str().unwrap().to_owned(),
                g["count"].as_i64().unwrap(),
            )
        })
        .filter(|(a, _)| a != "audit_summary")
        .collect();
    groups.sort();
    groups
}

#[tokio::test]
async fn old_bodies_go_their_hashes_stay_and_everything_still_verifies() {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let s = TestServer::in_process_with(start, |o| {
        o.audit_log.retention = Some(Duration::days(365));
    })
    .await;
    // An event dated 1969 (a clock that was wrong) among those the prune removes, and another
    // in the same hour that stays: neither is ever in the roll-ups, whatever retention refolds.
    let wrong_clock = |minute| {
        let at = Utc.with_ymd_and_hms(1969, 12, 31, 23, minute, 0).unwrap();
        CallMeta::new(Source::Http).event(at, Action::Whoami, Status::Success, "key")
    };
    s.app().audit.record(wrong_clock(30)).await.unwrap();
    history(&s, 700).await;
    s.app().audit.record(wrong_clock(40)).await.unwrap();
    s.app().audit.sync().await.unwrap();
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    // A year and a day later, the first 700 minutes are due.
    s.clock().advance(Duration::days(366));
    let admin = s.admin().await;
    admin.ok("whoami", json!({})).await;
    s.app().audit.sync().await.unwrap();
    // Rolled up (hours and the day) before the prune cuts into them.
    fold::fold(s.app()).await.unwrap();
    let removed = retention::prune_due(s.app()).await.unwrap();
    // Whole chunks only, never past the checkpoint (which covered 700): 512.
    assert_eq!(removed, 512);
    let head = keyward::store::audit::tree::head(&s.app().store)
        .await
        .unwrap();
    assert_eq!(head.pruned_below, 512);

    // Each batch is an audited event, in the trail with the rest.
    let prunes = admin
        .ok("audit_query", json!({"action": ["audit_prune"]}))
        .await;
    let events = prunes["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{prunes:#}");

    // Summaries (answered from the counts) still equal counting the events.
    let summary = admin
        .ok("audit_summary", json!({"group_by": ["action"], "top": 100}))
        .await;
    assert_eq!(summarised(&summary), counted_by_action(&s).await);
    assert!(
        summary["window"]["pruned_through"].is_string(),
        "a window reaching before the cutoff says so: {summary:#}"
    );
    let recent = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["action"], "since": "1d"}),
        )
        .await;
    assert!(recent["window"]["pruned_through"].is_null(), "{recent:#}");

    // So do summaries answered from the roll-ups: the hours and the day the prune cut into
    // were refolded from what remains.
    let p = keyward::ops::auth::authenticate_key(s.app(), &s.admin_key().await)
        .await
        .unwrap();
    for since in [None, Some("400d".to_owned())] {
        let f = Filters {
            since,
            ..Filters::default()
        };
        for g in [&["actor"][..], &["status", "actor"], &["client_ip"]] {
            let g: Vec<GroupBy> = serde_json::from_value(json!(g)).unwrap();
            let ask = |c| summary_counted(s.app(), &p, &f, &g, Some(100), c);
            let fast = serde_json::to_value(ask(Counting::Fastest).await.unwrap()).unwrap();
            let counted = serde_json::to_value(ask(Counting::EventsOnly).await.unwrap()).unwrap();
            assert_eq!(fast, counted, "{g:?} {f:?}");
        }
    }

    // The log still verifies, quick and full, and names the pruned range.
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    for full in [false, true] {
        let r = admin.ok("audit_verify", json!({"full": full})).await;
        assert_eq!(r["verdict"], "ok", "{r:#}");
        assert_eq!(r["checked"]["pruned_below"], 512);
        assert!(r["checked"]["pruned_through"].is_string());
    }
    admin.close().await;
}

#[tokio::test]
async fn old_rows_deleted_without_a_prune_record_read_as_tampering() {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let s = TestServer::in_process(start).await;
    history(&s, 300).await;
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    // Someone with the database makes it look pruned.
    for q in [
        "DELETE FROM audit_events WHERE seq < 256",
        "UPDATE audit_head SET pruned_below = 256",
    ] {
        s.sql(q).await;
    }
    let r = audit_log::verify(s.app(), audit_log::Mode::Quick, true, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(r.verdict, audit_log::Verdict::Tampered);
    let detail = r.first_problem.map(|p| p.detail).unwrap_or_default();
    assert!(
        detail.contains("no proven audit_prune event"),
        "a pruned range needs its record: {detail}"
    );
}

#[tokio::test]
async fn without_retention_nothing_is_removed() {
    let start = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let s = TestServer::in_process(start).await;
    history(&s, 300).await;
    audit_log::sign(s.app(), Why::Commit).await.unwrap();
    s.clock().advance(Duration::days(3000));
    assert_eq!(retention::prune_due(s.app()).await.unwrap(), 0);
    let head = keyward::store::audit::tree::head(&s.app().store)
        .await
        .unwrap();
    assert_eq!(head.pruned_below, 0);
}
