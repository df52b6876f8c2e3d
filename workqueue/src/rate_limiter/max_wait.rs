//! Another limiter's delay, capped.

use std::time::Duration;

use super::RateLimiter;

/// Caps the delays of another limiter at `max_wait`.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::{ItemExponentialFailureRateLimiter, RateLimiter, WithMaxWaitRateLimiter};
///
/// let limiter = WithMaxWaitRateLimiter::new(
///     ItemExponentialFailureRateLimiter::new(Duration::from_secs(1), Duration::from_secs(1000)),
///     Duration::from_secs(3),
/// );
/// assert_eq!(limiter.when(&"a"), Duration::from_secs(1));
/// assert_eq!(limiter.when(&"a"), Duration::from_secs(2));
/// assert_eq!(limiter.when(&"a"), Duration::from_secs(3)); // 4 s, capped
/// ```
#[doc(alias = "TypedWithMaxWaitRateLimiter")]
#[derive(Debug)]
pub struct WithMaxWaitRateLimiter<L> {
    limiter: L,
    max_wait: Duration,
}

impl<L> WithMaxWaitRateLimiter<L> {
    /// `limiter`'s delays, never longer than `max_wait`.
    pub fn new(limiter: L, max_wait: Duration) -> Self {
        Self { limiter, max_wait }
    }
}

impl<K, L: RateLimiter<K>> RateLimiter<K> for WithMaxWaitRateLimiter<L> {
    fn when(&self, item: &K) -> Duration {
        self.limiter.when(item).min(self.max_wait)
    }

    fn forget(&self, item: &K) {
        self.limiter.forget(item);
    }

    fn num_requeues(&self, item: &K) -> usize {
        self.limiter.num_requeues(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BucketRateLimiter, ItemExponentialFailureRateLimiter, default_controller_rate_limiter,
    };

    #[test]
    fn caps_but_delegates_counting() {
        let limiter = WithMaxWaitRateLimiter::new(
            ItemExponentialFailureRateLimiter::new(
                Duration::from_secs(1),
                Duration::from_secs(1000),
            ),
            Duration::from_secs(10),
        );
        let delays: Vec<_> = (0..6).map(|_| limiter.when(&"k").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(limiter.num_requeues(&"k"), 6);
        limiter.forget(&"k");
        assert_eq!(limiter.num_requeues(&"k"), 0);
        assert_eq!(limiter.when(&"k"), Duration::from_secs(1));
    }

    // client-go: TestWithMaxWaitRateLimiter caps the default controller limiter.
    #[tokio::test(start_paused = true)]
    async fn caps_the_default_controller_limiter() {
        let limiter = WithMaxWaitRateLimiter::new(
            default_controller_rate_limiter(),
            Duration::from_millis(500),
        );
        for key in 0..100 {
            assert_eq!(limiter.when(&key), Duration::from_millis(5));
        }
        // The bucket would ask for 100 ms, 200 ms, ... 1 s: capped at 500 ms from the 5th on.
        let delays: Vec<_> = (100..110)
            .map(|key| limiter.when(&key).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 300, 400, 500, 500, 500, 500, 500, 500]);
    }

    #[test]
    fn caps_infinite_waits() {
        let limiter =
            WithMaxWaitRateLimiter::new(BucketRateLimiter::new(10.0, 0), Duration::from_secs(1));
        assert_eq!(
            RateLimiter::<()>::when(&limiter, &()),
            Duration::from_secs(1)
        );
    }
}
