//! [`Queue`]: client-go's basic work queue (`workqueue.Type`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Key;
use crate::config::Config;
use crate::entries::{Entries, Hasher, Slot};
use crate::metrics::{self, QueueMetrics, Stamps, Timing, UnfinishedWork};
use crate::waiters::{self, Parking, WaitList, Wakers};

/// A work queue with client-go's semantics: deduplicating, FIFO, never handing one key to two
/// workers at once.
///
/// * [`add`](Self::add) marks a key dirty. A key already dirty is not added twice.
/// * [`get`](Self::get) hands out the oldest dirty key and marks it processing.
/// * A key added while it is processing stays dirty and is queued again (at the back) when the
///   worker calls [`done`](Self::done), so it is never processed by two workers at once and an
///   add that arrives mid-processing is not lost.
///
/// `Queue` is a cheap handle (an [`Arc`] inside): clone it into every worker. No lock is held
/// across an `.await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use ferrokube_workqueue::Queue;
///
/// let queue = Queue::new();
/// queue.add("a");
/// queue.add("b");
/// queue.add("a"); // already queued: collapses
/// assert_eq!(queue.len(), 2);
///
/// let key = queue.get().await.unwrap();
/// assert_eq!(key, "a");
/// queue.add("a"); // processing: queued again at done
/// assert_eq!(queue.len(), 1);
/// queue.done(&key);
/// assert_eq!(queue.len(), 2);
/// # }
/// ```
#[doc(alias = "Interface")]
#[doc(alias = "TypedInterface")]
#[doc(alias = "Type")]
pub struct Queue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// Hashes keys before the lock is taken.
    hasher: Hasher,
    /// Woken when the last processing key is done during a drain, or when a drain is cut short.
    drained: Notify,
    metrics: Option<QueueMetrics>,
    unfinished_loop: AtomicBool,
}

struct State<K> {
    /// Keys ready to hand out, in order, with their entry's slot. Each is dirty and not
    /// processing.
    queue: VecDeque<(K, Slot)>,
    /// Every key that is dirty, processing, or both; no other key.
    entries: Entries<K, Entry>,
    /// Number of entries both dirty and processing: they go back into `queue` at `done`.
    requeue: usize,
    shutting_down: bool,
    drain: bool,
    waiters: WaitList,
    /// Timestamps, kept only with metrics.
    stamps: Stamps,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    dirty: bool,
    processing: bool,
    timing: Timing,
}

impl Entry {
    const QUEUED: Self = Self {
        dirty: true,
        processing: false,
        timing: Timing::NONE,
    };
}

/// What a successful look at the queue took, for the work done after unlocking.
struct Taken<K> {
    /// `None`: shut down and finished.
    key: Option<K>,
    added_at: Option<Instant>,
    /// Getters to wake because the queue just finished.
    wake: Wakers,
}

// === impl Queue ===

