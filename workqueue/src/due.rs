//! The keys waiting for their ready time: indexed min-heaps with exactly one entry per key.
//!
//! Each heap node names its key's slot, and each slot records its node's position in the heap, so
//! a key's ready time can be moved earlier in place (client-go's `heap.Fix`) or the key removed,
//! in O(log n): the heap never holds more entries than there are waiting keys, however often a
//! key's ready time changes.
//!
//! Two front ends share the heap: [`DueHeap`] finds keys by hashing them (the delaying queue has
//! no other index of its waiting keys), and [`SlotHeap`] is addressed by the slot its insertion
//! returned (the priority queue keeps that slot in its own per-key item, so moving or removing a
//! waiting key costs no second hash lookup).

use std::time::Duration;

use tokio::time::Instant;

use crate::entries::{Entries, Hasher, Slot};

// === Heap: the shared min-heap ===

/// Where a heap records the position of each slot's node.
trait Positions {
    fn set(&mut self, slot: Slot, position: usize);
    fn get(&self, slot: Slot) -> Option<usize>;
}

/// A min-heap of nodes on `(ready_at, seq)`; every move of a node is recorded in a [`Positions`].
#[derive(Debug, Default)]
struct Heap {
    nodes: Vec<Node>,
    /// Order of scheduling, for ties: keys due at the same instant in the order they were
    /// scheduled (or last moved earlier).
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    ready_at: Instant,
    seq: u64,
    slot: Slot,
}

impl Node {
    fn before(&self, other: &Self) -> bool {
        (self.ready_at, self.seq) < (other.ready_at, other.seq)
    }
}

impl Heap {
    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    fn peek(&self) -> Option<Instant> {
        self.nodes.first().map(|node| node.ready_at)
    }

    /// Adds a node for `slot`, which has none.
    fn push(&mut self, slot: Slot, ready_at: Instant, positions: &mut impl Positions) {
        let seq = self.next_seq();
        let position = self.nodes.len();
        self.nodes.push(Node {
            ready_at,
            seq,
            slot,
        });
        self.sift_up(position, positions);
    }

    /// Moves the node of `slot` to `ready_at` if that is earlier; returns whether it did.
    fn advance(&mut self, slot: Slot, ready_at: Instant, positions: &mut impl Positions) -> bool {
        let Some(position) = positions.get(slot) else {
            return false;
        };
        match self.nodes.get(position) {
            Some(node) if node.slot == slot && ready_at < node.ready_at => {}
            _ => return false,
        }
        // A new place in line among keys due at the same instant, as a fresh schedule.
        let seq = self.next_seq();
        self.nodes[position] = Node {
            ready_at,
            seq,
            slot,
        };
        self.sift_up(position, positions);
        true
    }

    /// Moves the node at `position` towards the root while it is due before its parent.
    fn sift_up(&mut self, mut position: usize, positions: &mut impl Positions) {
        let node = self.nodes[position];
        while position > 0 {
            let parent = (position - 1) / 2;
            let above = self.nodes[parent];
            if !node.before(&above) {
                break;
            }
            self.nodes[position] = above;
            positions.set(above.slot, position);
            position = parent;
        }
        self.nodes[position] = node;
        positions.set(node.slot, position);
    }

    /// Moves the node at `position` towards the leaves while a child is due before it.
    fn sift_down(&mut self, mut position: usize, positions: &mut impl Positions) {
        let node = self.nodes[position];
        let len = self.nodes.len();
        loop {
            let left = 2 * position + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.nodes[right].before(&self.nodes[left]) {
                right
            } else {
                left
            };
            let below = self.nodes[child];
            if !below.before(&node) {
                break;
            }
            self.nodes[position] = below;
            positions.set(below.slot, position);
            position = child;
        }
        self.nodes[position] = node;
        positions.set(node.slot, position);
    }

    /// Removes the node at `position`, keeping the heap order.
    fn remove_at(&mut self, position: usize, positions: &mut impl Positions) -> Option<Node> {
        if position >= self.nodes.len() {
            return None;
        }
        let last = self.nodes.pop()?;
        if position == self.nodes.len() {
            return Some(last);
        }
        let removed = std::mem::replace(&mut self.nodes[position], last);
        if position > 0 && last.before(&self.nodes[(position - 1) / 2]) {
            self.sift_up(position, positions);
        } else {
            self.sift_down(position, positions);
        }
        Some(removed)
    }

    /// Removes the node of `slot`, if it has one.
    fn remove(&mut self, slot: Slot, positions: &mut impl Positions) -> Option<Node> {
        let position = positions.get(slot)?;
        if self.nodes.get(position)?.slot != slot {
            return None;
        }
        self.remove_at(position, positions)
    }

