//! [`Manager`]: the shared client and cache, controllers and other runnables, leader election
//! with warm standby, one HTTP server for `/metrics`, `/healthz`, `/readyz`, and graceful
//! shutdown (controller-runtime's `pkg/manager`).
//!
//! [`Manager::start`] runs, in order: the HTTP server; the webhook server, if there is one
//! (on every replica: conversion webhooks must answer before the caches list); the cache (every informer the
//! controllers need, on every replica: a standby's caches are synced before it leads); the
//! runnables that need no leader election; then, once the Lease is held (at once without
//! leader election), the leader-elected runnables — the controllers.
//!
//! Shutdown (the token passed to `start` is cancelled) runs in reverse: leader-elected
//! runnables stop taking work and the manager waits for reconciles in flight, then the Lease
//! is released (if configured), the other runnables stop, the cache, the event broadcaster,
//! the webhook server (requests in flight are answered) and the HTTP server — all within the
//! graceful shutdown timeout.
//!
//! Losing the Lease stops the leader-elected runnables at once and `start` returns
//! [`Error::LeaderElectionLost`] without a graceful wait (or exits the process, with
//! [`ManagerOptions::exit_on_lost_leadership`]): a replica that lost the Lease must not go on
//! writing.

mod options;
mod runnable;
mod signals;
mod start;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrokube_client::leader_election::{HealthzAdaptor, LeaderElectionError};
use ferrokube_client::{BroadcasterConfig, Client, EventBroadcaster, Recorder};
use parking_lot::Mutex;
use tokio::sync::watch;

pub use self::options::{DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT, LeaderElectionOptions, ManagerOptions};
pub use self::runnable::{FnRunnable, RunFuture, Runnable, runnable_fn};
pub use self::signals::shutdown_signal;
use crate::cache::Cache;
use crate::cached_client::CachedClient;
use crate::metrics::Metrics;
use crate::reconcile::BoxError;
use crate::server::HealthChecks;
use crate::webhook::server::{Options as WebhookServerOptions, WebhookServer};

/// Why the manager could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built from the configuration.
    #[error("cannot build the manager's client")]
    Config(#[source] ferrokube_client::ConfigError),
    /// `start` was called twice, or a runnable was added after start.
    #[error("the manager has already been started")]
    AlreadyStarted,
    /// Two controllers of one manager share a name.
    #[error(
        "a controller named {name:?} already exists in this manager; controller names must be unique"
    )]
    DuplicateController {
        /// The name.
        name: String,
    },
    /// The leader election options are invalid.
    #[error("invalid leader election options")]
    LeaderElectionConfig(#[source] LeaderElectionError),
    /// This replica lost the Lease: leader-elected work was stopped at once.
    #[error("leader election lost: {reason}")]
    LeaderElectionLost {
        /// Why leadership ended.
        reason: String,
    },
    /// The HTTP server could not start, or a health check could not be added.
    #[error(transparent)]
    Server(#[from] crate::server::Error),
    /// The webhook server could not start (its certificate, its port).
    #[error(transparent)]
    Webhook(#[from] crate::webhook::server::Error),
    /// The cache failed (an informer panicked).
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    /// A runnable (e.g. a controller) returned an error.
    #[error("runnable {name} failed")]
    Runnable {
        /// The runnable's name.
        name: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A runnable panicked.
    #[error("runnable {name} panicked: {message}")]
    RunnablePanicked {
        /// The runnable's name.
        name: String,
        /// The panic's message.
        message: String,
    },
    /// Shutdown took longer than the graceful shutdown timeout; these were abandoned.
    #[error("graceful shutdown timed out after {timeout:?}; still running: {pending}")]
    GracefulShutdownTimeout {
        /// The timeout.
        timeout: Duration,
        /// What was still running, comma-separated.
        pending: String,
    },
}

struct Inner {
    client: Client,
    cache: Cache,
    cached_client: CachedClient,
    metrics: Metrics,
    healthz: HealthChecks,
    readyz: HealthChecks,
    leader_election: Option<LeaderElectionOptions>,
    identity: String,
    bind_address: Option<SocketAddr>,
    graceful_shutdown_timeout: Duration,
    exit_on_lost_leadership: bool,
    events_config: Mutex<Option<BroadcasterConfig>>,
    broadcaster: OnceLock<EventBroadcaster>,
    runnables: Mutex<Vec<Box<dyn Runnable>>>,
    controller_names: Mutex<HashSet<String>>,
    started: AtomicBool,
    server_address: Mutex<Option<SocketAddr>>,
    leading: watch::Sender<bool>,
    leader_healthz: HealthzAdaptor,
    webhook_server: OnceLock<WebhookServer>,
}

/// Runs controllers and other runnables with a shared client and cache. Cheap to clone.
///
/// ```no_run
/// use ferrokube_runtime::prelude::*;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ferrokube_runtime::client::Config::infer().await?;
/// let manager = Manager::new(
///     &config,
///     ManagerOptions::default().leader_election(LeaderElectionOptions::new("default", "my-operator")),
/// )?;
/// // Builder::new(&manager).for_::<MyKind>().complete(reconciler)?;
/// manager.start(shutdown_signal()?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("identity", &self.inner.identity)
            .field("leader_election", &self.inner.leader_election)
            .field("bind_address", &self.inner.bind_address)
            .finish_non_exhaustive()
    }
}

/// This host's name, for the default leader election identity.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown-host".to_owned())
}

