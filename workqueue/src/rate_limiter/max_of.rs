//! The longest delay of several limiters.

use std::fmt;
use std::time::Duration;

use super::RateLimiter;

/// Asks every limiter and waits for the longest delay; requeues are the largest count.
///
/// Every limiter sees every call (so each tracks its own failures), as in client-go.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::{
///     BucketRateLimiter, ItemExponentialFailureRateLimiter, MaxOfRateLimiter, RateLimiter,
/// };
///
/// let limiter = MaxOfRateLimiter::new()
///     .with(ItemExponentialFailureRateLimiter::new(Duration::from_millis(5), Duration::from_secs(1000)))
///     .with(BucketRateLimiter::new(10.0, 100));
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
/// ```
#[doc(alias = "TypedMaxOfRateLimiter")]
pub struct MaxOfRateLimiter<K> {
    limiters: Vec<Box<dyn RateLimiter<K>>>,
}

impl<K> MaxOfRateLimiter<K> {
    /// No limiters yet (delays are zero until some are added).
    pub fn new() -> Self {
        Self {
            limiters: Vec::new(),
        }
    }

    /// Adds a limiter.
    #[must_use]
    pub fn with(mut self, limiter: impl RateLimiter<K> + 'static) -> Self {
        self.limiters.push(Box::new(limiter));
        self
    }
}

impl<K> Default for MaxOfRateLimiter<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> From<Vec<Box<dyn RateLimiter<K>>>> for MaxOfRateLimiter<K> {
    fn from(limiters: Vec<Box<dyn RateLimiter<K>>>) -> Self {
        Self { limiters }
    }
}

impl<K> RateLimiter<K> for MaxOfRateLimiter<K> {
    fn when(&self, item: &K) -> Duration {
        self.limiters
            .iter()
            .map(|limiter| limiter.when(item))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn forget(&self, item: &K) {
        for limiter in &self.limiters {
            limiter.forget(item);
        }
    }

    fn num_requeues(&self, item: &K) -> usize {
        self.limiters
            .iter()
            .map(|limiter| limiter.num_requeues(item))
            .max()
            .unwrap_or(0)
    }
}

impl<K> fmt::Debug for MaxOfRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxOfRateLimiter")
            .field("limiters", &self.limiters.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemExponentialFailureRateLimiter, ItemFastSlowRateLimiter};

    // client-go: TestMaxOfRateLimiter.
    #[test]
    fn takes_the_longest_delay() {
        let fast = Duration::from_millis(5);
        let limiter = MaxOfRateLimiter::new()
            .with(ItemFastSlowRateLimiter::new(
                fast,
                Duration::from_secs(3),
                3,
            ))
            .with(ItemExponentialFailureRateLimiter::new(
                Duration::from_millis(1),
                Duration::from_secs(1),
            ));
        for expected in [
            fast,
            fast,
            fast,
            Duration::from_secs(3),
            Duration::from_secs(3),
        ] {
            assert_eq!(limiter.when(&"one"), expected);
        }
        assert_eq!(limiter.num_requeues(&"one"), 5);
        assert_eq!(limiter.when(&"two"), fast);
        assert_eq!(limiter.when(&"two"), fast);
        assert_eq!(limiter.num_requeues(&"two"), 2);
        limiter.forget(&"one");
        assert_eq!(limiter.num_requeues(&"one"), 0);
        assert_eq!(limiter.when(&"one"), fast);
    }

    #[test]
    fn exponential_overtakes_fast_slow() {
        let limiter: MaxOfRateLimiter<u8> = vec![
            Box::new(ItemFastSlowRateLimiter::new(
                Duration::ZERO,
                Duration::from_millis(3),
                10,
            )) as Box<dyn RateLimiter<u8>>,
            Box::new(ItemExponentialFailureRateLimiter::new(
                Duration::from_millis(1),
                Duration::from_secs(1),
            )),
        ]
        .into();
        let delays: Vec<_> = (0..5).map(|_| limiter.when(&0).as_millis()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn empty_never_waits() {
        let limiter = MaxOfRateLimiter::<u8>::default();
        assert_eq!(limiter.when(&0), Duration::ZERO);
        assert_eq!(limiter.num_requeues(&0), 0);
    }
}
