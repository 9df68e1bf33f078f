//! Audit queries at scale: seeds a database with N realistic audit events (default 1,000,000,
//! spread over the last 30 days by default, ~200 agent keys) and times the audit tools' paths through the
//! ops layer, exactly as `audit_query` / `audit_summary` call them.
//!
//! First a few named paths, with min/p50/p99/max and their query plans:
//!   (a) a 100-record page for one actor over a day   (target ≤ 2 ms)
//!   (b) a 7-day count grouped by action, all actors   (target ≤ 60 ms)
//! Then the matrix (`matrix.rs`): every single `group_by` alone and under one filter (the most
//! and the least frequent value of each filterable dimension), a first page under each filter,
//! for an all-tenant and a tenant-scoped caller, over 24 hours and 7 days, and the README's
//! example questions, p50 per cell, cells over target marked `!` and listed at the end. Then
//! the process's RSS and the database's size (table and indexes).
//!
//!     cargo run --release --example audit_scale
//!     cargo run --release --example audit_scale -- --rows 5000000 --only-matrix
//!     cargo run --release --example audit_scale -- --rows 200000 --runs 20 --matrix-runs 0
//!     cargo run --release --example audit_scale -- --with-index "at, action"
//!     cargo run --release --example audit_scale -- \
//!         --database-url postgres://postgres@127.0.0.1:5432/keyward_audit_scale
//!
//! `--days D` spreads the events over the last D days (default 30): 5M events over 150 days
//! have the density of 1M over 30, so the same windows hold the same number of events.
//! `--matrix-runs N` sets the timed runs per matrix cell (default 5; 0 skips the matrix),
//! `--only-matrix` skips the named paths, `--keep` keeps the PostgreSQL database, `--sqlite-dir DIR` keeps SQLite's database in DIR
//! (new or empty) instead of a temporary directory.
//!
//! On PostgreSQL the database named in the URL (its name must contain `audit_scale`, so a typo
//! cannot drop real data) is dropped, created fresh through the `--admin-db` database (default
//! `test`) on the same server, and dropped at the end.
//!
//! Migrations run through `keyward::open_app`, as in the product; events are written through
//! the product's own batch path (`store::audit::write_batch_sqlite`, the statements the audit
//! journal's mover runs, for SQLite; `store::audit::write_batch` for PostgreSQL), per-quarter
//! counts included, in time order. After seeding the example runs `ANALYZE` (as an
//! operator would; on PostgreSQL `VACUUM (ANALYZE)`, as autovacuum would; `--no-analyze`
//! skips it) and reopens the app, so every pooled connection
//! plans with the new statistics. Each `--with-…` flag then adds one index (and runs ANALYZE
//! again), reruns the named paths, and drops the index before the next one.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use keyward::clock::{Clock, SystemClock};
use keyward::domain::audit::{Action, AuditEvent, Source, Status};
use keyward::domain::principal::Principal;
use keyward::domain::tenant::TenantScope;
use keyward::ops::app::App;
use keyward::ops::audit::{Filters, GroupBy};
use keyward::store::audit::{AuditFilter, Dim, Statement};
use keyward::store::{Db, Store};
use serde_json::{Value, json};

#[path = "audit_scale/matrix.rs"]
mod matrix;

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    rows: usize,
    /// Days the events span, ending now.
    days: i64,
    runs: usize,
    database_url: Option<String>,
    admin_db: String,
    analyze: bool,
    all_plans: bool,
    /// Where SQLite's database goes (kept afterwards); a temporary directory when absent.
    sqlite_dir: Option<std::path::PathBuf>,
    /// Keep the PostgreSQL database at the end.
    keep: bool,
    /// Timed runs per matrix cell; 0 skips the matrix.
    matrix_runs: usize,
    /// Skip the named paths (and the index experiments' reruns of them).
    only_matrix: bool,
    /// Extra index experiments, in order: (name, columns).
    indexes: Vec<(String, String)>,
}

fn args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        days: 30,
        runs: 50,
        database_url: None,
        admin_db: "test".into(),
        analyze: true,
        all_plans: false,
        sqlite_dir: None,
        keep: false,
        matrix_runs: 5,
        only_matrix: false,
        indexes: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let mut takes_value = true;
        match argv[i].as_str() {
            "--rows" => a.rows = value.replace('_', "").parse().unwrap_or(a.rows),
            "--days" => a.days = value.parse().unwrap_or(a.days).max(1),
            "--runs" => a.runs = value.parse().unwrap_or(a.runs).max(1),
            "--database-url" => a.database_url = Some(value),
            "--admin-db" => a.admin_db = value,
            "--sqlite-dir" => a.sqlite_dir = Some(value.into()),
            "--matrix-runs" => a.matrix_runs = value.parse().unwrap_or(a.matrix_runs),
            "--with-index" => {
                let n = a.indexes.len();
                a.indexes.push((format!("audit_scale_extra_{n}"), value));
            }
            flag => {
                takes_value = false;
                match flag {
                    "--no-analyze" => a.analyze = false,
                    "--all-plans" => a.all_plans = true,
                    "--only-matrix" => a.only_matrix = true,
                    "--keep" => a.keep = true,
                    other => {
                        eprintln!("unknown argument {other}");
                        std::process::exit(2);
                    }
                }
            }
        }
        i += if takes_value { 2 } else { 1 };
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Deterministic data

