//! [`WorkQueue`]: what a controller needs from a queue, whichever queue it is.

use std::future::Future;
use std::time::Duration;

use crate::{Key, PriorityQueue, RateLimitingQueue};

/// The rate-limiting queue interface shared by [`RateLimitingQueue`] and [`PriorityQueue`], so
/// that a controller can be generic over its queue (as controller-runtime's
/// `TypedRateLimitingInterface`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use ferrokube_workqueue::{PriorityQueue, RateLimitingQueue, WorkQueue};
///
/// async fn drain_one<Q: WorkQueue<u32>>(queue: Q) -> Option<u32> {
///     queue.add(7);
///     let key = queue.get().await?;
///     queue.forget(&key);
///     queue.done(&key);
///     Some(key)
/// }
/// assert_eq!(drain_one(RateLimitingQueue::default()).await, Some(7));
/// assert_eq!(drain_one(PriorityQueue::new()).await, Some(7));
/// # }
/// ```
#[doc(alias = "RateLimitingInterface")]
#[doc(alias = "TypedRateLimitingInterface")]
pub trait WorkQueue<K: Key>: Clone + Send + Sync + 'static {
    /// Marks `key` as needing processing.
    fn add(&self, key: K);
    /// Adds `key` once `delay` has passed.
    fn add_after(&self, key: K, delay: Duration);
    /// Adds `key` after the rate limiter's delay.
    fn add_rate_limited(&self, key: K);
    /// Waits for a key to process; `None` after shutdown once nothing is left.
    fn get(&self) -> impl Future<Output = Option<K>> + Send;
    /// Marks `key` as processed.
    fn done(&self, key: &K);
    /// Resets `key`'s backoff.
    fn forget(&self, key: &K);
    /// How many times `key` was rate-limited since it was last forgotten.
    fn num_requeues(&self, key: &K) -> usize;
    /// Number of keys ready to be handed out.
    fn len(&self) -> usize;
    /// Whether no key is ready to be handed out.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stops accepting keys.
    fn shutdown(&self);
    /// Stops accepting keys and waits until no key is being processed (client-go's
    /// `ShutDownWithDrain`: keys still queued are not waited for).
    fn shutdown_with_drain(&self) -> impl Future<Output = ()> + Send;
    /// Whether the queue is shutting down.
    fn is_shutting_down(&self) -> bool;
}

macro_rules! impl_work_queue {
    ($queue:ident) => {
        impl<K: Key> WorkQueue<K> for $queue<K> {
            fn add(&self, key: K) {
                $queue::add(self, key);
            }
            fn add_after(&self, key: K, delay: Duration) {
                $queue::add_after(self, key, delay);
            }
            fn add_rate_limited(&self, key: K) {
                $queue::add_rate_limited(self, key);
            }
            fn get(&self) -> impl Future<Output = Option<K>> + Send {
                $queue::get(self)
            }
            fn done(&self, key: &K) {
                $queue::done(self, key);
            }
            fn forget(&self, key: &K) {
                $queue::forget(self, key);
            }
            fn num_requeues(&self, key: &K) -> usize {
                $queue::num_requeues(self, key)
            }
            fn len(&self) -> usize {
                $queue::len(self)
            }
            fn shutdown(&self) {
                $queue::shutdown(self);
            }
            fn shutdown_with_drain(&self) -> impl Future<Output = ()> + Send {
                $queue::shutdown_with_drain(self)
            }
            fn is_shutting_down(&self) -> bool {
                $queue::is_shutting_down(self)
            }
        }
    };
}

impl_work_queue!(RateLimitingQueue);
impl_work_queue!(PriorityQueue);
