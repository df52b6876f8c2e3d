//! Client-side throttling: a token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter`)
//! applied as a tower layer inside the kube client, so every request is counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

/// Waits longer than this are logged at debug level.
const LOG_WAIT_OVER: Duration = Duration::from_millis(50);

/// A token bucket refilled at `qps` up to `burst`, handing out reservations like
/// `golang.org/x/time/rate`: a request takes a token now and waits until it would have been
/// available.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `qps` must be positive and `burst` at least 1 (0 is taken as 1).
    pub fn new(qps: f32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: f64::from(qps),
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// Takes one token and returns how long to wait before using it.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut s = self.state.lock();
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.qps).min(self.burst);
        s.last = now;
        s.tokens -= 1.0;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.qps)
        }
    }
}

/// A [`tower::Layer`] that makes every request wait for a token from a shared bucket.
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    bucket: Arc<TokenBucket>,
}

impl ThrottleLayer {
    /// A layer with client-go's QPS/burst semantics; `None` when `qps <= 0` (unthrottled).
    pub fn new(qps: f32, burst: u32) -> Option<Self> {
        (qps > 0.0).then(|| Self {
            bucket: Arc::new(TokenBucket::new(qps, burst)),
        })
    }
}

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            bucket: Arc::clone(&self.bucket),
            wait: None,
            permitted: false,
        }
    }
}

/// The service [`ThrottleLayer`] produces: not ready until it holds a token.
#[derive(Debug)]
pub struct Throttle<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    wait: Option<(Pin<Box<Sleep>>, Duration)>,
    permitted: bool,
}

impl<S: Clone> Clone for Throttle<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bucket: Arc::clone(&self.bucket),
            wait: None,
            permitted: false,
        }
    }
}

impl<S, R> tower::Service<R> for Throttle<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if self.wait.is_none() {
                let delay = self.bucket.reserve();
                if delay.is_zero() {
                    self.permitted = true;
                } else {
                    self.wait = Some((Box::pin(tokio::time::sleep(delay)), delay));
                }
            }
            if let Some((sleep, delay)) = &mut self.wait {
                ready!(sleep.as_mut().poll(cx));
                if *delay > LOG_WAIT_OVER {
                    tracing::debug!(waited = ?delay, "request waited for client-side throttling");
                }
                self.wait = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    async fn run(qps: f32, burst: u32, n: usize) -> Duration {
        let layer = ThrottleLayer::new(qps, burst).unwrap();
        let mut svc = layer.layer(tower::service_fn(|()| async { Ok::<_, ()>(()) }));
        let start = Instant::now();
        for _ in 0..n {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn n_requests_take_n_minus_burst_over_qps() {
        // 30 requests at 5 qps with burst 10: (30 - 10) / 5 = 4 s.
        let took = run(5.0, 10, 30).await;
        assert!((took.as_secs_f64() - 4.0).abs() < 0.01, "took {took:?}");
        // Within the burst nothing waits.
        assert_eq!(run(5.0, 10, 10).await, Duration::ZERO);
        // 100 requests at 50 qps, burst 1: 99 / 50 = 1.98 s.
        let took = run(50.0, 1, 100).await;
        assert!((took.as_secs_f64() - 1.98).abs() < 0.01, "took {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_while_idle() {
        let bucket = TokenBucket::new(10.0, 2);
        assert_eq!(bucket.reserve(), Duration::ZERO);
        assert_eq!(bucket.reserve(), Duration::ZERO);
        assert_eq!(bucket.reserve(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(bucket.reserve(), Duration::ZERO);
    }

    #[test]
    fn non_positive_qps_disables() {
        assert!(ThrottleLayer::new(0.0, 10).is_none());
        assert!(ThrottleLayer::new(-1.0, 10).is_none());
    }
}
