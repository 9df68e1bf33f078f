//! An export's filters: read exactly as `audit_query` reads them (`ops::audit::resolve`), then
//! shown in the manifest with the window in the caller's time zone.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::tenant::TenantScope;
use crate::domain::timespec;
use crate::ops::OpsError;
use crate::ops::audit::Filters;
use crate::store::audit::AuditFilter;
use crate::store::from_micros;

/// The filters as applied, as the manifest records them.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub actors: Vec<String>,
    pub roles: Vec<String>,
    pub tenants: Vec<String>,
    pub actions: Vec<String>,
    pub targets: Vec<String>,
    pub statuses: Vec<String>,
    pub sources: Vec<String>,
    pub client_ips: Vec<String>,
    #[serde(rename = "since")]
    pub since_text: Option<String>,
    #[serde(rename = "until")]
    pub until_text: Option<String>,
    #[serde(skip)]
    pub tz: String,
    #[serde(skip)]
    read: crate::ops::audit::Resolved,
}

pub fn resolve(input: &Filters, now: DateTime<Utc>) -> Result<Resolved, OpsError> {
    let r = crate::ops::audit::resolve(input, now)?;
    let tz = timespec::parse_time_zone(&r.tz)?;
    let shown = |t: Option<i64>| t.map(|t| timespec::format_in(from_micros(t), tz));
    Ok(Resolved {
        actors: r.actors.clone(),
        roles: r.roles.clone(),
        tenants: r.tenants.clone(),
        actions: r.actions.clone(),
        targets: r.targets.clone(),
        statuses: r.statuses.clone(),
        sources: r.sources.clone(),
        client_ips: r.client_ips.clone(),
        since_text: shown(r.since),
        until_text: shown(r.until),
        tz: r.tz.clone(),
        read: r,
    })
}

impl Resolved {
    pub fn filter(&self, scope: TenantScope) -> AuditFilter {
        self.read.filter_within(scope)
    }
}
