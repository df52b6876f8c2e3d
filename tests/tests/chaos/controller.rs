//! A controller (Manager + Builder) reconciling 200 Widgets while the writer changes their
//! specs and the faults of a [`Schedule`] are injected: every Widget ends reconciled to its
//! final spec, no key is ever reconciled by two workers at once, and failed reconciles are
//! retried.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::cache::CacheOptions;
use ferrokube_runtime::client::{Client, Patch, WriteOptions};
use ferrokube_runtime::envtest::EnvironmentOptions;
use ferrokube_runtime::prelude::*;
use ferrokube_runtime::reconcile::BoxError;
use k8s_openapi::api::core::v1::Namespace;
use parking_lot::Mutex;
use serde_json::json;
use tests::fault_proxy::FaultProxy;
use tests::{Context as TestContext, Test, eventually};
use tokio::sync::RwLock;
use tokio::time::Instant;

use crate::faults::{Rng, Schedule};
use crate::widgets::{self, Widget};

/// Widgets reconciled.
const OBJECTS: usize = 200;
/// How long the writer changes specs.
const WRITE_FOR: Duration = Duration::from_secs(20);
/// At most this many spec changes, one every [`WRITE_EVERY`].
const MAX_WRITES: u64 = 2000;
/// How long the controller may take to converge once the faults stop: its informer's
/// backoff grows to 30–60 s under repeated failures (as client-go's).
const CONVERGE_WITHIN: Duration = Duration::from_secs(75);
/// The writer's pace (so the faults, not the request budget, bound its time).
const WRITE_EVERY: Duration = Duration::from_millis(15);

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "chaos::controller_reconciles_200_objects_under_faults",
            controller_under_faults,
        )
        .starts_control_planes(),
    ]
}

/// What the reconciler counts.
#[derive(Default)]
struct Counts {
    reconciles: AtomicU64,
    errors: AtomicU64,
    /// Times a reconcile started for a key another worker was reconciling.
    overlaps: AtomicU64,
    in_flight: Mutex<HashSet<String>>,
}

/// Mirrors `spec.value` into `status.observed`; fails when the write fails (the faults make
/// it fail), so the controller retries.
struct Mirror {
    client: CachedClient,
    counts: Arc<Counts>,
}

/// Marks a key in flight for as long as it lives (only if this reconcile marked it).
struct InFlight<'a> {
    counts: &'a Counts,
    key: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.counts.in_flight.lock().remove(key);
        }
    }
}

impl Reconciler for Mirror {
    type Error = BoxError;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, BoxError> {
        let key = format!(
            "{}/{}",
            request.namespace.clone().unwrap_or_default(),
            request.name
        );
        let inserted = self.counts.in_flight.lock().insert(key.clone());
        if !inserted {
            self.counts.overlaps.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%key, "two workers reconcile the same key");
        }
        let _guard = InFlight {
            counts: &self.counts,
            key: inserted.then_some(key),
        };
        self.counts.reconciles.fetch_add(1, Ordering::Relaxed);
        // Widen the window in which a second worker could take the same key.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let result = self.mirror(&request).await;
        if result.is_err() {
            self.counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl Mirror {
    async fn mirror(&self, request: &Request) -> Result<Action, BoxError> {
        let Some(widget) = self.client.get_request::<Widget>(request).await? else {
            return Ok(Action::done());
        };
        let observed = widget.status.as_ref().map(|s| s.observed);
        if observed != Some(widget.spec.value) {
            let patch = json!({"status": {"observed": widget.spec.value}});
            self.client
                .patch_status(&*widget, &Patch::Merge(patch))
                .await?;
        }
        Ok(Action::done())
    }
}

async fn controller_under_faults(_ctx: TestContext) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = EnvironmentOptions::default().start().await?;
    println!(
        "CHAOS [controller] control plane started in {:?}",
        started.elapsed()
    );
    let config = env.config().clone();
    let direct = Client::from_kube(env.client()?);
    let namespace = "chaos-controller";
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.to_owned());
    direct
        .all::<Namespace>()
        .create(&ns, &WriteOptions::default())
        .await?;
    widgets::install(&direct).await?;
    let api = direct.namespaced::<Widget>(namespace);
    for i in 0..OBJECTS {
        api.create(
            &widgets::widget(namespace, &format!("w{i:03}"), 0),
            &WriteOptions::default(),
        )
        .await?;
    }
    let env = Arc::new(RwLock::new(env));

