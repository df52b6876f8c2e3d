//! The manager's Prometheus registry, with controller-runtime's series (its `pkg/metrics`).
//!
//! One [`Metrics`] per manager holds every series the manager, its controllers, their work
//! queues and its client report, under controller-runtime's names, so existing dashboards and
//! alerts work unchanged:
//!
//! | series | type | labels |
//! |---|---|---|
//! | `controller_runtime_reconcile_total` | counter | `controller`, `result` |
//! | `controller_runtime_reconcile_errors_total` | counter | `controller` |
//! | `controller_runtime_terminal_reconcile_errors_total` | counter | `controller` |
//! | `controller_runtime_reconcile_panics_total` | counter | `controller` |
//! | `controller_runtime_reconcile_time_seconds` | histogram | `controller` |
//! | `controller_runtime_max_concurrent_reconciles` | gauge | `controller` |
//! | `controller_runtime_active_workers` | gauge | `controller` |
//! | `workqueue_*` (see [`PrometheusMetrics`]) | | `name`, `controller` |
//! | `leader_election_master_status` | gauge | `name` |
//! | `rest_client_requests_total` | counter | `code`, `method`, `host` |
//! | `controller_runtime_webhook_requests_total` | counter | `webhook` (the path), `code` |
//! | `controller_runtime_webhook_latency_seconds` | histogram | `webhook` |
//! | `controller_runtime_webhook_requests_in_flight` | gauge | `webhook` |
//! | `certwatcher_read_certificate_total` | counter | |
//! | `certwatcher_read_certificate_errors_total` | counter | |
//!
//! Register your own metrics with [`Metrics::register`]; the manager's server exposes them all
//! on `/metrics` (see [`crate::server`]).
//!
//! ```
//! use ferrokube_runtime::metrics::{Metrics, ReconcileResult};
//! use prometheus_client::metrics::counter::Counter;
//!
//! let metrics = Metrics::new();
//! let widgets: Counter = Counter::default();
//! // Counters get their `_total` suffix from the encoder.
//! metrics.register("widgets_built", "Widgets built by this operator", widgets.clone());
//! widgets.inc();
//!
//! let controller = metrics.controller("widget");
//! controller.reconcile(ReconcileResult::Success);
//!
//! let text = metrics.encode();
//! assert!(text.contains("widgets_built_total 1\n"));
//! assert!(text.contains(
//!     "controller_runtime_reconcile_total{controller=\"widget\",result=\"success\"} 1\n"
//! ));
//! ```
//!
//! The exposition is OpenMetrics text ([`CONTENT_TYPE`]), which Prometheus asks for first and
//! every current scraper reads. Process and Go runtime series (`process_*`, `go_*`) that
//! controller-runtime adds are not reported.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::metrics::RequestMetrics;
use ferrokube_workqueue::metrics::{MetricsProvider, PrometheusMetrics};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// controller-runtime's reconcile time buckets (seconds), also client-go's request latency
/// buckets.
const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// One label: `controller`, or `name` for the leader election gauge.
type OneLabel = [(&'static str, String); 1];
/// `controller` and `result`.
type ResultLabels = [(&'static str, String); 2];
/// `code`, `host`, `method` (the order client_golang prints them in).
type RequestLabels = [(&'static str, String); 3];

type HistogramFamily = Family<OneLabel, Histogram, fn() -> Histogram>;

/// controller-runtime's webhook latency buckets: `ExponentialBuckets(10e-9, 10, 12)`, 10 ns to
/// 1000 s.
fn webhook_latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-8, 10.0, 12,
    ))
}

fn reconcile_time_histogram() -> Histogram {
    Histogram::new(RECONCILE_TIME_BUCKETS)
}

fn controller_label(name: &str) -> OneLabel {
    [("controller", name.to_owned())]
}

// === impl Metrics ===

/// The manager's Prometheus registry with controller-runtime's series. Cheap to clone: clones
/// share one registry.
///
/// Every family in the [module table](self) is registered by [`Metrics::new`]; a controller's
/// series appear (at zero) when [`Metrics::controller`] is called for it.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    controllers: ControllerFamilies,
    workqueue: Arc<PrometheusMetrics>,
    leader: Family<OneLabel, Gauge>,
    rest_client: Arc<RestClientMetrics>,
    webhooks: WebhookFamilies,
    cert_reads: Counter,
    cert_read_errors: Counter,
}

/// The per-controller families, labelled by controller name.
#[derive(Clone)]
struct ControllerFamilies {
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<OneLabel, Counter>,
    terminal_errors: Family<OneLabel, Counter>,
    panics: Family<OneLabel, Counter>,
    reconcile_time: HistogramFamily,
    max_concurrent: Family<OneLabel, Gauge>,
    active_workers: Family<OneLabel, Gauge>,
}

impl Metrics {
    /// A registry with every controller-runtime family registered (and no series yet).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let controllers = ControllerFamilies {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            terminal_errors: Family::default(),
            panics: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_time_histogram),
            max_concurrent: Family::default(),
            active_workers: Family::default(),
        };
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            controllers.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            controllers.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            controllers.terminal_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller",
            controllers.panics.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            controllers.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            controllers.max_concurrent.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            controllers.active_workers.clone(),
        );
        let workqueue = Arc::new(PrometheusMetrics::new(&mut registry));
        let leader = Family::<OneLabel, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates \
             backup, 1 indicates master. 'name' is the string used to identify the lease. \
             Please make sure to group by name",
            leader.clone(),
        );
        let rest_client = Arc::new(RestClientMetrics::default());
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host",
            rest_client.requests.clone(),
        );
        let webhooks = WebhookFamilies::register(&mut registry);
        let (cert_reads, cert_read_errors) = (Counter::default(), Counter::default());
        registry.register(
            "certwatcher_read_certificate",
            "Total number of certificate reads",
            cert_reads.clone(),
        );
        registry.register(
            "certwatcher_read_certificate_errors",
            "Total number of certificate read errors",
            cert_read_errors.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                controllers,
                workqueue,
                leader,
                rest_client,
                webhooks,
                cert_reads,
                cert_read_errors,
            }),
        }
    }

    /// Registers one of your own metrics, exposed with the others on `/metrics`.
    ///
    /// As everywhere in `prometheus_client`, `name` has no type suffix: a counter registered as
    /// `widgets` is exposed as `widgets_total`. `help` gets a full stop appended.
    pub fn register<M: Metric>(&self, name: &str, help: &str, metric: M) {
        self.inner.registry.lock().register(name, help, metric);
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]), ending with `# EOF`.
    ///
    /// A metric that fails to encode (only possible with a hand-written `EncodeMetric`) is
    /// logged and leaves the text incomplete; [`Metrics::try_encode`] reports it instead.
    pub fn encode(&self) -> String {
        match self.try_encode() {
            Ok(text) => text,
            Err(partial) => {
                tracing::warn!("a registered metric failed to encode; /metrics is incomplete");
                partial.text
            }
        }
    }

    /// The registry in the OpenMetrics text format, or what was encoded before a metric failed.
    pub fn try_encode(&self) -> Result<String, EncodeFailed> {
        let mut text = String::with_capacity(16 * 1024);
        let encoded =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry.lock());
        match encoded {
            Ok(()) => Ok(text),
            Err(fmt::Error) => Err(EncodeFailed { text }),
        }
    }

    /// The series of the controller `name`, created now at zero (controller-runtime's
    /// `initMetrics`): every `result` of `controller_runtime_reconcile_total`, the error, panic
    /// and worker series. Calling it again for the same name returns handles on the same series.
    pub fn controller(&self, name: &str) -> ControllerMetrics {
        let families = &self.inner.controllers;
        let label = controller_label(name);
        let result = |result: ReconcileResult| {
            families.reconcile_total.get_or_create_owned(&[
                ("controller", name.to_owned()),
                ("result", result.as_str().to_owned()),
            ])
        };
        ControllerMetrics {
            name: Arc::from(name),
            success: result(ReconcileResult::Success),
            error: result(ReconcileResult::Error),
            requeue: result(ReconcileResult::Requeue),
            requeue_after: result(ReconcileResult::RequeueAfter),
            errors: families.reconcile_errors.get_or_create_owned(&label),
            terminal_errors: families.terminal_errors.get_or_create_owned(&label),
            panics: families.panics.get_or_create_owned(&label),
            reconcile_time: families.reconcile_time.get_or_create_owned(&label),
            max_concurrent: families.max_concurrent.get_or_create_owned(&label),
            active_workers: families.active_workers.get_or_create_owned(&label),
        }
    }

    /// The work queue metrics provider (`workqueue_*` series) shared by every controller's
    /// queue; give it to a queue with `ferrokube_workqueue::Config::metrics`.
    pub fn workqueue(&self) -> Arc<dyn MetricsProvider> {
        self.inner.workqueue.clone()
    }

    /// Sets `leader_election_master_status{name=lease_name}`: 1 while leading, 0 otherwise.
    pub fn set_leader(&self, lease_name: &str, leading: bool) {
        self.inner
            .leader
            .get_or_create(&[("name", lease_name.to_owned())])
            .set(i64::from(leading));
    }

    /// The request metrics for the manager's client (`rest_client_requests_total`); give them
    /// to the client with [`Config::with_request_metrics`](ferrokube_client::Config::with_request_metrics).
    pub fn rest_client(&self) -> Arc<dyn RequestMetrics> {
        self.inner.rest_client.clone()
    }

    /// Counts one read of the webhook serving certificate
    /// (`certwatcher_read_certificate_total`), and whether it failed
    /// (`certwatcher_read_certificate_errors_total`).
    pub fn certificate_read(&self, failed: bool) {
        self.inner.cert_reads.inc();
        if failed {
            self.inner.cert_read_errors.inc();
        }
    }

    /// The series of the webhook served at `path` (its `webhook` label), created now: the
    /// latency histogram, the in-flight gauge, and the `200` and `500` request counters at zero
    /// (controller-runtime's `InstrumentedHook`).
    pub fn webhook(&self, path: &str) -> WebhookMetrics {
        let families = &self.inner.webhooks;
        let label: OneLabel = [("webhook", path.to_owned())];
        let metrics = WebhookMetrics {
            path: Arc::from(path),
            requests: families.requests.clone(),
            latency: families.latency.get_or_create_owned(&label),
            in_flight: families.in_flight.get_or_create_owned(&label),
        };
        for code in [200, 500] {
            let _ = metrics.requests.get_or_create(&metrics.code_labels(code));
        }
        metrics
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A registered metric failed to encode; the text encoded before it is kept.
#[derive(Debug, thiserror::Error)]
#[error("a registered metric failed to encode")]
pub struct EncodeFailed {
    /// The exposition up to the metric that failed.
    pub text: String,
}

// === impl ControllerMetrics ===

/// How a reconcile ended: the `result` label of `controller_runtime_reconcile_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// The reconciler succeeded and asked for nothing more (`success`).
    Success,
    /// The reconciler returned an error or panicked (`error`).
    Error,
    /// The reconciler asked to be requeued through the rate limiter (`requeue`).
    Requeue,
    /// The reconciler asked to be requeued after a delay (`requeue_after`).
    RequeueAfter,
}

