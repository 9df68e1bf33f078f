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
    let (status, _) = a
        .rpc(
            &key,
            "replica-a",
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 401);
    a.call(&admin, "replica-a", "key_enable", json!({"key_id": key_id}))
        .await;
    b.call(&key, "replica-b", "whoami", json!({})).await;
    // Revoked through A: refused by B at once.
    a.call(&admin, "replica-a", "key_revoke", json!({"key_id": key_id}))
        .await;
    let (status, _) = b
        .rpc(
            &key,
            "replica-b",
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
        )
        .await;
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
        let (status, _) = target
            .rpc(
                "kw_wrong",
                "brute",
                json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
            )
            .await;
        assert_eq!(status, 401, "failure {i}");
    }
    let (status, _) = a
        .rpc(
            "kw_wrong",
            "brute",
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
        )
        .await;
    assert_eq!(
        status, 429,
        "the 21st failure, 10 on each replica, is locked out"
    );
    let (status, _) = b
        .rpc(
            "kw_wrong",
            "brute",
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 429, "and the other replica sees the lock");
    let (status, _) = b
        .rpc(
            &admin,
            "brute",
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}),
        )
        .await;
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
