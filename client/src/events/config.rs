//! [`BroadcasterConfig`]: queue size, series window, flush period, aggregation and spam
//! filter limits, and how writes are retried. Defaults are client-go's.

use std::time::Duration;

use crate::retry::Backoff;

/// How an [`EventBroadcaster`](super::EventBroadcaster) behaves. `Default` gives client-go's
/// values, except the write retries (client-go: 12 tries 10 s apart; here a short backoff).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct BroadcasterConfig {
    // Each field is documented on its getter.
    pub(super) queue_capacity: usize,
    pub(super) flush_interval: Duration,
    pub(super) series_window: Duration,
    pub(super) aggregate_max_events: usize,
    pub(super) aggregate_interval: Duration,
    pub(super) spam_burst: u32,
    pub(super) spam_refill: Duration,
    pub(super) cache_size: usize,
    pub(super) max_concurrent_writes: usize,
    pub(super) request_timeout: Duration,
    pub(super) retry: Backoff,
    pub(super) shutdown_timeout: Duration,
}

impl Default for BroadcasterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1000,
            flush_interval: Duration::from_secs(30),
            series_window: Duration::from_secs(6 * 60),
            aggregate_max_events: 10,
            aggregate_interval: Duration::from_secs(600),
            spam_burst: 25,
            spam_refill: Duration::from_secs(300),
            cache_size: 4096,
            max_concurrent_writes: 8,
            request_timeout: Duration::from_secs(10),
            retry: Backoff {
                duration: Duration::from_millis(500),
                factor: 2.0,
                jitter: 0.25,
                steps: 5,
                cap: Duration::from_secs(5),
            },
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl BroadcasterConfig {
    /// How many recorded events may wait for the broadcaster's task; more are dropped
    /// (client-go's `maxQueuedEvents`, 1000).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// How often changed series are written (one PATCH per series per period).
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// A repeat within this long after the last occurrence extends the series; later, a new
    /// event is created (client-go's `finishTime`, 6 minutes).
    pub fn series_window(&self) -> Duration {
        self.series_window
    }

    /// Aggregation starts at this many different notes for otherwise identical events
    /// (client-go's `defaultAggregateMaxEvents`, 10); 0 turns aggregation off.
    pub fn aggregate_max_events(&self) -> usize {
        self.aggregate_max_events
    }

    /// A similar event after this long a pause starts aggregation afresh
    /// (`defaultAggregateIntervalInSeconds`, 10 minutes).
    pub fn aggregate_interval(&self) -> Duration {
        self.aggregate_interval
    }

    /// Events per reporter + object the spam filter lets through at once
    /// (`defaultSpamBurst`, 25); 0 turns the filter off.
    pub fn spam_burst(&self) -> u32 {
        self.spam_burst
    }

    /// The spam filter gives back one event per this period (`defaultSpamQPS`: 1 / 300 s).
    pub fn spam_refill(&self) -> Duration {
        self.spam_refill
    }

    /// How many keys the correlator and the series cache remember (`maxLruCacheEntries`, 4096).
    pub fn cache_size(&self) -> usize {
        self.cache_size
    }

    /// How many writes may run at once.
    pub fn max_concurrent_writes(&self) -> usize {
        self.max_concurrent_writes
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How a write that failed for a reason worth retrying (no response, timeout, 429, 5xx) is
    /// retried: at most `steps` attempts in all (client-go's `wait.Backoff`), then the write
    /// is given up.
    pub fn retry(&self) -> &Backoff {
        &self.retry
    }

    /// How long [`shutdown`](super::EventBroadcaster::shutdown) waits for the last writes.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Sets [`queue_capacity`](Self::queue_capacity) (at least 1).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets [`flush_interval`](Self::flush_interval) (at least 1 ms).
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets [`series_window`](Self::series_window).
    pub fn with_series_window(mut self, window: Duration) -> Self {
        self.series_window = window;
        self
    }

    /// Sets the aggregation threshold and interval (`max_events` 0: off).
    pub fn with_aggregation(mut self, max_events: usize, interval: Duration) -> Self {
        self.aggregate_max_events = max_events;
        self.aggregate_interval = interval;
        self
    }

    /// Sets the spam filter's burst and refill period (`burst` 0: off).
    pub fn with_spam_filter(mut self, burst: u32, refill: Duration) -> Self {
        self.spam_burst = burst;
        self.spam_refill = refill;
        self
    }

    /// Sets [`cache_size`](Self::cache_size) (at least 1).
    pub fn with_cache_size(mut self, size: usize) -> Self {
        self.cache_size = size.max(1);
        self
    }

    /// Sets [`max_concurrent_writes`](Self::max_concurrent_writes) (at least 1).
    pub fn with_max_concurrent_writes(mut self, writes: usize) -> Self {
        self.max_concurrent_writes = writes.max(1);
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`retry`](Self::retry).
    pub fn with_retry(mut self, backoff: Backoff) -> Self {
        self.retry = backoff;
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}
