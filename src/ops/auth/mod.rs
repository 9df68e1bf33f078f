//! Authentication: the one place a presented credential becomes a `Principal` or an audited
//! refusal. Every surface comes through [`authenticate`]: stdio at start and on every call,
//! HTTP on every request. The surfaces authenticate; the guard only authorizes.
//!
//! A new kind of credential (an OAuth access token, say) is one more [`Credential`] variant
//! and one more arm in [`authenticate`].

pub mod cached;
mod key;
mod legacy;
pub mod refusal;
pub mod session;
pub mod token;
pub mod trail;

use std::net::IpAddr;

use chrono::{DateTime, Utc};

pub use cached::CachedKey;
pub use key::authenticate_digest;
/// The key check alone, refusals unaudited: for offline tools (benchmarks, tests). Surfaces
/// use [`authenticate`].
pub use key::authenticate_key;
pub(crate) use key::operator_principal;
pub use legacy::{LEGACY_GUESSABLE_BELOW, LegacyKey};
pub use refusal::{AuthError, AuthFailure, Rejected};
pub use trail::record_rejection;

use super::OpsError;
use super::app::App;
use super::call::CallMeta;
use super::views::WhoAmI;
use crate::domain::lockout::address_key;
use crate::domain::principal::{Actor, Principal};
use crate::domain::role::BuiltinRole;
use crate::domain::tenant::TenantScope;
use crate::domain::timespec;

/// A credential as a caller presented it (never logged, never kept).
pub enum Credential<'a> {
    /// No credential at all.
    None,
    /// An API key: a bearer header, or `KEYWARD_API_KEY` over stdio.
    ApiKey(&'a str),
    /// A sign-in session's cookie value.
    Session(&'a str),
    /// What was presented where `legacy` mode's one shared key is expected.
    Legacy {
        shared: &'a LegacyKey,
        presented: &'a str,
    },
    /// An OAuth access token (`kwat_…`) from the built-in authorization server, presented at
    /// `resource` (the canonical MCP URL it must have been issued for).
    AccessToken {
        token: &'a str,
        resource: Option<&'a str>,
    },
    /// Authentication is disabled (local development only).
    Development,
}

/// Where a credential came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// This machine's own process (stdio): refusals are audited, not counted.
    Local,
    /// A network address: refusals are audited and counted toward its lockout (under its
    /// lockout key, worked out only when needed: not on the path of an accepted credential).
    Address(IpAddr),
}

/// A credential that was not accepted, or a check that could not run.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Refused, and the refusal audited (and, from an address, counted) already.
    #[error("credential refused: {}", rejected.failure.reason())]
    Credential { rejected: Rejected, lock: Lock },
    /// Not checked: the address is locked out (a guessable credential, e.g. a password).
    #[error("too many failed authentications from this address")]
    LockedOut(DateTime<Utc>),
    /// A genuine OAuth token that expired or was revoked: neither counted nor audited
    /// (clients present expired tokens routinely before they refresh).
    #[error("{0}")]
    Stale(&'static str),
    /// The check could not run (database, audit trail, too busy).
    #[error(transparent)]
    Failed(OpsError),
}

/// The state of the caller's address after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Not locked out.
    Open,
    /// Locked out before this attempt: it was neither counted nor audited again.
    Already(DateTime<Utc>),
    /// This attempt is past the threshold (its lock may have been set by a concurrent one).
    Over(Option<DateTime<Utc>>),
}

impl From<Refused> for OpsError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Credential { rejected, .. } => {
                OpsError::Unauthenticated(rejected.failure.reason().to_owned())
            }
            Refused::LockedOut(_) => OpsError::Unauthenticated("locked out".to_owned()),
            Refused::Stale(why) => OpsError::Unauthenticated(why.to_owned()),
            Refused::Failed(e) => e,
        }
    }
}

/// Turns a presented credential into the principal it stands for, or into an audited refusal.
pub async fn authenticate(
    app: &App,
    credential: Credential<'_>,
    meta: &CallMeta,
    origin: Origin,
) -> Result<Principal, Refused> {
    let checked = match credential {
        Credential::None => Err(AuthError::Rejected(Rejected::new(AuthFailure::Missing))),
        Credential::ApiKey(presented) => key::authenticate_key(app, presented).await,
        Credential::Session(cookie) => session::authenticate(app, cookie).await,
        Credential::Legacy { shared, presented } => {
            let check = async {
                shared
                    .verify(presented)
                    .ok_or_else(|| AuthError::Rejected(Rejected::new(AuthFailure::UnknownKey)))
            };
            match origin {
                // A short shared key can be guessed: counted before it is checked.
                Origin::Address(ip) if shared.guessable() => {
                    return counted_first(app, &address_key(ip), meta, check).await;
                }
                _ => check.await,
            }
        }
        Credential::AccessToken { token, resource } => {
            match token::authenticate_token(app, token, resource).await {
                Ok(token::Checked::Valid(p)) => Ok(p),
                Ok(token::Checked::Stale(why)) => {
                    tracing::debug!(reason = why, "oauth: stale access token presented");
                    return Err(Refused::Stale(why));
                }
                Err(e) => Err(e),
            }
        }
        Credential::Development => Ok(development_principal()),
    };
    match checked {
        Ok(principal) => Ok(principal),
        Err(AuthError::Rejected(rejected)) => Err(refuse(app, rejected, meta, origin).await),
        Err(e) => Err(Refused::Failed(e.into())),
    }
}

