//! OAuth scopes are keyward permission names. Unknown scope names (`offline_access`, `openid`,
//! a typo) are dropped, never an error: clients send scopes they learned elsewhere, and what
//! a grant may do is decided by its ceiling, not by the request.

use crate::domain::permission::{Permission, PermissionSet};

/// The known permissions named in a `scope` parameter, split on any whitespace.
pub fn parse(scope: Option<&str>) -> PermissionSet {
    scope
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(Permission::parse)
        .collect()
}

/// Space-separated permission names in catalogue order (the `scope` of a token response).
pub fn format(set: PermissionSet) -> String {
    set.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_known_names_and_drops_the_rest() {
        assert_eq!(parse(None), PermissionSet::EMPTY);
        assert_eq!(parse(Some("")), PermissionSet::EMPTY);
        // Claude's form: a leading space and only a standard scope.
        assert_eq!(parse(Some(" offline_access")), PermissionSet::EMPTY);
        let set = parse(Some(
            "audit:read\toffline_access  key:read\nKEY:CREATE key:explode",
        ));
        assert_eq!(
            set.to_vec(),
            vec![Permission::KeyRead, Permission::AuditRead]
        );
    }

    #[test]
    fn format_uses_catalogue_order_and_round_trips() {
        let set = parse(Some("audit:read key:read"));
        assert_eq!(format(set), "key:read audit:read");
        assert_eq!(format(PermissionSet::EMPTY), "");
        let all = PermissionSet::all();
        assert_eq!(parse(Some(&format(all))), all);
    }
}
