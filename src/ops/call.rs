//! One authorised call in progress: who makes it, what it is, where it came from, and its
//! draft audit record. The guard creates it; the use case completes the record (in its own
//! transaction when it changes something) or leaves it to the guard.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{ErrorKind, OpsError};
use crate::domain::audit::{Action, AuditEvent, Source, Status};
use crate::domain::principal::Principal;

/// Where a call came from. Every field is safe to keep in the trail.
#[derive(Debug, Clone)]
pub struct CallMeta {
    pub source: Source,
    pub request_id: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The `x-request-source` header (e.g. `cli`), when sent.
    pub request_source: Option<String>,
}

impl CallMeta {
    /// An audit record of `action` from this origin, with no actor yet (the caller fills in
    /// who, what and why).
    pub fn event(
        &self,
        at: DateTime<Utc>,
        action: Action,
        status: Status,
        actor_kind: &str,
    ) -> AuditEvent {
        AuditEvent {
            at,
            actor_kind: actor_kind.to_owned(),
            actor_id: None,
            actor_name: None,
            actor_preview: None,
            role: None,
            tenants: crate::domain::tenant::TenantScope::All.to_vec(),
            action,
            target_type: None,
            target_id: None,
            target_name: None,
            status,
            reason: None,
            source: self.source,
            request_source: self.request_source.clone(),
            client_name: self.client_name.clone(),
            client_version: self.client_version.clone(),
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            channel: None,
            args: None,
            before: None,
            after: None,
        }
    }

    /// An audit record of `action` from this origin by `p`: who (id, name, preview), with which
    /// role, for which tenants, through which OAuth grant.
    pub fn event_by(
        &self,
        at: DateTime<Utc>,
        action: Action,
        status: Status,
        p: &Principal,
    ) -> AuditEvent {
        let actor = p.actor();
        AuditEvent {
            actor_id: actor.id().map(str::to_owned),
            actor_name: actor.name().map(str::to_owned),
            actor_preview: actor.preview().map(str::to_owned),
            role: Some(p.role().to_owned()),
            tenants: p.tenants().to_vec(),
            channel: p.channel().map(crate::domain::principal::Channel::describe),
            ..self.event(at, action, status, actor.kind())
        }
    }

    pub fn new(source: Source) -> Self {
        CallMeta {
            source,
            request_id: None,
            client_name: None,
            client_version: None,
            client_ip: None,
            user_agent: None,
            request_source: None,
        }
    }
}

/// What a call acted on, and its name as people say it (as it is at the time of the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: &'static str,
    pub id: String,
    pub name: Option<String>,
}

