//! The lockout cannot be side-stepped (IPv6 prefixes, one username from many addresses, parallel
//! guesses at a short legacy key) nor turned against the people it protects (a locked address
//! still serves valid keys; a person's usual address is never slowed), and it forgets.

use chrono::Duration;
use serde_json::{Value, json};

use crate::server::{TestServer, http, initialize_body, post_mcp};

const PASSWORD: &str = "correct horse battery";

/// A sign-in as seen from `client_ip` (the test talks to the server through loopback, a trusted
/// proxy by default).
async fn sign_in(
    s: &TestServer,
    client_ip: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    http()
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", client_ip)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn with_alice(extra: &[&str]) -> (TestServer, String) {
    TestServer::http_with_alice(extra).await
}

#[tokio::test]
async fn an_ipv6_prefix_is_one_address() {
    let s = TestServer::http(&[]).await;
    let bad = [("authorization", "Bearer kw_nope")];
    for i in 1..=20 {
        let ip = format!("2001:db8:1:2::{i:x}");
        let res = post_mcp(&s, &initialize_body(), &[bad[0], ("x-forwarded-for", &ip)]).await;
        assert_eq!(res.status(), 401, "failure {i}");
    }
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[
            bad[0],
            ("x-forwarded-for", "2001:db8:1:2:ffff:ffff:ffff:ffff"),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        429,
        "a fresh address in the same /64 is still locked"
    );
    let res = post_mcp(
        &s,
        &initialize_body(),
        &[bad[0], ("x-forwarded-for", "2001:db8:1:3::1")],
    )
    .await;
    assert_eq!(res.status(), 401, "the next /64 is someone else");
    s.stop().await;
}

