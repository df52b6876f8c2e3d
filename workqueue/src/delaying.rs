//! [`DelayingQueue`]: a [`Queue`] that can add keys later (client-go's `DelayingInterface`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::Key;
use crate::config::Config;
use crate::due::{DueHeap, deadline};
use crate::metrics::{self, CounterMetric};
use crate::queue::Queue;
use crate::timer::{Expire, Next, Timer};

/// A [`Queue`] with [`add_after`](Self::add_after): keys enter the queue once their delay passed.
///
/// Delays run on Tokio's timer (so paused time in tests applies). One background task per queue,
/// started on the first delayed add, sleeps until the earliest ready time; no thread or task per
/// key, no polling. The task ends when the queue shuts down or is dropped.
///
/// A key waiting twice keeps the earlier ready time. Waiting keys are dropped at shutdown.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use ferrokube_workqueue::DelayingQueue;
///
/// let queue = DelayingQueue::new();
/// queue.add_after("a", Duration::from_secs(10));
/// queue.add_after("a", Duration::from_secs(1)); // earlier wins
/// let start = tokio::time::Instant::now();
/// assert_eq!(queue.get().await, Some("a"));
/// assert_eq!(start.elapsed(), Duration::from_secs(1));
/// # }
/// ```
#[doc(alias = "DelayingInterface")]
#[doc(alias = "TypedDelayingInterface")]
pub struct DelayingQueue<K> {
    delay: Arc<Delay<K>>,
}

struct Delay<K> {
    queue: Queue<K>,
    waiting: Mutex<Waiting<K>>,
    timer: Timer,
    retries: Option<Box<dyn CounterMetric>>,
}

struct Waiting<K> {
    /// Each waiting key once, with its ready time.
    heap: DueHeap<K>,
    /// The deadline the timer task sleeps towards, if any.
    scheduled: Option<Instant>,
    stopped: bool,
}

impl<K: Key> DelayingQueue<K> {
    /// A delaying queue without name or metrics.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A delaying queue with a name and, optionally, metrics (including `retries`).
    pub fn with_config(config: Config) -> Self {
        let retries = metrics::retries_metric(config.metrics.as_ref(), &config.name);
        Self {
            delay: Arc::new(Delay {
                queue: Queue::with_config(config),
                waiting: Mutex::new(Waiting {
                    heap: DueHeap::new(),
                    scheduled: None,
                    stopped: false,
                }),
                timer: Timer::new(),
                retries,
            }),
        }
    }

    /// Adds `key` once `delay` has passed; a zero delay is [`add`](Self::add).
    ///
    /// If `key` is already waiting, it keeps the earlier of the two ready times. Ignored after
    /// shutdown. Counts as a retry in the metrics.
    ///
    /// # Panics
    ///
    /// On the first positive delay, if neither this call nor the queue's creation happened inside
    /// a Tokio runtime: the timer needs one.
    #[doc(alias = "AddAfter")]
    pub fn add_after(&self, key: K, delay: Duration) {
        let delay_state = &self.delay;
        if delay_state.queue.is_shutting_down() {
            return;
        }
        if let Some(retries) = &delay_state.retries {
            retries.inc();
        }
        if delay.is_zero() {
            delay_state.queue.add(key);
            return;
        }
        let ready_at = deadline(Instant::now(), delay);
        let mut waiting = delay_state.waiting.lock();
        if waiting.stopped {
            return;
        }
        let Waiting {
            heap, scheduled, ..
        } = &mut *waiting;
        // Earliest wins: a key already waiting for an earlier time keeps it; a key moved earlier
        // keeps its one heap entry.
        if !heap.schedule(key, ready_at) {
            return;
        }
        let wake = scheduled.is_none_or(|scheduled| ready_at < scheduled);
        if wake {
            *scheduled = Some(ready_at);
        }
        drop(waiting);
        delay_state.timer.start(delay_state);
        if wake {
            delay_state.timer.wake();
        }
    }

    /// Marks `key` as needing processing now. See [`Queue::add`].
    pub fn add(&self, key: K) {
        self.delay.queue.add(key);
    }

    /// Waits for a key to process. See [`Queue::get`].
    pub async fn get(&self) -> Option<K> {
        self.delay.queue.get().await
    }

    /// Marks `key` as processed. See [`Queue::done`].
    pub fn done(&self, key: &K) {
        self.delay.queue.done(key);
    }

    /// Number of keys ready to be handed out (not counting waiting or processing keys).
    pub fn len(&self) -> usize {
        self.delay.queue.len()
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.delay.queue.is_empty()
    }

    /// Number of keys waiting for their delay to pass.
    pub fn waiting(&self) -> usize {
        self.delay.waiting.lock().heap.len()
    }

    /// Stops accepting keys and drops the waiting ones. See [`Queue::shutdown`].
    #[doc(alias = "ShutDown")]
    pub fn shutdown(&self) {
        self.delay.queue.begin_shutdown(false);
        self.delay.timer.wake();
    }

    /// Stops accepting keys, drops the waiting ones, and waits until no key is being processed
    /// (client-go's `ShutDownWithDrain`). See [`Queue::shutdown_with_drain`].
    #[doc(alias = "ShutDownWithDrain")]
    pub async fn shutdown_with_drain(&self) {
        self.delay.queue.begin_shutdown(true);
        self.delay.timer.wake();
        self.delay.queue.wait_drained().await;
    }

    /// Whether the queue is shutting down.
    #[doc(alias = "ShuttingDown")]
    pub fn is_shutting_down(&self) -> bool {
        self.delay.queue.is_shutting_down()
    }

    /// Number of entries in the waiting heap (tests check it is bounded by the waiting keys).
    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.delay.waiting.lock().heap.len()
    }
}

impl<K: Key> Expire for Delay<K> {
    fn expire(&self, now: Instant) -> Next {
        let mut waiting = self.waiting.lock();
        if self.queue.is_shutting_down() {
            waiting.stopped = true;
            waiting.heap.clear();
            waiting.scheduled = None;
            return Next::Stop;
        }
        let mut ready = Vec::new();
        let Waiting {
            heap, scheduled, ..
        } = &mut *waiting;
        while let Some((key, _)) = heap.pop_due(now) {
            ready.push(key);
        }
        *scheduled = heap.peek();
        let next = scheduled.map_or(Next::Idle, Next::At);
        drop(waiting);
        if !ready.is_empty() {
            self.queue.add_all(ready);
        }
        next
    }
}

impl<K> Clone for DelayingQueue<K> {
    fn clone(&self) -> Self {
        Self {
            delay: Arc::clone(&self.delay),
        }
    }
}

impl<K: Key> Default for DelayingQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for DelayingQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayingQueue")
            .field("queue", &self.delay.queue)
            .field("waiting", &self.delay.waiting.lock().heap.len())
            .finish()
    }
}
