//! The audit tools answer questions in one call: filters as lists, time windows in a time zone,
//! pages with a cursor that carries its filters, grouped counts.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use crate::server::TestServer;

#[tokio::test]
async fn every_call_is_recorded_with_its_context() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let me = admin.ok("whoami", json!({})).await;
    admin.mint("bot", "reader", &["acme"]).await;
    admin
        .err("key_get", json!({"key_id": "key_doesnotexist"}))
        .await;

    let events = admin.audit(json!({"limit": 3})).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key_get", "key_create", "whoami"]);
    assert_eq!(events[0]["status"], "failed");
    assert_eq!(events[0]["target"], "key:key_doesnotexist");
    assert_eq!(events[1]["status"], "success");
    assert!(
        events
            .iter()
            .all(|e| e["actor"] == me["key_id"] && e["source"] == "stdio")
    );

    let full = admin.ok("audit_get", json!({"id": events[1]["id"]})).await["event"].clone();
    assert_eq!(full["claimed"]["client_name"], "keyward-it");
    assert_eq!(full["claimed"]["client_version"], "1.2.3");
    assert_eq!(full["established"]["role"], "admin");
    assert_eq!(full["tenants"], json!(["acme"]));
    assert_eq!(
        full["args"],
        json!({"name": "bot", "role": "reader", "tenants": ["acme"]})
    );
    assert!(full["claimed"]["request_id"].is_string());
    assert_eq!(full["after"]["name"], "bot");
    assert!(full["at"].as_str().unwrap().ends_with("+00:00"));
    admin.close().await;
}

#[tokio::test]
async fn one_question_one_call_with_list_filters_and_a_cursor() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let (_, a) = admin.mint("a", "reader", &["*"]).await;
    let (_, b) = admin.mint("b", "reader", &["*"]).await;
    let (_, c) = admin.mint("c", "reader", &["*"]).await;
    admin.ok("key_disable", json!({"key_id": a})).await;
    admin.ok("key_revoke", json!({"key_id": b})).await;
    admin.ok("key_rotate", json!({"key_id": c})).await;
    for _ in 0..3 {
        admin.ok("whoami", json!({})).await;
    }

    // "Who changed keys since yesterday?"
    let changes = admin
        .ok(
            "audit_query",
            json!({"action": ["key_disable", "key_revoke", "key_rotate"], "since": "yesterday", "limit": 2}),
        )
        .await;
    assert_eq!(changes["truncated"], true);
    assert_eq!(changes["events"].as_array().unwrap().len(), 2);
    assert!(
        changes["window"]["since"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000000+00:00")
    );
    let cursor = changes["next_cursor"].as_str().unwrap();
    let more = admin.ok("audit_query", json!({"cursor": cursor})).await;
    assert_eq!(more["truncated"], false);
    assert_eq!(
        more["events"].as_array().unwrap().len(),
        1,
        "the cursor kept the filters"
    );
    assert_eq!(more["events"][0]["action"], "key_disable");
    assert_eq!(more["window"], changes["window"], "and the window");
    let msg = admin
        .err(
            "audit_query",
            json!({"cursor": cursor, "status": ["denied"]}),
        )
        .await;
    assert!(msg.starts_with("pass next_cursor alone"), "{msg}");
    let msg = admin
        .err("audit_query", json!({"cursor": "eyJub3QiOiJhIGN1cnNvciJ9"}))
        .await;
    assert!(msg.starts_with("invalid cursor"), "{msg}");
    admin.close().await;
}

