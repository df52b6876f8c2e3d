//! [`MetricsProvider`] backed by `prometheus_client`, with controller-runtime's series names.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{CounterMetric, GaugeMetric, HistogramMetric, MetricsProvider, SettableGaugeMetric};

/// Label set of every series: controller-runtime's `name` and `controller` (both the queue name).
type Labels = [(&'static str, String); 2];

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

type FloatGauge = Gauge<f64, AtomicU64>;

/// Workqueue metrics in a `prometheus_client` [`Registry`], named as controller-runtime names them.
///
/// | series | type |
/// |---|---|
/// | `workqueue_depth` | gauge |
/// | `workqueue_adds_total` | counter |
/// | `workqueue_queue_duration_seconds` | histogram |
/// | `workqueue_work_duration_seconds` | histogram |
/// | `workqueue_unfinished_work_seconds` | gauge |
/// | `workqueue_longest_running_processor_seconds` | gauge |
/// | `workqueue_retries_total` | counter |
///
/// Every series has the labels `name` and `controller`, both set to the queue's name. Histograms
/// use controller-runtime's buckets: 12 exponential buckets from 10 ns, factor 10.
///
/// ```
/// use std::sync::Arc;
/// use ferrokube_workqueue::metrics::PrometheusMetrics;
/// use ferrokube_workqueue::{Config, Queue};
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let metrics = Arc::new(PrometheusMetrics::new(&mut registry));
/// let queue: Queue<String> = Queue::with_config(Config::new().name("pods").metrics(metrics));
/// queue.add("default/web".to_owned());
///
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"workqueue_depth{name="pods",controller="pods"} 1"#));
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    depth: Family<Labels, Gauge>,
    adds: Family<Labels, Counter>,
    latency: HistogramFamily,
    work_duration: HistogramFamily,
    unfinished: Family<Labels, FloatGauge>,
    longest: Family<Labels, FloatGauge>,
    retries: Family<Labels, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-9, 10.0, 12))
}

fn labels(name: &str) -> Labels {
    [("name", name.to_owned()), ("controller", name.to_owned())]
}

impl PrometheusMetrics {
    /// Creates the seven series and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            depth: Family::default(),
            adds: Family::default(),
            latency: Family::new_with_constructor(duration_histogram),
            work_duration: Family::new_with_constructor(duration_histogram),
            unfinished: Family::default(),
            longest: Family::default(),
            retries: Family::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            metrics.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            metrics.adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            metrics.latency.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            metrics.work_duration.clone(),
        );
        registry.register(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed \
             by work_duration. Large values indicate stuck threads. One can deduce the number of \
             stuck threads by observing the rate at which this increases.",
            metrics.unfinished.clone(),
        );
        registry.register(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            metrics.longest.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            metrics.retries.clone(),
        );
        metrics
    }
}

impl GaugeMetric for Gauge {
    fn inc(&self) {
        Gauge::inc(self);
    }
    fn dec(&self) {
        Gauge::dec(self);
    }
}

impl SettableGaugeMetric for FloatGauge {
    fn set(&self, value: f64) {
        Gauge::set(self, value);
    }
}

impl CounterMetric for Counter {
    fn inc(&self) {
        Counter::inc(self);
    }
}

impl HistogramMetric for Histogram {
    fn observe(&self, value: f64) {
        Histogram::observe(self, value);
    }
}

impl MetricsProvider for PrometheusMetrics {
    fn new_depth_metric(&self, name: &str) -> Box<dyn GaugeMetric> {
        Box::new(self.depth.get_or_create_owned(&labels(name)))
    }
    fn new_adds_metric(&self, name: &str) -> Box<dyn CounterMetric> {
        Box::new(self.adds.get_or_create_owned(&labels(name)))
    }
    fn new_latency_metric(&self, name: &str) -> Box<dyn HistogramMetric> {
        Box::new(self.latency.get_or_create_owned(&labels(name)))
    }
    fn new_work_duration_metric(&self, name: &str) -> Box<dyn HistogramMetric> {
        Box::new(self.work_duration.get_or_create_owned(&labels(name)))
    }
    fn new_unfinished_work_seconds_metric(&self, name: &str) -> Box<dyn SettableGaugeMetric> {
        Box::new(self.unfinished.get_or_create_owned(&labels(name)))
    }
    fn new_longest_running_processor_seconds_metric(
        &self,
        name: &str,
    ) -> Box<dyn SettableGaugeMetric> {
        Box::new(self.longest.get_or_create_owned(&labels(name)))
    }
    fn new_retries_metric(&self, name: &str) -> Box<dyn CounterMetric> {
        Box::new(self.retries.get_or_create_owned(&labels(name)))
    }
}
