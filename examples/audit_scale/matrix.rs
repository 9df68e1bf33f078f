//! The audit-question matrix: every single `group_by` the summary tool offers, alone and with
//! one filter (the most and the least frequent value of each filterable dimension in the last
//! 7 days, as the caller sees them), for an all-tenant and a tenant-scoped caller, over the last
//! 24 hours and 7 days; a first page under every one of those filters; and the README's
//! example questions. Every cell runs through the ops layer, as the tools call it, and prints
//! its p50 in milliseconds, marked `!` when it misses its target (a page 2 ms, a summary 60 ms).

use std::time::Instant;

use keyward::domain::audit::{Action, Source, Status};
use keyward::domain::principal::Principal;
use keyward::domain::tenant::TenantScope;
use keyward::ops::app::App;
use keyward::ops::audit::{Filters, GroupBy, Novel};
use keyward::store::audit::{AuditFilter, Dim};

pub const PAGE_TARGET_MS: f64 = 2.0;
pub const SUMMARY_TARGET_MS: f64 = 60.0;

const GROUPS: [GroupBy; 9] = [
    GroupBy::Actor,
    GroupBy::Action,
    GroupBy::Status,
    GroupBy::Source,
    GroupBy::Role,
    GroupBy::Target,
    GroupBy::ClientIp,
    GroupBy::Hour,
    GroupBy::Day,
];

/// A dimension a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterDim {
    Actor,
    Role,
    Tenant,
    Action,
    Target,
    Status,
    Source,
    ClientIp,
}

const FILTER_DIMS: [FilterDim; 8] = [
    FilterDim::Actor,
    FilterDim::Role,
    FilterDim::Tenant,
    FilterDim::Action,
    FilterDim::Target,
    FilterDim::Status,
    FilterDim::Source,
    FilterDim::ClientIp,
];

impl FilterDim {
    fn name(self) -> &'static str {
        match self {
            FilterDim::Actor => "actor",
            FilterDim::Role => "role",
            FilterDim::Tenant => "tenant",
            FilterDim::Action => "action",
            FilterDim::Target => "target",
            FilterDim::Status => "status",
            FilterDim::Source => "source",
            FilterDim::ClientIp => "client_ip",
        }
    }

    /// The store dimension whose groups give this filter's values (the tenant has none).
    fn dim(self) -> Option<Dim> {
        Some(match self {
            FilterDim::Actor => Dim::Actor,
            FilterDim::Role => Dim::Role,
            FilterDim::Action => Dim::Action,
            FilterDim::Target => Dim::Target,
            FilterDim::Status => Dim::Status,
            FilterDim::Source => Dim::Source,
            FilterDim::ClientIp => Dim::ClientIp,
            FilterDim::Tenant => return None,
        })
    }
}

/// One filter of the matrix: a dimension, a value and how often the value occurs.
#[derive(Debug, Clone)]
struct Value {
    dim: FilterDim,
    value: String,
    /// "common" or "rare".
    kind: &'static str,
    /// Events with this value in the last 7 days, as the caller sees them.
    week: i64,
}

impl Value {
    fn label(&self) -> String {
        let shown: String = self.value.chars().take(16).collect();
        format!(
            "{}={shown} ({}, {}/7d)",
            self.dim.name(),
            self.kind,
            self.week
        )
    }

    fn apply(&self, f: &mut Filters) {
        let v = self.value.clone();
        match self.dim {
            FilterDim::Actor => f.actors = vec![v],
            FilterDim::Role => f.roles = vec![v],
            FilterDim::Tenant => f.tenants = vec![v],
            FilterDim::Target => f.targets = vec![v],
            FilterDim::ClientIp => f.client_ips = vec![v],
            FilterDim::Action => f.actions = Action::parse(&v).into_iter().collect(),
            FilterDim::Status => f.statuses = Status::parse(&v).into_iter().collect(),
            FilterDim::Source => f.sources = Source::parse(&v).into_iter().collect(),
        }
    }
}

