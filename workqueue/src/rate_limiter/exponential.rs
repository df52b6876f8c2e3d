//! Per-key exponential backoff.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use super::RateLimiter;
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
    failures: Mutex<HashMap<K, u32, RandomState>>,
    /// Number of tracked keys, so that forgetting untracked keys (the common case) takes no lock.
    tracked: AtomicUsize,
    base: Duration,
    max: Duration,
}

impl<K: Key> ItemExponentialFailureRateLimiter<K> {
    /// Backoff from `base`, doubling per failure, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            failures: Mutex::new(HashMap::default()),
            tracked: AtomicUsize::new(0),
            base,
            max,
        }
    }
}

impl<K: Key> RateLimiter<K> for ItemExponentialFailureRateLimiter<K> {
    fn when(&self, item: &K) -> Duration {
        let exp = {
            let mut failures = self.failures.lock();
            let count = match failures.get_mut(item) {
                Some(count) => count,
                None => {
                    self.tracked.fetch_add(1, Ordering::Relaxed);
                    failures.entry(item.clone()).or_insert(0)
                }
            };
            let exp = *count;
            *count = count.saturating_add(1);
            exp
        };
        // As client-go: compute in floating point so that large exponents cannot overflow.
        let backoff = self.base.as_nanos() as f64 * 2f64.powi(exp.min(i32::MAX as u32) as i32);
        if !backoff.is_finite() || backoff > i64::MAX as f64 {
            return self.max;
        }
        let calculated = Duration::from_nanos(backoff as u64);
        calculated.min(self.max)
    }

    fn forget(&self, item: &K) {
        // A `when` for this key that happened before (through the queue) is visible here.
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut failures = self.failures.lock();
        if failures.remove(item).is_some() {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn num_requeues(&self, item: &K) -> usize {
        self.failures
            .lock()
            .get(item)
            .map_or(0, |&count| count as usize)
    }
}

impl<K> fmt::Debug for ItemExponentialFailureRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemExponentialFailureRateLimiter")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("tracked", &self.failures.lock().len())
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
