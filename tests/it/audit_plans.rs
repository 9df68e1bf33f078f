//! Statements PostgreSQL plans with a setting of their own (`SET LOCAL`, in a transaction of
//! their own): a summary under an address for an all-tenant caller, and novelty. The setting
//! ends with the statement, on every pooled connection, and a call dropped midway leaves no
//! transaction open; nor does a write transaction's `BEGIN` dropped midway. And which pages
//! PostgreSQL keeps a generic plan for, and which it plans for their values every time.

use std::sync::Arc;

use keyward::clock::SystemClock;
use keyward::domain::tenant::TenantScope;
use keyward::store::Db;
use keyward::store::audit::{AuditFilter, Dim, NovelColumn, novel, page, summarise};
use sqlx::Connection;

use crate::audit_replicas::record;
use crate::support::Env;

/// An app on `env`'s database with a few records, and what its hinted statements are asked:
/// an all-tenant caller's filter by an address.
async fn opened(
    env: &Env,
) -> (
    keyward::ops::app::App,
    tokio::task::JoinHandle<()>,
    AuditFilter,
) {
    let (app, w) = keyward::open_app(
        &env.url(),
        Arc::new(SystemClock),
        env.options(Default::default()),
    )
    .await
    .unwrap();
    record(&app, 3).await;
    let mut f = AuditFilter::visible_to(TenantScope::All);
    f.client_ips = vec!["203.0.113.9".into()];
    (app, w, f)
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_planner_setting_ends_with_its_statement() {
    let env = Env::postgres();
    let (app, _w, f) = opened(&env).await;
    let Db::Postgres(pool) = &app.store.db else {
        panic!("PostgreSQL only")
    };
    let store = &app.store;
    let by_action = || summarise(store, &f, &[Dim::Action], Some(10));
    let (a, b, c, d) = tokio::join!(
        by_action(),
        by_action(),
        by_action(),
        novel(store, &f, 0, NovelColumn::ClientIp, 10, None)
    );
    for s in [a, b, c, d] {
        assert_eq!(s.unwrap().total_events, 0);
    }
    let mut held = hold_all(pool).await;
    assert!(!held.is_empty());
    for conn in &mut held {
        let settings: (String, String, String) = sqlx::query_as(
            "SELECT current_setting('enable_indexscan'), current_setting('enable_bitmapscan'), \
             current_setting('transaction_read_only')",
        )
        .fetch_one(&mut **conn)
        .await
        .unwrap();
        assert_eq!(
            settings,
            ("on".to_owned(), "on".to_owned(), "off".to_owned())
        );
    }
}

/// A summary dropped at any point (a call's deadline) leaves no pooled connection inside a
/// transaction: its `BEGIN` finishes in a task of its own, and the transaction nobody took is
/// rolled back there.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_summary_dropped_midway_leaves_no_transaction_open() {
    let env = Env::postgres();
    let (app, _w, f) = opened(&env).await;
    // Each call dropped after more polls than the last (the runtime's I/O driven between
    // polls), until calls finish: dropped at every step of the way.
    let mut watch = sqlx::PgConnection::connect(&env.url()).await.unwrap();
    let (mut finished, mut dropped) = (0, 0);
    // One poll more each time, then ten more, until a few calls finish (bounded).
    let steps = (1..60).chain((60..5000).step_by(10));
    for polls in steps {
        if finished >= 3 {
            break;
        }
        let out = at_most(polls, summarise(&app.store, &f, &[Dim::Action], None)).await;
        match out {
            Some(s) => {
                s.unwrap();
                finished += 1;
            }
            None => {
                dropped += 1;
                // Before any other call on it: the next one's BEGIN and COMMIT would end it.
                assert!(
                    no_transaction_left_open(&mut watch).await,
                    "a call dropped after {polls} polls left a transaction open"
                );
            }
        }
        // And one left to finish, so the next starts on a connection set up already.
        summarise(&app.store, &f, &[Dim::Action], None)
            .await
            .unwrap();
    }
    assert!(finished > 0 && dropped > 0, "{finished} {dropped}");
}

