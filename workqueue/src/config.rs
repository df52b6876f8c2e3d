//! Queue configuration shared by every queue type.

use std::fmt;
use std::sync::Arc;

use crate::metrics::MetricsProvider;

/// Name and metrics of a queue.
///
/// As in client-go, a queue reports metrics only when it has both a non-empty
/// [`name`](Self::name) and a [`MetricsProvider`] that is not [`NoopMetrics`](crate::metrics::NoopMetrics).
///
/// Built from [`Config::new`] (or `Default`) with by-value setters.
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
/// # let _ = config;
/// ```
#[doc(alias = "QueueConfig")]
#[doc(alias = "TypedRateLimitingQueueConfig")]
#[derive(Clone, Default)]
pub struct Config {
    /// Name of the queue: the `name` label of its metrics. Empty means no metrics.
    pub(crate) name: String,
    /// Where the queue's metrics go; `None` records nothing.
    pub(crate) metrics: Option<Arc<dyn MetricsProvider>>,
}

impl Config {
    /// The default: unnamed, no metrics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue's name: the `name` label of its metrics. Empty (the default) means no
    /// metrics.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets where the queue's metrics go (by default nowhere).
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
