//! The hourly and daily roll-ups answer summaries exactly as counting the events would: with
//! events folded and compacted, events that arrived late for hours and days already rolled up,
//! events not folded yet, windows that start and end mid-hour, and callers scoped to tenants.
//! (Asked of the use case directly, so that asking leaves no records of its own.)

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyward::domain::at_rest::AtRestKey;
use keyward::domain::audit::{Action, Source, Status};
use keyward::domain::principal::Principal;
use keyward::ops::CallMeta;
use keyward::ops::audit::{
    Counting, Filters, GroupBy, Novel, fold, novel_counted, summary_counted,
};
use serde_json::json;

use crate::server::TestServer;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 86_400_000_000;

/// An actor's kind, id, preview and name.
type Actor = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const ACTORS: [Actor; 6] = [
    (
        "key",
        Some("key_rollupalpha00001"),
        Some("kw_alpha1"),
        Some("alpha"),
    ),
    (
        "key",
        Some("key_rollupalpha00001"),
        Some("kw_alpha1"),
        Some("alpha-renamed"),
    ),
    (
        "key",
        Some("key_rollupbeta000002"),
        Some("kw_beta22"),
        Some("beta"),
    ),
    ("operator", Some("op_rollupalice00003"), Some("alice"), None),
    ("anonymous", None, Some("kw_stray1"), None),
    // Two strays are one anonymous actor: its groups show the greatest preview.
    ("anonymous", None, Some("kw_stray2"), None),
];
const TENANTS: [&[&str]; 5] = [
    &["*"],
    &["acme"],
    &["globex"],
    &["acme", "globex"],
    &["initech"],
];
const ACTIONS: [Action; 4] = [
    Action::Whoami,
    Action::KeyList,
    Action::KeyGet,
    Action::AuthFailed,
];
const STATUSES: [Status; 4] = [
    Status::Success,
    Status::Denied,
    Status::Failed,
    Status::Error,
];
const SOURCES: [Source; 3] = [Source::Http, Source::Stdio, Source::Cli];
const IPS: [Option<&str>; 4] = [
    Some("10.0.0.1"),
    Some("10.0.0.2"),
    None,
    Some("203.0.113.9"),
];
const ROLES: [Option<&str>; 3] = [Some("reader"), Some("auditor"), None];
/// A target's type, id and name (a key renamed between events keeps its id).
type Target = Option<(&'static str, &'static str, Option<&'static str>)>;
const TARGETS: [Target; 5] = [
    None,
    Some(("key", "key_rolluptarget0001", Some("deploy"))),
    Some(("key", "key_rolluptarget0001", Some("deploy-renamed"))),
    Some(("role", "auditor", None)),
    None,
];

/// Records event `i` at `at`, its columns picked from the lists above by different strides so
/// that many combinations occur.
async fn record(s: &TestServer, i: usize, at: DateTime<Utc>) {
    let (kind, id, preview, name) = ACTORS[i % ACTORS.len()];
    let mut e = CallMeta::new(SOURCES[i / 3 % SOURCES.len()]).event(
        at,
        ACTIONS[i / 2 % ACTIONS.len()],
        STATUSES[(i * 7 / 5) % STATUSES.len()],
        kind,
    );
    e.actor_id = id.map(str::to_owned);
    e.actor_preview = preview.map(str::to_owned);
    e.actor_name = name.map(str::to_owned);
    e.role = ROLES[i / 4 % ROLES.len()].map(str::to_owned);
    e.tenants = TENANTS[i / 5 % TENANTS.len()]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    // Every eleventh from an address of its own sixty-event stretch: pairs of actor and
    // address first seen late, for novelty.
    e.client_ip = match i % 11 {
        0 => Some(format!("198.51.100.{}", i / 60)),
        _ => IPS[i / 7 % IPS.len()].map(str::to_owned),
    };
    if let Some((kind, id, name)) = TARGETS[i / 3 % TARGETS.len()] {
        e.target_type = Some(kind.to_owned());
        e.target_id = Some(id.to_owned());
        e.target_name = name.map(str::to_owned);
    }
    s.app().audit.record(e).await.unwrap();
}

async fn caller(s: &TestServer, admin_key: &str, name: &str, tenants: &[&str]) -> Principal {
    let admin = s.client(admin_key).await;
    let (secret, _) = admin.mint(name, "auditor", tenants).await;
    admin.close().await;
    keyward::ops::auth::authenticate_key(s.app(), &secret)
        .await
        .unwrap()
}

/// The five roll-up tables: the wide one, the core, the targets' (two) and the actors'.
const TABLES: [&str; 5] = [
    "audit_tallies_wide",
    "audit_tallies_core",
    "audit_tallies_target",
    "audit_tallies_target_status",
    "audit_tallies_actor",
];

/// Rows of `span` in all five tables; each must have some whenever one does (they are folded
/// together).
async fn rollup_rows(s: &TestServer, span: i64) -> i64 {
    let mut counts = Vec::new();
    for t in TABLES {
        counts.push(
            s.scalar(&format!("SELECT COUNT(*) FROM {t} WHERE span = {span}"))
                .await,
        );
    }
    assert!(
        counts.iter().all(|n| *n > 0) || counts.iter().all(|n| *n == 0),
        "{counts:?}"
    );
    counts.iter().sum()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 9, 41, 7).unwrap() + Duration::milliseconds(250)
}

#[tokio::test]
async fn summaries_from_rollups_match_counting_the_events() {
    rollups_answer_as_the_events_do(TestServer::in_process(start()).await).await;
}

/// The same with encryption at rest: the roll-ups hold sealed client addresses, grouped and
/// filtered as sealed and opened only in the answer.
#[tokio::test]
async fn encrypted_rollups_match_counting_the_events() {
    let text = AtRestKey::generate().expect("rng");
    let key = Arc::new(AtRestKey::parse(&text).expect("parses"));
    let s = TestServer::in_process_with(start(), |o| o.encryption = Some(key)).await;
    rollups_answer_as_the_events_do(s).await;
}

