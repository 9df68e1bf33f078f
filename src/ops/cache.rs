//! A small time-bounded cache on the app clock. It keeps the hot path off the database (key
//! verification, lock state) while bounding staleness: an entry older than `ttl` is never
//! used, so a change made on another replica is seen within `ttl` (at most 1 s in keyward).
//! Changes made on this replica clear the cache at once.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (V, DateTime<Utc>)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A `ttl` of zero disables caching.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The value stored for `key` within the last `ttl` (by `now`).
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: DateTime<Utc>) -> Option<V>
    where
        K: Borrow<Q>,
    {
        if self.ttl <= Duration::zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| *at <= now && now - *at < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V, now: DateTime<Utc>) {
        if self.ttl <= Duration::zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: when full, start over (entries are cheap to refetch).
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (value, now));
    }

    /// Forgets everything (after a local change that may affect any entry).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn entries_expire_after_the_ttl_and_capacity_is_bounded() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let c: TtlCache<String, i32> = TtlCache::new(Duration::seconds(1), 2);
        c.put("a".to_owned(), 1, t0);
        assert_eq!(c.get("a", t0 + Duration::milliseconds(999)), Some(1));
        assert_eq!(
            c.get("a", t0 + Duration::seconds(1)),
            None,
            "stale at exactly the bound"
        );
        assert_eq!(
            c.get("a", t0 - Duration::seconds(1)),
            None,
            "a clock set back never serves"
        );
        c.put("b".to_owned(), 2, t0);
        c.put("c".to_owned(), 3, t0);
        assert_eq!(c.get("a", t0), None, "full: started over");
        assert_eq!(c.get("c", t0), Some(3));
        let off: TtlCache<String, i32> = TtlCache::new(Duration::zero(), 10);
        off.put("a".to_owned(), 1, t0);
        assert_eq!(off.get("a", t0), None);
    }
}