impl ReconcileResult {
    /// Every result, in the order controller-runtime initialises them.
    pub const ALL: [Self; 4] = [
        Self::Error,
        Self::RequeueAfter,
        Self::Requeue,
        Self::Success,
    ];

    /// The label value: `success`, `error`, `requeue` or `requeue_after`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Requeue => "requeue",
            Self::RequeueAfter => "requeue_after",
        }
    }
}

impl fmt::Display for ReconcileResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The series of one controller (its `controller` label). Cheap to clone; recording is a few
/// atomic operations, with no lookup.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    name: Arc<str>,
    success: Counter,
    error: Counter,
    requeue: Counter,
    requeue_after: Counter,
    errors: Counter,
    terminal_errors: Counter,
    panics: Counter,
    reconcile_time: Histogram,
    max_concurrent: Gauge,
    active_workers: Gauge,
}

impl ControllerMetrics {
    /// The controller's name (the `controller` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one reconcile in `controller_runtime_reconcile_total{result}`.
    pub fn reconcile(&self, result: ReconcileResult) {
        match result {
            ReconcileResult::Success => &self.success,
            ReconcileResult::Error => &self.error,
            ReconcileResult::Requeue => &self.requeue,
            ReconcileResult::RequeueAfter => &self.requeue_after,
        }
        .inc();
    }

