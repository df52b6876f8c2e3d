//! [`EventBroadcaster`]: the background task that correlates recorded events and writes them
//! to the API server (client-go's `tools/events` `eventBroadcasterImpl` with
//! `StartRecordingToSink`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use k8s_openapi::api::events::v1::Event;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::config::BroadcasterConfig;
use super::correlate::{Aggregator, Correlated, Correlator, EventKey, Occurrence, SpamFilter};
use super::recorder::Recorder;
use super::series::{Observed, Op, SeriesCache, WriteJob};
use crate::client::Client;
use crate::error::Error;
use crate::options::Patch;
use crate::retry::Backoff;

/// A snapshot of a broadcaster's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventMetrics {
    /// Calls to [`Recorder::event`] that were queued.
    pub recorded: u64,
    /// Calls to [`Recorder::event`] dropped because the queue was full or the broadcaster
    /// had stopped.
    pub dropped: u64,
    /// Events discarded because the API would reject them (empty `reason` or `action`).
    pub invalid: u64,
    /// Events dropped by the spam filter.
    pub spam_filtered: u64,
    /// Events combined into an aggregate event (`(combined from similar events)`).
    pub aggregated: u64,
    /// Occurrences counted into an existing event's series instead of a new event.
    pub series_repeats: u64,
    /// Events created on the server.
    pub created: u64,
    /// Series updates (PATCH) written to the server.
    pub patched: u64,
    /// Writes given up: rejected by the server, or still failing when the retries ran out.
    pub failed: u64,
}

impl EventMetrics {
    /// Writes that reached the server: [`created`](Self::created) + [`patched`](Self::patched).
    pub fn sent(&self) -> u64 {
        self.created + self.patched
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) recorded: Counter,
    pub(crate) dropped: Counter,
    invalid: Counter,
    spam_filtered: Counter,
    aggregated: Counter,
    series_repeats: Counter,
    created: Counter,
    patched: Counter,
    failed: Counter,
}

impl Metrics {
    pub(crate) fn snapshot(&self) -> EventMetrics {
        EventMetrics {
            recorded: self.recorded.get(),
            dropped: self.dropped.get(),
            invalid: self.invalid.get(),
            spam_filtered: self.spam_filtered.get(),
            aggregated: self.aggregated.get(),
            series_repeats: self.series_repeats.get(),
            created: self.created.get(),
            patched: self.patched.get(),
            failed: self.failed.get(),
        }
    }
}

/// What recorders share with the broadcaster.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sender: mpsc::Sender<Occurrence>,
    pub(crate) metrics: Metrics,
}

/// Correlates recorded events and writes them to the API server from a background task.
///
/// [`recorder`](Self::recorder) hands out [`Recorder`]s; [`flush`](Self::flush) writes what is
/// pending now; [`shutdown`](Self::shutdown) does the same and stops the task. Dropping the
/// broadcaster stops the task too (after a last flush nobody waits for).
#[derive(Debug)]
pub struct EventBroadcaster {
    shared: Arc<Shared>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EventBroadcaster {
    /// Starts a broadcaster writing through `client`.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (like `tokio::spawn`).
    #[doc(alias = "NewBroadcaster")]
    #[doc(alias = "StartRecordingToSink")]
    pub fn new(client: Client, config: BroadcasterConfig) -> Self {
        let (sender, events) = mpsc::channel(config.queue_capacity.max(1));
        let (flushes, flush_requests) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            sender,
            metrics: Metrics::default(),
        });
        let stop = CancellationToken::new();
        let worker = Worker {
            correlator: Correlator::new(
                Aggregator::new(
                    config.cache_size,
                    config.aggregate_max_events,
                    config.aggregate_interval,
                ),
                SpamFilter::new(config.cache_size, config.spam_burst, config.spam_refill),
            ),
            series: SeriesCache::new(config.cache_size, config.series_window),
            client,
            shared: Arc::clone(&shared),
            events,
            pending: VecDeque::new(),
            writes: JoinSet::new(),
            running: HashMap::new(),
            config,
        };
        let task = tokio::spawn(worker.run(flush_requests, stop.clone()));
        Self {
            shared,
            flushes,
            stop,
            task: Some(task),
        }
    }

    /// A recorder whose events carry this `reportingController` (a qualified name such as
    /// `example.com/my-controller`) and `reportingInstance` (e.g. the pod name; at most 128
    /// characters). Both are required by the API.
    #[doc(alias = "NewRecorder")]
    pub fn recorder(
        &self,
        reporting_controller: impl Into<String>,
        reporting_instance: impl Into<String>,
    ) -> Recorder {
        Recorder::new(
            Arc::clone(&self.shared),
            reporting_controller.into(),
            reporting_instance.into(),
        )
    }

    /// The counters.
    pub fn metrics(&self) -> EventMetrics {
        self.shared.metrics.snapshot()
    }

    /// Processes every event recorded so far and writes every pending series update, then
    /// returns once those writes have ended (written or given up). Events recorded meanwhile
    /// wait in the queue.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            // An error means the task stopped, which flushes on its way out.
            let _ = wait.await;
        }
    }

    /// Stops the broadcaster: processes what was recorded so far, writes pending series
    /// updates (for at most [`BroadcasterConfig::shutdown_timeout`]) and ends the task.
    /// Recorders still alive drop their events from then on.
    #[doc(alias = "Shutdown")]
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "event broadcaster task failed");
        }
    }
}

