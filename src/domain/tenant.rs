//! Tenants: every key (and every audit event) is scoped to a set of tenants, or to all.

use std::collections::BTreeSet;

use super::error::DomainError;

/// The wire spelling of "every tenant".
pub const ALL_TENANTS: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantScope {
    All,
    /// A non-empty set of validated tenant names.
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// Parses the wire form: `["*"]` for all tenants, otherwise a non-empty list of names.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, DomainError> {
        if items.is_empty() {
            return Err(DomainError::Invalid(
                "tenants must not be empty: list tenant names, or [\"*\"] for all tenants".into(),
            ));
        }
        if items.iter().any(|t| t.as_ref() == ALL_TENANTS) {
            if items.len() > 1 {
                return Err(DomainError::Invalid(
                    "'*' (all tenants) cannot be combined with named tenants".into(),
                ));
            }
            return Ok(TenantScope::All);
        }
        if items.len() > 64 {
            return Err(DomainError::Invalid("at most 64 tenants per scope".into()));
        }
        let mut set = BTreeSet::new();
        for t in items {
            set.insert(validate_tenant(t.as_ref())?);
        }
        Ok(TenantScope::Only(set))
    }

    /// Whether every tenant in `self` is also in `other`.
    pub fn is_within(&self, other: &TenantScope) -> bool {
        self.outside(other).is_empty()
    }

    /// Tenants of `self` that `other` does not cover ("*" when `self` is all and `other` is not).
    pub fn outside(&self, other: &TenantScope) -> Vec<String> {
        match (self, other) {
            (_, TenantScope::All) => Vec::new(),
            (TenantScope::All, TenantScope::Only(_)) => vec![ALL_TENANTS.to_owned()],
            (TenantScope::Only(mine), TenantScope::Only(theirs)) => {
                mine.difference(theirs).cloned().collect()
            }
        }
    }

    /// The wire form: `["*"]` or the sorted names.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            TenantScope::All => vec![ALL_TENANTS.to_owned()],
            TenantScope::Only(set) => set.iter().cloned().collect(),
        }
    }

    /// Tenants in both scopes; `None` when they share none (a scope is never empty).
    pub fn intersect(&self, other: &TenantScope) -> Option<TenantScope> {
        match (self, other) {
            (TenantScope::All, x) | (x, TenantScope::All) => Some(x.clone()),
            (TenantScope::Only(a), TenantScope::Only(b)) => {
                let both: BTreeSet<String> = a.intersection(b).cloned().collect();
                (!both.is_empty()).then_some(TenantScope::Only(both))
            }
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, TenantScope::All)
    }
}

/// Tenant names are identifiers, so they are safe in any log line, URL or SQL parameter.
pub fn validate_tenant(name: &str) -> Result<String, DomainError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(name.to_owned())
    } else {
        Err(DomainError::InvalidTenant(name.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> TenantScope {
        TenantScope::parse(names).unwrap()
    }

    #[test]
    fn parses_all_and_named_scopes() {
        assert_eq!(TenantScope::parse(&["*"]).unwrap(), TenantScope::All);
        assert_eq!(only(&["b", "a", "a"]).to_vec(), vec!["a", "b"]);
        assert!(TenantScope::parse::<&str>(&[]).is_err());
        assert!(TenantScope::parse(&["*", "a"]).is_err());
        for bad in [
            "",
            "A",
            "-a",
            "a b",
            "a'; DROP TABLE keys;--",
            &"x".repeat(65),
        ] {
            assert!(TenantScope::parse(&[bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn containment_names_what_is_outside() {
        assert!(only(&["a"]).is_within(&only(&["a", "b"])));
        assert!(only(&["a"]).is_within(&TenantScope::All));
        assert_eq!(only(&["a", "c"]).outside(&only(&["a", "b"])), vec!["c"]);
        assert_eq!(TenantScope::All.outside(&only(&["a"])), vec!["*"]);
        assert!(TenantScope::All.is_within(&TenantScope::All));
    }

    #[test]
    fn intersection_is_shared_tenants_or_none() {
        let all = TenantScope::All;
        assert_eq!(all.intersect(&all), Some(TenantScope::All));
        assert_eq!(all.intersect(&only(&["a"])), Some(only(&["a"])));
        assert_eq!(only(&["a"]).intersect(&all), Some(only(&["a"])));
        assert_eq!(
            only(&["a", "b"]).intersect(&only(&["b", "c"])),
            Some(only(&["b"]))
        );
        assert_eq!(only(&["a"]).intersect(&only(&["b"])), None);
    }
}
