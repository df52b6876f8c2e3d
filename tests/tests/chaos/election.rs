//! Chaos: leader election under a stalled connection.
//!
//! Two electors contend for one Lease, each through a fault proxy of its own. In each round
//! the leader's proxy stalls every connection (no byte either way, connections left open):
//! its renewals can neither succeed nor fail. The leader must give up by itself when its renew
//! deadline passes — before its lease can expire — and the other elector may only acquire
//! the Lease once it expired. The roles swap every round.
//!
//! Observed: each elector's transitions (when it started and stopped believing it leads, from
//! its `StartedLeading` token), a 5 ms sampler of both `is_leader()`, and the Lease itself
//! (polled every 50 ms, for the stalled leader's last `renewTime` and the new leader's
//! `acquireTime`). Timings: lease 3 s, renew deadline 2 s, retry period 0.5 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::client::Client;
use ferrokube_runtime::client::leader_election::{
    CancellationToken, LeaderElectionConfig, LeaderElector, LeaderEvent, StopReason,
};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use tests::fault_proxy::FaultProxy;
use tests::{Context, Test};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
/// Scheduling and API-server slack on the bounds below.
const SLACK: Duration = Duration::from_millis(1000);
/// Longer than any takeover: the stall is lifted once the round is decided.
const STALL: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;

pub fn tests() -> Vec<Test> {
    vec![Test::new(
        "chaos::election::stalled_leader_stops_before_its_lease_expires",
        stalled_leader,
    )]
}

fn config(ns: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig::new(ns, "chaos-lease", identity)
        .with_lease_duration(LEASE)
        .with_renew_deadline(RENEW)
        .with_retry_period(RETRY)
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// One change of belief: `who` started (`leading`) or stopped believing it leads.
#[derive(Clone, Debug)]
struct Transition {
    at: Instant,
    /// Wall clock, in ms since the epoch, to compare with the Lease's times.
    wall: i64,
    who: &'static str,
    leading: bool,
}

type Transitions = Arc<Mutex<Vec<Transition>>>;

/// An elector behind a fault proxy of its own, running one term after the other.
struct Elector {
    who: &'static str,
    elector: LeaderElector,
    proxy: FaultProxy,
    cancel: CancellationToken,
    transitions: Transitions,
    /// The current term: ends with its `StoppedLeading` reason (or `None` if it never led).
    term: Option<JoinHandle<Option<(Instant, StopReason)>>>,
}

impl Elector {
    async fn new(
        ctx: &Context,
        who: &'static str,
        transitions: &Transitions,
    ) -> anyhow::Result<Self> {
        let env = ctx.env.read().await;
        let proxy = FaultProxy::in_front_of(env.config()).await?;
        let client = Client::from_kube(kube::Client::try_from(proxy.client_config(env.config())?)?);
        let elector = LeaderElector::new(client, config(&ctx.namespace, who))?;
        Ok(Self {
            who,
            elector,
            proxy,
            cancel: CancellationToken::new(),
            transitions: Arc::clone(transitions),
            term: None,
        })
    }

    /// Starts a term: campaigns, leads while renewals succeed, stops.
    fn campaign(&mut self) {
        let mut events = self.elector.run(self.cancel.child_token());
        let (who, transitions) = (self.who, Arc::clone(&self.transitions));
        self.term = Some(tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    LeaderEvent::StartedLeading(token) => {
                        record(&transitions, who, true);
                        let transitions = Arc::clone(&transitions);
                        // The token is cancelled the moment leadership ends.
                        tokio::spawn(async move {
                            token.cancelled().await;
                            record(&transitions, who, false);
                        });
                    }
                    LeaderEvent::StoppedLeading(reason) => return Some((Instant::now(), reason)),
                    LeaderEvent::NewLeader(_) => {}
                }
            }
            None
        }));
    }

    /// Waits for the current term to end.
    async fn term_ended(&mut self, limit: Duration) -> anyhow::Result<(Instant, StopReason)> {
        let term = self.term.take().context("no term running")?;
        tokio::time::timeout(limit, term)
            .await
            .with_context(|| format!("{}'s term did not end within {limit:?}", self.who))?
            .context("the term's task")?
            .with_context(|| format!("{}'s term ended without leading", self.who))
    }
}