/// SplitMix64: a small, fast, seeded generator, so every run seeds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn weighted<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total as usize) as u32;
        for (v, w) in table {
            if r < *w {
                return *v;
            }
            r -= w;
        }
        table[0].0
    }

    fn base62(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..n)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

const TENANTS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "cyberdyne",
    "tyrell",
    "soylent",
    "aperture",
    "massive",
    "oscorp",
    "vandelay",
    "gringotts",
    "dunder",
    "prestige",
    "monarch",
    "sirius",
];

const ROLES: &[(&str, u32)] = &[
    ("reader", 30),
    ("auditor", 25),
    ("key_manager", 30),
    ("admin", 15),
];

const CLIENTS: &[(&str, &str)] = &[
    ("claude-code", "2.1.4"),
    ("cursor", "1.7.2"),
    ("vscode", "1.104.0"),
    ("claude-desktop", "0.13.1"),
    ("ops-bot", "3.2.0"),
];

/// Tool calls made by agent keys, by relative frequency: reads dominate.
const KEY_ACTIONS: &[(Action, u32)] = &[
    (Action::Whoami, 80),
    (Action::KeyList, 180),
    (Action::KeyGet, 150),
    (Action::KeyCreate, 40),
    (Action::KeyRotate, 25),
    (Action::KeyDisable, 10),
    (Action::KeyEnable, 8),
    (Action::KeyRevoke, 20),
    (Action::RoleList, 50),
    (Action::RoleGet, 30),
    (Action::RoleCreate, 4),
    (Action::RoleUpdate, 4),
    (Action::RoleDelete, 2),
    (Action::AuditQuery, 200),
    (Action::AuditGet, 60),
    (Action::AuditSummary, 100),
    (Action::OperatorList, 10),
    (Action::OperatorCreate, 1),
    (Action::OperatorDisable, 1),
    (Action::OperatorEnable, 1),
    (Action::OperatorSetRole, 1),
    (Action::UnknownTool, 5),
];

const STATUSES: &[(Status, u32)] = &[
    (Status::Success, 930),
    (Status::Denied, 40),
    (Status::Failed, 25),
    (Status::Error, 5),
];

const SOURCES: &[(Source, u32)] = &[(Source::Http, 85), (Source::Stdio, 13), (Source::Cli, 2)];

const ROLE_NAMES: &[&str] = &[
    "reader",
    "auditor",
    "key_manager",
    "admin",
    "ci-deployer",
    "support-ro",
    "billing-audit",
    "rotation-bot",
];

/// An agent key that appears in the trail (created for real through `ops::keys::create`).
#[derive(Clone)]
struct Agent {
    id: String,
    preview: String,
    role: String,
    tenants: Vec<String>,
    source: Source,
    client: (&'static str, &'static str),
    ip: String,
}

/// Produces the events, oldest first, batch by batch.
struct Generator {
    rng: Rng,
    agents: Vec<Agent>,
    /// Cumulative Zipf-like weights over `agents` (a few busy agents, a long tail).
    cumulative: Vec<f64>,
    /// Keys that events target: the agents plus keys created and revoked over time.
    target_keys: Vec<String>,
    operators: Vec<(String, String)>,
    start_us: i64,
    slot_us: f64,
    total: usize,
    next: usize,
}