/// `call`'s output if it is ready within `polls` polls (the runtime's I/O driven between
/// them); otherwise `call` is dropped where it stands.
async fn at_most<F: std::future::Future>(polls: usize, call: F) -> Option<F::Output> {
    let mut call = std::pin::pin!(call);
    for _ in 0..polls {
        if let std::task::Poll::Ready(out) = futures::poll!(call.as_mut()) {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Waits (bounded) until no session on the test's database is idle inside a transaction: a
/// connection closed is gone, one pooled inside a transaction stays so.
async fn no_transaction_left_open(watch: &mut sqlx::PgConnection) -> bool {
    for _ in 0..200 {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&mut *watch)
        .await
        .unwrap();
        if open == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A write transaction whose `BEGIN` is dropped at any point (a call's deadline) leaves no
/// pooled connection inside a transaction: `BEGIN` finishes in a task of its own, and the
/// transaction nobody took is rolled back there.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_begin_dropped_midway_leaves_no_transaction_open() {
    let env = Env::postgres();
    let (app, _w, _) = opened(&env).await;
    let mut watch = sqlx::PgConnection::connect(&env.url()).await.unwrap();
    let (mut finished, mut dropped) = (0, 0);
    // Ten sweeps: whether a drop lands while `BEGIN` awaits its answer depends on when the
    // answer arrives.
    let sweeps = (0..10).flat_map(|_| (1..60).chain((60..5000).step_by(10)));
    let mut finished_in_sweep = 0;
    for polls in sweeps {
        if polls == 1 {
            finished_in_sweep = 0;
        }
        if finished_in_sweep >= 3 {
            continue;
        }
        let out = at_most(polls, app.store.begin()).await;
        match out {
            Some(tx) => {
                tx.unwrap().commit().await.unwrap();
                finished += 1;
                finished_in_sweep += 1;
            }
            None => dropped += 1,
        }
        assert!(
            no_transaction_left_open(&mut watch).await,
            "a BEGIN dropped after {polls} polls left a transaction open"
        );
    }
    assert!(finished > 0 && dropped > 0, "{finished} {dropped}");
}

/// Every connection the pool has open, held at once (one the server's own tasks hold is
/// waited for; one opened meanwhile is counted too).
async fn hold_all(pool: &sqlx::PgPool) -> Vec<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut held = Vec::new();
    while held.len() < pool.size() as usize {
        held.push(pool.acquire().await.unwrap());
    }
    held
}

/// What PostgreSQL did with each page statement on each of the app's pooled connections
/// (`pg_prepared_statements`, per session; sqlx prepares a statement once per connection):
/// the statement's text and how many of its executions took the generic plan and how many a
/// custom one, for the statements that read a page's ids. Holds every pooled connection at
/// once. The counters are PostgreSQL 14's: on an older server this fails on the columns.
async fn page_plans(pool: &sqlx::PgPool) -> Vec<(String, i64, i64)> {
    let mut held = hold_all(pool).await;
    let mut plans = Vec::new();
    for conn in &mut held {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE strpos(statement, $1) > 0",
        )
        // Bound, so this statement's own text does not hold it.
        .bind("ORDER BY e.at DESC, e.id DESC LIMIT ")
        .fetch_all(&mut **conn)
        .await
        .unwrap();
        plans.extend(rows);
    }
    plans
}

/// A page filtered by nothing but its window (its `LIMIT` written into the statement) is
/// planned for its values five times on a connection, as PostgreSQL does for any prepared
/// statement, and then runs on the generic plan: planning cost more than running it (the
/// tenant caller's 24-hour page on a million events: 0.24–0.48 ms against 0.09–0.13 ms). So
/// for an all-tenant caller and for a tenant-scoped one. A page under a common value (its
/// `LIMIT` bound) is planned for its values every time: a generic plan costs a bound `LIMIT`
/// as a tenth of the rows, more than the page's own plan. Seventy thousand events over eight
/// days, so that the plans' costs differ as on a real trail.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn an_unfiltered_page_keeps_a_generic_plan_and_a_filtered_one_is_planned_each_time() {
    let env = Env::postgres();
    let (app, _w, _) = opened(&env).await;
    let Db::Postgres(pool) = &app.store.db else {
        panic!("PostgreSQL only")
    };
    let now = app.now().timestamp_micros();
    // One event every ten seconds, by fifty keys, nine in ten over HTTP, a third for acme.
    sqlx::query(
        "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, role, tenants, \
         action, status, source) SELECT $1 - g * 10000000::bigint, 'key', 'key_' || (g % 50), \
         'kw_' || (g % 50), 'admin', CASE WHEN g % 3 = 0 THEN 'acme' ELSE '*' END, 'whoami', \
         CASE WHEN g % 97 = 0 THEN 'error' ELSE 'success' END, \
         CASE WHEN g % 10 = 0 THEN 'cli' ELSE 'http' END FROM generate_series(1, 70000) g",
    )
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE audit_events")
        .execute(pool)
        .await
        .unwrap();
    let mut day = AuditFilter::visible_to(TenantScope::All);
    day.since = Some(now - 86_400_000_000);
    let mut acme = day.clone();
    acme.visible_to = TenantScope::Only(["acme".to_owned()].into());
    let mut http = day.clone();
    http.sources = vec!["http".into()];
    // One after another, so the pool rotates them over its connections: enough that some
    // connection runs each page more than five times, however many connections it opens.
    let runs = 12 * pool.options().get_max_connections() as usize;
    for _ in 0..runs {
        for f in [&day, &acme, &http] {
            assert_eq!(page(&app.store, f, None, 21).await.unwrap().len(), 21);
        }
    }
    let plans = page_plans(pool).await;
    let filtered = |s: &str| s.contains("e.source = ");
    let scoped = |s: &str| s.contains("e.tenants <> ");
    for (name, is) in [
        (
            "all-tenant",
            &(|s: &str| !filtered(s) && !scoped(s)) as &dyn Fn(&str) -> bool,
        ),
        ("tenant-scoped", &|s: &str| !filtered(s) && scoped(s)),
    ] {
        let mine: Vec<_> = plans.iter().filter(|(s, _, _)| is(s)).collect();
        let generic: i64 = mine.iter().map(|(_, g, _)| g).sum();
        let executions: i64 = mine.iter().map(|(_, g, c)| g + c).sum();
        assert_eq!(executions, runs as i64, "{name}: {mine:?}");
        assert!(generic > 0, "{name}: {mine:?}");
        // Five custom plans on a connection at most, then the generic one for good.
        assert!(mine.iter().all(|(_, _, c)| *c <= 5), "{name}: {mine:?}");
    }
    let mine: Vec<_> = plans.iter().filter(|(s, _, _)| filtered(s)).collect();
    let custom: i64 = mine.iter().map(|(_, _, c)| c).sum();
    assert_eq!(custom, runs as i64, "filtered: {mine:?}");
    assert!(mine.iter().all(|(_, g, _)| *g == 0), "filtered: {mine:?}");
}
