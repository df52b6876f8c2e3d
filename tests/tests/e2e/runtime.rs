//! The controller-runtime layer against a real API server: a manager running a controller
//! for the `Gadget` CRD (convergence, predicates, owned objects, retries, terminal errors,
//! panics, shutdown, metrics and probes over HTTP, field indexes, dynamic objects).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::{Client, DeleteOptions, Patch, WriteOptions};
use ferrokube_runtime::controllerutil;
use ferrokube_runtime::prelude::*;
use ferrokube_runtime::reconcile::BoxError;
use ferrokube_runtime::workqueue::ItemExponentialFailureRateLimiter;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use parking_lot::Mutex;
use serde_json::json;
use tests::{Context as TestContext, Test, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::gadgets::{self, Gadget};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "runtime::converges_200_gadgets_and_filters_status_updates",
            converges_and_filters,
        ),
        Test::new(
            "runtime::deleting_an_owned_configmap_reconciles_its_owner",
            owned_configmap,
        ),
        Test::new(
            "runtime::errors_retry_with_growing_delay_terminal_errors_do_not",
            retries_terminal_panics,
        ),
        Test::new(
            "runtime::graceful_shutdown_waits_for_the_reconcile_in_flight",
            graceful_shutdown,
        ),
        Test::new(
            "runtime::metrics_healthz_and_readyz_over_http",
            metrics_and_probes,
        ),
        Test::new("runtime::field_index_serves_a_list", field_index),
        Test::new("runtime::dynamic_objects_are_reconciled", dynamic_objects),
        Test::new("runtime::metadata_only_watches_keep_no_data", metadata_only),
        Test::new(
            "runtime::cache_scoping_selectors_transforms_compact",
            cache_scoping,
        ),
    ]
}

/// Every reconcile of the test reconciler: (name, when, by whom).
pub type Log = Arc<Mutex<Vec<(String, Instant, String)>>>;

/// Reconciles Gadgets: status mirrors the spec; `spec.mode` makes it fail, fail terminally,
/// panic or sleep.
pub struct GadgetReconciler {
    pub client: CachedClient,
    pub log: Log,
    pub identity: String,
}

impl GadgetReconciler {
    pub fn new(client: CachedClient, identity: &str) -> Self {
        Self {
            client,
            log: Log::default(),
            identity: identity.to_owned(),
        }
    }
}

/// How many times `name` was reconciled according to `log`.
pub fn count(log: &Log, name: &str) -> usize {
    log.lock().iter().filter(|(n, _, _)| n == name).count()
}

impl Reconciler for GadgetReconciler {
    type Error = BoxError;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, BoxError> {
        let attempt = {
            let mut log = self.log.lock();
            log.push((request.name.clone(), Instant::now(), self.identity.clone()));
            log.iter().filter(|(n, _, _)| *n == request.name).count()
        };
        let Some(gadget) = self.client.get_request::<Gadget>(&request).await? else {
            return Ok(Action::done());
        };
        match gadget.spec.mode.as_str() {
            "fail3" if attempt <= 3 => return Err(format!("attempt {attempt} fails").into()),
            "terminal" => return Err(TerminalError::new("this gadget can never work").into()),
            "panic-once" if attempt == 1 => panic!("the test reconciler panics once"),
            "slow" => tokio::time::sleep(Duration::from_secs(2)).await,
            _ => {}
        }
        let generation = gadget.metadata.generation.unwrap_or_default();
        let status = gadget.status.clone().unwrap_or_default();
        if status.observed_generation != generation || status.size != gadget.spec.size {
            let patch =
                json!({"status": {"observedGeneration": generation, "size": gadget.spec.size}});
            self.client
                .patch_status(&*gadget, &Patch::Merge(patch))
                .await?;
        }
        Ok(Action::done())
    }
}