impl Generator {
    fn new(agents: Vec<Agent>, total: usize, days: i64, end: DateTime<Utc>) -> Self {
        let mut rng = Rng(0x00C0_FFEE);
        let mut acc = 0.0;
        let cumulative = (0..agents.len())
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(0.7);
                acc
            })
            .collect();
        let mut target_keys: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
        for _ in 0..2000 {
            target_keys.push(format!("key_{}", rng.base62(16)));
        }
        let operators = ["alice", "bob", "carol", "dan", "erin"]
            .iter()
            .map(|u| (format!("op_{}", rng.base62(16)), (*u).to_owned()))
            .collect();
        let span_us = days * 86_400 * 1_000_000_i64;
        Generator {
            rng,
            agents,
            cumulative,
            target_keys,
            operators,
            start_us: end.timestamp_micros() - span_us,
            slot_us: span_us as f64 / total.max(1) as f64,
            total,
            next: 0,
        }
    }

    fn agent(&mut self) -> usize {
        let last = self.cumulative.last().copied().unwrap_or(1.0);
        let r = self.rng.unit() * last;
        self.cumulative
            .partition_point(|c| *c < r)
            .min(self.agents.len() - 1)
    }

    fn batch(&mut self, n: usize) -> Vec<AuditEvent> {
        let n = n.min(self.total - self.next);
        (0..n).map(|_| self.event()).collect()
    }

    fn event(&mut self) -> AuditEvent {
        let i = self.next;
        self.next += 1;
        // Uniform over the span, strictly in order: event i falls somewhere in slot i.
        let at_us = self.start_us + ((i as f64 + self.rng.unit()) * self.slot_us) as i64;
        let at = DateTime::from_timestamp_micros(at_us).unwrap_or_default();
        let roll = self.rng.unit();
        if roll < 0.02 {
            self.anonymous_failure(at)
        } else if roll < 0.025 {
            self.operator_event(at)
        } else {
            self.agent_event(at, i)
        }
    }

    fn base(&mut self, at: DateTime<Utc>, source: Source, client: (&str, &str)) -> AuditEvent {
        let http = source == Source::Http;
        AuditEvent {
            at,
            actor_kind: "key".into(),
            actor_id: None,
            actor_name: None,
            actor_preview: None,
            role: None,
            tenants: vec!["*".into()],
            action: Action::Whoami,
            target_type: None,
            target_id: None,
            target_name: None,
            status: Status::Success,
            reason: None,
            source,
            request_source: None,
            client_name: (source != Source::Cli).then(|| client.0.to_owned()),
            client_version: (source != Source::Cli).then(|| client.1.to_owned()),
            request_id: Some(self.rng.below(100_000).to_string()),
            client_ip: None,
            user_agent: http.then(|| format!("{}/{} (node)", client.0, client.1)),
            channel: None,
            args: None,
            before: None,
            after: None,
        }
    }

    /// A refused credential from nobody in particular (a scanner, a stale config).
    fn anonymous_failure(&mut self, at: DateTime<Utc>) -> AuditEvent {
        let preview = self
            .rng
            .chance(0.5)
            .then(|| format!("kw_{}", self.rng.base62(8)));
        let ip = format!(
            "203.0.113.{}",
            self.rng.below(254) + 1 // documentation range
        );
        let reason = *self
            .rng
            .pick(&["malformed key", "bad checksum", "unknown key"]);
        AuditEvent {
            actor_kind: "anonymous".into(),
            actor_name: None,
            actor_preview: preview,
            action: Action::AuthFailed,
            status: Status::Denied,
            reason: Some(reason.into()),
            client_ip: Some(ip),
            ..self.base(at, Source::Http, ("curl", "8.5.0"))
        }
    }

    fn operator_event(&mut self, at: DateTime<Utc>) -> AuditEvent {
        let (id, username) = self.rng.pick(&self.operators).clone();
        let action = self.rng.weighted(&[
            (Action::Login, 40),
            (Action::Logout, 30),
            (Action::OperatorList, 10),
            (Action::KeyList, 10),
            (Action::AuditQuery, 10),
        ]);
        let ip = format!("192.168.1.{}", self.rng.below(50) + 10);
        AuditEvent {
            actor_kind: "operator".into(),
            actor_id: Some(id),
            actor_name: None,
            actor_preview: Some(username),
            role: Some("admin".into()),
            action,
            client_ip: Some(ip),
            args: Some(json!({})),
            ..self.base(at, Source::Http, ("browser", "1"))
        }
    }

    fn agent_event(&mut self, at: DateTime<Utc>, i: usize) -> AuditEvent {
        let k = self.agent();
        let a = self.agents[k].clone();
        let mut e = AuditEvent {
            actor_id: Some(a.id.clone()),
            actor_name: None,
            actor_preview: Some(a.preview.clone()),
            role: Some(a.role.clone()),
            tenants: a.tenants.clone(),
            client_ip: (a.source == Source::Http).then(|| a.ip.clone()),
            ..self.base(at, a.source, a.client)
        };
        if self.rng.chance(0.01) {
            // The key itself was refused (expired, disabled, revoked).
            e.action = Action::AuthFailed;
            e.status = Status::Denied;
            e.role = None;
            e.reason = Some(
                (*self
                    .rng
                    .pick(&["key expired", "key disabled", "key revoked"]))
                .into(),
            );
            return e;
        }
        e.action = self.rng.weighted(KEY_ACTIONS);
        e.status = if e.action == Action::UnknownTool {
            Status::Denied
        } else {
            self.rng.weighted(STATUSES)
        };
        let key = self.rng.pick(&self.target_keys).clone();
        let role = (*self.rng.pick(ROLE_NAMES)).to_owned();
        let (target, args): (Option<(&str, String)>, Value) = match e.action {
            Action::Whoami => (None, json!({})),
            Action::KeyList => (
                None,
                if self.rng.chance(0.5) {
                    json!({"role": role, "limit": 50})
                } else {
                    json!({})
                },
            ),
            Action::KeyGet
            | Action::KeyRotate
            | Action::KeyDisable
            | Action::KeyEnable
            | Action::KeyRevoke => (Some(("key", key.clone())), json!({"key_id": key})),
            Action::KeyCreate => {
                let id = format!("key_{}", self.rng.base62(16));
                let tenants = a.tenants.clone();
                (
                    Some(("key", id)),
                    json!({"name": format!("ci-{i}"), "role": role, "tenants": tenants,
                           "expires": "30d", "description": "created by a deployment pipeline"}),
                )
            }
            Action::RoleList => (None, json!({})),
            Action::RoleGet | Action::RoleDelete => {
                (Some(("role", role.clone())), json!({"name": role}))
            }
            Action::RoleCreate | Action::RoleUpdate => (
                Some(("role", role.clone())),
                json!({"name": role, "permissions": ["key:read", "role:read", "audit:read"]}),
            ),
            Action::AuditQuery => {
                let since = *self.rng.pick(&["15m", "24h", "7d", "yesterday", "today"]);
                (
                    None,
                    json!({"actor": [self.rng.pick(&self.target_keys)], "since": since, "limit": 20}),
                )
            }
            Action::AuditGet => {
                let id = (self.rng.below(i.max(1)) + 1).to_string();
                (Some(("audit_event", id.clone())), json!({"id": id}))
            }
            Action::AuditSummary => {
                let by = *self.rng.pick(&["actor", "action", "status", "day"]);
                (None, json!({"group_by": [by], "since": "7d"}))
            }
            Action::OperatorList => (None, json!({})),
            Action::OperatorCreate
            | Action::OperatorDisable
            | Action::OperatorEnable
            | Action::OperatorSetRole => {
                let (id, username) = self.rng.pick(&self.operators).clone();
                (Some(("operator", id)), json!({"username": username}))
            }
            _ => (None, json!({"name": "delete_everything"})),
        };
        if let Some((kind, id)) = target {
            e.target_type = Some(kind.into());
            e.target_id = Some(id);
        }
        e.args = Some(args);
        match e.status {
            Status::Success => {
                if matches!(
                    e.action,
                    Action::KeyCreate
                        | Action::KeyRotate
                        | Action::KeyDisable
                        | Action::KeyEnable
                        | Action::KeyRevoke
                ) {
                    let id = e.target_id.clone().unwrap_or_default();
                    let state = |status: &str| {
                        json!({"id": id, "name": "ci-deployer", "role": "key_manager",
                               "tenants": a.tenants, "preview": a.preview, "status": status,
                               "created_at": "2026-01-02T03:04:05Z", "expires_at": "2026-04-02T03:04:05Z"})
                    };
                    if e.action != Action::KeyCreate {
                        e.before = Some(state("active"));
                    }
                    e.after = Some(state(match e.action {
                        Action::KeyDisable => "disabled",
                        Action::KeyRevoke => "revoked",
                        _ => "active",
                    }));
                }
            }
            Status::Denied => {
                e.reason = Some(format!(
                    "role '{}' lacks the permission this tool needs",
                    a.role
                ));
            }
            Status::Failed => e.reason = Some("not found (or outside your tenants)".into()),
            Status::Error => e.reason = Some("internal error".into()),
        }
        e
    }
}

