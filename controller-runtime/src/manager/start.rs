//! [`Manager::start`]: the order things start and stop in.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrokube_client::leader_election::{
    LeaderElectionConfig, LeaderElector, LeaderEvent, StopReason,
};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Error, Manager, Runnable};
use crate::controller::panic_message;
use crate::server::Server;

impl Manager {
    /// Runs everything until `shutdown` is cancelled (see the module docs for the order),
    /// then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// The first failure: the server could not bind, a runnable failed or panicked, the
    /// cache failed, leadership was lost, or shutdown timed out.
    pub async fn start(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let inner = &self.inner;
        // Invalid leader election options fail before anything starts.
        let elector = match &inner.leader_election {
            Some(le) => {
                let config = LeaderElectionConfig::new(&le.namespace, &le.name, &inner.identity)
                    .with_lease_duration(le.lease_duration)
                    .with_renew_deadline(le.renew_deadline)
                    .with_retry_period(le.retry_period)
                    .with_release_on_cancel(le.release_on_cancel);
                Some(
                    LeaderElector::new(inner.client.clone(), config)
                        .map_err(Error::LeaderElectionConfig)?,
                )
            }
            None => None,
        };
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        // Dropping this future stops everything it started.
        let root = CancellationToken::new();
        let _stop_all = root.clone().drop_guard();
        let (errors, mut failures) = mpsc::unbounded_channel::<Error>();

        let server_stop = root.child_token();
        let server_task = match inner.bind_address {
            Some(address) => {
                let server = Server::bind(
                    address,
                    inner.metrics.clone(),
                    inner.healthz.clone(),
                    inner.readyz.clone(),
                )
                .await?;
                *inner.server_address.lock() = Some(server.local_addr());
                let errors = errors.clone();
                let stop = server_stop.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = server.serve(stop).await {
                        let _ = errors.send(Error::Server(e));
                    }
                }))
            }
            None => None,
        };

        // Not leader-elected: webhooks answer on every replica. Before the cache, because a
        // conversion webhook may be needed to list the cached custom resources.
        let webhook_stop = root.child_token();
        let webhook_task = match inner.webhook_server.get() {
            Some(webhooks) => {
                let bound = webhooks.bind().await?;
                let errors = errors.clone();
                let stop = webhook_stop.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = bound.serve(stop).await {
                        let _ = errors.send(Error::Webhook(e));
                    }
                }))
            }
            None => None,
        };

        let cache_stop = root.child_token();
        let cache_task = {
            let cache = inner.cache.clone();
            let errors = errors.clone();
            let stop = cache_stop.clone();
            tokio::spawn(async move {
                if let Err(e) = cache.start(stop).await {
                    let _ = errors.send(Error::Cache(e));
                }
            })
        };

        let (mut elected, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *inner.runnables.lock())
            .into_iter()
            .partition(|r| r.needs_leader_election());
        let others_stop = root.child_token();
        let mut others_set = Group::default();
        let elected_stop = root.child_token();
        let election_stop = root.child_token();
        let mut elected_set = Group::default();
        let mut election = None;
        let lease_name = inner.leader_election.as_ref().map(|le| le.name.clone());

        // As controller-runtime: runnables start once the caches have synced, so none of
        // them reads an empty cache (a standby syncs here, before it campaigns).
        let early = tokio::select! {
            _ = inner.cache.wait_for_cache_sync(&shutdown) => {
                shutdown.is_cancelled().then_some(Ok(()))
            }
            Some(e) = failures.recv() => Some(Err(e)),
        };
        if early.is_none() {
            for r in others {
                spawn_runnable(&mut others_set, r, others_stop.child_token(), &errors);
            }
            match elector {
                None => {
                    inner.leading.send_replace(true);
                    for r in elected.drain(..) {
                        spawn_runnable(&mut elected_set, r, elected_stop.child_token(), &errors);
                    }
                }
                Some(elector) => {
                    inner.leader_healthz.set_leader_election(&elector);
                    if let Some(name) = &lease_name {
                        inner.metrics.set_leader(name, false);
                    }
                    tracing::info!(lease = %format!("{}/{}", elector.config().lease_namespace(), elector.config().lease_name()), identity = %inner.identity, "attempting to acquire the leader lease");
                    election = Some(elector.run(election_stop.clone()));
                }
            }
        }

        let outcome = if let Some(early) = early {
            early
        } else {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    Some(e) = failures.recv() => break Err(e),
                    event = next_event(&mut election) => match event {
                        Some(LeaderEvent::StartedLeading(leading)) => {
                            tracing::info!(identity = %inner.identity, "became the leader; starting leader-elected runnables");
                            if let Some(name) = &lease_name {
                                inner.metrics.set_leader(name, true);
                            }
                            inner.leading.send_replace(true);
                            let token = leading.child_token();
                            // Leader-elected work stops with leadership or with shutdown.
                            let stop = elected_stop.clone();
                            let t = token.clone();
                            tokio::spawn(async move { stop.cancelled().await; t.cancel() });
                            for r in elected.drain(..) {
                                spawn_runnable(&mut elected_set, r, token.child_token(), &errors);
                            }
                        }
                        Some(LeaderEvent::StoppedLeading(reason)) => {
                            inner.leading.send_replace(false);
                            if let Some(name) = &lease_name {
                                inner.metrics.set_leader(name, false);
                            }
                            let reason = describe(&reason);
                            tracing::error!(%reason, "leader election lost");
                            if inner.exit_on_lost_leadership {
                                eprintln!("leader election lost: {reason}; exiting");
                                std::process::exit(1);
                            }
                            break Err(Error::LeaderElectionLost { reason });
                        }
                        Some(LeaderEvent::NewLeader(holder)) => {
                            tracing::info!(leader = ?holder, "new leader observed");
                        }
                        None => election = None,
                    },
                }
            }
        };

        tracing::info!("stopping the manager");
        let lost = matches!(outcome, Err(Error::LeaderElectionLost { .. }));
        let timeout = if lost {
            Duration::ZERO
        } else {
            inner.graceful_shutdown_timeout
        };
        let deadline = Instant::now() + timeout;
        let mut pending = Vec::new();
        elected_stop.cancel();
        // Reconciles blocked on an informer that never synced must not hold the shutdown.
        inner.cache.stop_waiting_reads();
        pending.extend(elected_set.drain(deadline).await);
        election_stop.cancel();
        if let Some(mut stream) = election.take() {
            // Lets the elector release the Lease (when configured) before the process exits.
            let _ = tokio::time::timeout_at(
                deadline.max(Instant::now() + Duration::from_secs(1)),
                async { while stream.next().await.is_some() {} },
            )
            .await;
        }
        others_stop.cancel();
        pending.extend(others_set.drain(deadline).await);
        cache_stop.cancel();
        let _ = tokio::time::timeout_at(deadline, cache_task).await;
        if let Some(b) = inner.broadcaster.get() {
            let _ = tokio::time::timeout_at(deadline, b.flush()).await;
        }
        webhook_stop.cancel();
        if let Some(task) = webhook_task {
            let abort = task.abort_handle();
            let drained = tokio::time::timeout_at(deadline, task).await;
            if drained.is_err() {
                abort.abort();
                pending.push("webhook server".to_owned());
            }
        }
        server_stop.cancel();
        if let Some(task) = server_task {
            let _ = tokio::time::timeout_at(
                deadline.max(Instant::now() + Duration::from_secs(1)),
                task,
            )
            .await;
        }
        inner.leading.send_replace(false);
        drop(errors);
        let late = failures.try_recv().ok();
        tracing::info!("the manager stopped");
        match outcome {
            Err(e) => Err(e),
            Ok(()) if !pending.is_empty() => Err(Error::GracefulShutdownTimeout {
                timeout,
                pending: pending.join(", "),
            }),
            Ok(()) => late.map_or(Ok(()), Err),
        }
    }
}

