//! One run of the election: client-go's `acquire`, `renew`, `release` and
//! `tryAcquireOrRenew`, over the typed Lease API.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use super::config::JITTER_FACTOR;
use super::record::{self, Decision, LeaderElectionRecord, Observation};
use super::{CancellationToken, Inner, LeaderEvent, StopReason};
use crate::error::Result;
use crate::options::WriteOptions;

/// Runs one term: acquire, lead while renewing, stop; then release if configured.
pub(super) async fn run(
    inner: Arc<Inner>,
    cancel: CancellationToken,
    events: UnboundedSender<LeaderEvent>,
) {
    let lock = Arc::clone(&inner);
    let _running = lock.running.lock().await;
    {
        let mut state = inner.state.lock();
        state.leading = false;
        state.valid_until = None;
        state.stood_down = false;
    }
    let mut session = Session {
        inner,
        events,
        lease: None,
        reported_leader: String::new(),
    };
    let acquired = session.acquire(&cancel).await;
    if acquired && !cancel.is_cancelled() {
        let mut term = Term::start(&session, cancel.child_token());
        let reason = session.renew(&cancel).await;
        term.end(reason);
        session.finish(&cancel).await;
        // Dropping the term sends `StoppedLeading`, after the release.
    } else {
        session.finish(&cancel).await;
    }
}

struct Session {
    inner: Arc<Inner>,
    events: UnboundedSender<LeaderEvent>,
    /// The Lease as last read or written: the base of the next update (its resourceVersion).
    lease: Option<Lease>,
    /// client-go's `reportedLeader`.
    reported_leader: String,
}

impl Session {
    fn identity(&self) -> &str {
        &self.inner.config.identity
    }

    fn observation(&self) -> Option<Observation> {
        self.inner.state.lock().observation.clone()
    }