/// The caller's most and least frequent value of `dim` over the last 7 days.
async fn values(
    app: &App,
    scope: &TenantScope,
    dim: FilterDim,
    week_start: i64,
) -> anyhow::Result<Vec<Value>> {
    let mut counted: Vec<(String, i64)> = match dim.dim() {
        Some(d) => {
            let f = AuditFilter {
                since: Some(week_start),
                ..AuditFilter::visible_to(scope.clone())
            };
            keyward::store::audit::summarise(&app.store, &f, &[d], None)
                .await?
                .groups
                .into_iter()
                // Actor and target groups are (kind, id): the filter names the id.
                .filter_map(|g| g.values.last().cloned().flatten().map(|v| (v, g.count)))
                .collect()
        }
        None => match scope {
            TenantScope::Only(mine) => mine.iter().map(|t| (t.clone(), 0)).collect(),
            TenantScope::All => tenant_counts(app, week_start).await?,
        },
    };
    // Largest first, then by value, so the choice is the same on every run.
    counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    if let Some((v, n)) = counted.first() {
        out.push(Value {
            dim,
            value: v.clone(),
            kind: "common",
            week: *n,
        });
    }
    if counted.len() > 1
        && let Some((v, n)) = counted.last()
    {
        out.push(Value {
            dim,
            value: v.clone(),
            kind: "rare",
            week: *n,
        });
    }
    Ok(out)
}

/// Events per named tenant over the last 7 days (an all-tenant event names none).
async fn tenant_counts(app: &App, week_start: i64) -> anyhow::Result<Vec<(String, i64)>> {
    let sql = "SELECT t.tenant, COUNT(*) FROM audit_tenants t JOIN audit_events e \
               ON e.id = t.event_id WHERE e.at >= $1 GROUP BY t.tenant";
    Ok(match &app.store.db {
        keyward::store::Db::Sqlite(p) => sqlx::query_as(sql).bind(week_start).fetch_all(p).await?,
        keyward::store::Db::Postgres(p) => {
            sqlx::query_as(sql).bind(week_start).fetch_all(p).await?
        }
    })
}

/// The p50 of `runs` timed calls (after one untimed call), in ms.
async fn p50<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    f().await?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[(ms.len() - 1) / 2])
}

/// Cells of one kind (summaries or pages): how many, those over target, the slowest.
pub struct Cells {
    target_ms: f64,
    pub measured: usize,
    pub over: Vec<(String, f64)>,
    pub slowest: (String, f64),
}

impl Cells {
    fn new(target_ms: f64) -> Self {
        Cells {
            target_ms,
            measured: 0,
            over: Vec::new(),
            slowest: (String::new(), 0.0),
        }
    }

    fn add(&mut self, label: String, ms: f64) {
        self.measured += 1;
        if ms > self.slowest.1 {
            self.slowest = (label.clone(), ms);
        }
        if ms > self.target_ms {
            self.over.push((label, ms));
        }
    }
}

/// What the matrix found, summaries and pages apart.
pub struct Tally {
    pub summaries: Cells,
    pub pages: Cells,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            summaries: Cells::new(SUMMARY_TARGET_MS),
            pages: Cells::new(PAGE_TARGET_MS),
        }
    }
}

impl Tally {
    fn summary(&mut self, label: String, ms: f64) {
        self.summaries.add(label, ms);
    }

    fn page(&mut self, label: String, ms: f64) {
        self.pages.add(label, ms);
    }

    pub fn print(&self, backend: &str) {
        let (s, p) = (&self.summaries, &self.pages);
        println!(
            "\n== {backend}: {} of {} summaries over {SUMMARY_TARGET_MS} ms (slowest {:.1} ms: {}); \
             {} of {} pages over {PAGE_TARGET_MS} ms (slowest {:.2} ms: {})",
            s.over.len(),
            s.measured,
            s.slowest.1,
            s.slowest.0,
            p.over.len(),
            p.measured,
            p.slowest.1,
            p.slowest.0
        );
        for (label, ms) in s.over.iter().chain(&p.over) {
            println!("  over: {ms:>8.2} ms  {label}");
        }
    }
}

fn mark(ms: f64, target: f64) -> String {
    let flag = if ms > target { "!" } else { " " };
    format!("{ms:>7.2}{flag}")
}