    /// Counts one reconcile error (`controller_runtime_reconcile_errors_total`).
    pub fn error(&self) {
        self.errors.inc();
    }

    /// Counts one terminal reconcile error (`controller_runtime_terminal_reconcile_errors_total`).
    pub fn terminal_error(&self) {
        self.terminal_errors.inc();
    }

    /// Counts one reconciler panic (`controller_runtime_reconcile_panics_total`).
    pub fn panic(&self) {
        self.panics.inc();
    }

    /// Records how long one reconcile took (`controller_runtime_reconcile_time_seconds`).
    pub fn observe_time(&self, took: Duration) {
        self.reconcile_time.observe(took.as_secs_f64());
    }

    /// Sets `controller_runtime_max_concurrent_reconciles`.
    pub fn set_max_concurrent(&self, n: usize) {
        self.max_concurrent
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A worker started a reconcile (`controller_runtime_active_workers` + 1).
    pub fn worker_started(&self) {
        self.active_workers.inc();
    }

    /// A worker finished a reconcile (`controller_runtime_active_workers` - 1).
    pub fn worker_finished(&self) {
        self.active_workers.dec();
    }
}

// === impl WebhookMetrics ===

/// `code` and `webhook` (the order client_golang prints them in).
type WebhookCodeLabels = [(&'static str, String); 2];

/// The webhook families, labelled by path.
#[derive(Clone)]
struct WebhookFamilies {
    requests: Family<WebhookCodeLabels, Counter>,
    latency: HistogramFamily,
    in_flight: Family<OneLabel, Gauge>,
}

impl WebhookFamilies {
    fn register(registry: &mut Registry) -> Self {
        let families = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(webhook_latency_histogram),
            in_flight: Family::default(),
        };
        registry.register(
            "controller_runtime_webhook_requests",
            "Total number of admission requests by HTTP status code",
            families.requests.clone(),
        );
        registry.register(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            families.latency.clone(),
        );
        registry.register(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served",
            families.in_flight.clone(),
        );
        families
    }
}

/// The series of one webhook path. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    path: Arc<str>,
    requests: Family<WebhookCodeLabels, Counter>,
    latency: Histogram,
    in_flight: Gauge,
}

impl WebhookMetrics {
    /// The webhook's path (the `webhook` label).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn code_labels(&self, code: u16) -> WebhookCodeLabels {
        [
            ("code", code.to_string()),
            ("webhook", self.path.to_string()),
        ]
    }

