//! Queue configuration shared by every queue type.

use std::fmt;
use std::sync::Arc;

use crate::metrics::MetricsProvider;

/// Name and metrics of a queue.
///
/// As in client-go, a queue reports metrics only when it has both a non-empty
/// [`name`](Self::name) and a [`MetricsProvider`] that is not [`NoopMetrics`](crate::metrics::NoopMetrics).
///
/// ```
/// use std::sync::Arc;
/// use ferrokube_workqueue::Config;
/// use ferrokube_workqueue::metrics::PrometheusMetrics;
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let config = Config::new()
///     .name("deployments")
///     .metrics(Arc::new(PrometheusMetrics::new(&mut registry)));
/// assert_eq!(config.name, "deployments");
/// ```
#[doc(alias = "QueueConfig")]
#[doc(alias = "TypedRateLimitingQueueConfig")]
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Config {
    /// Name of the queue: the `name` label of its metrics. Empty means no metrics.
    pub name: String,
    /// Where the queue's metrics go; `None` records nothing.
    pub metrics: Option<Arc<dyn MetricsProvider>>,
}

impl Config {
    /// The default: unnamed, no metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue's name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the metrics provider.
    #[must_use]
    pub fn metrics(mut self, provider: Arc<dyn MetricsProvider>) -> Self {
        self.metrics = Some(provider);
        self
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("metrics", &self.metrics.as_ref().map(|_| "MetricsProvider"))
            .finish()
    }
}
