//! Fast retries for the first attempts, then slow ones.

use std::fmt;
use std::time::Duration;

use super::RateLimiter;
use super::failures::Failures;
use crate::Key;

/// Waits `fast` for a key's first `max_fast_attempts` failures, then `slow`.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::{ItemFastSlowRateLimiter, RateLimiter};
///
/// let limiter = ItemFastSlowRateLimiter::new(Duration::from_millis(5), Duration::from_secs(10), 2);
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
/// assert_eq!(limiter.when(&"a"), Duration::from_secs(10));
/// ```
#[doc(alias = "TypedItemFastSlowRateLimiter")]
pub struct ItemFastSlowRateLimiter<K> {
    failures: Failures<K>,
    fast: Duration,
    slow: Duration,
    max_fast_attempts: usize,
}

impl<K: Key> ItemFastSlowRateLimiter<K> {
    /// `fast` for the first `max_fast_attempts` failures of a key, `slow` after.
    pub fn new(fast: Duration, slow: Duration, max_fast_attempts: usize) -> Self {
        Self {
            failures: Failures::new(),
            fast,
            slow,
            max_fast_attempts,
        }
    }
}

impl<K: Key> RateLimiter<K> for ItemFastSlowRateLimiter<K> {
    fn when(&self, item: &K) -> Duration {
        let attempts = self.failures.record(item);
        if attempts <= self.max_fast_attempts {
            self.fast
        } else {
            self.slow
        }
    }

    fn forget(&self, item: &K) {
        self.failures.forget(item);
    }

    fn num_requeues(&self, item: &K) -> usize {
        self.failures.get(item)
    }
}

impl<K> fmt::Debug for ItemFastSlowRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemFastSlowRateLimiter")
            .field("fast", &self.fast)
            .field("slow", &self.slow)
            .field("max_fast_attempts", &self.max_fast_attempts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // client-go: TestItemFastSlowRateLimiter.
    #[test]
    fn switches_to_slow_after_max_fast_attempts() {
        let fast = Duration::from_millis(5);
        let slow = Duration::from_secs(10);
        let limiter = ItemFastSlowRateLimiter::new(fast, slow, 3);
        for expected in [fast, fast, fast, slow, slow] {
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
    fn zero_fast_attempts_is_always_slow() {
        let limiter = ItemFastSlowRateLimiter::new(Duration::ZERO, Duration::from_secs(1), 0);
        assert_eq!(limiter.when(&1), Duration::from_secs(1));
    }
}