/// A manager caching only the test's namespace, without an HTTP server.
pub fn manager(ctx: &TestContext, options: ManagerOptions) -> Manager {
    Manager::from_client(
        Client::from_kube(ctx.client.clone()),
        options
            .bind_address(None)
            .cache(CacheOptions::default().namespaces([ctx.namespace.clone()])),
    )
}

async fn create_gadgets(
    client: &Client,
    ns: &str,
    names: impl IntoIterator<Item = (String, &str)>,
) -> anyhow::Result<()> {
    let api = client.namespaced::<Gadget>(ns);
    for (name, mode) in names {
        api.create(
            &gadgets::gadget(ns, &name, 1, mode),
            &WriteOptions::default(),
        )
        .await
        .with_context(|| format!("creating gadget {name}"))?;
    }
    Ok(())
}

/// Runs the manager in a task; returns its shutdown token and handle.
fn start(
    manager: &Manager,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), ferrokube_runtime::manager::Error>>,
) {
    let shutdown = CancellationToken::new();
    let m = manager.clone();
    let s = shutdown.clone();
    (shutdown, tokio::spawn(async move { m.start(s).await }))
}

async fn stop(
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ferrokube_runtime::manager::Error>>,
) -> anyhow::Result<()> {
    shutdown.cancel();
    task.await
        .context("the manager task")?
        .context("the manager")
}

async fn converges_and_filters(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    const N: usize = 200;
    create_gadgets(&client, &ns, (0..N).map(|i| (format!("g{i:03}"), ""))).await?;

    let manager = manager(&ctx, ManagerOptions::default());
    let reconciler = GadgetReconciler::new(manager.client(), "a");
    let log = Arc::clone(&reconciler.log);
    Builder::new(&manager)
        .for_with::<Gadget>(predicate::generation_changed())
        .options(ControllerOptions::default().max_concurrent_reconciles(4))
        .complete(reconciler)?;
    let (shutdown, task) = start(&manager);

    let api = client.namespaced::<Gadget>(&ns);
    let converged =
        |api: ferrokube_runtime::client::Api<Gadget>, size: i64, only: Option<String>| async move {
            let list = api.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .filter(|g| {
                    only.as_ref()
                        .is_none_or(|o| g.metadata.name.as_ref() == Some(o))
                })
                .all(|g| {
                    let st = g.status.clone().unwrap_or_default();
                    st.observed_generation == g.metadata.generation.unwrap_or(-1)
                        && (only.is_none() || st.size == size)
                })
                .then_some(())
        };
    eventually(
        "every gadget's status to be written",
        Duration::from_secs(90),
        || converged(api.clone(), 1, None),
    )
    .await?;
    // Our own status writes changed no generation: no second reconcile for anyone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        count(&log, "g000") == 1,
        "g000 was reconciled {} times",
        count(&log, "g000")
    );
    ensure!(
        log.lock().len() == N,
        "{} reconciles for {N} gadgets",
        log.lock().len()
    );

    // A spec change (new generation) is reconciled.
    api.patch(
        "g007",
        &Patch::Merge(json!({"spec": {"size": 42}})),
        &Default::default(),
    )
    .await?;
    eventually(
        "g007 to be reconciled again",
        Duration::from_secs(30),
        || converged(api.clone(), 42, Some("g007".into())),
    )
    .await?;
    ensure!(count(&log, "g007") == 2);

    // A status-only change is not.
    api.patch_status(
        "g008",
        &Patch::Merge(json!({"status": {"note": "hello"}})),
        &Default::default(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        count(&log, "g008") == 1,
        "a status-only change was reconciled"
    );
    stop(shutdown, task).await
}

/// Keeps a ConfigMap owned by each Gadget.
struct OwnerReconciler {
    client: CachedClient,
    reconciles: Arc<Mutex<HashMap<String, usize>>>,
}