    /// Removes the earliest node if it is due at `now`.
    fn pop_due(&mut self, now: Instant, positions: &mut impl Positions) -> Option<Node> {
        if self.peek()? > now {
            return None;
        }
        self.remove_at(0, positions)
    }
}

// === DueHeap: waiting keys found by hash ===

/// Waiting keys, each once with its ready time, earliest first; found by key.
#[derive(Debug)]
pub(crate) struct DueHeap<K> {
    heap: Heap,
    /// Every waiting key, with the position of its node.
    keys: Entries<K, usize>,
    hasher: Hasher,
}

impl<K: Eq> Positions for Entries<K, usize> {
    fn set(&mut self, slot: Slot, position: usize) {
        if let Some(stored) = self.get_mut(slot) {
            *stored = position;
        }
    }

    fn get(&self, slot: Slot) -> Option<usize> {
        Entries::get(self, slot).copied()
    }
}

impl<K> DueHeap<K> {
    pub(crate) fn new() -> Self {
        Self {
            heap: Heap::default(),
            keys: Entries::new(),
            hasher: Hasher::default(),
        }
    }

    /// Number of waiting keys (and of heap entries).
    pub(crate) fn len(&self) -> usize {
        self.heap.nodes.len()
    }

    /// The earliest ready time.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek()
    }

    /// Removes every waiting key.
    pub(crate) fn clear(&mut self) {
        self.heap = Heap::default();
        self.keys = Entries::new();
    }
}

impl<K: std::hash::Hash + Eq> DueHeap<K> {
    /// Makes `key` wait until `ready_at`, or earlier if it already waits for an earlier time:
    /// the earliest ready time wins. Returns whether `ready_at` is now the key's ready time.
    pub(crate) fn schedule(&mut self, key: K, ready_at: Instant) -> bool {
        let hash = self.hasher.hash(&key);
        let (slot, inserted) = self.keys.find_or_insert(hash, key, || usize::MAX);
        if inserted {
            self.heap.push(slot, ready_at, &mut self.keys);
            true
        } else {
            self.heap.advance(slot, ready_at, &mut self.keys)
        }
    }

    /// Removes and returns the earliest key, with its ready time, if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        let node = self.heap.pop_due(now, &mut self.keys)?;
        let key = self.keys.take(node.slot)?;
        Some((key, node.ready_at))
    }
}

// === SlotHeap: waiting keys addressed by slot ===

/// Waiting keys, each once with its ready time, earliest first; addressed by the slot that
/// [`insert`](Self::insert) returned, which the caller keeps while the key waits.
#[derive(Debug)]
pub(crate) struct SlotHeap<K> {
    heap: Heap,
    slots: Slab<K>,
}

#[derive(Debug)]
struct Slab<K> {
    /// The key and its node's position; `None` while the slot is free.
    entries: Vec<(Option<K>, usize)>,
    free: Vec<Slot>,
}

impl<K> Positions for Slab<K> {
    fn set(&mut self, slot: Slot, position: usize) {
        if let Some(entry) = self.entries.get_mut(slot as usize) {
            entry.1 = position;
        }
    }

    fn get(&self, slot: Slot) -> Option<usize> {
        match self.entries.get(slot as usize)? {
            (Some(_), position) => Some(*position),
            (None, _) => None,
        }
    }
}

impl<K> SlotHeap<K> {
    pub(crate) fn new() -> Self {
        Self {
            heap: Heap::default(),
            slots: Slab {
                entries: Vec::new(),
                free: Vec::new(),
            },
        }
    }

    /// Number of waiting keys (and of heap entries).
    pub(crate) fn len(&self) -> usize {
        self.heap.nodes.len()
    }