async fn rollups_answer_as_the_events_do(s: TestServer) {
    let start = start();
    let admin_key = s.admin_key().await;
    let admin = keyward::ops::auth::authenticate_key(s.app(), &admin_key)
        .await
        .unwrap();
    let acme = caller(&s, &admin_key, "acme-auditor", &["acme"]).await;
    let duo = caller(&s, &admin_key, "duo-auditor", &["acme", "globex"]).await;
    let many = ["acme", "globex", "initech", "hooli", "stark", "wayne"];
    let wide = caller(&s, &admin_key, "wide-auditor", &many).await;
    let step = Duration::minutes(7) + Duration::seconds(13);

    // A day and a half of events, folded and compacted (the days that ended get day rows).
    for i in 0..300 {
        record(&s, i, start + step * i as i32).await;
        if i == 150 {
            // A fold mid-hour: that hour's later events fold as rows of their own, which
            // compaction merges once the hour is past.
            s.app().audit.sync().await.unwrap();
            s.clock().set(start + step * i as i32);
            fold::fold(s.app()).await.unwrap();
            // The same combination again, in the same hour, after the fold.
            record(&s, i, start + step * i as i32 + Duration::minutes(1)).await;
        }
    }
    s.app().audit.sync().await.unwrap();
    s.clock().set(start + Duration::hours(40));
    let first = fold::fold(s.app()).await.unwrap();
    assert!(first.events >= 140, "{first:?}");
    assert!(first.hours_compacted > 20, "{first:?}");
    assert!(rollup_rows(&s, DAY).await > 0, "day rows");

    // Another day and a half, every tenth event late: its time falls in hours and days
    // rolled up already. Folded, then a few more that are not.
    for i in 300..600 {
        let at = if i % 10 == 0 {
            start + Duration::minutes((i as i64 * 37) % 2000)
        } else {
            start + step * i as i32
        };
        record(&s, i, at).await;
    }
    s.app().audit.sync().await.unwrap();
    s.clock().set(start + Duration::hours(74));
    fold::fold(s.app()).await.unwrap();
    for i in 600..640 {
        let at = if i % 4 == 0 {
            start + Duration::minutes(i as i64 * 3)
        } else {
            start + step * i as i32
        };
        record(&s, i, at).await;
    }
    // One dated before 1970 (a clock that was wrong; never folded), and three from before the
    // log (no place in it; never folded either).
    record(
        &s,
        640,
        Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap(),
    )
    .await;
    s.app().audit.sync().await.unwrap();
    // (Three not folded yet lose their place, as if written before the log: the per-quarter
    // counts still hold them, as migrations filled those counts from such events.)
    s.sql(
        "UPDATE audit_events SET seq = NULL WHERE id IN (SELECT id FROM audit_events \
         WHERE seq >= (SELECT folded_seq FROM audit_tallies_progress) AND at > 0 ORDER BY id LIMIT 3)",
    )
    .await;
    s.sql("UPDATE audit_head SET unproven = unproven + 3").await;
    s.clock()
        .set(start + Duration::hours(74) + Duration::minutes(31));
    let state = keyward::store::audit::rollup::state(&s.app().store)
        .await
        .unwrap();
    assert!(state.folded_seq > 600, "{state:?}");

    let by = |dims: &[&str]| -> Vec<GroupBy> { serde_json::from_value(json!(dims)).unwrap() };
    let groupings = [
        by(&["actor"]),
        by(&["action"]),
        by(&["status"]),
        by(&["source"]),
        by(&["role"]),
        by(&["client_ip"]),
        by(&["actor", "status"]),
        by(&["client_ip", "action"]),
        by(&["hour"]),
        by(&["day", "source"]),
        by(&["target"]),
        by(&["target", "status"]),
    ];
    let window = |since: Option<&str>, until: Option<&str>| Filters {
        since: since.map(str::to_owned),
        until: until.map(str::to_owned),
        ..Filters::default()
    };
    // Hours and days in a zone whose hours are UTC's (Paris) come from hour rows; in one
    // whose are not (Kolkata, +05:30), from the events.
    let zoned = |since: &str, tz: &str| Filters {
        since: Some(since.to_owned()),
        time_zone: Some(tz.to_owned()),
        ..Filters::default()
    };
    let windows = [
        window(Some("7d"), None),
        window(Some("2026-03-20T12:34:56Z"), Some("2026-03-22T18:00:30.5Z")),
        zoned("2026-03-21", "Europe/Paris"),
        window(None, None),
        window(Some("30h"), None),
        window(Some("2026-03-21T00:00:00Z"), Some("2026-03-23T00:00:00Z")),
        zoned("60h", "Asia/Kolkata"),
    ];
    let narrowed = |w: &Filters| -> Vec<Filters> {
        vec![
            w.clone(),
            Filters {
                statuses: vec![Status::Denied],
                ..w.clone()
            },
            Filters {
                statuses: vec![Status::Success, Status::Failed],
                ..w.clone()
            },
            Filters {
                tenants: vec!["acme".into()],
                ..w.clone()
            },
            Filters {
                actors: vec!["key_rollupalpha00001".into()],
                ..w.clone()
            },
            Filters {
                actors: vec!["kw_stray1".into()],
                ..w.clone()
            },
            Filters {
                roles: vec!["reader".into()],
                ..w.clone()
            },
            Filters {
                sources: vec![Source::Stdio],
                ..w.clone()
            },
            Filters {
                client_ips: vec!["10.0.0.2".into()],
                ..w.clone()
            },
            Filters {
                actions: vec![Action::KeyGet],
                ..w.clone()
            },
        ]
    };
    let mut asked = 0;
    for (who, p, how_many_windows) in [
        ("admin", &admin, windows.len()),
        ("acme", &acme, 3),
        ("duo", &duo, 3),
        ("wide", &wide, 2),
    ] {
        for w in &windows[..how_many_windows] {
            for f in narrowed(w) {
                for g in &groupings {
                    same(&s, who, p, &f, g).await;
                    asked += 1;
                }
            }
        }
    }
    assert_eq!(asked, 12 * 10 * (7 + 3 + 3 + 2));

    // Novelty of client addresses reads the window's pairs of actor and address from the
    // roll-ups where they hold them: the same answers as from the events, for every caller,
    // window (with a start) and filter. (User-Agents and client names are never rolled up.)
    let (mut novel_asked, mut novel_found) = (0, 0);
    for (who, p, how_many_windows) in [
        ("admin", &admin, windows.len()),
        ("acme", &acme, 3),
        ("duo", &duo, 3),
    ] {
        for w in windows[..how_many_windows]
            .iter()
            .filter(|w| w.since.is_some())
        {
            for f in narrowed(w) {
                novel_found += same_novelty(&s, who, p, &f).await;
                novel_asked += 1;
            }
        }
    }
    assert_eq!(novel_asked, 10 * (6 + 3 + 3));
    assert!(
        novel_found > novel_asked / 2,
        "{novel_found} of {novel_asked}"
    );

    // Each table answered what it is meant to: inflating one changes those fast answers
    // only. (Actors and addresses: the actors' table, or the wide one beside an action;
    // targets: the target-status table, or the targets' under a tenant or a role; the rest:
    // the core.)
    let week = window(Some("7d"), None);
    let acme_week = Filters {
        tenants: vec!["acme".into()],
        ..week.clone()
    };
    let key_get_week = Filters {
        actions: vec![Action::KeyGet],
        ..week.clone()
    };
    let denied_week = Filters {
        statuses: vec![Status::Denied],
        ..week.clone()
    };
    let reader_week = Filters {
        roles: vec!["reader".into()],
        ..week.clone()
    };
    for (table, grouping, f, who) in [
        ("audit_tallies_actor", by(&["actor"]), &week, &admin),
        ("audit_tallies_actor", by(&["client_ip"]), &week, &admin),
        (
            "audit_tallies_actor",
            by(&["actor", "status"]),
            &acme_week,
            &admin,
        ),
        ("audit_tallies_wide", by(&["actor"]), &key_get_week, &admin),
        (
            "audit_tallies_wide",
            by(&["client_ip", "action"]),
            &week,
            &admin,
        ),
        (
            "audit_tallies_target_status",
            by(&["target"]),
            &week,
            &admin,
        ),
        (
            "audit_tallies_target_status",
            by(&["target", "status"]),
            &denied_week,
            &admin,
        ),
        ("audit_tallies_target", by(&["target"]), &acme_week, &admin),
        (
            "audit_tallies_target",
            by(&["target"]),
            &key_get_week,
            &admin,
        ),
        (
            "audit_tallies_target",
            by(&["target"]),
            &reader_week,
            &admin,
        ),
        // A caller scoped to a tenant: the targets' table, which holds the tenants.
        ("audit_tallies_target", by(&["target"]), &week, &acme),
        ("audit_tallies_core", by(&["action"]), &acme_week, &admin),
        ("audit_tallies_core", by(&["hour"]), &acme_week, &admin),
        ("audit_tallies_core", by(&["status"]), &acme_week, &admin),
    ] {
        let ask = |how| summary_counted(s.app(), who, f, &grouping, None, how);
        let counted = ask(Counting::EventsOnly).await.unwrap();
        s.sql(&format!("UPDATE {table} SET n = n + 1000")).await;
        let inflated = ask(Counting::Fastest).await.unwrap();
        s.sql(&format!("UPDATE {table} SET n = n - 1000")).await;
        assert!(
            inflated.total_events > counted.total_events + 1000,
            "{table} {grouping:?}: {} vs {}",
            inflated.total_events,
            counted.total_events
        );
        for other in TABLES.iter().filter(|t| **t != table) {
            s.sql(&format!("UPDATE {other} SET n = n + 1000")).await;
            let untouched = ask(Counting::Fastest).await.unwrap();
            s.sql(&format!("UPDATE {other} SET n = n - 1000")).await;
            assert_eq!(
                untouched.total_events, counted.total_events,
                "{other} does not answer {grouping:?}"
            );
        }
    }

    // And novelty's pairs came from the actors' table alone.
    let novel_week = Filters {
        since: Some("2026-03-21T00:00:00Z".into()),
        ..Filters::default()
    };
    let by_actor = by(&["actor"]);
    let novelty = |how| {
        novel_counted(
            s.app(),
            &admin,
            &novel_week,
            &by_actor,
            Novel::ClientIp,
            Some(100),
            how,
        )
    };
    let counted = novelty(Counting::EventsOnly).await.unwrap();
    for table in TABLES {
        s.sql(&format!("UPDATE {table} SET n = n + 1000")).await;
        let fast = novelty(Counting::Fastest).await.unwrap();
        s.sql(&format!("UPDATE {table} SET n = n - 1000")).await;
        if table == "audit_tallies_actor" {
            assert!(
                fast.total_events > counted.total_events + 1000,
                "{} vs {}",
                fast.total_events,
                counted.total_events
            );
        } else {
            assert_eq!(fast.total_events, counted.total_events, "{table}");
        }
    }

    // A rekey drops the roll-ups (they hold client addresses sealed under the old key): the
    // events answer until the folder has folded them again, and the roll-ups after.
    let seal = s.app().store.seal.clone();
    keyward::store::rekey::rekey(&s.app().store, &seal)
        .await
        .unwrap();
    assert_eq!(rollup_rows(&s, HOUR).await + rollup_rows(&s, DAY).await, 0);
    for g in &groupings {
        same(&s, "admin after rekey", &admin, &week, g).await;
    }
    let again = fold::fold(s.app()).await.unwrap();
    assert!(again.events > 600, "{again:?}");
    assert!(rollup_rows(&s, DAY).await > 0);
    for g in &groupings {
        same(&s, "admin refolded", &admin, &week, g).await;
        same(&s, "acme refolded", &acme, &week, g).await;
    }
    same_novelty(&s, "admin refolded", &admin, &novel_week).await;
}

