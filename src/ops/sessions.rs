//! Sign-in sessions: exchanging a password or an API key for a server-side session (the
//! cookie), resolving a cookie to a principal on each request, and signing out.

use chrono::{DateTime, Duration, Utc};
use tracing::instrument;

use super::OpsError;
use super::auth::{self, AuthError, AuthFailure, Origin, Refused, Rejected};
use super::call::CallMeta;
use crate::domain::audit::{Action, Status};
use crate::domain::key::PlainKey;
use crate::domain::password::Password;
use crate::domain::principal::Principal;
use crate::domain::session::SessionToken;
use crate::ops::app::App;
use crate::store;

/// Its `Debug` shows only which kind was presented: never the secret, nor a typed username
/// (it may be a password typed into the wrong field).
pub enum Credentials {
    Password { username: String, password: String },
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { .. } => f.write_str("Password { .. }"),
            Credentials::ApiKey(_) => f.write_str("ApiKey(..)"),
        }
    }
}

pub struct Session {
    /// The cookie value. Shown to the client once, stored only as a digest.
    pub token: SessionToken,
    pub expires_at: DateTime<Utc>,
    pub principal: Principal,
}

/// Checks the credentials from `ip` and opens a session lasting `max_age`, or refuses them,
/// audited. A password can be guessed, so it is counted before it is
/// checked, refused outright while the address is locked out, and forgiven when it is right; a
/// 256-bit key is counted only when it fails, as a bearer key is.
#[instrument(level = "debug", skip_all)]
pub async fn login(
    app: &App,
    creds: Credentials,
    max_age: Duration,
    meta: &CallMeta,
    ip: std::net::IpAddr,
) -> Result<Session, Refused> {
    let address = crate::domain::lockout::address_key(ip);
    let address = address.as_str();
    match creds {
        // A 256-bit key cannot be guessed: counted only when it fails, as a bearer key is.
        Credentials::ApiKey(_) => match open_session(app, creds, max_age, meta, address).await {
            Ok(session) => Ok(session),
            Err(AuthError::Rejected(rejected)) => {
                Err(auth::refuse(app, rejected, meta, Origin::Address(ip)).await)
            }
            Err(e) => Err(Refused::Failed(e.into())),
        },
        Credentials::Password { .. } => {
            let open = open_session(app, creds, max_age, meta, address);
            auth::counted_first(app, address, meta, open).await
        }
    }
}

async fn open_session(
    app: &App,
    creds: Credentials,
    max_age: Duration,
    meta: &CallMeta,
    address: &str,
) -> Result<Session, AuthError> {
    let (principal, subject_kind, subject_id) = match creds {
        Credentials::ApiKey(text) => {
            let digest = PlainKey::digest_of(&text)
                .map_err(|_| AuthError::Rejected(Rejected::new(AuthFailure::Malformed)))?;
            let p = auth::authenticate_digest(app, &digest, || Some(PlainKey::preview_of(&text)))
                .await?;
            (p, "key", digest.to_hex())
        }
        Credentials::Password { username, password } => {
            let (p, _) = check_password(app, &username, password, address).await?;
            let id = p.actor().id().unwrap_or_default().to_owned();
            if let Err(e) = store::operators::touch_login(&app.store, &id, app.now()).await {
                tracing::warn!(error = %e, "could not record operator sign-in time");
            }
            (p, "operator", id)
        }
    };
    let now = app.now();
    let token = SessionToken::generate();
    let expires_at = now + max_age;
    store::sessions::insert(
        &app.store,
        &token.digest_hex(),
        subject_kind,
        &subject_id,
        now,
        expires_at,
    )
    .await?;
    let event = meta.event_by(now, Action::Login, Status::Success, &principal);
    app.audit.record(event).await?;
    Ok(Session {
        token,
        expires_at,
        principal,
    })
}

