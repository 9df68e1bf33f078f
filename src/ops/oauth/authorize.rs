//! The browser's part: an authorization request is checked and parked, and the person signs
//! in (operator password, or an API key they paste: the key bridge). Their decision is in
//! `consent.rs`.

use subtle::ConstantTimeEq;

use super::clients::{self, Client};
use super::{OAuth, OAuthError};
use crate::domain::key::PlainKey;
use crate::domain::oauth::token::{self, OAuthSecret, TokenKind};
use crate::domain::oauth::{pkce, resource, scope};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
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

pub(super) const EXPIRED: &str = "this sign-in page has expired or belongs to another browser; start again from your application";

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
        SignIn::Password { username, password } => {
            let (p, version) =
                crate::ops::sessions::verify_password(app, &username, password, meta, ip).await?;
            (p, Some(version))
        }
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
