//! Audit in conversation: actors and targets named the way people speak of them, novelty in
//! `audit_summary` (held to a naive count of the events), and what the server established
//! kept apart from what the caller claimed.

use std::collections::{BTreeMap, HashMap};

/// (actor, value) → (count, first seen, last seen).
type Novel = BTreeMap<(String, String), (i64, DateTime<Utc>, DateTime<Utc>)>;
/// A caller, a label, what to read from an event, and the arguments.
type Case<'a> = (&'a Client, &'a str, fn(&Value) -> Option<String>, Value);

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use keyward::clock::Clock;
use rmcp::service::ClientLifecycleMode;
use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::Client;

#[tokio::test]
async fn who_revoked_keys_is_answered_with_names_in_one_call() {
    let s = TestServer::in_process(Utc::now()).await;
    let admin = s.admin().await;
    let (ci_key, ci_id) = admin.mint("ci-agent", "admin", &["*"]).await;
    let ci = s.client(&ci_key).await;
    let (_, victim) = ci.mint("old.bot", "reader", &["acme"]).await;
    ci.ok("key_revoke", json!({"key_id": victim})).await;
    ci.ok("role_get", json!({"name": "reader"})).await;
    let reader = s.persona("reader", &["*"]).await;
    reader.err("key_revoke", json!({"key_id": victim})).await;

    // One call answers "who revoked keys?": the actor's name beside id and preview, and the
    // key revoked by its name.
    let revoked = admin
        .audit(json!({"action": ["key_revoke"], "status": ["success"]}))
        .await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let e = &revoked[0];
    assert_eq!(e["actor"], ci_id.as_str());
    assert_eq!(e["actor_name"], "ci-agent");
    assert!(e["actor_preview"].as_str().unwrap().starts_with("kw_"));
    assert_eq!(e["target"], format!("key:{victim}"));
    assert_eq!(e["target_name"], "old.bot");

    // The denied attempt names its actor too (the reader persona's key).
    let denied = admin
        .audit(json!({"action": ["key_revoke"], "status": ["denied"]}))
        .await;
    assert_eq!(denied[0]["actor_name"], "reader-persona");

    // A role's name; the full record keeps the names with what the server established.
    let role = admin.audit(json!({"action": ["role_get"]})).await;
    assert_eq!(role[0]["target_name"], "reader");
    let full = admin.ok("audit_get", json!({"id": e["id"]})).await["event"].clone();
    assert_eq!(full["established"]["actor_name"], "ci-agent");
    assert_eq!(full["established"]["actor_id"], ci_id.as_str());
    assert_eq!(full["established"]["role"], "admin");
    assert_eq!(full["target_name"], "old.bot");
    assert_eq!(full["claimed"]["client_name"], "keyward-it");
    assert!(full.get("actor_name").is_none() && full.get("client_claims").is_none());

    // The actor filter takes a key name, exactly.
    let by_name = admin
        .audit(json!({"actor": ["ci-agent"], "limit": 100}))
        .await;
    let by_id = admin.audit(json!({"actor": [ci_id], "limit": 100})).await;
    assert_eq!(by_name, by_id);
    assert_eq!(by_name.len(), 3, "key_create, key_revoke, role_get");
    assert!(admin.audit(json!({"actor": ["ci-agen"]})).await.is_empty());

    // Summaries by actor and by target name them.
    let sum = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["actor"], "action": ["key_revoke"]}),
        )
        .await;
    let names: Vec<&str> = sum["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"]["actor_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"ci-agent") && names.contains(&"reader-persona"));
    let sum = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["target"], "action": ["key_create"]}),
        )
        .await;
    let targets: Vec<&str> = sum["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"]["target_name"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&"old.bot") && targets.contains(&"ci-agent"));
    ci.close().await;
    admin.close().await;
}