#[tokio::test]
async fn summaries_answer_who_did_most_and_who_keeps_failing() {
    let server = TestServer::stdio().await;
    let admin = server.admin().await;
    let (r1, r1_id) = admin.mint("r1", "reader", &["*"]).await;
    let (r2, r2_id) = admin.mint("r2", "reader", &["*"]).await;
    let r1c = server.client(&r1).await;
    let r2c = server.client(&r2).await;
    for _ in 0..3 {
        r1c.err("key_revoke", json!({"key_id": r2_id})).await;
    }
    r2c.err("audit_query", json!({})).await;

    // "Which keys keep getting denied?"
    let s = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["actor"], "status": ["denied"]}),
        )
        .await;
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["key"]["actor"], r1_id.as_str());
    assert_eq!(groups[0]["key"]["actor_preview"], &r1[..11]);
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[1]["count"], 1);
    assert_eq!(s["total_events"], 4);
    assert!(groups[0]["first_seen"].as_str().unwrap() <= groups[0]["last_seen"].as_str().unwrap());

    // Two dimensions, top N.
    let s = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["actor", "action"], "top": 1, "since": "1h"}),
        )
        .await;
    assert_eq!(s["groups"].as_array().unwrap().len(), 1);
    assert_eq!(s["truncated"], true);
    assert_eq!(s["groups"][0]["key"]["actor"], r1_id.as_str());
    assert_eq!(s["groups"][0]["key"]["action"], "key_revoke");
    assert_eq!(s["groups"][0]["count"], 3);

    // Under one actor, by its id or its key's name (on PostgreSQL, planned with index scans
    // off): that key's calls alone.
    for actor in [r1_id.as_str(), "r1"] {
        let s = admin
            .ok(
                "audit_summary",
                json!({"group_by": ["action"], "actor": [actor], "since": "1h"}),
            )
            .await;
        assert_eq!(s["total_events"], 3, "{actor}: {s}");
        assert_eq!(s["groups"][0]["key"]["action"], "key_revoke", "{actor}");
        assert_eq!(s["groups"].as_array().unwrap().len(), 1, "{actor}");
    }

    let msg = admin
        .err("audit_summary", json!({"group_by": ["hour", "day"]}))
        .await;
    assert_eq!(msg, "group by hour or by day, not both");
    let msg = admin.err("audit_summary", json!({"group_by": []})).await;
    assert_eq!(msg, "group_by takes one or two dimensions (at most 2)");
    for c in [r1c, r2c, admin.client] {
        c.close().await;
    }
}

#[tokio::test]
async fn time_windows_and_buckets_follow_the_time_zone() {
    // 22:30 UTC on 1 March is 07:30 on 2 March in Tokyo (+09:00).
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 22, 30, 0).unwrap();
    let h = TestServer::in_process(start).await;
    let admin = h.admin().await;
    admin.ok("whoami", json!({})).await;
    h.clock().advance(Duration::hours(2));
    admin.ok("whoami", json!({})).await;
    admin.ok("whoami", json!({})).await;

    let tokyo = admin
        .ok(
            "audit_query",
            json!({"action": ["whoami"], "since": "today", "time_zone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(tokyo["window"]["since"], "2026-03-02T00:00:00.000000+09:00");
    assert_eq!(tokyo["events"].as_array().unwrap().len(), 3);
    assert_eq!(tokyo["events"][2]["at"], "2026-03-02T07:30:00.000000+09:00");
    let utc_today = admin
        .ok(
            "audit_query",
            json!({"action": ["whoami"], "since": "today"}),
        )
        .await;
    assert_eq!(
        utc_today["events"].as_array().unwrap().len(),
        2,
        "00:30 and later, UTC"
    );
    let yesterday = admin
        .ok(
            "audit_query",
            json!({"action": ["whoami"], "since": "yesterday", "until": "yesterday"}),
        )
        .await;
    assert_eq!(
        yesterday["window"]["until"],
        "2026-03-02T00:00:00.000000+00:00"
    );
    assert_eq!(yesterday["events"].as_array().unwrap().len(), 1);
    let last_hour = admin
        .ok("audit_query", json!({"action": ["whoami"], "since": "90m"}))
        .await;
    assert_eq!(last_hour["events"].as_array().unwrap().len(), 2);

    let by_day = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["day"], "action": ["whoami"], "time_zone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1, "{by_day:#}");
    assert_eq!(by_day["groups"][0]["key"]["day"], "2026-03-02");
    let by_day_utc = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["day"], "action": ["whoami"]}),
        )
        .await;
    assert_eq!(by_day_utc["groups"][0]["key"]["day"], "2026-03-02");
    assert_eq!(by_day_utc["groups"][0]["count"], 2);
    assert_eq!(by_day_utc["groups"][1]["key"]["day"], "2026-03-01");
    let by_hour = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["hour"], "action": ["whoami"], "time_zone": "Asia/Kolkata"}),
        )
        .await;
    // +05:30: 22:30 UTC is 04:00 local, 00:30 UTC is 06:00 local.
    let hours: Vec<&str> = by_hour["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"]["hour"].as_str().unwrap())
        .collect();
    assert_eq!(
        hours,
        ["2026-03-02T06:00:00+05:30", "2026-03-02T04:00:00+05:30"]
    );

    let msg = admin
        .err("audit_query", json!({"since": "1h", "until": "2h"}))
        .await;
    assert!(msg.starts_with("the window is empty"), "{msg}");
    let msg = admin
        .err("audit_query", json!({"time_zone": "Mars/Olympus_Mons"}))
        .await;
    assert!(msg.starts_with("unknown time zone"), "{msg}");
}

