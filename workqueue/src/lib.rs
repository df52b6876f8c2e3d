//! Rate-limited work queues in the shape of client-go's `util/workqueue` (plus
//! controller-runtime's priority queue), generic over the key type and built for async Rust.
//!
//! A controller turns events into keys, [`add`](RateLimitingQueue::add)s them to a queue, and
//! runs N workers that [`get`](RateLimitingQueue::get) a key, reconcile it, and either
//! [`forget`](RateLimitingQueue::forget) it (success) or
//! [`add_rate_limited`](RateLimitingQueue::add_rate_limited) it (retry later), then mark it
//! [`done`](RateLimitingQueue::done). The queue guarantees what client-go guarantees:
//!
//! * a key is queued at most once (adds collapse), otherwise FIFO;
//! * a key is never handed to two workers at once;
//! * a key added while a worker processes it is handed out again after `done`, so no change is
//!   missed;
//! * after [`shutdown`](RateLimitingQueue::shutdown) adds are ignored, queued keys are still handed
//!   out, and `get` returns `None` once nothing is left;
//!   [`shutdown_with_drain`](RateLimitingQueue::shutdown_with_drain) also waits until no key is
//!   being processed (as client-go's, it does not wait for keys still queued: the workers get
//!   those from `get` until it returns `None`).
//!
//! | queue | client-go / controller-runtime |
//! |---|---|
//! | [`Queue`] | `workqueue.TypedInterface` |
//! | [`DelayingQueue`] | `workqueue.TypedDelayingInterface` |
//! | [`RateLimitingQueue`] | `workqueue.TypedRateLimitingInterface` |
//! | [`PriorityQueue`] | `priorityqueue.PriorityQueue` |
//!
//! Rate limiters implement [`RateLimiter`]: [`ItemExponentialFailureRateLimiter`],
//! [`BucketRateLimiter`], [`ItemFastSlowRateLimiter`], [`MaxOfRateLimiter`],
//! [`WithMaxWaitRateLimiter`], and [`default_controller_rate_limiter`]. Metrics go through a
//! [`metrics::MetricsProvider`], e.g. [`metrics::PrometheusMetrics`]. [`WorkQueue`] abstracts over
//! the rate-limiting and priority queues.
//!
//! Keys are any `Clone + Eq + Hash + Send + Sync + 'static` type ([`Key`]). A key is cloned once
//! per add of a new key; `Arc<str>` or small `Copy` keys make that free.
//!
//! Delays use Tokio's timer, so queues that delay keys need a Tokio runtime with time enabled.
//!
//! # Example: N workers, retrying failures with the rate limiter
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrokube_workqueue::{RateLimitingQueue, default_controller_rate_limiter};
//!
//! #[derive(Debug)]
//! struct Failed;
//!
//! async fn reconcile(key: &str) -> Result<(), Failed> {
//!     println!("reconciling {key}");
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     const WORKERS: usize = 4;
//!     const MAX_RETRIES: usize = 5;
//!     let queue = RateLimitingQueue::<String>::new(default_controller_rate_limiter());
//!
//!     let workers: Vec<_> = (0..WORKERS)
//!         .map(|_| {
//!             let queue = queue.clone();
//!             tokio::spawn(async move {
//!                 while let Some(key) = queue.get().await {
//!                     match reconcile(&key).await {
//!                         Ok(()) => queue.forget(&key),
//!                         Err(error) if queue.num_requeues(&key) < MAX_RETRIES => {
//!                             eprintln!("retrying {key}: {error:?}");
//!                             queue.add_rate_limited(key.clone());
//!                         }
//!                         Err(error) => {
//!                             eprintln!("giving up on {key}: {error:?}");
//!                             queue.forget(&key);
//!                         }
//!                     }
//!                     queue.done(&key);
//!                 }
//!             })
//!         })
//!         .collect();
//!
//!     // Event handlers add keys; here, a few by hand.
//!     for name in ["web", "db", "cache"] {
//!         queue.add(format!("default/{name}"));
//!     }
//!     queue.add_after("default/web".to_owned(), Duration::from_secs(30)); // periodic resync
//!
//!     tokio::signal::ctrl_c().await.unwrap();
//!     queue.shutdown_with_drain().await; // wait for the keys being processed
//!     // The workers still get what is queued, then `None`.
//!     for worker in workers {
//!         worker.await.unwrap();
//!     }
//! }
//! ```
//!
//! A version of this example that runs to completion is on [`RateLimitingQueue`], and as
//! `cargo run -p ferrokube-workqueue --example workers`.

mod config;
mod delaying;
mod due;
mod entries;
mod interface;
pub mod metrics;
mod priority;
mod queue;
pub mod rate_limiter;
mod rate_limiting;
mod timer;
mod waiters;

#[cfg(test)]
mod tests;

use std::hash::Hash;

pub use self::config::Config;
pub use self::delaying::DelayingQueue;
pub use self::interface::WorkQueue;
pub use self::priority::{AddOpts, PriorityQueue};
pub use self::queue::Queue;
pub use self::rate_limiter::{
    BucketRateLimiter, ItemExponentialFailureRateLimiter, ItemFastSlowRateLimiter,
    MaxOfRateLimiter, RateLimiter, WithMaxWaitRateLimiter, default_controller_rate_limiter,
    default_item_based_rate_limiter,
};
pub use self::rate_limiting::RateLimitingQueue;

/// What a queue key must be: cheap enough to clone, hashable, and shareable across workers.
///
/// Implemented for every such type; not meant to be implemented by hand.
pub trait Key: Clone + Eq + Hash + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> Key for T {}