impl Reconciler for OwnerReconciler {
    type Error = BoxError;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, BoxError> {
        *self
            .reconciles
            .lock()
            .entry(request.name.clone())
            .or_default() += 1;
        let Some(gadget) = self.client.get_request::<Gadget>(&request).await? else {
            return Ok(Action::done());
        };
        let name = format!("{}-config", request.name);
        let existing = self
            .client
            .get::<ConfigMap>(request.namespace(), &name)
            .await?;
        if existing.is_none() {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(name);
            cm.metadata.namespace = request.namespace.clone();
            cm.data = Some(BTreeMap::from([(
                "size".into(),
                gadget.spec.size.to_string(),
            )]));
            controllerutil::set_controller_reference(&*gadget, &mut cm)?;
            match self.client.create(&cm).await {
                Ok(_) => {}
                // The cache had not seen our previous create yet.
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Action::done())
    }
}

async fn owned_configmap(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    create_gadgets(&client, &ns, [("owner".to_owned(), "")]).await?;
    let manager = manager(&ctx, ManagerOptions::default());
    let reconciles = Arc::new(Mutex::new(HashMap::new()));
    Builder::new(&manager)
        .for_::<Gadget>()
        .owns::<ConfigMap>()
        .complete(OwnerReconciler {
            client: manager.client(),
            reconciles: Arc::clone(&reconciles),
        })?;
    let (shutdown, task) = start(&manager);
    let cms = client.namespaced::<ConfigMap>(&ns);
    let first = eventually("the owned ConfigMap", Duration::from_secs(30), || {
        let cms = &cms;
        async move { cms.get_opt("owner-config").await.ok().flatten() }
    })
    .await?;
    let owner = first
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .context("no owner reference")?;
    ensure!(
        owner.kind == "Gadget" && owner.controller == Some(true),
        "{owner:?}"
    );
    let before = reconciles.lock().get("owner").copied().unwrap_or_default();
    cms.delete("owner-config", &DeleteOptions::default())
        .await?;
    let uid = first.metadata.uid.clone();
    eventually(
        "the owner to recreate its ConfigMap",
        Duration::from_secs(30),
        || {
            let (cms, uid) = (&cms, &uid);
            async move {
                let cm = cms.get_opt("owner-config").await.ok().flatten()?;
                (cm.metadata.uid != *uid).then_some(())
            }
        },
    )
    .await?;
    ensure!(
        reconciles.lock().get("owner").copied().unwrap_or_default() > before,
        "the deletion did not reconcile the owner"
    );
    stop(shutdown, task).await
}

async fn retries_terminal_panics(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    create_gadgets(
        &client,
        &ns,
        [
            ("flaky".to_owned(), "fail3"),
            ("doomed".to_owned(), "terminal"),
            ("buggy".to_owned(), "panic-once"),
        ],
    )
    .await?;
    let manager = manager(&ctx, ManagerOptions::default());
    let reconciler = GadgetReconciler::new(manager.client(), "a");
    let log = Arc::clone(&reconciler.log);
    // A 200 ms base makes the growing delay measurable: 200, 400, 800 ms.
    let limiter =
        ItemExponentialFailureRateLimiter::new(Duration::from_millis(200), Duration::from_secs(60));
    Builder::new(&manager)
        .for_::<Gadget>()
        .options(
            ControllerOptions::default()
                .max_concurrent_reconciles(2)
                .rate_limiter(limiter),
        )
        .complete(reconciler)?;
    let (shutdown, task) = start(&manager);
    let api = client.namespaced::<Gadget>(&ns);
    for name in ["flaky", "buggy"] {
        eventually(
            &format!("{name} to succeed"),
            Duration::from_secs(30),
            || {
                let api = &api;
                async move {
                    let g = api.get(name).await.ok()?;
                    (g.status?.observed_generation == g.metadata.generation?).then_some(())
                }
            },
        )
        .await?;
    }
    let times: Vec<Instant> = log
        .lock()
        .iter()
        .filter(|(n, _, _)| n == "flaky")
        .map(|(_, t, _)| *t)
        .collect();
    ensure!(times.len() >= 4, "flaky reconciled {} times", times.len());
    for (i, gap) in times.windows(2).take(3).map(|w| w[1] - w[0]).enumerate() {
        let expected = Duration::from_millis(200 << i);
        ensure!(
            gap >= expected.mul_f64(0.9),
            "retry {i} came after {gap:?}, before the backoff of {expected:?}"
        );
    }
    ensure!(count(&log, "buggy") >= 2, "the panic was not retried");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(count(&log, "doomed") == 1, "a terminal error was retried");
    let text = manager.metrics().encode();
    for series in [
        r#"controller_runtime_reconcile_panics_total{controller="gadget"} 1"#,
        r#"controller_runtime_terminal_reconcile_errors_total{controller="gadget"} 1"#,
    ] {
        ensure!(text.contains(series), "no {series} in\n{text}");
    }
    stop(shutdown, task).await
}

async fn graceful_shutdown(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    create_gadgets(&client, &ns, [("sleepy".to_owned(), "slow")]).await?;
    let manager = manager(&ctx, ManagerOptions::default());
    let reconciler = GadgetReconciler::new(manager.client(), "a");
    let log = Arc::clone(&reconciler.log);
    Builder::new(&manager)
        .for_::<Gadget>()
        .complete(reconciler)?;
    let (shutdown, task) = start(&manager);
    eventually(
        "the slow reconcile to start",
        Duration::from_secs(30),
        || {
            let log = &log;
            async move { (count(log, "sleepy") == 1).then_some(()) }
        },
    )
    .await?;
    let stopping = Instant::now();
    stop(shutdown, task).await?;
    let took = stopping.elapsed();
    ensure!(
        took >= Duration::from_millis(1500),
        "the manager stopped after {took:?}, before the 2 s reconcile finished"
    );
    // The reconcile finished its status write before the manager returned.
    let g = client.namespaced::<Gadget>(&ns).get("sleepy").await?;
    ensure!(
        g.status.is_some_and(|s| s.observed_generation == 1),
        "the in-flight reconcile was cut short"
    );
    Ok(())
}

/// `GET path` on `address`: (status code, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

async fn metrics_and_probes(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    create_gadgets(&client, &ns, [("seen".to_owned(), "")]).await?;
    let kubeconfig = ctx.env.read().await.config().clone();
    let manager = Manager::new(
        &ferrokube_runtime::client::Config::from_kube(kubeconfig),
        ManagerOptions::default()
            .bind_address(Some(([127, 0, 0, 1], 0).into()))
            .cache(CacheOptions::default().namespaces([ns.clone()]))
            .leader_election(
                LeaderElectionOptions::new(ns.clone(), "metrics-test")
                    .lease_duration(Duration::from_secs(4))
                    .renew_deadline(Duration::from_secs(3))
                    .retry_period(Duration::from_millis(500)),
            ),
    )?;
    manager.add_readyz_check("custom", || Ok(()))?;
    let reconciler = GadgetReconciler::new(manager.client(), "a");
    let log = Arc::clone(&reconciler.log);
    Builder::new(&manager)
        .for_::<Gadget>()
        .complete(reconciler)?;
    let (shutdown, task) = start(&manager);
    eventually("a reconcile", Duration::from_secs(30), || {
        let log = &log;
        async move { (count(log, "seen") >= 1).then_some(()) }
    })
    .await?;
    let address = manager.server_address().context("no server address")?;
    let (code, body) = http_get(address, "/healthz").await?;
    ensure!(
        code == 200 && body.trim() == "ok",
        "/healthz: {code} {body}"
    );
    let (code, body) = eventually("/readyz to pass", Duration::from_secs(10), || async move {
        http_get(address, "/readyz?verbose")
            .await
            .ok()
            .filter(|(c, _)| *c == 200)
    })
    .await?;
    ensure!(
        body.contains("cache-sync") && body.contains("custom"),
        "/readyz: {code} {body}"
    );
    let (code, _) = http_get(address, "/readyz/nope").await?;
    ensure!(code == 404, "/readyz/nope: {code}");
    let (code, text) = http_get(address, "/metrics").await?;
    ensure!(code == 200, "/metrics: {code}");
    for series in [
        r#"controller_runtime_reconcile_total{controller="gadget",result="success"}"#,
        r#"controller_runtime_reconcile_errors_total{controller="gadget"}"#,
        r#"controller_runtime_terminal_reconcile_errors_total{controller="gadget"}"#,
        r#"controller_runtime_reconcile_panics_total{controller="gadget"}"#,
        "controller_runtime_reconcile_time_seconds_bucket{",
        r#"controller_runtime_max_concurrent_reconciles{controller="gadget"} 1"#,
        r#"controller_runtime_active_workers{controller="gadget"}"#,
        r#"workqueue_adds_total{name="gadget",controller="gadget"}"#,
        "workqueue_depth{",
        "workqueue_queue_duration_seconds_bucket{",
        "workqueue_work_duration_seconds_bucket{",
        "workqueue_retries_total{",
        r#"leader_election_master_status{name="metrics-test"} 1"#,
        "rest_client_requests_total{",
    ] {
        ensure!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    stop(shutdown, task).await
}

async fn field_index(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let ns = ctx.namespace.clone();
    let cms = client.namespaced::<ConfigMap>(&ns);
    for (name, team) in [("a", "red"), ("b", "blue"), ("c", "red")] {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.data = Some(BTreeMap::from([("team".into(), team.into())]));
        cms.create(&cm, &WriteOptions::default()).await?;
    }
    let manager = manager(&ctx, ManagerOptions::default());
    manager
        .cache()
        .index_field::<ConfigMap>("data.team", |cm| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("team").cloned())
                .into_iter()
                .collect()
        })?;
    let (shutdown, task) = start(&manager);
    // Reads before the cache runs fail (controller-runtime's ErrCacheNotStarted).
    eventually("the cache to start", Duration::from_secs(10), || {
        let cache = manager.cache();
        async move { cache.is_started().then_some(()) }
    })
    .await?;
    let reader = manager.client();
    let mut red: Vec<String> = reader
        .list::<ConfigMap>(
            &ListParams::default()
                .namespace(ns.clone())
                .field("data.team", "red"),
        )
        .await?
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    red.sort();
    ensure!(red == ["a", "c"], "red: {red:?}");
    let all_blue = reader
        .list::<ConfigMap>(&ListParams::default().field("data.team", "blue"))
        .await?;
    ensure!(all_blue.len() == 1, "blue: {}", all_blue.len());
    let missing = reader
        .list::<ConfigMap>(&ListParams::default().field("data.colour", "red"))
        .await;
    ensure!(missing.is_err(), "a list by an unknown index succeeded");
    stop(shutdown, task).await
}