impl Drop for EventBroadcaster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// === Worker ===

struct Worker {
    correlator: Correlator,
    series: SeriesCache,
    client: Client,
    shared: Arc<Shared>,
    events: mpsc::Receiver<Occurrence>,
    /// Writes waiting for a free slot.
    pending: VecDeque<WriteJob>,
    writes: JoinSet<bool>,
    /// Which entry each running write is for.
    running: HashMap<tokio::task::Id, (EventKey, u64)>,
    config: BroadcasterConfig,
}

impl Worker {
    async fn run(
        mut self,
        mut flush_requests: mpsc::Receiver<oneshot::Sender<()>>,
        stop: CancellationToken,
    ) {
        let period = self.config.flush_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let max_writes = self.config.max_concurrent_writes.max(1);
        loop {
            self.start_writes();
            // Take new events only while writes keep up, so a slow server fills the bounded
            // queue (and recorders drop) instead of this task's memory.
            let accepting = self.pending.is_empty() && self.writes.len() < max_writes;
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(done) = self.writes.join_next_with_id(), if !self.writes.is_empty() => {
                    self.complete(done);
                }
                Some(reply) = flush_requests.recv() => {
                    self.flush().await;
                    let _ = reply.send(());
                }
                _ = ticks.tick() => {
                    let due = self.series.due(Instant::now());
                    self.pending.extend(due);
                }
                Some(occurrence) = self.events.recv(), if accepting => self.process(occurrence),
            }
        }
        self.events.close();
        let timeout = self.config.shutdown_timeout;
        if tokio::time::timeout(timeout, self.flush()).await.is_err() {
            tracing::warn!(
                ?timeout,
                writes = self.writes.len() + self.pending.len(),
                "event broadcaster shutdown: giving up on the last writes"
            );
            self.writes.abort_all();
        }
        // Anyone still waiting for a flush gets their answer: everything is flushed.
        flush_requests.close();
        while let Ok(reply) = flush_requests.try_recv() {
            let _ = reply.send(());
        }
    }

    /// Drains the queue, then writes every changed series until nothing is left to write.
    async fn flush(&mut self) {
        while let Ok(occurrence) = self.events.try_recv() {
            self.process(occurrence);
        }
        loop {
            let due = self.series.due(Instant::now());
            self.pending.extend(due);
            self.start_writes();
            match self.writes.join_next_with_id().await {
                Some(done) => self.complete(done),
                None => break,
            }
        }
    }

    fn process(&mut self, o: Occurrence) {
        let metrics = &self.shared.metrics;
        if o.reason.is_empty() || o.action.is_empty() {
            metrics.invalid.inc();
            tracing::warn!(
                reason = %o.reason, action = %o.action, note = %o.note,
                "event without a reason or an action: not recorded"
            );
            return;
        }
        let (key, note) = match self.correlator.correlate(&o) {
            None => {
                metrics.spam_filtered.inc();
                tracing::debug!(
                    regarding = ?o.regarding.name, reason = %o.reason, note = %o.note,
                    "too many events about this object: event dropped by the spam filter"
                );
                return;
            }
            Some(Correlated {
                key,
                note,
                combined,
            }) => {
                if combined {
                    metrics.aggregated.inc();
                }
                (key, note)
            }
        };
        match self.series.observe(key, &o, note) {
            Observed::New(job) => self.pending.push_back(*job),
            Observed::Repeat(count) => {
                metrics.series_repeats.inc();
                tracing::trace!(reason = %o.reason, count, "event repeated");
            }
        }
    }

    fn start_writes(&mut self) {
        while self.writes.len() < self.config.max_concurrent_writes.max(1) {
            let Some(job) = self.pending.pop_front() else {
                return;
            };
            let entry = (job.key.clone(), job.id);
            let write = write(
                self.client.clone(),
                job,
                self.config.retry.clone(),
                self.config.request_timeout,
                Arc::clone(&self.shared),
            );
            let handle = self.writes.spawn(write);
            self.running.insert(handle.id(), entry);
        }
    }

    fn complete(&mut self, done: Result<(tokio::task::Id, bool), JoinError>) {
        let (task, written) = match done {
            Ok((task, written)) => (task, written),
            Err(e) => {
                tracing::warn!(error = %e, "event write task failed");
                (e.id(), false)
            }
        };
        if let Some((key, id)) = self.running.remove(&task) {
            self.series.complete(&key, id, written);
        }
    }
}