// ---------------------------------------------------------------------------------------------
// Setting up: the database, the admin, the agents

fn now() -> DateTime<Utc> {
    SystemClock.now()
}

async fn open(url: &str) -> anyhow::Result<(App, tokio::task::JoinHandle<()>)> {
    keyward::open_app(url, Arc::new(SystemClock), Default::default()).await
}

async fn close(app: App, writer: tokio::task::JoinHandle<()>) {
    let store = app.store.clone();
    app.audit.close().await;
    drop(app);
    let _ = writer.await;
    store.close().await;
}

/// The admin key's secret and the tenant-scoped auditor's, and the agents.
struct World {
    admin_key: String,
    tenant_key: String,
    agents: Vec<Agent>,
}

async fn create_world(app: &App) -> anyhow::Result<World> {
    let meta = keyward::ops::CallMeta::new(Source::Cli);
    let first = keyward::ops::bootstrap::FirstAdmin {
        key_name: "admin",
        expires_at: None,
        operator: None,
    };
    let admin = keyward::ops::bootstrap::bootstrap(app, first, &meta)
        .await?
        .key;
    let principal = keyward::ops::auth::authenticate_key(app, &admin.api_key).await?;
    let create = |name: String, role: &str, tenants: Vec<String>| {
        let call =
            keyward::ops::Call::new(principal.clone(), Action::KeyCreate, meta.clone(), None);
        let input = keyward::ops::keys::CreateKey {
            name,
            description: None,
            role: role.to_owned(),
            tenants,
            expires: Some("never".into()),
        };
        async move { keyward::ops::keys::create(app, &call, input).await }
    };
    let tenant_key = create("acme-auditor".into(), "auditor", vec!["acme".into()])
        .await?
        .api_key;
    let mut rng = Rng(42);
    let mut agents = Vec::new();
    for n in 0..200 {
        let role = rng.weighted(ROLES);
        let roll = rng.unit();
        let tenants: Vec<String> = if roll < 0.6 {
            vec!["*".into()]
        } else if roll < 0.9 {
            vec![(*rng.pick(TENANTS)).to_owned()]
        } else {
            let mut two = vec![
                (*rng.pick(TENANTS)).to_owned(),
                (*rng.pick(TENANTS)).to_owned(),
            ];
            two.sort();
            two.dedup();
            two
        };
        let created = create(format!("agent-{n:03}"), role, tenants.clone()).await?;
        agents.push(Agent {
            id: created.key.id,
            preview: created.key.preview,
            role: role.to_owned(),
            tenants: created.key.tenants,
            source: rng.weighted(SOURCES),
            client: *rng.pick(CLIENTS),
            ip: format!("10.0.{}.{}", rng.below(8), rng.below(250) + 2),
        });
    }
    Ok(World {
        admin_key: admin.api_key,
        tenant_key,
        agents,
    })
}

const BATCH: usize = 10_000;

/// Writes `rows` events through the product's batch path, generating the next batch on
/// another thread while one is written.
async fn seed(
    app: &App,
    url: &str,
    agents: Vec<Agent>,
    rows: usize,
    days: i64,
) -> anyhow::Result<usize> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AuditEvent>>(4);
    let end = now();
    let generator = std::thread::spawn(move || {
        let mut g = Generator::new(agents, rows, days, end);
        loop {
            let batch = g.batch(BATCH);
            if batch.is_empty() || tx.blocking_send(batch).is_err() {
                break;
            }
        }
    });
    let written = match &app.store.db {
        Db::Sqlite(_) => {
            let path = sqlite_path(url);
            let seal = app.store.seal.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
                let mut conn = keyward::store::journal::open_sqlite(&path)?;
                let mut n = 0;
                while let Some(batch) = rx.blocking_recv() {
                    n += keyward::store::audit::write_batch_sqlite(&mut conn, &seal, &batch)?.len();
                    progress(n, rows);
                }
                Ok(n)
            })
            .await??
        }
        Db::Postgres(_) => {
            let mut n = 0;
            while let Some(batch) = rx.recv().await {
                n += keyward::store::audit::write_batch(&app.store, &batch)
                    .await?
                    .len();
                progress(n, rows);
            }
            n
        }
    };
    let _ = generator.join();
    eprintln!();
    Ok(written)
}