async fn dynamic_objects(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let ns = ctx.namespace.clone();
    let cms = client.namespaced::<ConfigMap>(&ns);
    for name in ["d1", "d2", "d3"] {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cms.create(&cm, &WriteOptions::default()).await?;
    }
    let manager = manager(&ctx, ManagerOptions::default());
    let resource = kube::core::ApiResource::erase::<ConfigMap>(&());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = Arc::clone(&seen);
    let cache = manager.cache().clone();
    let r = resource.clone();
    Builder::new(&manager)
        .named("dynamic-configmaps")
        .for_dynamic(&resource, true)
        .complete(reconcile::from_fn(
            move |request: Request, _ctx: Context| {
                let (s, cache, r) = (Arc::clone(&s), cache.clone(), r.clone());
                async move {
                    let object = cache
                        .get_with::<kube::core::DynamicObject>(
                            &r,
                            request.namespace(),
                            &request.name,
                        )
                        .await?;
                    if let Some(o) = object {
                        s.lock().push(o.meta().name.clone().unwrap_or_default());
                    }
                    Ok::<_, BoxError>(Action::done())
                }
            },
        ))?;
    let (shutdown, task) = start(&manager);
    eventually("three dynamic reconciles", Duration::from_secs(30), || {
        let seen = &seen;
        async move {
            let mut names = seen.lock().clone();
            names.sort();
            names.dedup();
            (names.iter().filter(|n| n.starts_with('d')).count() == 3).then_some(())
        }
    })
    .await?;
    stop(shutdown, task).await
}

