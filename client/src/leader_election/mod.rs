//! Leader election on a `coordination.k8s.io/v1` Lease, compatible with client-go's
//! `tools/leaderelection` and `resourcelock.LeaseLock`: Go and Rust replicas can contend
//! for the same Lease.
//!
//! A [`LeaderElector`] tries to acquire the Lease every `retry_period` (jittered as client-go
//! does); once it holds it, it renews it, and gives leadership up when no renewal succeeds
//! within `renew_deadline`. A candidate takes a Lease held by another only when it has seen
//! no change to it for `leaseDurationSeconds` *by its own clock* (it never compares
//! `renewTime` with its clock), or when the holder released it.
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use ferrokube_client::leader_election::{
//!     CancellationToken, LeaderElectionConfig, LeaderElector, LeaderEvent,
//! };
//! use futures::StreamExt;
//!
//! # async fn controller(_: CancellationToken) {}
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let config = LeaderElectionConfig::new("kube-system", "my-controller", "pod-a")
//!     .with_release_on_cancel(true);
//! let elector = LeaderElector::new(client, config)?;
//! let shutdown = CancellationToken::new();
//! let mut events = elector.run(shutdown.clone());
//! while let Some(event) = events.next().await {
//!     match event {
//!         // `leading` is cancelled as soon as leadership is lost.
//!         LeaderEvent::StartedLeading(leading) => { tokio::spawn(controller(leading)); }
//!         LeaderEvent::StoppedLeading(reason) => println!("stopped leading: {reason:?}"),
//!         LeaderEvent::NewLeader(id) => println!("leader is now {id:?}"),
//!     }
//! }
//! // The stream has ended: this run is over (cancelled, or leadership was lost).
//! # Ok(()) }
//! ```

mod config;
mod healthz;
mod record;
mod session;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::coordination::v1::Lease;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

pub use self::config::{JITTER_FACTOR, LeaderElectionConfig, LeaderElectionError};
pub use self::healthz::HealthzAdaptor;
pub use self::record::LeaderElectionRecord;
pub use tokio_util::sync::CancellationToken;

use self::record::Observation;
use crate::api::Api;
use crate::client::Client;

/// What a run of the election reports, in order: [`NewLeader`](Self::NewLeader) whenever the
/// observed holder changes, then at most one [`StartedLeading`](Self::StartedLeading)
/// followed by exactly one [`StoppedLeading`](Self::StoppedLeading).
#[derive(Clone, Debug)]
pub enum LeaderEvent {
    /// This candidate became the leader (client-go's `OnStartedLeading`). The token is a
    /// child of the run's token and is cancelled the moment leadership ends, before
    /// [`StoppedLeading`](Self::StoppedLeading) is sent.
    #[doc(alias = "OnStartedLeading")]
    StartedLeading(CancellationToken),
    /// This candidate stopped leading (client-go's `OnStoppedLeading`): always follows a
    /// `StartedLeading`, after the lease was released when `release_on_cancel` is set. It is
    /// the last event of the run.
    #[doc(alias = "OnStoppedLeading")]
    StoppedLeading(StopReason),
    /// The holder of the Lease changed (client-go's `OnNewLeader`); the identity is empty
    /// when the lease was released.
    #[doc(alias = "OnNewLeader")]
    NewLeader(String),
}

/// Why leadership ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The run's cancellation token was cancelled.
    Cancelled,
    /// No renewal succeeded within `renew_deadline` (or before the lease would expire).
    RenewDeadlineExceeded,
    /// Another candidate holds the Lease now.
    LeaseTaken {
        /// Who holds it.
        holder: String,
    },
    /// The election task was dropped (aborted, or its runtime shut down).
    Aborted,
}

/// A leader election candidate: cheap to clone; every clone shares the same state, so one
/// can run the election while another answers [`is_leader`](Self::is_leader) or serves a
/// health check.
#[derive(Clone)]
pub struct LeaderElector {
    inner: Arc<Inner>,
}

