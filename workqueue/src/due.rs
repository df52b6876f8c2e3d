//! Min-heap entries for keys waiting for their ready time.

use std::cmp::Ordering;
use std::time::Duration;

use tokio::time::Instant;

/// A key that becomes ready at `ready_at`; ordered so that a `BinaryHeap` pops the earliest
/// first, and keys due at the same instant in the order they were added (`seq`).
#[derive(Debug)]
pub(crate) struct Due<K> {
    pub(crate) ready_at: Instant,
    pub(crate) seq: u64,
    pub(crate) key: K,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Due<K> {}

impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the max-heap pops the smallest (ready_at, seq).
        (other.ready_at, other.seq).cmp(&(self.ready_at, self.seq))
    }
}

/// `now + delay`, saturating to a far future (30 years) instead of overflowing.
pub(crate) fn deadline(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(delay.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use super::*;

    #[test]
    fn heap_pops_earliest_then_fifo() {
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        heap.push(Due {
            ready_at: now + Duration::from_secs(2),
            seq: 0,
            key: "late",
        });
        heap.push(Due {
            ready_at: now + Duration::from_secs(1),
            seq: 2,
            key: "second",
        });
        heap.push(Due {
            ready_at: now + Duration::from_secs(1),
            seq: 1,
            key: "first",
        });
        let order: Vec<_> = std::iter::from_fn(|| heap.pop().map(|due| due.key)).collect();
        assert_eq!(order, ["first", "second", "late"]);
    }

    #[test]
    fn deadline_saturates() {
        let now = Instant::now();
        assert!(deadline(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(
            deadline(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
    }
}