impl<K: Key> Queue<K> {
    /// A queue without name or metrics.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A queue with a name and, optionally, metrics.
    pub fn with_config(config: Config) -> Self {
        let metrics = QueueMetrics::new(config.metrics.as_ref(), &config.name);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    entries: Entries::new(),
                    requeue: 0,
                    shutting_down: false,
                    drain: false,
                    waiters: WaitList::default(),
                    stamps: Stamps::default(),
                }),
                hasher: Hasher::default(),
                drained: Notify::new(),
                metrics,
                unfinished_loop: AtomicBool::new(false),
            }),
        }
    }

    /// Marks `key` as needing processing. Ignored after shutdown.
    ///
    /// If the key is already waiting, nothing changes; if it is being processed, it is queued
    /// again when the worker calls [`done`](Self::done).
    pub fn add(&self, key: K) {
        let hash = self.shared.hasher.hash(&key);
        let now = self.now();
        let mut state = self.shared.state.lock();
        if state.shutting_down {
            return;
        }
        let (added, waiter) = state.add(hash, key, now);
        drop(state);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        if added {
            self.count_add();
        }
    }

    /// Adds every key of `keys` under one lock; what the delaying queue's timer uses.
    pub(crate) fn add_all(&self, keys: Vec<K>) {
        let hasher = &self.shared.hasher;
        let keys: Vec<(u64, K)> = keys
            .into_iter()
            .map(|key| (hasher.hash(&key), key))
            .collect();
        let now = self.now();
        let mut state = self.shared.state.lock();
        if state.shutting_down {
            return;
        }
        let mut added = 0;
        let mut wake = Wakers::default();
        for (hash, key) in keys {
            let (was_added, waiter) = state.add(hash, key, now);
            added += usize::from(was_added);
            wake.extend(waiter);
        }
        drop(state);
        drop(wake);
        for _ in 0..added {
            self.count_add();
        }
    }

    /// Waits for a key to process and marks it processing.
    ///
    /// Returns `None` once the queue is shut down and has nothing left to hand out: after
    /// [`shutdown`](Self::shutdown) the keys still queued are handed out first, as in client-go,
    /// and so are keys that were re-added while processing and go back into the queue at `done`.
    ///
    /// Every key returned must be passed to [`done`](Self::done) after processing. Dropping the
    /// future before it completes loses nothing.
    pub async fn get(&self) -> Option<K> {
        let shared = &self.shared;
        if shared.metrics.is_some() {
            metrics::start_unfinished_work_loop(shared, &shared.unfinished_loop);
        }
        let now = self.now();
        let taken = {
            let mut state = shared.state.lock();
            state.take(now, &shared.hasher)
        };
        let taken = match taken {
            Some(taken) => taken,
            None => {
                waiters::wait(&shared.state, |state| {
                    state.take(self.now(), &shared.hasher)
                })
                .await
            }
        };
        if let Some(metrics) = &shared.metrics
            && taken.key.is_some()
        {
            metrics.handed_out(self.now(), taken.added_at);
        }
        drop(taken.wake);
        taken.key
    }

    /// Marks `key` as processed. If it was added again meanwhile, it goes back into the queue.
    ///
    /// Calling `done` for a key that is not being processed does nothing.
    pub fn done(&self, key: &K) {
        let hash = self.shared.hasher.hash(key);
        let now = self.now();
        let mut state = self.shared.state.lock();
        let State {
            queue,
            entries,
            requeue,
            waiters,
            stamps,
            ..
        } = &mut *state;
        let Some(slot) = entries.find(hash, key) else {
            return;
        };
        let Some(entry) = entries.get_mut(slot).filter(|entry| entry.processing) else {
            return;
        };
        entry.processing = false;
        let started = stamps.take_started(&mut entry.timing);
        let mut waiter = None;
        if entry.dirty {
            *requeue -= 1;
            queue.push_back((key.clone(), slot));
            if !waiters.is_empty() {
                waiter = waiters.notify_one();
            }
        } else {
            stamps.clear(&mut entry.timing);
            entries.remove(slot);
        }
        let finished = state.finish();
        let idle = state.drain && !state.is_processing();
        drop(state);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        drop(finished);
        if idle {
            self.shared.drained.notify_waiters();
        }
        if let (Some(metrics), Some(now), Some(started)) = (&self.shared.metrics, now, started) {
            metrics.observe_work(now.saturating_duration_since(started));
        }
    }

    /// Number of keys waiting to be handed out (not counting keys being processed).
    pub fn len(&self) -> usize {
        self.shared.state.lock().queue.len()
    }

    /// Whether no key is waiting to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting keys. Workers still get what is queued, then `None`.
    ///
    /// Cuts short a pending [`shutdown_with_drain`](Self::shutdown_with_drain).
    #[doc(alias = "ShutDown")]
    pub fn shutdown(&self) {
        self.begin_shutdown(false);
    }

    /// Stops accepting keys and waits until no key is being processed: every key handed out has
    /// been marked [`done`](Self::done).
    ///
    /// This is client-go's `ShutDownWithDrain`: it waits for the keys being *processed*, not for
    /// the keys still queued. Queued keys are still handed out to workers that call
    /// [`get`](Self::get) (then `get` returns `None`), before or after the drain returns; if no
    /// worker is left, the drain does not wait for them. So it returns at once when nothing is
    /// processing, and waits forever only if a worker holds a key and never calls `done`;
    /// calling [`shutdown`](Self::shutdown) meanwhile makes it return at once.
    #[doc(alias = "ShutDownWithDrain")]
    pub async fn shutdown_with_drain(&self) {
        self.begin_shutdown(true);
        self.wait_drained().await;
    }

    /// Whether [`shutdown`](Self::shutdown) or [`shutdown_with_drain`](Self::shutdown_with_drain)
    /// was called.
    #[doc(alias = "ShuttingDown")]
    pub fn is_shutting_down(&self) -> bool {
        self.shared.state.lock().shutting_down
    }

    pub(crate) fn begin_shutdown(&self, drain: bool) {
        let mut state = self.shared.state.lock();
        state.shutting_down = true;
        state.drain = drain;
        // Parked getters look again: they hand out what is left, or return `None`.
        let wake = state.waiters.notify_all();
        drop(state);
        drop(wake);
        self.shared.drained.notify_waiters();
    }

    pub(crate) async fn wait_drained(&self) {
        let mut notified = std::pin::pin!(self.shared.drained.notified());
        loop {
            notified.as_mut().enable();
            {
                let state = self.shared.state.lock();
                if !state.drain || !state.is_processing() {
                    return;
                }
            }
            notified.as_mut().await;
            notified.set(self.shared.drained.notified());
        }
    }

    /// The current time if metrics need it; no clock read otherwise.
    fn now(&self) -> Option<Instant> {
        self.shared.metrics.as_ref().map(|_| Instant::now())
    }

    fn count_add(&self) {
        if let Some(metrics) = &self.shared.metrics {
            metrics.add();
        }
    }
}

