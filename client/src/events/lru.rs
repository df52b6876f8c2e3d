//! A small least-recently-used map, the role `groupcache/lru` plays in client-go's
//! `events_cache.go`: it bounds the correlator's memory however many objects emit events.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map holding at most `capacity` entries; inserting into a full map evicts the entry used
/// least recently (a `get_mut` or `insert` counts as a use).
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    by_use: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The value for `key`, marked as just used.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let stamp = self.tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.by_use.remove(used);
        *used = stamp;
        self.by_use.insert(stamp, key.clone());
        Some(value)
    }

    /// The value for `key`, without marking it as used.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Inserts (or replaces) `key`; returns the entry evicted to make room, if any.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let stamp = self.tick();
        if let Some((_, used)) = self.entries.insert(key.clone(), (value, stamp)) {
            self.by_use.remove(&used);
            self.by_use.insert(stamp, key);
            return None;
        }
        self.by_use.insert(stamp, key);
        if self.entries.len() <= self.capacity {
            return None;
        }
        let (_, oldest) = self.by_use.pop_first()?;
        let (value, _) = self.entries.remove(&oldest)?;
        Some((oldest, value))
    }

    /// Keeps only the entries for which `keep` returns true (without marking any as used).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let by_use = &mut self.by_use;
        self.entries.retain(|k, (v, used)| {
            let kept = keep(k, v);
            if !kept {
                by_use.remove(used);
            }
            kept
        });
    }

    /// Every entry, in no particular order, without marking any as used.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, (v, _))| (k, v))
    }

    /// How many entries there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_none());
        assert!(lru.insert("b", 2).is_none());
        // Using "a" makes "b" the oldest.
        assert_eq!(lru.get_mut(&"a").copied(), Some(1));
        assert_eq!(lru.insert("c", 3), Some(("b", 2)));
        assert_eq!(lru.len(), 2);
        assert!(lru.peek(&"b").is_none());
        // Replacing an entry never evicts.
        assert!(lru.insert("a", 10).is_none());
        assert_eq!(lru.insert("d", 4), Some(("c", 3)));
        assert_eq!(lru.peek(&"a"), Some(&10));
    }

    #[test]
    fn retain_keeps_the_order_consistent() {
        let mut lru = Lru::new(3);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.insert(k, v);
        }
        lru.retain(|_, v| *v != 1 && *v != 2);
        assert_eq!(lru.len(), 1);
        lru.insert("d", 4);
        lru.insert("e", 5);
        // "c" is now the oldest.
        assert_eq!(lru.insert("f", 6), Some(("c", 3)));
        for (_, v) in lru.iter_mut() {
            *v += 1;
        }
        assert_eq!(lru.peek(&"f"), Some(&7));
    }
}