    /// A request started: `controller_runtime_webhook_requests_in_flight` goes up by one until
    /// the returned guard is dropped; [`InFlightRequest::done`] also counts the answer.
    pub fn start(&self) -> InFlightRequest {
        self.in_flight.inc();
        InFlightRequest {
            metrics: self.clone(),
            started: std::time::Instant::now(),
        }
    }
}

/// One webhook request being served (see [`WebhookMetrics::start`]). Dropped without
/// [`done`](Self::done) (the client went away), it leaves the in-flight gauge and counts
/// nothing.
#[must_use = "dropping it ends the request at once"]
#[derive(Debug)]
pub struct InFlightRequest {
    metrics: WebhookMetrics,
    started: std::time::Instant,
}

impl InFlightRequest {
    /// The request was answered with `code`: counted in
    /// `controller_runtime_webhook_requests_total{code}`, its latency observed in
    /// `controller_runtime_webhook_latency_seconds`.
    pub fn done(self, code: u16) {
        let metrics = &self.metrics;
        metrics
            .requests
            .get_or_create(&metrics.code_labels(code))
            .inc();
        metrics
            .latency
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

// === impl RestClientMetrics ===

/// `rest_client_requests_total{code,method,host}`, fed by the client's request layer.
#[derive(Debug, Default)]
struct RestClientMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl RequestMetrics for RestClientMetrics {
    fn request_done(&self, method: &str, host: &str, code: &str) {
        self.requests
            .get_or_create(&[
                ("code", code.to_owned()),
                ("host", host.to_owned()),
                ("method", method.to_owned()),
            ])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines (no comments) of the exposition that start with `prefix`.
    fn samples(metrics: &Metrics, prefix: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn controller_series_start_at_zero_with_controller_runtime_names() {
        let metrics = Metrics::new();
        assert!(
            samples(&metrics, "controller_runtime_").is_empty(),
            "no series before a controller exists"
        );
        let _controller = metrics.controller("pods");
        let lines = samples(&metrics, "controller_runtime_");
        for expected in [
            r#"controller_runtime_reconcile_total{controller="pods",result="success"} 0"#,
            r#"controller_runtime_reconcile_total{controller="pods",result="error"} 0"#,
            r#"controller_runtime_reconcile_total{controller="pods",result="requeue"} 0"#,
            r#"controller_runtime_reconcile_total{controller="pods",result="requeue_after"} 0"#,
            r#"controller_runtime_reconcile_errors_total{controller="pods"} 0"#,
            r#"controller_runtime_terminal_reconcile_errors_total{controller="pods"} 0"#,
            r#"controller_runtime_reconcile_panics_total{controller="pods"} 0"#,
            r#"controller_runtime_max_concurrent_reconciles{controller="pods"} 0"#,
            r#"controller_runtime_active_workers{controller="pods"} 0"#,
            r#"controller_runtime_reconcile_time_seconds_count{controller="pods"} 0"#,
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "missing {expected} in {lines:#?}"
            );
        }
        assert!(
            !metrics.encode().contains("_total_total"),
            "counters carry one _total suffix"
        );
        let text = metrics.encode();
        assert!(text.contains("# TYPE controller_runtime_reconcile counter\n"));
        assert!(text.contains("# TYPE controller_runtime_reconcile_time_seconds histogram\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn controller_metrics_record() {
        let metrics = Metrics::new();
        let c = metrics.controller("deploy");
        assert_eq!(c.name(), "deploy");
        c.reconcile(ReconcileResult::Success);
        c.reconcile(ReconcileResult::Success);
        c.reconcile(ReconcileResult::Error);
        c.reconcile(ReconcileResult::Requeue);
        c.reconcile(ReconcileResult::RequeueAfter);
        c.reconcile(ReconcileResult::RequeueAfter);
        c.reconcile(ReconcileResult::RequeueAfter);
        c.error();
        c.terminal_error();
        c.terminal_error();
        c.panic();
        c.set_max_concurrent(4);
        c.worker_started();
        c.worker_started();
        c.worker_finished();
        c.observe_time(Duration::from_millis(7));
        c.observe_time(Duration::from_secs(2));
        c.observe_time(Duration::from_secs(100));
        // A second handle on the same controller shares its series.
        metrics.controller("deploy").panic();

        let lines = samples(&metrics, "controller_runtime_");
        for expected in [
            r#"controller_runtime_reconcile_total{controller="deploy",result="success"} 2"#,
            r#"controller_runtime_reconcile_total{controller="deploy",result="error"} 1"#,
            r#"controller_runtime_reconcile_total{controller="deploy",result="requeue"} 1"#,
            r#"controller_runtime_reconcile_total{controller="deploy",result="requeue_after"} 3"#,
            r#"controller_runtime_reconcile_errors_total{controller="deploy"} 1"#,
            r#"controller_runtime_terminal_reconcile_errors_total{controller="deploy"} 2"#,
            r#"controller_runtime_reconcile_panics_total{controller="deploy"} 2"#,
            r#"controller_runtime_max_concurrent_reconciles{controller="deploy"} 4"#,
            r#"controller_runtime_active_workers{controller="deploy"} 1"#,
            r#"controller_runtime_reconcile_time_seconds_count{controller="deploy"} 3"#,
            r#"controller_runtime_reconcile_time_seconds_sum{controller="deploy"} 102.007"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="0.005",controller="deploy"} 0"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="0.01",controller="deploy"} 1"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="2.0",controller="deploy"} 2"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="60.0",controller="deploy"} 2"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="+Inf",controller="deploy"} 3"#,
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "missing {expected} in {lines:#?}"
            );
        }
        let buckets = lines
            .iter()
            .filter(|l| l.starts_with("controller_runtime_reconcile_time_seconds_bucket"))
            .count();
        assert_eq!(
            buckets,
            RECONCILE_TIME_BUCKETS.len() + 1,
            "40 buckets and +Inf"
        );
    }

    #[test]
    fn leader_gauge_and_rest_client_counter() {
        let metrics = Metrics::new();
        metrics.set_leader("my-operator", true);
        assert_eq!(
            samples(&metrics, "leader_election_master_status"),
            [r#"leader_election_master_status{name="my-operator"} 1"#]
        );
        metrics.set_leader("my-operator", false);
        assert_eq!(
            samples(&metrics, "leader_election_master_status"),
            [r#"leader_election_master_status{name="my-operator"} 0"#]
        );

        let rest = metrics.rest_client();
        rest.request_done("GET", "10.0.0.1:6443", "200");
        rest.request_done("GET", "10.0.0.1:6443", "200");
        rest.request_done("PUT", "10.0.0.1:6443", "<error>");
        let mut lines = samples(&metrics, "rest_client_requests_total");
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"rest_client_requests_total{code="200",host="10.0.0.1:6443",method="GET"} 2"#,
                r#"rest_client_requests_total{code="<error>",host="10.0.0.1:6443",method="PUT"} 1"#,
            ]
        );
    }

    #[test]
    fn workqueue_series_share_the_registry() {
        let metrics = Metrics::new();
        let queue: ferrokube_workqueue::Queue<String> = ferrokube_workqueue::Queue::with_config(
            ferrokube_workqueue::Config::new()
                .name("pods")
                .metrics(metrics.workqueue()),
        );
        queue.add("default/web".to_owned());
        assert_eq!(
            samples(&metrics, "workqueue_depth"),
            [r#"workqueue_depth{name="pods",controller="pods"} 1"#]
        );
        assert_eq!(
            samples(&metrics, "workqueue_adds_total"),
            [r#"workqueue_adds_total{name="pods",controller="pods"} 1"#]
        );
    }

    #[test]
    fn webhook_series_have_controller_runtime_names() {
        let metrics = Metrics::new();
        let hook = metrics.webhook("/validate-v1-pod");
        assert_eq!(hook.path(), "/validate-v1-pod");
        let mut counters = samples(&metrics, "controller_runtime_webhook_requests_total");
        counters.sort(); // a family's series come in hash order
        assert_eq!(
            counters,
            [
                "controller_runtime_webhook_requests_total{code=\"200\",webhook=\"/validate-v1-pod\"} 0",
                "controller_runtime_webhook_requests_total{code=\"500\",webhook=\"/validate-v1-pod\"} 0",
            ]
        );
        let request = hook.start();
        let abandoned = hook.start();
        assert_eq!(
            samples(&metrics, "controller_runtime_webhook_requests_in_flight"),
            ["controller_runtime_webhook_requests_in_flight{webhook=\"/validate-v1-pod\"} 2"]
        );
        drop(abandoned);
        request.done(400);
        let text = metrics.encode();
        for line in [
            "controller_runtime_webhook_requests_total{code=\"400\",webhook=\"/validate-v1-pod\"} 1",
            "controller_runtime_webhook_requests_in_flight{webhook=\"/validate-v1-pod\"} 0",
            "controller_runtime_webhook_latency_seconds_count{webhook=\"/validate-v1-pod\"} 1",
            "controller_runtime_webhook_latency_seconds_bucket{le=\"1000.0\",webhook=\"/validate-v1-pod\"} 1",
            "controller_runtime_webhook_latency_seconds_bucket{le=\"1e-8\",webhook=\"/validate-v1-pod\"} 0",
        ] {
            assert!(
                text.contains(&format!("\n{line}\n")),
                "{line} missing in\n{text}"
            );
        }
        // The same path again: the same series.
        let again = metrics.webhook("/validate-v1-pod").start();
        assert_eq!(
            samples(&metrics, "controller_runtime_webhook_requests_in_flight"),
            ["controller_runtime_webhook_requests_in_flight{webhook=\"/validate-v1-pod\"} 1"]
        );
        drop(again);
    }

    #[test]
    fn user_metrics_are_exposed_and_clones_share_the_registry() {
        let metrics = Metrics::new();
        let clone = metrics.clone();
        let gauge: Gauge = Gauge::default();
        clone.register("my_operator_widgets", "Widgets in stock", gauge.clone());
        gauge.set(42);
        let text = metrics.encode();
        assert!(text.contains("# HELP my_operator_widgets Widgets in stock.\n"));
        assert!(text.contains("\nmy_operator_widgets 42\n"));
        assert_eq!(metrics.try_encode().ok(), Some(text));
    }

    #[test]
    fn reconcile_result_labels() {
        let labels: Vec<_> = ReconcileResult::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(labels, ["error", "requeue_after", "requeue", "success"]);
    }
}
