//! Retrying: client-go's `util/retry` (`RetryOnConflict`) and a jittered exponential
//! [`Backoff`] shared by the other crates, with [`ResettingBackoff`] for loops that never give
//! up (the reflector's).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// client-go's `wait.Backoff`: `duration` grows by `factor` each step, capped at `cap`, for
/// at most `steps` steps; each delay gets up to `jitter` × itself added at random (after the
/// cap, as client-go: a delay is at most `cap` × (1 + `jitter`)).
///
/// As in client-go's `wait.ExponentialBackoff`, `steps` counts attempts: a retry loop makes at
/// most `steps` attempts and waits between two of them, never after the last
/// ([`next_retry`](Self::next_retry), [`on_error`]).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Backoff {
    /// The first delay.
    pub duration: Duration,
    /// Multiplier applied after each step.
    pub factor: f64,
    /// Up to this fraction of the delay is added at random.
    pub jitter: f64,
    /// How many attempts a retry loop makes ([`step`](Self::step) hands out this many delays;
    /// [`next_retry`](Self::next_retry) one fewer).
    pub steps: u32,
    /// The largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// client-go's `retry.DefaultRetry`: 10 ms, ×1, jitter 0.1, 5 steps.
    pub const DEFAULT_RETRY: Self = Self {
        duration: Duration::from_millis(10),
        factor: 1.0,
        jitter: 0.1,
        steps: 5,
        cap: Duration::from_secs(1),
    };

    /// client-go's `retry.DefaultBackoff`: 10 ms, ×5, jitter 0.1, 4 steps.
    pub const DEFAULT_BACKOFF: Self = Self {
        duration: Duration::from_millis(10),
        factor: 5.0,
        jitter: 0.1,
        steps: 4,
        cap: Duration::from_secs(3600),
    };

    /// The reflector's backoff (client-go's `NewExponentialBackoffManager(800ms, 30s, 2min,
    /// 2.0, 1.0)`): 800 ms doubling to 30 s, each delay up to twice as long at random, steps
    /// without end. Use it [`with_reset`](Self::with_reset).
    pub const REFLECTOR: Self = Self {
        duration: Duration::from_millis(800),
        factor: 2.0,
        jitter: 1.0,
        steps: u32::MAX,
        cap: Duration::from_secs(30),
    };

    /// The next delay, or `None` once the steps are used up (client-go's `Backoff.Step`).
    pub fn step(&mut self) -> Option<Duration> {
        if self.steps == 0 {
            return None;
        }
        self.steps -= 1;
        let base = self.duration;
        if self.factor > 0.0 {
            self.duration = self.duration.mul_f64(self.factor).min(self.cap);
        }
        Some(self.jittered(base))
    }

    /// `delay` plus up to `jitter` × `delay` at random (client-go's `wait.Jitter`).
    fn jittered(&self, delay: Duration) -> Duration {
        if self.jitter > 0.0 {
            delay.mul_f64(1.0 + rand::random::<f64>() * self.jitter)
        } else {
            delay
        }
    }

    /// Called after an attempt failed: the delay before the next attempt, or `None` when that
    /// attempt was the last of `steps` (client-go's `wait.ExponentialBackoff`, which stops
    /// instead of sleeping once one step is left).
    #[doc(alias = "ExponentialBackoff")]
    pub fn next_retry(&mut self) -> Option<Duration> {
        if self.steps <= 1 {
            self.steps = 0;
            return None;
        }
        self.step()
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT_BACKOFF
    }
}

impl Backoff {
    /// This backoff as a never-ending delay source that starts over from the first delay once
    /// `reset_after` has passed since the previous delay (client-go's
    /// `ExponentialBackoffManager`, `Backoff.DelayWithReset`).
    pub fn with_reset(self, reset_after: Duration) -> ResettingBackoff {
        ResettingBackoff {
            current: self.clone(),
            initial: self,
            reset_after,
            last: None,
        }
    }
}

