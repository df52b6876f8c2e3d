//! Retrying: client-go's `util/retry` (`RetryOnConflict`) and a jittered exponential
//! [`Backoff`] shared by the other crates.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// client-go's `wait.Backoff`: `duration` grows by `factor` each step (with up to `jitter`×
/// random extra), capped at `cap`, for at most `steps` steps.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Backoff {
    /// The first delay.
    pub duration: Duration,
    /// Multiplier applied after each step.
    pub factor: f64,
    /// Up to this fraction of the delay is added at random.
    pub jitter: f64,
    /// How many delays are handed out before giving up.
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

    /// The next delay, or `None` once the steps are used up.
    pub fn step(&mut self) -> Option<Duration> {
        if self.steps == 0 {
            return None;
        }
        self.steps -= 1;
        let base = self.duration;
        if self.factor > 0.0 {
            self.duration = self.duration.mul_f64(self.factor).min(self.cap);
        }
        let jittered = if self.jitter > 0.0 {
            base.mul_f64(1.0 + rand::random::<f64>() * self.jitter)
        } else {
            base
        };
        Some(jittered.min(self.cap.max(base)))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT_BACKOFF
    }
}

/// Runs `f` until it succeeds, fails with something other than what `retriable` accepts, or
/// `backoff` runs out (then the last error is returned).
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
            Err(e) if retriable(&e) => match backoff.step() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// client-go's `retry.RetryOnConflict` with `DefaultRetry`: re-runs `f` (which should
/// re-read the object and re-apply its change) while the update conflicts.
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
        Error::Api(Box::new(ApiError {
            verb: http::Method::PUT,
            url: "/x".into(),
            status: Status::failure("stale", "Conflict").with_code(409),
            retry_after: None,
        }))
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

    #[tokio::test(start_paused = true)]
    async fn retries_conflicts_then_gives_up() {
        let mut calls = 0;
        let result: Result<()> = retry_on_conflict(|| {
            calls += 1;
            async { Err(conflict()) }
        })
        .await;
        assert!(result.unwrap_err().is_conflict());
        assert_eq!(calls, 6, "one try plus DefaultRetry's 5 steps");

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
