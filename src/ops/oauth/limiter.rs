//! A per-address fixed-window counter for the public OAuth endpoints, bounded in memory: at
//! most `MAX_ADDRESSES` windows are kept, and a full table forgets the oldest first.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

const MAX_ADDRESSES: usize = 10_000;

pub struct Limiter {
    per_window: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (DateTime<Utc>, u32)>>,
}

impl Limiter {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Limiter {
            per_window,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one hit from `address`; false when it is over the limit for this window.
    pub fn hit(&self, address: &str, now: DateTime<Utc>) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_ADDRESSES && !w.contains_key(address) {
            let window = self.window;
            w.retain(|_, (start, _)| now - *start < window);
            if w.len() >= MAX_ADDRESSES
                && let Some(oldest) = w
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
            {
                w.remove(&oldest);
            }
        }
        let entry = w.entry(address.to_owned()).or_insert((now, 0));
        if now - entry.0 >= self.window || now < entry.0 {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_per_window() {
        let l = Limiter::new(3, Duration::minutes(1));
        let t = DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        assert!((0..3).all(|_| l.hit("a", t)));
        assert!(!l.hit("a", t));
        assert!(l.hit("b", t), "another address has its own window");
        assert!(
            l.hit("a", t + Duration::minutes(1)),
            "a new window starts afresh"
        );
    }
}