/// Unfiltered summaries are answered from per-quarter counts, with the window's partial
/// quarters read from the events; the same question with a tenant filter that every event
/// here passes (they all concern all tenants) is answered from the events alone. Both must
/// agree exactly, group for group, first and last seen included. (Asked of the use case
/// directly, so that asking leaves no records of its own.)
#[tokio::test]
async fn summaries_from_counts_match_summaries_from_events() {
    use keyward::domain::audit::{Action, Status};
    use keyward::ops::audit::{Filters, GroupBy};

    // 10:07:13.5 UTC: mid-quarter, so every window below has partial quarters at its ends.
    let start = Utc.with_ymd_and_hms(2026, 3, 28, 10, 7, 13).unwrap() + Duration::milliseconds(500);
    let h = TestServer::in_process(start).await;
    let admin_key = h.admin_key().await;
    let admin = h.client(&admin_key).await;
    let (reader, _) = admin.mint("r", "reader", &["*"]).await;
    let reader = h.client(&reader).await;
    let steps = [7, 23, 1, 44, 130, 5, 61, 900, 15, 1440, 3, 600, 89];
    for (i, minutes) in steps.iter().enumerate() {
        admin.ok("whoami", json!({})).await;
        if i % 2 == 0 {
            admin.err("key_get", json!({"key_id": "key_nothere"})).await;
        }
        if i % 3 == 0 {
            reader
                .err(
                    "key_create",
                    json!({"name": "x", "role": "admin", "tenants": ["*"]}),
                )
                .await;
        }
        reader.ok("key_list", json!({})).await;
        h.clock()
            .advance(Duration::minutes(*minutes) + Duration::seconds(i as i64 * 7));
    }
    let p = keyward::ops::auth::authenticate_key(h.app(), &admin_key)
        .await
        .unwrap();
    let when = |s: &str| Some(s.to_owned());
    let window = |since: Option<String>, until: Option<String>, tz: &str| Filters {
        since,
        until,
        time_zone: Some(tz.to_owned()),
        ..Filters::default()
    };
    let by = |dims: &[&str]| -> Vec<GroupBy> { serde_json::from_value(json!(dims)).unwrap() };
    let questions: Vec<(Vec<GroupBy>, Filters)> = vec![
        (by(&["action"]), Filters::default()),
        (by(&["action"]), window(when("7d"), None, "UTC")),
        (
            by(&["status"]),
            window(
                when("2026-03-28T10:20:00Z"),
                when("2026-03-29T13:01:02Z"),
                "UTC",
            ),
        ),
        (by(&["role"]), window(when("36h"), None, "UTC")),
        (by(&["source"]), Filters::default()),
        (by(&["day"]), window(None, None, "Asia/Kathmandu")),
        (
            by(&["hour", "action"]),
            window(when("2d"), None, "Asia/Kolkata"),
        ),
        (
            by(&["day", "status"]),
            window(None, when("1h"), "Europe/Paris"),
        ),
        (
            by(&["hour"]),
            Filters {
                actions: vec![Action::KeyGet, Action::Whoami],
                ..window(when("3d"), None, "UTC")
            },
        ),
        (
            by(&["action"]),
            Filters {
                actions: vec![Action::KeyList],
                ..Filters::default()
            },
        ),
        (
            by(&["status"]),
            Filters {
                statuses: vec![Status::Denied, Status::Failed],
                ..window(None, when("1h"), "UTC")
            },
        ),
        (
            by(&["action"]),
            window(
                when("2026-03-28T10:08:00Z"),
                when("2026-03-28T10:09:00Z"),
                "UTC",
            ),
        ),
        (
            by(&["action"]),
            window(
                when("2026-03-28T10:05:00Z"),
                when("2026-03-28T10:40:00Z"),
                "UTC",
            ),
        ),
    ];
    for (group_by, filters) in questions {
        let asked = format!("{group_by:?} {filters:?}");
        let counted = keyward::ops::audit::summary(h.app(), &p, &filters, &group_by, Some(100))
            .await
            .unwrap();
        let from_events = Filters {
            tenants: vec!["acme".into()],
            ..filters.clone()
        };
        let raw = keyward::ops::audit::summary(h.app(), &p, &from_events, &group_by, Some(100))
            .await
            .unwrap();
        let json = |s: &keyward::ops::AuditSummary| serde_json::to_value(s).unwrap();
        assert_eq!(json(&counted), json(&raw), "{asked}");
    }
    let all =
        keyward::ops::audit::summary(h.app(), &p, &Filters::default(), &by(&["action"]), None)
            .await
            .unwrap();
    assert_eq!(
        all.total_events, 40,
        "the questions covered the whole trail"
    );
}

