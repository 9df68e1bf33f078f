//! Sign-in sessions as credentials: a session cookie resolved to the principal it stands for.

use tracing::instrument;

use super::refusal::{AuthError, AuthFailure, Rejected};
use crate::domain::key::KeyDigest;
use crate::domain::principal::Principal;
use crate::domain::session::SessionToken;
use crate::ops::app::App;
use crate::store::{self, from_micros};

/// Resolves a session cookie to the principal it stands for, checking the session and its
/// subject (operator or key) as they are now.
#[instrument(level = "debug", skip_all)]
pub async fn authenticate(app: &App, cookie: &str) -> Result<Principal, AuthError> {
    let bad = || AuthError::Rejected(Rejected::new(AuthFailure::BadSession));
    let token = SessionToken::parse(cookie).ok_or_else(bad)?;
    let row = store::sessions::find(&app.store, &token.digest_hex())
        .await?
        .ok_or_else(bad)?;
    if row.revoked_at.is_some() || from_micros(row.expires_at) <= app.now() {
        return Err(bad());
    }
    match row.subject_kind.as_str() {
        // A key session names the key by the digest of the secret it was opened with.
        "key" => subject(app, "key", "", Some(&row.subject_id)).await,
        kind => subject(app, kind, &row.subject_id, None).await,
    }
}

/// Whoever a session, grant or pending sign-in stands for, as they are now: a key by the digest
/// of the secret that was presented (through the same checks as a bearer key), or an operator
/// by id, still on the password it was verified with when `digest` names one.
pub async fn subject(
    app: &App,
    kind: &str,
    id: &str,
    digest: Option<&str>,
) -> Result<Principal, AuthError> {
    let gone = || AuthError::Rejected(Rejected::new(AuthFailure::BadSession));
    match (kind, digest) {
        ("key", Some(d)) => {
            let digest = KeyDigest::from_hex(d).ok_or_else(gone)?;
            super::key::authenticate_digest(app, &digest, || None).await
        }
        ("operator", version) => {
            let op = store::operators::find_by_id(&app.store, id)
                .await?
                .ok_or_else(gone)?;
            // Signed with a password since changed: ended (whatever raced the change).
            if version.is_some_and(|v| v != crate::domain::password::version(&op.password_hash)) {
                return Err(gone());
            }
            super::key::operator_principal(op)
        }
        _ => Err(gone()),
    }
}
