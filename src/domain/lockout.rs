//! Brute-force protection: too many failed authentications from one client address within a
//! window lock that address out for a while, and repeated failed sign-ins for one username
//! slow down attempts for that name (from addresses it has not signed in from lately). The
//! rule's numbers live here; storage applies them atomically so parallel failures (and
//! replicas) cannot slip past the threshold.

use std::net::IpAddr;

use chrono::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that trigger the lock (the next failure is refused).
    pub threshold: i64,
    pub window: Duration,
    /// How long the address stays locked.
    pub duration: Duration,
    pub names: NameThrottle,
}

impl Default for LockoutPolicy {
    /// 20 failures in 60 s lock the address for 60 s.
    fn default() -> Self {
        LockoutPolicy {
            threshold: 20,
            window: Duration::seconds(60),
            duration: Duration::seconds(60),
            names: NameThrottle::default(),
        }
    }
}

/// The per-username delay: after `free` failed sign-ins for one typed name, the next attempt
/// for that name waits `base`, doubling with each further failure up to `cap`. A delay, never
/// a lockout: the cap is seconds, so an attacker cannot shut a person out, and it does not
/// apply from an address where that person signed in within `known_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameThrottle {
    pub free: i64,
    pub base: Duration,
    pub cap: Duration,
    /// Failures older than this are forgotten.
    pub reset_after: Duration,
    pub known_for: Duration,
}

impl Default for NameThrottle {
    fn default() -> Self {
        NameThrottle {
            free: 3,
            base: Duration::milliseconds(500),
            cap: Duration::seconds(5),
            reset_after: Duration::minutes(15),
            known_for: Duration::days(30),
        }
    }
}

impl NameThrottle {
    /// How long the next attempt waits after `failures` consecutive failures.
    pub fn delay_after(&self, failures: i64) -> Duration {
        let over = failures - self.free;
        if over < 0 {
            return Duration::zero();
        }
        let factor = 1i32 << over.clamp(0, 20);
        (self.base * factor).min(self.cap)
    }
}

/// The address failures are counted under: an IPv4 address as it is, an IPv6 address by its
/// /64 (one subscriber's whole prefix, which they can rotate through at will).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_v4_as_is() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:eeee:dddd:cccc".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        assert_eq!(address_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(
            address_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
    }

    #[test]
    fn the_name_delay_grows_and_stays_capped() {
        let t = NameThrottle::default();
        let ms = |n| t.delay_after(n).num_milliseconds();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6)],
            [0, 0, 500, 1000, 2000, 4000]
        );
        assert_eq!(ms(7), 5000);
        assert_eq!(ms(1_000_000), 5000);
    }
}
