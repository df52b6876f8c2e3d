//! The elector against an in-memory Lease API, in paused tokio time: takeover timings, the
//! never-two-leaders invariant, release, stalled leaders, races and Go-written leases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use http::Method;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::fake::{FakeLeases, Link, LinkSwitch};
use super::*;

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

/// The longest a candidate can take to notice an expired lease: it observed the last change
/// up to one jittered period late, and tries again up to one jittered period after expiry.
fn takeover_bound() -> Duration {
    LEASE + RETRY.mul_f64(2.0 * (1.0 + JITTER_FACTOR)) + Duration::from_millis(50)
}

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig::new("default", "lease", identity)
        .with_lease_duration(LEASE)
        .with_renew_deadline(RENEW)
        .with_retry_period(RETRY)
}

struct Candidate {
    elector: LeaderElector,
    link: LinkSwitch,
    cancel: CancellationToken,
    events: Arc<Mutex<Vec<(Instant, LeaderEvent)>>>,
    done: Arc<AtomicBool>,
}

impl Candidate {
    fn start(server: &FakeLeases, config: LeaderElectionConfig) -> Self {
        let (client, link) = server.client();
        let elector = LeaderElector::new(client, config).unwrap_or_else(|e| panic!("{e}"));
        let cancel = CancellationToken::new();
        let mut stream = elector.run(cancel.clone());
        let events = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (sink, finished) = (Arc::clone(&events), Arc::clone(&done));
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                sink.lock().push((Instant::now(), event));
            }
            finished.store(true, Ordering::SeqCst);
        });
        Self {
            elector,
            link,
            cancel,
            events,
            done,
        }
    }

    fn leading_token(&self) -> Option<CancellationToken> {
        self.events.lock().iter().find_map(|(_, e)| match e {
            LeaderEvent::StartedLeading(t) => Some(t.clone()),
            _ => None,
        })
    }

    fn stopped(&self) -> Option<(Instant, StopReason)> {
        self.events.lock().iter().find_map(|(at, e)| match e {
            LeaderEvent::StoppedLeading(r) => Some((*at, r.clone())),
            _ => None,
        })
    }

    fn new_leaders(&self) -> Vec<String> {
        let events = self.events.lock();
        events
            .iter()
            .filter_map(|(_, e)| match e {
                LeaderEvent::NewLeader(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Polls `check` every 10 ms for up to `limit`; the time it took, or `None`.
async fn within(limit: Duration, check: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples both candidates every 5 ms; the flag is set if both ever lead at once.
fn watch_for_two_leaders(a: &LeaderElector, b: &LeaderElector) -> Arc<AtomicBool> {
    let both = Arc::new(AtomicBool::new(false));
    let (a, b, flag) = (a.clone(), b.clone(), Arc::clone(&both));
    tokio::spawn(async move {
        loop {
            if a.is_leader() && b.is_leader() {
                flag.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    both
}

fn spec(server: &FakeLeases) -> LeaseSpec {
    server
        .lease("lease")
        .and_then(|l| l.spec)
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn first_candidate_creates_the_lease_and_renews_it_on_the_fast_path() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    assert_eq!(a.elector.leader().as_deref(), Some("a"));
    assert_eq!(a.new_leaders(), ["a"]);
    assert!(a.leading_token().is_some_and(|t| !t.is_cancelled()));

    let created = spec(&server);
    assert_eq!(created.holder_identity.as_deref(), Some("a"));
    assert_eq!(created.lease_duration_seconds, Some(3));
    assert_eq!(created.lease_transitions, Some(0));
    // client-go's renew loop renews at once after acquiring, so renewTime may have moved.
    assert!(created.acquire_time.is_some());
    assert!(created.renew_time >= created.acquire_time);

    let gets = server.count(&Method::GET);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(a.elector.is_leader());
    let renewed = spec(&server);
    assert_eq!(
        renewed.acquire_time, created.acquire_time,
        "acquireTime kept"
    );
    assert_eq!(renewed.lease_transitions, Some(0));
    assert!(
        server.count(&Method::PUT) >= 8,
        "renewed every retry period"
    );
    assert_eq!(
        server.count(&Method::GET),
        gets,
        "the leader renews without reading"
    );
    assert_eq!(a.elector.check(Duration::ZERO), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_candidate_takes_over_only_after_the_lease_expires_by_its_own_clock() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    let b = Candidate::start(&server, config("b"));
    let two = watch_for_two_leaders(&a.elector, &b.elector);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !b.elector.is_leader(),
        "b took a lease that a kept renewing"
    );
    assert_eq!(b.elector.leader().as_deref(), Some("a"));

    // a stops renewing without releasing: b waits for the lease to expire.
    a.cancel.cancel();
    let took = within(Duration::from_secs(10), || b.elector.is_leader()).await;
    let took = took.unwrap_or_else(|| panic!("b never took over"));
    assert!(
        took >= LEASE - RETRY,
        "b took over after {took:?}: too early"
    );
    assert!(took <= takeover_bound(), "b took over after {took:?}");
    assert!(!two.load(Ordering::SeqCst), "both led at once");

    assert!(matches!(a.stopped(), Some((_, StopReason::Cancelled))));
    assert!(a.leading_token().is_some_and(|t| t.is_cancelled()));
    assert!(!a.elector.is_leader());
    assert_eq!(b.new_leaders(), ["a", "b"]);
    let taken = spec(&server);
    assert_eq!(taken.holder_identity.as_deref(), Some("b"));
    assert_eq!(taken.lease_transitions, Some(1));
    // a's run was cancelled: it reports healthy although the lease it last saw was its own.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(a.elector.check(Duration::ZERO), Ok(()));
    assert!(
        within(Duration::from_secs(1), || a.done.load(Ordering::SeqCst))
            .await
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn release_on_cancel_hands_over_within_a_retry_period() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a").with_release_on_cancel(true));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    let b = Candidate::start(&server, config("b"));
    let two = watch_for_two_leaders(&a.elector, &b.elector);
    tokio::time::sleep(Duration::from_secs(2)).await;

    a.cancel.cancel();
    assert!(within(RETRY, || a.stopped().is_some()).await.is_some());
    // Released as client-go does, before StoppedLeading was sent.
    let released = spec(&server);
    assert_eq!(released.holder_identity.as_deref(), Some(""));
    assert_eq!(released.lease_duration_seconds, Some(1));
    assert_eq!(released.lease_transitions, Some(0));
    assert_eq!(a.elector.leader(), None);

    let took = within(Duration::from_secs(5), || b.elector.is_leader()).await;
    let took = took.unwrap_or_else(|| panic!("b never took over"));
    assert!(took <= RETRY.mul_f64(1.0 + JITTER_FACTOR), "took {took:?}");
    assert!(!two.load(Ordering::SeqCst), "both led at once");
    assert_eq!(spec(&server).lease_transitions, Some(1));
    // The empty holder was seen and replaced within the same attempt: not reported.
    assert_eq!(b.new_leaders(), ["a", "b"]);
}

async fn cut_off_leader(link: Link) {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    let b = Candidate::start(&server, config("b"));
    let two = watch_for_two_leaders(&a.elector, &b.elector);
    tokio::time::sleep(Duration::from_secs(3)).await;

    a.link.set(link);
    let cut = Instant::now();
    let took = within(Duration::from_secs(10), || b.elector.is_leader()).await;
    let took = took.unwrap_or_else(|| panic!("b never took over"));
    assert!(took <= takeover_bound(), "b took over after {took:?}");
    assert!(!two.load(Ordering::SeqCst), "both led at once");

    // a gave up within its renew deadline, before b could take over.
    let (stopped_at, reason) = a
        .stopped()
        .unwrap_or_else(|| panic!("a never stopped leading"));
    assert_eq!(reason, StopReason::RenewDeadlineExceeded);
    assert!(
        stopped_at - cut <= RETRY + RENEW,
        "a stopped after {:?}",
        stopped_at - cut
    );
    assert!(stopped_at <= cut + took);
    assert!(a.leading_token().is_some_and(|t| t.is_cancelled()));
    assert_eq!(spec(&server).lease_transitions, Some(1));

    // a still believes the lease it last saw is its own and cannot renew: unhealthy once
    // the lease duration plus the tolerance have passed since its last renewal.
    let tolerance = Duration::from_secs(1);
    assert_eq!(b.elector.check(tolerance), Ok(()));
    tokio::time::sleep(LEASE + tolerance).await;
    let health = a.elector.check(tolerance);
    assert!(
        matches!(&health, Err(LeaderElectionError::RenewalOverdue { lease, .. }) if lease == "default/lease"),
        "{health:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_requests_hang_steps_down_before_it_is_replaced() {
    cut_off_leader(Link::Hanging).await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_requests_fail_steps_down_before_it_is_replaced() {
    cut_off_leader(Link::Failing).await;
}

#[tokio::test(start_paused = true)]
async fn simultaneous_candidates_elect_exactly_one() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    let b = Candidate::start(&server, config("b"));
    let two = watch_for_two_leaders(&a.elector, &b.elector);
    let elected = within(RETRY, || a.elector.is_leader() || b.elector.is_leader()).await;
    assert!(elected.is_some(), "no one was elected");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(a.elector.is_leader() ^ b.elector.is_leader());
    assert!(!two.load(Ordering::SeqCst), "both led at once");
    assert_eq!(spec(&server).lease_transitions, Some(0));
    assert_eq!(
        server.count(&Method::POST),
        2,
        "the loser's create was refused"
    );
}

/// A lease written by a Go replica whose clock is far behind: its renewTime is decades
/// old, yet it is valid for a full lease duration after we first see it.
#[tokio::test(start_paused = true)]
async fn a_lease_written_elsewhere_is_respected_by_observation() {
    let server = FakeLeases::default();
    let mut lease = Lease::default();
    lease.metadata.name = Some("lease".to_owned());
    let old = MicroTime(Timestamp::UNIX_EPOCH);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("go-replica".to_owned()),
        lease_duration_seconds: Some(3),
        acquire_time: Some(old.clone()),
        renew_time: Some(old),
        lease_transitions: Some(4),
        ..LeaseSpec::default()
    });
    server.write(&lease);

    let b = Candidate::start(&server, config("b"));
    let took = within(Duration::from_secs(10), || b.elector.is_leader()).await;
    let took = took.unwrap_or_else(|| panic!("b never took over"));
    assert!(
        took > LEASE,
        "took over after {took:?}, before the lease expired"
    );
    assert!(took <= LEASE + RETRY.mul_f64(1.0 + JITTER_FACTOR) + Duration::from_millis(50));
    assert_eq!(b.new_leaders(), ["go-replica", "b"]);
    let taken = spec(&server);
    assert_eq!(taken.lease_transitions, Some(5));
    assert_eq!(taken.lease_duration_seconds, Some(3));
}

/// Another replica overwrites the lease while we lead: our optimistic update conflicts, we
/// read the lease, see the new holder and stop leading at once.
#[tokio::test(start_paused = true)]
async fn a_leader_that_sees_another_holder_stops_leading() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    let mut lease = server.lease("lease").unwrap_or_default();
    let now = MicroTime(Timestamp::now());
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("go-replica".to_owned()),
        lease_duration_seconds: Some(3),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(1),
        ..LeaseSpec::default()
    });
    server.write(&lease);

    let stopped = within(RETRY * 2, || a.stopped().is_some()).await;
    assert!(stopped.is_some(), "a kept leading");
    let holder = "go-replica".to_owned();
    assert_eq!(
        a.stopped().map(|s| s.1),
        Some(StopReason::LeaseTaken { holder })
    );
    assert!(!a.elector.is_leader());
    assert_eq!(a.elector.leader().as_deref(), Some("go-replica"));
    assert_eq!(a.elector.check(Duration::ZERO), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_run_cancelled_before_leading_reports_nothing_but_leaders() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    let b = Candidate::start(&server, config("b").with_release_on_cancel(true));
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.cancel.cancel();
    assert!(
        within(RETRY, || b.done.load(Ordering::SeqCst))
            .await
            .is_some()
    );
    assert!(b.leading_token().is_none() && b.stopped().is_none());
    assert_eq!(b.new_leaders(), ["a"]);
    // b's release did not touch a's lease.
    assert_eq!(spec(&server).holder_identity.as_deref(), Some("a"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_elector_do_not_overlap_and_a_new_term_can_follow() {
    let server = FakeLeases::default();
    let a = Candidate::start(&server, config("a"));
    assert!(within(RETRY, || a.elector.is_leader()).await.is_some());
    // A second run waits for the first one.
    let cancel = CancellationToken::new();
    let mut second = a.elector.run(cancel.clone());
    let early = tokio::time::timeout(Duration::from_secs(2), second.next()).await;
    assert!(
        early.is_err(),
        "the second run started while the first ran: {early:?}"
    );
    a.cancel.cancel();
    // The same identity re-acquires its own lease at once (client-go: it is the holder).
    let next = tokio::time::timeout(RETRY * 3, second.next()).await;
    assert!(
        matches!(next, Ok(Some(LeaderEvent::NewLeader(ref id))) if id == "a"),
        "{next:?}"
    );
    let next = tokio::time::timeout(RETRY, second.next()).await;
    assert!(
        matches!(next, Ok(Some(LeaderEvent::StartedLeading(_)))),
        "{next:?}"
    );
    assert!(a.elector.is_leader());
    assert_eq!(spec(&server).lease_transitions, Some(0));
    cancel.cancel();
    let last = tokio::time::timeout(RETRY, second.next()).await;
    assert!(matches!(
        last,
        Ok(Some(LeaderEvent::StoppedLeading(StopReason::Cancelled)))
    ));
    assert!(matches!(
        tokio::time::timeout(RETRY, second.next()).await,
        Ok(None)
    ));
}

#[tokio::test]
async fn invalid_configurations_are_refused_and_the_namespace_defaults() {
    let server = FakeLeases::default();
    let (client, _) = server.client();
    let err = LeaderElector::new(client.clone(), config("")).err();
    assert_eq!(err.and_then(|e| e.field()), Some("identity"));
    let elector = LeaderElector::new(client, config("a").with_lease("", "lease"));
    let elector = elector.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(elector.config().lease_namespace(), "default");
    assert_eq!(elector.config().name, "default/lease");
    assert!(!elector.is_leader());
    assert_eq!(elector.leader(), None);

    let healthz = HealthzAdaptor::new(Duration::from_secs(1));
    healthz.set_leader_election(&elector);
    assert_eq!(healthz.check(), Ok(()));
}
