//! Per-key state of the basic queue and of the waiting keys' heap (`due.rs`): a slab of entries
//! indexed by a compact hash table.
//!
//! With many distinct keys, a work queue is bound by cache misses: every key is looked up when
//! added, handed out and marked done, far apart in time. Here the entries live in a slab whose
//! slots are reused in FIFO order, so they are touched roughly in queue order, and the hash table
//! holds only 4-byte slot numbers (with each key's hash kept in its slot, so growing the table
//! never reads a key). The queue itself records each key's slot, so handing a key out needs no
//! hashing or probing at all; and the hash of a key is computed by the caller before it takes the
//! queue lock.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

/// Slot number of an entry.
pub(crate) type Slot = u32;

/// Keys with a value each, addressable by key (with its hash) or by slot.
#[derive(Debug)]
pub(crate) struct Entries<K, V> {
    table: HashTable<Slot>,
    slots: Vec<Stored<K, V>>,
    /// Free slots, reused oldest first to keep the slab walked in order.
    free: VecDeque<Slot>,
}

#[derive(Debug)]
struct Stored<K, V> {
    /// `None` while the slot is free.
    key: Option<K>,
    hash: u64,
    value: V,
}

/// Hashes keys; shared outside the queue lock so that hashing happens before locking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hasher(RandomState);

impl Hasher {
    pub(crate) fn hash<K: std::hash::Hash>(&self, key: &K) -> u64 {
        self.0.hash_one(key)
    }
}

impl<K, V> Entries<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free: VecDeque::new(),
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

impl<K: Eq, V> Entries<K, V> {
    /// The slot of `key` (whose hash is `hash`), if present.
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<Slot> {
        let slots = &self.slots;
        self.table
            .find(hash, |&slot| slots[slot as usize].key.as_ref() == Some(key))
            .copied()
    }

    /// The slot of `key`, inserting it with `value` if absent; `true` if it was inserted.
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        key: K,
        value: impl FnOnce() -> V,
    ) -> (Slot, bool) {
        let Self { table, slots, free } = self;
        let entry = table.entry(
            hash,
            |&slot| slots[slot as usize].key.as_ref() == Some(&key),
            |&slot| slots[slot as usize].hash,
        );
        match entry {
            TableEntry::Occupied(occupied) => (*occupied.get(), false),
            TableEntry::Vacant(vacant) => {
                let stored = Stored {
                    key: Some(key),
                    hash,
                    value: value(),
                };
                let slot = match free.pop_front() {
                    Some(slot) => {
                        slots[slot as usize] = stored;
                        slot
                    }
                    None => {
                        let slot = Slot::try_from(slots.len()).unwrap_or(Slot::MAX);
                        slots.push(stored);
                        slot
                    }
                };
                vacant.insert(slot);
                (slot, true)
            }
        }
    }

    /// The key in `slot`.
    pub(crate) fn key(&self, slot: Slot) -> Option<&K> {
        self.slots.get(slot as usize)?.key.as_ref()
    }

    /// The value in `slot` (of a present entry).
    pub(crate) fn get(&self, slot: Slot) -> Option<&V> {
        let stored = self.slots.get(slot as usize)?;
        stored.key.as_ref()?;
        Some(&stored.value)
    }

    /// The value in `slot` (of a present entry), to change.
    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut V> {
        let stored = self.slots.get_mut(slot as usize)?;
        stored.key.as_ref()?;
        Some(&mut stored.value)
    }

    /// Removes the entry in `slot`: its key is dropped and the slot freed.
    pub(crate) fn remove(&mut self, slot: Slot) {
        drop(self.take(slot));
    }

    /// Removes the entry in `slot` and returns its key; the slot is freed.
    pub(crate) fn take(&mut self, slot: Slot) -> Option<K> {
        let stored = self.slots.get_mut(slot as usize)?;
        let key = stored.key.take()?;
        // Probe with the stored hash, comparing slot numbers: no key is read.
        if let Ok(entry) = self.table.find_entry(stored.hash, |&other| other == slot) {
            entry.remove();
        }
        self.free.push_back(slot);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_and_reuse() {
        let hasher = Hasher::default();
        let mut entries: Entries<String, u8> = Entries::new();
        let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            let (slot, inserted) = entries.find_or_insert(hasher.hash(key), key.clone(), || 1);
            assert!(inserted);
            assert_eq!(slot as usize, i);
        }
        assert_eq!(entries.len(), 1000);
        let (slot, inserted) = entries.find_or_insert(hasher.hash(&keys[7]), keys[7].clone(), || 9);
        assert!(!inserted);
        assert_eq!(slot, 7);
        assert_eq!(entries.find(hasher.hash(&keys[7]), &keys[7]), Some(7));
        assert_eq!(entries.key(7), Some(&keys[7]));
        *entries.get_mut(7).unwrap() = 2;
        assert_eq!(entries.get(7), Some(&2));

        entries.remove(7);
        entries.remove(7); // twice: no-op
        assert_eq!(entries.take(3), Some(keys[3].clone()));
        assert_eq!(entries.take(3), None);
        assert_eq!(entries.len(), 998);
        assert_eq!(entries.find(hasher.hash(&keys[7]), &keys[7]), None);
        assert!(entries.get_mut(7).is_none());
        assert!(entries.key(7).is_none());

        // Freed slots are reused oldest first.
        let new = "new".to_owned();
        assert_eq!(
            entries.find_or_insert(hasher.hash(&new), new.clone(), || 0),
            (7, true)
        );
        let other = "other".to_owned();
        assert_eq!(
            entries.find_or_insert(hasher.hash(&other), other, || 0),
            (3, true)
        );
        assert_eq!(*entries.get_mut(7).unwrap(), 0);
        for key in &keys {
            if key != "key-7" && key != "key-3" {
                assert!(entries.find(hasher.hash(key), key).is_some(), "{key}");
            }
        }
    }
}