fn progress(n: usize, total: usize) {
    if n % 100_000 < BATCH || n == total {
        eprint!("\r  seeded {n} / {total}");
    }
}

fn sqlite_path(url: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(url.trim_start_matches("sqlite://"))
}

async fn execute(store: &Store, sql: &str) -> anyhow::Result<()> {
    match &store.db {
        Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ())?,
        Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ())?,
    }
    Ok(())
}

async fn count(store: &Store, sql: &str) -> anyhow::Result<i64> {
    Ok(match &store.db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
    })
}

// ---------------------------------------------------------------------------------------------
// Timing

struct Stats {
    name: String,
    rows: usize,
    runs: usize,
    min: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Longest one path may take in all (slow index experiments stop early, after at least 5 runs).
const BUDGET: Duration = Duration::from_secs(30);

async fn measure<F, Fut>(name: &str, runs: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut rows = 0;
    for _ in 0..3 {
        rows = f().await?;
    }
    let started = Instant::now();
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        rows = f().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if ms.len() >= 5 && started.elapsed() > BUDGET {
            break;
        }
    }
    ms.sort_by(f64::total_cmp);
    let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let s = Stats {
        name: name.to_owned(),
        rows,
        runs: ms.len(),
        min: ms[0],
        p50: rank(0.50),
        p99: rank(0.99),
        max: ms[ms.len() - 1],
    };
    println!(
        "  {:<58} {:>5} {:>4} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        s.name, s.rows, s.runs, s.min, s.p50, s.p99, s.max
    );
    Ok(s)
}

fn header() {
    println!(
        "  {:<58} {:>5} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "path (ms)", "rows", "runs", "min", "p50", "p99", "max"
    );
}

/// Everything a timing phase needs: the reopened app, its principals, the agents to ask about.
struct Ctx {
    app: App,
    admin: Principal,
    tenant: Principal,
    busy: Agent,
    median: Agent,
}

fn actor(a: &Agent) -> Filters {
    Filters {
        actors: vec![a.id.clone()],
        since: Some("24h".into()),
        ..Filters::default()
    }
}

fn since(s: &str) -> Filters {
    Filters {
        since: Some(s.into()),
        ..Filters::default()
    }
}

async fn page(c: &Ctx, p: &Principal, f: &Filters, limit: i64) -> anyhow::Result<usize> {
    Ok(keyward::ops::audit::query(&c.app, p, f, Some(limit), None)
        .await?
        .events
        .len())
}

async fn summary(c: &Ctx, p: &Principal, f: &Filters, by: &[GroupBy]) -> anyhow::Result<usize> {
    Ok(keyward::ops::audit::summary(&c.app, p, f, by, None)
        .await?
        .groups
        .len())
}