    /// The earliest ready time.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek()
    }

    /// Adds `key`, which must not be waiting already, ready at `ready_at`; returns its slot.
    pub(crate) fn insert(&mut self, key: K, ready_at: Instant) -> Slot {
        let slab = &mut self.slots;
        let slot = match slab.free.pop() {
            Some(slot) => {
                slab.entries[slot as usize] = (Some(key), usize::MAX);
                slot
            }
            None => {
                let slot = Slot::try_from(slab.entries.len()).unwrap_or(Slot::MAX);
                slab.entries.push((Some(key), usize::MAX));
                slot
            }
        };
        self.heap.push(slot, ready_at, slab);
        slot
    }

    /// Moves the key in `slot` to `ready_at` if that is earlier; returns whether it did.
    pub(crate) fn advance(&mut self, slot: Slot, ready_at: Instant) -> bool {
        self.heap.advance(slot, ready_at, &mut self.slots)
    }

    /// Removes and returns the key in `slot`, if one waits there.
    pub(crate) fn remove(&mut self, slot: Slot) -> Option<K> {
        self.heap.remove(slot, &mut self.slots)?;
        self.free(slot)
    }

    fn free(&mut self, slot: Slot) -> Option<K> {
        let key = self.slots.entries.get_mut(slot as usize)?.0.take()?;
        self.slots.free.push(slot);
        Some(key)
    }

    /// Removes and returns the earliest key, with its ready time, if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        let node = self.heap.pop_due(now, &mut self.slots)?;
        let key = self.free(node.slot)?;
        Some((key, node.ready_at))
    }

    /// The key waiting in `slot`, with its ready time.
    #[cfg(test)]
    pub(crate) fn get(&self, slot: Slot) -> Option<(&K, Instant)> {
        let node = self.heap.nodes.get(self.slots.get(slot)?)?;
        let key = self.slots.entries.get(slot as usize)?.0.as_ref()?;
        (node.slot == slot).then_some((key, node.ready_at))
    }

    /// Removes and returns every waiting key.
    pub(crate) fn take_all(&mut self) -> Vec<K> {
        let slots = std::mem::replace(self, Self::new()).slots;
        slots
            .entries
            .into_iter()
            .filter_map(|(key, _)| key)
            .collect()
    }
}

