//! The token bucket, as `golang.org/x/time/rate`'s `Limiter`: [`TokenBucket`] is the primitive
//! (client-go's `util/flowcontrol` and workqueue share `rate.Limiter` the same way: the client
//! crate throttles requests and filters event spam with it), [`BucketRateLimiter`] the work
//! queue's rate limiter on top of it.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::RateLimiter;

/// `golang.org/x/time/rate`'s `Limiter` without its lock: `burst` tokens, refilled at a steady
/// rate, starting full.
///
/// [`reserve_at`](Self::reserve_at) is `Limiter.Reserve().Delay()` (client-go's
/// `BucketRateLimiter` and `flowcontrol.NewTokenBucketRateLimiter`'s `Wait`): it always takes a
/// token, going into debt, and says how long until that token would have been there.
/// [`allow_at`](Self::allow_at) is `Limiter.Allow()` (flowcontrol's `TryAccept`): it takes a
/// token only if one is there now.
///
/// The bucket is kept as time credit in whole nanoseconds (one token is one refill interval of
/// credit) rather than as fractional tokens, so refills are exact: with one token every 300 s,
/// the token is back after exactly 300 s. Delays agree with `rate.Limiter`'s to the nanosecond.
///
/// Time is passed in (Tokio's [`Instant`], so paused time in tests applies); wrap the bucket in
/// a lock to share it, as [`BucketRateLimiter`] does.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_workqueue::rate_limiter::TokenBucket;
/// use tokio::time::Instant;
///
/// let mut bucket = TokenBucket::new(10.0, 2);
/// let now = Instant::now();
/// assert_eq!(bucket.reserve_at(now), Duration::ZERO);
/// assert!(bucket.allow_at(now));
/// assert!(!bucket.allow_at(now), "the burst is spent");
/// assert_eq!(bucket.reserve_at(now), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(alias = "Limiter")]
#[doc(alias = "tokenBucketRateLimiter")]
pub struct TokenBucket {
    rate: Rate,
    burst: u32,
    /// Time credit in nanoseconds (tokens × interval); negative after reservations in debt.
    credit: i64,
    /// When the credit was last brought up to date; `None`: never used (the bucket is full).
    last: Option<Instant>,
}

/// How fast tokens come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rate {
    /// `rate.Inf`: every request goes through at once; the burst is ignored.
    Unlimited,
    /// One token every this many nanoseconds (at least 1).
    Every(u64),
    /// Limit 0: the burst is handed out once, then nothing more.
    Never,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `qps` per second, as `rate.NewLimiter(qps,
    /// burst)`: `f64::INFINITY` never waits, `0` (or negative, or NaN) hands out the burst once
    /// and never refills, and a `burst` of 0 with a finite `qps` can never hand out a token.
    pub fn new(qps: f64, burst: u32) -> Self {
        let rate = if qps.is_nan() || qps <= 0.0 {
            Rate::Never
        } else if qps == f64::INFINITY {
            Rate::Unlimited
        } else {
            let nanos = (1e9 / qps).round();
            Rate::Every(if nanos >= u64::MAX as f64 {
                u64::MAX
            } else {
                (nanos as u64).max(1)
            })
        };
        Self::with_rate(rate, burst)
    }

    /// A full bucket of `burst` tokens, one more every `interval` (`rate.Every`); a zero
    /// interval never waits.
    pub fn every(interval: Duration, burst: u32) -> Self {
        let rate = match u64::try_from(interval.as_nanos()) {
            Ok(0) => Rate::Unlimited,
            Ok(nanos) => Rate::Every(nanos),
            Err(_) => Rate::Every(u64::MAX),
        };
        Self::with_rate(rate, burst)
    }

    fn with_rate(rate: Rate, burst: u32) -> Self {
        let mut bucket = Self {
            rate,
            burst,
            credit: 0,
            last: None,
        };
        bucket.credit = bucket.capacity();
        bucket
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Takes one token at `now`, going into debt if the bucket is empty, and returns how long
    /// until that token is due (`rate.Limiter.ReserveN(now, 1).DelayFrom(now)`); a token that
    /// can never come (limit 0 with the burst spent, or a burst of 0) is `Duration::MAX`, and
    /// such a failed reservation takes nothing.
    #[doc(alias = "Reserve")]
    pub fn reserve_at(&mut self, now: Instant) -> Duration {
        let interval = match self.rate {
            Rate::Unlimited => return Duration::ZERO,
            Rate::Never => {
                return if self.take_from_burst() {
                    Duration::ZERO
                } else {
                    Duration::MAX
                };
            }
            Rate::Every(_) if self.burst == 0 => return Duration::MAX,
            Rate::Every(interval) => interval,
        };
        let credit = self.credit_at(now).saturating_sub_unsigned(interval);
        self.credit = credit;
        self.last = Some(now);
        if credit >= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(credit.unsigned_abs())
        }
    }

    /// Takes one token at `now` if one is there, without going into debt (`rate.Limiter.Allow`,
    /// flowcontrol's `TryAccept`).
    #[doc(alias = "Allow")]
    #[doc(alias = "TryAccept")]
    pub fn allow_at(&mut self, now: Instant) -> bool {
        let interval = match self.rate {
            Rate::Unlimited => return true,
            Rate::Never => return self.take_from_burst(),
            Rate::Every(_) if self.burst == 0 => return false,
            Rate::Every(interval) => interval,
        };
        let credit = self.credit_at(now).saturating_sub_unsigned(interval);
        if credit < 0 {
            return false;
        }
        self.credit = credit;
        self.last = Some(now);
        true
    }

    /// Limit 0: `rate.Limiter` hands out its burst once.
    fn take_from_burst(&mut self) -> bool {
        if self.burst >= 1 {
            self.burst -= 1;
            true
        } else {
            false
        }
    }

    /// `rate.Limiter.advance`: the credit at `now`, refilled for the time since the last use
    /// (none if `now` is earlier), up to the burst.
    fn credit_at(&self, now: Instant) -> i64 {
        let Some(last) = self.last else {
            return self.capacity();
        };
        let elapsed = now.saturating_duration_since(last).as_nanos();
        let elapsed = i64::try_from(elapsed).unwrap_or(i64::MAX);
        self.credit.saturating_add(elapsed).min(self.capacity())
    }

    /// The credit of a full bucket.
    fn capacity(&self) -> i64 {
        match self.rate {
            Rate::Every(interval) => {
                let nanos = u128::from(interval) * u128::from(self.burst);
                i64::try_from(nanos).unwrap_or(i64::MAX)
            }
            Rate::Unlimited | Rate::Never => 0,
        }
    }
}