#[tokio::test]
async fn one_username_slows_down_from_every_address_but_its_own() {
    // alice signed in (bootstrap) from 127.0.0.1 at start; she signs in once more to mark it.
    let (s, key) = with_alice(&[]).await;
    assert_eq!(
        sign_in(&s, "127.0.0.1", "alice", PASSWORD).await.status(),
        200
    );
    // An attacker spreads guesses over many addresses: each is a fresh IP budget, but the name
    // is counted. Three free failures, then every attempt for the name waits.
    for (i, ip) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let res = sign_in(&s, ip, "alice", "guess number one").await;
        assert_eq!(res.status(), 401, "guess {i}");
    }
    let res = sign_in(&s, "203.0.113.4", "alice", "guess number two").await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "slow_down");
    // Even the right password waits (the answer never says whether it was right)...
    assert_eq!(
        sign_in(&s, "203.0.113.5", "alice", PASSWORD).await.status(),
        429
    );
    // ...except from where alice signs in: the attacker cannot lock her out.
    assert_eq!(
        sign_in(&s, "127.0.0.1", "alice", PASSWORD).await.status(),
        200
    );

    // A name nobody has behaves the same, so the delay reveals nothing.
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(
            sign_in(&s, ip, "nobody", "guess number one").await.status(),
            401
        );
    }
    assert_eq!(
        sign_in(&s, "198.51.100.4", "nobody", "x").await.status(),
        429
    );

    // The delay doubles and is capped at a few seconds: a delay, never a lockout.
    let mut waits = Vec::new();
    for i in 0..8 {
        s.clock().advance(Duration::seconds(10));
        let res = sign_in(&s, &format!("192.0.2.{i}"), "nobody", "more guesses").await;
        assert_eq!(res.status(), 401);
        let res = sign_in(&s, &format!("192.0.2.{}", 100 + i), "nobody", "again").await;
        assert_eq!(res.status(), 429);
        waits.push(
            res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_eq!(waits, [1, 2, 4, 5, 5, 5, 5, 5]);

    // What the trail keeps of a name that is no operator's is a keyed hash, never the name.
    let admin = s.client(&key).await;
    let failed = admin
        .audit(json!({"action": ["auth_failed"], "client_ip": ["198.51.100.1"]}))
        .await;
    let shown = failed[0]["actor_preview"].as_str().unwrap();
    assert!(
        shown.starts_with("name#") && !shown.contains("nobody"),
        "{shown}"
    );
    let alices = admin
        .audit(json!({"action": ["auth_failed"], "client_ip": ["203.0.113.1"]}))
        .await;
    assert_eq!(alices[0]["actor_preview"], "alice");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn parallel_guesses_at_one_username_are_counted_before_they_are_checked() {
    let (s, _) = with_alice(&[]).await;
    // Forty guesses at once, each from its own address (each a fresh per-address budget).
    let guesses = (0..40).map(|i| {
        let ip = format!("198.18.0.{i}");
        let s = &s;
        async move {
            sign_in(s, &ip, "alice", "parallel guess!")
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(
        evaluated, 3,
        "only the free attempts are evaluated: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 37);
    s.stop().await;
}

#[tokio::test]
async fn parallel_guesses_at_a_short_legacy_key_cannot_pass_the_threshold() {
    let short = "short-legacy-key-16";
    let s = TestServer::http(&["--auth-mode", "legacy", "--legacy-api-key", short]).await;
    let body = initialize_body();
    let attempts = (0..40).map(|i| {
        let wrong = format!("Bearer wrong-legacy-key-{i:02}");
        let body = &body;
        let s = &s;
        async move { post_mcp(s, body, &[("authorization", &wrong)]).await }
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
    // Guessable: even the right one is refused while the address is locked.
    let res = post_mcp(&s, &body, &[("authorization", &format!("Bearer {short}"))]).await;
    assert_eq!(res.status(), 429);
    s.stop().await;

    // 32 characters or more: a bearer key, served while locked.
    let long = "a-legacy-key-of-thirty-two-chars";
    let s = TestServer::http(&["--auth-mode", "legacy", "--legacy-api-key", long]).await;
    for _ in 0..21 {
        post_mcp(&s, &body, &[("authorization", "Bearer wrong")]).await;
    }
    let res = post_mcp(&s, &body, &[("authorization", "Bearer wrong")]).await;
    assert_eq!(res.status(), 429);
    let res = post_mcp(&s, &body, &[("authorization", &format!("Bearer {long}"))]).await;
    assert_eq!(res.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn expired_counters_are_pruned() {
    let (s, _) = with_alice(&[]).await;
    assert_eq!(
        sign_in(&s, "127.0.0.1", "alice", PASSWORD).await.status(),
        200
    );
    for i in 0..5 {
        let ip = format!("203.0.113.{i}");
        post_mcp(
            &s,
            &initialize_body(),
            &[("authorization", "Bearer kw_x"), ("x-forwarded-for", &ip)],
        )
        .await;
        sign_in(&s, &ip, &format!("user{i}"), "wrong password!").await;
    }
    let rows = |table: &'static str| {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let s = &s;
        async move { s.scalar(&sql).await }
    };
    assert!(rows("auth_failures").await >= 5);
    assert!(rows("signin_throttle").await >= 5);
    // Nothing expired yet: nothing goes.
    keyward::ops::lockout::prune(s.app()).await.unwrap();
    assert!(rows("auth_failures").await >= 5);
    s.clock().advance(Duration::minutes(16));
    let deleted = keyward::ops::lockout::prune(s.app()).await.unwrap();
    assert!(deleted >= 10, "{deleted}");
    assert_eq!(rows("auth_failures").await, 0);
    assert_eq!(rows("signin_throttle").await, 0);
    // Where alice signed in is kept for 30 days, then forgotten too.
    assert_eq!(rows("signin_known").await, 1);
    s.clock().advance(Duration::days(31));
    keyward::ops::lockout::prune(s.app()).await.unwrap();
    assert_eq!(rows("signin_known").await, 0);
    s.stop().await;
}

#[test]
fn only_loopback_proxies_are_trusted_by_default() {
    let args = crate::server::serve_args(&[]);
    let nets: Vec<String> = args.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
}
