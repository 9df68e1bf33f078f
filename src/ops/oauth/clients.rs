//! OAuth clients as the endpoints see them: resolving a `client_id` (registered here, or a
//! client ID metadata document's URL), the redirect rules, and client authentication.
//! Registration itself is in `registration.rs`.

use super::{OAuth, OAuthError};
use crate::domain::oauth::redirect;
use crate::domain::oauth::token::{self, TokenKind};
use crate::ops::app::App;
use crate::store;

pub const AUTH_NONE: &str = "none";
pub const AUTH_POST: &str = "client_secret_post";
pub const AUTH_BASIC: &str = "client_secret_basic";
pub(super) const GRANT_CODE: &str = "authorization_code";
pub(super) const GRANT_REFRESH: &str = "refresh_token";
pub(super) const MAX_REDIRECTS: usize = 20;
pub(super) const MAX_NAME: usize = 100;
/// All redirect URIs of one client together (each is at most 2,000 bytes).
const MAX_REDIRECT_BYTES: usize = 4096;

/// A client as the authorization endpoints need it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// Self-asserted.
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub auth_method: String,
    secret_digest: Option<String>,
    /// Identified by a metadata document URL (the host is then verified by TLS).
    pub document: bool,
}

impl Client {
    pub fn allows_refresh(&self) -> bool {
        self.grant_types.iter().any(|g| g == GRANT_REFRESH)
    }

    /// The registered redirect URI that `presented` matches (loopback ports ignored).
    pub fn redirect_for(&self, presented: &str) -> Option<&str> {
        self.redirect_uris
            .iter()
            .find(|r| redirect::matches(r, presented))
            .map(String::as_str)
    }

    /// What the consent page calls the client's verified identity: the host of its
    /// metadata document, or "registered here" for a dynamically registered one.
    pub fn verified_host(&self) -> Option<String> {
        self.document.then(|| redirect::host(&self.id)).flatten()
    }

    /// Checks the client's authentication at the token and revocation endpoints.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<(), OAuthError> {
        let bad = || OAuthError::invalid_client("client authentication failed");
        match (&self.secret_digest, presented) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(bad()),
            (Some(stored), Some(p)) => {
                let digest = token::digest_of(TokenKind::ClientSecret, p).map_err(|_| bad())?;
                use subtle::ConstantTimeEq;
                if bool::from(digest.as_bytes().ct_eq(stored.as_bytes())) {
                    Ok(())
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Checks every redirect URI against the rules (any one failing refuses them all).
pub fn check_redirects(uris: &[String], oauth: &OAuth) -> Result<(), OAuthError> {
    if uris.is_empty() {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            "redirect_uris must list at least one redirect URI",
        ));
    }
    if uris.len() > MAX_REDIRECTS {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECTS} redirect URIs"),
        ));
    }
    if uris.iter().map(String::len).sum::<usize>() > MAX_REDIRECT_BYTES {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            format!("the redirect URIs are longer than {MAX_REDIRECT_BYTES} bytes together"),
        ));
    }
    for (i, uri) in uris.iter().enumerate() {
        redirect::check(uri, &oauth.settings.private_redirects).map_err(|e| {
            OAuthError::new("invalid_redirect_uri", format!("redirect_uris[{i}]: {e}"))
        })?;
    }
    Ok(())
}

/// Resolves a `client_id`: a registered client, or (an https URL) a client ID metadata
/// document, fetched through the SSRF guard and checked against the redirect rules.
pub async fn resolve(app: &App, oauth: &OAuth, client_id: &str) -> Result<Client, OAuthError> {
    if client_id.starts_with("https://") {
        let doc = oauth
            .documents
            .fetch(client_id, app.now())
            .await
            .map_err(|e| {
                tracing::warn!(client_id, error = %e, "oauth: client metadata document refused");
                use super::cimd::CimdError as E;
                match e {
                    // Rules the caller can read anyway.
                    E::NotHttps | E::BadUrl(_) | E::PrivateAddress | E::Invalid(_) => {
                        OAuthError::invalid_client(format!("client metadata document: {e}"))
                    }
                    // Network detail (refused, timed out, which status) would make this a
                    // port scanner for whoever can reach the page.
                    _ => OAuthError::invalid_client(
                        "the client metadata document could not be fetched; the server log has the reason",
                    ),
                }
            })?;
        check_redirects(&doc.redirect_uris, oauth).map_err(|e| {
            OAuthError::invalid_client(format!("client metadata document: {}", e.description))
        })?;
        return Ok(Client {
            id: doc.client_id,
            name: doc.client_name,
            redirect_uris: doc.redirect_uris,
            grant_types: doc.grant_types,
            auth_method: AUTH_NONE.to_owned(),
            secret_digest: None,
            document: true,
        });
    }
    if client_id.is_empty() || client_id.len() > 200 {
        return Err(OAuthError::invalid_client("unknown client_id"));
    }
    let row = store::oauth::find_client(&app.store, client_id)
        .await?
        .ok_or_else(|| {
            OAuthError::invalid_client("unknown client_id; register the client first")
        })?;
    let redirect_uris: Vec<String> = serde_json::from_str(&row.redirect_uris).unwrap_or_default();
    Ok(Client {
        id: row.id,
        name: row.name,
        redirect_uris,
        grant_types: row
            .grant_types
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        auth_method: row.auth_method,
        secret_digest: row.secret_digest,
        document: false,
    })
}
