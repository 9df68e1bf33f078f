//! Statements PostgreSQL plans with a setting of their own (`SET LOCAL`, in a transaction of
//! their own): a summary under an address for an all-tenant caller, and novelty. The setting
//! ends with the statement, on every pooled connection.

use std::sync::Arc;

use keyward::clock::SystemClock;
use keyward::domain::tenant::TenantScope;
use keyward::store::Db;
use keyward::store::audit::{AuditFilter, Dim, NovelColumn, novel, summarise};

use crate::audit_replicas::record;
use crate::support::Env;

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_planner_setting_ends_with_its_statement() {
    let env = Env::postgres();
    let (app, _w) = keyward::open_app(
        &env.url(),
        Arc::new(SystemClock),
        env.options(Default::default()),
    )
    .await
    .unwrap();
    record(&app, 3).await;
    let Db::Postgres(pool) = &app.store.db else {
        panic!("PostgreSQL only")
    };
    let mut f = AuditFilter::visible_to(TenantScope::All);
    f.client_ips = vec!["203.0.113.9".into()];
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
    // Every connection the pool has open, held at once.
    let mut held = Vec::new();
    for _ in 0..pool.size() {
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