/// Checks a username and password from `ip` (counted before it is checked, refused while the
/// address is locked out, audited when wrong): the OAuth sign-in page's path. Also returns
/// the digest of the password hash that was verified, so what is signed with it can end when
/// the password changes.
pub async fn verify_password(
    app: &App,
    username: &str,
    password: String,
    meta: &CallMeta,
    ip: std::net::IpAddr,
) -> Result<(Principal, String), Refused> {
    let address = crate::domain::lockout::address_key(ip);
    let check = check_password(app, username, password, &address);
    auth::counted_first(app, &address, meta, check).await
}

/// Verifies a username and password. Every typed name, existing or not, is counted under its
/// keyed hash before the password is checked: after a few failures the next attempt for that
/// name waits (seconds at most), except from an address the name signed in from lately. An unknown username costs the same
/// argon2 work as a wrong password, and both get the same answer; the trail records the typed
/// name only when such an operator exists (a password typed into the wrong field must not land
/// there), else a prefix of its keyed hash.
async fn check_password(
    app: &App,
    username: &str,
    password: String,
    address: &str,
) -> Result<(Principal, String), AuthError> {
    // Longer than any password keyward accepts: wrong whoever it is for, and not worth argon2.
    if password.chars().count() > crate::domain::password::MAX_LEN {
        return Err(AuthError::Rejected(Rejected::new(AuthFailure::BadPassword)));
    }
    let username = crate::domain::username::normalize(username);
    let name_hash = app.name_key.hash(&username);
    let now = app.now();
    let throttle = &app.lockout.names;
    let known =
        store::lockout::name_known_at(&app.store, &name_hash, address, now - throttle.known_for)
            .await?;
    // Before the lookup, so known and unknown names cost exactly one verification each.
    let decoy = app.passwords.decoy().await.ok_or(AuthError::Busy)?;
    let row = store::operators::find_for_login(&app.store, &username).await?;
    let preview = || match &row {
        Some(r) => r.username.clone(),
        None => app.name_key.label(&username),
    };
    if !known
        && let Some(until) =
            store::lockout::reserve_name_attempt(&app.store, &name_hash, now, &app.lockout).await?
    {
        return Err(AuthError::Rejected(Rejected {
            preview: Some(preview()),
            name: row.as_ref().map(|r| r.username.as_str().into()),
            until: Some(until),
            ..Rejected::new(AuthFailure::NameDelayed)
        }));
    }
    let hash = row.as_ref().map_or(decoy, |r| r.password_hash.clone());
    let presented = Password::presented(&password);
    let ok = app
        .passwords
        .run(move |off| presented.verify(&hash, off))
        .await
        .ok_or(AuthError::Busy)?;
    if let (Some(row), true) = (&row, ok) {
        store::lockout::record_name_success(&app.store, &name_hash, address, app.now()).await?;
        let verified = crate::domain::password::version(&row.password_hash);
        return auth::operator_principal(row.clone()).map(|p| (p, verified));
    }
    // (The attempt was counted before it was checked.)
    Err(AuthError::Rejected(Rejected {
        preview: Some(preview()),
        name: row.as_ref().map(|r| r.username.as_str().into()),
        ..Rejected::new(AuthFailure::BadPassword)
    }))
}

/// Ends a session. Returns whether there was a live one. The revocation and its audit record
/// commit together: a sign-out is never left unrecorded.
pub async fn logout(app: &App, cookie: &str, meta: &CallMeta) -> Result<bool, OpsError> {
    let Some(token) = SessionToken::parse(cookie) else {
        return Ok(false);
    };
    let now = app.now();
    let principal = auth::session::authenticate(app, cookie).await.ok();
    let mut tx = app.store.begin().await?;
    let ended = store::sessions::revoke(&mut tx, &token.digest_hex(), now).await?;
    if ended {
        let event = match &principal {
            Some(p) => meta.event_by(now, Action::Logout, Status::Success, p),
            None => meta.event(now, Action::Logout, Status::Success, "anonymous"),
        };
        store::audit::append(&mut tx, &[event]).await?;
    }
    tx.commit().await?;
    Ok(ended)
}
