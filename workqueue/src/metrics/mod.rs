//! Queue metrics: client-go's `MetricsProvider` and its series.
//!
//! A queue reports seven series, the ones client-go's `util/workqueue` defines:
//! depth, adds, queue latency, work duration, unfinished work seconds, longest running
//! processor seconds and retries. A [`MetricsProvider`] builds the per-queue handles for them;
//! [`PrometheusMetrics`] registers them in a `prometheus_client` registry under the names
//! controller-runtime exports (`workqueue_depth{name,controller}` …), and [`NoopMetrics`] (the
//! default) records nothing.
//!
//! As in client-go, a queue only reports metrics when it has a name
//! ([`Config::name`](crate::Config::name)). A queue without metrics takes no timestamps at all.

mod prometheus;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use self::prometheus::PrometheusMetrics;

/// A gauge a queue moves up and down (its depth).
pub trait GaugeMetric: Send + Sync {
    /// Adds one.
    fn inc(&self);
    /// Subtracts one.
    fn dec(&self);
}

/// A gauge a queue sets to a value (unfinished work, longest running processor).
pub trait SettableGaugeMetric: Send + Sync {
    /// Sets the gauge to `value`.
    fn set(&self, value: f64);
}

/// A monotonic counter (adds, retries).
pub trait CounterMetric: Send + Sync {
    /// Adds one.
    fn inc(&self);
}

/// A distribution of observed values, in seconds (queue latency, work duration).
pub trait HistogramMetric: Send + Sync {
    /// Records one observation.
    fn observe(&self, value: f64);
}

/// Builds the metric handles of one named queue.
///
/// Each method is called once per queue, with the queue's name, when the queue is created.
pub trait MetricsProvider: Send + Sync {
    /// Current number of keys waiting to be handed out (`workqueue_depth`).
    fn new_depth_metric(&self, name: &str) -> Box<dyn GaugeMetric>;
    /// Number of adds the queue accepted (`workqueue_adds_total`).
    fn new_adds_metric(&self, name: &str) -> Box<dyn CounterMetric>;
    /// Seconds a key waited in the queue before a worker got it (`workqueue_queue_duration_seconds`).
    fn new_latency_metric(&self, name: &str) -> Box<dyn HistogramMetric>;
    /// Seconds between `get` and `done` (`workqueue_work_duration_seconds`).
    fn new_work_duration_metric(&self, name: &str) -> Box<dyn HistogramMetric>;
    /// Sum of the ages of all keys being processed (`workqueue_unfinished_work_seconds`).
    fn new_unfinished_work_seconds_metric(&self, name: &str) -> Box<dyn SettableGaugeMetric>;
    /// Age of the oldest key being processed (`workqueue_longest_running_processor_seconds`).
    fn new_longest_running_processor_seconds_metric(
        &self,
        name: &str,
    ) -> Box<dyn SettableGaugeMetric>;
    /// Number of delayed or rate-limited adds (`workqueue_retries_total`).
    fn new_retries_metric(&self, name: &str) -> Box<dyn CounterMetric>;

    /// Whether every handle this provider builds ignores its input.
    ///
    /// A queue whose provider is no-op skips its metric bookkeeping entirely, timestamps
    /// included. Only [`NoopMetrics`] should return `true`.
    fn is_noop(&self) -> bool {
        false
    }
}

/// A [`MetricsProvider`] that records nothing; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopMetrics;

impl GaugeMetric for NoopMetrics {
    fn inc(&self) {}
    fn dec(&self) {}
}

impl SettableGaugeMetric for NoopMetrics {
    fn set(&self, _value: f64) {}
}

impl CounterMetric for NoopMetrics {
    fn inc(&self) {}
}

impl HistogramMetric for NoopMetrics {
    fn observe(&self, _value: f64) {}
}

impl MetricsProvider for NoopMetrics {
    fn new_depth_metric(&self, _name: &str) -> Box<dyn GaugeMetric> {
        Box::new(NoopMetrics)
    }
    fn new_adds_metric(&self, _name: &str) -> Box<dyn CounterMetric> {
        Box::new(NoopMetrics)
    }
    fn new_latency_metric(&self, _name: &str) -> Box<dyn HistogramMetric> {
        Box::new(NoopMetrics)
    }
    fn new_work_duration_metric(&self, _name: &str) -> Box<dyn HistogramMetric> {
        Box::new(NoopMetrics)
    }
    fn new_unfinished_work_seconds_metric(&self, _name: &str) -> Box<dyn SettableGaugeMetric> {
        Box::new(NoopMetrics)
    }
    fn new_longest_running_processor_seconds_metric(
        &self,
        _name: &str,
    ) -> Box<dyn SettableGaugeMetric> {
        Box::new(NoopMetrics)
    }
    fn new_retries_metric(&self, _name: &str) -> Box<dyn CounterMetric> {
        Box::new(NoopMetrics)
    }
    fn is_noop(&self) -> bool {
        true
    }
}

