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
    // Every connection the pool has open, held at once (one the server's own tasks hold is
    // waited for; one opened meanwhile is counted too).
    let mut held = Vec::new();
    while held.len() < pool.size() as usize {
        held.push(pool.acquire().await.unwrap());
    }
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

/// What PostgreSQL did with a page statement on the app's pooled connections: how many
/// executions took the generic plan and how many a custom one (`pg_prepared_statements`,
/// per session; sqlx prepares each statement once per connection). The statements are told
/// apart by pieces of their text: one they hold and one they do not. Holds every pooled
/// connection at once.
async fn plans_of(pool: &sqlx::PgPool, holds: &str, lacks: &str) -> (i64, i64) {
    let mut held = Vec::new();
    while held.len() < pool.size() as usize {
        held.push(pool.acquire().await.unwrap());
    }
    let (mut generic, mut custom) = (0, 0);
    for conn in &mut held {
        let (g, c): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(generic_plans), 0)::bigint, COALESCE(SUM(custom_plans), 0)::bigint \
             FROM pg_prepared_statements WHERE strpos(statement, $1) > 0 \
             AND strpos(statement, $2) = 0",
        )
        .bind(holds)
        .bind(lacks)
        .fetch_one(&mut **conn)
        .await
        .unwrap();
        generic += g;
        custom += c;
    }
    (generic, custom)
}

/// A page filtered by nothing but its window (its `LIMIT` written into the statement) is
/// planned once per connection and then runs on the generic plan: planning cost more than
/// running it (0.24–0.48 ms against 0.09–0.13 ms on a million events). A page under a
/// common value (its `LIMIT` bound) is planned for its values every time: a generic plan
/// costs a bound `LIMIT` as a tenth of the rows, more than the page's own plan. Seventy
/// thousand events over a week, so that the two plans' costs differ as on a real trail.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn an_unfiltered_page_keeps_a_generic_plan_and_a_filtered_one_is_planned_each_time() {
    let env = Env::postgres();
    let (app, _w, _) = opened(&env).await;
    let Db::Postgres(pool) = &app.store.db else {
        panic!("PostgreSQL only")
    };
    let now = app.now().timestamp_micros();
    // One event every ten seconds for a week, nine in ten over HTTP, most by fifty keys.
    sqlx::query(
        "INSERT INTO audit_events (at, actor_kind, actor_id, actor_preview, role, tenants, \
         action, status, source) SELECT $1 - g * 10000000::bigint, 'key', 'key_' || (g % 50), \
         'kw_' || (g % 50), 'admin', '*', 'whoami', \
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
    let mut http = day.clone();
    http.sources = vec!["http".into()];
    // Enough pages, one after another, that every pooled connection runs each more than
    // five times (the point where PostgreSQL weighs the generic plan).
    let runs = 8 * pool.options().get_max_connections() as usize;
    for _ in 0..runs {
        assert_eq!(page(&app.store, &day, None, 21).await.unwrap().len(), 21);
        assert_eq!(page(&app.store, &http, None, 21).await.unwrap().len(), 21);
    }
    let page = "ORDER BY e.at DESC, e.id DESC LIMIT ";
    let (generic, custom) = plans_of(pool, page, "e.source = ").await;
    assert!(
        generic > 0,
        "unfiltered: {generic} generic, {custom} custom"
    );
    assert!(
        generic >= custom,
        "unfiltered: {generic} generic, {custom} custom"
    );
    let (generic, custom) = plans_of(pool, "e.source = $", "-- none").await;
    assert_eq!(generic, 0, "filtered: {generic} generic, {custom} custom");
    assert!(custom >= runs as i64, "filtered: {custom} custom of {runs}");
}
