//! [`ManagerOptions`] and [`LeaderElectionOptions`].

use std::net::SocketAddr;
use std::time::Duration;

use ferrokube_client::BroadcasterConfig;

use crate::cache::CacheOptions;
use crate::webhook::server::Options as WebhookServerOptions;

/// controller-runtime's default graceful shutdown timeout.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Leader election for the manager's leader-elected runnables (controller-runtime's
/// `LeaderElection*` options): the Lease, client-go's timings, and who we are.
///
/// Defaults: lease 15 s, renew deadline 10 s, retry period 2 s, identity = hostname + `_` + a
/// random UUID, the Lease released on shutdown.
#[must_use]
#[derive(Clone, Debug)]
pub struct LeaderElectionOptions {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) identity: Option<String>,
    pub(crate) lease_duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry_period: Duration,
    pub(crate) release_on_cancel: bool,
}

impl LeaderElectionOptions {
    /// Contend for the Lease `namespace/name` (an empty namespace: the client's default, or
    /// the pod's namespace in a cluster).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: None,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// This replica's identity in the Lease (default: hostname + `_` + a random UUID).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// How long a Lease stays valid without renewal (default 15 s).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How long the leader keeps trying to renew before it gives up (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.renew_deadline = d;
        self
    }

    /// How often candidates try to acquire or renew (default 2 s).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.retry_period = d;
        self
    }

    /// Release the Lease when the manager shuts down, so a standby takes over at once
    /// (default true). The manager releases it after the leader-elected runnables have
    /// stopped (controller-runtime defaults to false because it cannot promise that). If
    /// they do not stop within the graceful shutdown timeout they are aborted and the Lease
    /// is released all the same: a write they had already sent may still land after a
    /// standby took over. Set this to false if that matters more than a fast handover.
    pub fn release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// The Lease's namespace.
    pub fn lease_namespace(&self) -> &str {
        &self.namespace
    }

    /// The Lease's name.
    pub fn lease_name(&self) -> &str {
        &self.name
    }
}

/// How a [`Manager`](super::Manager) runs (controller-runtime's `manager.Options`).
///
/// Defaults: the cache's defaults (see [`CacheOptions`]), no leader election, one HTTP server
/// for `/metrics`, `/healthz` and `/readyz` on `0.0.0.0:8080`, a 30 s graceful shutdown, no
/// webhook server (unless [`Manager::webhook_server`](super::Manager::webhook_server) is called).
#[must_use]
#[derive(Debug)]
pub struct ManagerOptions {
    pub(crate) cache: CacheOptions,
    pub(crate) leader_election: Option<LeaderElectionOptions>,
    pub(crate) bind_address: Option<SocketAddr>,
    pub(crate) graceful_shutdown_timeout: Duration,
    pub(crate) events: BroadcasterConfig,
    pub(crate) field_manager: Option<String>,
    pub(crate) exit_on_lost_leadership: bool,
    pub(crate) webhook_server: Option<WebhookServerOptions>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            cache: CacheOptions::default(),
            leader_election: None,
            bind_address: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            graceful_shutdown_timeout: DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT,
            events: BroadcasterConfig::default(),
            field_manager: None,
            exit_on_lost_leadership: false,
            webhook_server: None,
        }
    }
}

impl ManagerOptions {
    /// What the cache watches and how.
    pub fn cache(mut self, cache: CacheOptions) -> Self {
        self.cache = cache;
        self
    }

    /// Run leader-elected runnables (controllers) only while holding this Lease. Replicas
    /// that do not lead still sync their caches (warm standby).
    pub fn leader_election(mut self, options: LeaderElectionOptions) -> Self {
        self.leader_election = Some(options);
        self
    }

    /// Where the HTTP server for `/metrics`, `/healthz` and `/readyz` listens (`None`: no
    /// server). Port 0 picks a free port: see [`Manager::server_address`](super::Manager::server_address).
    pub fn bind_address(mut self, address: Option<SocketAddr>) -> Self {
        self.bind_address = address;
        self
    }

    /// How long shutdown waits for runnables (reconciles in flight) before giving up
    /// (default 30 s).
    pub fn graceful_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_shutdown_timeout = timeout;
        self
    }

    /// How the manager's event broadcaster aggregates and writes Events.
    pub fn events(mut self, config: BroadcasterConfig) -> Self {
        self.events = config;
        self
    }

    /// The field manager of the client's writes.
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = Some(manager.into());
        self
    }

    /// Exit the process (status 1) as soon as leadership is lost, as controller-runtime does,
    /// instead of returning [`Error::LeaderElectionLost`](super::Error::LeaderElectionLost)
    /// from `start` (default false: `start` returns the error at once, without a graceful
    /// shutdown, and the caller exits).
    pub fn exit_on_lost_leadership(mut self, exit: bool) -> Self {
        self.exit_on_lost_leadership = exit;
        self
    }

    /// Run a webhook server with these options (controller-runtime's `WebhookServer` option):
    /// on every replica, leader or not, from before the caches start until after they stopped.
    /// Register webhooks on [`Manager::webhook_server`](super::Manager::webhook_server).
    ///
    /// ```no_run
    /// use ferrokube_runtime::prelude::*;
    /// use ferrokube_runtime::webhook::{Handler, Reply, ReplyFuture};
    ///
    /// struct Validate;
    ///
    /// impl Handler for Validate {
    ///     fn handle(&self, body: bytes::Bytes) -> ReplyFuture<'_> {
    ///         Box::pin(async move { Reply::ok(body) }) // a real handler answers the review
    ///     }
    /// }
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::infer().await?;
    /// let manager = Manager::new(
    ///     &config,
    ///     ManagerOptions::default()
    ///         .webhook_server(WebhookServerOptions::default().cert_dir("/tmp/serving-certs")),
    /// )?;
    /// manager.webhook_server().register("/validate-example-com-v1-widget", Validate)?;
    /// // Serves HTTPS on :9443 until shutdown; `/readyz` fails until it listens.
    /// manager.start(shutdown_signal()?).await?;
    /// # Ok(()) }
    /// ```
    pub fn webhook_server(mut self, options: WebhookServerOptions) -> Self {
        self.webhook_server = Some(options);
        self
    }
}
