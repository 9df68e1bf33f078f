//! The person's decision on a parked request: deny, or approve within a ceiling no higher
//! than the signer as they are now, which makes a grant (capped per signer and client) and a
//! single-use code, committed together with their audit records.

use chrono::{DateTime, Utc};

use super::authorize::{EXPIRED, Stop, redirect_to};
use super::{OAuth, OAuthError, Subject};
use crate::domain::audit::{Action, Status};
use crate::domain::oauth::ceiling::{self, Ceiling};
use crate::domain::oauth::scope;
use crate::domain::oauth::token::{self, OAuthSecret, TokenKind};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::Principal;
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::ops::auth;
use crate::ops::call::CallMeta;
use crate::store::{self, micros};

/// What the person may pick as the grant's ceiling: their own role, and every role whose
/// permissions are a subset of theirs.
pub async fn ceilings_for(
    app: &App,
    signer: &Principal,
) -> Result<Vec<(String, PermissionSet)>, OAuthError> {
    let mut out = vec![(signer.role().to_owned(), signer.permissions())];
    for r in store::roles::list(&app.store).await? {
        if r.name != signer.role()
            && r.permissions.is_subset_of(signer.permissions())
            && !r.permissions.is_empty()
        {
            out.push((r.name, r.permissions));
        }
    }
    Ok(out)
}

/// The person's decision.
#[derive(Debug)]
pub enum Decision {
    Deny,
    /// `role`: a role name, or `None` for the default (requested scopes within the signer's
    /// role); `tenants`: empty for the signer's own.
    Approve {
        role: Option<String>,
        tenants: Vec<String>,
    },
}

