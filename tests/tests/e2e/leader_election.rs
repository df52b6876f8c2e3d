//! Leader election on a real API server: one leader at a time, takeover after expiry (by
//! the candidates' own clocks), release on cancel, frozen and partitioned leaders, and Lease
//! fields named as client-go names them.
//!
//! Timings: lease 3 s, renew deadline 2 s, retry period 0.5 s. A candidate tries every
//! retry period plus up to 1.2 × retry period of jitter (client-go's `wait.JitterUntil`), so
//! after the leader's last renewal it may observe that renewal up to one jittered period
//! late and try again up to one jittered period after the lease expired: the takeover bound
//! is `lease + 2 × 2.2 × retry` plus slack for the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::client::Client;
use ferrokube_runtime::client::leader_election::{
    CancellationToken, JITTER_FACTOR, LeaderElectionConfig, LeaderElector, LeaderEvent, StopReason,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tests::{Context, Test};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
const SLACK: Duration = Duration::from_millis(1000);

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "leader_election::one_leader_and_takeover_after_expiry",
            takeover_after_expiry,
        ),
        Test::new(
            "leader_election::release_on_cancel_hands_over_within_a_retry_period",
            release_hands_over,
        ),
        Test::new(
            "leader_election::frozen_leader_is_replaced_after_expiry",
            frozen_leader,
        ),
        Test::new(
            "leader_election::partitioned_leader_steps_down_before_takeover",
            partitioned_leader,
        ),
        Test::new(
            "leader_election::lease_fields_are_client_go_s",
            lease_fields,
        ),
        Test::new(
            "leader_election::lease_written_by_client_go_is_respected",
            go_written_lease,
        ),
    ]
}

/// The longest a takeover may take after the leader's last renewal (see the module docs).
fn takeover_bound() -> Duration {
    LEASE + RETRY.mul_f64(2.0 * (1.0 + JITTER_FACTOR)) + SLACK
}

/// The earliest a takeover may come after the leader stopped renewing: it renewed at most
/// one retry period before, and the lease lasts `LEASE` from then.
fn takeover_floor() -> Duration {
    LEASE - RETRY - Duration::from_millis(300)
}

fn config(ns: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig::new(ns, "lease", identity)
        .with_lease_duration(LEASE)
        .with_renew_deadline(RENEW)
        .with_retry_period(RETRY)
}

type Events = Arc<Mutex<Vec<(Instant, LeaderEvent)>>>;

struct Candidate {
    elector: LeaderElector,
    cancel: CancellationToken,
    events: Events,
}

impl Candidate {
    fn start(client: &kube::Client, config: LeaderElectionConfig) -> anyhow::Result<Self> {
        let elector = LeaderElector::new(Client::from_kube(client.clone()), config)?;
        let cancel = CancellationToken::new();
        let events = collect(elector.run(cancel.clone()));
        Ok(Self {
            elector,
            cancel,
            events,
        })
    }

    async fn stopped(&self) -> Option<(Instant, StopReason)> {
        self.events.lock().await.iter().find_map(|(at, e)| match e {
            LeaderEvent::StoppedLeading(r) => Some((*at, r.clone())),
            _ => None,
        })
    }

    async fn leading_token(&self) -> Option<CancellationToken> {
        self.events.lock().await.iter().find_map(|(_, e)| match e {
            LeaderEvent::StartedLeading(t) => Some(t.clone()),
            _ => None,
        })
    }
}

fn collect(
    mut stream: impl futures::Stream<Item = LeaderEvent> + Send + Unpin + 'static,
) -> Events {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            sink.lock().await.push((Instant::now(), event));
        }
    });
    events
}