/// Asks `f` grouped by `g` both ways and holds them equal.
async fn same(s: &TestServer, who: &str, p: &Principal, f: &Filters, g: &[GroupBy]) {
    let fast = summary_counted(s.app(), p, f, g, Some(100), Counting::Fastest)
        .await
        .unwrap();
    let counted = summary_counted(s.app(), p, f, g, Some(100), Counting::EventsOnly)
        .await
        .unwrap();
    let json = |v: &keyward::ops::AuditSummary| serde_json::to_value(v).unwrap();
    assert_eq!(json(&fast), json(&counted), "{who} {g:?} {f:?}");
}

/// By hour or by day with no start, the window reaches back to the earliest event: the
/// roll-ups answer it (as counting the events does) while it holds few enough quarters, and
/// the events do once an event dated before 1970 (a clock that was wrong, never folded) makes
/// it too wide to check.
#[tokio::test]
async fn a_window_without_a_start_reaches_back_to_the_earliest_event() {
    let s = TestServer::in_process(start()).await;
    let admin_key = s.admin_key().await;
    let admin = keyward::ops::auth::authenticate_key(s.app(), &admin_key)
        .await
        .unwrap();
    let acme = caller(&s, &admin_key, "acme-auditor", &["acme"]).await;
    let step = Duration::minutes(13) + Duration::seconds(7);
    for i in 0..240 {
        record(&s, i, start() + step * i as i32).await;
    }
    s.app().audit.sync().await.unwrap();
    s.clock().set(start() + Duration::hours(60));
    fold::fold(s.app()).await.unwrap();
    let by = |d: &str| -> Vec<GroupBy> { serde_json::from_value(json!([d])).unwrap() };
    let ever = Filters::default();
    let acme_ever = Filters {
        tenants: vec!["acme".into()],
        ..Filters::default()
    };
    // Local hours that are UTC's hours (Paris) come from hour rows, others (Kolkata, +05:30)
    // from the events; both must equal counting the events.
    for tz in ["Europe/Paris", "Asia/Kolkata"] {
        let zoned = Filters {
            time_zone: Some(tz.into()),
            ..acme_ever.clone()
        };
        for g in ["hour", "day"] {
            same(&s, tz, &admin, &zoned, &by(g)).await;
            same(
                &s,
                tz,
                &acme,
                &Filters {
                    tenants: vec![],
                    ..zoned.clone()
                },
                &by(g),
            )
            .await;
        }
    }
    // (The all-tenant caller with no filter reads the per-quarter counts instead.)
    let asked = [
        (&admin, &acme_ever, by("day")),
        (&admin, &acme_ever, by("hour")),
        (&acme, &ever, by("day")),
        (&acme, &ever, by("hour")),
    ];
    for (wider, expect_rollups) in [(false, true), (true, false)] {
        if wider {
            record(
                &s,
                240,
                Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap(),
            )
            .await;
            s.app().audit.sync().await.unwrap();
        }
        for (p, f, g) in &asked {
            same(&s, "no start", p, f, g).await;
            let counted = summary_counted(s.app(), p, f, g, None, Counting::EventsOnly)
                .await
                .unwrap();
            s.sql("UPDATE audit_tallies_core SET n = n + 1000").await;
            let fast = summary_counted(s.app(), p, f, g, None, Counting::Fastest)
                .await
                .unwrap();
            s.sql("UPDATE audit_tallies_core SET n = n - 1000").await;
            assert_eq!(
                fast.total_events > counted.total_events,
                expect_rollups,
                "{g:?} {f:?}, an event before 1970: {wider}"
            );
        }
    }
}