async fn phase(c: &Ctx, label: &str, runs: usize, all_plans: bool) -> anyhow::Result<Vec<Stats>> {
    println!("\n== {label} (load average {})", loadavg());
    let store = &c.app.store;
    let us = |t: DateTime<Utc>| t.timestamp_micros();
    let t0 = now();
    let all = || AuditFilter::visible_to(TenantScope::All);
    // What the tools' paths ask the store, as ops builds it (for plans and the store-only
    // timings): (a) one actor's last day, (b) the last week over everyone.
    let filter_a = AuditFilter {
        actors: vec![c.busy.id.clone()],
        since: Some(us(t0 - chrono::Duration::hours(24))),
        ..all()
    };
    let filter_b = AuditFilter {
        since: Some(us(t0 - chrono::Duration::days(7))),
        ..all()
    };
    let denied_week = AuditFilter {
        statuses: vec!["denied".into()],
        ..filter_b.clone()
    };
    let actor_week = AuditFilter {
        actors: vec![c.busy.id.clone()],
        ..filter_b.clone()
    };
    let tenant = AuditFilter::visible_to(TenantScope::parse(&["acme"])?);
    let revokes = AuditFilter {
        actions: vec!["key_revoke".into()],
        ..all()
    };
    let top = Some(keyward::ops::audit::DEFAULT_TOP);
    let mut plans = vec![
        (
            "(a) page, 1 actor, 24h, limit 100",
            Statement::Page {
                filter: &filter_a,
                limit: 101,
            },
        ),
        (
            "(b) summary from the events alone, 7d, by action (the tool reads counts)",
            Statement::Summary {
                filter: &filter_b,
                dims: &[Dim::Action],
                limit: top,
            },
        ),
    ];
    if all_plans {
        plans.extend([
            (
                "summary, denied, 7d, by actor",
                Statement::Summary {
                    filter: &denied_week,
                    dims: &[Dim::Actor],
                    limit: top,
                },
            ),
            (
                "summary, 1 actor, 7d, by day",
                Statement::Summary {
                    filter: &actor_week,
                    dims: &[Dim::Quarter],
                    limit: Some(50_001),
                },
            ),
            (
                "page, tenant caller [acme], limit 100",
                Statement::Page {
                    filter: &tenant,
                    limit: 101,
                },
            ),
            (
                "page, action key_revoke, limit 100",
                Statement::Page {
                    filter: &revokes,
                    limit: 101,
                },
            ),
        ]);
    }
    for (name, statement) in &plans {
        let mut lines = keyward::store::audit::explain(store, statement)
            .await?
            .into_iter();
        println!("  plan {name}:\n    {}", lines.next().unwrap_or_default());
        for line in lines {
            println!("      {line}");
        }
    }
    let ops_a =
        keyward::ops::audit::query(&c.app, &c.admin, &actor(&c.busy), Some(100), None).await?;

    header();
    let mut out = Vec::new();
    out.push(
        measure("(a) page: busiest actor, 24h, limit 100", runs, || {
            let f = actor(&c.busy);
            async move { page(c, &c.admin, &f, 100).await }
        })
        .await?,
    );
    out.push(
        measure("(a') page: median actor, 24h, limit 100", runs, || {
            let f = actor(&c.median);
            async move { page(c, &c.admin, &f, 100).await }
        })
        .await?,
    );
    out.push(
        measure("(b) summary: 7d by action, all actors", runs, || {
            let f = since("7d");
            async move { summary(c, &c.admin, &f, &[GroupBy::Action]).await }
        })
        .await?,
    );
    out.push(
        measure("(a) the store's page alone (no ops layer)", runs, || {
            let f = filter_a.clone();
            async move {
                Ok(keyward::store::audit::briefs(store, &f, None, 101)
                    .await?
                    .len())
            }
        })
        .await?,
    );
    out.push(
        measure(
            "(b) the same count from the events alone (no counts)",
            runs,
            || {
                let f = filter_b.clone();
                async move {
                    Ok(
                        keyward::store::audit::summarise(store, &f, &[Dim::Action], top)
                            .await?
                            .groups
                            .len(),
                    )
                }
            },
        )
        .await?,
    );
    out.push(
        measure("(c) summary: busiest actor, 7d by day", runs, || {
            let f = Filters {
                actors: vec![c.busy.id.clone()],
                ..since("7d")
            };
            async move { summary(c, &c.admin, &f, &[GroupBy::Day]).await }
        })
        .await?,
    );
    out.push(
        measure("(c) summary: denied, 7d by actor", runs, || {
            let f = Filters {
                statuses: vec![Status::Denied],
                ..since("7d")
            };
            async move { summary(c, &c.admin, &f, &[GroupBy::Actor]).await }
        })
        .await?,
    );
    let cursor = ops_a
        .next_cursor
        .clone()
        .context("the busiest actor has more than 100 events in a day")?;
    out.push(
        measure("(c) page 2 of (a) via next_cursor", runs, || {
            let cursor = cursor.clone();
            async move {
                Ok(keyward::ops::audit::query(
                    &c.app,
                    &c.admin,
                    &Filters::default(),
                    None,
                    Some(&cursor),
                )
                .await?
                .events
                .len())
            }
        })
        .await?,
    );
    out.push(
        measure("(c) page: action key_revoke only, limit 100", runs, || {
            let f = Filters {
                actions: vec![Action::KeyRevoke],
                ..Filters::default()
            };
            async move { page(c, &c.admin, &f, 100).await }
        })
        .await?,
    );
    out.push(
        measure("(c) page: action role_delete, 24h, limit 100", runs, || {
            let f = Filters {
                actions: vec![Action::RoleDelete],
                ..since("24h")
            };
            async move { page(c, &c.admin, &f, 100).await }
        })
        .await?,
    );
    out.push(
        measure(
            "(c) page: tenant caller [acme], no filter, limit 100",
            runs,
            || {
                let f = Filters::default();
                async move { page(c, &c.tenant, &f, 100).await }
            },
        )
        .await?,
    );
    out.push(
        measure(
            "(c) summary: tenant caller [acme], 7d by action",
            runs,
            || {
                let f = since("7d");
                async move { summary(c, &c.tenant, &f, &[GroupBy::Action]).await }
            },
        )
        .await?,
    );
    out.push(
        measure("(c) summary: 24h by actor, all actors", runs, || {
            let f = since("24h");
            async move { summary(c, &c.admin, &f, &[GroupBy::Actor]).await }
        })
        .await?,
    );
    Ok(out)
}

/// The named paths (unless `--only-matrix`), then the matrix (unless `--matrix-runs 0`).
async fn measure_all(c: &Ctx, label: &str, a: &Args) -> anyhow::Result<Option<Vec<Stats>>> {
    let named = match a.only_matrix {
        true => None,
        false => Some(phase(c, label, a.runs, a.all_plans).await?),
    };
    if a.matrix_runs > 0 {
        let mut tally = matrix::Tally::default();
        for (who, p) in [
            ("all-tenant caller", &c.admin),
            ("tenant caller [acme]", &c.tenant),
        ] {
            for window in ["24h", "7d"] {
                matrix::run(&c.app, who, p, window, a.matrix_runs, &mut tally).await?;
            }
            matrix::readme(&c.app, who, p, a.matrix_runs, &mut tally).await?;
        }
        tally.print(label);
    }
    Ok(named)
}

async fn context(
    url: &str,
    world: &World,
    busy: &Agent,
    median: &Agent,
) -> anyhow::Result<(Ctx, tokio::task::JoinHandle<()>)> {
    let (app, writer) = open(url).await?;
    let admin = keyward::ops::auth::authenticate_key(&app, &world.admin_key).await?;
    let tenant = keyward::ops::auth::authenticate_key(&app, &world.tenant_key).await?;
    Ok((
        Ctx {
            app,
            admin,
            tenant,
            busy: busy.clone(),
            median: median.clone(),
        },
        writer,
    ))
}

