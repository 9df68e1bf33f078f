//! An export's filters, checked and resolved to an absolute window exactly as `audit_query`
//! resolves them (`ops::audit`'s resolver is private to it: this is its twin, kept in step by
//! the export tests that compare an export with the same query).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::ids;
use crate::domain::limits::distinct;
use crate::domain::role::validate_role_name;
use crate::domain::tenant::{TenantScope, validate_tenant};
use crate::domain::timespec::{self, Edge};
use crate::ops::OpsError;
use crate::ops::audit::Filters;
use crate::store::audit::AuditFilter;
use crate::store::{from_micros, micros};

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
    /// Microseconds; shown in the manifest in `time_zone`.
    #[serde(skip)]
    pub since: Option<i64>,
    #[serde(skip)]
    pub until: Option<i64>,
    #[serde(rename = "since")]
    pub since_text: Option<String>,
    #[serde(rename = "until")]
    pub until_text: Option<String>,
    #[serde(skip)]
    pub tz: String,
}

pub fn resolve(input: &Filters, now: DateTime<Utc>) -> Result<Resolved, OpsError> {
    let tz_name = input.time_zone.as_deref().unwrap_or("UTC");
    let tz = timespec::parse_time_zone(tz_name)?;
    let bound = |v: &Option<String>, edge| {
        v.as_deref()
            .map(|s| timespec::parse_time_bound(s, tz, now, edge))
            .transpose()
    };
    let since = bound(&input.since, Edge::Start)?;
    let until = bound(&input.until, Edge::End)?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(OpsError::invalid(format!(
            "the window is empty: since ({}) is not before until ({})",
            timespec::format_in(s, tz),
            timespec::format_in(u, tz)
        )));
    }
    let check = |name: &str, values: &[String], f: &dyn Fn(&str) -> Result<String, OpsError>| {
        let checked = distinct(name, values)?
            .iter()
            .map(|v| f(v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, OpsError>(distinct(name, &checked)?)
    };
    let texts = |name: &str, values: Vec<&'static str>| -> Result<Vec<String>, OpsError> {
        Ok(distinct(name, &values)?
            .into_iter()
            .map(str::to_owned)
            .collect())
    };
    let since = since.map(micros);
    let until = until.map(micros);
    let shown = |t: Option<i64>| t.map(|t| timespec::format_in(from_micros(t), tz));
    Ok(Resolved {
        actors: check("actor", &input.actors, &|v| {
            ids::check_id("actor", v).map_err(|_| {
                OpsError::invalid("invalid actor: give a key id (key_…) or a key preview (kw_…)")
            })
        })?,
        roles: check("role", &input.roles, &|v| Ok(validate_role_name(v)?))?,
        tenants: check("tenant", &input.tenants, &|v| Ok(validate_tenant(v)?))?,
        actions: texts("action", input.actions.iter().map(|a| a.as_str()).collect())?,
        targets: check("target", &input.targets, &|v| {
            ids::check_id("target", v).map_err(|_| {
                OpsError::invalid("invalid target: give a key id, a role name or an event id")
            })
        })?,
        statuses: texts(
            "status",
            input.statuses.iter().map(|s| s.as_str()).collect(),
        )?,
        sources: texts("source", input.sources.iter().map(|s| s.as_str()).collect())?,
        client_ips: check("client_ip", &input.client_ips, &|v| {
            v.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| OpsError::invalid("invalid client_ip: give an IPv4 or IPv6 address"))
        })?,
        since,
        until,
        since_text: shown(since),
        until_text: shown(until),
        tz: tz_name.to_owned(),
    })
}

impl Resolved {
    pub fn filter(&self, scope: TenantScope) -> AuditFilter {
        AuditFilter {
            visible_to: scope,
            actors: self.actors.clone(),
            roles: self.roles.clone(),
            tenants: self.tenants.clone(),
            actions: self.actions.clone(),
            targets: self.targets.clone(),
            statuses: self.statuses.clone(),
            sources: self.sources.clone(),
            client_ips: self.client_ips.clone(),
            since: self.since,
            until: self.until,
        }
    }
}
