//! A grant's ceiling: the most an OAuth grant may ever do, fixed at consent. What a token
//! actually allows is the ceiling intersected with its signer's rights *now*, so narrowing
//! the operator who consented narrows every grant at once, and widening them later widens
//! nothing they did not consent to.

use crate::domain::permission::PermissionSet;
use crate::domain::tenant::TenantScope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    pub permissions: PermissionSet,
    pub tenants: TenantScope,
}

/// Whether the signer holds everything the ceiling names (required at consent: nobody
/// delegates more than they have).
pub fn within(
    ceiling: &Ceiling,
    signer_permissions: PermissionSet,
    signer_tenants: &TenantScope,
) -> bool {
    ceiling.permissions.is_subset_of(signer_permissions)
        && ceiling.tenants.is_within(signer_tenants)
}

/// What a grant allows now: the ceiling intersected with the signer's current rights.
/// `None` when they share no tenant, so the grant stands for nothing.
pub fn effective(
    ceiling: &Ceiling,
    signer_permissions: PermissionSet,
    signer_tenants: &TenantScope,
) -> Option<(PermissionSet, TenantScope)> {
    let tenants = ceiling.tenants.intersect(signer_tenants)?;
    Some((ceiling.permissions.intersect(signer_permissions), tenants))
}

/// The permissions preselected on the consent page: what the client asked for that the signer
/// has (possibly nothing: never more than was asked); everything the signer has only when the
/// client asked for nothing keyward knows (clients often send only `offline_access`).
pub fn default_for(requested: PermissionSet, signer_permissions: PermissionSet) -> PermissionSet {
    if requested.is_empty() {
        signer_permissions
    } else {
        requested.intersect(signer_permissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: &str) -> PermissionSet {
        s.parse().unwrap()
    }

    fn only(names: &[&str]) -> TenantScope {
        TenantScope::parse(names).unwrap()
    }

    fn ceiling(p: &str, t: TenantScope) -> Ceiling {
        Ceiling {
            permissions: perms(p),
            tenants: t,
        }
    }

    #[test]
    fn within_needs_both_permissions_and_tenants() {
        let c = ceiling("key:read audit:read", only(&["a"]));
        assert!(within(
            &c,
            perms("key:read audit:read role:read"),
            &only(&["a", "b"])
        ));
        assert!(within(&c, PermissionSet::all(), &TenantScope::All));
        assert!(!within(&c, perms("key:read"), &TenantScope::All));
        assert!(!within(&c, PermissionSet::all(), &only(&["b"])));
        let all = ceiling("key:read", TenantScope::All);
        assert!(!within(&all, PermissionSet::all(), &only(&["a"])));
    }

    #[test]
    fn effective_is_the_intersection() {
        let c = ceiling("key:read key:create", TenantScope::All);
        assert_eq!(
            effective(&c, perms("key:read audit:read"), &only(&["a"])),
            Some((perms("key:read"), only(&["a"])))
        );
        let c = ceiling("key:read", only(&["a", "b"]));
        assert_eq!(
            effective(&c, PermissionSet::all(), &only(&["b", "c"])),
            Some((perms("key:read"), only(&["b"])))
        );
        assert_eq!(effective(&c, PermissionSet::all(), &only(&["c"])), None);
        assert_eq!(
            effective(&c, PermissionSet::all(), &TenantScope::All),
            Some((perms("key:read"), only(&["a", "b"])))
        );
    }

    #[test]
    fn a_widened_signer_never_widens_and_a_narrowed_one_narrows_at_once() {
        let c = ceiling("key:read audit:read", only(&["a"]));
        let at_consent = effective(&c, perms("key:read audit:read"), &only(&["a"]));
        let widened = effective(&c, PermissionSet::all(), &TenantScope::All);
        assert_eq!(widened, at_consent);
        assert_eq!(
            effective(&c, perms("key:read"), &only(&["a"])),
            Some((perms("key:read"), only(&["a"])))
        );
        assert_eq!(
            effective(&c, PermissionSet::EMPTY, &only(&["a"])),
            Some((PermissionSet::EMPTY, only(&["a"])))
        );
        assert_eq!(effective(&c, PermissionSet::all(), &only(&["b"])), None);
    }

    #[test]
    fn default_is_requested_and_held_else_everything_held() {
        let signer = perms("key:read key:create audit:read");
        assert_eq!(
            default_for(perms("key:read role:write"), signer),
            perms("key:read")
        );
        assert_eq!(default_for(PermissionSet::EMPTY, signer), signer);
        assert_eq!(
            default_for(perms("role:write"), signer),
            PermissionSet::EMPTY,
            "asked only for what the signer lacks: nothing, never the whole role"
        );
        assert_eq!(default_for(PermissionSet::all(), signer), signer);
    }
}