/// `now + delay`, saturating to a far future (30 years) instead of overflowing.
pub(crate) fn deadline(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(delay.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    impl Heap {
        /// Panics unless the heap is ordered and every node's slot records its position.
        fn check(&self, positions: &impl Positions) {
            for (position, node) in self.nodes.iter().enumerate() {
                if position > 0 {
                    let parent = &self.nodes[(position - 1) / 2];
                    assert!(!node.before(parent), "heap order at {position}");
                }
                assert_eq!(
                    positions.get(node.slot),
                    Some(position),
                    "position {position}"
                );
            }
        }
    }

    impl<K: std::hash::Hash + Eq + Clone> DueHeap<K> {
        /// Checks the heap; returns each waiting key's ready time.
        fn check(&self) -> HashMap<K, Instant> {
            self.heap.check(&self.keys);
            assert_eq!(self.heap.nodes.len(), self.keys.len(), "one node per key");
            let mut waiting = HashMap::new();
            for node in &self.heap.nodes {
                let key = self.keys.key(node.slot).expect("node without a key");
                assert_eq!(self.keys.find(self.hasher.hash(key), key), Some(node.slot));
                assert!(waiting.insert(key.clone(), node.ready_at).is_none());
            }
            waiting
        }
    }

    impl<K: Clone> SlotHeap<K> {
        /// Checks the heap; returns each occupied slot's key and ready time.
        fn check(&self) -> HashMap<Slot, (K, Instant)> {
            self.heap.check(&self.slots);
            let occupied = self.slots.entries.iter().filter(|(key, _)| key.is_some());
            assert_eq!(occupied.count(), self.heap.nodes.len(), "one node per key");
            let mut waiting = HashMap::new();
            for node in &self.heap.nodes {
                let key = self.slots.entries[node.slot as usize]
                    .0
                    .clone()
                    .expect("free slot");
                assert!(waiting.insert(node.slot, (key, node.ready_at)).is_none());
            }
            for &slot in &self.slots.free {
                assert!(
                    self.slots.entries[slot as usize].0.is_none(),
                    "free slot in use"
                );
            }
            waiting
        }
    }

    fn at(n: u8) -> Instant {
        // A fixed origin per thread is not needed: only the order of instants matters.
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(u64::from(n))
    }

    #[test]
    fn pops_earliest_then_fifo() {
        let mut heap = DueHeap::new();
        assert!(heap.schedule("late", at(2)));
        assert!(heap.schedule("first", at(1)));
        assert!(heap.schedule("second", at(1)));
        assert_eq!(heap.peek(), Some(at(1)));
        assert_eq!(heap.pop_due(at(0)), None, "nothing due yet");
        let order: Vec<_> =
            std::iter::from_fn(|| heap.pop_due(at(5)).map(|(key, _)| key)).collect();
        assert_eq!(order, ["first", "second", "late"]);
        assert_eq!(heap.len(), 0);
    }

    #[test]
    fn earliest_time_wins_in_place() {
        let mut heap = DueHeap::new();
        assert!(heap.schedule("a", at(10)));
        assert!(heap.schedule("b", at(5)));
        assert!(!heap.schedule("a", at(20)), "later: ignored");
        assert!(!heap.schedule("a", at(10)), "same: ignored");
        assert!(heap.schedule("a", at(1)));
        assert_eq!(heap.len(), 2);
        heap.check();
        assert_eq!(heap.pop_due(at(30)), Some(("a", at(1))));
        heap.clear();
        assert_eq!((heap.len(), heap.peek()), (0, None));
        heap.schedule("b", at(0));
        assert_eq!(heap.pop_due(at(0)), Some(("b", at(0))));
    }

    #[test]
    fn slots_address_keys() {
        let mut heap = SlotHeap::new();
        let a = heap.insert("a", at(10));
        let b = heap.insert("b", at(5));
        assert!(!heap.advance(a, at(20)), "later: ignored");
        assert!(heap.advance(a, at(1)));
        assert_eq!(heap.peek(), Some(at(1)));
        assert_eq!(heap.remove(b), Some("b"));
        assert_eq!(heap.remove(b), None, "removed twice");
        assert!(!heap.advance(b, at(0)), "a free slot");
        let c = heap.insert("c", at(3));
        assert_eq!(c, b, "the free slot is reused");
        assert_eq!(heap.pop_due(at(2)), Some(("a", at(1))));
        assert_eq!(heap.remove(a), None, "popped");
        let mut rest = heap.take_all();
        rest.sort_unstable();
        assert_eq!(rest, ["c"]);
        assert_eq!((heap.len(), heap.peek()), (0, None));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Schedule(u8, u8),
        Remove(u8),
        PopDue(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..16u8, 0..50u8).prop_map(|(key, at)| Op::Schedule(key, at)),
            1 => (0..16u8).prop_map(Op::Remove),
            2 => (0..50u8).prop_map(Op::PopDue),
        ]
    }

    proptest! {
        /// Against a map of key → ready time: same contents after every operation, one node per
        /// key, heap order kept, and keys popped earliest first.
        #[test]
        fn due_heap_matches_a_map(ops in proptest::collection::vec(op(), 1..200)) {
            let mut heap = DueHeap::new();
            let mut model: HashMap<u8, Instant> = HashMap::new();
            for op in ops {
                match op {
                    Op::Schedule(key, n) => {
                        let earlier = model.get(&key).is_none_or(|&old| at(n) < old);
                        prop_assert_eq!(heap.schedule(key, at(n)), earlier);
                        if earlier {
                            model.insert(key, at(n));
                        }
                    }
                    Op::Remove(_) => {}
                    Op::PopDue(n) => {
                        let earliest = model.values().min().copied();
                        match heap.pop_due(at(n)) {
                            Some((key, ready_at)) => {
                                prop_assert_eq!(Some(ready_at), earliest);
                                prop_assert!(ready_at <= at(n));
                                prop_assert_eq!(model.remove(&key), Some(ready_at));
                            }
                            None => prop_assert!(earliest.is_none_or(|earliest| earliest > at(n))),
                        }
                    }
                }
                prop_assert_eq!(heap.check(), model.clone());
                prop_assert_eq!(heap.peek(), model.values().min().copied());
            }
        }

        /// The same for the slot-addressed heap, the caller keeping each key's slot as the
        /// priority queue does.
        #[test]
        fn slot_heap_matches_a_map(ops in proptest::collection::vec(op(), 1..200)) {
            let mut heap = SlotHeap::new();
            let mut model: HashMap<u8, (Slot, Instant)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Schedule(key, n) => match model.get_mut(&key) {
                        Some((slot, old)) => {
                            let earlier = at(n) < *old;
                            prop_assert_eq!(heap.advance(*slot, at(n)), earlier);
                            if earlier {
                                *old = at(n);
                            }
                        }
                        None => {
                            let slot = heap.insert(key, at(n));
                            model.insert(key, (slot, at(n)));
                        }
                    },
                    Op::Remove(key) => {
                        let expected = model.remove(&key);
                        if let Some((slot, _)) = expected {
                            prop_assert_eq!(heap.remove(slot), Some(key));
                        }
                    }
                    Op::PopDue(n) => {
                        let earliest = model.values().map(|&(_, at)| at).min();
                        match heap.pop_due(at(n)) {
                            Some((key, ready_at)) => {
                                prop_assert_eq!(Some(ready_at), earliest);
                                prop_assert!(ready_at <= at(n));
                                prop_assert_eq!(model.remove(&key).map(|(_, at)| at), Some(ready_at));
                            }
                            None => prop_assert!(earliest.is_none_or(|earliest| earliest > at(n))),
                        }
                    }
                }
                let expected: HashMap<Slot, (u8, Instant)> =
                    model.iter().map(|(&key, &(slot, at))| (slot, (key, at))).collect();
                prop_assert_eq!(heap.check(), expected);
                prop_assert_eq!(heap.peek(), model.values().map(|&(_, at)| at).min());
            }
        }
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
