//! Request metrics: client-go's `RequestResult` hook (`rest_client_requests_total`).
//!
//! A [`RequestMetrics`] is told about every request a [`Client`](crate::Client) makes — typed,
//! dynamic, raw, watch, logs, exec — once it has an HTTP status, or `"<error>"` when it got
//! none (connection refused, TLS failure, timeout, request dropped before the response came).
//! Set one with [`Config::with_request_metrics`](crate::Config::with_request_metrics);
//! controller-runtime's manager counts them as `rest_client_requests_total{code,method,host}`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use ferrokube_client::metrics::RequestMetrics;
//!
//! #[derive(Default)]
//! struct Failures(AtomicU64);
//!
//! impl RequestMetrics for Failures {
//!     fn request_done(&self, _method: &str, _host: &str, code: &str) {
//!         if code.starts_with('5') || code == ferrokube_client::metrics::ERROR_CODE {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! let failures = Arc::new(Failures::default());
//! failures.request_done("GET", "10.0.0.1:6443", "503");
//! assert_eq!(failures.0.load(Ordering::Relaxed), 1);
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The `code` reported for a request that got no HTTP response (client-go's value).
pub const ERROR_CODE: &str = "<error>";

/// Told about the outcome of every request a client makes (client-go's
/// `metrics.ResultMetric`).
///
/// Called once per request, from the task that made it: keep it cheap and never block.
pub trait RequestMetrics: Send + Sync + 'static {
    /// A request finished: `method` is the HTTP method (`GET`, `POST`…), `host` the API
    /// server's `host:port` as written in the cluster URL, and `code` the HTTP status as text
    /// (`"200"`, `"404"`…) or [`ERROR_CODE`] when no response came.
    fn request_done(&self, method: &str, host: &str, code: &str);
}

/// A [`RequestMetrics`] held by a [`Config`](crate::Config) (which is `Debug`).
#[derive(Clone)]
pub(crate) struct SharedRequestMetrics(pub(crate) Arc<dyn RequestMetrics>);

impl fmt::Debug for SharedRequestMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestMetrics")
    }
}

// === impl RequestMetricsLayer ===

/// A [`tower::Layer`] that reports every request's outcome to a [`RequestMetrics`].
///
/// [`Client::from_config`](crate::Client::from_config) installs it when the config has request
/// metrics; it is public for clients built from a custom tower stack.
#[derive(Clone)]
pub struct RequestMetricsLayer {
    metrics: Arc<dyn RequestMetrics>,
    host: Arc<str>,
}

impl RequestMetricsLayer {
    /// A layer reporting to `metrics`, with `host` as the host of requests whose URI has no
    /// authority (kube's stack adds the cluster URL after outer layers run).
    pub fn new(metrics: Arc<dyn RequestMetrics>, host: impl Into<Arc<str>>) -> Self {
        Self {
            metrics,
            host: host.into(),
        }
    }

    /// A layer for a client of the API server at `cluster_url`: its host and port, as client-go
    /// reports them (`URL.Host`).
    pub fn for_cluster(metrics: Arc<dyn RequestMetrics>, cluster_url: &http::Uri) -> Self {
        Self::new(metrics, uri_host(cluster_url).unwrap_or_default())
    }
}

impl fmt::Debug for RequestMetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMetricsLayer")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RecordRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRequests {
            inner,
            metrics: Arc::clone(&self.metrics),
            host: Arc::clone(&self.host),
        }
    }
}

/// `host[:port]` of a URI, like Go's `url.URL.Host` (no user info).
fn uri_host(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

// === impl RecordRequests ===

/// The service [`RequestMetricsLayer`] produces.
#[derive(Clone)]
pub struct RecordRequests<S> {
    inner: S,
    metrics: Arc<dyn RequestMetrics>,
    host: Arc<str>,
}

impl<S> fmt::Debug for RecordRequests<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRequests")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RecordRequests<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let host = match req.uri().authority() {
            Some(_) => uri_host(req.uri()).map_or_else(|| Arc::clone(&self.host), Arc::from),
            None => Arc::clone(&self.host),
        };
        let mut outcome = Outcome {
            metrics: Arc::clone(&self.metrics),
            method: req.method().clone(),
            host,
            reported: false,
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = result.as_ref().ok().map(http::Response::status);
            outcome.report(status.as_ref().map_or(ERROR_CODE, http::StatusCode::as_str));
            result
        })
    }
}

/// Reports a request once: with its code, or with [`ERROR_CODE`] if it is dropped unanswered.
struct Outcome {
    metrics: Arc<dyn RequestMetrics>,
    method: http::Method,
    host: Arc<str>,
    reported: bool,
}

impl Outcome {
    fn report(&mut self, code: &str) {
        if !self.reported {
            self.reported = true;
            self.metrics
                .request_done(self.method.as_str(), &self.host, code);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.report(ERROR_CODE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use tower::{Layer, ServiceExt};

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl RequestMetrics for Seen {
        fn request_done(&self, method: &str, host: &str, code: &str) {
            self.0.lock().push(format!("{method} {host} {code}"));
        }
    }

    fn request(method: http::Method, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn reports_status_errors_and_dropped_requests() {
        let seen = Arc::new(Seen::default());
        let layer = RequestMetricsLayer::for_cluster(
            seen.clone(),
            &"https://10.0.0.1:6443/prefix".parse().unwrap(),
        );
        let svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            match req.uri().path() {
                "/missing" => Ok(http::Response::builder().status(404).body(()).unwrap()),
                "/broken" => Err("connection refused"),
                "/slow" => std::future::pending().await,
                _ => Ok(http::Response::new(())),
            }
        }));

        let ok = svc
            .clone()
            .oneshot(request(http::Method::GET, "/api/v1/pods"));
        assert_eq!(ok.await.unwrap().status(), 200);
        let missing = svc
            .clone()
            .oneshot(request(http::Method::DELETE, "/missing"));
        assert_eq!(missing.await.unwrap().status(), 404);
        let broken = svc.clone().oneshot(request(http::Method::POST, "/broken"));
        assert!(broken.await.is_err());
        let absolute = request(http::Method::PUT, "http://other.example:8080/x");
        svc.clone().oneshot(absolute).await.unwrap();
        // A request cut short (a timeout dropping its future) counts as an error, once.
        let slow = svc.clone().oneshot(request(http::Method::GET, "/slow"));
        let cut = tokio::time::timeout(std::time::Duration::from_millis(1), slow).await;
        assert!(cut.is_err());

        assert_eq!(
            *seen.0.lock(),
            [
                "GET 10.0.0.1:6443 200",
                "DELETE 10.0.0.1:6443 404",
                "POST 10.0.0.1:6443 <error>",
                "PUT other.example:8080 200",
                "GET 10.0.0.1:6443 <error>",
            ]
        );
    }

    #[test]
    fn host_is_go_url_host() {
        let host = |s: &str| uri_host(&s.parse().unwrap());
        assert_eq!(host("https://k8s.example").as_deref(), Some("k8s.example"));
        assert_eq!(host("https://user@k8s:6443/x").as_deref(), Some("k8s:6443"));
        assert_eq!(host("https://[::1]:6443").as_deref(), Some("[::1]:6443"));
        assert_eq!(host("/relative"), None);
    }
}
