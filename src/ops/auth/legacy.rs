//! The one shared key of `legacy` auth mode.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::principal::{Actor, Principal};
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::ops::{OpsError, keys};
use crate::store;

/// The one shared key of `legacy` auth mode, and the principal it stands for.
pub struct LegacyKey {
    digest: [u8; 32],
    principal: Principal,
    /// Shorter than `LEGACY_GUESSABLE_BELOW`: treated like a password.
    guessable: bool,
}

/// A legacy key this long or longer is treated like a bearer key; shorter ones like passwords
/// (counted before they are checked, refused while the address is locked out).
pub const LEGACY_GUESSABLE_BELOW: usize = 32;

impl LegacyKey {
    /// Under 8 characters is refused; 8 to 15 is accepted with a warning.
    pub async fn new(app: &App, secret: &str, role: &str) -> Result<Self, OpsError> {
        let n = secret.chars().count();
        if n < 8 {
            return Err(OpsError::invalid(
                "the legacy shared key is shorter than 8 characters; refusing to start",
            ));
        }
        if n < 16 {
            tracing::warn!(
                length = n,
                "the legacy shared key is shorter than 16 characters; use a longer one"
            );
        }
        let role = store::roles::get(&app.store, role)
            .await?
            .ok_or_else(|| keys::unknown_role(role))?;
        // The shared key holds this role over every tenant, forever: the role's holder checks
        // (who may change or delete it) must count it, on every replica.
        store::settings::mark_legacy_role(&app.store, &role.name).await?;
        Ok(LegacyKey {
            guessable: n < LEGACY_GUESSABLE_BELOW,
            digest: Sha256::digest(secret.as_bytes()).into(),
            principal: Principal::new(
                Actor::Legacy,
                role.name,
                role.permissions,
                TenantScope::All,
                None,
            ),
        })
    }

    pub fn guessable(&self) -> bool {
        self.guessable
    }

    /// Compares digests in constant time, so neither content nor length leaks through timing.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(d.ct_eq(&self.digest)).then(|| self.principal.clone())
    }
}