/// A token bucket shared by all keys: `burst` attempts at once, then one every `1/qps` seconds.
///
/// Each [`when`](RateLimiter::when) reserves a token and returns how long until it is available,
/// exactly as `rate.Limiter.Reserve().Delay()` does in client-go's `BucketRateLimiter`: the bucket
/// starts full, refills continuously at `qps`, and reservations may go into debt (see
/// [`TokenBucket`]). Keys are not tracked: [`forget`](RateLimiter::forget) does nothing and
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
    bucket: Mutex<TokenBucket>,
}

impl BucketRateLimiter {
    /// A bucket of `burst` tokens refilled at `qps` per second (client-go's default: 10, 100);
    /// see [`TokenBucket::new`] for infinite, zero and burstless rates.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Mutex::new(TokenBucket::new(qps, burst)),
        }
    }

    /// [`when`](RateLimiter::when) at an explicit instant.
    fn reserve_at(&self, now: Instant) -> Duration {
        self.bucket.lock().reserve_at(now)
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
        f.debug_struct("BucketRateLimiter")
            .field("bucket", &*self.bucket.lock())
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
        assert_eq!(burstless.reserve_at(now), Duration::MAX);
        let mut burstless = TokenBucket::new(10.0, 0);
        assert!(!burstless.allow_at(now));
        let mut nan = TokenBucket::new(f64::NAN, 1);
        assert!(nan.allow_at(now));
        assert!(!nan.allow_at(now + Duration::from_secs(100)));
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

    #[test]
    fn allow_takes_a_token_only_when_one_is_there() {
        let mut bucket = TokenBucket::every(Duration::from_secs(300), 2);
        let now = Instant::now();
        assert!(bucket.allow_at(now));
        assert!(bucket.allow_at(now));
        // Refused attempts take nothing: the refill is not set back by them.
        for s in [1, 150, 299] {
            assert!(!bucket.allow_at(now + Duration::from_secs(s)), "at {s} s");
        }
        assert!(
            bucket.allow_at(now + Duration::from_secs(300)),
            "one token after 300 s"
        );
        assert!(!bucket.allow_at(now + Duration::from_secs(300)));
        // A reservation may go into debt; allow then waits for the debt to be paid back.
        let t = now + Duration::from_secs(600);
        assert_eq!(bucket.reserve_at(t), Duration::ZERO);
        assert_eq!(bucket.reserve_at(t), Duration::from_secs(300));
        assert!(!bucket.allow_at(t + Duration::from_secs(299)));
        assert!(bucket.allow_at(t + Duration::from_secs(600)));
    }

    #[test]
    fn refill_intervals_are_exact() {
        // 1/qps is not exact in floating point for many rates (1/49 × 49 < 1); the time credit
        // is: after exactly one interval the token is back, not a nanosecond later.
        for qps in [3.0, 7.0, 49.0, 1.0 / 300.0] {
            let mut bucket = TokenBucket::new(qps, 1);
            let now = Instant::now();
            assert!(bucket.allow_at(now));
            let interval = Duration::from_nanos((1e9 / qps).round() as u64);
            assert!(
                !bucket.allow_at(now + interval - Duration::from_nanos(1)),
                "{qps}"
            );
            assert!(bucket.allow_at(now + interval), "{qps}");
        }
        let mut every = TokenBucket::every(Duration::from_millis(7), 1);
        let now = Instant::now();
        assert_eq!(every.reserve_at(now), Duration::ZERO);
        assert_eq!(every.reserve_at(now), Duration::from_millis(7));
        assert_eq!(
            TokenBucket::every(Duration::ZERO, 0).reserve_at(now),
            Duration::ZERO
        );
    }

    #[test]
    fn earlier_instants_and_huge_bursts_do_not_overflow() {
        let now = Instant::now();
        let mut bucket = TokenBucket::every(Duration::from_secs(3600), u32::MAX);
        assert_eq!(bucket.burst(), u32::MAX);
        for _ in 0..1000 {
            assert_eq!(bucket.reserve_at(now), Duration::ZERO);
        }
        let mut bucket = TokenBucket::new(1.0, 1);
        let later = now + Duration::from_secs(10);
        assert_eq!(bucket.reserve_at(later), Duration::ZERO);
        // A time before the last use adds no credit (as rate.Limiter's advance).
        assert_eq!(bucket.reserve_at(now), Duration::from_secs(1));
    }
}
