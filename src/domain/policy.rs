//! Least privilege, enforced: nobody hands out, assigns or manages more than they hold.
//!
//! These are the rules the ops layer applies after the guard has already checked the tool's
//! permission (defence in depth). Each refusal names exactly what is missing.

use chrono::{DateTime, Utc};

use super::error::{DomainError, Escalation};
use super::permission::{Permission, PermissionSet};
use super::principal::Principal;
use super::tenant::TenantScope;

/// The caller must hold `needed`.
pub fn require(p: &Principal, needed: Permission) -> Result<(), DomainError> {
    if p.has(needed) {
        Ok(())
    } else {
        Err(DomainError::Forbidden {
            needed,
            role: p.role().to_owned(),
        })
    }
}

/// What is being granted or acted on: a role's permissions, optionally tenants and an expiry.
pub struct Reach<'a> {
    pub permissions: PermissionSet,
    pub tenants: Option<&'a TenantScope>,
    /// `Some(None)` means "never expires"; `None` means expiry is not part of this check.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// `reach` must lie within the caller's own permissions, tenants and lifetime.
pub fn within(
    p: &Principal,
    action: impl Into<String>,
    reach: &Reach<'_>,
) -> Result<(), DomainError> {
    let missing_permissions = reach.permissions.missing_from(p.permissions());
    let missing_tenants = reach
        .tenants
        .map(|t| t.outside(p.tenants()))
        .unwrap_or_default();
    let expiry = match (reach.expires_at, p.expires_at()) {
        (Some(None), Some(mine)) => Some(format!(
            "it never expires, so it would outlive you (you expire at {})",
            mine.to_rfc3339()
        )),
        (Some(Some(theirs)), Some(mine)) if theirs > mine => Some(format!(
            "its expiry {} is after your own ({})",
            theirs.to_rfc3339(),
            mine.to_rfc3339()
        )),
        _ => None,
    };
    if missing_permissions.is_empty() && missing_tenants.is_empty() && expiry.is_none() {
        Ok(())
    } else {
        Err(DomainError::Exceeds(Escalation {
            action: action.into(),
            missing_permissions,
            missing_tenants,
            held_outside_scope: false,
            expiry,
        }))
    }
}

/// The lifetime requested for a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryRequest {
    /// Nothing asked: the default lifetime, shortened to the creator's own expiry if sooner.
    Default,
    Never,
    At(DateTime<Utc>),
}

/// 90 days: long enough not to be a chore, short enough that forgotten keys die.
pub const DEFAULT_KEY_LIFETIME_DAYS: i64 = 90;

