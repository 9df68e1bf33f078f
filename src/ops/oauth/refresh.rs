//! The refresh grant: a refresh token for the next pair, rotated once (single-flight on the
//! token's row); racers within the grace window converge on the same newest pair, walking the
//! sealed successors; a reuse after the window revokes that grant only.

use super::clients::Client;
use super::tokens::{Issued, audit_in, mint, signer_can_sign};
use super::{OAuth, OAuthError};
use crate::domain::audit::{Action, Status};
use crate::domain::oauth::token::{self, TokenKind};
use crate::domain::oauth::{resource, seal};
use crate::domain::permission::PermissionSet;
use crate::ops::app::App;
use crate::ops::call::CallMeta;
use crate::store::{self, from_micros, micros};

/// The successor pair as sealed under its predecessor.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    access: String,
    refresh: String,
    access_expires_at: i64,
}

/// How many sealed steps a late racer may walk to reach the newest pair.
const MAX_WALK: usize = 5;

/// Exchanges a refresh token for the next pair.
pub async fn refresh(
    app: &App,
    oauth: &OAuth,
    client: &Client,
    presented: &str,
    resource_param: Option<&str>,
    canonical: &str,
    meta: &CallMeta,
) -> Result<Issued, OAuthError> {
    let bad = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let digest = token::digest_of(TokenKind::Refresh, presented).map_err(|_| bad())?;
    let signer_ok = signer_can_sign(app, store::oauth::TokenTable::Refresh, &digest).await?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let Some(row) = store::oauth::get_refresh_in(&mut tx, &digest).await? else {
        return Err(bad());
    };
    let Some(grant) = store::oauth::get_grant_in(&mut tx, &row.grant_id).await? else {
        return Err(bad());
    };
    if grant.client_id != client.id {
        return Err(bad());
    }
    if grant.revoked_at.is_some()
        || from_micros(grant.expires_at) <= now
        || from_micros(row.expires_at) <= now
    {
        return Err(bad());
    }
    if let Some(r) = resource_param {
        let r = resource::resolve(Some(r), canonical)
            .map_err(|e| OAuthError::new("invalid_target", e.to_string()))?;
        if r != grant.resource {
            return Err(OAuthError::new(
                "invalid_target",
                "resource differs from the grant's",
            ));
        }
    }
    // The signer must still be able to sign: a revoked key or disabled operator ends the grant.
    if !signer_ok {
        return Err(bad());
    }
    let Some(rotated_at) = row.rotated_at else {
        let (issued, next) = mint(&mut tx, oauth, &grant, true, row.generation + 1, now).await?;
        let Some(next) = next else {
            return Err(OAuthError::server_error());
        };
        let sealed = serde_json::to_vec(&Sealed {
            access: issued.access_token.clone(),
            refresh: next.expose().to_owned(),
            access_expires_at: micros(now) + issued.expires_in * 1_000_000,
        })
        .ok()
        .and_then(|b| seal::seal(presented, &b))
        .ok_or_else(OAuthError::server_error)?;
        store::oauth::mark_rotated(&mut tx, &digest, now, &sealed).await?;
        audit_in(
            &mut tx,
            meta,
            now,
            Action::OauthRefresh,
            Status::Success,
            &grant,
            None,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(client_id = %client.id, grant_id = %grant.id, generation = row.generation + 1, "oauth refresh: rotated");
        return Ok(issued);
    };
    if now - from_micros(rotated_at) <= oauth.settings.refresh_grace {
        // A racer: walk the sealed chain to its newest pair and hand out the same one.
        let mut predecessor = presented.to_owned();
        let mut sealed = row.successor_sealed.clone();
        let mut head: Option<Sealed> = None;
        for _ in 0..MAX_WALK {
            let Some(s) = sealed.take() else { break };
            let Some(pair) = seal::open(&predecessor, &s)
                .and_then(|b| serde_json::from_slice::<Sealed>(&b).ok())
            else {
                break;
            };
            let next_digest = token::digest_of(TokenKind::Refresh, &pair.refresh)
                .map_err(|_| OAuthError::server_error())?;
            let next_row = store::oauth::peek_refresh_in(&mut tx, &next_digest).await?;
            predecessor = pair.refresh.clone();
            sealed = next_row.and_then(|r| r.successor_sealed);
            head = Some(pair);
        }
        tx.commit().await?;
        let Some(head) = head else { return Err(bad()) };
        tracing::info!(client_id = %client.id, grant_id = %grant.id, "oauth refresh: concurrent refresh converged on the newest pair");
        let scope = grant
            .permissions
            .parse::<PermissionSet>()
            .map(crate::domain::oauth::scope::format)
            .unwrap_or_default();
        return Ok(Issued {
            access_token: head.access,
            refresh_token: Some(head.refresh),
            expires_in: ((head.access_expires_at - micros(now)) / 1_000_000).max(0),
            scope,
        });
    }
    // Reuse after the window: this grant ends (never the signer's other grants).
    store::oauth::revoke_grant(
        &mut tx,
        &grant.id,
        now,
        "a rotated refresh token was reused",
    )
    .await?;
    audit_in(
        &mut tx,
        meta,
        now,
        Action::OauthRefreshReuse,
        Status::Denied,
        &grant,
        Some("rotated refresh token reused after the grace window: grant revoked"),
    )
    .await?;
    tx.commit().await?;
    app.forget_credentials();
    tracing::warn!(client_id = %client.id, grant_id = %grant.id, "oauth refresh: reuse detected, grant revoked");
    Err(bad())
}
