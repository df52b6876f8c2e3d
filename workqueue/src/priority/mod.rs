//! [`PriorityQueue`]: controller-runtime's priority queue.

mod state;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::state::{Changes, State};
use crate::Key;
use crate::config::Config;
use crate::due::deadline;
use crate::metrics::{self, CounterMetric, QueueMetrics, UnfinishedWork};
use crate::rate_limiter::{ItemExponentialFailureRateLimiter, RateLimiter};
use crate::timer::{Expire, Next, Timer};
use crate::waiters::{self, Wakers};

/// How to add a key to a [`PriorityQueue`].
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::AddOpts;
///
/// let opts = AddOpts::new().priority(10).after(Duration::from_secs(1));
/// assert_eq!(opts, AddOpts::new().after(Duration::from_secs(1)).priority(10));
/// assert_ne!(opts, AddOpts::new());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddOpts {
    /// Wait this long before the key is ready (zero: ready now).
    pub(crate) after: Duration,
    /// Also ask the rate limiter; the shorter of its delay and a non-zero `after` applies.
    pub(crate) rate_limited: bool,
    /// Higher is handed out first.
    pub(crate) priority: i32,
}

impl AddOpts {
    /// Ready now, not rate-limited, priority 0.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long to wait before the key is ready (zero, the default: ready now).
    #[must_use]
    pub fn after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }

    /// Sets whether the rate limiter is asked for a delay too; the shorter of its delay and a
    /// non-zero [`after`](Self::after) applies, as in controller-runtime.
    #[must_use]
    pub fn rate_limited(mut self, rate_limited: bool) -> Self {
        self.rate_limited = rate_limited;
        self
    }

    /// Sets the priority: higher is handed out first. controller-runtime uses `-100` for low
    /// priority.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// A rate-limiting work queue that hands out higher priorities first (controller-runtime's
/// `priorityqueue`).
///
/// * One entry per key: adding a key that is already queued keeps the **highest** priority and
///   the **earliest** ready time of the two.
/// * Among ready keys: highest priority first, then first-ready-first-out.
/// * The [`Queue`](crate::Queue) guarantees hold: a key is never handed to two workers at once,
///   and a key added while processing is handed out again after [`done`](Self::done).
/// * Shutdown behaves as in [`Queue`](crate::Queue): ready keys are still handed out, waiting keys
///   are dropped, and [`shutdown_with_drain`](Self::shutdown_with_drain) waits until no key is
///   being processed (client-go's `ShutDownWithDrain`).
///   (controller-runtime's queue stops handing out at once and does not drain; this one follows
///   client-go's contract so that both queues are interchangeable.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use ferrokube_workqueue::{AddOpts, PriorityQueue};
///
/// let queue = PriorityQueue::new();
/// queue.add_with("low", AddOpts::new().priority(-100));
/// queue.add("normal");
/// queue.add_with("high", AddOpts::new().priority(10));
/// assert_eq!(queue.get_with_priority().await, Some(("high", 10)));
/// assert_eq!(queue.get().await, Some("normal"));
/// assert_eq!(queue.get().await, Some("low"));
/// # }
/// ```
pub struct PriorityQueue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    drained: Notify,
    limiter: Arc<dyn RateLimiter<K>>,
    timer: Timer,
    metrics: Option<QueueMetrics>,
    retries: Option<Box<dyn CounterMetric>>,
    unfinished_loop: AtomicBool,
}

// === impl PriorityQueue ===

impl<K: Key> PriorityQueue<K> {
    /// A priority queue retrying with controller-runtime's default limiter (per-key exponential
    /// backoff from 5 ms to 1000 s), without name or metrics.
    pub fn new() -> Self {
        Self::with_config(
            ItemExponentialFailureRateLimiter::new(
                Duration::from_millis(5),
                Duration::from_secs(1000),
            ),
            Config::default(),
        )
    }

