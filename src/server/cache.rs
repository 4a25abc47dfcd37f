//! A small time-to-live cache for authentication and authorization answers, with the clock
//! passed in (tests inject it) and a bound on entries so hostile callers cannot grow it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Answers kept until their own expiry.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, (Instant, V)>,
    max: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `max` entries.
    pub fn new(max: usize) -> Self {
        TtlCache {
            entries: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The answer for `key` if it has not expired at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((until, v)) if now < *until => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `ttl` from `now` (a zero TTL keeps nothing). When full, expired
    /// entries go first, then the one closest to expiry.
    pub fn put(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (until, _)| now < *until);
            if self.entries.len() >= self.max {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (now + ttl, value));
    }

    /// Entries held (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_after_their_ttl() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(8);
        c.put("a", true, Duration::from_secs(300), t0);
        c.put("b", false, Duration::from_secs(30), t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(299)), Some(true));
        assert_eq!(c.get(&"b", t0 + Duration::from_secs(29)), Some(false));
        assert_eq!(c.get(&"b", t0 + Duration::from_secs(30)), None);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(300)), None);
        c.put("z", true, Duration::ZERO, t0);
        assert_eq!(c.get(&"z", t0), None);
    }

    #[test]
    fn size_is_bounded() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(2);
        c.put(1, 1, Duration::from_secs(10), t0);
        c.put(2, 2, Duration::from_secs(20), t0);
        c.put(3, 3, Duration::from_secs(30), t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&1, t0), None, "the entry closest to expiry made room");
        assert_eq!(c.get(&3, t0), Some(3));
    }
}