struct Inner {
    config: LeaderElectionConfig,
    /// `namespace/name` of the Lease.
    describe: String,
    api: Api<Lease>,
    state: Mutex<State>,
    /// Held by a run for its whole duration: runs of one elector never overlap.
    running: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    observation: Option<Observation>,
    /// Between `StartedLeading` and the end of leadership.
    leading: bool,
    /// When the lease we last wrote expires for the other candidates: the last successful
    /// write was *sent* after this minus the lease duration, so they observed it after.
    valid_until: Option<Instant>,
    /// The last run ended because it was cancelled (not because renewals failed).
    stood_down: bool,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lease", &self.inner.describe)
            .field("identity", &self.inner.config.identity)
            .field("leader", &self.leader())
            .field("is_leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate for the Lease in `config`, after [validating](LeaderElectionConfig::validate)
    /// it. An empty `lease_namespace` means the client's default namespace.
    #[doc(alias = "NewLeaderElector")]
    pub fn new(client: Client, config: LeaderElectionConfig) -> Result<Self, LeaderElectionError> {
        config.validate()?;
        let mut config = config;
        if config.lease_namespace.is_empty() {
            config.lease_namespace = client.default_namespace().to_owned();
        }
        let describe = format!("{}/{}", config.lease_namespace, config.lease_name);
        if config.name.is_empty() {
            config.name.clone_from(&describe);
        }
        let api = client.namespaced::<Lease>(&config.lease_namespace);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                describe,
                api,
                state: Mutex::new(State::default()),
                running: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration (with the namespace and name resolved).
    pub fn config(&self) -> &LeaderElectionConfig {
        &self.inner.config
    }

    /// Runs one term of the election in a task of the current tokio runtime: acquire the
    /// Lease (until `cancel`), lead while renewals succeed, then stop — as client-go's `Run`,
    /// which does not campaign again; call `run` again for a new term. Runs of one elector
    /// never overlap: a second run waits for the first to end.
    ///
    /// The returned stream yields the run's [`LeaderEvent`]s and ends with the run. Dropping
    /// it does not stop the election (cancel `cancel` for that); the run goes on, unheard.
    /// Cancelling `cancel` ends leadership (its `StartedLeading` token is a child of it),
    /// releases the Lease if `release_on_cancel` is set, then sends `StoppedLeading`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[doc(alias = "Run")]
    #[doc(alias = "RunOrDie")]
    pub fn run(&self, cancel: CancellationToken) -> LeaderElection {
        let (tx, rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!(
            "leader_election",
            lease = %self.inner.describe,
            identity = %self.inner.config.identity,
        );
        let inner = Arc::clone(&self.inner);
        tokio::spawn(session::run(inner, cancel, tx).instrument(span));
        LeaderElection { events: rx }
    }

    /// Whether this candidate leads now: it is between `StartedLeading` and the end of its
    /// leadership, and its last renewal is recent enough that no other candidate can have
    /// taken the Lease yet (client-go's `IsLeader`, made safe against a stalled renew loop).
    #[doc(alias = "IsLeader")]
    pub fn is_leader(&self) -> bool {
        let state = self.inner.state.lock();
        state.leading && state.valid_until.is_some_and(|t| Instant::now() < t)
    }

    /// The holder of the Lease as last observed, if any (client-go's `GetLeader`).
    #[doc(alias = "GetLeader")]
    pub fn leader(&self) -> Option<String> {
        let state = self.inner.state.lock();
        state
            .observation
            .as_ref()
            .map(|o| o.record.holder_identity.clone())
            .filter(|h| !h.is_empty())
    }

    /// The health check (client-go's `Check`): an error when this candidate believes it holds
    /// the Lease but has not renewed it for longer than the lease duration plus
    /// `max_tolerable_expired_lease` — e.g. its renew loop is stuck. A candidate that does not
    /// hold the Lease, or whose run was cancelled, is healthy.
    #[doc(alias = "Check")]
    pub fn check(&self, max_tolerable_expired_lease: Duration) -> Result<(), LeaderElectionError> {
        let state = self.inner.state.lock();
        if state.stood_down {
            return Ok(());
        }
        record::renewal_overdue(
            state.observation.as_ref(),
            &self.inner.config.identity,
            self.inner.config.lease_duration,
            max_tolerable_expired_lease,
            Instant::now(),
        )
        .map_err(|since| LeaderElectionError::RenewalOverdue {
            lease: self.inner.config.name.clone(),
            since,
        })
    }
}

/// The events of one run of a [`LeaderElector`] (see [`LeaderElector::run`]); ends when the
/// run does.
#[derive(Debug)]
#[must_use = "the election runs whether or not its events are read; read them to learn when leadership starts and stops"]
pub struct LeaderElection {
    events: mpsc::UnboundedReceiver<LeaderEvent>,
}

impl Stream for LeaderElection {
    type Item = LeaderEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeaderEvent>> {
        self.events.poll_recv(cx)
    }
}