// === impl State ===

impl<K: Key> State<K> {
    /// Marks `key` dirty; returns whether that is a new add (for the metrics) and a parked getter
    /// to wake.
    fn add(&mut self, hash: u64, key: K, now: Option<Instant>) -> (bool, Option<std::task::Waker>) {
        let (slot, inserted) = self.entries.find_or_insert(hash, key, || Entry::QUEUED);
        let Some(entry) = self.entries.get_mut(slot) else {
            return (false, None);
        };
        if inserted {
            self.stamps.added(&mut entry.timing, now);
            if let Some(key) = self.entries.key(slot) {
                self.queue.push_back((key.clone(), slot));
            }
            let waiter = if self.waiters.is_empty() {
                None
            } else {
                self.waiters.notify_one()
            };
            return (true, waiter);
        }
        if entry.dirty {
            return (false, None);
        }
        // Processing: mark dirty, requeue at done.
        entry.dirty = true;
        self.stamps.added(&mut entry.timing, now);
        self.requeue += 1;
        (true, None)
    }

    /// One look at the queue: the next key (marked processing), `None` inside when finished, or
    /// nothing to take yet.
    fn take(&mut self, now: Option<Instant>, hasher: &Hasher) -> Option<Taken<K>> {
        let Some((key, slot)) = self.queue.pop_front() else {
            if self.is_finished() {
                return Some(Taken {
                    key: None,
                    added_at: None,
                    wake: Wakers::default(),
                });
            }
            return None;
        };
        let slot = match self.entries.get_mut(slot) {
            Some(_) => slot,
            // Unreachable: every queued key has an entry. Keep the invariant anyway.
            None => {
                self.entries
                    .find_or_insert(hasher.hash(&key), key.clone(), || Entry::QUEUED)
                    .0
            }
        };
        let added_at = match self.entries.get_mut(slot) {
            Some(entry) => {
                entry.dirty = false;
                entry.processing = true;
                self.stamps.started(&mut entry.timing, now);
                self.stamps.take_added(&mut entry.timing)
            }
            None => None,
        };
        Some(Taken {
            key: Some(key),
            added_at,
            wake: self.finish(),
        })
    }

    /// If the queue just finished (shut down, nothing left), the getters to wake so that they
    /// return `None`.
    fn finish(&mut self) -> Wakers {
        if self.is_finished() && !self.waiters.is_empty() {
            self.waiters.notify_all()
        } else {
            Wakers::default()
        }
    }

    /// Shut down and nothing will ever be handed out again.
    fn is_finished(&self) -> bool {
        self.shutting_down && self.queue.is_empty() && self.requeue == 0
    }

    /// Whether some key is being processed (handed out, not yet done).
    fn is_processing(&self) -> bool {
        // Every entry is either queued (dirty, not processing) or processing.
        self.entries.len() > self.queue.len()
    }
}

impl<K> Parking for State<K> {
    fn wait_list(&mut self) -> &mut WaitList {
        &mut self.waiters
    }
}

impl<K: Key> UnfinishedWork for Shared<K> {
    fn update_unfinished_work(&self, now: Instant) -> bool {
        let state = self.state.lock();
        if state.shutting_down {
            return false;
        }
        if let Some(metrics) = &self.metrics {
            metrics.update_unfinished(now, state.stamps.processing());
        }
        true
    }
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Key> Default for Queue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for Queue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("Queue")
            .field("len", &state.queue.len())
            .field("entries", &state.entries.len())
            .field("shutting_down", &state.shutting_down)
            .finish_non_exhaustive()
    }
}
