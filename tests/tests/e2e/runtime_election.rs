//! Two managers contend for one Lease: only the leader reconciles; the standby syncs its
//! cache while it waits, and after the leader is killed (its runtime dropped: no release, no
//! goodbye) it reconciles everything from that cache within the lease duration plus retries,
//! without listing again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::Client;
use ferrokube_runtime::prelude::*;
use tests::{Context as TestContext, Test, eventually};
use tokio::time::Instant;

use crate::gadgets::{self, Gadget};
use crate::runtime::{GadgetReconciler, Log};

const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "runtime::leader_election_one_leader_warm_standby_failover",
            failover,
        ),
        Test::new("runtime::losing_the_lease_stops_the_manager", lease_lost),
    ]
}

fn options(ns: &str, identity: &str) -> ManagerOptions {
    ManagerOptions::default()
        .bind_address(None)
        .cache(CacheOptions::default().namespaces([ns.to_owned()]))
        .leader_election(
            LeaderElectionOptions::new(ns, "runtime-failover")
                .identity(identity)
                .lease_duration(LEASE)
                .renew_deadline(RENEW)
                .retry_period(RETRY),
        )
}

fn names(log: &Log) -> BTreeSet<String> {
    log.lock().iter().map(|(n, _, _)| n.clone()).collect()
}

async fn failover(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    const N: usize = 20;
    let api = client.namespaced::<Gadget>(&ns);
    for i in 0..N {
        api.create(
            &gadgets::gadget(&ns, &format!("f{i:02}"), 1, ""),
            &Default::default(),
        )
        .await?;
    }
    let config = ctx.env.read().await.config().clone();

    // Replica A, on a runtime of its own so that it can be killed.
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (manager_a, log_a) = {
        let _enter = runtime_a.enter();
        let kube_a = kube::Client::try_from(config.clone())?;
        let manager = Manager::from_client(Client::from_kube(kube_a), options(&ns, "replica-a"));
        let reconciler = GadgetReconciler::new(manager.client(), "a");
        let log = Arc::clone(&reconciler.log);
        Builder::new(&manager)
            .for_::<Gadget>()
            .complete(reconciler)?;
        (manager, log)
    };
    {
        let m = manager_a.clone();
        runtime_a.spawn(async move { m.start(CancellationToken::new()).await });
    }
    eventually("replica A to lead", Duration::from_secs(30), || {
        let m = &manager_a;
        async move { m.is_leader().then_some(()) }
    })
    .await?;

    // Replica B counts the Gadget lists its client makes.
    let lists = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lists);
    let layer =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let uri = request.uri();
            if request.method() == http::Method::GET
                && uri.path().ends_with("/gadgets")
                && !uri.query().unwrap_or("").contains("watch=")
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            request
        });
    let kube_b = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&layer)
        .build();
    let manager_b = Manager::from_client(Client::from_kube(kube_b), options(&ns, "replica-b"));
    let reconciler = GadgetReconciler::new(manager_b.client(), "b");
    let log_b = Arc::clone(&reconciler.log);
    Builder::new(&manager_b)
        .for_::<Gadget>()
        .complete(reconciler)?;
    let shutdown_b = CancellationToken::new();
    let task_b = {
        let (m, s) = (manager_b.clone(), shutdown_b.clone());
        tokio::spawn(async move { m.start(s).await })
    };

    eventually(
        "A to reconcile every gadget",
        Duration::from_secs(60),
        || {
            let log = &log_a;
            async move { (names(log).len() == N).then_some(()) }
        },
    )
    .await?;
    eventually(
        "B's cache (warm standby) to hold every gadget",
        Duration::from_secs(30),
        || {
            let m = &manager_b;
            async move {
                (m.cache().has_synced() && m.cache().informer::<Gadget>().len() == N).then_some(())
            }
        },
    )
    .await?;
    ensure!(!manager_b.is_leader(), "two leaders");
    ensure!(
        log_b.lock().is_empty(),
        "the standby reconciled while A led"
    );
    let lists_before = lists.load(Ordering::SeqCst);
    ensure!(lists_before >= 1, "B's list was not counted");

    // Kill A: its tasks are dropped where they stand; the Lease is not released.
    let killed = Instant::now();
    runtime_a.shutdown_background();
    let bound = LEASE + RETRY.mul_f64(2.0 * 2.2) + Duration::from_secs(2);
    eventually(
        "B to reconcile every gadget",
        bound + Duration::from_secs(20),
        || {
            let log = &log_b;
            async move { (names(log).len() == N).then_some(()) }
        },
    )
    .await?;
    let first_b = log_b
        .lock()
        .iter()
        .map(|(_, t, _)| *t)
        .min()
        .context("B never reconciled")?;
    let takeover = first_b.duration_since(killed);
    ensure!(
        takeover <= bound,
        "B took over {takeover:?} after A was killed (bound {bound:?})"
    );
    ensure!(
        log_a.lock().iter().all(|(_, t, _)| *t < first_b),
        "A and B reconciled at the same time"
    );
    ensure!(
        lists.load(Ordering::SeqCst) == lists_before,
        "B listed Gadgets again after taking over ({} lists, {lists_before} before)",
        lists.load(Ordering::SeqCst)
    );
    shutdown_b.cancel();
    task_b
        .await
        .context("manager B's task")?
        .context("manager B")?;
    Ok(())
}

/// Another holder takes the Lease: the manager stops its controller at once and `start`
/// returns `LeaderElectionLost`.
async fn lease_lost(ctx: TestContext) -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    let api = client.namespaced::<Gadget>(&ns);
    api.create(&gadgets::gadget(&ns, "watched", 1, ""), &Default::default())
        .await?;
    let manager = Manager::from_client(client.clone(), options(&ns, "victim"));
    let reconciler = GadgetReconciler::new(manager.client(), "victim");
    let log = Arc::clone(&reconciler.log);
    Builder::new(&manager)
        .for_::<Gadget>()
        .complete(reconciler)?;
    let task = {
        let m = manager.clone();
        tokio::spawn(async move { m.start(CancellationToken::new()).await })
    };
    eventually("the first reconcile", Duration::from_secs(30), || {
        let log = &log;
        async move { (!log.lock().is_empty()).then_some(()) }
    })
    .await?;
    // A thief overwrites the Lease (as if it had expired for another candidate).
    let leases = client.namespaced::<Lease>(&ns);
    let patch = serde_json::json!({"spec": {
        "holderIdentity": "thief",
        "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()),
    }});
    leases
        .patch(
            "runtime-failover",
            &ferrokube_runtime::client::Patch::Merge(patch),
            &Default::default(),
        )
        .await?;
    let stolen = Instant::now();
    let outcome = tokio::time::timeout(RENEW + RETRY * 4, task)
        .await
        .context("the manager kept running after losing its Lease")??;
    match outcome {
        Err(ferrokube_runtime::manager::Error::LeaderElectionLost { .. }) => {}
        other => anyhow::bail!("expected LeaderElectionLost, got {other:?}"),
    }
    ensure!(!manager.is_leader());
    let after = log.lock().iter().filter(|(_, t, _)| *t > stolen).count();
    // A reconcile may have been running when the lease went; none may start after the end.
    let ended = Instant::now();
    api.patch(
        "watched",
        &ferrokube_runtime::client::Patch::Merge(serde_json::json!({"spec": {"size": 7}})),
        &Default::default(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        log.lock().iter().all(|(_, t, _)| *t < ended),
        "reconciled after the manager stopped ({after} reconciles after the theft)"
    );
    Ok(())
}
