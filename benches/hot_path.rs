//! The per-request work in front of every tool call, without I/O:
//! - key verification: parse + checksum + SHA-256 digest + lookup in the verification cache;
//! - the guard's decision: tool name → declared permission → allowed or denied.
//!
//!     cargo bench --bench hot_path

#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up should stop loudly"
)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use keyward::domain::catalog::{Access, ToolName};
use keyward::domain::key::{KeyDigest, PlainKey};
use keyward::domain::role::BuiltinRole;
use keyward::ops::cache::TtlCache;

fn benches(c: &mut Criterion) {
    // A cache holding 10,000 verified keys, as a busy server would.
    let keys: Vec<PlainKey> = (0..10_000).map(|_| PlainKey::generate()).collect();
    // The same cache type and key the server uses.
    let clock = keyward::clock::SystemClock;
    let now = keyward::clock::Clock::now(&clock);
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

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
