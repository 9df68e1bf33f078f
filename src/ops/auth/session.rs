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
        "key" => {
            let digest = KeyDigest::from_hex(&row.subject_id).ok_or_else(bad)?;
            super::key::authenticate_digest(app, &digest, || None).await
        }
        "operator" => {
            let op = store::operators::find_by_id(&app.store, &row.subject_id)
                .await?
                .ok_or_else(bad)?;
            super::key::operator_principal(op)
        }
        _ => Err(bad()),
    }
}
