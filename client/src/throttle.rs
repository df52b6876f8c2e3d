//! Client-side throttling: client-go's `flowcontrol.NewTokenBucketRateLimiter` applied as a
//! tower layer inside the kube client, so every request is counted.
//!
//! The bucket is the work queue's [`TokenBucket`] (one implementation, as client-go's rest
//! client and workqueue both use `golang.org/x/time/rate`): a request takes a token at once and
//! waits until that token is due.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ferrokube_workqueue::rate_limiter::TokenBucket;
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

/// Waits longer than this are logged at debug level.
const LOG_WAIT_OVER: Duration = Duration::from_millis(50);

/// A [`tower::Layer`] that makes every request wait for a token from a shared bucket.
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl ThrottleLayer {
    /// A layer with client-go's QPS/burst semantics (`TokenBucket::new(qps, burst)`); `None`
    /// when `qps <= 0` (unthrottled). A `burst` of 0, which [`Config`](crate::Config) refuses
    /// as client-go's clientset does, is taken as 1 here rather than blocking every request.
    pub fn new(qps: f32, burst: u32) -> Option<Self> {
        (qps > 0.0).then(|| Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(f64::from(qps), burst.max(1)))),
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
    bucket: Arc<Mutex<TokenBucket>>,
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
                let delay = self.bucket.lock().reserve_at(Instant::now());
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
        let layer = ThrottleLayer::new(10.0, 2).unwrap();
        let reserve = || layer.bucket.lock().reserve_at(Instant::now());
        assert_eq!(reserve(), Duration::ZERO);
        assert_eq!(reserve(), Duration::ZERO);
        assert_eq!(reserve(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(reserve(), Duration::ZERO);
    }

    #[test]
    fn non_positive_qps_disables() {
        assert!(ThrottleLayer::new(0.0, 10).is_none());
        assert!(ThrottleLayer::new(-1.0, 10).is_none());
        assert!(ThrottleLayer::new(f32::NAN, 10).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_burst_is_one_and_infinite_qps_never_waits() {
        // 3 requests at 10 qps with burst 0 (taken as 1): 2 / 10 = 200 ms.
        assert_eq!(run(10.0, 0, 3).await, Duration::from_millis(200));
        assert_eq!(run(f32::INFINITY, 1, 1000).await, Duration::ZERO);
    }
}