/// A name reads every key ever so named (a revoked one's name can be given again), in pages,
/// summaries and novelty alike; and the lookup happens before the query, so on SQLite the page
/// reads the actor index (an `OR` with the names' subquery made it walk the time index).
#[tokio::test]
async fn a_key_name_reads_every_key_so_named_through_the_actor_index() {
    use keyward::domain::tenant::TenantScope;
    use keyward::store::audit::{AuditFilter, Statement, explain};

    let s = TestServer::in_process(Utc::now()).await;
    let admin = s.admin().await;
    let (first_key, first_id) = admin.mint("deploy-bot", "reader", &["*"]).await;
    let first = s.client(&first_key).await;
    first.ok("whoami", json!({})).await;
    first.close().await;
    admin.ok("key_revoke", json!({"key_id": first_id})).await;
    let (second_key, second_id) = admin.mint("deploy-bot", "reader", &["*"]).await;
    let second = s.client(&second_key).await;
    second.ok("whoami", json!({})).await;
    second.ok("whoami", json!({})).await;
    let (other_key, other_id) = admin.mint("other-bot", "reader", &["*"]).await;
    let other = s.client(&other_key).await;
    other.ok("whoami", json!({})).await;

    let by_name = admin
        .audit(json!({"actor": ["deploy-bot"], "limit": 100}))
        .await;
    let by_ids = admin
        .audit(json!({"actor": [first_id, second_id], "limit": 100}))
        .await;
    assert_eq!(by_name, by_ids);
    let actors: std::collections::BTreeSet<&str> = by_name
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [first_id.as_str(), second_id.as_str()]
            .into_iter()
            .collect()
    );
    let whoamis = |events: &[Value], id: &str| {
        events
            .iter()
            .filter(|e| e["actor"] == id && e["action"] == "whoami")
            .count()
    };
    assert_eq!(
        (whoamis(&by_name, &first_id), whoamis(&by_name, &second_id)),
        (1, 2)
    );
    // Page by page (a lowercase name may also be a username, so each page is the newest of
    // the id's and the preview's matches), the same events in the same order.
    assert_eq!(walk(&admin, json!(["deploy-bot"]), 1).await, by_ids);
    // A name beside an id; a name no key has matches nothing.
    let mixed = admin
        .audit(json!({"actor": ["deploy-bot", other_id], "limit": 100}))
        .await;
    let others = admin.audit(json!({"actor": [other_id]})).await;
    assert!(!others.is_empty());
    assert_eq!(mixed.len(), by_name.len() + others.len(), "{mixed:?}");
    assert!(admin.audit(json!({"actor": ["deploy"]})).await.is_empty());

    for args in [
        json!({"group_by": ["actor"]}),
        json!({"group_by": ["action"]}),
        json!({"group_by": ["actor"], "novel": "client", "since": "1h"}),
    ] {
        let named = |actor: Value| {
            let mut a = args.clone();
            a["actor"] = actor;
            a
        };
        let by_name = admin
            .ok("audit_summary", named(json!(["deploy-bot"])))
            .await;
        let by_ids = admin
            .ok("audit_summary", named(json!([first_id, second_id])))
            .await;
        assert_eq!(by_name["groups"], by_ids["groups"], "{args}");
        assert_eq!(by_name["total_events"], by_ids["total_events"], "{args}");
    }

    // Ids and previews together, interleaved in time and one actor matched by both: each
    // page is the newest of both columns' pages, each event once.
    for _ in 0..2 {
        second.ok("whoami", json!({})).await;
        other.ok("whoami", json!({})).await;
    }
    let all = admin.audit(json!({"limit": 100})).await;
    let other_preview = all
        .iter()
        .find(|e| e["actor"] == other_id.as_str())
        .and_then(|e| e["actor_preview"].as_str())
        .unwrap()
        .to_owned();
    let expected: Vec<Value> = all
        .into_iter()
        .filter(|e| e["actor"] == second_id.as_str() || e["actor"] == other_id.as_str())
        .collect();
    assert_eq!(expected.len(), 7, "{expected:?}");
    for limit in [1, 2, 3, 100] {
        let actors = json!([second_id, other_preview, other_id]);
        assert_eq!(walk(&admin, actors, limit).await, expected, "limit {limit}");
    }

    if matches!(s.app().store.db, keyward::store::Db::Sqlite(_)) {
        // SQLite's plan for a page of one actor, all time, for a caller within `scope`.
        let plan = |actor: String, scope: TenantScope| {
            let store = &s.app().store;
            async move {
                let filter = AuditFilter {
                    actors: vec![actor],
                    since: Some(0),
                    ..AuditFilter::visible_to(scope)
                };
                let statement = Statement::Page {
                    filter: &filter,
                    limit: 100,
                };
                explain(store, &statement).await.unwrap().join("\n")
            }
        };
        let by_name = plan("deploy-bot".into(), TenantScope::All).await;
        assert!(by_name.contains("INDEX audit_events_actor"), "{by_name}");
        assert!(!by_name.contains("api_keys"), "{by_name}");
        // A lowercase name may be a username too: each column's page by its own index, and
        // never the time index.
        assert!(by_name.contains("INDEX audit_events_preview"), "{by_name}");
        assert!(!by_name.contains("audit_events_at ("), "{by_name}");
        // A tenant-scoped caller's page for a key id reads the key's events, not the
        // tenant's window. (An id in lowercase alone, about one in 6,000, could also be an
        // operator's username, so its filter is two ranges and the planner chooses.)
        if second_id.bytes().any(|b| b.is_ascii_uppercase()) {
            let acme = TenantScope::parse(&["acme"]).unwrap();
            let scoped = plan(second_id.clone(), acme).await;
            assert!(scoped.contains("INDEX audit_events_actor"), "{scoped}");
            assert!(!scoped.contains("audit_events_tenants"), "{scoped}");
        }
        // A tenant-scoped caller's page for a role, an action or a target finds its events
        // on index entries alone, whichever index the planner walks: the filter and the
        // caller's tenants are tested there, and only the page's rows are read.
        let acme = TenantScope::parse(&["acme"]).unwrap();
        for (what, filter) in [
            (
                "role",
                AuditFilter {
                    roles: vec!["admin".into()],
                    ..AuditFilter::visible_to(acme.clone())
                },
            ),
            (
                "action",
                AuditFilter {
                    actions: vec!["key_revoke".into()],
                    ..AuditFilter::visible_to(acme.clone())
                },
            ),
            (
                "target",
                AuditFilter {
                    targets: vec!["support-ro".into()],
                    ..AuditFilter::visible_to(acme.clone())
                },
            ),
        ] {
            let filter = AuditFilter {
                since: Some(0),
                ..filter
            };
            let statement = Statement::Page {
                filter: &filter,
                limit: 100,
            };
            let plan = explain(&s.app().store, &statement).await.unwrap();
            let walks: Vec<&String> = plan
                .iter()
                .filter(|l| l.contains("SEARCH e USING") && !l.contains("PRIMARY KEY"))
                .collect();
            assert!(!walks.is_empty(), "{what}: {plan:?}");
            assert!(
                walks.iter().all(|l| l.contains("COVERING INDEX")),
                "{what}: {plan:?}"
            );
        }
    }
    second.close().await;
    other.close().await;
    admin.close().await;
}