async fn metadata_only(ctx: TestContext) -> anyhow::Result<()> {
    use kube::core::PartialObjectMeta;
    type ConfigMapMeta = PartialObjectMeta<ConfigMap>;
    let client = Client::from_kube(ctx.client.clone());
    let ns = ctx.namespace.clone();
    let cms = client.namespaced::<ConfigMap>(&ns);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("meta".into());
    cm.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
    cm.data = Some(BTreeMap::from([("big".into(), "x".repeat(10_000))]));
    cms.create(&cm, &WriteOptions::default()).await?;
    let manager = manager(&ctx, ManagerOptions::default());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (s, reader) = (Arc::clone(&seen), manager.client());
    Builder::new(&manager)
        .for_::<ConfigMapMeta>()
        .complete(reconcile::from_fn(
            move |request: Request, _ctx: Context| {
                let (s, reader) = (Arc::clone(&s), reader.clone());
                async move {
                    if let Some(meta) = reader.get_request::<ConfigMapMeta>(&request).await? {
                        let tier = meta
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("tier").cloned());
                        s.lock()
                            .push(format!("{}={}", request.name, tier.unwrap_or_default()));
                    }
                    Ok::<_, BoxError>(Action::done())
                }
            },
        ))?;
    let (shutdown, task) = start(&manager);
    eventually(
        "the metadata-only reconcile",
        Duration::from_secs(30),
        || {
            let seen = &seen;
            async move { seen.lock().contains(&"meta=gold".to_owned()).then_some(()) }
        },
    )
    .await?;
    let informer = manager.cache().informer::<ConfigMapMeta>();
    ensure!(
        informer.resource().ends_with("(metadata)"),
        "{}",
        informer.resource()
    );
    stop(shutdown, task).await
}

