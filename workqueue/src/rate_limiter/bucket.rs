//! Overall token bucket, as `golang.org/x/time/rate`'s `Limiter.Reserve`.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::RateLimiter;

/// A token bucket shared by all keys: `burst` attempts at once, then one every `1/qps` seconds.
///
/// Each [`when`](RateLimiter::when) reserves a token and returns how long until it is available,
/// exactly as `rate.Limiter.Reserve().Delay()` does in client-go's `BucketRateLimiter`: the bucket
/// starts full, refills continuously at `qps`, and reservations may go into debt. Keys are not
/// tracked: [`forget`](RateLimiter::forget) does nothing and
/// [`num_requeues`](RateLimiter::num_requeues) is always 0.
///
/// Time is Tokio's clock ([`tokio::time::Instant`]), so paused time in tests applies.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::{BucketRateLimiter, RateLimiter};
///
/// let limiter = BucketRateLimiter::new(10.0, 2);
/// assert_eq!(limiter.when(&"a"), Duration::ZERO);
/// assert_eq!(limiter.when(&"b"), Duration::ZERO);
/// let third = limiter.when(&"c"); // the burst is spent: about 100 ms
/// assert!(third > Duration::from_millis(90) && third <= Duration::from_millis(100));
/// ```
#[doc(alias = "TypedBucketRateLimiter")]
pub struct BucketRateLimiter {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens per second; `INFINITY` never waits, `0` allows only the burst.
    qps: f64,
    burst: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl BucketRateLimiter {
    /// A bucket of `burst` tokens refilled at `qps` per second (client-go's default: 10, 100).
    pub fn new(qps: f64, burst: u32) -> Self {
        let qps = if qps.is_nan() || qps < 0.0 { 0.0 } else { qps };
        Self {
            bucket: Mutex::new(Bucket {
                qps,
                burst,
                tokens: f64::from(burst),
                last: None,
            }),
        }
    }

    /// [`when`](RateLimiter::when) at an explicit instant.
    fn reserve_at(&self, now: Instant) -> Duration {
        self.bucket.lock().reserve(now)
    }
}

impl Bucket {
    fn reserve(&mut self, now: Instant) -> Duration {
        if self.qps == f64::INFINITY {
            return Duration::ZERO;
        }
        if self.qps == 0.0 {
            // rate.Limiter with limit 0: the burst is spent once, then never again.
            if self.burst >= 1 {
                self.burst -= 1;
                return Duration::ZERO;
            }
            return Duration::MAX;
        }
        if self.burst == 0 {
            // A reservation of one token can never succeed: rate's InfDuration.
            return Duration::MAX;
        }
        // advance: refill for the time elapsed since the last reservation, up to the burst.
        let last = self.last.map_or(now, |last| last.min(now));
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.qps).min(f64::from(self.burst)) - 1.0;
        self.tokens = tokens;
        self.last = Some(now);
        if tokens >= 0.0 {
            return Duration::ZERO;
        }
        // durationFromTokens, truncated to nanoseconds as Go's time.Duration conversion does.
        let nanos = 1e9 * (-tokens / self.qps);
        if nanos >= u64::MAX as f64 {
            Duration::MAX
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }
}

impl<K> RateLimiter<K> for BucketRateLimiter {
    fn when(&self, _item: &K) -> Duration {
        self.reserve_at(Instant::now())
    }

    fn forget(&self, _item: &K) {}

    fn num_requeues(&self, _item: &K) -> usize {
        0
    }
}

impl fmt::Debug for BucketRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bucket = self.bucket.lock();
        f.debug_struct("BucketRateLimiter")
            .field("qps", &bucket.qps)
            .field("burst", &bucket.burst)
            .field("tokens", &bucket.tokens)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_then_one_every_tenth_of_a_second() {
        let limiter = BucketRateLimiter::new(10.0, 100);
        let now = Instant::now();
        for attempt in 0..100 {
            assert_eq!(limiter.reserve_at(now), Duration::ZERO, "attempt {attempt}");
        }
        // Reservations go into debt: each waits 1/qps longer than the previous one.
        for n in 1..=5 {
            assert_eq!(limiter.reserve_at(now), n * 100 * MS);
        }
        // One second later 10 tokens came back, which pays back the 5 tokens of debt and more.
        let later = now + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(limiter.reserve_at(later), Duration::ZERO);
        }
        assert_eq!(limiter.reserve_at(later), 100 * MS);
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let limiter = BucketRateLimiter::new(10.0, 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.reserve_at(now), Duration::ZERO);
        }
        let much_later = now + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.reserve_at(much_later), Duration::ZERO);
        }
        assert_eq!(limiter.reserve_at(much_later), 100 * MS);
    }

    #[test]
    fn steady_rate_spacing_after_the_burst() {
        // 2 qps, burst 1: each attempt 500 ms after the previous one is immediate.
        let limiter = BucketRateLimiter::new(2.0, 1);
        let start = Instant::now();
        for step in 0..10 {
            assert_eq!(
                limiter.reserve_at(start + step * 500 * MS),
                Duration::ZERO,
                "step {step}"
            );
        }
        // Two attempts at once: the second waits the full spacing.
        let t = start + Duration::from_secs(10);
        assert_eq!(limiter.reserve_at(t), Duration::ZERO);
        assert_eq!(limiter.reserve_at(t), 500 * MS);
    }

    #[test]
    fn infinite_zero_and_burstless_rates() {
        let now = Instant::now();
        let unlimited = BucketRateLimiter::new(f64::INFINITY, 0);
        assert_eq!(unlimited.reserve_at(now), Duration::ZERO);
        let zero = BucketRateLimiter::new(0.0, 2);
        assert_eq!(zero.reserve_at(now), Duration::ZERO);
        assert_eq!(zero.reserve_at(now), Duration::ZERO);
        assert_eq!(
            zero.reserve_at(now + Duration::from_secs(100)),
            Duration::MAX
        );
        let burstless = BucketRateLimiter::new(10.0, 0);
        assert_eq!(burstless.reserve_at(now), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn when_follows_tokio_time() {
        let limiter = BucketRateLimiter::new(10.0, 1);
        assert_eq!(RateLimiter::<()>::when(&limiter, &()), Duration::ZERO);
        assert_eq!(RateLimiter::<()>::when(&limiter, &()), 100 * MS);
        tokio::time::advance(Duration::from_millis(300)).await;
        // 3 tokens refilled, 1 owed, capped at burst 1: one free attempt, then 100 ms.
        assert_eq!(RateLimiter::<()>::when(&limiter, &()), Duration::ZERO);
        assert_eq!(RateLimiter::<()>::when(&limiter, &()), 100 * MS);
        assert_eq!(RateLimiter::<()>::num_requeues(&limiter, &()), 0);
    }
}
