//! Brute-force protection: too many failed authentications from one client IP within a
//! window lock that IP out for a while. The rule's numbers live here; storage applies them
//! atomically so parallel failures (and replicas) cannot slip past the threshold.

use chrono::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that trigger the lock (the next failure is refused).
    pub threshold: i64,
    pub window: Duration,
    /// How long the IP stays locked.
    pub duration: Duration,
}

impl Default for LockoutPolicy {
    /// 20 failures in 60 s lock the IP for 60 s.
    fn default() -> Self {
        LockoutPolicy {
            threshold: 20,
            window: Duration::seconds(60),
            duration: Duration::seconds(60),
        }
    }
}