// === impl Manager ===

impl Manager {
    /// A manager whose client is built from `config`, with the client's request metrics
    /// (`rest_client_requests_total`) in the manager's registry. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the client cannot be built.
    pub fn new(config: &ferrokube_client::Config, options: ManagerOptions) -> Result<Self, Error> {
        let metrics = Metrics::new();
        let config = config.clone().with_request_metrics(metrics.rest_client());
        let client = Client::from_config(&config).map_err(Error::Config)?;
        Ok(Self::with_metrics(client, options, metrics))
    }

    /// A manager around an existing client (its requests are not counted in the manager's
    /// metrics).
    pub fn from_client(client: Client, options: ManagerOptions) -> Self {
        Self::with_metrics(client, options, Metrics::new())
    }

    fn with_metrics(client: Client, options: ManagerOptions, metrics: Metrics) -> Self {
        let ManagerOptions {
            cache,
            leader_election,
            bind_address,
            graceful_shutdown_timeout,
            events,
            field_manager,
            exit_on_lost_leadership,
            webhook_server,
        } = options;
        let identity = leader_election
            .as_ref()
            .and_then(|le| le.identity.clone())
            .unwrap_or_else(|| {
                format!("{}_{}", hostname(), crate::reconcile::ReconcileId::random())
            });
        let cache = Cache::new(client.clone(), cache);
        let mut cached_client = CachedClient::new(cache.clone(), client.clone());
        if let Some(m) = field_manager {
            cached_client = cached_client.with_field_manager(m);
        }
        let readyz = HealthChecks::default();
        let healthz = HealthChecks::default();
        let leader_healthz = HealthzAdaptor::new(Duration::from_secs(20));
        {
            let cache = cache.clone();
            // Fresh check sets: names cannot clash.
            let _ = readyz.add(
                "cache-sync",
                Arc::new(move || {
                    if cache.has_synced() {
                        Ok(())
                    } else {
                        Err("the caches have not synced".to_owned())
                    }
                }),
            );
            let adaptor = leader_healthz.clone();
            let _ = healthz.add(
                adaptor.name(),
                Arc::new(move || adaptor.check().map_err(|e| e.to_string())),
            );
        }
        let (leading, _) = watch::channel(false);
        let manager = Self {
            inner: Arc::new(Inner {
                client,
                cache,
                cached_client,
                metrics,
                healthz,
                readyz,
                leader_election,
                identity,
                bind_address,
                graceful_shutdown_timeout,
                exit_on_lost_leadership,
                events_config: Mutex::new(Some(events)),
                broadcaster: OnceLock::new(),
                runnables: Mutex::new(Vec::new()),
                controller_names: Mutex::new(HashSet::new()),
                started: AtomicBool::new(false),
                server_address: Mutex::new(None),
                leading,
                leader_healthz,
                webhook_server: OnceLock::new(),
            }),
        };
        if let Some(options) = webhook_server {
            manager.init_webhook_server(options);
        }
        manager
    }

