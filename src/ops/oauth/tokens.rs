//! The token endpoint's work: a code for a token pair, and revocation (RFC 7009); the
//! refresh grant is in `refresh.rs`. Also what both mint and audit with.

use chrono::{DateTime, Utc};

use super::clients::Client;
use super::{OAuth, OAuthError, Subject};
use crate::domain::audit::{Action, Status};
use crate::domain::oauth::token::{self, OAuthSecret, TokenKind};
use crate::domain::oauth::{pkce, resource};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::Channel;
use crate::ops::app::App;
use crate::ops::call::CallMeta;
use crate::store::oauth::GrantRow;
use crate::store::{self, Tx, from_micros, micros};

/// A token response (RFC 6749 §5.1). Its `Debug` hides the tokens.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

pub(super) fn subject(g: &GrantRow) -> Subject<'_> {
    Subject {
        kind: &g.signer_kind,
        id: Some(&g.signer_id),
        preview: None,
        name: None,
        role: Some(&g.role_name),
        tenants: g.tenants.split_whitespace().map(str::to_owned).collect(),
    }
}

fn channel(g: &GrantRow) -> String {
    Channel {
        grant_id: g.id.clone(),
        client_id: g.client_id.clone(),
    }
    .describe()
}

pub(super) async fn audit_in(
    tx: &mut Tx,
    meta: &CallMeta,
    now: DateTime<Utc>,
    action: Action,
    status: Status,
    g: &GrantRow,
    reason: Option<&str>,
) -> Result<(), OAuthError> {
    let mut ev = super::event(
        meta,
        now,
        action,
        status,
        &subject(g),
        ("grant", &g.id),
        reason.map(str::to_owned),
    );
    ev.channel = Some(channel(g));
    ev.target_name = super::grants::client_label(g);
    store::audit::append(tx, &[ev]).await?;
    Ok(())
}

/// Mints a pair for `grant` inside `tx`: the access token always, a refresh token when the
/// client may refresh. Lifetimes never pass the grant's cap.
pub(super) async fn mint(
    tx: &mut Tx,
    oauth: &OAuth,
    grant: &GrantRow,
    refresh: bool,
    generation: i64,
    now: DateTime<Utc>,
) -> Result<(Issued, Option<OAuthSecret>), OAuthError> {
    let cap = from_micros(grant.expires_at);
    let access = OAuthSecret::generate(TokenKind::Access);
    let access_exp = (now + oauth.settings.access_ttl).min(cap);
    store::oauth::insert_access(tx, &access.digest_hex(), &grant.id, now, access_exp).await?;
    let refresh_token = if refresh {
        let r = OAuthSecret::generate(TokenKind::Refresh);
        store::oauth::insert_refresh(
            tx,
            &store::oauth::RefreshRow {
                digest: r.digest_hex(),
                grant_id: grant.id.clone(),
                generation,
                created_at: micros(now),
                expires_at: micros((now + oauth.settings.refresh_ttl).min(cap)),
                rotated_at: None,
                successor_sealed: None,
            },
        )
        .await?;
        Some(r)
    } else {
        None
    };
    let scope = grant
        .permissions
        .parse::<PermissionSet>()
        .map(crate::domain::oauth::scope::format)
        .unwrap_or_default();
    Ok((
        Issued {
            access_token: access.expose().to_owned(),
            refresh_token: refresh_token.as_ref().map(|r| r.expose().to_owned()),
            expires_in: (access_exp - now).num_seconds().max(0),
            scope,
        },
        refresh_token,
    ))
}

/// Whether the signer of the grant that `digest` belongs to can still sign. Checked before the
/// write transaction: the key check may itself write (its last use), which on SQLite would
/// wait on that transaction's lock.
pub(super) async fn signer_can_sign(
    app: &App,
    table: store::oauth::TokenTable,
    digest: &str,
) -> Result<bool, OAuthError> {
    let Some(g) = store::oauth::grant_of(&app.store, table, digest).await? else {
        return Ok(false);
    };
    match crate::ops::auth::session::subject(
        app,
        &g.signer_kind,
        &g.signer_id,
        g.signer_digest.as_deref(),
    )
    .await
    {
        Ok(_) => Ok(true),
        // Only a refusal means the signer cannot sign; a check that could not run is not a
        // verdict on the token (the client must not throw it away).
        Err(crate::ops::auth::AuthError::Rejected(_)) => Ok(false),
        Err(e) => Err(crate::ops::OpsError::from(e).into()),
    }
}

/// What the token request carried for the code grant.
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub resource: Option<&'a str>,
}

