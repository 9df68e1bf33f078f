//! OAuth access tokens as credentials: a presented `kwat_` token resolved to its grant and
//! signer, and the principal the grant leaves: the grant's ceiling met with the signer as they
//! are now (a downgraded key narrows live grants at once; a revoked one ends them).
//! Verified tokens are cached for at most the cache's TTL (≤ 1 s), like keys.

use std::sync::Arc;

use tracing::instrument;

use super::cached::CachedToken;
use super::refusal::{AuthError, AuthFailure, Rejected};
use crate::domain::oauth::ceiling::{self, Ceiling};
use crate::domain::oauth::token::{self, TokenFormatError, TokenKind};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Channel, Principal};
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::store::{self, StoreError, from_micros};

/// What a presented token turned out to be.
pub enum Checked {
    Valid(Principal),
    /// A genuine token that expired or was revoked, or whose signer can no longer sign:
    /// clients present expired tokens routinely before refreshing, so this is neither counted
    /// toward a lockout nor audited.
    Stale(&'static str),
}

#[instrument(level = "debug", skip_all)]
pub async fn authenticate_token(
    app: &App,
    presented: &str,
    canonical: Option<&str>,
) -> Result<Checked, AuthError> {
    let digest = token::digest_of(TokenKind::Access, presented).map_err(|e| {
        AuthError::Rejected(Rejected::new(match e {
            TokenFormatError::Malformed(_) => AuthFailure::Malformed,
            TokenFormatError::BadChecksum(_) => AuthFailure::BadChecksum,
        }))
    })?;
    let now = app.now();
    if let Some(hit) = app.token_cache.get(&digest, now) {
        if hit.expires_at <= now {
            return Ok(Checked::Stale("access token has expired"));
        }
        return Ok(Checked::Valid(hit.principal.clone()));
    }
    let generation = app.token_cache.generation();
    let Some(row) = store::oauth::find_access(&app.store, &digest).await? else {
        // Unknown tokens are not cached: guessing must not fill memory.
        return Err(AuthError::Rejected(Rejected::new(AuthFailure::UnknownKey)));
    };
    let g = &row.grant;
    let token_expires = from_micros(row.token_expires_at);
    let grant_expires = from_micros(g.expires_at);
    if g.revoked_at.is_some() {
        return Ok(Checked::Stale("access token's grant was revoked"));
    }
    if token_expires <= now || grant_expires <= now {
        return Ok(Checked::Stale("access token has expired"));
    }
    // Audience: the token was issued for this resource (RFC 8707).
    if canonical.is_some_and(|c| c != g.resource) {
        return Ok(Checked::Stale(
            "access token was issued for another resource",
        ));
    }
    let signer = match super::session::subject(
        app,
        &g.signer_kind,
        &g.signer_id,
        g.signer_digest.as_deref(),
    )
    .await
    {
        Ok(p) => p,
        Err(AuthError::Rejected(_)) => {
            return Ok(Checked::Stale("the grant's signer can no longer sign in"));
        }
        Err(e) => return Err(e),
    };
    let permissions: PermissionSet = g
        .permissions
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("grant {}: {e}", g.id)))?;
    let names: Vec<&str> = g.tenants.split_whitespace().collect();
    let tenants = TenantScope::parse(&names)
        .map_err(|e| StoreError::Corrupt(format!("grant {}: {e}", g.id)))?;
    let ceiling = Ceiling {
        permissions,
        tenants,
    };
    let Some((permissions, tenants)) =
        ceiling::effective(&ceiling, signer.permissions(), signer.tenants())
    else {
        return Ok(Checked::Stale(
            "the grant's tenants are no longer the signer's",
        ));
    };
    let principal = signer.through(
        Channel {
            grant_id: g.id.clone(),
            client_id: g.client_id.clone(),
        },
        g.role_name.clone(),
        permissions,
        tenants,
        grant_expires,
    );
    let expires_at = token_expires.min(grant_expires);
    let cached = Arc::new(CachedToken {
        principal: principal.clone(),
        expires_at,
        grant_id: g.id.clone(),
    });
    if let Err(e) = store::oauth::touch_grant(&app.store, &cached.grant_id, now).await {
        tracing::warn!(error = %e, "could not record grant use");
    }
    app.token_cache.put_read(digest, cached, now, generation);
    Ok(Checked::Valid(principal))
}