/// Runs the matrix for one caller over one window and prints it: a row per filter, a column per
/// `group_by`, and the first page under that filter in the last column.
pub async fn run(
    app: &App,
    who: &str,
    p: &Principal,
    window: &str,
    runs: usize,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let week_start = (keyward::clock::Clock::now(&keyward::clock::SystemClock)
        - chrono::Duration::days(7))
    .timestamp_micros();
    let scope = p.tenants().clone();
    let mut rows: Vec<Option<Value>> = vec![None];
    for dim in FILTER_DIMS {
        rows.extend(
            values(app, &scope, dim, week_start)
                .await?
                .into_iter()
                .map(Some),
        );
    }
    println!("\n== {who}, since {window}: p50 ms of {runs} runs; ! over target");
    print!("  {:<44}", "filter \\ group_by");
    for g in GROUPS {
        print!(" {:>8}", g.name());
    }
    println!(" {:>8}", "page");
    for row in rows {
        let mut f = Filters {
            since: Some(window.to_owned()),
            ..Filters::default()
        };
        let label = row.as_ref().map_or("(none)".to_owned(), Value::label);
        if let Some(v) = &row {
            v.apply(&mut f);
        }
        print!("  {label:<44}");
        for g in GROUPS {
            let ms = p50(runs, || async {
                keyward::ops::audit::summary(app, p, &f, &[g], None).await?;
                Ok(())
            })
            .await?;
            print!(" {}", mark(ms, SUMMARY_TARGET_MS));
            tally.summary(format!("{who}, {window}, {label}, by {}", g.name()), ms);
        }
        let ms = p50(runs, || async {
            keyward::ops::audit::query(app, p, &f, Some(100), None).await?;
            Ok(())
        })
        .await?;
        println!(" {}", mark(ms, PAGE_TARGET_MS));
        tally.page(format!("{who}, {window}, {label}, page"), ms);
    }
    Ok(())
}

/// The README's example questions, as the README asks them.
pub async fn readme(
    app: &App,
    who: &str,
    p: &Principal,
    runs: usize,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let key_changes = vec![
        Action::KeyCreate,
        Action::KeyRotate,
        Action::KeyDisable,
        Action::KeyEnable,
        Action::KeyRevoke,
    ];
    let pages = [
        (
            "who changed keys since yesterday?",
            Filters {
                actions: key_changes,
                since: Some("yesterday".into()),
                ..Filters::default()
            },
        ),
        (
            "who revoked keys last night?",
            Filters {
                actions: vec![Action::KeyRevoke],
                since: Some("yesterday".into()),
                until: Some("today".into()),
                ..Filters::default()
            },
        ),
    ];
    let summaries = [
        (
            "who revoked the most keys last week?",
            Filters {
                actions: vec![Action::KeyRevoke],
                since: Some("7d".into()),
                ..Filters::default()
            },
            GroupBy::Actor,
        ),
        (
            "which keys keep getting denied?",
            Filters {
                statuses: vec![Status::Denied],
                ..Filters::default()
            },
            GroupBy::Actor,
        ),
        (
            "activity per day in Paris time",
            Filters {
                time_zone: Some("Europe/Paris".into()),
                ..Filters::default()
            },
            GroupBy::Day,
        ),
    ];
    println!("\n== {who}: the README's example questions (p50 ms of {runs} runs; ! over target)");
    for (q, f) in &pages {
        let ms = p50(runs, || async {
            keyward::ops::audit::query(app, p, f, None, None).await?;
            Ok(())
        })
        .await?;
        println!("  {:<52} {}", q, mark(ms, PAGE_TARGET_MS));
        tally.page(format!("{who}: {q}"), ms);
    }
    for (q, f, g) in &summaries {
        let ms = p50(runs, || async {
            keyward::ops::audit::summary(app, p, f, &[*g], None).await?;
            Ok(())
        })
        .await?;
        println!("  {:<52} {}", q, mark(ms, SUMMARY_TARGET_MS));
        tally.summary(format!("{who}: {q}"), ms);
    }
    let q = "which keys came from a new IP since yesterday?";
    let f = Filters {
        since: Some("yesterday".into()),
        ..Filters::default()
    };
    let ms = p50(runs, || async {
        keyward::ops::audit::novel(app, p, &f, &[GroupBy::Actor], Novel::ClientIp, None).await?;
        Ok(())
    })
    .await?;
    println!("  {:<52} {}", q, mark(ms, SUMMARY_TARGET_MS));
    tally.summary(format!("{who}: {q}"), ms);
    Ok(())
}