/// A tenant-scoped caller sees exactly the events whose every tenant is its own, whichever way
/// the store finds them: by the exact tenants texts (up to four tenants) or by testing each
/// event (more). Held against the all-tenant admin's view of every event and its tenants.
#[tokio::test]
async fn a_tenant_callers_view_equals_filtering_every_event_by_its_tenants() {
    let s = TestServer::stdio().await;
    let admin = s.admin().await;
    let scopes: [&[&str]; 6] = [
        &["acme"],
        &["globex"],
        &["acme", "globex"],
        &["globex", "initech"],
        &["abc"],
        &["*"],
    ];
    let mut bots = Vec::new();
    for (i, tenants) in scopes.iter().enumerate() {
        let (secret, id) = admin.mint(&format!("bot-{i}"), "reader", tenants).await;
        bots.push(id);
        let bot = s.client(&secret).await;
        bot.ok("whoami", json!({})).await;
        bot.close().await;
    }
    let callers: [&[&str]; 2] = [
        &["acme", "globex"],
        &["acme", "globex", "hooli", "stark", "wayne"],
    ];
    let mut keys = Vec::new();
    for (i, tenants) in callers.iter().enumerate() {
        keys.push(
            admin
                .mint(&format!("auditor-{i}"), "auditor", tenants)
                .await
                .0,
        );
    }
    // Every event so far, with its tenants.
    let everything = admin.audit_full(json!({"limit": 100})).await;
    assert!(
        everything.len() > 12 && everything.len() < 100,
        "{}",
        everything.len()
    );
    let last = everything
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap();
    for (tenants, key) in callers.iter().zip(&keys) {
        let mut expected: Vec<i64> = everything
            .iter()
            .filter(|e| {
                let of: Vec<&str> = e["tenants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect();
                !of.contains(&"*") && of.iter().all(|t| tenants.contains(t))
            })
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        expected.sort_unstable();
        assert!(expected.len() >= 5, "{tenants:?}: {expected:?}");
        let caller = s.client(key).await;
        let seen = sorted_ids_up_to(&caller.audit(json!({"limit": 100})).await, last);
        assert_eq!(seen, expected, "{tenants:?}");
        // With an actor as well (read by the actor's index, the tenants tested on each event),
        // by id and by name.
        for (i, bot) in bots.iter().enumerate() {
            let mut mine: Vec<i64> = everything
                .iter()
                .filter(|e| e["established"]["actor_id"] == bot.as_str())
                .filter_map(|e| e["id"].as_i64())
                .filter(|id| expected.contains(id))
                .collect();
            mine.sort_unstable();
            for actor in [bot.clone(), format!("bot-{i}")] {
                let page = caller.audit(json!({"limit": 100, "actor": [actor]})).await;
                assert_eq!(sorted_ids_up_to(&page, last), mine, "{tenants:?} {actor}");
            }
        }
        caller.close().await;
    }
    // Filtering by a tenant: the events scoped to all tenants and those naming it, by its
    // exact name ('_' is no wildcard: "a_c" is not "abc").
    for tenant in ["globex", "a_c", "abc"] {
        let mut expected: Vec<i64> = everything
            .iter()
            .filter(|e| {
                let of = e["tenants"].as_array().unwrap();
                of.iter().any(|t| t == "*" || t == tenant)
            })
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        expected.sort_unstable();
        let page = admin.audit(json!({"limit": 100, "tenant": [tenant]})).await;
        let seen = sorted_ids_up_to(&page, last);
        assert_eq!(seen, expected, "tenant {tenant}");
    }
    admin.close().await;
}

/// The ids of a page's events, up to `last` (later ones were written by the asking), sorted.
fn sorted_ids_up_to(events: &[serde_json::Value], last: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = events
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .filter(|id| *id <= last)
        .collect();
    ids.sort_unstable();
    ids
}

/// On PostgreSQL keyward's sessions run without JIT (a week's summary would otherwise spend
/// more time being compiled than run). Checked by the suite on PostgreSQL; SQLite has no JIT.
#[tokio::test]
async fn postgres_sessions_run_without_jit() {
    let h = TestServer::in_process(Utc::now()).await;
    if let keyward::store::Db::Postgres(pool) = &h.app().store.db {
        for _ in 0..3 {
            let jit: String = sqlx::query_scalar("SHOW jit")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(jit, "off");
        }
    }
}