    /// Creates the webhook server (once) with its `webhook` readiness check.
    fn init_webhook_server(&self, options: WebhookServerOptions) -> &WebhookServer {
        self.inner.webhook_server.get_or_init(|| {
            let server = WebhookServer::new(options, self.inner.metrics.clone());
            if let Err(error) = self
                .inner
                .readyz
                .add("webhook", Arc::new(server.started_checker()))
            {
                tracing::warn!(%error, "cannot add the webhook server's readiness check");
            }
            server
        })
    }

    /// The reconcilers' client: reads from the cache, writes to the API server.
    pub fn client(&self) -> CachedClient {
        self.inner.cached_client.clone()
    }

    /// The REST client (uncached reads, anything else).
    pub fn api_client(&self) -> &Client {
        &self.inner.client
    }

    /// The shared cache (informers, field indexes).
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The metrics registry served on `/metrics` (register your own metrics here).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// This replica's leader election identity (hostname + `_` + a random UUID by default).
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Adds a runnable, started by [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] once the manager runs.
    pub fn add(&self, runnable: impl Runnable) -> Result<(), Error> {
        if self.inner.started.load(Ordering::Acquire) {
            return Err(Error::AlreadyStarted);
        }
        self.inner.runnables.lock().push(Box::new(runnable));
        Ok(())
    }

    /// Whether [`start`](Self::start) has been called.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// Reserves a controller name (unique per manager).
    pub(crate) fn register_controller_name(&self, name: &str) -> Result<(), Error> {
        if !self.inner.controller_names.lock().insert(name.to_owned()) {
            return Err(Error::DuplicateController {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds a liveness check served on `/healthz` (and `/healthz/<name>`).
    ///
    /// # Errors
    ///
    /// If the name is taken or invalid.
    pub fn add_healthz_check(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        Ok(self.inner.healthz.add(name, Arc::new(check))?)
    }

    /// Adds a readiness check served on `/readyz` (and `/readyz/<name>`). The manager adds
    /// `cache-sync` (the caches have synced) itself.
    ///
    /// # Errors
    ///
    /// If the name is taken or invalid.
    pub fn add_readyz_check(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        Ok(self.inner.readyz.add(name, Arc::new(check))?)
    }

    /// An event recorder reporting as `controller` from this replica (events.k8s.io/v1,
    /// aggregated and spam-filtered like client-go's). Needs a tokio runtime.
    pub fn event_recorder(&self, controller: impl Into<String>) -> Recorder {
        let broadcaster = self.inner.broadcaster.get_or_init(|| {
            let config = self.inner.events_config.lock().take().unwrap_or_default();
            EventBroadcaster::new(self.inner.client.clone(), config)
        });
        broadcaster.recorder(controller, self.inner.identity.clone())
    }

    /// Where the HTTP server listens, once [`start`](Self::start) has bound it.
    pub fn server_address(&self) -> Option<SocketAddr> {
        *self.inner.server_address.lock()
    }

    /// The webhook server: register admission and conversion webhooks on it before
    /// [`start`](Self::start) (controller-runtime's `GetWebhookServer`). Configured with
    /// [`ManagerOptions::webhook_server`]; if it was not, the first call creates one with the
    /// default [`Options`](crate::webhook::server::Options) (port 9443, certificates in
    /// `$TMPDIR/k8s-webhook-server/serving-certs`), which `start` then runs — so call it
    /// before `start`. The manager adds the readiness check `webhook`, failing until the
    /// server accepts connections.
    #[doc(alias = "GetWebhookServer")]
    pub fn webhook_server(&self) -> &WebhookServer {
        if self.is_started() && self.inner.webhook_server.get().is_none() {
            tracing::warn!("webhook server created after the manager started: it will not run");
        }
        self.init_webhook_server(WebhookServerOptions::default())
    }

    /// Where the webhook server listens, once [`start`](Self::start) has bound it (with the
    /// port picked when configured with port 0).
    pub fn webhook_server_address(&self) -> Option<SocketAddr> {
        self.inner.webhook_server.get()?.local_addr()
    }

    /// Whether this replica runs its leader-elected runnables now.
    pub fn is_leader(&self) -> bool {
        *self.inner.leading.borrow()
    }

    /// Resolves when this replica starts leading (at once when it leads already; never if
    /// it never does). Without leader election, when `start` begins.
    #[doc(alias = "Elected")]
    pub async fn elected(&self) {
        let mut rx = self.inner.leading.subscribe();
        let _ = rx.wait_for(|leading| *leading).await;
    }
}
