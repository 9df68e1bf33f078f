//! A small time-bounded cache on the app clock. It keeps the hot path off the database (key
//! verification, lock state) while bounding staleness: an entry older than `ttl` is never
//! used, so a change made on another replica is seen within `ttl` (at most 1 s in keyward).
//! Changes made on this replica clear the cache at once, and a value read from the database
//! before such a clear is never stored after it (a generation counter), so "at once" holds
//! even for a verification racing the change.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, (V, DateTime<Utc>)>,
    /// Bumped by every `clear`.
    generation: u64,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A `ttl` of zero disables caching.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            ttl,
            capacity,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                generation: 0,
            }),
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
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(key)
            .filter(|(_, at)| *at <= now && now - *at < self.ttl)
            .map(|(v, _)| v.clone())
    }

    /// The generation to pass to `put_read`: take it before reading the database.
    pub fn generation(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Stores a value known to be current (just written). Reads racing it are dropped.
    pub fn put(&self, key: K, value: V, now: DateTime<Utc>) {
        self.store(key, value, now, None);
    }

    /// Stores a value read from the database while the cache was at `generation`; dropped if
    /// the cache was cleared since, because the value may predate the change that cleared it.
    pub fn put_read(&self, key: K, value: V, now: DateTime<Utc>, generation: u64) {
        self.store(key, value, now, Some(generation));
    }

    fn store(&self, key: K, value: V, now: DateTime<Utc>, read_at: Option<u64>) {
        if self.ttl <= Duration::zero() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match read_at {
            Some(g) if g != inner.generation => return,
            Some(_) => {}
            None => inner.generation += 1,
        }
        // Bounded: when full, start over (entries are cheap to refetch).
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            inner.entries.clear();
        }
        inner.entries.insert(key, (value, now));
    }

    /// Forgets everything (after a local change that may affect any entry).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.clear();
        inner.generation += 1;
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
        // A value read before a clear is not stored after it.
        let g = c.generation();
        c.clear();
        c.put_read("d".to_owned(), 4, t0, g);
        assert_eq!(c.get("d", t0), None, "read before the clear: dropped");
        c.put_read("d".to_owned(), 5, t0, c.generation());
        assert_eq!(c.get("d", t0), Some(5));
        let off: TtlCache<String, i32> = TtlCache::new(Duration::zero(), 10);
        off.put("a".to_owned(), 1, t0);
        assert_eq!(off.get("a", t0), None);
    }
}