/// Asks novelty of client addresses in `f` (which has a start) both ways and holds them
/// equal; 1 when they found any (the caller checks most do: equal must not mean two empty
/// answers).
async fn same_novelty(s: &TestServer, who: &str, p: &Principal, f: &Filters) -> usize {
    let by_actor: Vec<GroupBy> = serde_json::from_value(json!(["actor"])).unwrap();
    let ask = |how, top| novel_counted(s.app(), p, f, &by_actor, Novel::ClientIp, Some(top), how);
    let json = |v: &keyward::ops::AuditSummary| serde_json::to_value(v).unwrap();
    // All of them, and the first two (the same two, and both truncated when there are more).
    let mut found = 0;
    for top in [100, 2] {
        let fast = ask(Counting::Fastest, top).await.unwrap();
        let counted = ask(Counting::EventsOnly, top).await.unwrap();
        assert_eq!(
            json(&fast),
            json(&counted),
            "novelty: {who} {f:?} top {top}"
        );
        found = found.max(fast.groups.len());
    }
    usize::from(found > 0)
}

/// Two folders at once (as on two replicas, or two passes of one): they take turns on the
/// state row, so every event is folded exactly once into every table, hour and day rows alike,
/// and the answers stay those of counting the events. (On SQLite every write transaction takes
/// the database's lock first, so this holds the claim to its word on PostgreSQL, which CI runs
/// too: without the claim both folders fold the same events there.)
#[tokio::test]
async fn two_folders_at_once_fold_each_event_once() {
    let s = TestServer::in_process(start()).await;
    let admin_key = s.admin_key().await;
    let admin = keyward::ops::auth::authenticate_key(s.app(), &admin_key)
        .await
        .unwrap();
    let step = Duration::minutes(11) + Duration::seconds(17);
    let mut folded_before = 0;
    for round in 0..3 {
        for i in 0..120 {
            let n = round * 120 + i;
            record(&s, n, start() + step * n as i32).await;
        }
        s.app().audit.sync().await.unwrap();
        s.clock()
            .set(start() + step * (round as i32 + 1) * 120 + Duration::hours(12));
        let (a, b) = tokio::join!(fold::fold(s.app()), fold::fold(s.app()));
        let (a, b) = (a.unwrap(), b.unwrap());
        let placed: i64 = s
            .scalar("SELECT COUNT(*) FROM audit_events WHERE seq IS NOT NULL AND at >= 0")
            .await;
        let state = keyward::store::audit::rollup::state(&s.app().store)
            .await
            .unwrap();
        assert_eq!(
            state.folded_seq,
            s.scalar("SELECT size FROM audit_head").await
        );
        // Between them they folded each newly placed event once.
        assert_eq!(
            a.events + b.events,
            state.folded_seq - folded_before,
            "{a:?} {b:?}"
        );
        assert!(a.hours_compacted + b.hours_compacted > 0, "{a:?} {b:?}");
        folded_before = state.folded_seq;
        for t in TABLES {
            let hours: i64 = s
                .scalar(&format!(
                    "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM {t} WHERE span = {HOUR}"
                ))
                .await;
            assert_eq!(hours, placed, "{t}: every placed event once in the hours");
            let days: i64 = s
                .scalar(&format!(
                    "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM {t} WHERE span = {DAY}"
                ))
                .await;
            let in_days: i64 = s
                .scalar(&format!(
                    "SELECT COUNT(*) FROM audit_events WHERE seq IS NOT NULL AND at >= 0 \
                     AND at < {}",
                    state.days_until()
                ))
                .await;
            assert_eq!(days, in_days, "{t}: the finished days once each");
        }
    }
    let week = Filters {
        since: Some("7d".into()),
        ..Filters::default()
    };
    let by = |d: &str| -> Vec<GroupBy> { serde_json::from_value(json!([d])).unwrap() };
    for g in ["actor", "target", "hour", "status"] {
        same(&s, "after two folders", &admin, &week, &by(g)).await;
    }
}

/// During an upgrade a process of an earlier build may still run (or a replica not upgraded
/// yet). The build before the three shapes reads and folds `audit_rollup` and
/// `audit_rollup_state`; the build before the fourth, `audit_rollup_{wide,core,target}` and
/// `audit_rollup_progress`; the build before the fifth, `audit_buckets_{wide,core,target,actor}`
/// and `audit_buckets_progress`. Those stay empty and at "nothing folded", so its summaries count
/// the events, and its folder, retention and rekey (each of which claims that state first) are
/// refused, so it cannot move folding past events the new tables never received.
#[tokio::test]
async fn an_earlier_build_can_neither_fold_nor_mislead_beside_this_one() {
    let s = TestServer::in_process(start()).await;
    for i in 0..50 {
        record(&s, i, start() + Duration::minutes(7 * i as i64)).await;
    }
    s.app().audit.sync().await.unwrap();
    s.clock().set(start() + Duration::hours(30));
    let folded = fold::fold(s.app()).await.unwrap();
    assert!(folded.events >= 50, "{folded:?}");
    assert!(rollup_rows(&s, HOUR).await > 0);
    // What each earlier build's readers see: nothing folded, no rows; and its claim, the first
    // statement of its fold, prune and rekey, refused. (The build before the three shapes, the
    // build before the fourth, and the build before the fifth.)
    for (tables, state) in [
        (&["audit_rollup"][..], "audit_rollup_state"),
        (
            &[
                "audit_rollup_wide",
                "audit_rollup_core",
                "audit_rollup_target",
            ][..],
            "audit_rollup_progress",
        ),
        (
            &[
                "audit_buckets_wide",
                "audit_buckets_core",
                "audit_buckets_target",
                "audit_buckets_actor",
            ][..],
            "audit_buckets_progress",
        ),
    ] {
        for t in tables {
            assert_eq!(
                s.scalar(&format!("SELECT COUNT(*) FROM {t}")).await,
                0,
                "{t}"
            );
        }
        assert_eq!(
            s.scalar(&format!("SELECT folded_seq + compacted_until FROM {state}"))
                .await,
            0
        );
        let claim = format!("UPDATE {state} SET folded_seq = folded_seq WHERE id = 1");
        let refused = match &s.app().store.db {
            keyward::store::Db::Sqlite(p) => sqlx::query(&claim).execute(p).await.err(),
            keyward::store::Db::Postgres(p) => sqlx::query(&claim).execute(p).await.err(),
        };
        let refused = refused.expect("the earlier build's claim is refused");
        assert!(refused.to_string().contains("newer keyward"), "{refused}");
        for t in tables {
            assert_eq!(
                s.scalar(&format!("SELECT COUNT(*) FROM {t}")).await,
                0,
                "{t}"
            );
        }
    }
}

