//! [`Controller`]: watches feed a priority queue of requests; workers hand them to the
//! [`Reconciler`] (controller-runtime's `pkg/internal/controller`).
//!
//! * A key is never reconciled by two workers at once, and a key changed while it is being
//!   reconciled is reconciled again afterwards (the queue's guarantees).
//! * Errors retry with the rate limiter (per-key exponential backoff, 5 ms → 1000 s, and an
//!   overall 10 qps / 100 burst bucket by default); a [`TerminalError`] is not retried;
//!   success forgets the key's failures.
//! * A panic in a reconcile is caught, logged and counted
//!   (`controller_runtime_reconcile_panics_total`), and retried like an error.
//! * Events from initial lists and resyncs are queued at [`LOW_PRIORITY`], so live changes are
//!   reconciled first.
//! * Each reconcile runs in a `reconcile` tracing span with `controller`, `namespace`,
//!   `name` and `reconcile_id`.
//!
//! Controllers are built with [`Builder`](crate::builder::Builder) and run by the
//! [`Manager`](crate::manager::Manager).
//!
//! [`TerminalError`]: crate::reconcile::TerminalError

mod source;
#[cfg(test)]
mod tests;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_workqueue::{AddOpts, PriorityQueue, RateLimiter};
use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::source::{EventFilter, LOW_PRIORITY};
pub(crate) use self::source::{Kind, Source};
use crate::cache::Cache;
use crate::metrics::{ControllerMetrics, ReconcileResult};
use crate::reconcile::{self, BoxError, Context, Reconciler, Request};

/// controller-runtime's default `CacheSyncTimeout`.
pub const DEFAULT_CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the sync wait looks again.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// Why a controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch's informer did not sync in time.
    #[error(
        "controller {controller}: timed out after {timeout:?} waiting for the caches of {sources} to sync"
    )]
    CacheSyncTimeout {
        /// The controller's name.
        controller: String,
        /// The watched resources.
        sources: String,
        /// The configured timeout.
        timeout: Duration,
    },
}

/// The rate limiter type a controller's queue uses.
pub type BoxRateLimiter = Box<dyn RateLimiter<Request>>;

/// How a controller runs (controller-runtime's `controller.Options`).
#[must_use]
pub struct Options {
    pub(crate) max_concurrent_reconciles: usize,
    pub(crate) rate_limiter: Option<BoxRateLimiter>,
    pub(crate) reconcile_timeout: Option<Duration>,
    pub(crate) cache_sync_timeout: Duration,
    pub(crate) recover_panic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_concurrent_reconciles: 1,
            rate_limiter: None,
            reconcile_timeout: None,
            cache_sync_timeout: DEFAULT_CACHE_SYNC_TIMEOUT,
            recover_panic: true,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("max_concurrent_reconciles", &self.max_concurrent_reconciles)
            .field("custom_rate_limiter", &self.rate_limiter.is_some())
            .field("reconcile_timeout", &self.reconcile_timeout)
            .field("cache_sync_timeout", &self.cache_sync_timeout)
            .field("recover_panic", &self.recover_panic)
            .finish()
    }
}

impl Options {
    /// How many reconciles run at once (default 1); never for the same key.
    pub fn max_concurrent_reconciles(mut self, n: usize) -> Self {
        self.max_concurrent_reconciles = n.max(1);
        self
    }

    /// The rate limiter for retries (default: controller-runtime's, per-key exponential
    /// 5 ms → 1000 s and an overall 10 qps / 100 burst bucket).
    pub fn rate_limiter(mut self, limiter: impl RateLimiter<Request> + 'static) -> Self {
        self.rate_limiter = Some(Box::new(limiter));
        self
    }

