//! Audit batch insert throughput (rows/s) on SQLite and, when reachable, PostgreSQL: what the
//! group-commit writer does for every batch (one transaction, the events and their tenants).
//!
//!     cargo bench --bench audit_insert
//!     KEYWARD_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1/kw_bench cargo bench --bench audit_insert

#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up should stop loudly"
)]

use std::time::Duration;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyward::domain::audit::{Action, AuditEvent, Source, Status};
use keyward::store::{Store, audit};

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        #[expect(clippy::disallowed_methods, reason = "benchmark data, not a rule")]
        at: Utc::now(),
        actor_kind: "key".into(),
        actor_id: Some(format!("key_bench{:08}", i % 3)),
        actor_preview: Some("kw_AbCdEfGh".into()),
        role: Some("admin".into()),
        tenants: vec![if i.is_multiple_of(4) {
            "acme".into()
        } else {
            "*".into()
        }],
        action: Action::Whoami,
        target_type: None,
        target_id: None,
        status: Status::Success,
        reason: None,
        source: Source::Http,
        request_source: None,
        client_name: Some("keyward-load".into()),
        client_version: Some("1".into()),
        request_id: Some(i.to_string()),
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        args: Some(serde_json::json!({})),
        before: None,
        after: None,
    }
}

fn bench_backend(c: &mut Criterion, name: &str, url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(Store::open(url)).expect("open store");
    let mut group = c.benchmark_group(format!("audit_insert/{name}"));
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for batch in [1usize, 32, 256] {
        let events: Vec<AuditEvent> = (0..batch).map(event).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &events, |b, events| {
            b.to_async(&rt).iter(|| async {
                let mut tx = store.begin().await.expect("begin");
                audit::append(&mut tx, events).await.expect("append");
                tx.commit().await.expect("commit");
            });
        });
    }
    group.finish();
}

/// The SQLite writer's own path: its dedicated connection, no async runtime, no thread hops.
fn bench_sqlite_writer(c: &mut Criterion, path: &std::path::Path) {
    let mut conn = keyward::store::audit_writer::open_sqlite(path).expect("open");
    let mut group = c.benchmark_group("audit_insert/sqlite-writer-thread");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for batch in [1usize, 5, 32] {
        let events: Vec<AuditEvent> = (0..batch).map(event).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &events, |b, events| {
            b.iter(|| audit::write_batch_sqlite(&mut conn, events).expect("write"));
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bench.db");
    let sqlite = format!("sqlite://{}", file.display());
    bench_backend(c, "sqlite", &sqlite);
    bench_sqlite_writer(c, &file);
    match std::env::var("KEYWARD_BENCH_POSTGRES_URL") {
        Ok(url) => bench_backend(c, "postgres", &url),
        Err(_) => eprintln!(
            "SKIPPED audit_insert/postgres: set KEYWARD_BENCH_POSTGRES_URL to a scratch database"
        ),
    }
}

criterion_group!(audit_insert, benches);
criterion_main!(audit_insert);