    /// A priority queue retrying with `limiter`, with a name and, optionally, metrics.
    pub fn with_config(limiter: impl RateLimiter<K> + 'static, config: Config) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new()),
                drained: Notify::new(),
                limiter: Arc::new(limiter),
                timer: Timer::new(),
                metrics: QueueMetrics::new(config.metrics.as_ref(), &config.name),
                retries: metrics::retries_metric(config.metrics.as_ref(), &config.name),
                unfinished_loop: AtomicBool::new(false),
            }),
        }
    }

    /// Adds `key` as `opts` say. Ignored after shutdown.
    ///
    /// # Panics
    ///
    /// On the first delayed add, if neither this call nor the queue's creation happened inside
    /// a Tokio runtime: the timer needs one.
    #[doc(alias = "AddWithOpts")]
    pub fn add_with(&self, key: K, opts: AddOpts) {
        let shared = &self.shared;
        let mut after = opts.after;
        if opts.rate_limited {
            let limited = shared.limiter.when(&key);
            if after.is_zero() || limited < after {
                after = limited;
            }
        }
        let now = Instant::now();
        let ready_at = (!after.is_zero()).then(|| deadline(now, after));
        let timestamp = shared.metrics.as_ref().map(|_| now);
        let mut state = shared.state.lock();
        if state.shutting_down {
            return;
        }
        let changes = state.add(key, opts.priority, ready_at, timestamp);
        let waiter = if changes.readied > 0 {
            state.waiters.notify_one()
        } else {
            None
        };
        drop(state);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        if ready_at.is_some()
            && let Some(retries) = &shared.retries
        {
            retries.inc();
        }
        self.after_changes(changes);
    }

    /// Adds `key` with priority 0, ready now.
    pub fn add(&self, key: K) {
        self.add_with(key, AddOpts::new());
    }

    /// Adds `key` with priority 0 once `delay` has passed.
    #[doc(alias = "AddAfter")]
    pub fn add_after(&self, key: K, delay: Duration) {
        self.add_with(key, AddOpts::new().after(delay));
    }

    /// Adds `key` with priority 0 after the rate limiter's delay.
    #[doc(alias = "AddRateLimited")]
    pub fn add_rate_limited(&self, key: K) {
        self.add_with(key, AddOpts::new().rate_limited(true));
    }

    fn after_changes(&self, changes: Changes) {
        let shared = &self.shared;
        if let Some(metrics) = &shared.metrics {
            for _ in 0..changes.became_ready {
                metrics.add();
            }
        }
        if changes.wake_timer {
            shared.timer.start(shared);
            shared.timer.wake();
        }
    }

    /// Waits for the highest-priority ready key and marks it processing.
    ///
    /// Returns `None` once the queue is shut down and nothing is left to hand out.
    pub async fn get(&self) -> Option<K> {
        self.get_with_priority().await.map(|(key, _)| key)
    }

    /// As [`get`](Self::get), with the priority the key was queued with.
    #[doc(alias = "GetWithPriority")]
    pub async fn get_with_priority(&self) -> Option<(K, i32)> {
        let shared = &self.shared;
        if shared.metrics.is_some() {
            metrics::start_unfinished_work_loop(shared, &shared.unfinished_loop);
        }
        let now = self.now();
        let taken = {
            let mut state = shared.state.lock();
            take(&mut state, now)
        };
        let taken = match taken {
            Some(taken) => taken,
            None => waiters::wait(&shared.state, |state| take(state, self.now())).await,
        };
        if let Some(metrics) = &shared.metrics
            && taken.item.is_some()
        {
            metrics.handed_out(self.now(), taken.added_at);
        }
        drop(taken.wake);
        taken.item
    }

    /// Marks `key` as processed; if it was added again meanwhile, it becomes ready again.
    ///
    /// Calling `done` for a key that is not being processed does nothing.
    pub fn done(&self, key: &K) {
        let shared = &self.shared;
        let now = self.now();
        let mut state = shared.state.lock();
        let Some((readied, started)) = state.done(key) else {
            return;
        };
        let waiter = if readied {
            state.waiters.notify_one()
        } else {
            None
        };
        let finished = finish(&mut state);
        let idle = state.drain && state.processing == 0;
        drop(state);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        drop(finished);
        if idle {
            shared.drained.notify_waiters();
        }
        if let (Some(metrics), Some(now), Some(started)) = (&shared.metrics, now, started) {
            metrics.observe_work(now.saturating_duration_since(started));
        }
    }

    /// The current time if metrics need it; no clock read otherwise.
    fn now(&self) -> Option<Instant> {
        self.shared.metrics.as_ref().map(|_| Instant::now())
    }

    /// Resets `key`'s backoff in the rate limiter (call [`done`](Self::done) as well).
    #[doc(alias = "Forget")]
    pub fn forget(&self, key: &K) {
        self.shared.limiter.forget(key);
    }

    /// How many times `key` was rate-limited since it was last forgotten.
    #[doc(alias = "NumRequeues")]
    pub fn num_requeues(&self, key: &K) -> usize {
        self.shared.limiter.num_requeues(key)
    }

    /// Number of ready keys, including ready keys whose previous round is still processing (as
    /// controller-runtime counts them); waiting keys are not counted.
    pub fn len(&self) -> usize {
        self.shared.state.lock().len()
    }

    /// Whether no key is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting keys and drops the waiting ones; ready keys are still handed out.
    #[doc(alias = "ShutDown")]
    pub fn shutdown(&self) {
        self.begin_shutdown(false);
    }

    /// Stops accepting keys, drops the waiting ones, and waits until no key is being processed
    /// (every key handed out was marked [`done`](Self::done)), as client-go's `ShutDownWithDrain`.
    ///
    /// Ready keys that no worker took are not waited for: workers that call [`get`](Self::get)
    /// still receive them, but with no worker left the drain returns as soon as nothing is
    /// processing. See [`Queue::shutdown_with_drain`](crate::Queue::shutdown_with_drain).
    #[doc(alias = "ShutDownWithDrain")]
    pub async fn shutdown_with_drain(&self) {
        self.begin_shutdown(true);
        let shared = &self.shared;
        let mut notified = std::pin::pin!(shared.drained.notified());
        loop {
            notified.as_mut().enable();
            {
                let state = shared.state.lock();
                if !state.drain || state.processing == 0 {
                    return;
                }
            }
            notified.as_mut().await;
            notified.set(shared.drained.notified());
        }
    }

    /// Whether the queue is shutting down.
    #[doc(alias = "ShuttingDown")]
    pub fn is_shutting_down(&self) -> bool {
        self.shared.state.lock().shutting_down
    }

    /// Number of entries in the waiting heap, and number of waiting keys (tests check that the
    /// first is bounded by the second).
    ///
    /// # Panics
    ///
    /// If a waiting key's heap slot does not hold that key and its ready time.
    #[cfg(test)]
    pub(crate) fn heap_and_waiting(&self) -> (usize, usize) {
        let state = self.shared.state.lock();
        let mut waiting = 0;
        for (key, item) in &state.items {
            let Some(queued) = item.queued else { continue };
            let Some(ready_at) = queued.ready_at else {
                continue;
            };
            waiting += 1;
            assert!(
                state.waiting.get(queued.slot) == Some((key, ready_at)),
                "a waiting key is not in its heap slot"
            );
        }
        (state.waiting.len(), waiting)
    }

    fn begin_shutdown(&self, drain: bool) {
        let shared = &self.shared;
        let mut state = shared.state.lock();
        state.shutting_down = true;
        state.drain = drain;
        state.drop_waiting();
        let wake = state.waiters.notify_all();
        drop(state);
        drop(wake);
        shared.drained.notify_waiters();
        shared.timer.wake();
    }
}