async fn cache_scoping(ctx: TestContext) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    gadgets::install(&client).await?;
    let ns = ctx.namespace.clone();
    let cms = client.namespaced::<ConfigMap>(&ns);
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        cms.create(&cm, &WriteOptions::default()).await?;
    }
    create_gadgets(&client, &ns, [("shiny".to_owned(), "")]).await?;
    let manager = Manager::from_client(
        client.clone(),
        ManagerOptions::default().bind_address(None).cache(
            CacheOptions::default()
                .namespaces([ns.clone()])
                .by_object(
                    ByObject::<ConfigMap>::new()
                        .label_selector("app=web")
                        .compact(),
                )
                .by_object(ByObject::<Gadget>::new().transform(|mut g: Gadget| {
                    g.spec.mode = "transformed".into();
                    g
                })),
        ),
    );
    let (shutdown, task) = start(&manager);
    eventually("the cache to start", Duration::from_secs(10), || {
        let cache = manager.cache();
        async move { cache.is_started().then_some(()) }
    })
    .await?;
    let reader = manager.client();
    let mut web: Vec<String> = reader
        .list::<ConfigMap>(&ListParams::default().namespace(ns.clone()))
        .await?
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    web.sort();
    ensure!(
        web == ["web-1", "web-2"],
        "the label selector let through {web:?}"
    );
    ensure!(
        reader.get::<ConfigMap>(Some(&ns), "db-1").await?.is_none(),
        "db-1 is outside the selector"
    );
    let g = reader
        .get::<Gadget>(Some(&ns), "shiny")
        .await?
        .context("shiny is not cached")?;
    ensure!(g.spec.mode == "transformed", "the transform did not run");
    let other = reader.get::<ConfigMap>(Some("default"), "anything").await;
    ensure!(other.is_err(), "a namespace outside the cache was readable");
    stop(shutdown, task).await
}
