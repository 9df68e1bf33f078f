//! Audit batch insert throughput (rows/s) on SQLite and, when reachable, PostgreSQL: what the
//! audit writers do for every batch (one transaction: the events, their tenants, the counts).
//! Every batch gets fresh, increasing timestamps, as the trail does: re-inserting the same
//! instants would put every index entry in the middle of its index instead of at its end.
//!
//!     cargo bench --bench audit_insert
//!     KEYWARD_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1/kw_bench cargo bench --bench audit_insert

#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up should stop loudly"
)]

use std::cell::Cell;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyward::domain::at_rest::{AtRestKey, Place};
use keyward::domain::audit::{Action, AuditEvent, Source, Status};
use keyward::domain::audit_leaf::StoredEvent;
use keyward::domain::merkle::Frontier;
use keyward::store::{Seal, Store, audit};

thread_local! {
    /// Microseconds since the epoch of the next event: one apart, never repeated.
    static NEXT_AT: Cell<i64> = Cell::new({
        #[expect(clippy::disallowed_methods, reason = "benchmark data, not a rule")]
        Utc::now().timestamp_micros()
    });
}

/// `n` events, each a microsecond after the last event made.
fn events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let at = NEXT_AT.with(|c| c.replace(c.get() + 1));
            event(i, DateTime::from_timestamp_micros(at).unwrap_or_default())
        })
        .collect()
}

fn event(i: usize, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        at,
        actor_kind: "key".into(),
        actor_id: Some(format!("key_bench{:08}", i % 3)),
        actor_name: None,
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
        target_name: None,
        status: Status::Success,
        reason: None,
        source: Source::Http,
        request_source: None,
        client_name: Some("keyward-load".into()),
        client_version: Some("1".into()),
        request_id: Some(i.to_string()),
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        channel: None,
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
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.to_async(&rt).iter_batched(
                || events(batch),
                |events| {
                    let store = &store;
                    async move {
                        let mut tx = store.begin().await.expect("begin");
                        audit::append(&mut tx, &events).await.expect("append");
                        tx.commit().await.expect("commit");
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The SQLite journal mover's path: its own native connection, no async runtime, batches of
/// up to 4096 (what a pass takes depends on the load).
fn bench_sqlite_writer(c: &mut Criterion, path: &std::path::Path, seal: &Seal, name: &str) {
    let mut conn = keyward::store::journal::open_sqlite(path).expect("open");
    let mut group = c.benchmark_group(format!("audit_insert/{name}"));
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for batch in [32usize, 256, 4096] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.iter_batched(
                || events(batch),
                |events| audit::write_batch_sqlite(&mut conn, seal, &events).expect("write"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The Merkle log's own cost per event, which every writer pays inside its transaction: the
/// stored form, its canonical JSON and leaf hash, and appending the leaf to the tree's edge.
fn bench_leaf(c: &mut Criterion) {
    let e = event(
        7,
        DateTime::from_timestamp_micros(1_780_000_000_000_000).unwrap_or_default(),
    );
    let mut edge = Frontier::default();
    let mut group = c.benchmark_group("audit_log");
    group.throughput(Throughput::Elements(1));
    group.bench_function("leaf_hash_and_append", |b| {
        b.iter(|| {
            let row = StoredEvent::of(&e, edge.size() as i64);
            edge.push(row.leaf_hash())
        });
    });
    group.bench_function("stored_form_only", |b| {
        b.iter(|| StoredEvent::of(&e, 1));
    });
    group.finish();
}

/// Encryption at rest per event: the five sealed columns (two for equality, three with a
/// random nonce) and the journal frame, and opening them again.
fn bench_seal(c: &mut Criterion) {
    let seal = sealed();
    let e = event(
        7,
        DateTime::from_timestamp_micros(1_780_000_000_000_000).unwrap_or_default(),
    );
    let row = StoredEvent::of(&e, 1);
    let mut group = c.benchmark_group("at_rest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_event_columns", |b| {
        b.iter(|| {
            let k = seal.key().expect("key");
            (
                k.seal_eq(Place::AuditClientIp, row.client_ip.as_deref().unwrap_or("")),
                k.seal_eq(
                    Place::AuditUserAgent,
                    row.user_agent.as_deref().unwrap_or(""),
                ),
                k.seal(Place::AuditArgs, row.args.as_deref().unwrap_or("")),
                k.seal(
                    Place::AuditBefore,
                    row.before_state.as_deref().unwrap_or(""),
                ),
                k.seal(Place::AuditAfter, row.after_state.as_deref().unwrap_or("")),
            )
        });
    });
    let json = serde_json::to_vec(&e).expect("json");
    group.bench_function("seal_journal_frame", |b| {
        b.iter(|| seal.record(Place::Journal, json.clone()));
    });
    let args = seal
        .text(Place::AuditArgs, row.args.as_deref().unwrap_or(""))
        .into_owned();
    group.bench_function("open_args", |b| {
        b.iter(|| seal.open(Place::AuditArgs, args.clone()).expect("opens"));
    });
    group.finish();
}

fn sealed() -> Seal {
    let key = AtRestKey::parse(&AtRestKey::generate().expect("rng")).expect("key");
    Seal::new(Some(std::sync::Arc::new(key)))
}

fn benches(c: &mut Criterion) {
    bench_leaf(c);
    bench_seal(c);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bench.db");
    let sqlite = format!("sqlite://{}", file.display());
    bench_backend(c, "sqlite", &sqlite);
    bench_sqlite_writer(c, &file, &Seal::default(), "sqlite-mover");
    bench_sqlite_writer(c, &file, &sealed(), "sqlite-mover-encrypted");
    match std::env::var("KEYWARD_BENCH_POSTGRES_URL") {
        Ok(url) => bench_backend(c, "postgres", &url),
        Err(_) => eprintln!(
            "SKIPPED audit_insert/postgres: set KEYWARD_BENCH_POSTGRES_URL to a scratch database"
        ),
    }
}

criterion_group!(audit_insert, benches);
criterion_main!(audit_insert);