/// Checks a secret that can be guessed (a password, a short legacy key) from `address`:
/// refused outright while the address is locked out, counted before it is checked (so parallel
/// guesses cannot pass the threshold), forgiven when it is right, and audited when it is not.
pub async fn counted_first<T>(
    app: &App,
    address: &str,
    meta: &CallMeta,
    check: impl Future<Output = Result<T, AuthError>>,
) -> Result<T, Refused> {
    use super::lockout;
    if let Some(until) = lockout::locked_until(app, address)
        .await
        .map_err(Refused::Failed)?
    {
        return Err(Refused::LockedOut(until));
    }
    let reserved = lockout::reserve(app, address)
        .await
        .map_err(Refused::Failed)?;
    if let Some(until) = reserved.refused_until(app) {
        return Err(Refused::LockedOut(until));
    }
    match check.await {
        Ok(done) => {
            if let Err(e) = lockout::forgive(app, address, reserved).await {
                tracing::warn!(error = %e, "could not take back a successful attempt");
            }
            Ok(done)
        }
        Err(AuthError::Rejected(rejected)) => {
            note(app, &rejected, meta);
            match lockout::confirm(app, address, reserved, &rejected, meta).await {
                Ok(()) => Err(Refused::Credential {
                    rejected,
                    lock: Lock::Open,
                }),
                Err(e) => Err(Refused::Failed(e)),
            }
        }
        Err(e) => Err(Refused::Failed(e.into())),
    }
}

/// Records a refused credential: audited; from an address, also counted toward its lockout.
/// An address already locked out is not counted or audited again (its lockout was): a 256-bit
/// key cannot be guessed, so its well-formed credentials are still looked up and served.
pub async fn refuse(app: &App, rejected: Rejected, meta: &CallMeta, origin: Origin) -> Refused {
    let lock = match origin {
        Origin::Local => {
            note(app, &rejected, meta);
            record_rejection(app, &rejected, meta)
                .await
                .map(|()| Lock::Open)
        }
        Origin::Address(ip) => {
            let address = address_key(ip);
            refuse_from(app, &rejected, meta, &address).await
        }
    };
    match lock {
        Ok(lock) => Refused::Credential { rejected, lock },
        Err(e) => Refused::Failed(e),
    }
}

/// A refusal from a network address: counted toward its lockout unless it is locked out
/// already (then only counted in the metric).
async fn refuse_from(
    app: &App,
    rejected: &Rejected,
    meta: &CallMeta,
    address: &str,
) -> Result<Lock, OpsError> {
    match super::lockout::locked_until(app, address).await? {
        Some(until) => {
            count(app, rejected);
            tracing::debug!(
                client_ip = meta.client_ip.as_deref().map(tracing::field::display),
                reason = rejected.failure.reason(),
                "authentication failed while locked out"
            );
            Ok(Lock::Already(until))
        }
        None => {
            note(app, rejected, meta);
            let count = super::lockout::record_failure(app, address, rejected, meta).await?;
            Ok(if count.failures > app.lockout.threshold {
                Lock::Over(count.locked_until)
            } else {
                Lock::Open
            })
        }
    }
}

/// The log line and metric every refused credential gets (never the secret), before its record
/// is written: a refusal leaves a trace even while the trail cannot take it.
pub fn note(app: &App, rejected: &Rejected, meta: &CallMeta) {
    tracing::warn!(
        source = %meta.source,
        client_ip = meta.client_ip.as_deref().map(tracing::field::display),
        reason = rejected.failure.reason(),
        key_id = rejected.key_id.as_deref(),
        "authentication failed"
    );
    count(app, rejected);
}

fn count(app: &App, rejected: &Rejected) {
    app.metrics
        .auth_failures
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: rejected.failure.label(),
        })
        .inc();
}

/// The principal used when authentication is explicitly disabled for local development.
pub fn development_principal() -> Principal {
    Principal::new(
        Actor::Development,
        BuiltinRole::Admin.name().to_owned(),
        BuiltinRole::Admin.permissions(),
        TenantScope::All,
        None,
    )
}

pub fn whoami(p: &Principal) -> WhoAmI {
    WhoAmI {
        actor_kind: p.actor().kind().to_owned(),
        key_id: p.actor().id().map(str::to_owned),
        key_preview: p.actor().preview().map(str::to_owned),
        role: p.role().to_owned(),
        permissions: p.permissions().to_vec(),
        tenants: p.tenants().to_vec(),
        expires_at: p.expires_at().map(timespec::format_utc),
        oauth: p.channel().map(|c| super::views::OAuthChannel {
            grant_id: c.grant_id.clone(),
            client_id: c.client_id.clone(),
        }),
    }
}