/// `$pool` migrated up to version `$before` of `$dir`, then `$sql` run on it (rows as an
/// earlier build left them), then migrated up to `$after`: the pool.
macro_rules! migrated_around {
    ($pool:expr, $dir:literal, $before:expr, [$($sql:expr),* $(,)?], $after:expr) => {{
        let pool = $pool;
        let mut migrator = sqlx::migrate!($dir);
        let all = migrator.migrations.clone();
        migrator.migrations = all.iter().filter(|m| m.version <= $before).cloned().collect();
        migrator.run(&pool).await.unwrap();
        $(sqlx::query($sql).execute(&pool).await.unwrap();)*
        migrator.migrations = all.iter().filter(|m| m.version <= $after).cloned().collect();
        migrator.run(&pool).await.unwrap();
        pool
    }};
}

/// `$run!(pool, migrations folder)` on `$env`'s database, not migrated yet.
macro_rules! on_new_database {
    ($env:expr, $run:ident) => {
        if $env.is_postgres() {
            $run!(
                sqlx::PgPool::connect(&$env.url()).await.unwrap(),
                "migrations/postgres"
            )
        } else {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename($env.db_path())
                .create_if_missing(true);
            $run!(
                sqlx::SqlitePool::connect_with(options).await.unwrap(),
                "migrations/sqlite"
            )
        }
    };
}

/// Migration 0014 on a trail rolled up by the build before it: the actors' table is the wide
/// rows without the action (summed, earliest first, latest last, greatest preview and name),
/// the new progress row is the old one, and the old one is zeroed with its generation moved
/// (a reader of the earlier build whose plan straddles the migration then counts the events).
#[tokio::test]
async fn migration_0014_fills_the_actors_table_from_the_wide_rows() {
    let env = crate::support::Env::new();
    // Wide rows as the earlier build folded them: one hour's partial rows of one key under two
    // actions (renamed between them), an anonymous actor under two previews, a row without an
    // address, and a day row.
    let wide = "INSERT INTO audit_rollup_wide (span, bucket, actor_kind, actor_id, actor_preview, \
        role, tenants, action, status, source, client_ip, n, first_at, last_at, actor_name) VALUES \
        (3600, 7200, 'key', 'key_a', 'kw_a', 'reader', 'acme', 'whoami', 'success', 'http', 'ip1', 2, 7300, 7400, 'alpha'), \
        (3600, 7200, 'key', 'key_a', 'kw_a', 'reader', 'acme', 'key_list', 'success', 'http', 'ip1', 3, 7210, 7500, 'alpha-renamed'), \
        (3600, 7200, 'key', 'key_a', 'kw_a', 'reader', 'acme', 'key_get', 'denied', 'http', 'ip1', 1, 7600, 7600, 'alpha'), \
        (3600, 7200, 'anonymous', NULL, 'kw_s1', NULL, '*', 'auth_failed', 'denied', 'http', 'ip2', 1, 8000, 8000, NULL), \
        (3600, 7200, 'anonymous', NULL, 'kw_s2', NULL, '*', 'auth_failed', 'denied', 'http', 'ip2', 4, 7900, 9000, NULL), \
        (3600, 10800, 'key', 'key_a', 'kw_a', 'reader', 'acme', 'whoami', 'success', 'stdio', NULL, 5, 10900, 11000, 'alpha'), \
        (86400, 0, 'key', 'key_a', 'kw_a', 'reader', 'acme', 'whoami', 'success', 'http', 'ip1', 7, 100, 9000, 'alpha')";
    type Row = (
        i64,
        i64,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
        Option<String>,
        Option<String>,
    );
    let o = |v: Option<&str>| v.map(str::to_owned);
    let expected: Vec<Row> = [
        (
            3600,
            7200,
            "anonymous",
            None,
            Some("ip2"),
            5,
            7900,
            9000,
            Some("kw_s2"),
            None,
        ),
        (
            3600,
            7200,
            "key",
            Some("key_a"),
            Some("ip1"),
            5,
            7210,
            7500,
            Some("kw_a"),
            Some("alpha-renamed"),
        ),
        (
            3600,
            7200,
            "key",
            Some("key_a"),
            Some("ip1"),
            1,
            7600,
            7600,
            Some("kw_a"),
            Some("alpha"),
        ),
        (
            3600,
            10800,
            "key",
            Some("key_a"),
            None,
            5,
            10900,
            11000,
            Some("kw_a"),
            Some("alpha"),
        ),
        (
            86400,
            0,
            "key",
            Some("key_a"),
            Some("ip1"),
            7,
            100,
            9000,
            Some("kw_a"),
            Some("alpha"),
        ),
    ]
    .into_iter()
    .map(
        |(span, bucket, kind, id, ip, n, first, last, preview, name)| {
            (
                span,
                bucket,
                kind.to_owned(),
                o(id),
                o(ip),
                n,
                first,
                last,
                o(preview),
                o(name),
            )
        },
    )
    .collect();
    let actors = "SELECT span, bucket, actor_kind, actor_id, client_ip, n, first_at, last_at, \
        actor_preview, actor_name FROM audit_buckets_actor \
        ORDER BY span, bucket, actor_kind, n DESC";
    let progress = "SELECT (SELECT folded_seq FROM audit_buckets_progress), \
        (SELECT compacted_until FROM audit_buckets_progress), \
        (SELECT generation FROM audit_buckets_progress), \
        (SELECT folded_seq + compacted_until FROM audit_rollup_progress), \
        (SELECT generation FROM audit_rollup_progress), \
        (SELECT COUNT(*) FROM audit_rollup_wide) + (SELECT COUNT(*) FROM audit_rollup_core) \
        + (SELECT COUNT(*) FROM audit_rollup_target), (SELECT COUNT(*) FROM audit_buckets_wide)";
    let set_progress = "UPDATE audit_rollup_progress SET folded_seq = 40, compacted_until = 86400, \
        generation = 3";
    // The new progress row, the old one (folded + compacted, generation), the old tables' rows
    // and the wide ones.
    type States = (i64, i64, i64, i64, i64, i64, i64);
    // Migrates to 0013, writes the rows, migrates to 0017, reads: the same on either pool.
    macro_rules! migrate_and_read {
        ($pool:expr, $dir:literal) => {{
            // (Up to 0017: 0018 drops the roll-ups of a database collated otherwise than by
            // bytes, as the PostgreSQL tests' are; its own test below.)
            let pool = migrated_around!($pool, $dir, 13, [wide, set_progress], 17);
            let filled = sqlx::query_as(actors).fetch_all(&pool).await.unwrap();
            (
                filled,
                sqlx::query_as(progress).fetch_one(&pool).await.unwrap(),
            )
        }};
    }
    let (filled, states): (Vec<Row>, States) = on_new_database!(env, migrate_and_read);
    assert_eq!(filled, expected);
    // New progress as the old was; the old zeroed, a generation on; old names empty; the wide
    // rows moved.
    assert_eq!(states, (40, 86400, 3, 0, 4, 0, 7));
}