    /// client-go's `acquire`: try every `retry_period` (jittered by 1.2) until it succeeds or
    /// the run is cancelled. Each attempt is bounded by `renew_deadline`.
    async fn acquire(&mut self, cancel: &CancellationToken) -> bool {
        let config = &self.inner.config;
        let (deadline, period) = (config.renew_deadline, config.retry_period);
        info!("attempting to acquire leader lease");
        loop {
            let attempt = tokio::time::timeout(deadline, self.try_acquire_or_renew());
            let acquired = tokio::select! {
                () = cancel.cancelled() => return false,
                outcome = attempt => outcome.unwrap_or_else(|_| {
                    warn!(?deadline, "no answer to an attempt to acquire the lease");
                    false
                }),
            };
            self.maybe_report_transition();
            if acquired {
                info!("successfully acquired lease");
                return true;
            }
            debug!("failed to acquire lease");
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(record::jitter(period, JITTER_FACTOR)) => {}
            }
        }
    }

    /// client-go's `renew`: every `retry_period`, a round of attempts spaced by
    /// `retry_period`; a round that does not succeed within `renew_deadline` (or before the
    /// lease we hold would expire for the others) ends leadership, as does seeing another
    /// holder.
    async fn renew(&mut self, cancel: &CancellationToken) -> StopReason {
        let period = self.inner.config.retry_period;
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return StopReason::Cancelled,
                outcome = self.renew_round() => outcome,
            };
            self.maybe_report_transition();
            if let Err(reason) = outcome {
                return reason;
            }
            trace!("renewed lease");
            tokio::select! {
                () = cancel.cancelled() => return StopReason::Cancelled,
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    async fn renew_round(&mut self) -> Result<(), StopReason> {
        let config = &self.inner.config;
        let (renew_deadline, period) = (config.renew_deadline, config.retry_period);
        let mut deadline = Instant::now() + renew_deadline;
        if let Some(valid_until) = self.inner.state.lock().valid_until {
            deadline = deadline.min(valid_until);
        }
        let attempts = async {
            loop {
                if self.try_acquire_or_renew().await {
                    return Ok(());
                }
                if let Some(o) = self.observation()
                    && o.record.is_held()
                    && !o.held_by(self.identity())
                {
                    return Err(StopReason::LeaseTaken {
                        holder: o.record.holder_identity,
                    });
                }
                tokio::time::sleep(period).await;
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StopReason::RenewDeadlineExceeded),
        }
    }

    /// client-go's `tryAcquireOrRenew`, with its fast path for the leader.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let started = Instant::now();
        let wall = Timestamp::now();
        let secs = self.inner.config.lease_duration_seconds();

        // 1. The leader updates optimistically from the Lease it last wrote.
        if let (Some(lease), Some(observed)) = (self.lease.clone(), self.observation())
            && observed.held_by(self.identity())
            && observed.is_valid(started)
        {
            let renewed = observed.record.renewed_by(self.identity(), secs, wall);
            match self.write(lease, &renewed, started).await {
                Ok(()) => return true,
                Err(e) => debug!(error = %e, "optimistic lease update failed, reading it"),
            }
        }

        // 2. Read the Lease, or create it.
        let current = match self.inner.api.get_opt(&self.inner.config.lease_name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create(secs, wall, started).await,
            Err(e) => {
                warn!(error = %e, "error retrieving lease");
                return false;
            }
        };
        let record = record_of(&current);
        self.lease = Some(current.clone());
        let observed = {
            let mut state = self.inner.state.lock();
            let observed = Observation::update(state.observation.as_ref(), record, Instant::now());
            state.observation = Some(observed.clone());
            observed
        };

        // 3. Decide by our own observation; 4. write with optimistic concurrency.
        match record::decide(self.identity(), secs, &observed, started, wall) {
            Decision::HeldByOther => {
                trace!(holder = %observed.record.holder_identity, "lease is held and has not yet expired");
                false
            }
            Decision::Write(next) => match self.write(current, &next, started).await {
                Ok(()) => true,
                Err(e) if e.is_conflict() => {
                    debug!("lease changed under us (conflict); trying again next round");
                    false
                }
                Err(e) => {
                    warn!(error = %e, "failed to update lease");
                    false
                }
            },
        }
    }

    async fn create(&mut self, secs: i32, wall: Timestamp, started: Instant) -> bool {
        // client-go creates the Lease with leaseTransitions 0.
        let record = LeaderElectionRecord {
            holder_identity: self.identity().to_owned(),
            lease_duration_seconds: secs,
            acquire_time: Some(wall),
            renew_time: Some(wall),
            ..LeaderElectionRecord::default()
        };
        let mut lease = Lease::default();
        lease.metadata.name = Some(self.inner.config.lease_name.clone());
        lease.metadata.namespace = Some(self.inner.config.lease_namespace.clone());
        lease.spec = Some(record.to_lease_spec());
        match self
            .inner
            .api
            .create(&lease, &WriteOptions::default())
            .await
        {
            Ok(created) => {
                self.accept(created, started);
                true
            }
            Err(e) if e.is_already_exists() => {
                debug!("lease created by another candidate first");
                false
            }
            Err(e) => {
                warn!(error = %e, "error initially creating lease");
                false
            }
        }
    }

    /// Replaces the Lease's spec with `record`, guarded by `lease`'s resourceVersion.
    async fn write(
        &mut self,
        mut lease: Lease,
        record: &LeaderElectionRecord,
        started: Instant,
    ) -> Result<()> {
        lease.spec = Some(record.to_lease_spec());
        let updated = self
            .inner
            .api
            .update(&lease, &WriteOptions::default())
            .await?;
        self.accept(updated, started);
        Ok(())
    }

    /// Records a Lease the server accepted from us (client-go's `setObservedRecord`).
    fn accept(&mut self, lease: Lease, started: Instant) {
        let record = record_of(&lease);
        let mut state = self.inner.state.lock();
        if record.holder_identity == self.inner.config.identity {
            state.valid_until = Some(started + record.lease_duration());
        }
        state.observation = Some(Observation {
            record,
            at: Instant::now(),
        });
        self.lease = Some(lease);
    }

    /// client-go's `maybeReportTransition`.
    fn maybe_report_transition(&mut self) {
        let Some(holder) = self.observation().map(|o| o.record.holder_identity) else {
            return;
        };
        if holder == self.reported_leader {
            return;
        }
        info!(leader = %holder, "new leader observed");
        self.reported_leader.clone_from(&holder);
        let _ = self.events.send(LeaderEvent::NewLeader(holder));
    }

    /// The end of a run: release the lease if configured, note a cancellation.
    async fn finish(&mut self, cancel: &CancellationToken) {
        if self.inner.config.release_on_cancel {
            self.release().await;
        }
        if cancel.is_cancelled() {
            self.inner.state.lock().stood_down = true;
        }
    }

    /// client-go's `release`: if the Lease (as read now) is ours, clear its holder, keep its
    /// transitions and set a one-second duration; retried on conflict, within
    /// `renew_deadline`.
    async fn release(&mut self) -> bool {
        let deadline = self.inner.config.renew_deadline;
        let attempts = async {
            loop {
                let lease = match self.inner.api.get_opt(&self.inner.config.lease_name).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => {
                        info!("lease not found; nothing to release");
                        return false;
                    }
                    Err(e) => {
                        warn!(error = %e, "error retrieving lease to release it");
                        return false;
                    }
                };
                let current = record_of(&lease);
                if current.holder_identity != self.inner.config.identity {
                    return true;
                }
                let released = current.released(Timestamp::now());
                match self.write(lease, &released, Instant::now()).await {
                    Ok(()) => {
                        info!("released lease");
                        return true;
                    }
                    Err(e) if e.is_conflict() => debug!("conflict releasing lease; retrying"),
                    Err(e) => {
                        warn!(error = %e, "failed to release lease");
                        return false;
                    }
                }
            }
        };
        tokio::time::timeout(deadline, attempts)
            .await
            .unwrap_or_else(|_| {
                warn!(?deadline, "could not release the lease in time");
                false
            })
    }
}

fn record_of(lease: &Lease) -> LeaderElectionRecord {
    lease
        .spec
        .as_ref()
        .map(LeaderElectionRecord::from_lease_spec)
        .unwrap_or_default()
}

/// One term of leadership. Ending it (or dropping it, if the run is aborted) cancels the
/// `StartedLeading` token and clears `leading` at once; dropping it sends `StoppedLeading`.
struct Term {
    inner: Arc<Inner>,
    events: UnboundedSender<LeaderEvent>,
    token: CancellationToken,
    reason: Option<StopReason>,
}

impl Term {
    fn start(session: &Session, token: CancellationToken) -> Self {
        session.inner.state.lock().leading = true;
        info!("started leading");
        let _ = session
            .events
            .send(LeaderEvent::StartedLeading(token.clone()));
        Self {
            inner: Arc::clone(&session.inner),
            events: session.events.clone(),
            token,
            reason: None,
        }
    }

    fn end(&mut self, reason: StopReason) {
        if self.reason.is_some() {
            return;
        }
        {
            let mut state = self.inner.state.lock();
            state.leading = false;
            state.valid_until = None;
        }
        self.token.cancel();
        info!(?reason, "stopped leading");
        self.reason = Some(reason);
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.end(StopReason::Aborted);
        let reason = self.reason.take().unwrap_or(StopReason::Aborted);
        let _ = self.events.send(LeaderEvent::StoppedLeading(reason));
    }
}
