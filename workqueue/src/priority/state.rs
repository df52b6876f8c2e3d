//! The priority queue's bookkeeping, under its one lock.
//!
//! Every key the queue knows has one [`Item`]: queued (ready or waiting), processing, or both.
//! Ready keys that nobody processes sit in `ready`, ordered by priority (highest first), then by
//! the order in which they became ready. Waiting keys sit in the `waiting` heap, exactly once each:
//! a key moved earlier is moved in place, and a key that becomes ready leaves the heap. A key that
//! becomes ready while it is processing is *parked*: it enters `ready` at `done`.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::hash_map::{Entry as MapEntry, HashMap};

use foldhash::fast::RandomState;
use tokio::time::Instant;

use crate::Key;
use crate::due::SlotHeap;
use crate::entries::Slot;
use crate::metrics::{Stamps, Timing};
use crate::waiters::{Parking, WaitList};

#[derive(Debug)]
pub(super) struct State<K> {
    pub(super) items: HashMap<K, Item, RandomState>,
    /// Ready and not processing: (highest priority first, then FIFO) → key.
    pub(super) ready: BTreeMap<(Reverse<i32>, u64), K>,
    /// Waiting keys (those whose `queued.ready_at` is set), each once, at `queued.slot`.
    pub(super) waiting: SlotHeap<K>,
    /// Order of becoming ready.
    pub(super) seq: u64,
    pub(super) processing: usize,
    /// Items processing whose next round is already ready.
    pub(super) parked: usize,
    /// The deadline the timer task sleeps towards, if any.
    pub(super) scheduled: Option<Instant>,
    pub(super) shutting_down: bool,
    pub(super) drain: bool,
    pub(super) waiters: WaitList,
    pub(super) stamps: Stamps,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub(super) queued: Option<Queued>,
    pub(super) processing: bool,
    pub(super) timing: Timing,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Queued {
    pub(super) priority: i32,
    /// Position among ready keys of the same priority; set when the key becomes ready.
    pub(super) seq: u64,
    /// `None` once ready.
    pub(super) ready_at: Option<Instant>,
    /// The key's slot in `waiting` while `ready_at` is set (meaningless once ready).
    pub(super) slot: Slot,
}

impl Queued {
    /// Queued with `priority` and `seq`, ready now or waiting in `slot`.
    fn new(priority: i32, seq: u64, waiting: Option<(Instant, Slot)>) -> Self {
        Self {
            priority,
            seq,
            ready_at: waiting.map(|(at, _)| at),
            slot: waiting.map_or(Slot::MAX, |(_, slot)| slot),
        }
    }
}

/// What an add or an expiry changed, for the caller to act on after unlocking.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Changes {
    /// Keys that entered `ready`.
    pub(super) readied: usize,
    /// Keys that became ready (for the adds and depth metrics), parked ones included.
    pub(super) became_ready: usize,
    /// The timer must look again: a key waits for an earlier instant than it sleeps towards.
    pub(super) wake_timer: bool,
}

impl<K: Key> State<K> {
    pub(super) fn new() -> Self {
        Self {
            items: HashMap::default(),
            ready: BTreeMap::new(),
            waiting: SlotHeap::new(),
            seq: 0,
            processing: 0,
            parked: 0,
            scheduled: None,
            shutting_down: false,
            drain: false,
            waiters: WaitList::default(),
            stamps: Stamps::default(),
        }
    }

