//! The browser's part: an authorization request is checked and parked, the person signs in
//! (operator password, or an API key they paste: the key bridge), and decides. Approval makes
//! a grant, capped by a ceiling no higher than the signer, and a single-use code.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::clients::{self, Client};
use super::{OAuth, OAuthError, Subject};
use crate::domain::audit::{Action, Status};
use crate::domain::key::PlainKey;
use crate::domain::oauth::ceiling::{self, Ceiling};
use crate::domain::oauth::token::{self, OAuthSecret, TokenKind};
use crate::domain::oauth::{pkce, resource, scope};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::ops::auth::{self, Credential, Origin, Refused};
use crate::ops::call::CallMeta;
use crate::store::{self, from_micros, micros};

const MAX_STATE: usize = 1024;

/// What `GET /authorize` carried (all optional: each is checked here).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Params {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// Why a request stops. `Page` is shown in the browser and never redirects (the client or
/// its redirect URI could not be trusted); `Redirect` goes back to the client.
#[derive(Debug)]
pub enum Stop {
    Page(String),
    Redirect(String),
}

/// The redirect back to the client: `params`, then `state` and `iss` (RFC 9207) on every one.
pub fn redirect_to(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
                if let Some(s) = state {
                    q.append_pair("state", s);
                }
                q.append_pair("iss", issuer);
            }
            u.to_string()
        }
        // Checked at registration: cannot happen; never redirect somewhere unchecked.
        Err(_) => String::new(),
    }
}

fn error_redirect(p: &Checked, code: &str, description: &str, issuer: &str) -> Stop {
    tracing::info!(client_id = %p.client.id, error = code, "oauth authorize: refused, redirected");
    Stop::Redirect(redirect_to(
        &p.redirect_uri,
        &[("error", code), ("error_description", description)],
        p.state.as_deref(),
        issuer,
    ))
}

struct Checked {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
}

/// A request parked for the browser, with the two secrets the browser gets: the binding
/// cookie and the form's CSRF token (only their digests are stored).
pub struct Parked {
    pub request_id: String,
    pub browser: OAuthSecret,
    pub csrf: OAuthSecret,
    pub client: Client,
    pub redirect_uri: String,
    pub resource: String,
    pub scopes: PermissionSet,
}

/// Checks an authorization request: the client and its redirect URI first (a failure renders,
/// never redirects), then response type, PKCE (S256 only), resource and scopes.
pub async fn start(
    app: &App,
    oauth: &OAuth,
    p: Params,
    issuer: &str,
    canonical: &str,
) -> Result<Parked, Stop> {
    let Some(client_id) = p.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return Err(Stop::Page("the request names no client_id".into()));
    };
    let client = clients::resolve(app, oauth, client_id)
        .await
        .map_err(|e| Stop::Page(e.description))?;
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(r) if client.redirect_for(r).is_some() => r.to_owned(),
        Some(_) => {
            tracing::warn!(client_id = %client.id, "oauth authorize: redirect_uri not registered");
            return Err(Stop::Page(
                "the redirect_uri is not registered for this client".into(),
            ));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Stop::Page(
                "the request names no redirect_uri and the client has several".into(),
            ));
        }
    };
    let checked = Checked {
        client,
        redirect_uri,
        // Kept for ten minutes per request: bounded (clients send tens of bytes).
        state: p.state.clone().filter(|s| s.len() <= MAX_STATE),
    };
    if p.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(error_redirect(
            &checked,
            "invalid_request",
            "state is longer than 1024 bytes",
            issuer,
        ));
    }
    if p.response_type.as_deref() != Some("code") {
        return Err(error_redirect(
            &checked,
            "unsupported_response_type",
            "response_type must be code",
            issuer,
        ));
    }
    let challenge = match (
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) if pkce::valid_challenge(c) => c.to_owned(),
        (None, _) => {
            return Err(error_redirect(
                &checked,
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
                issuer,
            ));
        }
        (Some(_), Some("S256")) => {
            return Err(error_redirect(
                &checked,
                "invalid_request",
                "code_challenge must be 43 base64url characters",
                issuer,
            ));
        }
        (Some(_), _) => {
            return Err(error_redirect(
                &checked,
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
                issuer,
            ));
        }
    };
    let resource = match resource::resolve(p.resource.as_deref(), canonical) {
        Ok(r) => r,
        Err(e) => {
            return Err(error_redirect(
                &checked,
                "invalid_target",
                &e.to_string(),
                issuer,
            ));
        }
    };
    let scopes = scope::parse(p.scope.as_deref());
    let now = app.now();
    let browser = OAuthSecret::generate(TokenKind::Request);
    let csrf = OAuthSecret::generate(TokenKind::Request);
    let request_id = token::random_id("rq_");
    let row = store::oauth::RequestRow {
        id: request_id.clone(),
        client_id: checked.client.id.clone(),
        client_name: checked.client.name.clone(),
        redirect_uri: checked.redirect_uri.clone(),
        state: checked.state.clone(),
        code_challenge: challenge,
        resource: resource.clone(),
        scopes: scope::format(scopes),
        browser_digest: browser.digest_hex(),
        csrf_digest: csrf.digest_hex(),
        signer_kind: None,
        signer_id: None,
        signer_digest: None,
        created_at: micros(now),
        expires_at: micros(now + oauth.settings.request_ttl),
    };
    store::oauth::insert_request(&app.store, &row)
        .await
        .map_err(|e| Stop::Page(OAuthError::from(e).description))?;
    tracing::info!(client_id = %checked.client.id, request_id = %request_id, "oauth authorize: request parked for sign-in");
    Ok(Parked {
        request_id,
        browser,
        csrf,
        client: checked.client,
        redirect_uri: checked.redirect_uri,
        resource,
        scopes,
    })
}