/// Resolves a requested expiry to an absolute one (or none), before containment is checked.
pub fn resolve_expiry(
    p: &Principal,
    requested: ExpiryRequest,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DomainError> {
    match requested {
        ExpiryRequest::Default => {
            let default = now + chrono::Duration::days(DEFAULT_KEY_LIFETIME_DAYS);
            Ok(Some(match p.expires_at() {
                Some(mine) if mine < default => mine,
                _ => default,
            }))
        }
        ExpiryRequest::Never => Ok(None),
        ExpiryRequest::At(t) if t <= now => Err(DomainError::Invalid(format!(
            "expiry {} is in the past",
            t.to_rfc3339()
        ))),
        ExpiryRequest::At(t) => Ok(Some(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::Actor;
    use crate::domain::role::BuiltinRole;
    use chrono::TimeZone;

    fn principal(role: BuiltinRole, tenants: &[&str], expires: Option<DateTime<Utc>>) -> Principal {
        Principal::new(
            Actor::Key {
                id: "key_test".into(),
                preview: "kw_test".into(),
                name: "test".into(),
            },
            role.name().into(),
            role.permissions(),
            TenantScope::parse(tenants).unwrap(),
            expires,
        )
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap()
    }

    #[test]
    fn require_names_the_missing_permission_and_role() {
        let reader = principal(BuiltinRole::Reader, &["*"], None);
        let err = require(&reader, Permission::KeyCreate).unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: this requires key:create, which role 'reader' does not grant"
        );
        assert!(require(&reader, Permission::KeyRead).is_ok());
    }

    #[test]
    fn key_manager_cannot_mint_admin_nor_foreign_tenant() {
        let km = principal(BuiltinRole::KeyManager, &["acme"], None);
        let admin = BuiltinRole::Admin.permissions();
        let err = within(
            &km,
            "cannot create a key with role 'admin'",
            &Reach {
                permissions: admin,
                tenants: Some(&TenantScope::parse(&["acme", "globex"]).unwrap()),
                expires_at: None,
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot create a key with role 'admin': it holds role:write, audit:read, audit:verify, \
             audit:export, operator:read, operator:write, grant:read, grant:revoke which you lack; it covers tenant(s) globex \
             outside your scope"
        );
        let ok = within(
            &km,
            "x",
            &Reach {
                permissions: BuiltinRole::Reader.permissions(),
                tenants: Some(&TenantScope::parse(&["acme"]).unwrap()),
                expires_at: Some(None),
            },
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn expiry_cannot_outlive_the_creator() {
        let p = principal(BuiltinRole::Admin, &["*"], Some(t(10)));
        let reach = |e| Reach {
            permissions: PermissionSet::EMPTY,
            tenants: None,
            expires_at: Some(e),
        };
        assert!(within(&p, "x", &reach(Some(t(9)))).is_ok());
        assert!(within(&p, "x", &reach(Some(t(11)))).is_err());
        assert!(within(&p, "x", &reach(None)).is_err());
        // The default lifetime is shortened to the creator's, not refused.
        assert_eq!(
            resolve_expiry(&p, ExpiryRequest::Default, t(1)).unwrap(),
            Some(t(10))
        );
        assert!(resolve_expiry(&p, ExpiryRequest::At(t(1)), t(2)).is_err());
        let forever = principal(BuiltinRole::Admin, &["*"], None);
        assert_eq!(
            resolve_expiry(&forever, ExpiryRequest::Default, t(1)).unwrap(),
            Some(t(1) + chrono::Duration::days(90))
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::domain::permission::Permission;
    use crate::domain::principal::Actor;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const TENANTS: [&str; 4] = ["a", "b", "c", "d"];

    fn perms(bits: u16) -> PermissionSet {
        Permission::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| p)
            .collect()
    }

    fn scope(bits: u8, all: bool) -> TenantScope {
        let names: Vec<&str> = TENANTS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect();
        if all || names.is_empty() {
            TenantScope::All
        } else {
            TenantScope::parse(&names).unwrap()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn expiry_request(kind: u8, days: i64) -> ExpiryRequest {
        match kind % 3 {
            0 => ExpiryRequest::Default,
            1 => ExpiryRequest::Never,
            _ => ExpiryRequest::At(now() + chrono::Duration::days(days)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever is asked, a key that gets minted never exceeds its minter, and a request
        /// that stays within the minter is never refused.
        #[test]
        fn no_minted_key_exceeds_its_minter(
            minter_bits in 0u16..512, minter_tenants in 0u8..16, minter_all in any::<bool>(),
            minter_days in proptest::option::of(1i64..400),
            child_bits in 0u16..512, child_tenants in 0u8..16, child_all in any::<bool>(),
            kind in 0u8..3, child_days in 1i64..400,
        ) {
            let minter = Principal::new(
                Actor::Key { id: "key_m".into(), preview: "kw_m".into(), name: "m".into() },
                "custom".into(),
                perms(minter_bits),
                scope(minter_tenants, minter_all),
                minter_days.map(|d| now() + chrono::Duration::days(d)),
            );
            let child_perms = perms(child_bits);
            let child_scope = scope(child_tenants, child_all);
            let decision = resolve_expiry(&minter, expiry_request(kind, child_days), now()).and_then(|expires| {
                within(&minter, "mint", &Reach {
                    permissions: child_perms,
                    tenants: Some(&child_scope),
                    expires_at: Some(expires),
                })
                .map(|()| expires)
            });
            let fits_perms = child_perms.is_subset_of(minter.permissions());
            let fits_tenants = child_scope.is_within(minter.tenants());
            match decision {
                Ok(expires) => {
                    prop_assert!(fits_perms, "minted permissions beyond the minter");
                    prop_assert!(fits_tenants, "minted tenants beyond the minter");
                    if let Some(limit) = minter.expires_at() {
                        prop_assert!(expires.is_some_and(|e| e <= limit), "minted key outlives its minter");
                    }
                }
                Err(DomainError::Exceeds(e)) => {
                    prop_assert_eq!(e.missing_permissions.is_empty(), fits_perms);
                    prop_assert_eq!(e.missing_tenants.is_empty(), fits_tenants);
                    prop_assert!(!fits_perms || !fits_tenants || e.expiry.is_some(), "refused without a reason");
                }
                Err(other) => prop_assert!(false, "unexpected refusal: {other}"),
            }
        }
    }
}
