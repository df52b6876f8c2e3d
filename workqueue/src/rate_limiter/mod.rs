//! Rate limiters: how long to wait before a key is retried (client-go's `default_rate_limiters.go`).
//!
//! | limiter | delay |
//! |---|---|
//! | [`ItemExponentialFailureRateLimiter`] | `base · 2^failures` per key, capped |
//! | [`BucketRateLimiter`] | token bucket shared by all keys (overall qps) |
//! | [`ItemFastSlowRateLimiter`] | `fast` for the first attempts of a key, then `slow` |
//! | [`MaxOfRateLimiter`] | the longest delay of several limiters |
//! | [`WithMaxWaitRateLimiter`] | another limiter's delay, capped |
//!
//! [`default_controller_rate_limiter`] is client-go's `DefaultControllerRateLimiter`.

mod bucket;
mod exponential;
mod failures;
mod fast_slow;
mod max_of;
mod max_wait;

use std::sync::Arc;
use std::time::Duration;

pub use self::bucket::{BucketRateLimiter, TokenBucket};
pub use self::exponential::ItemExponentialFailureRateLimiter;
pub use self::fast_slow::ItemFastSlowRateLimiter;
pub use self::max_of::MaxOfRateLimiter;
pub use self::max_wait::WithMaxWaitRateLimiter;
use crate::Key;

/// Decides how long a key waits before it is retried.
#[doc(alias = "TypedRateLimiter")]
pub trait RateLimiter<K>: Send + Sync {
    /// How long `item` should wait before its next attempt; records one more failure.
    #[doc(alias = "When")]
    fn when(&self, item: &K) -> Duration;

    /// Stops tracking `item` (it succeeded, or is given up on): its next delay starts afresh.
    #[doc(alias = "Forget")]
    fn forget(&self, item: &K);

    /// How many times `item` has failed (been passed to [`when`](Self::when)) since it was
    /// last forgotten.
    #[doc(alias = "NumRequeues")]
    fn num_requeues(&self, item: &K) -> usize;
}

impl<K, R: RateLimiter<K> + ?Sized> RateLimiter<K> for Box<R> {
    fn when(&self, item: &K) -> Duration {
        (**self).when(item)
    }
    fn forget(&self, item: &K) {
        (**self).forget(item);
    }
    fn num_requeues(&self, item: &K) -> usize {
        (**self).num_requeues(item)
    }
}

impl<K, R: RateLimiter<K> + ?Sized> RateLimiter<K> for Arc<R> {
    fn when(&self, item: &K) -> Duration {
        (**self).when(item)
    }
    fn forget(&self, item: &K) {
        (**self).forget(item);
    }
    fn num_requeues(&self, item: &K) -> usize {
        (**self).num_requeues(item)
    }
}

/// client-go's default for controllers: the longer of a per-key exponential backoff (5 ms
/// doubling up to 1000 s) and an overall token bucket (10 qps, burst 100).
#[doc(alias = "DefaultControllerRateLimiter")]
#[doc(alias = "DefaultTypedControllerRateLimiter")]
pub fn default_controller_rate_limiter<K: Key>() -> MaxOfRateLimiter<K> {
    MaxOfRateLimiter::new()
        .with(ItemExponentialFailureRateLimiter::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        ))
        .with(BucketRateLimiter::new(10.0, 100))
}

/// client-go's per-key default: exponential backoff from 1 ms up to 1000 s.
#[doc(alias = "DefaultItemBasedRateLimiter")]
#[doc(alias = "DefaultTypedItemBasedRateLimiter")]
pub fn default_item_based_rate_limiter<K: Key>() -> ItemExponentialFailureRateLimiter<K> {
    ItemExponentialFailureRateLimiter::new(Duration::from_millis(1), Duration::from_secs(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn default_controller_limiter_is_max_of_backoff_and_bucket() {
        let limiter = default_controller_rate_limiter::<u32>();
        // The first 100 failures (of distinct keys) are within the burst: backoff decides.
        for key in 0..100 {
            assert_eq!(limiter.when(&key), 5 * MS, "key {key}");
        }
        // Then the bucket is empty and refills at 10/s: 100 ms, 200 ms, ... beyond the backoff.
        assert_eq!(limiter.when(&100), 100 * MS);
        assert_eq!(limiter.when(&101), 200 * MS);
        // The same key backs off exponentially, but the bucket still dominates for now.
        assert_eq!(limiter.when(&0), 300 * MS);
        assert_eq!(limiter.num_requeues(&0), 2);
        limiter.forget(&0);
        assert_eq!(limiter.num_requeues(&0), 0);
    }

    #[test]
    fn default_item_based_limiter_starts_at_one_millisecond() {
        let limiter = default_item_based_rate_limiter::<&str>();
        assert_eq!(limiter.when(&"a"), MS);
        assert_eq!(limiter.when(&"a"), 2 * MS);
    }

    #[test]
    fn boxed_and_shared_limiters_delegate() {
        let boxed: Box<dyn RateLimiter<&str>> = Box::new(default_item_based_rate_limiter());
        assert_eq!(boxed.when(&"a"), MS);
        assert_eq!(boxed.num_requeues(&"a"), 1);
        boxed.forget(&"a");
        assert_eq!(boxed.num_requeues(&"a"), 0);
        let shared = Arc::new(default_item_based_rate_limiter::<&str>());
        assert_eq!(RateLimiter::when(&shared, &"b"), MS);
        assert_eq!(shared.num_requeues(&"b"), 1);
    }
}