// ---------------------------------------------------------------------------------------------
// Process and database facts

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn database_size(store: &Store, url: &str) -> anyhow::Result<String> {
    Ok(match &store.db {
        Db::Sqlite(_) => {
            let path = sqlite_path(url);
            let size = |suffix: &str| {
                std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len())
            };
            format!(
                "{:.1} MiB file + {:.1} MiB WAL",
                mib(size("")),
                mib(size("-wal"))
            )
        }
        Db::Postgres(p) => {
            let total: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(p)
                .await?;
            let table: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('audit_events')")
                .fetch_one(p)
                .await?;
            let indexes: i64 = sqlx::query_scalar("SELECT pg_indexes_size('audit_events')")
                .fetch_one(p)
                .await?;
            format!(
                "database {:.1} MiB; audit_events {:.1} MiB of which indexes {:.1} MiB",
                mib(total as u64),
                mib(table as u64),
                mib(indexes as u64)
            )
        }
    })
}

/// Each audit table and index with its size in MiB, largest first: from `dbstat` on SQLite
/// (when the library has it; else nothing), from the catalog on PostgreSQL.
async fn object_sizes(store: &Store) -> Vec<(String, f64)> {
    let rows: Result<Vec<(String, i64)>, sqlx::Error> = match &store.db {
        Db::Sqlite(p) => {
            sqlx::query_as(
                "SELECT name, CAST(SUM(pgsize) AS INTEGER) FROM dbstat \
                 WHERE name LIKE 'audit%' GROUP BY name ORDER BY 2 DESC",
            )
            .fetch_all(p)
            .await
        }
        Db::Postgres(p) => {
            sqlx::query_as(
                "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relname LIKE 'audit%' \
                 AND c.relkind IN ('r', 'i') ORDER BY 2 DESC",
            )
            .fetch_all(p)
            .await
        }
    };
    rows.unwrap_or_default()
        .into_iter()
        .map(|(name, bytes)| (name, mib(bytes.max(0) as u64)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL scratch database

struct Scratch {
    admin_url: String,
    name: String,
}

impl Scratch {
    fn new(url: &str, admin_db: &str) -> anyhow::Result<Scratch> {
        let mut parsed = url::Url::parse(url).context("invalid --database-url")?;
        let name = parsed.path().trim_start_matches('/').to_owned();
        anyhow::ensure!(
            name.contains("audit_scale")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "the database in --database-url is dropped and recreated, so its name must contain \
             'audit_scale' (lowercase letters, digits, '_'), e.g. .../keyward_audit_scale"
        );
        parsed.set_path(&format!("/{admin_db}"));
        Ok(Scratch {
            admin_url: parsed.to_string(),
            name,
        })
    }

    async fn admin(&self, sql: &str) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to {}",
                    keyward::config::redact_url(&self.admin_url)
                )
            })?;
        sqlx::query(sql).execute(&mut c).await?;
        c.close().await?;
        Ok(())
    }

    async fn recreate(&self) -> anyhow::Result<()> {
        self.drop_it().await?;
        self.admin(&format!("CREATE DATABASE {}", self.name)).await
    }

    async fn drop_it(&self) -> anyhow::Result<()> {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let (url, scratch) = match &a.database_url {
        Some(u) if u.starts_with("postgres") => {
            let s = Scratch::new(u, &a.admin_db)?;
            s.recreate().await?;
            (u.clone(), Some(s))
        }
        Some(u) => anyhow::bail!(
            "--database-url must be a postgres:// URL (SQLite runs in a temporary directory): {u}"
        ),
        None => {
            let dir = a.sqlite_dir.as_deref().unwrap_or(dir.path());
            std::fs::create_dir_all(dir)?;
            anyhow::ensure!(
                std::fs::read_dir(dir)?.next().is_none(),
                "--sqlite-dir must be a new or empty directory: {}",
                dir.display()
            );
            let db = dir.join("keyward.db");
            (format!("sqlite://{}", db.display()), None)
        }
    };
    let result = run(&a, &url).await;
    if let Some(s) = &scratch {
        if a.keep {
            println!("\nkept database {} (--keep)", s.name);
        } else {
            s.drop_it().await?;
            println!("\ndropped database {}", s.name);
        }
    }
    result
}