// === impl QueueMetrics ===

/// How often the unfinished-work gauges are refreshed (client-go's period).
pub(crate) const UNFINISHED_WORK_UPDATE_PERIOD: Duration = Duration::from_millis(500);

/// The metric handles of one queue. Absent (`None` in the queue) when metrics are disabled.
pub(crate) struct QueueMetrics {
    depth: Box<dyn GaugeMetric>,
    adds: Box<dyn CounterMetric>,
    latency: Box<dyn HistogramMetric>,
    work_duration: Box<dyn HistogramMetric>,
    unfinished: Box<dyn SettableGaugeMetric>,
    longest: Box<dyn SettableGaugeMetric>,
}

impl QueueMetrics {
    /// The queue metrics for `name`, or `None` when they would record nothing.
    pub(crate) fn new(provider: Option<&Arc<dyn MetricsProvider>>, name: &str) -> Option<Self> {
        let provider = enabled(provider, name)?;
        Some(Self {
            depth: provider.new_depth_metric(name),
            adds: provider.new_adds_metric(name),
            latency: provider.new_latency_metric(name),
            work_duration: provider.new_work_duration_metric(name),
            unfinished: provider.new_unfinished_work_seconds_metric(name),
            longest: provider.new_longest_running_processor_seconds_metric(name),
        })
    }

    /// A key became waiting: counts an add and one more unit of depth.
    pub(crate) fn add(&self) {
        self.adds.inc();
        self.depth.inc();
    }

    /// A key waiting in the queue since `added_at` was handed to a worker at `now`: one less
    /// unit of depth, and the wait observed (when both times are known).
    pub(crate) fn handed_out(&self, now: Option<Instant>, added_at: Option<Instant>) {
        self.depth.dec();
        if let (Some(now), Some(added_at)) = (now, added_at) {
            self.latency
                .observe(now.saturating_duration_since(added_at).as_secs_f64());
        }
    }

    /// Records the time a worker held a key.
    pub(crate) fn observe_work(&self, worked: Duration) {
        self.work_duration.observe(worked.as_secs_f64());
    }

    /// Sets the unfinished-work gauges from the start times of the keys being processed.
    pub(crate) fn update_unfinished(&self, now: Instant, starts: &Slots) {
        let mut total = 0.0;
        let mut oldest = 0.0_f64;
        for start in starts.iter() {
            let age = now.saturating_duration_since(start).as_secs_f64();
            total += age;
            oldest = oldest.max(age);
        }
        self.unfinished.set(total);
        self.longest.set(oldest);
    }
}

impl fmt::Debug for QueueMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueMetrics").finish_non_exhaustive()
    }
}

/// The retries counter of a named queue, if metrics are enabled.
pub(crate) fn retries_metric(
    provider: Option<&Arc<dyn MetricsProvider>>,
    name: &str,
) -> Option<Box<dyn CounterMetric>> {
    enabled(provider, name).map(|provider| provider.new_retries_metric(name))
}

fn enabled<'a>(
    provider: Option<&'a Arc<dyn MetricsProvider>>,
    name: &str,
) -> Option<&'a Arc<dyn MetricsProvider>> {
    provider.filter(|provider| !name.is_empty() && !provider.is_noop())
}

// === unfinished-work refresher ===

/// A queue whose unfinished-work gauges need refreshing.
pub(crate) trait UnfinishedWork: Send + Sync + 'static {
    /// Refreshes the gauges; returns `false` once the queue shut down.
    fn update_unfinished_work(&self, now: Instant) -> bool;
}