/// Groups that tie on count and last event are cut, and named, the same on both databases: by
/// their keys' bytes with none first, as SQLite orders text, whatever PostgreSQL's collation
/// (the PostgreSQL tests run on an en-US collated database where the server has ICU: there
/// "alpha" sorts before "Beta", and none last). From the events, and from roll-up rows folded,
/// folded again and compacted; and novelty likewise.
#[tokio::test]
async fn groups_tied_at_the_cut_are_kept_and_named_as_on_sqlite() {
    let s = TestServer::in_process(start()).await;
    let admin_key = s.admin_key().await;
    let admin = keyward::ops::auth::authenticate_key(s.app(), &admin_key)
        .await
        .unwrap();
    let at = start() + Duration::minutes(3);
    let event = |target: Option<(&str, &str, Option<&str>)>, client: &str| {
        let mut e = CallMeta::new(Source::Http).event(at, Action::KeyGet, Status::Success, "key");
        e.actor_id = Some("key_tiesactor0000001".into());
        e.actor_preview = Some("kw_ties1".into());
        e.client_name = Some(client.into());
        if let Some((kind, id, name)) = target {
            e.target_type = Some(kind.into());
            e.target_id = Some(id.into());
            e.target_name = name.map(str::to_owned);
            // The actor's name too: "Beta" before the first fold, "alpha" after it.
            e.actor_name = name.map(str::to_owned);
        }
        e
    };
    let named = |name| event(Some(("key", "key_tiesnamed0000001", Some(name))), "Zed");
    // Before the first fold: one event of a key named "Beta", and five groups of one event
    // each, all at the same instant: no target, and four roles. Novelty: clients "alpha" and
    // "Beta" once each, "Zed" otherwise.
    let mut first = vec![
        named("Beta"),
        event(None, "alpha"),
        event(Some(("role", "Zeta", None)), "Beta"),
    ];
    for id in ["alpha", "éclair", "Beta"] {
        first.push(event(Some(("role", id, None)), "Zed"));
    }
    // Roles: "ops" twice (with the key's second event), none once, and four once each, tied.
    let roles = [
        Some("ops"),
        None,
        Some("Zeta"),
        Some("alpha"),
        Some("éclair"),
        Some("Beta"),
    ];
    for (mut e, role) in first.into_iter().zip(roles) {
        e.role = role.map(str::to_owned);
        s.app().audit.record(e).await.unwrap();
    }
    s.app().audit.sync().await.unwrap();
    // A fold within the hour, then the key's event named "alpha", a second fold, and the hour
    // compacted: its rows merged, the greater name by bytes kept.
    s.clock().set(at + Duration::minutes(1));
    fold::fold(s.app()).await.unwrap();
    let mut second = named("alpha");
    second.role = Some("ops".into());
    s.app().audit.record(second).await.unwrap();
    s.app().audit.sync().await.unwrap();
    s.clock().set(start() + Duration::hours(3));
    fold::fold(s.app()).await.unwrap();
    let merged = s
        .scalar(
            "SELECT COUNT(*) FROM audit_tallies_target \
             WHERE target_id = 'key_tiesnamed0000001' AND span = 3600000000",
        )
        .await;
    assert_eq!(merged, 1, "the key's two hour rows compacted into one");
    // Likewise in the target-status table, named by the greatest name by bytes.
    let merged = s
        .scalar(
            "SELECT COUNT(*) * 10 + SUM(CASE WHEN target_name = 'alpha' THEN 1 ELSE 0 END) \
             FROM audit_tallies_target_status \
             WHERE target_id = 'key_tiesnamed0000001' AND span = 3600000000",
        )
        .await;
    assert_eq!(merged, 11, "one hour row for the key, named \"alpha\"");

    let by = |d: &str| -> Vec<GroupBy> { serde_json::from_value(json!([d])).unwrap() };
    let f = Filters {
        since: Some("2026-03-20T09:00:00Z".into()),
        until: Some("2026-03-20T11:00:00Z".into()),
        // (Not the admin key's own minting.)
        actions: vec![Action::KeyGet],
        ..Filters::default()
    };
    let cut = |summary: &keyward::ops::AuditSummary, key: &str, name: &str| {
        assert!(summary.truncated);
        summary
            .groups
            .iter()
            .map(|g| (g.key[key].clone(), g.key.get(name).cloned()))
            .collect::<Vec<_>>()
    };
    let want = vec![
        (
            "key:key_tiesnamed0000001".to_owned(),
            Some("alpha".to_owned()),
        ),
        ("none".to_owned(), None),
        ("role:Beta".to_owned(), None),
        ("role:Zeta".to_owned(), None),
    ];
    let (by_target, by_role, by_actor) = (by("target"), by("role"), by("actor"));
    let ask = |how| summary_counted(s.app(), &admin, &f, &by_target, Some(4), how);
    let counted = ask(Counting::EventsOnly).await.unwrap();
    assert_eq!(counted.total_events, 7);
    assert_eq!(
        cut(&counted, "target", "target_name"),
        want,
        "from the events"
    );
    // From the roll-ups: their counts, made larger for one answer, show it was read from them.
    let fast = ask(Counting::Fastest).await.unwrap();
    s.sql("UPDATE audit_tallies_target SET n = n + 1000").await;
    let inflated = ask(Counting::Fastest).await.unwrap();
    s.sql("UPDATE audit_tallies_target SET n = n - 1000").await;
    assert!(inflated.total_events > 1000, "read from the roll-ups");
    assert_eq!(
        cut(&fast, "target", "target_name"),
        want,
        "from the roll-ups"
    );

    // By role over every action, from the per-quarter counts (made larger for one answer, to
    // show it was read from them): none (with the admin key's minting) and "ops" tied at two,
    // then "Beta" of the four tied at one.
    let window = Filters {
        actions: vec![],
        ..f.clone()
    };
    let roles = |summary: &keyward::ops::AuditSummary| -> Vec<String> {
        summary
            .groups
            .iter()
            .map(|g| g.key["role"].clone())
            .collect()
    };
    let ask = |how| summary_counted(s.app(), &admin, &window, &by_role, Some(3), how);
    let counted = ask(Counting::EventsOnly).await.unwrap();
    let fast = ask(Counting::Fastest).await.unwrap();
    s.sql("UPDATE audit_counts SET n = n + 1000 WHERE dim = 'role'")
        .await;
    let inflated = ask(Counting::Fastest).await.unwrap();
    s.sql("UPDATE audit_counts SET n = n - 1000 WHERE dim = 'role'")
        .await;
    assert!(inflated.total_events > 1000, "read from the counts");
    for summary in [&counted, &fast] {
        assert_eq!(roles(summary), ["none", "ops", "Beta"], "{summary:?}");
    }

    // Novelty: the actor's clients, "Zed" (its actor named "alpha") and then one of the two
    // seen once, tied: "Beta", by bytes.
    let novel = |how| novel_counted(s.app(), &admin, &f, &by_actor, Novel::Client, Some(2), how);
    for how in [Counting::EventsOnly, Counting::Fastest] {
        let n = novel(how).await.unwrap();
        let names: Vec<_> = n
            .groups
            .iter()
            .map(|g| g.key.get("actor_name").cloned())
            .collect();
        assert_eq!(names, vec![Some("alpha".to_owned()), None], "{how:?}");
        let clients: Vec<_> = n
            .groups
            .iter()
            .map(|g| g.key.get("client").cloned())
            .collect();
        assert_eq!(
            clients,
            vec![Some("Zed".to_owned()), Some("Beta".to_owned())],
            "{how:?} {n:?}"
        );
    }
}