fn describe(reason: &StopReason) -> String {
    match reason {
        StopReason::Cancelled => "the election was cancelled".to_owned(),
        StopReason::RenewDeadlineExceeded => "the lease could not be renewed in time".to_owned(),
        StopReason::LeaseTaken { holder } => format!("the lease is held by {holder}"),
        StopReason::Aborted => "the election task was aborted".to_owned(),
        _ => "leadership ended".to_owned(),
    }
}

async fn next_event(
    election: &mut Option<ferrokube_client::leader_election::LeaderElection>,
) -> Option<LeaderEvent> {
    match election {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Running runnables and their names.
#[derive(Default)]
struct Group {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, String>,
}

impl Group {
    /// Waits for every runnable until `deadline`; aborts and names those still running.
    async fn drain(&mut self, deadline: Instant) -> Vec<String> {
        let finished = tokio::time::timeout_at(deadline, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return Vec::new();
        }
        self.set.abort_all();
        let mut pending = Vec::new();
        while let Some(joined) = self.set.join_next_with_id().await {
            if let Err(e) = joined {
                pending.extend(self.names.get(&e.id()).cloned());
            }
        }
        pending
    }
}

fn spawn_runnable(
    group: &mut Group,
    runnable: Box<dyn Runnable>,
    cancel: CancellationToken,
    errors: &mpsc::UnboundedSender<Error>,
) {
    let name = runnable.name();
    let errors = errors.clone();
    let task_name = name.clone();
    let handle = group.set.spawn(async move {
        match AssertUnwindSafe(runnable.start(cancel))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                let _ = errors.send(Error::Runnable { name, source });
            }
            Err(payload) => {
                let _ = errors.send(Error::RunnablePanicked {
                    name,
                    message: panic_message(&*payload),
                });
            }
        }
    });
    group.names.insert(handle.id(), task_name);
}