/// Polls `check` every 10 ms for up to `limit`; how long it took.
async fn within(what: &str, limit: Duration, check: impl Fn() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples both candidates every 10 ms until dropped; the flag is set if both ever lead.
struct TwoLeaders {
    both: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TwoLeaders {
    fn watch(a: &LeaderElector, b: &LeaderElector) -> Self {
        let both = Arc::new(AtomicBool::new(false));
        let (a, b, flag) = (a.clone(), b.clone(), Arc::clone(&both));
        let task = tokio::spawn(async move {
            loop {
                if a.is_leader() && b.is_leader() {
                    flag.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { both, task }
    }

    fn ensure_never(&self) -> anyhow::Result<()> {
        ensure!(
            !self.both.load(Ordering::SeqCst),
            "both candidates led at once"
        );
        Ok(())
    }
}

impl Drop for TwoLeaders {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_lease(client: &kube::Client, ns: &str) -> anyhow::Result<Value> {
    Client::from_kube(client.clone())
        .get()
        .group_version("coordination.k8s.io", "v1")
        .namespace(Some(ns))
        .resource("leases")
        .name("lease")
        .decode::<Value>()
        .await
        .context("reading the Lease")
}

async fn transitions(client: &kube::Client, ns: &str) -> anyhow::Result<i64> {
    raw_lease(client, ns).await?["spec"]["leaseTransitions"]
        .as_i64()
        .context("no spec.leaseTransitions")
}

async fn takeover_after_expiry(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let a = Candidate::start(client, config(ns, "a"))?;
    within("a leads", Duration::from_secs(5), || a.elector.is_leader()).await?;
    let b = Candidate::start(client, config(ns, "b"))?;
    let two = TwoLeaders::watch(&a.elector, &b.elector);

    // For a few seconds, a keeps leading and b waits.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        ensure!(a.elector.is_leader(), "a lost the lease while renewing it");
        ensure!(!b.elector.is_leader(), "b leads while a renews");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ensure!(
        b.elector.leader().as_deref() == Some("a"),
        "b sees {:?}",
        b.elector.leader()
    );
    ensure!(
        transitions(client, ns).await? == 0,
        "transitions before any takeover"
    );

    // a is cancelled without releasing: b waits for the lease to expire by its own clock.
    a.cancel.cancel();
    let took = within("b takes over", takeover_bound(), || b.elector.is_leader()).await?;
    println!("leader_election: takeover after expiry took {took:?}");
    ensure!(
        took >= takeover_floor(),
        "b took over after {took:?}: before the lease expired"
    );
    two.ensure_never()?;
    let stopped = a.stopped().await;
    ensure!(
        matches!(stopped, Some((_, StopReason::Cancelled))),
        "a: {stopped:?}"
    );
    let token = a.leading_token().await;
    ensure!(
        token.is_some_and(|t| t.is_cancelled()),
        "a's leading token not cancelled"
    );
    ensure!(
        transitions(client, ns).await? == 1,
        "leaseTransitions after one takeover"
    );

    // And once more: c takes over from b.
    let c = Candidate::start(client, config(ns, "c"))?;
    let two = TwoLeaders::watch(&b.elector, &c.elector);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(!c.elector.is_leader(), "c took a live lease");
    b.cancel.cancel();
    let took = within("c takes over", takeover_bound(), || c.elector.is_leader()).await?;
    ensure!(took >= takeover_floor(), "c took over after {took:?}");
    two.ensure_never()?;
    ensure!(
        transitions(client, ns).await? == 2,
        "leaseTransitions after two takeovers"
    );
    c.cancel.cancel();
    Ok(())
}

async fn release_hands_over(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let a = Candidate::start(client, config(ns, "a").with_release_on_cancel(true))?;
    within("a leads", Duration::from_secs(5), || a.elector.is_leader()).await?;
    let b = Candidate::start(client, config(ns, "b"))?;
    let two = TwoLeaders::watch(&a.elector, &b.elector);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(!b.elector.is_leader(), "b took a live lease");

    a.cancel.cancel();
    let bound = RETRY.mul_f64(1.0 + JITTER_FACTOR) + SLACK;
    let took = within("b takes over", bound, || b.elector.is_leader()).await?;
    println!("leader_election: takeover after release took {took:?}");
    two.ensure_never()?;
    let stopped = a.stopped().await;
    ensure!(
        matches!(stopped, Some((_, StopReason::Cancelled))),
        "a: {stopped:?}"
    );
    ensure!(a.elector.leader().is_none(), "a did not see its release");
    ensure!(
        transitions(client, ns).await? == 1,
        "a release is not a transition; b's takeover is"
    );
    b.cancel.cancel();
    Ok(())
}

/// The leader's process freezes: its runtime is shut down under it, so it neither renews
/// nor releases (although `release_on_cancel` is set). The other takes over after expiry.
async fn frozen_leader(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let kube_config = ctx.env.read().await.config().clone();
    let frozen = Frozen(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
    ));
    let config_a = config(ns, "a").with_release_on_cancel(true);
    let (elector_a, events_a) = frozen
        .handle()?
        .spawn(async move {
            let client = Client::from_kube(kube::Client::try_from(kube_config)?);
            let elector = LeaderElector::new(client, config_a)?;
            let events = elector.run(CancellationToken::new());
            anyhow::Ok((elector, events))
        })
        .await??;
    let events_a = collect(events_a);
    within("a leads", Duration::from_secs(5), || elector_a.is_leader()).await?;
    let b = Candidate::start(client, config(ns, "b"))?;
    let two = TwoLeaders::watch(&elector_a, &b.elector);
    tokio::time::sleep(Duration::from_secs(2)).await;

    drop(frozen);
    let took = within("b takes over", takeover_bound(), || b.elector.is_leader()).await?;
    println!("leader_election: takeover from a frozen leader took {took:?}");
    ensure!(
        took >= takeover_floor(),
        "b took over after {took:?}: before the lease expired"
    );
    two.ensure_never()?;
    let aborted = events_a
        .lock()
        .await
        .iter()
        .any(|(_, e)| matches!(e, LeaderEvent::StoppedLeading(StopReason::Aborted)));
    ensure!(
        aborted,
        "the frozen leader's stream did not report StoppedLeading(Aborted)"
    );
    ensure!(
        transitions(client, ns).await? == 1,
        "leaseTransitions after the takeover"
    );
    b.cancel.cancel();
    Ok(())
}

/// A runtime shut down in the background when dropped (dropping a runtime from async code
/// would panic).
struct Frozen(Option<tokio::runtime::Runtime>);

impl Frozen {
    fn handle(&self) -> anyhow::Result<&tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(|rt| rt.handle())
            .context("runtime already shut down")
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The leader is cut off from the API server (its connections hang): it gives leadership up
/// within its renew deadline, before the other candidate can take over.
async fn partitioned_leader(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let mut kube_config = ctx.env.read().await.config().clone();
    let upstream = kube_config
        .cluster_url
        .authority()
        .map(|a| a.as_str().to_owned())
        .context("no host:port in the cluster URL")?;
    let (proxy_port, link) = proxy(upstream).await?;
    kube_config.cluster_url = format!("https://127.0.0.1:{proxy_port}").parse()?;
    let client_a = kube::Client::try_from(kube_config)?;

    let a = Candidate::start(&client_a, config(ns, "a"))?;
    within("a leads", Duration::from_secs(5), || a.elector.is_leader()).await?;
    let b = Candidate::start(client, config(ns, "b"))?;
    let two = TwoLeaders::watch(&a.elector, &b.elector);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let _ = link.send(LinkState::Frozen);
    let cut = Instant::now();
    let took = within("b takes over", takeover_bound(), || b.elector.is_leader()).await?;
    println!("leader_election: takeover from a partitioned leader took {took:?}");
    two.ensure_never()?;
    let (stopped_at, reason) = a
        .stopped()
        .await
        .context("a never reported StoppedLeading")?;
    ensure!(
        reason == StopReason::RenewDeadlineExceeded,
        "a stopped: {reason:?}"
    );
    let gave_up = stopped_at - cut;
    ensure!(
        gave_up <= RETRY + RENEW + Duration::from_millis(300),
        "a gave up after {gave_up:?}"
    );
    ensure!(gave_up <= took, "a gave up after b took over");
    let token = a.leading_token().await;
    ensure!(
        token.is_some_and(|t| t.is_cancelled()),
        "a's leading token not cancelled"
    );
    ensure!(
        transitions(client, ns).await? == 1,
        "leaseTransitions after the takeover"
    );

    // a believes it last held the lease and cannot renew: its health check fails.
    let tolerance = Duration::from_millis(500);
    tokio::time::sleep(LEASE).await;
    ensure!(
        a.elector.check(tolerance).is_err(),
        "a's health check passes"
    );
    ensure!(b.elector.check(tolerance).is_ok(), "b's health check fails");
    let _ = link.send(LinkState::Closed);
    b.cancel.cancel();
    Ok(())
}

async fn lease_fields(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let a = Candidate::start(client, config(ns, "a").with_release_on_cancel(true))?;
    within("a leads", Duration::from_secs(5), || a.elector.is_leader()).await?;
    let first = raw_lease(client, ns).await?;
    let spec = &first["spec"];
    ensure!(spec["holderIdentity"] == "a", "spec: {spec}");
    ensure!(spec["leaseDurationSeconds"] == 3, "spec: {spec}");
    ensure!(spec["leaseTransitions"] == 0, "spec: {spec}");
    for field in ["acquireTime", "renewTime"] {
        let time = spec[field]
            .as_str()
            .with_context(|| format!("no {field} in {spec}"))?;
        ensure!(is_micro_time(time), "{field} is not a MicroTime: {time}");
    }
    let keys: Vec<&str> = spec
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for key in &keys {
        ensure!(
            [
                "holderIdentity",
                "leaseDurationSeconds",
                "acquireTime",
                "renewTime",
                "leaseTransitions"
            ]
            .contains(key),
            "unexpected field {key} in {spec}"
        );
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let renewed = raw_lease(client, ns).await?;
    ensure!(
        renewed["spec"]["acquireTime"] == spec["acquireTime"],
        "acquireTime moved"
    );
    ensure!(
        renewed["spec"]["renewTime"] != spec["renewTime"],
        "renewTime did not move"
    );

    a.cancel.cancel();
    within("a stops", Duration::from_secs(5), || {
        a.elector.leader().is_none()
    })
    .await?;
    let released = raw_lease(client, ns).await?;
    let spec = &released["spec"];
    ensure!(spec["holderIdentity"] == "", "released spec: {spec}");
    ensure!(spec["leaseDurationSeconds"] == 1, "released spec: {spec}");
    ensure!(spec["leaseTransitions"] == 0, "released spec: {spec}");
    Ok(())
}

/// `2024-05-01T10:11:12.123456Z`: metav1.MicroTime's format.
fn is_micro_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
}

/// A Lease as client-go writes it, held by a Go replica whose clock is years behind: it is
/// valid until a full lease duration after our candidate first observed it.
async fn go_written_lease(ctx: Context) -> anyhow::Result<()> {
    let (client, ns) = (&ctx.client, ctx.namespace.as_str());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "lease", "namespace": ns },
        "spec": {
            "holderIdentity": "go-replica",
            "leaseDurationSeconds": 3,
            "acquireTime": "2001-01-01T00:00:00.000000Z",
            "renewTime": "2001-01-01T00:00:00.000000Z",
            "leaseTransitions": 7,
        },
    });
    Client::from_kube(client.clone())
        .post()
        .group_version("coordination.k8s.io", "v1")
        .namespace(Some(ns))
        .resource("leases")
        .json(&lease)
        .decode::<Value>()
        .await
        .context("creating the Go replica's Lease")?;

    let b = Candidate::start(client, config(ns, "b"))?;
    let bound = LEASE + RETRY.mul_f64(1.0 + JITTER_FACTOR) + SLACK;
    let took = within("b takes over", bound, || b.elector.is_leader()).await?;
    ensure!(
        took >= LEASE,
        "b took over after {took:?}: judged expiry by renewTime"
    );
    let spec = raw_lease(client, ns).await?["spec"].clone();
    ensure!(spec["holderIdentity"] == "b", "spec: {spec}");
    ensure!(spec["leaseTransitions"] == 8, "spec: {spec}");
    let leaders: Vec<String> = b
        .events
        .lock()
        .await
        .iter()
        .filter_map(|(_, e)| match e {
            LeaderEvent::NewLeader(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    ensure!(leaders == ["go-replica", "b"], "new leaders: {leaders:?}");
    b.cancel.cancel();
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    Open,
    /// Connections stay open but carry nothing.
    Frozen,
    /// Held connections are dropped (end of test).
    Closed,
}

/// A TCP proxy to `upstream` on a local port, which can freeze every connection.
async fn proxy(upstream: String) -> anyhow::Result<(u16, watch::Sender<LinkState>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = watch::channel(LinkState::Open);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (upstream, mut state) = (upstream.clone(), rx.clone());
            if *state.borrow() == LinkState::Closed {
                break;
            }
            tokio::spawn(async move {
                let frozen = |s: &LinkState| *s != LinkState::Open;
                if !frozen(&state.borrow()) {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = state.wait_for(frozen) => {}
                    }
                    // Hold both ends, silent, until the end of the test.
                    let _ = state.wait_for(|s| *s == LinkState::Closed).await;
                    let _ = outbound.shutdown().await;
                } else {
                    let _ = state.wait_for(|s| *s == LinkState::Closed).await;
                }
                let _ = inbound.shutdown().await;
            });
        }
    });
    Ok((port, tx))
}
