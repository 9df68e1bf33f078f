//! Every way a grant or a sign-in ends, each shown once: a password changed under a waiting
//! or granted sign-in (however the change raced it), a disabled key or operator (enabling
//! again revives nothing), a code presented by another client (refused, nothing revoked), the
//! default ceiling (never more than asked), an oversized `state`.

use serde_json::json;

use crate::oauth_support::{
    Creds, REDIRECT, alice_id, approve, assert_invalid_token, authorize_url, count, decide,
    exchange, grant, location, mcp_status, open_url, param, park, pkce, public_client, query,
    sign_in,
};
use crate::server::TestServer;

const ALICE: Creds<'static> = Creds::Password("alice", "correct horse battery");

/// Changes alice's password in the database directly, as a reset that raced everything else
/// would leave it (no session or grant cleanup ran after the sign-in it raced).
async fn change_password_behind_everyones_back(s: &TestServer, id: &str) {
    let store = keyward::store::Store::open(&s.env.url()).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    keyward::store::operators::set_password(
        &mut tx,
        id,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    s.app().forget_credentials();
}

#[tokio::test]
async fn what_a_password_signed_ends_when_the_password_changes_however_it_raced() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let id = alice_id(&s).await;
    let held = grant(&s, ALICE, "").await;
    assert_eq!(mcp_status(&s, &held.access).await.0, 200);
    let client_id = public_client(&s, "http://127.0.0.1/waiting").await;
    let (_, challenge) = pkce();
    let waiting = park(&authorize_url(
        &s,
        &query(&s, &client_id, "http://127.0.0.1/waiting", &challenge),
    ))
    .await;
    assert_eq!(sign_in(&s, &waiting, ALICE).await.status(), 200);

    change_password_behind_everyones_back(&s, &id).await;

    assert_invalid_token(&s, &held.access).await;
    let res = decide(&s, &waiting, &approve(&waiting, "", "*")).await;
    assert_eq!(res.status(), 400, "signed with the old password: no grant");
    assert!(res.headers().get("location").is_none());
    s.stop().await;
}

#[tokio::test]
async fn disabling_ends_waiting_sign_ins_and_grants_and_enabling_revives_nothing() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let admin = s.admin().await;
    // A key: signed in, consent not yet given, then disabled and enabled again.
    let (key, key_id) = admin.mint("waits", "reader", &["*"]).await;
    let client_id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let waiting = park(&authorize_url(
        &s,
        &query(&s, &client_id, REDIRECT, &challenge),
    ))
    .await;
    assert_eq!(sign_in(&s, &waiting, Creds::Key(&key)).await.status(), 200);
    admin.ok("key_disable", json!({"key_id": key_id})).await;
    admin.ok("key_enable", json!({"key_id": key_id})).await;
    let res = decide(&s, &waiting, &approve(&waiting, "", "*")).await;
    assert_eq!(
        res.status(),
        400,
        "the waiting sign-in ended with the disable"
    );

    // An operator: a live grant, disabled and enabled again.
    let id = alice_id(&s).await;
    let held = grant(&s, ALICE, "").await;
    let revokes = count(&s, "oauth_revoke").await;
    admin
        .ok("operator_disable", json!({"operator_id": id}))
        .await;
    admin
        .ok("operator_enable", json!({"operator_id": id}))
        .await;
    assert_invalid_token(&s, &held.access).await;
    assert_eq!(
        count(&s, "oauth_revoke").await,
        revokes + 1,
        "the grant's end is in the trail"
    );
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn a_code_presented_by_another_client_is_refused_and_revokes_nothing() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin_key().await;
    let rightful = public_client(&s, REDIRECT).await;
    let other = public_client(&s, "http://127.0.0.1/other").await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(&s, &query(&s, &rightful, REDIRECT, &challenge));
    let p = park(&url).await;
    assert_eq!(sign_in(&s, &p, Creds::Key(&admin)).await.status(), 200);
    let code = param(
        &location(&decide(&s, &p, &approve(&p, "", "*")).await),
        "code",
    )
    .unwrap();

    let (status, body) = exchange(&s, &other, &code, &verifier, REDIRECT).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = exchange(&s, &rightful, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 200, "the rightful client still redeems it: {body}");
    s.stop().await;
}

