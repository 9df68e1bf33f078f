//! Several stateless replicas on one PostgreSQL, the only shared state: keys, revocations,
//! lockout counts and the audit trail are seen by every replica. Ignored by default (they need
//! PostgreSQL: `cargo test --test it -- --ignored`), and failing when it is unreachable.

use std::sync::Arc;

use chrono::Duration;
use keyward::clock::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};

use crate::server::{TestServer, call, http, serve_args};
use crate::support::{Env, secret};

/// A `keyward serve --stateless` replica.
struct Replica(TestServer);

impl Replica {
    fn start(env: &Arc<Env>, extra: &[&str]) -> Replica {
        Replica(TestServer::process_on(env, extra))
    }

    /// One self-contained JSON-RPC request (no session: stateless, any replica can answer).
    async fn rpc(&self, key: &str, source: &str, body: Value) -> (u16, Value) {
        let res = http()
            .post(self.0.mcp())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {key}"))
            .header("x-request-source", source)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The HTTP status of a `tools/list` with `key`: 200 when the key is accepted.
    async fn list_status(&self, key: &str, source: &str) -> u16 {
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        self.rpc(key, source, list).await.0
    }

    async fn call(&self, key: &str, source: &str, tool: &str, args: Value) -> Value {
        let (status, v) = call(
            &http(),
            &self.0.mcp(),
            key,
            tool,
            args,
            &[("x-request-source", source)],
        )
        .await
        .expect("an answer");
        assert_eq!(status, 200, "{tool}: {v}");
        v["result"].clone()
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn two_replicas_share_keys_revocations_lockouts_and_one_trail() {
    let env = Arc::new(Env::postgres());
    let admin = secret(&env.bootstrap());
    // No verification cache here, so "the very next request" holds across processes; the
    // cached case and its 1 s bound are the next test.
    let a = Replica::start(&env, &["--auth-cache-ttl", "0s"]);
    let b = Replica::start(&env, &["--auth-cache-ttl", "0s"]);

    // A key created through A works on B.
    let created = a
        .call(
            &admin,
            "replica-a",
            "key_create",
            json!({"name": "bot", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    let (key, key_id) = (
        created["structuredContent"]["api_key"]
            .as_str()
            .unwrap()
            .to_owned(),
        created["structuredContent"]["key"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let who = b.call(&key, "replica-b", "whoami", json!({})).await;
    assert_eq!(who["structuredContent"]["key_id"], key_id.as_str());

    // Disabled through B: refused by A on its very next request; enabled again, accepted.
    b.call(
        &admin,
        "replica-b",
        "key_disable",
        json!({"key_id": key_id}),
    )
    .await;
    let status = a.list_status(&key, "replica-a").await;
    assert_eq!(status, 401);
    a.call(&admin, "replica-a", "key_enable", json!({"key_id": key_id}))
        .await;
    b.call(&key, "replica-b", "whoami", json!({})).await;
    // Revoked through A: refused by B at once.
    a.call(&admin, "replica-a", "key_revoke", json!({"key_id": key_id}))
        .await;
    let status = b.list_status(&key, "replica-b").await;
    assert_eq!(status, 401);

    // A stateless client can talk to either replica on every request.
    let init = json!({"jsonrpc": "2.0", "id": 10, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "lb", "version": "0"}}});
    assert_eq!(a.rpc(&admin, "lb", init).await.0, 200);
    let (_, tools) = b
        .rpc(
            &admin,
            "lb",
            json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list"}),
        )
        .await;
    assert_eq!(
        tools["result"]["tools"].as_array().unwrap().len(),
        keyward::domain::catalog::ToolName::ALL.len()
    );
    for (i, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        let r = replica.call(&admin, "lb", "whoami", json!({})).await;
        assert_eq!(r["structuredContent"]["role"], "admin", "request {i}");
    }

    // Failed authentications from one IP count across both replicas: the two refusals above
    // (disabled on A, revoked on B) plus 18 more, alternating, make 20.
    for i in 0..18 {
        let target = if i % 2 == 0 { &a } else { &b };
        let status = target.list_status("kw_wrong", "brute").await;
        assert_eq!(status, 401, "failure {i}");
    }
    let status = a.list_status("kw_wrong", "brute").await;
    assert_eq!(
        status, 429,
        "the 21st failure, 10 on each replica, is locked out"
    );
    let status = b.list_status("kw_wrong", "brute").await;
    assert_eq!(status, 429, "and the other replica sees the lock");
    let status = b.list_status(&admin, "brute").await;
    assert_eq!(
        status, 200,
        "while a valid key from that address is still served"
    );

    // Audit records from both replicas land in one ordered trail.
    let env_app = keyward::open_app(
        &env.url(),
        Arc::new(SystemClock),
        env.options(Default::default()),
    )
    .await
    .unwrap()
    .0;
    let filter = keyward::store::audit::AuditFilter {
        sources: vec!["http".into()],
        ..keyward::store::audit::AuditFilter::visible_to(keyward::domain::tenant::TenantScope::All)
    };
    let trail = keyward::store::audit::page(&env_app.store, &filter, None, 1000)
        .await
        .unwrap();
    let from = |s: &str| {
        trail
            .iter()
            .filter(|e| e.request_source.as_deref() == Some(s))
            .count()
    };
    assert!(
        from("replica-a") >= 4 && from("replica-b") >= 3,
        "both replicas wrote to the trail"
    );
    assert!(
        trail
            .windows(2)
            .all(|w| (w[0].at, w[0].id) > (w[1].at, w[1].id)),
        "one strictly ordered trail: newest first by time, then id"
    );
    let mut ids: Vec<i64> = trail.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), trail.len(), "no record twice");
    assert_eq!(
        trail.iter().filter(|e| e.action == "auth_lockout").count(),
        1
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_cached_verification_outlives_a_remote_revocation_by_at_most_one_second() {
    let env = Env::postgres();
    let start = SystemClock.now();
    let (clock_a, clock_b) = (
        Arc::new(ManualClock::new(start)),
        Arc::new(ManualClock::new(start)),
    );
    let options = serve_args(&[]).app_options().unwrap();
    assert_eq!(options.cache_ttl, Duration::seconds(1), "the default bound");
    let (app_a, _wa) = keyward::open_app(&env.url(), clock_a.clone(), options.clone())
        .await
        .unwrap();
    let (app_b, _wb) = keyward::open_app(&env.url(), clock_b.clone(), options)
        .await
        .unwrap();
    let meta = keyward::ops::CallMeta::new(keyward::domain::audit::Source::Cli);
    let first = keyward::ops::bootstrap::FirstAdmin {
        key_name: "admin",
        expires_at: None,
        operator: None,
    };
    let admin = keyward::ops::bootstrap::bootstrap(&app_a, first, &meta)
        .await
        .unwrap()
        .key;

    // Replica B verifies the key (and caches the verification).
    let p = keyward::ops::auth::authenticate_key(&app_b, &admin.api_key)
        .await
        .unwrap();
    assert_eq!(p.role(), "admin");
    // Replica A revokes it.
    let call = keyward::ops::Call::new(
        keyward::ops::auth::authenticate_key(&app_a, &admin.api_key)
            .await
            .unwrap(),
        keyward::domain::audit::Action::KeyRevoke,
        meta.clone(),
        None,
    );
    keyward::ops::keys::revoke(&app_a, &call, &admin.key.id)
        .await
        .unwrap();
    assert!(
        keyward::ops::auth::authenticate_key(&app_a, &admin.api_key)
            .await
            .is_err(),
        "A refuses at once"
    );
    // B may still accept it while its cached verification is younger than 1 s…
    clock_b.advance(Duration::milliseconds(999));
    assert!(
        keyward::ops::auth::authenticate_key(&app_b, &admin.api_key)
            .await
            .is_ok()
    );
    // …and refuses it from the bound on.
    clock_b.advance(Duration::milliseconds(1));
    let err = keyward::ops::auth::authenticate_key(&app_b, &admin.api_key)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

/// Two replicas under load at once (workers on each until the revocation is seen, each
/// bounded in calls): every call answered with a result has its record in the one trail, and
/// a key revoked through one replica is refused by the other, with its default 1 s
/// verification cache, while both are busy. The delay is printed; the issue allows 10 s.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn two_loaded_replicas_lose_no_record_and_honour_a_revocation_from_the_other() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const WORKERS_PER_REPLICA: usize = 6;
    /// Calls each worker makes at most, so the test ends even if the revocation never lands.
    const MAX_CALLS_PER_WORKER: usize = 3_000;
    const WARM_UP_CALLS: u64 = 200;
    let env = Arc::new(Env::postgres());
    let admin = secret(&env.bootstrap());
    let a = Arc::new(Replica::start(&env, &[]));
    let b = Arc::new(Replica::start(&env, &[]));
    let created = |v: &Value| {
        (
            v["structuredContent"]["api_key"]
                .as_str()
                .unwrap()
                .to_owned(),
            v["structuredContent"]["key"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    let args = |name: &str| json!({"name": name, "role": "reader", "tenants": ["*"]});
    let (bot, bot_id) = created(
        &a.call(&admin, "setup", "key_create", args("load-bot"))
            .await,
    );
    let (victim, victim_id) = created(&a.call(&admin, "setup", "key_create", args("victim")).await);
    // B has verified (and cached) the victim before the load starts.
    b.call(&victim, "victim", "whoami", json!({})).await;

    let answered = Arc::new(AtomicU64::new(0));
    // Per replica, to see both busy while B is asked.
    let by_replica = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for (r, replica) in [&a, &b].into_iter().enumerate() {
        for _ in 0..WORKERS_PER_REPLICA {
            let (replica, bot) = (replica.clone(), bot.clone());
            let (answered, failed) = (answered.clone(), failed.clone());
            let by_replica = by_replica.clone();
            let (stop, warm) = (stop.clone(), warm.clone());
            workers.push(tokio::spawn(async move {
                let client = http();
                for _ in 0..MAX_CALLS_PER_WORKER {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let got = call(&client, &replica.0.mcp(), &bot, "whoami", json!({}), &[]).await;
                    match got {
                        Some((200, v))
                            if v["result"].is_object() && v["result"]["isError"] != true =>
                        {
                            by_replica[r].fetch_add(1, Ordering::Relaxed);
                            if answered.fetch_add(1, Ordering::Relaxed) + 1 == WARM_UP_CALLS {
                                warm.notify_one();
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    // Once the load is under way, revoke through A and ask B until it refuses. (Bounded: if
    // the calls failed, the warm-up count would never be reached.)
    tokio::time::timeout(std::time::Duration::from_secs(30), warm.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the load never got under way: {} calls answered, {} failed",
                answered.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            )
        });
    // B verifies the victim again just before the revocation, so its cached verification is
    // fresh and the cache's bound is what is measured.
    b.call(&victim, "victim", "whoami", json!({})).await;
    a.call(&admin, "setup", "key_revoke", json!({"key_id": victim_id}))
        .await;
    let revoked_at = std::time::Instant::now();
    let during = by_replica.each_ref().map(|n| n.load(Ordering::Relaxed));
    let refused_by_b = async {
        loop {
            let status = b.list_status(&victim, "victim").await;
            if status == 401 {
                return;
            }
        }
    };
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), refused_by_b).await;
    let delay = revoked_at.elapsed();
    let loaded_meanwhile = [0, 1].map(|r| by_replica[r].load(Ordering::Relaxed) - during[r]);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (answered, failed) = (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "revocation through A refused by B after {delay:?}, calls answered meanwhile by A and B \
         {loaded_meanwhile:?}; {answered} answered in all, {failed} failed"
    );
    assert!(
        seen.is_ok(),
        "B refuses a key revoked through A within 10 s, under load"
    );
    assert!(
        loaded_meanwhile.iter().all(|n| *n > 0),
        "both replicas were under load meanwhile: {loaded_meanwhile:?}"
    );
    assert_eq!(failed, 0, "every call of the bot's was answered");

    // Every answered call has its record: counted in the database, not through a tool (the
    // count must not depend on the paths under test).
    let pool = sqlx::PgPool::connect(&env.url()).await.unwrap();
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE actor_id = $1 AND action = 'whoami' \
         AND status = 'success'",
    )
    .bind(&bot_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded as u64, answered, "0 lost records");
    let (size, max_seq, sequenced): (i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT size FROM audit_head WHERE id = 1), (SELECT max(seq) FROM audit_events), \
         (SELECT count(seq) FROM audit_events)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        max_seq.map(|m| m + 1),
        Some(size),
        "the log's head covers every record"
    );
    assert_eq!(sequenced, size, "and the log has no gap");
    // The per-quarter counts both writers added to, batch by batch, equal counting the events
    // (what summaries read from them must not drift when several writers share one database).
    let from_counts: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT dim, quarter, value, CAST(SUM(n) AS BIGINT) FROM audit_counts \
         GROUP BY dim, quarter, value ORDER BY 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let from_events: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT d, q, v, count(*) FROM (\
           SELECT 'action' AS d, at / 900000000 AS q, action AS v FROM audit_events \
           UNION ALL SELECT 'status', at / 900000000, status FROM audit_events \
           UNION ALL SELECT 'source', at / 900000000, source FROM audit_events \
           UNION ALL SELECT 'role', at / 900000000, COALESCE(role, '') FROM audit_events\
         ) e GROUP BY d, q, v ORDER BY 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(from_events.len() >= 4, "{from_events:?}");
    assert_eq!(from_counts, from_events, "counts equal counting the events");
    pool.close().await;
}
