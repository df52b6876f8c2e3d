//! Per-key failure counts, shared by the per-item rate limiters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::Key;

/// How many times each key failed since it was last forgotten.
pub(super) struct Failures<K> {
    counts: Mutex<HashMap<K, usize, RandomState>>,
    /// Number of tracked keys, so that forgetting untracked keys (the common case) takes no lock.
    tracked: AtomicUsize,
}

impl<K: Key> Failures<K> {
    pub(super) fn new() -> Self {
        Self {
            counts: Mutex::new(HashMap::default()),
            tracked: AtomicUsize::new(0),
        }
    }

    /// Counts one more failure of `item`; returns how many it has now (1 for the first).
    pub(super) fn record(&self, item: &K) -> usize {
        let mut counts = self.counts.lock();
        let count = match counts.get_mut(item) {
            Some(count) => count,
            None => {
                self.tracked.fetch_add(1, Ordering::Relaxed);
                counts.entry(item.clone()).or_insert(0)
            }
        };
        *count = count.saturating_add(1);
        *count
    }

    /// Failures of `item` so far.
    pub(super) fn get(&self, item: &K) -> usize {
        self.counts.lock().get(item).copied().unwrap_or(0)
    }

    /// Forgets `item`'s failures.
    pub(super) fn forget(&self, item: &K) {
        // A `record` for this key that happened before (through the queue) is visible here.
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.counts.lock().remove(item).is_some() {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Number of keys with failures.
    pub(super) fn len(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }
}