/// Migration 0018 drops the roll-ups folded before names were compared by bytes, and restarts
/// folding, on a PostgreSQL database whose collation orders text otherwise (the PostgreSQL
/// tests' en-US database); on SQLite it changes nothing.
#[tokio::test]
async fn migration_0018_drops_rollups_named_under_another_collation() {
    let env = crate::support::Env::new();
    let row = "INSERT INTO audit_buckets_actor (span, bucket, actor_kind, actor_id, role, \
        tenants, status, source, client_ip, n, first_at, last_at, actor_preview, actor_name) \
        VALUES (3600000000, 0, 'key', 'key_a', 'reader', 'acme', 'success', 'http', NULL, 2, \
        10, 20, 'kw_a', 'Beta')";
    let set_progress = "UPDATE audit_buckets_progress SET folded_seq = 40, \
        compacted_until = 3600000000, generation = 3";
    let state = "SELECT (SELECT COUNT(*) FROM audit_buckets_actor), folded_seq, \
        compacted_until, generation FROM audit_buckets_progress";
    // Migrates to 0017, writes the row, migrates the rest, reads: the same on either pool.
    macro_rules! migrate_and_read {
        ($pool:expr, $dir:literal) => {{
            // (Up to 0019: 0020 moves the roll-ups to new names; its own test below.)
            let pool = migrated_around!($pool, $dir, 17, [row, set_progress], 19);
            let collated: bool = sqlx::query_scalar("SELECT 'B' < 'a'")
                .fetch_one(&pool)
                .await
                .unwrap();
            (
                collated,
                sqlx::query_as(state).fetch_one(&pool).await.unwrap(),
            )
        }};
    }
    type State = (i64, i64, i64, i64);
    let (bytewise, after): (bool, State) = on_new_database!(env, migrate_and_read);
    if bytewise {
        assert_eq!(after, (1, 40, 3_600_000_000, 3), "kept");
    } else {
        assert_eq!(after, (0, 0, 0, 4), "dropped, to be folded again");
    }
    // SQLite always compares by bytes; the PostgreSQL tests' database, where the server has
    // ICU, is collated en-US (otherwise it has the server's default, either way).
    if !env.is_postgres() {
        assert!(bytewise);
    } else if crate::support::icu_database() {
        assert!(!bytewise);
    }
}

/// Migration 0020 on a trail rolled up by the build before it: the target-status table is the
/// targets' rows without role, tenants and action (summed, earliest first, latest last,
/// greatest name by bytes), the moved tables keep their rows, the new progress row is the old
/// one, and the old one is zeroed with its generation moved over empty tables of the old names.
#[tokio::test]
async fn migration_0020_fills_the_target_status_table_from_the_targets_rows() {
    let env = crate::support::Env::new();
    // One hour's partial rows of one key under two roles and two actions (renamed between
    // them), a denial beside them, a row with no target, another hour, and a day row.
    let targets = "INSERT INTO audit_buckets_target (span, bucket, target_type, target_id, \
        role, tenants, action, status, source, n, first_at, last_at, target_name) VALUES \
        (3600, 7200, 'key', 'key_a', 'reader', 'acme', 'key_get', 'success', 'http', 2, 7300, 7400, 'Beta'), \
        (3600, 7200, 'key', 'key_a', 'admin', '*', 'key_rotate', 'success', 'http', 3, 7210, 7500, 'alpha'), \
        (3600, 7200, 'key', 'key_a', 'reader', 'acme', 'key_get', 'denied', 'http', 1, 7600, 7600, 'Beta'), \
        (3600, 7200, NULL, NULL, 'reader', 'acme', 'whoami', 'success', 'http', 4, 7250, 7900, NULL), \
        (3600, 7200, NULL, NULL, 'admin', '*', 'key_list', 'success', 'http', 1, 7800, 7800, NULL), \
        (3600, 10800, 'key', 'key_a', 'reader', 'acme', 'key_get', 'success', 'stdio', 5, 10900, 11000, 'alpha'), \
        (86400, 0, 'key', 'key_a', 'reader', 'acme', 'key_get', 'success', 'http', 7, 100, 9000, 'alpha')";
    type Row = (
        i64,
        i64,
        Option<String>,
        Option<String>,
        String,
        String,
        i64,
        i64,
        i64,
        Option<String>,
    );
    let o = |v: &str| Some(v.to_owned());
    let expected: Vec<Row> = vec![
        (
            3600,
            7200,
            None,
            None,
            "success".into(),
            "http".into(),
            5,
            7250,
            7900,
            None,
        ),
        (
            3600,
            7200,
            o("key"),
            o("key_a"),
            "denied".into(),
            "http".into(),
            1,
            7600,
            7600,
            o("Beta"),
        ),
        (
            3600,
            7200,
            o("key"),
            o("key_a"),
            "success".into(),
            "http".into(),
            5,
            7210,
            7500,
            o("alpha"),
        ),
        (
            3600,
            10800,
            o("key"),
            o("key_a"),
            "success".into(),
            "stdio".into(),
            5,
            10900,
            11000,
            o("alpha"),
        ),
        (
            86400,
            0,
            o("key"),
            o("key_a"),
            "success".into(),
            "http".into(),
            7,
            100,
            9000,
            o("alpha"),
        ),
    ];
    let filled = "SELECT span, bucket, target_type, target_id, status, source, n, first_at, \
        last_at, target_name FROM audit_tallies_target_status \
        ORDER BY span, bucket, target_id NULLS FIRST, status";
    let progress = "SELECT (SELECT folded_seq FROM audit_tallies_progress), \
        (SELECT compacted_until FROM audit_tallies_progress), \
        (SELECT generation FROM audit_tallies_progress), \
        (SELECT folded_seq + compacted_until FROM audit_buckets_progress), \
        (SELECT generation FROM audit_buckets_progress), \
        (SELECT COUNT(*) FROM audit_buckets_wide) + (SELECT COUNT(*) FROM audit_buckets_core) \
        + (SELECT COUNT(*) FROM audit_buckets_target) + (SELECT COUNT(*) FROM audit_buckets_actor), \
        (SELECT COUNT(*) FROM audit_tallies_target)";
    let set_progress = "UPDATE audit_buckets_progress SET folded_seq = 40, compacted_until = 86400, \
        generation = 3";
    type States = (i64, i64, i64, i64, i64, i64, i64);
    // Migrates to 0019, writes the rows, migrates to 0020, reads: the same on either pool.
    macro_rules! migrate_and_read {
        ($pool:expr, $dir:literal) => {{
            let pool = migrated_around!($pool, $dir, 19, [targets, set_progress], 20);
            let filled = sqlx::query_as(filled).fetch_all(&pool).await.unwrap();
            // What an earlier build does when it starts on this database: run its own
            // migrations, which end at 0019.
            let mut earlier = sqlx::migrate!($dir);
            earlier.migrations = earlier
                .migrations
                .iter()
                .filter(|m| m.version <= 19)
                .cloned()
                .collect();
            let refused = earlier.run(&pool).await.err().map(|e| e.to_string());
            (
                filled,
                sqlx::query_as(progress).fetch_one(&pool).await.unwrap(),
                refused,
            )
        }};
    }
    let (filled, states, refused): (Vec<Row>, States, Option<String>) =
        on_new_database!(env, migrate_and_read);
    // The README's promise: an earlier build restarted after 0020 does not start.
    let refused = refused.expect("an earlier build's migrations refuse the migrated database");
    assert!(refused.contains("20"), "{refused}");
    assert_eq!(filled, expected);
    // New progress as the old was; the old zeroed, a generation on; old names empty; the
    // targets' rows moved.
    assert_eq!(states, (40, 86400, 3, 0, 4, 0, 7));
}