/// Exchanges a code. A code is used once: a second use fails and revokes what the first issued.
pub async fn exchange_code(
    app: &App,
    oauth: &OAuth,
    client: &Client,
    x: CodeExchange<'_>,
    canonical: &str,
    meta: &CallMeta,
) -> Result<Issued, OAuthError> {
    let bad =
        || OAuthError::invalid_grant("the authorization code is invalid, expired or already used");
    let digest = token::digest_of(TokenKind::Code, x.code).map_err(|_| bad())?;
    let signer_ok = signer_can_sign(app, store::oauth::TokenTable::Code, &digest).await?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let Some(code) = store::oauth::redeem_code(&mut tx, &digest, now).await? else {
        return Err(bad());
    };
    let Some(grant) = store::oauth::get_grant_in(&mut tx, &code.grant_id).await? else {
        return Err(bad());
    };
    if code.client_id != client.id {
        // Another client's code: refused, and nothing of the grant changes.
        return Err(bad());
    }
    if code.used_at.is_some() {
        // Replay: whoever holds the first tokens may hold them wrongly; the grant ends.
        store::oauth::revoke_grant(&mut tx, &grant.id, now, "authorization code used twice")
            .await?;
        audit_in(
            &mut tx,
            meta,
            now,
            Action::OauthToken,
            Status::Denied,
            &grant,
            Some("authorization code replayed: grant revoked"),
        )
        .await?;
        tx.commit().await?;
        app.forget_credentials();
        tracing::warn!(client_id = %client.id, grant_id = %grant.id, "oauth token: code replayed, grant revoked");
        return Err(bad());
    }
    if code.client_id != client.id
        || from_micros(code.expires_at) <= now
        || grant.revoked_at.is_some()
    {
        return Err(bad());
    }
    if x.redirect_uri != Some(code.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verified = x
        .code_verifier
        .is_some_and(|v| pkce::verify_s256(v, &code.code_challenge));
    if !verified {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if let Some(r) = x.resource {
        let r = resource::resolve(Some(r), canonical)
            .map_err(|e| OAuthError::new("invalid_target", e.to_string()))?;
        if r != grant.resource {
            return Err(OAuthError::new(
                "invalid_target",
                "resource differs from the authorization request",
            ));
        }
    }
    // The signer must still be able to sign (revoked or disabled since consent: no tokens).
    if !signer_ok {
        return Err(bad());
    }
    let (issued, _) = mint(&mut tx, oauth, &grant, client.allows_refresh(), 1, now).await?;
    audit_in(
        &mut tx,
        meta,
        now,
        Action::OauthToken,
        Status::Success,
        &grant,
        None,
    )
    .await?;
    tx.commit().await?;
    if let Err(e) = store::oauth::touch_client(&app.store, &client.id, now).await {
        tracing::warn!(error = %e, "could not mark a client used");
    }
    tracing::info!(client_id = %client.id, grant_id = %grant.id, "oauth token: code exchanged");
    Ok(issued)
}

/// RFC 7009: revokes a refresh token's grant, or one access token. Unknown tokens are not an
/// error (the answer is the same either way, so it tells nothing).
pub async fn revoke(
    app: &App,
    client: &Client,
    presented: &str,
    meta: &CallMeta,
) -> Result<(), OAuthError> {
    let now = app.now();
    let kind = token::kind_of(presented);
    let mut tx = app.store.begin().await?;
    let grant_id = match kind {
        Some(TokenKind::Refresh) => {
            let Ok(d) = token::digest_of(TokenKind::Refresh, presented) else {
                return Ok(());
            };
            store::oauth::get_refresh_in(&mut tx, &d)
                .await?
                .map(|r| r.grant_id)
        }
        Some(TokenKind::Access) => {
            let Ok(d) = token::digest_of(TokenKind::Access, presented) else {
                return Ok(());
            };
            store::oauth::expire_access(&mut tx, &d, now).await?
        }
        _ => None,
    };
    let Some(grant_id) = grant_id else {
        return Ok(());
    };
    let Some(grant) = store::oauth::get_grant_in(&mut tx, &grant_id).await? else {
        return Ok(());
    };
    if grant.client_id != client.id {
        // Not this client's token: nothing changes (RFC 7009 §2.1).
        return Ok(());
    }
    let what = if kind == Some(TokenKind::Refresh) {
        store::oauth::revoke_grant(&mut tx, &grant.id, now, "revoked by the client").await?;
        "refresh token revoked: grant revoked"
    } else {
        "access token revoked"
    };
    audit_in(
        &mut tx,
        meta,
        now,
        Action::OauthRevoke,
        Status::Success,
        &grant,
        Some(what),
    )
    .await?;
    tx.commit().await?;
    app.forget_credentials();
    tracing::info!(client_id = %client.id, grant_id = %grant.id, what, "oauth revoke");
    Ok(())
}
