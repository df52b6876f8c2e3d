//! Per-key exponential backoff.

use std::fmt;
use std::time::Duration;

use super::RateLimiter;
use super::failures::Failures;
use crate::Key;

/// Waits `base · 2^n` for a key's `n`-th consecutive failure (counting from 0), capped at `max`.
///
/// Failures are counted per key; [`forget`](RateLimiter::forget) resets a key. With client-go's
/// controller defaults (5 ms, 1000 s): 5 ms, 10 ms, 20 ms, … 1000 s.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::{ItemExponentialFailureRateLimiter, RateLimiter};
///
/// let limiter = ItemExponentialFailureRateLimiter::new(Duration::from_millis(5), Duration::from_secs(1000));
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(10));
/// assert_eq!(limiter.when(&"b"), Duration::from_millis(5));
/// limiter.forget(&"a");
/// assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
/// ```
#[doc(alias = "TypedItemExponentialFailureRateLimiter")]
pub struct ItemExponentialFailureRateLimiter<K> {
    failures: Failures<K>,
    base: Duration,
    max: Duration,
}

impl<K: Key> ItemExponentialFailureRateLimiter<K> {
    /// Backoff from `base`, doubling per failure, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            failures: Failures::new(),
            base,
            max,
        }
    }
}

impl<K: Key> RateLimiter<K> for ItemExponentialFailureRateLimiter<K> {
    fn when(&self, item: &K) -> Duration {
        let exp = self.failures.record(item) - 1;
        // As client-go: compute in floating point so that large exponents cannot overflow.
        let backoff = self.base.as_nanos() as f64 * 2f64.powi(exp.min(i32::MAX as usize) as i32);
        if !backoff.is_finite() || backoff > i64::MAX as f64 {
            return self.max;
        }
        let calculated = Duration::from_nanos(backoff as u64);
        calculated.min(self.max)
    }

    fn forget(&self, item: &K) {
        self.failures.forget(item);
    }

    fn num_requeues(&self, item: &K) -> usize {
        self.failures.get(item)
    }
}

impl<K: Key> fmt::Debug for ItemExponentialFailureRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemExponentialFailureRateLimiter")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("tracked", &self.failures.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    // client-go: TestItemExponentialFailureRateLimiter.
    #[test]
    fn doubles_per_failure_and_forget_resets() {
        let limiter = ItemExponentialFailureRateLimiter::new(MS, Duration::from_secs(1));
        for expected in [1, 2, 4, 8, 16] {
            assert_eq!(limiter.when(&"one"), expected * MS);
        }
        assert_eq!(limiter.num_requeues(&"one"), 5);
        assert_eq!(limiter.when(&"two"), MS);
        assert_eq!(limiter.when(&"two"), 2 * MS);
        assert_eq!(limiter.num_requeues(&"two"), 2);
        limiter.forget(&"one");
        assert_eq!(limiter.num_requeues(&"one"), 0);
        assert_eq!(limiter.when(&"one"), MS);
    }

    #[test]
    fn controller_defaults_are_5ms_doubling_capped_at_1000s() {
        let limiter = ItemExponentialFailureRateLimiter::new(5 * MS, Duration::from_secs(1000));
        let delays: Vec<Duration> = (0..20).map(|_| limiter.when(&"k")).collect();
        let mut expected = 5 * MS;
        for (attempt, delay) in delays.iter().enumerate() {
            assert_eq!(
                *delay,
                expected.min(Duration::from_secs(1000)),
                "attempt {attempt}"
            );
            expected *= 2;
        }
        // 5 ms · 2^18 = 1310.72 s > 1000 s: capped from the 19th failure on.
        assert_eq!(delays[17], Duration::from_micros(655_360_000));
        assert_eq!(delays[18], Duration::from_secs(1000));
    }

    // client-go: TestItemExponentialFailureRateLimiterOverFlow.
    #[test]
    fn huge_exponents_do_not_overflow() {
        let limiter = ItemExponentialFailureRateLimiter::new(MS, Duration::from_secs(1000));
        for _ in 0..5 {
            limiter.when(&"one");
        }
        assert_eq!(limiter.when(&"one"), 32 * MS);
        for _ in 0..1000 {
            limiter.when(&"overflow1");
        }
        assert_eq!(limiter.when(&"overflow1"), Duration::from_secs(1000));

        let limiter = ItemExponentialFailureRateLimiter::new(
            Duration::from_secs(60),
            Duration::from_secs(1000 * 3600),
        );
        for _ in 0..2 {
            limiter.when(&"two");
        }
        assert_eq!(limiter.when(&"two"), Duration::from_secs(4 * 60));
        for _ in 0..1000 {
            limiter.when(&"overflow2");
        }
        assert_eq!(limiter.when(&"overflow2"), Duration::from_secs(1000 * 3600));
    }
}