    /// Fail a reconcile that takes longer than this (its future is dropped; retried like an
    /// error). Default: no timeout.
    pub fn reconcile_timeout(mut self, timeout: Duration) -> Self {
        self.reconcile_timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// How long the controller waits for its watches to sync before it fails (default 2 min).
    pub fn cache_sync_timeout(mut self, timeout: Duration) -> Self {
        self.cache_sync_timeout = timeout;
        self
    }

    /// Catch panics in reconciles (default true). When false a panic ends the controller
    /// at once (the manager then stops with [`RunnablePanicked`](crate::manager::Error::RunnablePanicked)).
    pub fn recover_panic(mut self, recover: bool) -> Self {
        self.recover_panic = recover;
        self
    }
}

/// A controller: its watches, queue, workers and reconciler. Built by
/// [`Builder`](crate::builder::Builder); run by the manager (or by [`run`](Self::run)).
pub struct Controller<R> {
    pub(crate) name: Arc<str>,
    pub(crate) reconciler: Arc<R>,
    pub(crate) sources: Vec<Box<dyn Source>>,
    pub(crate) queue: PriorityQueue<Request>,
    pub(crate) options: Options,
    pub(crate) metrics: ControllerMetrics,
}

impl<R> std::fmt::Debug for Controller<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.name)
            .field(
                "sources",
                &self
                    .sources
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>(),
            )
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<R: Reconciler> Controller<R> {
    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The controller's queue (to add requests from outside its watches).
    pub fn queue(&self) -> &PriorityQueue<Request> {
        &self.queue
    }

    /// Runs the controller until `cancel` fires: registers its watches on `cache`'s
    /// informers (the cache must be running: see [`Cache::start`]), waits for them to sync,
    /// then runs the workers. On cancel it stops handing
    /// out requests and waits for the reconciles in flight.
    ///
    /// # Errors
    ///
    /// [`Error::CacheSyncTimeout`] if the watches do not sync in time.
    pub async fn run(self, cache: Cache, cancel: CancellationToken) -> Result<(), Error> {
        let started: Vec<_> = self
            .sources
            .iter()
            .map(|s| s.start(&cache, &self.queue))
            .collect();
        let result = self.run_started(&started, cancel).await;
        for s in &started {
            s.stop();
        }
        result
    }

    async fn run_started(
        &self,
        started: &[Box<dyn source::Started>],
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        tracing::info!(controller = %self.name, "starting controller");
        let deadline = Instant::now() + self.options.cache_sync_timeout;
        while !started.iter().all(|s| s.has_synced()) {
            if Instant::now() >= deadline {
                self.queue.shutdown();
                return Err(Error::CacheSyncTimeout {
                    controller: self.name.to_string(),
                    sources: self
                        .sources
                        .iter()
                        .map(|s| s.describe())
                        .collect::<Vec<_>>()
                        .join(", "),
                    timeout: self.options.cache_sync_timeout,
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.queue.shutdown();
                    return Ok(());
                }
                _ = tokio::time::sleep(SYNC_POLL) => {}
            }
        }
        let workers = self.options.max_concurrent_reconciles;
        tracing::info!(controller = %self.name, workers, "starting workers");
        self.metrics.set_max_concurrent(workers);
        let worker = Worker {
            name: Arc::clone(&self.name),
            reconciler: Arc::clone(&self.reconciler),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            timeout: self.options.reconcile_timeout,
            recover_panic: self.options.recover_panic,
            cancel: cancel.clone(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let worker = worker.clone();
            tasks.spawn(async move { worker.run().await });
        }
        // A worker ends early only by panicking (with `recover_panic(false)`): that panic
        // ends the controller (and the manager) at once instead of leaving fewer workers.
        tokio::select! {
            _ = cancel.cancelled() => {}
            Some(joined) = tasks.join_next() => {
                self.queue.shutdown();
                if let Err(e) = joined
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        tracing::info!(controller = %self.name, "stopping: waiting for reconciles in flight");
        self.queue.shutdown();
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        tracing::info!(controller = %self.name, "all workers finished");
        Ok(())
    }
}

/// One worker's view of the controller.
struct Worker<R> {
    name: Arc<str>,
    reconciler: Arc<R>,
    queue: PriorityQueue<Request>,
    metrics: ControllerMetrics,
    timeout: Option<Duration>,
    recover_panic: bool,
    cancel: CancellationToken,
}

impl<R> Clone for Worker<R> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            reconciler: Arc::clone(&self.reconciler),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            timeout: self.timeout,
            recover_panic: self.recover_panic,
            cancel: self.cancel.clone(),
        }
    }
}

/// While a worker reconciles a key: on drop (also on unwind) the key is done and the
/// worker is counted idle again.
struct Busy<'a> {
    queue: &'a PriorityQueue<Request>,
    metrics: &'a ControllerMetrics,
    request: &'a Request,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.metrics.worker_finished();
        self.queue.done(self.request);
    }
}