/// Carries out the decision on a parked request (taken once: a second decision finds it gone).
pub async fn decide(
    app: &App,
    oauth: &OAuth,
    row: store::oauth::RequestRow,
    decision: Decision,
    meta: &CallMeta,
    issuer: &str,
) -> Result<String, Stop> {
    let (Some(kind), Some(signer_id)) = (row.signer_kind.as_deref(), row.signer_id.as_deref())
    else {
        return Err(Stop::Page("sign in first".into()));
    };
    let signer =
        match auth::session::subject(app, kind, signer_id, row.signer_digest.as_deref()).await {
            Ok(p) => p,
            Err(auth::AuthError::Rejected(_)) => {
                return Err(Stop::Page(
                    "the account you signed in with can no longer sign in; start again".into(),
                ));
            }
            Err(e) => {
                return Err(Stop::Page(
                    OAuthError::from(crate::ops::OpsError::from(e)).description,
                ));
            }
        };
    let now = app.now();
    let page = |e: crate::store::StoreError| Stop::Page(OAuthError::from(e).description);
    match decision {
        Decision::Deny => {
            let mut tx = app.store.begin().await.map_err(page)?;
            if !store::oauth::take_request(&mut tx, &row.id)
                .await
                .map_err(page)?
            {
                return Err(Stop::Page(EXPIRED.into()));
            }
            let mut ev = super::event(
                meta,
                now,
                Action::OauthAuthorize,
                Status::Denied,
                &Subject::of(&signer),
                ("oauth_client", &row.client_id),
                Some("the signer denied the request".into()),
            );
            ev.target_name = super::client_name(row.client_name.as_deref());
            store::audit::append(&mut tx, &[ev]).await.map_err(page)?;
            tx.commit().await.map_err(page)?;
            tracing::info!(client_id = %row.client_id, "oauth authorize: denied by the signer");
            Ok(redirect_to(
                &row.redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the request was denied"),
                ],
                row.state.as_deref(),
                issuer,
            ))
        }
        Decision::Approve { role, tenants } => {
            let requested: PermissionSet = scope::parse(Some(&row.scopes));
            let (role_name, permissions) = match role.as_deref().filter(|r| !r.is_empty()) {
                None => {
                    let set = ceiling::default_for(requested, signer.permissions());
                    // Named for what it is: the role's name alone would claim more.
                    let name = if set == signer.permissions() {
                        signer.role().to_owned()
                    } else {
                        format!("{} (requested scopes)", signer.role())
                    };
                    (name, set)
                }
                Some(name) => {
                    let picked = ceilings_for(app, &signer)
                        .await
                        .map_err(|e| Stop::Page(e.description))?
                        .into_iter()
                        .find(|(n, _)| n == name);
                    match picked {
                        Some(p) => p,
                        None => {
                            return Err(Stop::Page(format!(
                                "role '{}' is not yours to grant: pick your own role or one within it",
                                crate::domain::audit::claim(name, 64)
                            )));
                        }
                    }
                }
            };
            let tenants = if tenants.iter().all(|t| t.trim().is_empty()) {
                signer.tenants().clone()
            } else {
                let names: Vec<&str> = tenants
                    .iter()
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                    .collect();
                TenantScope::parse(&names).map_err(|e| Stop::Page(e.to_string()))?
            };
            let ceiling = Ceiling {
                permissions,
                tenants,
            };
            if !ceiling::within(&ceiling, signer.permissions(), signer.tenants()) {
                return Err(Stop::Page(
                    "that ceiling reaches beyond your own permissions or tenants".into(),
                ));
            }
            let expires_at = cap_expiry(now + oauth.settings.grant_max, signer.expires_at());
            let grant_id = token::random_id("gr_");
            let code = OAuthSecret::generate(TokenKind::Code);
            let mut tx = app.store.begin().await.map_err(page)?;
            if !store::oauth::take_request(&mut tx, &row.id)
                .await
                .map_err(page)?
            {
                return Err(Stop::Page(EXPIRED.into()));
            }
            let grant = store::oauth::GrantRow {
                id: grant_id.clone(),
                client_id: row.client_id.clone(),
                client_name: row.client_name.clone(),
                signer_kind: kind.to_owned(),
                signer_id: signer_id.to_owned(),
                signer_digest: row.signer_digest.clone(),
                role_name: role_name.clone(),
                permissions: ceiling.permissions.to_string(),
                tenants: ceiling.tenants.to_vec().join(" "),
                resource: row.resource.clone(),
                redirect_uri: row.redirect_uri.clone(),
                created_at: micros(now),
                expires_at: micros(expires_at),
                last_used_at: None,
                revoked_at: None,
                revoked_why: None,
            };
            store::oauth::insert_grant(&mut tx, &grant)
                .await
                .map_err(page)?;
            let live = store::oauth::live_grants_of(&mut tx, signer_id, &row.client_id, now)
                .await
                .map_err(page)?;
            let mut events = Vec::new();
            let over = live.len().saturating_sub(oauth.settings.grants_per_client);
            for old in live.iter().filter(|g| **g != grant_id).take(over) {
                store::oauth::revoke_grant(
                    &mut tx,
                    old,
                    now,
                    "replaced: too many grants for this client",
                )
                .await
                .map_err(page)?;
                let mut ev = super::event(
                    meta,
                    now,
                    Action::OauthRevoke,
                    Status::Success,
                    &Subject::of(&signer),
                    ("grant", old),
                    Some("least recently used grant for this client, over the cap".into()),
                );
                // A grant of the same client.
                ev.target_name = super::client_name(row.client_name.as_deref());
                events.push(ev);
            }
            store::oauth::insert_code(
                &mut tx,
                &store::oauth::CodeRow {
                    digest: code.digest_hex(),
                    grant_id: grant_id.clone(),
                    client_id: row.client_id.clone(),
                    redirect_uri: row.redirect_uri.clone(),
                    code_challenge: row.code_challenge.clone(),
                    expires_at: micros(now + oauth.settings.code_ttl),
                    used_at: None,
                },
            )
            .await
            .map_err(page)?;
            let mut ev = super::event(
                meta,
                now,
                Action::OauthAuthorize,
                Status::Success,
                &Subject::of(&signer),
                ("grant", &grant_id),
                None,
            );
            ev.target_name = super::client_name(row.client_name.as_deref());
            ev.after = Some(serde_json::json!({
                "client_id": row.client_id,
                "role": role_name,
                "permissions": ceiling.permissions.to_vec(),
                "tenants": ceiling.tenants.to_vec(),
                "resource": row.resource,
                "expires_at": crate::domain::timespec::format_utc(expires_at),
            }));
            ev.channel = Some(
                crate::domain::principal::Channel {
                    grant_id: grant_id.clone(),
                    client_id: row.client_id.clone(),
                }
                .describe(),
            );
            events.push(ev);
            store::audit::append(&mut tx, &events).await.map_err(page)?;
            tx.commit().await.map_err(page)?;
            app.forget_credentials();
            tracing::info!(client_id = %row.client_id, grant_id = %grant_id, "oauth authorize: approved, code issued");
            Ok(redirect_to(
                &row.redirect_uri,
                &[("code", code.expose())],
                row.state.as_deref(),
                issuer,
            ))
        }
    }
}

/// A grant never outlives the key that signed it.
pub fn cap_expiry(at: DateTime<Utc>, signer_expiry: Option<DateTime<Utc>>) -> DateTime<Utc> {
    signer_expiry.map_or(at, |e| e.min(at))
}