// === helpers under the lock ===

/// What a successful look at the queue took, for the work done after unlocking.
struct Taken<K> {
    /// `None`: shut down and finished.
    item: Option<(K, i32)>,
    added_at: Option<Instant>,
    /// Getters to wake because the queue just finished.
    wake: Wakers,
}

/// One look at the queue: the next key (marked processing), `None` inside when finished, or
/// nothing to take yet.
fn take<K: Key>(state: &mut State<K>, now: Option<Instant>) -> Option<Taken<K>> {
    match state.pop(now) {
        Some((key, priority, added_at)) => Some(Taken {
            item: Some((key, priority)),
            added_at,
            wake: finish(state),
        }),
        None if state.is_finished() => Some(Taken {
            item: None,
            added_at: None,
            wake: Wakers::default(),
        }),
        None => None,
    }
}

/// If the queue just finished, the getters to wake so that they return `None`.
fn finish<K: Key>(state: &mut State<K>) -> Wakers {
    if state.is_finished() && !state.waiters.is_empty() {
        state.waiters.notify_all()
    } else {
        Wakers::default()
    }
}

impl<K: Key> Expire for Shared<K> {
    fn expire(&self, now: Instant) -> Next {
        let timestamp = self.metrics.as_ref().map(|_| now);
        let mut state = self.state.lock();
        if state.shutting_down {
            return Next::Stop;
        }
        let changes = state.expire(now, timestamp);
        let next = state.scheduled.map_or(Next::Idle, Next::At);
        let mut wake = Wakers::default();
        for _ in 0..changes.readied {
            match state.waiters.notify_one() {
                Some(waiter) => wake.extend(Some(waiter)),
                None => break,
            }
        }
        drop(state);
        drop(wake);
        if let Some(metrics) = &self.metrics {
            for _ in 0..changes.became_ready {
                metrics.add();
            }
        }
        next
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

impl<K: Key> Default for PriorityQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Clone for PriorityQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for PriorityQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("PriorityQueue")
            .field("ready", &state.ready.len())
            .field("waiting", &state.waiting.len())
            .field("items", &state.items.len())
            .field("processing", &state.processing)
            .field("shutting_down", &state.shutting_down)
            .finish_non_exhaustive()
    }
}