async fn run(a: &Args, url: &str) -> anyhow::Result<()> {
    let (app, writer) = open(url).await?;
    let backend = app.store.backend();
    println!(
        "audit_scale: {backend} at {}, {} rows over {} days, {} runs per path, {} per matrix cell",
        keyward::config::redact_url(url),
        a.rows,
        a.days,
        a.runs,
        a.matrix_runs
    );
    if let Db::Sqlite(p) = &app.store.db {
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(p)
            .await?;
        println!("SQLite {version}");
    }
    if let Db::Postgres(p) = &app.store.db {
        let version: String = sqlx::query_scalar("SELECT version()").fetch_one(p).await?;
        println!("{version}");
    }

    let world = create_world(&app).await?;
    // Rank the agents the way the generator weights them: index 0 is the busiest.
    let busy = world.agents[0].clone();
    let median = world.agents[world.agents.len() / 2].clone();

    let t = Instant::now();
    let written = seed(&app, url, world.agents.clone(), a.rows, a.days).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "seeded {written} audit events in {secs:.1} s ({:.0} rows/s), through the product's batch path",
        written as f64 / secs
    );
    let events = count(&app.store, "SELECT COUNT(*) FROM audit_events").await?;
    let tenant_rows = count(&app.store, "SELECT COUNT(*) FROM audit_tenants").await?;
    let scoped = count(
        &app.store,
        "SELECT COUNT(*) FROM audit_events WHERE tenants <> '*'",
    )
    .await?;
    println!(
        "audit_events {events} rows ({scoped} tenant-scoped), audit_tenants {tenant_rows} rows"
    );
    let busy_day = count(
        &app.store,
        &format!(
            "SELECT COUNT(*) FROM audit_events WHERE actor_id = '{}' AND at >= {}",
            busy.id,
            (now() - chrono::Duration::hours(24)).timestamp_micros()
        ),
    )
    .await?;
    println!(
        "busiest actor {} ({}) has {busy_day} events in the last 24h; median actor {}",
        busy.id, busy.preview, median.id
    );
    // What the server's folder does in the background: fold the events into the hourly and
    // daily roll-ups and compact the hours that are past.
    // Step by step, as the folder does (each step one transaction: on SQLite, how long other
    // writes can wait).
    let t = Instant::now();
    let settled = (app.now() - chrono::Duration::minutes(10)).timestamp_micros();
    let (mut events, mut hours, mut steps) = (0, 0, 0);
    let (mut longest_fold, mut longest_compaction) = (Duration::ZERO, Duration::ZERO);
    loop {
        let s = Instant::now();
        let step = keyward::store::audit::rollup::fold_step(&app.store, settled).await?;
        let took = s.elapsed();
        if step.folded > 0 {
            longest_fold = longest_fold.max(took);
        } else {
            longest_compaction = longest_compaction.max(took);
        }
        (events, hours, steps) = (
            events + step.folded,
            hours + step.compacted_hours,
            steps + 1,
        );
        if !step.more {
            break;
        }
    }
    println!(
        "folded {events} events in {:.1} s ({hours} hours compacted; {steps} transactions, \
         the longest folding {:.0} ms, the longest compacting {:.0} ms)",
        t.elapsed().as_secs_f64(),
        longest_fold.as_secs_f64() * 1e3,
        longest_compaction.as_secs_f64() * 1e3
    );
    for table in keyward::store::audit::rollup::Shape::ALL.map(|s| s.table()) {
        let rows = |span: i64| format!("SELECT COUNT(*) FROM {table} WHERE span = {span}");
        let hour_rows = count(&app.store, &rows(3_600_000_000)).await?;
        let day_rows = count(&app.store, &rows(86_400_000_000)).await?;
        println!("  {table}: {hour_rows} hour rows and {day_rows} day rows");
    }
    if a.analyze {
        // On PostgreSQL also VACUUM: index-only scans need the visibility map that autovacuum
        // keeps (0015 runs it after every 1% of growth on audit_events), and a server with
        // autovacuum off, like this machine's, would otherwise never set it.
        let what = match backend {
            "postgres" => "VACUUM (ANALYZE)",
            _ => "ANALYZE",
        };
        let t = Instant::now();
        execute(&app.store, what).await?;
        println!(
            "ran {what} after seeding, as an operator would ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("no ANALYZE (--no-analyze): the planner has no statistics");
    }
    println!(
        "size after seeding: {}",
        database_size(&app.store, url).await?
    );
    close(app, writer).await;

    let mut results: Vec<(String, Vec<Stats>)> = Vec::new();
    {
        let (c, writer) = context(url, &world, &busy, &median).await?;
        let label = format!("{backend}: indexes from the migrations");
        if let Some(stats) = measure_all(&c, &label, a).await? {
            results.push((label, stats));
        }
        close(c.app, writer).await;
    }
    for (name, columns) in &a.indexes {
        let (app, writer) = open(url).await?;
        let t = Instant::now();
        execute(
            &app.store,
            &format!("CREATE INDEX {name} ON audit_events({columns})"),
        )
        .await?;
        let created = t.elapsed().as_secs_f64();
        if a.analyze {
            execute(&app.store, "ANALYZE").await?;
        }
        println!(
            "\ncreated index {name} ON audit_events({columns}) in {created:.1} s{}",
            if a.analyze { ", then ANALYZE" } else { "" }
        );
        close(app, writer).await;
        let (c, writer) = context(url, &world, &busy, &median).await?;
        let label = format!("{backend}: + index on audit_events({columns})");
        if let Some(stats) = measure_all(&c, &label, a).await? {
            results.push((label, stats));
        }
        execute(&c.app.store, &format!("DROP INDEX {name}")).await?;
        close(c.app, writer).await;
    }

    if results.len() > 1 {
        println!("\n== p50 / p99 (ms) side by side");
        print!("  {:<58}", "path");
        for i in 0..results.len() {
            print!(" {:>19}", format!("[{i}]"));
        }
        println!();
        for row in 0..results[0].1.len() {
            print!("  {:<58}", results[0].1[row].name);
            for (_, stats) in &results {
                let s = &stats[row];
                print!(" {:>9.3} {:>9.3}", s.p50, s.p99);
            }
            println!();
        }
        for (i, (label, _)) in results.iter().enumerate() {
            println!("  [{i}] {label}");
        }
    }

    let (app, writer) = open(url).await?;
    println!(
        "\nsize at the end: {}",
        database_size(&app.store, url).await?
    );
    for (name, size) in object_sizes(&app.store).await {
        println!("  {size:>9.1} MiB  {name}");
    }
    close(app, writer).await;
    println!(
        "process RSS {:.1} MiB (peak {:.1} MiB)",
        status_kib("VmRSS:") as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
    Ok(())
}