const EXPIRED: &str = "this sign-in page has expired or belongs to another browser; start again from your application";

fn same(digest: &str, presented: Option<&str>) -> bool {
    let Some(p) = presented else { return false };
    let Ok(d) = token::digest_of(TokenKind::Request, p) else {
        return false;
    };
    bool::from(d.as_bytes().ct_eq(digest.as_bytes()))
}

/// A parked request, found for a POST from the browser it was parked for: its binding cookie
/// and the form's CSRF token must both match.
pub async fn load(
    app: &App,
    request_id: &str,
    browser: Option<&str>,
    csrf: Option<&str>,
) -> Result<store::oauth::RequestRow, Stop> {
    let row = store::oauth::find_request(&app.store, request_id)
        .await
        .map_err(|e| Stop::Page(OAuthError::from(e).description))?
        .ok_or_else(|| Stop::Page(EXPIRED.into()))?;
    if from_micros(row.expires_at) <= app.now() {
        return Err(Stop::Page(EXPIRED.into()));
    }
    if !same(&row.browser_digest, browser) || !same(&row.csrf_digest, csrf) {
        tracing::warn!(client_id = %row.client_id, "oauth: a form came without its browser binding or CSRF token");
        return Err(Stop::Page(EXPIRED.into()));
    }
    Ok(row)
}

/// How the person signs in. Its `Debug` shows only the kind, never a secret.
pub enum SignIn {
    Password { username: String, password: String },
    Key(String),
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignIn::Password { .. } => "Password { .. }",
            SignIn::Key(_) => "Key(..)",
        })
    }
}

/// Signs the person in for `row`: a password through the lockout and argon2, as sign-in
/// always does; a pasted key exactly as a bearer key is checked (never stored, never logged).
pub async fn sign_in(
    app: &App,
    row: &store::oauth::RequestRow,
    creds: SignIn,
    meta: &CallMeta,
    ip: std::net::IpAddr,
) -> Result<Principal, Refused> {
    let (principal, digest) = match creds {
        SignIn::Password { username, password } => (
            crate::ops::sessions::verify_password(app, &username, password, meta, ip).await?,
            None,
        ),
        SignIn::Key(text) => {
            let text = text.trim();
            let p = auth::authenticate(app, Credential::ApiKey(text), meta, Origin::Address(ip))
                .await?;
            // The format was checked by `authenticate`: this digest cannot fail.
            (p, PlainKey::digest_of(text).ok().map(|d| d.to_hex()))
        }
    };
    let (kind, id) = match principal.actor() {
        Actor::Key { id, .. } => ("key", id.clone()),
        Actor::Operator { id, .. } => ("operator", id.clone()),
        _ => {
            return Err(Refused::Failed(crate::ops::OpsError::invalid(
                "only an operator or an API key can sign in here",
            )));
        }
    };
    store::oauth::set_request_signer(&app.store, &row.id, kind, &id, digest.as_deref())
        .await
        .map_err(|e| Refused::Failed(e.into()))?;
    tracing::info!(client_id = %row.client_id, signer_kind = kind, "oauth authorize: signed in, consent shown");
    Ok(principal)
}

/// The signer of a grant or request as they are now (a key through the same checks as a bearer
/// key, by the digest of the secret pasted; an operator by id).
pub async fn signer_now(
    app: &App,
    kind: &str,
    id: &str,
    digest: Option<&str>,
) -> Result<Principal, auth::AuthError> {
    use auth::{AuthError, AuthFailure, Rejected};
    let gone = || AuthError::Rejected(Rejected::new(AuthFailure::BadSession));
    match (kind, digest) {
        ("key", Some(d)) => {
            let digest = crate::domain::key::KeyDigest::from_hex(d).ok_or_else(gone)?;
            auth::authenticate_digest(app, &digest, || None).await
        }
        ("operator", _) => {
            let op = store::operators::find_by_id(&app.store, id)
                .await?
                .ok_or_else(gone)?;
            auth::operator_principal(op)
        }
        _ => Err(gone()),
    }
}

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

fn subject(p: &Principal) -> Subject<'_> {
    Subject {
        kind: p.actor().kind(),
        id: p.actor().id(),
        preview: p.actor().preview(),
        role: Some(p.role()),
        tenants: p.tenants().to_vec(),
    }
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
    let signer = match signer_now(app, kind, signer_id, row.signer_digest.as_deref()).await {
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
            let ev = super::event(
                meta,
                now,
                Action::OauthAuthorize,
                Status::Denied,
                &subject(&signer),
                ("oauth_client", &row.client_id),
                Some("the signer denied the request".into()),
            );
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
                events.push(super::event(
                    meta,
                    now,
                    Action::OauthRevoke,
                    Status::Success,
                    &subject(&signer),
                    ("grant", old),
                    Some("least recently used grant for this client, over the cap".into()),
                ));
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
                &subject(&signer),
                ("grant", &grant_id),
                None,
            );
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