/// `error: cause: cause…`, for one log line.
fn with_causes(error: &Error) -> String {
    let mut line = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Whether a failed write may succeed if tried again (client-go retries anything but a
/// `Status` from the server; a 429 or 5xx is worth another try too).
fn retriable(e: &Error) -> bool {
    match e {
        Error::Transport { .. } | Error::Body { .. } | Error::Timeout { .. } => true,
        Error::Api(api) => api.status.code == 429 || api.status.code >= 500,
        _ => false,
    }
}

/// Performs one write (client-go's `recordEvent` + `attemptRecording`): a create, or a
/// merge patch of `series`; a patch of an event that is gone becomes a create, and a create of
/// a series whose event exists becomes a patch. Returns whether the event is on the server.
async fn write(
    client: Client,
    job: WriteJob,
    mut backoff: Backoff,
    timeout: Duration,
    shared: Arc<Shared>,
) -> bool {
    let metrics = &shared.metrics;
    let event = &job.event;
    let namespace = event.metadata.namespace.as_deref().unwrap_or_default();
    let name = event.metadata.name.as_deref().unwrap_or_default();
    let api = client.namespaced::<Event>(namespace);
    let patch = Patch::Merge(serde_json::json!({ "series": event.series }));
    let mut op = job.op;
    loop {
        let request = match op {
            Op::Create => api.request(Method::POST).json(event),
            Op::Patch => api
                .object_request(Method::PATCH, name)
                .json_as(patch.body(), patch.content_type()),
        };
        let error = match request.timeout(timeout).bytes().await {
            Ok(_) => {
                match op {
                    Op::Create => metrics.created.inc(),
                    Op::Patch => metrics.patched.inc(),
                }
                return true;
            }
            Err(e) => e,
        };
        let switch = match op {
            Op::Patch if error.is_not_found() => Some(Op::Create),
            Op::Create if error.is_already_exists() && event.series.is_some() => Some(Op::Patch),
            _ => None,
        };
        if let Some(next) = switch {
            tracing::debug!(%namespace, %name, error = %error, ?next, "event write: switching");
            op = next;
            if backoff.next_retry().is_some() {
                continue;
            }
        } else if op == Op::Create && error.is_already_exists() {
            // An earlier attempt got through after all.
            tracing::debug!(%namespace, %name, "event already exists");
            return true;
        } else if retriable(&error)
            && let Some(delay) = backoff.next_retry()
        {
            tracing::debug!(%namespace, %name, error = %error, ?delay, "event write failed: retrying");
            tokio::time::sleep(delay).await;
            continue;
        }
        metrics.failed.inc();
        tracing::warn!(
            %namespace, %name, reason = ?event.reason, note = ?event.note,
            error = %with_causes(&error),
            "unable to write event (giving up)"
        );
        return false;
    }
}