fn record(transitions: &Transitions, who: &'static str, leading: bool) {
    transitions.lock().push(Transition {
        at: Instant::now(),
        wall: millis(Timestamp::now()),
        who,
        leading,
    });
}

/// Samples both electors' `is_leader()` every 5 ms; counts samples and overlaps.
struct Sampler {
    samples: Arc<AtomicU64>,
    both: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Sampler {
    fn start(a: &LeaderElector, b: &LeaderElector) -> Self {
        let (samples, both) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, b, s, f) = (
            a.clone(),
            b.clone(),
            Arc::clone(&samples),
            Arc::clone(&both),
        );
        let task = tokio::spawn(async move {
            loop {
                if a.is_leader() && b.is_leader() {
                    f.store(true, Ordering::SeqCst);
                }
                s.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self {
            samples,
            both,
            task,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Lease as seen by an observer polling it every 50 ms: for each holder, the latest
/// `renewTime` and the `acquireTime` of its latest term (ms since the epoch).
#[derive(Default)]
struct LeaseLog {
    last_renew: BTreeMap<String, i64>,
    acquired: BTreeMap<String, i64>,
    polls: u64,
}

fn watch_lease(client: kube::Client, ns: &str) -> (Arc<Mutex<LeaseLog>>, JoinHandle<()>) {
    let log: Arc<Mutex<LeaseLog>> = Arc::default();
    let api = Client::from_kube(client).namespaced::<Lease>(ns);
    let sink = Arc::clone(&log);
    let task = tokio::spawn(async move {
        loop {
            if let Ok(Some(lease)) = api.get_opt("chaos-lease").await
                && let Some(spec) = lease.spec
                && let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty())
            {
                let mut log = sink.lock();
                log.polls += 1;
                if let Some(renew) = spec.renew_time {
                    log.last_renew.insert(holder.clone(), millis(renew.0));
                }
                if let Some(acquire) = spec.acquire_time {
                    log.acquired.insert(holder, millis(acquire.0));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (log, task)
}

/// Polls `check` every 5 ms for up to `limit`.
async fn within(what: &str, limit: Duration, check: impl Fn() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one round measured.
struct Round {
    leader: &'static str,
    /// Stall → unstall (once the round was decided).
    stalled_for: Duration,
    /// Stall → the leader stopped believing it leads.
    gave_up_after: Duration,
    /// The leader's stop → the follower's start.
    gap: Duration,
    /// The leader's last renewTime → the leader's stop (must be below the lease duration).
    stopped_before_expiry_by: i64,
    /// The leader's last renewTime → the follower's acquireTime (at least the lease duration).
    acquired_after_renew: i64,
}

async fn stalled_leader(ctx: Context) -> anyhow::Result<()> {
    let transitions: Transitions = Arc::default();
    let mut a = Elector::new(&ctx, "a", &transitions).await?;
    let mut b = Elector::new(&ctx, "b", &transitions).await?;
    let (lease_log, lease_task) = watch_lease(ctx.client.clone(), &ctx.namespace);
    let sampler = Sampler::start(&a.elector, &b.elector);
    a.campaign();
    within("a leads", Duration::from_secs(10), || a.elector.is_leader()).await?;
    b.campaign();

    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let (leader, follower) = if round % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        within(
            &format!("round {round}: {} leads", leader.who),
            Duration::from_secs(10),
            || leader.elector.is_leader(),
        )
        .await?;
        // A few renewals through the proxy first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let seen_before = transitions.lock().len();
        let stalled_at = Instant::now();
        leader.proxy.stall(STALL);
        let takeover = LEASE + RETRY.mul_f64(2.0 * 2.2) + SLACK;
        within(
            &format!("round {round}: {} takes over", follower.who),
            takeover,
            || follower.elector.is_leader(),
        )
        .await?;
        let (stopped, reason) = leader.term_ended(Duration::from_secs(5)).await?;
        leader.proxy.unstall();
        let stalled_for = stalled_at.elapsed();
        ensure!(
            reason == StopReason::RenewDeadlineExceeded,
            "round {round}: {} stopped leading because {reason:?}",
            leader.who
        );
        let gave_up_after = stopped - stalled_at;
        ensure!(
            gave_up_after <= RETRY + RENEW + SLACK,
            "round {round}: {} gave up {gave_up_after:?} after the stall: its renewal hung \
             past the renew deadline",
            leader.who
        );
        // Let the follower's start be recorded, then read this round's transitions.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log: Vec<Transition> = transitions.lock()[seen_before..].to_vec();
        let stop = log
            .iter()
            .find(|t| t.who == leader.who && !t.leading)
            .with_context(|| format!("round {round}: no stop of {} in {log:?}", leader.who))?;
        let start = log
            .iter()
            .find(|t| t.who == follower.who && t.leading)
            .with_context(|| format!("round {round}: no start of {} in {log:?}", follower.who))?;
        ensure!(
            stop.at < start.at,
            "round {round}: {} started leading before {} stopped: {log:?}",
            follower.who,
            leader.who
        );
        let (last_renew, acquired) = {
            let lease = lease_log.lock();
            (
                lease.last_renew.get(leader.who).copied(),
                lease.acquired.get(follower.who).copied(),
            )
        };
        let last_renew = last_renew.context("the observer never saw the leader's renewTime")?;
        let acquired = acquired.context("the observer never saw the follower's acquireTime")?;
        let lease_ms = LEASE.as_millis() as i64;
        let stopped_before_expiry_by = last_renew + lease_ms - stop.wall;
        ensure!(
            stopped_before_expiry_by > 0,
            "round {round}: {} stopped {} ms after its lease expired",
            leader.who,
            -stopped_before_expiry_by
        );
        let acquired_after_renew = acquired - last_renew;
        // Both times are truncated to milliseconds: allow one.
        ensure!(
            acquired_after_renew >= lease_ms - 1,
            "round {round}: {} acquired the Lease {acquired_after_renew} ms after {}'s last \
             renewal, before it expired",
            follower.who,
            leader.who
        );
        rounds.push(Round {
            leader: leader.who,
            stalled_for,
            gave_up_after,
            gap: start.at - stop.at,
            stopped_before_expiry_by,
            acquired_after_renew,
        });
        // The old leader campaigns again, through its (no longer stalled) proxy.
        leader.campaign();
    }
    let overlap = sampler.both.load(Ordering::SeqCst);
    let samples = sampler.samples.load(Ordering::Relaxed);
    drop(sampler);
    lease_task.abort();

    let all = transitions.lock().clone();
    for who in ["a", "b"] {
        let mine: Vec<bool> = all
            .iter()
            .filter(|t| t.who == who)
            .map(|t| t.leading)
            .collect();
        ensure!(
            mine.windows(2).all(|w| w[0] != w[1]),
            "{who}'s transitions do not alternate: {all:?}"
        );
    }
    // Believing intervals never overlap: replay the transitions in time order.
    let mut ordered = all.clone();
    ordered.sort_by_key(|t| t.at);
    let mut leading: Vec<&str> = Vec::new();
    for t in &ordered {
        if t.leading {
            leading.push(t.who);
            ensure!(
                leading.len() == 1,
                "{leading:?} all believed they lead at once: {ordered:?}"
            );
        } else {
            leading.retain(|w| *w != t.who);
        }
    }

    for e in [&a, &b] {
        println!(
            "CHAOS [election] faults injected through {}'s proxy (stalls commanded for {STALL:?}, \
             lifted once the round was decided): {}",
            e.who,
            e.proxy.stats()
        );
    }
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "CHAOS [election] round {i}: {}'s connections stalled for {:.1?}; it gave up {:?} \
             after the stall began ({} ms before its lease expired); the other started {:?} \
             after that, acquiring the Lease {} ms after the last renewal (lease {} ms)",
            r.leader,
            r.stalled_for,
            r.gave_up_after,
            r.stopped_before_expiry_by,
            r.gap,
            r.acquired_after_renew,
            LEASE.as_millis()
        );
    }
    println!(
        "CHAOS [election] final comparison: {ROUNDS} stalls, {} transitions, {samples} \
         is_leader samples, two leaders at once: {} (samples), never (transitions); {} Lease \
         polls",
        all.len(),
        if overlap { "YES" } else { "never" },
        lease_log.lock().polls
    );
    ensure!(!overlap, "both electors reported is_leader() at once");
    a.cancel.cancel();
    b.cancel.cancel();
    Ok(())
}