    /// Adds `key` with `priority`, ready at `ready_at` (`None`: now), merging with what is there:
    /// the highest priority and the earliest ready time win.
    pub(super) fn add(
        &mut self,
        key: K,
        priority: i32,
        ready_at: Option<Instant>,
        now: Option<Instant>,
    ) -> Changes {
        let mut changes = Changes::default();
        let seq = self.seq;
        match self.items.entry(key) {
            MapEntry::Vacant(vacant) => {
                let key = vacant.key().clone();
                self.seq += 1;
                let waiting = match ready_at {
                    None => {
                        self.ready.insert((Reverse(priority), seq), key);
                        changes.readied = 1;
                        changes.became_ready = 1;
                        None
                    }
                    Some(at) => {
                        changes.wake_timer = schedule(&mut self.scheduled, at);
                        Some((at, self.waiting.insert(key, at)))
                    }
                };
                let item = vacant.insert(Item {
                    queued: Some(Queued::new(priority, seq, waiting)),
                    processing: false,
                    timing: Timing::NONE,
                });
                if ready_at.is_none() {
                    self.stamps.added(&mut item.timing, now);
                }
            }
            MapEntry::Occupied(mut occupied) => {
                let waiting = match (&occupied.get().queued, ready_at) {
                    // Processing only, next round waits: it enters the heap.
                    (None, Some(at)) => {
                        let key = occupied.key().clone();
                        Some((at, self.waiting.insert(key, at)))
                    }
                    _ => None,
                };
                let item = occupied.get_mut();
                match &mut item.queued {
                    None => {
                        // Processing only: queue the next round.
                        item.queued = Some(Queued::new(priority, seq, waiting));
                        self.seq += 1;
                        match ready_at {
                            None => {
                                self.stamps.added(&mut item.timing, now);
                                self.parked += 1;
                                changes.became_ready = 1;
                            }
                            Some(at) => {
                                changes.wake_timer = schedule(&mut self.scheduled, at);
                            }
                        }
                    }
                    Some(queued) => {
                        let old = *queued;
                        queued.priority = queued.priority.max(priority);
                        match (old.ready_at, ready_at) {
                            (Some(_), None) => {
                                // Waiting, now ready: it leaves the heap.
                                let key = self.waiting.remove(old.slot);
                                queued.ready_at = None;
                                queued.seq = seq;
                                self.seq += 1;
                                self.stamps.added(&mut item.timing, now);
                                changes.became_ready = 1;
                                if item.processing {
                                    self.parked += 1;
                                } else {
                                    let priority = queued.priority;
                                    let key = key.unwrap_or_else(|| occupied.key().clone());
                                    self.ready.insert((Reverse(priority), seq), key);
                                    changes.readied = 1;
                                }
                            }
                            (Some(old_at), Some(at)) if at < old_at => {
                                // Earlier: its heap entry moves in place.
                                queued.ready_at = Some(at);
                                self.waiting.advance(old.slot, at);
                                changes.wake_timer = schedule(&mut self.scheduled, at);
                            }
                            (None, _) if queued.priority != old.priority && !item.processing => {
                                // Ready with a raised priority: move it in `ready`.
                                let slot = (Reverse(old.priority), old.seq);
                                if let Some(key) = self.ready.remove(&slot) {
                                    self.ready.insert((Reverse(queued.priority), old.seq), key);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        changes
    }

    /// Makes every key due at `now` ready.
    pub(super) fn expire(&mut self, now: Instant, timestamp: Option<Instant>) -> Changes {
        let mut changes = Changes::default();
        while let Some((key, ready_at)) = self.waiting.pop_due(now) {
            let seq = self.seq;
            let Some(item) = self.items.get_mut(&key) else {
                continue; // unreachable: waiting keys have items
            };
            let Some(queued) = &mut item.queued else {
                continue;
            };
            if queued.ready_at != Some(ready_at) {
                continue; // unreachable: the heap holds each key's ready time
            }
            queued.ready_at = None;
            queued.seq = seq;
            self.seq += 1;
            self.stamps.added(&mut item.timing, timestamp);
            changes.became_ready += 1;
            if item.processing {
                self.parked += 1;
            } else {
                self.ready.insert((Reverse(queued.priority), seq), key);
                changes.readied += 1;
            }
        }
        self.scheduled = self.waiting.peek();
        changes
    }

    /// Hands out the highest-priority ready key and marks it processing; with the time it became
    /// ready.
    pub(super) fn pop(&mut self, now: Option<Instant>) -> Option<(K, i32, Option<Instant>)> {
        let ((Reverse(priority), _), key) = self.ready.pop_first()?;
        self.processing += 1;
        let added_at = match self.items.get_mut(&key) {
            Some(item) => {
                item.queued = None;
                item.processing = true;
                self.stamps.started(&mut item.timing, now);
                self.stamps.take_added(&mut item.timing)
            }
            None => {
                // Unreachable: ready keys have items. Keep the invariant anyway.
                let mut item = Item {
                    queued: None,
                    processing: true,
                    timing: Timing::NONE,
                };
                self.stamps.started(&mut item.timing, now);
                self.items.insert(key.clone(), item);
                None
            }
        };
        Some((key, priority, added_at))
    }

    /// Marks `key` processed. Returns `None` if it was not processing, else whether it went back
    /// into `ready`, and its processing start time.
    pub(super) fn done(&mut self, key: &K) -> Option<(bool, Option<Instant>)> {
        let item = self.items.get_mut(key)?;
        if !item.processing {
            return None;
        }
        item.processing = false;
        self.processing -= 1;
        let started = self.stamps.take_started(&mut item.timing);
        let readied = match item.queued {
            None => {
                self.items.remove(key);
                false
            }
            Some(queued) if queued.ready_at.is_none() => {
                self.parked -= 1;
                self.ready
                    .insert((Reverse(queued.priority), queued.seq), key.clone());
                true
            }
            Some(queued) if self.shutting_down => {
                // Waiting keys are dropped at shutdown.
                self.stamps.clear(&mut item.timing);
                self.items.remove(key);
                self.waiting.remove(queued.slot);
                false
            }
            Some(_) => false,
        };
        Some((readied, started))
    }

    /// Shut down and nothing will ever be handed out again.
    pub(super) fn is_finished(&self) -> bool {
        self.shutting_down && self.ready.is_empty() && self.parked == 0
    }

    /// Drops every waiting key (shutdown).
    pub(super) fn drop_waiting(&mut self) {
        for key in self.waiting.take_all() {
            let MapEntry::Occupied(mut occupied) = self.items.entry(key) else {
                continue;
            };
            let item = occupied.get_mut();
            if item.queued.is_some_and(|queued| queued.ready_at.is_some()) {
                item.queued = None;
                if !item.processing {
                    self.stamps.clear(&mut item.timing);
                    occupied.remove();
                }
            }
        }
        self.scheduled = None;
    }

    /// Number of ready keys, parked ones included.
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.parked
    }
}

impl<K> Parking for State<K> {
    fn wait_list(&mut self) -> &mut WaitList {
        &mut self.waiters
    }
}

/// Records that the timer should look at `at`; returns whether it must be woken for it.
fn schedule(scheduled: &mut Option<Instant>, at: Instant) -> bool {
    let wake = scheduled.is_none_or(|scheduled| at < scheduled);
    if wake {
        *scheduled = Some(at);
    }
    wake
}