impl Target {
    pub fn new(kind: &'static str, id: &str, name: Option<&str>) -> Self {
        Target {
            kind,
            id: id.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    pub fn key(id: &str, name: &str) -> Self {
        Target::new("key", id, Some(name))
    }

    /// A role: its name is its id.
    pub fn role(name: &str) -> Self {
        Target::new("role", name, Some(name))
    }

    pub fn audit_event(id: i64) -> Self {
        Target::new("audit_event", &id.to_string(), None)
    }
}

/// The outcome part of an audit record.
pub struct Outcome {
    pub status: Status,
    pub target: Option<Target>,
    /// The tenants concerned; `None` means the actor's own.
    pub tenants: Option<Vec<String>>,
    pub reason: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Outcome {
    pub fn success(target: Option<Target>) -> Self {
        Outcome {
            status: Status::Success,
            target,
            tenants: None,
            reason: None,
            before: None,
            after: None,
        }
    }
}

/// How a call failed, as its caller is told (kind and public message), plus what only the log
/// may see.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
    /// For internal and unavailable errors: the detail, logged once by the surface, never
    /// returned.
    pub detail: Option<String>,
}

impl Failure {
    pub fn of(e: &OpsError) -> Self {
        let kind = e.kind();
        Failure {
            kind,
            message: e.public_message(),
            detail: matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable)
                .then(|| format!("{e} (source: {:?})", std::error::Error::source(e))),
        }
    }

    /// A caller refused (permission denied), with nothing to log.
    pub fn refused(message: String) -> Self {
        Failure {
            kind: ErrorKind::PermissionDenied,
            message,
            detail: None,
        }
    }

    /// The audit status of a call that failed this way.
    pub fn status(&self) -> Status {
        match self.kind {
            ErrorKind::PermissionDenied => Status::Denied,
            ErrorKind::Internal | ErrorKind::Unavailable => Status::Error,
            _ => Status::Failed,
        }
    }
}

pub struct Call {
    principal: Principal,
    action: Action,
    meta: CallMeta,
    /// Arguments, already redacted.
    args: Option<Value>,
    recorded: OnceLock<i64>,
    failure: OnceLock<Failure>,
}

impl Call {
    pub fn new(principal: Principal, action: Action, meta: CallMeta, args: Option<Value>) -> Self {
        Call {
            principal,
            action,
            meta,
            args,
            recorded: OnceLock::new(),
            failure: OnceLock::new(),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn meta(&self) -> &CallMeta {
        &self.meta
    }

    /// The id of the record the use case committed itself, if it did.
    pub fn recorded(&self) -> Option<i64> {
        self.recorded.get().copied()
    }

    pub(crate) fn mark_recorded(&self, id: i64) {
        let _ = self.recorded.set(id);
    }

    /// Notes that the call failed with `e` (the first failure counts) and returns how: the
    /// surface answers with it, and the guard audits and logs it.
    pub fn fail(&self, e: &OpsError) -> &Failure {
        self.failure.get_or_init(|| Failure::of(e))
    }

    /// How the call failed, if its use case failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.get()
    }

    /// The full audit record for this call with `outcome`.
    pub fn event(&self, at: DateTime<Utc>, outcome: Outcome) -> AuditEvent {
        let p = &self.principal;
        let base = self.meta.event_by(at, self.action, outcome.status, p);
        let (target_type, target_id, target_name) = match outcome.target {
            Some(t) => (Some(t.kind.to_owned()), Some(t.id), t.name),
            None => (None, None, None),
        };
        AuditEvent {
            tenants: outcome.tenants.unwrap_or_else(|| base.tenants.clone()),
            target_type,
            target_id,
            target_name,
            reason: outcome.reason,
            args: self.args.clone(),
            before: outcome.before,
            after: outcome.after,
            ..base
        }
    }
}

impl Call {
    /// Appends this call's record to `tx` and commits both together: the change and its audit
    /// record exist together or not at all.
    pub(crate) async fn commit_with(
        &self,
        mut tx: crate::store::Tx,
        at: DateTime<Utc>,
        outcome: Outcome,
    ) -> Result<(), OpsError> {
        let event = self.event(at, outcome);
        let ids = crate::store::audit::append(&mut tx, &[event]).await?;
        tx.commit().await?;
        if let Some(id) = ids.first() {
            self.mark_recorded(*id);
        }
        Ok(())
    }
}

/// A success outcome for a change of `target`, with its state before and after.
pub(crate) fn changed<T: serde::Serialize>(
    target: Target,
    tenants: Option<Vec<String>>,
    before: Option<&T>,
    after: Option<&T>,
) -> Outcome {
    Outcome {
        status: Status::Success,
        target: Some(target),
        tenants,
        reason: None,
        before: before
            .and_then(|b| serde_json::to_value(b).ok())
            .map(crate::domain::audit::bounded),
        after: after
            .and_then(|a| serde_json::to_value(a).ok())
            .map(crate::domain::audit::bounded),
    }
}

/// Managing (rotating, disabling, re-roling…) a key or an operator needs the caller to reach
/// everything that subject holds: its role's permissions and its tenants. A deleted role
/// grants nothing, so its holders need nothing.
pub(crate) async fn ensure_reach(
    tx: &mut crate::store::Tx,
    p: &Principal,
    role: &str,
    tenants: &crate::domain::tenant::TenantScope,
    expires_at: Option<Option<DateTime<Utc>>>,
    action: String,
) -> Result<(), OpsError> {
    let held = crate::store::roles::get_in(tx, role, crate::store::Hold::Share)
        .await?
        .map_or(crate::domain::permission::PermissionSet::EMPTY, |r| {
            r.permissions
        });
    let reach = crate::domain::policy::Reach {
        permissions: held,
        tenants: Some(tenants),
        expires_at,
    };
    Ok(crate::domain::policy::within(p, action, &reach)?)
}