/// Starts the task refreshing `queue`'s unfinished-work gauges every 500 ms, like client-go's
/// `updateUnfinishedWorkLoop`, unless `started` says it runs already. The task holds the queue
/// weakly and ends at shutdown or drop. Outside a Tokio runtime nothing is started (yet).
pub(crate) fn start_unfinished_work_loop<T: UnfinishedWork>(
    queue: &Arc<T>,
    started: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    if started.load(Ordering::Relaxed) {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if started.swap(true, Ordering::AcqRel) {
        return;
    }
    let queue = Arc::downgrade(queue);
    drop(handle.spawn(async move {
        let mut ticks = tokio::time::interval(UNFINISHED_WORK_UPDATE_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            match queue.upgrade() {
                Some(queue) if queue.update_unfinished_work(now) => {}
                _ => return,
            }
        }
    }));
}

// === impl Slots ===

/// Sentinel for "no slot".
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// Timestamps in reusable slots: keeping them costs no allocation per key, and refreshing the
/// unfinished-work gauges only visits the start times of keys in flight.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    starts: Vec<Option<Instant>>,
    free: Vec<u32>,
}

impl Slots {
    /// Stores a start time and returns its slot.
    pub(crate) fn insert(&mut self, start: Instant) -> u32 {
        if let Some(slot) = self.free.pop() {
            self.starts[slot as usize] = Some(start);
            return slot;
        }
        let Ok(slot) = u32::try_from(self.starts.len()) else {
            return NO_SLOT;
        };
        if slot == NO_SLOT {
            return NO_SLOT;
        }
        self.starts.push(Some(start));
        slot
    }

    /// Frees a slot and returns the time it held (`None` for [`NO_SLOT`]).
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Instant> {
        let start = self.starts.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(start)
    }

    fn iter(&self) -> impl Iterator<Item = Instant> + '_ {
        self.starts.iter().flatten().copied()
    }
}

/// Per-key metric bookkeeping stored inline in a queue's entry: two slots in [`Stamps`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// When the key last became waiting (for the latency histogram).
    added: u32,
    /// When its processing started (for work duration and unfinished work).
    started: u32,
}

impl Timing {
    pub(crate) const NONE: Self = Self {
        added: NO_SLOT,
        started: NO_SLOT,
    };
}

/// The timestamps of a queue's keys, out of line so that entries stay small (and hold nothing
/// when metrics are off).
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    added: Slots,
    started: Slots,
}

impl Stamps {
    /// Records that the key became waiting at `now`, unless it already waits (client-go keeps the
    /// first add time).
    pub(crate) fn added(&mut self, timing: &mut Timing, now: Option<Instant>) {
        if let Some(now) = now
            && timing.added == NO_SLOT
        {
            timing.added = self.added.insert(now);
        }
    }

    /// Takes the time the key became waiting.
    pub(crate) fn take_added(&mut self, timing: &mut Timing) -> Option<Instant> {
        self.added
            .remove(std::mem::replace(&mut timing.added, NO_SLOT))
    }

    /// Records that processing the key started at `now`.
    pub(crate) fn started(&mut self, timing: &mut Timing, now: Option<Instant>) {
        if let Some(now) = now {
            let _ = self.started.remove(timing.started);
            timing.started = self.started.insert(now);
        }
    }

    /// Takes the time processing the key started.
    pub(crate) fn take_started(&mut self, timing: &mut Timing) -> Option<Instant> {
        self.started
            .remove(std::mem::replace(&mut timing.started, NO_SLOT))
    }

    /// Forgets both times (the key leaves the queue).
    pub(crate) fn clear(&mut self, timing: &mut Timing) {
        let _ = self.take_added(timing);
        let _ = self.take_started(timing);
    }

    /// Start times of the keys being processed.
    pub(crate) fn processing(&self) -> &Slots {
        &self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_reuse_freed_entries() {
        let now = Instant::now();
        let mut slots = Slots::default();
        let a = slots.insert(now);
        let b = slots.insert(now + Duration::from_secs(1));
        assert_ne!(a, b);
        assert_eq!(slots.remove(a), Some(now));
        assert_eq!(slots.remove(a), None, "a freed slot is empty");
        let c = slots.insert(now + Duration::from_secs(2));
        assert_eq!(c, a, "freed slots are reused");
        assert_eq!(slots.iter().count(), 2);
    }

    #[test]
    fn metrics_are_disabled_without_name_or_provider() {
        let noop: Arc<dyn MetricsProvider> = Arc::new(NoopMetrics);
        assert!(QueueMetrics::new(None, "q").is_none());
        assert!(QueueMetrics::new(Some(&noop), "q").is_none());
        let mut registry = prometheus_client::registry::Registry::default();
        let prom: Arc<dyn MetricsProvider> = Arc::new(PrometheusMetrics::new(&mut registry));
        assert!(QueueMetrics::new(Some(&prom), "").is_none());
        assert!(QueueMetrics::new(Some(&prom), "q").is_some());
        assert!(retries_metric(Some(&prom), "q").is_some());
    }
}
