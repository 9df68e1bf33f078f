//! The per-request work in front of every tool call:
//! - key verification alone: parse + checksum + SHA-256 digest + lookup in a verification cache;
//! - the guard's decision: tool name → declared permission → allowed or denied;
//! - the whole credential check the surfaces run (`ops::auth::authenticate`) for an API key
//!   and for an OAuth access token, on a cache hit and on a miss (embedded SQLite), side by
//!   side: an access token is its grant's ceiling met with the signer's key, so a miss reads
//!   both.
//!
//!     cargo bench --bench hot_path

#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up should stop loudly"
)]

use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use keyward::clock::{Clock, ManualClock, SystemClock};
use keyward::domain::audit::Source;
use keyward::domain::catalog::{Access, ToolName};
use keyward::domain::key::{KeyDigest, PlainKey};
use keyward::domain::oauth::token::{OAuthSecret, TokenKind};
use keyward::domain::role::BuiltinRole;
use keyward::ops::CallMeta;
use keyward::ops::app::{App, AppOptions};
use keyward::ops::auth::{Credential, Origin, authenticate};
use keyward::ops::cache::TtlCache;

fn offline(c: &mut Criterion) {
    // A cache holding 10,000 verified keys, as a busy server would.
    let keys: Vec<PlainKey> = (0..10_000).map(|_| PlainKey::generate()).collect();
    let now = SystemClock.now();
    let cache: TtlCache<KeyDigest, usize> = TtlCache::new(chrono::Duration::seconds(1), 20_000);
    for (i, k) in keys.iter().enumerate() {
        cache.put(k.digest(), i, now);
    }
    let presented = keys[1234].expose().to_owned();
    c.bench_function("key parse + checksum + digest + cache lookup", |b| {
        b.iter(|| {
            let digest = PlainKey::digest_of(black_box(&presented)).expect("valid");
            black_box(cache.get(&digest, now))
        })
    });

    let perms = BuiltinRole::Auditor.permissions();
    c.bench_function("guard decision (tool → permission → allow/deny)", |b| {
        b.iter(|| {
            let tool = ToolName::parse(black_box("audit_summary")).expect("catalogued");
            black_box(match tool.access() {
                Access::Authenticated => true,
                Access::Needs(p) => perms.contains(p),
            })
        })
    });
}

/// An app on a fresh SQLite database with an admin key and one OAuth grant signed by it, on a
/// clock that stands still (so a cached verification stays a hit for the whole run).
async fn app_with_grant(dir: &std::path::Path, cache: bool) -> (App, String, String) {
    let url = format!("sqlite:{}/bench.db", dir.display());
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let options = AppOptions {
        cache_ttl: if cache {
            keyward::CACHE_TTL
        } else {
            chrono::Duration::zero()
        },
        ..AppOptions::default()
    };
    let (app, _writer) = keyward::open_app(&url, clock, options).await.expect("open");
    let meta = CallMeta::new(Source::Cli);
    let first = keyward::ops::bootstrap::FirstAdmin {
        key_name: "bench",
        expires_at: None,
        operator: None,
    };
    let key = keyward::ops::bootstrap::bootstrap(&app, first, &meta)
        .await
        .expect("bootstrap")
        .key;
    let token = OAuthSecret::generate(TokenKind::Access);
    let now = app.now();
    let grant = keyward::store::oauth::GrantRow {
        id: "gr_bench".into(),
        client_id: "kwc_bench".into(),
        client_name: None,
        signer_kind: "key".into(),
        signer_id: key.key.id.clone(),
        signer_digest: Some(PlainKey::digest_of(&key.api_key).expect("key").to_hex()),
        role_name: "admin".into(),
        permissions: "key:read audit:read".into(),
        tenants: "*".into(),
        resource: "http://127.0.0.1/mcp".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        created_at: now.timestamp_micros(),
        expires_at: (now + chrono::Duration::days(1)).timestamp_micros(),
        last_used_at: None,
        revoked_at: None,
        revoked_why: None,
    };
    let mut tx = app.store.begin().await.expect("tx");
    keyward::store::oauth::insert_grant(&mut tx, &grant)
        .await
        .expect("grant");
    keyward::store::oauth::insert_access(
        &mut tx,
        &token.digest_hex(),
        "gr_bench",
        now,
        now + chrono::Duration::hours(1),
    )
    .await
    .expect("token");
    tx.commit().await.expect("commit");
    (app, key.api_key, token.expose().to_owned())
}

fn credentials(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let meta = CallMeta::new(Source::Http);
    for (cached, label) in [(true, "cache hit"), (false, "cache miss, SQLite")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (app, key, token) = rt.block_on(app_with_grant(dir.path(), cached));
        let mut group = c.benchmark_group(format!("authenticate ({label})"));
        group.bench_function("API key", |b| {
            b.to_async(&rt).iter(|| async {
                authenticate(
                    &app,
                    Credential::ApiKey(black_box(&key)),
                    &meta,
                    Origin::Local,
                )
                .await
                .expect("valid key")
            })
        });
        group.bench_function("OAuth access token", |b| {
            b.to_async(&rt).iter(|| async {
                authenticate(
                    &app,
                    Credential::AccessToken {
                        token: black_box(&token),
                        resource: Some("http://127.0.0.1/mcp"),
                    },
                    &meta,
                    Origin::Local,
                )
                .await
                .expect("valid token")
            })
        });
        group.finish();
        rt.block_on(app.audit.close());
    }
}

criterion_group!(hot_path, offline, credentials);
criterion_main!(hot_path);