/// By hour (or day) and actor or target, a key renamed within the hour is one group, counted
/// once and shown by its greatest name by bytes (quarters of one hour were merged by the names
/// they showed, and came out as two groups). Such summaries count the events, whichever way
/// they are asked.
#[tokio::test]
async fn a_key_renamed_within_an_hour_is_one_group_of_that_hour() {
    let (s, admin) = admin_server().await;
    // 09:44 and 09:59: two quarters of one hour, the key named "alpha" and then "Beta".
    record_renamed(&s, start(), [Action::KeyGet, Action::KeyGet]).await;
    let f = Filters {
        since: Some("2026-03-20T09:00:00Z".into()),
        until: Some("2026-03-20T11:00:00Z".into()),
        actions: vec![Action::KeyGet],
        ..Filters::default()
    };
    for (dim, name) in [("actor", "actor_name"), ("target", "target_name")] {
        let by: Vec<GroupBy> = serde_json::from_value(json!(["hour", dim])).unwrap();
        alpha_either_way(&s, &admin, &f, &by, "", name).await;
    }
}

/// Folded, the same: the roll-ups regrouped from others in the fold (by actor from the actors'
/// table, by target from the target status table, folded from the wide and the targets
/// rows) show the greatest name of the group by bytes, as the events do.
#[tokio::test]
async fn a_key_renamed_within_one_fold_is_shown_by_its_greatest_name_from_the_rollups() {
    let (s, admin) = admin_server().await;
    // Two actions, so each name has a row of its own in the wide and targets tables, and the
    // actors' and target status rows regroup two rows.
    let three_hours_before = start() - Duration::hours(3);
    record_renamed(&s, three_hours_before, [Action::KeyGet, Action::KeyRotate]).await;
    fold::fold(s.app()).await.unwrap();
    assert!(rollup_rows(&s, HOUR).await > 0);
    // No filter, so the narrowest tables answer: the actors' and the target status ones. The
    // hour (06:00) is wholly inside the window and over, so it is read from them.
    let f = Filters {
        since: Some("2026-03-20T05:00:00Z".into()),
        until: Some("2026-03-20T08:00:00Z".into()),
        ..Filters::default()
    };
    for (dim, id, name) in [
        ("actor", "key_renamedactor0001", "actor_name"),
        ("target", "key:key_renamedtarget001", "target_name"),
    ] {
        // By the dimension alone: with a time grouping beside it, summaries count the events.
        let by: Vec<GroupBy> = serde_json::from_value(json!([dim])).unwrap();
        alpha_either_way(&s, &admin, &f, &by, id, name).await;
    }
    // And those tables answered: a name changed in them alone shows.
    s.sql("UPDATE audit_tallies_actor SET actor_name = 'probe'")
        .await;
    s.sql("UPDATE audit_tallies_target_status SET target_name = 'probe'")
        .await;
    for (dim, name) in [("actor", "actor_name"), ("target", "target_name")] {
        let by: Vec<GroupBy> = serde_json::from_value(json!([dim])).unwrap();
        let fast = summary_counted(s.app(), &admin, &f, &by, None, Counting::Fastest)
            .await
            .unwrap();
        let names: Vec<_> = fast.groups.iter().filter_map(|g| g.key.get(name)).collect();
        assert_eq!(names, ["probe"], "{dim}");
    }
}

/// A key (as actor and as target) named "alpha" 3 minutes after `at` and "Beta" 18 minutes
/// after, by `actions`, moved into the tables.
async fn record_renamed(s: &TestServer, at: DateTime<Utc>, actions: [Action; 2]) {
    for ((minutes, name), action) in [(3, "alpha"), (18, "Beta")].into_iter().zip(actions) {
        let mut e = CallMeta::new(Source::Http).event(
            at + Duration::minutes(minutes),
            action,
            Status::Success,
            "key",
        );
        e.actor_id = Some("key_renamedactor0001".into());
        e.actor_preview = Some("kw_renam1".into());
        e.actor_name = Some(name.into());
        e.target_type = Some("key".into());
        e.target_id = Some("key_renamedtarget001".into());
        e.target_name = Some(name.into());
        s.app().audit.record(e).await.unwrap();
    }
    s.app().audit.sync().await.unwrap();
}

/// A server at `start()` and its bootstrap admin, authenticated.
async fn admin_server() -> (TestServer, Principal) {
    let s = TestServer::in_process(start()).await;
    let admin_key = s.admin_key().await;
    let admin = keyward::ops::auth::authenticate_key(s.app(), &admin_key)
        .await
        .unwrap();
    (s, admin)
}

/// Counted from the events and the fastest way, the groups that show `id` (every group, when
/// empty) are one of two events, named "alpha" in `name`.
async fn alpha_either_way(
    s: &TestServer,
    admin: &Principal,
    f: &Filters,
    by: &[GroupBy],
    id: &str,
    name: &str,
) {
    for how in [Counting::EventsOnly, Counting::Fastest] {
        let summary = summary_counted(s.app(), admin, f, by, None, how)
            .await
            .unwrap();
        let groups: Vec<_> = summary
            .groups
            .iter()
            .filter(|g| id.is_empty() || g.key.values().any(|v| v == id))
            .map(|g| (g.count, g.key.get(name).cloned()))
            .collect();
        assert_eq!(groups, [(2, Some("alpha".to_owned()))], "{by:?} {how:?}");
    }
}
