//! [`RateLimitingQueue`]: a [`DelayingQueue`] whose retries a [`RateLimiter`] spaces out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Key;
use crate::config::Config;
use crate::delaying::DelayingQueue;
use crate::rate_limiter::{RateLimiter, default_controller_rate_limiter};

/// The queue controllers use: [`add_rate_limited`](Self::add_rate_limited) retries a key after the
/// delay its [`RateLimiter`] decides, and [`forget`](Self::forget) resets that key's backoff.
///
/// It layers on [`DelayingQueue`] (which layers on [`Queue`](crate::Queue)) as in client-go, so it
/// has their semantics: deduplication, one worker per key at a time, re-adds during processing
/// queued again at `done`, earliest ready time wins.
///
/// The types stay separate, as in client-go, so that a queue that never delays anything carries
/// no timer; each layer is a thin handle over the one below and costs one pointer hop.
///
/// # Example: workers retrying failures
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use ferrokube_workqueue::{RateLimitingQueue, default_controller_rate_limiter};
///
/// let queue = RateLimitingQueue::new(default_controller_rate_limiter());
/// // Each key fails twice before it succeeds.
/// let attempts = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));
/// let workers: Vec<_> = (0..3)
///     .map(|_| {
///         let (queue, attempts) = (queue.clone(), attempts.clone());
///         tokio::spawn(async move {
///             while let Some(key) = queue.get().await {
///                 let attempt = {
///                     let mut attempts = attempts.lock().unwrap();
///                     let n = attempts.entry(key).or_default();
///                     *n += 1;
///                     *n
///                 };
///                 if attempt < 3 {
///                     queue.add_rate_limited(key); // retry after 5 ms, then 10 ms
///                 } else {
///                     queue.forget(&key); // success: reset the backoff
///                 }
///                 queue.done(&key);
///             }
///         })
///     })
///     .collect();
///
/// for key in 0..10 {
///     queue.add(key);
/// }
/// // Let the retries run, then drain.
/// tokio::time::sleep(std::time::Duration::from_secs(1)).await;
/// queue.shutdown_with_drain().await;
/// for worker in workers {
///     worker.await.unwrap();
/// }
/// assert!(attempts.lock().unwrap().values().all(|&n| n == 3));
/// # }
/// ```
#[doc(alias = "RateLimitingInterface")]
#[doc(alias = "TypedRateLimitingInterface")]
pub struct RateLimitingQueue<K> {
    queue: DelayingQueue<K>,
    limiter: Arc<dyn RateLimiter<K>>,
}

impl<K: Key> RateLimitingQueue<K> {
    /// A queue without name or metrics, retrying with `limiter`.
    #[doc(alias = "NewTypedRateLimitingQueue")]
    pub fn new(limiter: impl RateLimiter<K> + 'static) -> Self {
        Self::with_config(limiter, Config::default())
    }

    /// A queue with a name and, optionally, metrics, retrying with `limiter`.
    #[doc(alias = "NewTypedRateLimitingQueueWithConfig")]
    pub fn with_config(limiter: impl RateLimiter<K> + 'static, config: Config) -> Self {
        Self {
            queue: DelayingQueue::with_config(config),
            limiter: Arc::new(limiter),
        }
    }

    /// Adds `key` after the delay the rate limiter gives it (one more failure for the limiter).
    #[doc(alias = "AddRateLimited")]
    pub fn add_rate_limited(&self, key: K) {
        let delay = self.limiter.when(&key);
        self.queue.add_after(key, delay);
    }

    /// Resets `key`'s backoff in the rate limiter. It does not remove the key from the queue: call
    /// [`done`](Self::done) as well.
    #[doc(alias = "Forget")]
    pub fn forget(&self, key: &K) {
        self.limiter.forget(key);
    }

    /// How many times `key` was rate-limited since it was last forgotten.
    #[doc(alias = "NumRequeues")]
    pub fn num_requeues(&self, key: &K) -> usize {
        self.limiter.num_requeues(key)
    }

    /// The rate limiter.
    pub fn rate_limiter(&self) -> &Arc<dyn RateLimiter<K>> {
        &self.limiter
    }

    /// Adds `key` once `delay` has passed. See [`DelayingQueue::add_after`].
    ///
    /// # Panics
    ///
    /// As [`DelayingQueue::add_after`]: without any Tokio runtime for the timer.
    #[doc(alias = "AddAfter")]
    pub fn add_after(&self, key: K, delay: Duration) {
        self.queue.add_after(key, delay);
    }

    /// Marks `key` as needing processing now. See [`Queue::add`](crate::Queue::add).
    pub fn add(&self, key: K) {
        self.queue.add(key);
    }

    /// Waits for a key to process. See [`Queue::get`](crate::Queue::get).
    pub async fn get(&self) -> Option<K> {
        self.queue.get().await
    }

    /// Marks `key` as processed. See [`Queue::done`](crate::Queue::done).
    pub fn done(&self, key: &K) {
        self.queue.done(key);
    }

    /// Number of keys ready to be handed out.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Number of keys waiting for their delay to pass.
    pub fn waiting(&self) -> usize {
        self.queue.waiting()
    }

    /// Stops accepting keys. See [`DelayingQueue::shutdown`].
    #[doc(alias = "ShutDown")]
    pub fn shutdown(&self) {
        self.queue.shutdown();
    }

    /// Stops accepting keys, drops the waiting ones, and waits until no key is being processed
    /// (client-go's `ShutDownWithDrain`). See
    /// [`Queue::shutdown_with_drain`](crate::Queue::shutdown_with_drain).
    #[doc(alias = "ShutDownWithDrain")]
    pub async fn shutdown_with_drain(&self) {
        self.queue.shutdown_with_drain().await;
    }

    /// Whether the queue is shutting down.
    #[doc(alias = "ShuttingDown")]
    pub fn is_shutting_down(&self) -> bool {
        self.queue.is_shutting_down()
    }

    /// Number of entries in the waiting heap.
    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.queue.heap_len()
    }
}

impl<K: Key> Default for RateLimitingQueue<K> {
    /// A queue with [`default_controller_rate_limiter`].
    fn default() -> Self {
        Self::new(default_controller_rate_limiter())
    }
}

impl<K> Clone for RateLimitingQueue<K> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            limiter: Arc::clone(&self.limiter),
        }
    }
}

impl<K> fmt::Debug for RateLimitingQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitingQueue")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}
