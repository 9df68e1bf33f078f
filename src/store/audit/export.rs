//! Reading the trail for an export: the seqs of the logged events a filter selects, in seq
//! order, below a tree size. The rows themselves come from `tree::rows_at`. The WHERE clause
//! is `read.rs`'s, repeated here because that builder is private to its module; keep the two
//! in step (the export tests compare a filtered export with `audit_query`).

use crate::domain::tenant::{ALL_TENANTS, TenantScope};
use crate::store::audit::AuditFilter;
use crate::store::sql::{Sql, bind_args};
use crate::store::{Store, StoreError, db, on_pool};

fn push_where(q: &mut Sql, f: &AuditFilter) {
    if let Some(s) = f.since {
        q.push(" AND e.at >= ").int(s);
    }
    if let Some(u) = f.until {
        q.push(" AND e.at < ").int(u);
    }
    if let TenantScope::Only(mine) = &f.visible_to {
        let mine: Vec<&String> = mine.iter().collect();
        q.push(" AND e.tenants <> ").text(ALL_TENANTS);
        q.push(" AND NOT EXISTS (SELECT 1 FROM audit_tenants vt WHERE vt.event_id = e.id AND vt.tenant NOT IN ");
        q.text_list(&mine).push(")");
    }
    if !f.actors.is_empty() {
        let ids: Vec<&String> = f.actors.iter().filter(|a| !a.starts_with("kw_")).collect();
        let previews: Vec<&String> = f
            .actors
            .iter()
            .filter(|a| a.starts_with("kw_") || !a.bytes().any(|b| b.is_ascii_uppercase()))
            .collect();
        q.push(" AND (");
        if !ids.is_empty() {
            q.push("e.actor_id").is_in(&ids);
        }
        if !ids.is_empty() && !previews.is_empty() {
            q.push(" OR ");
        }
        if !previews.is_empty() {
            q.push("e.actor_preview").is_in(&previews);
        }
        q.push(")");
    }
    for (column, values) in [
        ("e.role", &f.roles),
        ("e.action", &f.actions),
        ("e.target_id", &f.targets),
        ("e.status", &f.statuses),
        ("e.source", &f.sources),
        ("e.client_ip", &f.client_ips),
    ] {
        if !values.is_empty() {
            q.push(" AND ").push(column).is_in(values);
        }
    }
    if !f.tenants.is_empty() {
        q.push(" AND (e.tenants = ").text(ALL_TENANTS);
        q.push(
            " OR EXISTS (SELECT 1 FROM audit_tenants ft WHERE ft.event_id = e.id AND ft.tenant IN ",
        );
        q.text_list(&f.tenants).push("))");
    }
}

/// Up to `limit` seqs in `[from, below)` of events `f` selects, ascending.
pub async fn seqs(
    store: &Store,
    f: &AuditFilter,
    from: u64,
    below: u64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut q = Sql::new("SELECT e.seq FROM audit_events e WHERE e.seq >= ");
    q.int(from as i64).push(" AND e.seq < ").int(below as i64);
    push_where(&mut q, f);
    q.push(" ORDER BY e.seq LIMIT ").int(limit);
    on_pool!(store, p => bind_args!(sqlx::query_scalar(&q.text), q).fetch_all(p).await.map_err(db))
}
