//! Sign-in costs the same argon2 work for known and unknown usernames, and every argon2 run is
//! on keyward's password threads: a burst of sign-ins never stalls the rest of the server.

use std::time::Duration;

use serde_json::json;

use crate::server::{TestServer, http};

const PASSWORD: &str = "correct horse battery";

async fn sign_in(s: &TestServer, username: &str, password: &str) -> u16 {
    http()
        .post(s.url("/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn with_operator(extra: &[&str]) -> TestServer {
    TestServer::http_with_alice(extra).await.0
}

#[tokio::test]
async fn known_and_unknown_usernames_cost_the_same_argon2_work() {
    let s = with_operator(&[]).await;
    let runs = || s.app().passwords.runs();
    // The first sign-in of the process also computes the decoy, once.
    assert_eq!(sign_in(&s, "alice", PASSWORD).await, 200);
    let mut costs = Vec::new();
    for (user, password, status) in [
        ("alice", "wrong password!", 401),
        ("nobody-here", "wrong password!", 401),
        ("alice", PASSWORD, 200),
        ("someone-else", PASSWORD, 401),
    ] {
        let before = runs();
        assert_eq!(sign_in(&s, user, password).await, status, "{user}");
        costs.push(runs() - before);
    }
    assert_eq!(
        costs,
        [1, 1, 1, 1],
        "one argon2 verification each, whoever it is"
    );
    s.stop().await;
}

#[tokio::test]
async fn fifty_sign_ins_never_stall_the_server() {
    let s = with_operator(&["--lockout-threshold", "1000"]).await;
    let before = s.app().passwords.runs();
    let url = s.url("/v1/auth/login");
    let signing = tokio::spawn(futures::future::join_all((0..50).map(move |i| {
        let url = url.clone();
        async move {
            http()
                .post(url)
                .json(&json!({"username": format!("guess{i}"), "password": "wrong password!"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    })));
    // While they queue for the password threads, health checks are answered.
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut answered = 0;
    while !signing.is_finished() && answered < 1000 {
        let r = health.get(s.url("/healthz")).send().await;
        assert!(r.is_ok_and(|r| r.status() == 200), "/healthz stalled");
        answered += 1;
    }
    assert!(
        answered >= 3,
        "the sign-ins were over before they were measured"
    );
    assert!(signing.await.unwrap().iter().all(|status| *status == 401));
    // Every verification ran on the password threads (the only place argon2 can run at all):
    // exactly one per sign-in, plus the decoy once.
    let ran = s.app().passwords.runs() - before;
    assert!((50..=51).contains(&ran), "{ran}");
    s.stop().await;
}