/// How a reconcile ended.
enum Outcome {
    Finished(Result<reconcile::Action, BoxError>),
    Panicked(String),
    TimedOut(Duration),
}

impl<R: Reconciler> Worker<R> {
    async fn run(self) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                next = self.queue.get_with_priority() => next,
            };
            let Some((request, priority)) = next else {
                return;
            };
            if self.cancel.is_cancelled() {
                self.queue.done(&request);
                return;
            }
            // Marks the key done and the worker idle even if the reconcile panics.
            let _busy = Busy {
                queue: &self.queue,
                metrics: &self.metrics,
                request: &request,
            };
            self.metrics.worker_started();
            self.reconcile(&request, priority).await;
        }
    }

    async fn reconcile(&self, request: &Request, priority: i32) {
        let ctx = Context::new(Arc::clone(&self.name), self.cancel.clone());
        let span = tracing::info_span!(
            "reconcile",
            controller = %self.name,
            namespace = request.namespace().unwrap_or(""),
            name = %request.name,
            reconcile_id = %ctx.reconcile_id(),
        );
        let start = Instant::now();
        let outcome = self
            .call(request.clone(), ctx)
            .instrument(span.clone())
            .await;
        self.metrics.observe_time(start.elapsed());
        let _entered = span.enter();
        let retry = AddOpts::new().rate_limited(true).priority(priority);
        match outcome {
            Outcome::Finished(Ok(action)) => {
                if let Some(delay) = action.requeue_delay() {
                    self.queue.forget(request);
                    self.queue.add_with(
                        request.clone(),
                        AddOpts::new().after(delay).priority(priority),
                    );
                    self.metrics.reconcile(ReconcileResult::RequeueAfter);
                } else if action.is_rate_limited_requeue() {
                    self.queue.add_with(request.clone(), retry);
                    self.metrics.reconcile(ReconcileResult::Requeue);
                } else {
                    self.queue.forget(request);
                    self.metrics.reconcile(ReconcileResult::Success);
                }
                tracing::debug!("reconciled");
            }
            Outcome::Finished(Err(error)) if reconcile::is_terminal(&*error) => {
                self.queue.forget(request);
                self.metrics.terminal_error();
                self.metrics.error();
                self.metrics.reconcile(ReconcileResult::Error);
                tracing::error!(error = %reconcile::Chain(&*error), "reconcile failed with a terminal error; not retrying");
            }
            Outcome::Finished(Err(error)) => {
                self.queue.add_with(request.clone(), retry);
                self.metrics.error();
                self.metrics.reconcile(ReconcileResult::Error);
                tracing::error!(error = %reconcile::Chain(&*error), "reconcile failed; retrying");
            }
            Outcome::Panicked(message) => {
                self.queue.add_with(request.clone(), retry);
                self.metrics.panic();
                self.metrics.error();
                self.metrics.reconcile(ReconcileResult::Error);
                tracing::error!(panic = %message, "reconcile panicked; retrying");
            }
            Outcome::TimedOut(after) => {
                self.queue.add_with(request.clone(), retry);
                self.metrics.error();
                self.metrics.reconcile(ReconcileResult::Error);
                tracing::error!("reconcile timed out after {after:?}; retrying");
            }
        }
    }

    async fn call(&self, request: Request, ctx: Context) -> Outcome {
        // Boxed once: the wrappers below (panic catching, timeout, tracing) then move a
        // pointer instead of copying a reconciler's often large future.
        let future = async {
            Box::pin(self.reconciler.reconcile(request, ctx))
                .await
                .map_err(Into::into)
        };
        let caught = async {
            if self.recover_panic {
                match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(result) => Outcome::Finished(result),
                    Err(payload) => Outcome::Panicked(panic_message(&*payload)),
                }
            } else {
                Outcome::Finished(future.await)
            }
        };
        match self.timeout {
            Some(t) => tokio::time::timeout(t, caught)
                .await
                .unwrap_or(Outcome::TimedOut(t)),
            None => caught.await,
        }
    }
}

/// A panic payload as text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}