    let proxy = Arc::new(FaultProxy::in_front_of(&config).await?);
    let proxied = Client::from_kube(kube::Client::try_from(proxy.client_config(&config)?)?);
    let manager = Manager::from_client(
        proxied,
        ManagerOptions::default()
            .bind_address(None)
            .cache(CacheOptions::default().namespaces([namespace.to_owned()])),
    );
    let counts = Arc::new(Counts::default());
    Builder::new(&manager)
        .for_::<Widget>()
        .options(ControllerOptions::default().max_concurrent_reconciles(8))
        .complete(Mirror {
            client: manager.client(),
            counts: Arc::clone(&counts),
        })?;
    let shutdown = CancellationToken::new();
    let task = {
        let (m, s) = (manager.clone(), shutdown.clone());
        tokio::spawn(async move { m.start(s).await })
    };

    let schedule = Schedule {
        label: "controller",
        period: Duration::from_millis(2500),
        refuse_for: Some(Duration::from_secs(1)),
        bandwidth: Some(16 * 1024),
        compact: true,
        restart_every: Some(3),
    };
    let chaos = crate::faults::Chaos::start(Arc::clone(&proxy), Some(Arc::clone(&env)), schedule);
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    let (mut updates, mut failed_updates) = (0u64, 0u64);
    let deadline = Instant::now() + WRITE_FOR;
    let mut pace = tokio::time::interval(WRITE_EVERY);
    for _ in 0..MAX_WRITES {
        pace.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let name = format!("w{:03}", rng.below(OBJECTS as u64));
        let value = rng.below(1_000_000) as i64 + 1;
        let patch = Patch::Merge(json!({"spec": {"value": value}}));
        match api.patch(&name, &patch, &Default::default()).await {
            Ok(_) => updates += 1,
            Err(_) => {
                failed_updates += 1;
                // The API server may be restarting: do not spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let faults = chaos.stop().await?;
    let stopped = Instant::now();
    println!("CHAOS [controller] seed={seed} faults injected: {faults}");
    println!(
        "CHAOS [controller] writer: objects={OBJECTS} spec_updates={updates} \
         failed_updates={failed_updates}"
    );

    // Every Widget reconciled to its final spec (read directly, not through the proxy).
    let unreconciled = eventually(
        "every widget's status.observed to equal its spec.value",
        CONVERGE_WITHIN,
        || {
            let api = api.clone();
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                let pending = list
                    .items
                    .iter()
                    .filter(|w| w.status.as_ref().map(|s| s.observed) != Some(w.spec.value))
                    .count();
                (list.items.len() == OBJECTS && pending == 0).then_some(list.items.len())
            }
        },
    )
    .await;
    let reconciles = counts.reconciles.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let overlaps = counts.overlaps.load(Ordering::Relaxed);
    println!(
        "CHAOS [controller] reconciles={reconciles} errors={errors} (retried) concurrent_same_key={overlaps}; \
         {} after the faults stopped; test took {:?}",
        match &unreconciled {
            Ok(n) => format!(
                "all {n} widgets reconciled to their final spec {:?}",
                stopped.elapsed()
            ),
            Err(e) => format!("NOT converged: {e}"),
        },
        started.elapsed()
    );
    unreconciled?;
    ensure!(overlaps == 0, "{overlaps} reconciles overlapped on one key");
    if faults.any() {
        ensure!(
            errors > 0,
            "faults were injected ({faults}) but no reconcile failed: the test did not test retries"
        );
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .context("the manager did not stop")?
        .context("the manager task")?
        .context("the manager")?;
    Ok(())
}