/// A [`Backoff`] for a loop that never gives up: it starts over from the first delay when
/// `reset_after` has passed since the previous one, and keeps handing out its last delay once
/// its steps are used up. Made by [`Backoff::with_reset`]; the reflector uses
/// [`Backoff::REFLECTOR`] reset after 2 minutes.
#[derive(Clone, Debug)]
#[doc(alias = "ExponentialBackoffManager")]
#[doc(alias = "BackoffManager")]
#[doc(alias = "DelayWithReset")]
pub struct ResettingBackoff {
    initial: Backoff,
    current: Backoff,
    reset_after: Duration,
    last: Option<Instant>,
}

impl ResettingBackoff {
    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > self.reset_after)
        {
            self.current = self.initial.clone();
        }
        self.last = Some(now);
        self.current
            .step()
            .unwrap_or_else(|| self.current.jittered(self.current.duration))
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// client-go's `retry.OnError`: runs `f` until it succeeds, fails with something other than
/// what `retriable` accepts, or `backoff.steps` attempts have failed; then the error of the
/// last attempt is returned. The delays come between attempts, none after the last; `f` runs
/// at least once (`steps` 0 counts as 1).
#[doc(alias = "OnError")]
pub async fn on_error<T, F, Fut>(
    mut backoff: Backoff,
    retriable: impl Fn(&Error) -> bool,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    loop {
        match f().await {
            Err(e) if retriable(&e) => match backoff.next_retry() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// client-go's `retry.RetryOnConflict` with `DefaultRetry`: re-runs `f` (which should
/// re-read the object and re-apply its change) while the update conflicts: at most 5
/// attempts, about 10 ms apart; the error of the last one is returned.
#[doc(alias = "RetryOnConflict")]
pub async fn retry_on_conflict<T, F, Fut>(f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    on_error(Backoff::DEFAULT_RETRY, Error::is_conflict, f).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, Status};

    fn conflict() -> Error {
        conflict_on_attempt(0)
    }

    /// A conflict whose message says which attempt it answered.
    fn conflict_on_attempt(attempt: u32) -> Error {
        Error::Api(Box::new(ApiError {
            verb: http::Method::PUT,
            url: "/x".into(),
            status: Status::failure(&format!("stale on attempt {attempt}"), "Conflict")
                .with_code(409),
            retry_after: None,
        }))
    }

    /// Runs `on_error` with `backoff` against a function that always conflicts; returns the
    /// number of attempts, the error handed back and the (paused) time it all took.
    async fn always_conflicting(backoff: Backoff) -> (u32, Error, Duration) {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<()> = on_error(backoff, Error::is_conflict, || {
            calls += 1;
            let attempt = calls;
            async move { Err(conflict_on_attempt(attempt)) }
        })
        .await;
        let Err(error) = result else {
            panic!("a function that always conflicts succeeded");
        };
        (calls, error, start.elapsed())
    }

    /// client-go's `wait.ExponentialBackoff` checks the condition `Steps` times and sleeps only
    /// between two checks: `DefaultRetry` (5 steps of 10 ms) makes 5 attempts and waits 4
    /// times; the caller gets the error of the fifth attempt.
    #[tokio::test(start_paused = true)]
    async fn default_retry_makes_steps_attempts_and_returns_the_last_error() {
        let (calls, error, took) = always_conflicting(Backoff::DEFAULT_RETRY).await;
        assert_eq!(calls, 5, "DefaultRetry has 5 steps: 5 attempts");
        assert!(error.is_conflict(), "{error}");
        assert!(error.to_string().contains("stale on attempt 5"), "{error}");
        // Four delays of 10 ms plus up to 10 % jitter; no delay after the last attempt.
        assert!(
            took >= Duration::from_millis(40) && took <= Duration::from_millis(44),
            "took {took:?}"
        );
    }

    /// `DefaultBackoff` (4 steps, 10 ms × 5): 4 attempts, 10 + 50 + 250 ms of delays (+10 %).
    #[tokio::test(start_paused = true)]
    async fn default_backoff_makes_four_attempts() {
        let (calls, error, took) = always_conflicting(Backoff::DEFAULT_BACKOFF).await;
        assert_eq!(calls, 4);
        assert!(error.to_string().contains("stale on attempt 4"), "{error}");
        assert!(
            took >= Duration::from_millis(310) && took <= Duration::from_millis(341),
            "took {took:?}"
        );
    }

    /// One step is one attempt and no delay; zero steps still make the one attempt that
    /// produces the result.
    #[tokio::test(start_paused = true)]
    async fn one_or_zero_steps_make_one_attempt() {
        for steps in [0, 1] {
            let backoff = Backoff {
                steps,
                ..Backoff::DEFAULT_RETRY
            };
            let (calls, error, took) = always_conflicting(backoff).await;
            assert_eq!((calls, took), (1, Duration::ZERO), "steps {steps}");
            assert!(error.to_string().contains("stale on attempt 1"), "{error}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff {
            duration: Duration::from_millis(100),
            factor: 2.0,
            jitter: 0.0,
            steps: 5,
            cap: Duration::from_millis(500),
        };
        let delays: Vec<_> = std::iter::from_fn(|| b.step())
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_is_added_after_the_cap() {
        let mut b = Backoff {
            duration: Duration::from_millis(100),
            factor: 2.0,
            jitter: 0.5,
            steps: 20,
            cap: Duration::from_millis(500),
        };
        let mut base = Duration::from_millis(100);
        let mut above_cap = 0;
        while let Some(d) = b.step() {
            assert!(d >= base && d <= base.mul_f64(1.5), "{d:?} from {base:?}");
            above_cap += usize::from(d > b.cap);
            base = (base * 2).min(Duration::from_millis(500));
        }
        // 17 delays at the cap, each above it unless the random draw is exactly 0.
        assert!(above_cap > 0, "the jitter was cut at the cap");
    }

    #[tokio::test(start_paused = true)]
    async fn reflector_backoff_doubles_caps_and_resets() {
        let mut b = Backoff {
            jitter: 0.0,
            ..Backoff::REFLECTOR
        }
        .with_reset(Duration::from_secs(120));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        // Less than the reset period since the last delay: no reset.
        tokio::time::advance(Duration::from_secs(119)).await;
        assert_eq!(b.next_delay(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(b.next_delay(), Duration::from_millis(800));
    }

    #[tokio::test(start_paused = true)]
    async fn reflector_backoff_jitter_stays_within_bounds() {
        let mut b = Backoff::REFLECTOR.with_reset(Duration::from_secs(120));
        let mut base = Duration::from_millis(800);
        for _ in 0..20 {
            let d = b.next_delay();
            // client-go: "backoff will stop at [30,60) sec interval".
            assert!(d >= base && d <= base * 2, "{d:?} from {base:?}");
            base = (base * 2).min(Duration::from_secs(30));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resetting_backoff_keeps_its_last_delay_when_steps_run_out() {
        let mut b = Backoff {
            jitter: 0.0,
            steps: 2,
            ..Backoff::REFLECTOR
        }
        .with_reset(Duration::from_secs(120));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [800, 1600, 3200, 3200]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_conflicts_then_gives_up() {
        let mut calls = 0;
        let result: Result<()> = retry_on_conflict(|| {
            calls += 1;
            async { Err(conflict()) }
        })
        .await;
        assert!(result.unwrap_err().is_conflict());
        assert_eq!(calls, 5, "DefaultRetry's 5 steps are 5 attempts");

        let mut calls = 0;
        let ok = retry_on_conflict(|| {
            calls += 1;
            let fail = calls < 3;
            async move { if fail { Err(conflict()) } else { Ok(calls) } }
        })
        .await
        .unwrap();
        assert_eq!(ok, 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<()> = retry_on_conflict(|| {
            calls += 1;
            async { Err(Error::InvalidRequest("no".into())) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
