//! The built-in OAuth 2.1 authorization server: client registration and resolution, the
//! browser's authorization request, codes, tokens, refresh rotation and revocation, and the
//! grants they all belong to. A grant is one consent: a client acting for a signer (a key or
//! an operator) within a ceiling picked at consent; it never outranks the signer as they are
//! now. The HTTP surface speaks the protocol; everything it decides is here.

pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod consent;
pub mod grants;
mod limiter;
pub mod refresh;
pub mod registration;
mod sweep;
pub use sweep::sweep;
pub mod tokens;

use std::sync::Arc;

use chrono::Duration;

use crate::domain::audit::{Action, AuditEvent, Status};
use crate::ops::call::CallMeta;

/// The settings chosen at start (`--oauth-*` flags).
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// No grant lives longer than this, however often it is refreshed.
    pub grant_max: Duration,
    /// How long a rotated refresh token still converges on its successor (racing refreshes).
    pub refresh_grace: Duration,
    pub code_ttl: Duration,
    /// How long a person has to sign in and decide.
    pub request_ttl: Duration,
    /// Live grants per (signer, client); the least recently used goes first.
    pub grants_per_client: usize,
    /// Exact private-use redirect URIs a client may register (Cursor's by default).
    pub private_redirects: Vec<String>,
    /// Whether a person may sign in by pasting an API key.
    pub key_sign_in: bool,
    /// Registrations per address per minute.
    pub registrations_per_minute: u32,
    pub cimd: cimd::CimdSettings,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            access_ttl: Duration::minutes(10),
            refresh_ttl: Duration::days(30),
            grant_max: Duration::days(90),
            refresh_grace: Duration::minutes(2),
            code_ttl: Duration::seconds(60),
            request_ttl: Duration::minutes(10),
            grants_per_client: 20,
            private_redirects: vec!["cursor://anysphere.cursor-mcp/oauth/callback".to_owned()],
            key_sign_in: true,
            registrations_per_minute: 60,
            cimd: cimd::CimdSettings::default(),
        }
    }
}

/// The authorization server's state in a running process.
pub struct OAuth {
    pub settings: OAuthSettings,
    pub documents: cimd::Cimd,
    /// Registrations per address (per process: a replica behind a balancer sees its share).
    pub(crate) registrations: limiter::Limiter,
    /// Refused registrations per address: audited once per burst.
    pub(crate) refusals: limiter::Limiter,
    /// Authorization requests per address: each may fetch a metadata document, so an
    /// unauthenticated caller cannot make the server fetch without bound.
    pub(crate) authorizations: limiter::Limiter,
}

impl OAuth {
    pub fn new(settings: OAuthSettings) -> Arc<Self> {
        let documents = cimd::Cimd::new(settings.cimd.clone());
        let per_minute = settings.registrations_per_minute;
        Arc::new(OAuth {
            settings,
            documents,
            registrations: limiter::Limiter::new(per_minute, Duration::minutes(1)),
            refusals: limiter::Limiter::new(1, Duration::minutes(1)),
            authorizations: limiter::Limiter::new(120, Duration::minutes(1)),
        })
    }

    /// Counts an authorization request from `address`; false when over the limit.
    pub fn admit_authorization(&self, address: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.authorizations.hit(address, now)
    }
}

/// An OAuth error as RFC 6749 §5.2 (and RFC 7591, RFC 8707) name them. The description is
/// safe to show the client: it never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }

    pub fn server_error() -> Self {
        Self::new(
            "server_error",
            "the server could not complete the request; try again shortly",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            "temporarily_unavailable",
            "the server is busy or its database or audit trail is unavailable; try again shortly",
        )
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "oauth: storage failed");
        match e {
            crate::store::StoreError::Unavailable(_) => OAuthError::unavailable(),
            _ => OAuthError::server_error(),
        }
    }
}

impl From<crate::store::error::AuditUnavailable> for OAuthError {
    fn from(e: crate::store::error::AuditUnavailable) -> Self {
        tracing::error!(error = %e, "oauth: audit trail unavailable");
        OAuthError::unavailable()
    }
}

impl From<crate::ops::OpsError> for OAuthError {
    fn from(e: crate::ops::OpsError) -> Self {
        use crate::ops::ErrorKind;
        match e.kind() {
            ErrorKind::Unavailable => OAuthError::unavailable(),
            ErrorKind::Internal => {
                tracing::error!(error = %e, "oauth: internal error");
                OAuthError::server_error()
            }
            _ => OAuthError::invalid_request(e.public_message()),
        }
    }
}

/// Who an OAuth event is about, for its audit record.
pub(crate) struct Subject<'a> {
    pub kind: &'a str,
    pub id: Option<&'a str>,
    pub preview: Option<&'a str>,
    /// The key's name or operator's username, when known without a query.
    pub name: Option<&'a str>,
    pub role: Option<&'a str>,
    pub tenants: Vec<String>,
}

impl<'a> Subject<'a> {
    /// An authenticated caller.
    pub(crate) fn of(p: &'a crate::domain::principal::Principal) -> Self {
        Subject {
            kind: p.actor().kind(),
            id: p.actor().id(),
            preview: p.actor().preview(),
            name: p.actor().name(),
            role: Some(p.role()),
            tenants: p.tenants().to_vec(),
        }
    }

    pub(crate) fn anonymous() -> Self {
        Subject {
            kind: "anonymous",
            id: None,
            preview: None,
            name: None,
            role: None,
            tenants: vec!["*".to_owned()],
        }
    }
}

/// A client's name as the trail keeps it: what the client asserted, scrubbed and clipped.
pub(crate) fn client_name(name: Option<&str>) -> Option<String> {
    name.map(|n| crate::domain::audit::claim(n, 128))
}

/// An audit record of one OAuth step; `target` is the client (registration) or the grant.
pub(crate) fn event(
    meta: &CallMeta,
    at: chrono::DateTime<chrono::Utc>,
    action: Action,
    status: Status,
    who: &Subject<'_>,
    target: (&'static str, &str),
    reason: Option<String>,
) -> AuditEvent {
    AuditEvent {
        actor_id: who.id.map(str::to_owned),
        actor_name: who.name.map(str::to_owned),
        actor_preview: who.preview.map(str::to_owned),
        role: who.role.map(str::to_owned),
        tenants: who.tenants.clone(),
        target_type: Some(target.0.to_owned()),
        target_id: Some(target.1.to_owned()),
        target_name: None,
        reason,
        ..meta.event(at, action, status, who.kind)
    }
}
