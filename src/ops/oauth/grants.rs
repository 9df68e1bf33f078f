//! Grants as tools see them: list and revoke. Everyone may list and revoke their own grants;
//! `grant:read` and `grant:revoke` reach every grant within the caller's tenants.

use crate::domain::permission::{Permission, PermissionSet};
use crate::domain::principal::{Actor, Principal};
use crate::domain::tenant::TenantScope;
use crate::domain::{ids, timespec};
use crate::ops::OpsError;
use crate::ops::app::App;
use crate::ops::call::{Call, Outcome, Target};
use crate::ops::views::{GrantList, GrantRevoked, GrantView};
use crate::store::{self, from_micros};

/// Ends every grant `signer_id` made and every sign-in awaiting its consent, within `tx`, with
/// one audit record per grant ended (actor: the caller making the change that ends them).
pub(crate) async fn end_signer(
    tx: &mut store::Tx,
    call: &Call,
    signer_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    why: &str,
) -> Result<usize, OpsError> {
    let grants = store::oauth::end_signer(tx, signer_id, now, why).await?;
    let events: Vec<_> = grants
        .iter()
        .map(|g| {
            super::event(
                call.meta(),
                now,
                crate::domain::audit::Action::OauthRevoke,
                crate::domain::audit::Status::Success,
                &super::Subject::of(call.principal()),
                ("grant", g),
                Some(why.to_owned()),
            )
        })
        .collect();
    if !events.is_empty() {
        store::audit::append(tx, &events).await?;
    }
    Ok(grants.len())
}

/// Most grants one listing returns.
const LIST_LIMIT: i64 = 500;

fn own_id(p: &Principal) -> Option<&str> {
    match p.actor() {
        Actor::Key { id, .. } | Actor::Operator { id, .. } => Some(id),
        _ => None,
    }
}

fn tenants_of(g: &store::oauth::GrantRow) -> Result<TenantScope, OpsError> {
    let names: Vec<&str> = g.tenants.split_whitespace().collect();
    TenantScope::parse(&names)
        .map_err(|e| OpsError::Store(store::StoreError::Corrupt(format!("grant {}: {e}", g.id))))
}

/// Whether `g` is the caller's own: a signer's grant, or, for a client acting through a
/// grant, that grant alone (a client never sees or ends its signer's other grants by
/// ownership).
fn owns(p: &Principal, g: &store::oauth::GrantRow) -> bool {
    match p.channel() {
        Some(c) => c.grant_id == g.id,
        None => own_id(p) == Some(g.signer_id.as_str()),
    }
}

/// Whether `p` may see (`needed` = grant:read) or revoke (grant:revoke) grant `g`.
fn reaches(
    p: &Principal,
    g: &store::oauth::GrantRow,
    needed: Permission,
) -> Result<bool, OpsError> {
    if owns(p, g) {
        return Ok(true);
    }
    Ok(p.has(needed) && tenants_of(g)?.is_within(p.tenants()))
}

/// A grant as people speak of it: its client's name, as the client asserted it.
pub(crate) fn client_label(g: &store::oauth::GrantRow) -> Option<String> {
    super::client_name(g.client_name.as_deref())
}

pub fn view(g: &store::oauth::GrantRow) -> Result<GrantView, OpsError> {
    let fmt = |t: i64| timespec::format_utc(from_micros(t));
    Ok(GrantView {
        id: g.id.clone(),
        client_id: g.client_id.clone(),
        client_name: g
            .client_name
            .as_deref()
            .map(|n| crate::domain::text::neutralize(n, false).into_owned()),
        signer_kind: g.signer_kind.clone(),
        signer_id: g.signer_id.clone(),
        role: g.role_name.clone(),
        permissions: g
            .permissions
            .parse::<PermissionSet>()
            .map_err(|e| {
                OpsError::Store(store::StoreError::Corrupt(format!("grant {}: {e}", g.id)))
            })?
            .to_vec(),
        tenants: tenants_of(g)?.to_vec(),
        created_at: fmt(g.created_at),
        last_used_at: g.last_used_at.map(fmt),
        expires_at: fmt(g.expires_at),
    })
}

pub async fn list(app: &App, p: &Principal) -> Result<GrantList, OpsError> {
    let signer = if p.has(Permission::GrantRead) {
        None
    } else {
        own_id(p)
    };
    if signer.is_none() && !p.has(Permission::GrantRead) {
        return Ok(GrantList { grants: Vec::new() });
    }
    // Visibility is decided per grant (tenants, ownership), so pages are read until the answer
    // is full or the grants run out: grants outside the caller's reach never crowd it out.
    let now = app.now();
    let mut grants = Vec::new();
    let mut offset = 0;
    loop {
        let rows = store::oauth::list_grants(&app.store, signer, now, LIST_LIMIT, offset).await?;
        for g in &rows {
            if grants.len() < LIST_LIMIT as usize && reaches(p, g, Permission::GrantRead)? {
                grants.push(view(g)?);
            }
        }
        if rows.len() < LIST_LIMIT as usize || grants.len() >= LIST_LIMIT as usize {
            break;
        }
        offset += LIST_LIMIT;
    }
    Ok(GrantList { grants })
}

pub async fn revoke(app: &App, call: &Call, grant_id: &str) -> Result<GrantRevoked, OpsError> {
    let p = call.principal();
    let id = ids::check_id("grant", grant_id)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let not_found = || OpsError::NotFound(format!("no grant with id {id} that you may revoke"));
    let g = store::oauth::peek_grant_in(&mut tx, &id)
        .await?
        .ok_or_else(not_found)?;
    if !reaches(p, &g, Permission::GrantRevoke)? {
        return Err(not_found());
    }
    let revoked =
        store::oauth::revoke_grant(&mut tx, &g.id, now, "revoked with grant_revoke").await?;
    let before = view(&g)?;
    let outcome = Outcome {
        tenants: Some(before.tenants.clone()),
        before: serde_json::to_value(&before).ok(),
        ..Outcome::success(Some(Target::new(
            "grant",
            &g.id,
            client_label(&g).as_deref(),
        )))
    };
    call.commit_with(tx, now, outcome).await?;
    app.forget_credentials();
    Ok(GrantRevoked {
        grant_id: g.id,
        revoked,
    })
}