/// Every event `audit_query` gives for `actors`, following its cursor `limit` at a time (at
/// most 100 pages, so a cursor that never ends fails the test rather than hanging it).
async fn walk(c: &Client, actors: Value, limit: i64) -> Vec<Value> {
    let mut walked = Vec::new();
    let mut page = c
        .ok("audit_query", json!({"actor": actors, "limit": limit}))
        .await;
    for _ in 0..100 {
        walked.extend(page["events"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["next_cursor"].as_str() else {
            return walked;
        };
        page = c.ok("audit_query", json!({"cursor": cursor})).await;
    }
    panic!("more than 100 pages: {walked:?}");
}

/// A client whose HTTP requests come through the (trusted) proxy from `ip`, sending `ua`.
async fn from(s: &TestServer, key: &str, ip: &str, ua: &str) -> Client {
    let mut headers = HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-forwarded-for"),
        http::HeaderValue::from_str(ip).unwrap(),
    );
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_str(ua).unwrap(),
    );
    s.client_with(key, ClientLifecycleMode::Initialize, headers)
        .await
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse(t: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Novelty as counting the events gives it: per (actor, value) over every event visible with
/// these filters before `until`, the pairs first seen at or after `since`.
fn naive(events: &[Value], value: fn(&Value) -> Option<String>, since: DateTime<Utc>) -> Novel {
    let mut all: Novel = BTreeMap::new();
    for e in events {
        let Some(v) = value(e) else { continue };
        let est = &e["established"];
        let actor = est["actor_id"]
            .as_str()
            .unwrap_or(est["actor_kind"].as_str().unwrap())
            .to_owned();
        let at = parse(&e["at"]);
        let entry = all.entry((actor, v)).or_insert((0, at, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
        entry.2 = entry.2.max(at);
    }
    all.retain(|_, (_, first, _)| *first >= since);
    all
}

fn from_summary(summary: &Value, dim: &str) -> Novel {
    assert_eq!(summary["truncated"], false, "{summary}");
    summary["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let key = (
                g["key"]["actor"].as_str().unwrap().to_owned(),
                g["key"][dim].as_str().unwrap().to_owned(),
            );
            let counts = (
                g["count"].as_i64().unwrap(),
                parse(&g["first_seen"]),
                parse(&g["last_seen"]),
            );
            (key, counts)
        })
        .collect()
}

#[tokio::test]
async fn novel_sources_per_actor_equal_counting_the_events() {
    let s = TestServer::http(&["--trusted-proxies", "127.0.0.1/32"]).await;
    let clock = s.clock().clone();
    let admin_key = s.admin_key().await;
    let admin = from(&s, &admin_key, "10.0.0.1", "console/1").await;
    let (a_key, a_id) = admin.mint("agent-a", "admin", &["acme"]).await;
    let (b_key, _) = admin.mint("agent-b", "reader", &["beta"]).await;
    let (auditor_key, _) = admin.mint("acme-auditor", "auditor", &["acme"]).await;

    // Before the window: a from .11 with ua-1, b from .21.
    let a = from(&s, &a_key, "192.0.2.11", "ua-1").await;
    a.ok("whoami", json!({})).await;
    a.ok("key_list", json!({})).await;
    let b = from(&s, &b_key, "192.0.2.21", "ua-1").await;
    b.ok("whoami", json!({})).await;
    clock.advance(Duration::hours(2));
    let since = clock.now() - Duration::hours(1);

    // Inside: a from its old address and from a new one (denied once); b from a's old one.
    a.ok("whoami", json!({})).await;
    let a2 = from(&s, &a_key, "192.0.2.12", "ua-2").await;
    a2.ok("whoami", json!({})).await;
    a2.err("key_get", json!({"key_id": "key_nothere"})).await;
    clock.advance(Duration::minutes(5));
    a2.ok("key_list", json!({})).await;
    let b2 = from(&s, &b_key, "192.0.2.11", "ua-1").await;
    b2.ok("whoami", json!({})).await;
    clock.advance(Duration::minutes(1));
    let until = clock.now();
    // The questions below are asked after `until`, so they do not count themselves.
    clock.advance(Duration::minutes(1));

    let ip = |e: &Value| e["established"]["client_ip"].as_str().map(str::to_owned);
    let ua = |e: &Value| e["claimed"]["user_agent"].as_str().map(str::to_owned);
    let auditor = from(&s, &auditor_key, "10.0.0.2", "console/1").await;
    let cases: Vec<Case<'_>> = vec![
        (&admin, "client_ip", ip, json!({})),
        (&admin, "user_agent", ua, json!({})),
        (&admin, "client_ip", ip, json!({"status": ["success"]})),
        (&admin, "client_ip", ip, json!({"actor": ["agent-a"]})),
        (&auditor, "client_ip", ip, json!({})),
        (&auditor, "user_agent", ua, json!({"action": ["whoami"]})),
    ];
    for (who, dim, value, filters) in cases {
        let mut window = filters.clone();
        window["until"] = json!(instant(until));
        let mut ask = window.clone();
        ask["since"] = json!(instant(since));
        ask["group_by"] = json!(["actor"]);
        ask["novel"] = json!(dim);
        ask["top"] = json!(100);
        let summary = who.ok("audit_summary", ask).await;
        assert_eq!(summary["novel"], dim);
        assert_eq!(summary["group_by"], json!(["actor", dim]));
        // The same filters with no lower bound: everything the caller may see before `until`.
        window["limit"] = json!(100);
        let events = who.audit_full(window).await;
        assert!(events.len() < 100);
        let expected = naive(&events, value, since);
        assert_eq!(
            from_summary(&summary, dim),
            expected,
            "{dim} {filters} as {}",
            if std::ptr::eq(who, &admin) {
                "admin"
            } else {
                "auditor"
            }
        );
        let total: i64 = expected.values().map(|c| c.0).sum();
        assert_eq!(summary["total_events"], total);
    }

    // Concretely: a's new address is novel (3 events), its old one is not; b's is novel for b.
    let ask = json!({"group_by": ["actor"], "novel": "client_ip", "since": instant(since),
        "until": instant(until)});
    let novel = from_summary(&admin.ok("audit_summary", ask.clone()).await, "client_ip");
    assert_eq!(novel[&(a_id.clone(), "192.0.2.12".to_owned())].0, 3);
    assert!(!novel.contains_key(&(a_id.clone(), "192.0.2.11".to_owned())));
    assert_eq!(novel.len(), 2, "{novel:?}");
    let groups = admin.ok("audit_summary", ask).await["groups"].clone();
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"]["actor_name"] == "agent-a")
    );
    // The auditor over acme never sees b (tenant beta).
    let seen = from_summary(
        &auditor
            .ok(
                "audit_summary",
                json!({"group_by": ["actor"], "novel": "client_ip", "since": instant(since),
                    "until": instant(until)}),
            )
            .await,
        "client_ip",
    );
    assert_eq!(
        seen.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        [a_id.as_str()]
    );

    // Novelty needs a window start and a per-actor grouping.
    let msg = admin
        .err(
            "audit_summary",
            json!({"group_by": ["actor"], "novel": "client_ip"}),
        )
        .await;
    assert!(msg.starts_with("novel needs since"), "{msg}");
    let msg = admin
        .err(
            "audit_summary",
            json!({"group_by": ["action"], "novel": "user_agent", "since": "1d"}),
        )
        .await;
    assert!(msg.starts_with("novel counts per actor"), "{msg}");
    for c in [a, a2, b, b2, auditor, admin] {
        c.close().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_refused_key_and_an_http_call_keep_established_apart_from_claimed() {
    let s = TestServer::http(&["--trusted-proxies", "127.0.0.1/32"]).await;
    let admin_key = s.admin_key().await;
    let admin = s.client(&admin_key).await;
    let (key, id) = admin.mint("night-job", "reader", &["*"]).await;
    let job = from(&s, &key, "198.51.100.7", "definitely-the-cli").await;
    job.ok("whoami", json!({})).await;
    admin.ok("key_revoke", json!({"key_id": id})).await;
    // The revoked key is refused at the door, and the refusal still names it.
    let refused = crate::server::http()
        .post(s.mcp())
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&crate::server::initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let failed = admin
        .audit(json!({"action": ["auth_failed"], "actor": ["night-job"]}))
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["actor_name"], "night-job");

    let call = admin
        .audit_full(json!({"action": ["whoami"], "actor": [id]}))
        .await;
    let e = &call[0];
    assert_eq!(
        e["established"],
        json!({"source": "http", "actor_kind": "key", "actor_id": id,
            "actor_name": "night-job", "actor_preview": e["established"]["actor_preview"],
            "role": "reader", "client_ip": "198.51.100.7"})
    );
    assert_eq!(e["claimed"]["user_agent"], "definitely-the-cli");
    assert_eq!(e["claimed"]["client_name"], "keyward-it");
    job.close().await;
    admin.close().await;
    s.stop().await;
}