#[tokio::test]
async fn the_default_ceiling_is_never_more_than_was_asked() {
    let s = TestServer::http(&[]).await;
    let admin = s.admin().await;
    let (reader, _) = admin.mint("asks-beyond", "reader", &["*"]).await;
    let client_id = public_client(&s, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let mut q = query(&s, &client_id, REDIRECT, &challenge);
    // Asked only for what a reader lacks.
    q.push(("scope", "role:write".to_owned()));
    let p = park(&authorize_url(&s, &q)).await;
    assert_eq!(sign_in(&s, &p, Creds::Key(&reader)).await.status(), 200);
    let code = param(
        &location(&decide(&s, &p, &approve(&p, "", "*")).await),
        "code",
    )
    .unwrap();
    let (status, tokens) = exchange(&s, &client_id, &code, &verifier, REDIRECT).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        tokens["scope"], "",
        "nothing granted, not the reader's role"
    );
    let c = s.client(tokens["access_token"].as_str().unwrap()).await;
    let msg = c.err("key_list", json!({})).await;
    assert!(msg.starts_with("permission denied"), "{msg}");
    c.close().await;
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_state_is_refused() {
    let s = TestServer::http(&[]).await;
    let client_id = public_client(&s, REDIRECT).await;
    let (_, challenge) = pkce();
    let mut q = query(&s, &client_id, REDIRECT, &challenge);
    q.retain(|(k, _)| *k != "state");
    q.push(("state", "s".repeat(1025)));
    let res = open_url(&authorize_url(&s, &q)).await;
    let back = location(&res);
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(
        param(&back, "state"),
        None,
        "an oversized state is not echoed"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_operator_changes_her_own_password_only_with_the_current_one() {
    let (s, _) = TestServer::http_with_alice(&[]).await;
    let id = alice_id(&s).await;
    // Alice acts through a grant she signed with her password.
    let held = grant(&s, ALICE, "").await;
    let alice = s.client(&held.access).await;
    let msg = alice
        .err(
            "operator_set_password",
            json!({"operator_id": id, "new_password": "a new long enough password"}),
        )
        .await;
    assert!(msg.contains("old_password is required"), "{msg}");
    let msg = alice
        .err(
            "operator_set_password",
            json!({"operator_id": id, "old_password": "not her password at all",
                   "new_password": "a new long enough password"}),
        )
        .await;
    assert!(msg.contains("not your current password"), "{msg}");
    assert!(
        !msg.contains("not her password"),
        "the attempt is never echoed: {msg}"
    );
    alice
        .ok(
            "operator_set_password",
            json!({"operator_id": id, "old_password": "correct horse battery",
                   "new_password": "a new long enough password"}),
        )
        .await;
    alice.close().await;
    // Her own change ended her grants too, the one it was made through included.
    assert_invalid_token(&s, &held.access).await;
    let again = grant(
        &s,
        Creds::Password("alice", "a new long enough password"),
        "",
    )
    .await;
    assert_eq!(
        mcp_status(&s, &again.access).await.0,
        200,
        "the new password works"
    );

    // Anyone else needs operator:write to reset it.
    let admin = s.admin().await;
    let (reader, _) = admin.mint("not-an-admin", "reader", &["*"]).await;
    let r = s.client(&reader).await;
    let msg = r
        .err(
            "operator_set_password",
            json!({"operator_id": id, "new_password": "taken over password"}),
        )
        .await;
    assert!(msg.contains("requires operator:write"), "{msg}");
    r.close().await;
    admin.close().await;
    s.stop().await;
}
