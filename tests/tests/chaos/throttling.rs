//! Chaos: real API-server throttling.
//!
//! A control plane of its own whose kube-apiserver admits very few requests at once
//! (`--max-requests-inflight`, `--max-mutating-requests-inflight`, priority and fairness off),
//! so it answers the excess with `429 Too Many Requests` and `Retry-After: 1`. Members of
//! `system:masters` are never throttled there, so the load runs as a ServiceAccount bound to
//! `cluster-admin`, with a bearer token from the TokenRequest API.
//!
//! Writers (several clients, many tasks), four informers and a controller hammer it with no
//! client-side throttling. Every 429 is counted by the clients' request metrics; the test
//! asserts that 429s happened, that no operation failed (the client waits for `Retry-After`
//! plus jitter and retries, up to 10 times as client-go's rest client), and that in the end
//! every informer's cache equals a fresh list, its handler saw every key's final state, and
//! the controller reconciled every object to its final data without a failed reconcile.
//!
//! Without the jitter (client-go waits exactly `Retry-After`) this test failed: the requests
//! turned away together came back together one second later, again and again, until one
//! used up its ten retries and the writer got the 429.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use ferrokube_informer::{EventHandlerFuncs, InformerConfig, SharedIndexInformer};
use ferrokube_runtime::client::metrics::RequestMetrics;
use ferrokube_runtime::client::retry::retry_on_conflict;
use ferrokube_runtime::client::{Api, ListOptions, WriteOptions};
use ferrokube_runtime::envtest::{Environment, EnvironmentOptions};
use ferrokube_runtime::prelude::*;
use ferrokube_runtime::reconcile::BoxError;
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tests::{Context as TestContext, Test, eventually};

/// kube-apiserver's limit on read requests in flight.
const MAX_INFLIGHT: u32 = 2;
/// kube-apiserver's limit on mutating requests in flight.
const MAX_MUTATING_INFLIGHT: u32 = 1;
/// Clients the writers share (each has its own connections).
const WRITER_CLIENTS: usize = 4;
/// Writer tasks, spread over the writer clients.
const WRITERS: usize = 24;
/// ConfigMaps per writer: each is created, read, updated, listed, and one in three deleted.
const OBJECTS_PER_WRITER: usize = 8;

/// Informers started while the writers run.
const INFORMERS: usize = 4;

const NAMESPACE: &str = "chaos-throttling";
const MIRROR: &str = "chaos.ferrokube.io/mirror";

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "chaos::throttling::clients_back_off_on_429_and_finish",
            throttled,
        )
        .starts_control_planes(),
    ]
}

// === request counting ===

/// Counts a client's requests by status code (client-go's `rest_client_requests_total`).
#[derive(Default)]
struct Codes {
    by_code: Mutex<BTreeMap<String, u64>>,
}

impl RequestMetrics for Codes {
    fn request_done(&self, _method: &str, _host: &str, code: &str) {
        *self.by_code.lock().entry(code.to_owned()).or_default() += 1;
    }
}

impl Codes {
    fn count(&self, code: &str) -> u64 {
        self.by_code.lock().get(code).copied().unwrap_or_default()
    }

    fn total(&self) -> u64 {
        self.by_code.lock().values().sum()
    }

    fn summary(&self) -> String {
        let codes = self.by_code.lock();
        let parts: Vec<String> = codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        parts.join(" ")
    }
}

// === setup ===

/// A control plane answering 429 as soon as a few requests are in flight.
async fn throttled_control_plane() -> anyhow::Result<Environment> {
    Ok(EnvironmentOptions::default()
        .api_server_flag(format!("--max-requests-inflight={MAX_INFLIGHT}"))
        .api_server_flag(format!(
            "--max-mutating-requests-inflight={MAX_MUTATING_INFLIGHT}"
        ))
        .api_server_flag("--enable-priority-and-fairness=false")
        .start()
        .await?)
}

/// A namespace and a `cluster-admin` ServiceAccount outside `system:masters` (which the
/// max-in-flight filter never throttles); returns a kube config authenticating as it.
async fn throttled_identity(env: &Environment) -> anyhow::Result<kube::Config> {
    let admin = Client::from_kube(env.client()?);
    let post = |group: Option<&str>, resource: &str, ns: Option<&str>, body: Value| {
        let mut request = admin.post();
        if let Some(group) = group {
            request = request.group_version(group, "v1");
        }
        request.namespace(ns).resource(resource).json(&body)
    };
    post(
        None,
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .decode::<Value>()
    .await
    .context("creating the namespace")?;
    post(
        None,
        "serviceaccounts",
        Some(NAMESPACE),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "hammer"}}),
    )
    .decode::<Value>()
    .await
    .context("creating the ServiceAccount")?;
    post(
        Some("rbac.authorization.k8s.io"),
        "clusterrolebindings",
        None,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "hammer-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "hammer", "namespace": NAMESPACE}],
        }),
    )
    .decode::<Value>()
    .await
    .context("binding cluster-admin")?;
    let token: Value = admin
        .post()
        .namespace(Some(NAMESPACE))
        .resource("serviceaccounts")
        .name("hammer")
        .subresource("token")
        .json(&json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }))
        .decode()
        .await
        .context("requesting a token")?;
    let token = token["status"]["token"]
        .as_str()
        .context("no token in the TokenRequest")?;
    let mut config = env.config().clone();
    config.auth_info = serde_json::from_value(json!({ "token": token }))?;
    config.default_namespace = NAMESPACE.to_owned();
    Ok(config)
}

/// A client without client-side throttling, counting its requests in `codes`.
fn hammer_client(config: &kube::Config, codes: &Arc<Codes>) -> anyhow::Result<Client> {
    Ok(Config::from_kube(config.clone())
        .with_qps(0.0)
        .with_request_metrics(Arc::clone(codes) as Arc<dyn RequestMetrics>)
        .build()?)
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some(BTreeMap::from([("v".to_owned(), value.to_owned())]));
    cm
}

fn value(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("v").map(String::as_str)
}

fn mirror(cm: &ConfigMap) -> Option<&str> {
    cm.metadata
        .annotations
        .as_ref()?
        .get(MIRROR)
        .map(String::as_str)
}

fn versions<'a>(items: impl Iterator<Item = &'a ConfigMap>) -> BTreeMap<String, String> {
    items
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

// === the load ===

/// What the writers did.
#[derive(Default)]
struct Written {
    operations: AtomicU64,
    created: AtomicU64,
    deleted: AtomicU64,
}

/// One writer: for each of its ConfigMaps, create, get, update (retried on conflict with the
/// controller's writes), list, and delete one in three. Any error is the test's failure.
async fn writer(api: Api<ConfigMap>, id: usize, written: Arc<Written>) -> anyhow::Result<()> {
    let count = |n: u64| written.operations.fetch_add(n, Ordering::Relaxed);
    for i in 0..OBJECTS_PER_WRITER {
        let name = format!("w{id:02}-{i:02}");
        api.create(&configmap(&name, "0"), &WriteOptions::default())
            .await
            .with_context(|| format!("creating {name}"))?;
        written.created.fetch_add(1, Ordering::Relaxed);
        api.get(&name)
            .await
            .with_context(|| format!("reading {name}"))?;
        retry_on_conflict(|| {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let mut cm = api.get(&name).await?;
                cm.data = Some(BTreeMap::from([("v".to_owned(), format!("{id}-{i}"))]));
                api.update(&cm, &WriteOptions::default()).await
            }
        })
        .await
        .with_context(|| format!("updating {name}"))?;
        let listed = api
            .list(&ListOptions {
                limit: Some(20),
                ..ListOptions::default()
            })
            .await
            .with_context(|| "listing".to_owned())?;
        ensure!(!listed.items.is_empty(), "a list after a create is empty");
        count(5);
        if i % 3 == 0 {
            api.delete(&name, &Default::default())
                .await
                .with_context(|| format!("deleting {name}"))?;
            written.deleted.fetch_add(1, Ordering::Relaxed);
            count(1);
        }
    }
    Ok(())
}

/// Mirrors `data.v` into an annotation; counts reconciles and errors.
struct Mirror {
    client: CachedClient,
    reconciles: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Reconciler for Mirror {
    type Error = BoxError;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, BoxError> {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let outcome = async {
            let Some(cm) = self.client.get_request::<ConfigMap>(&request).await? else {
                return Ok::<_, BoxError>(());
            };
            if let Some(v) = value(&cm)
                && mirror(&cm) != Some(v)
            {
                let patch = json!({"metadata": {"annotations": {MIRROR: v}}});
                match self.client.patch(&*cm, &Patch::Merge(patch)).await {
                    // Deleted since the cache saw it: nothing left to mirror.
                    Err(e) if e.is_not_found() => {}
                    other => {
                        other.map_err(BoxError::from)?;
                    }
                }
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => Ok(Action::done()),
            Err(e) => {
                self.errors.lock().push(format!("{}: {e}", request.name));
                Err(e)
            }
        }
    }
}

/// An informer whose handler remembers the last resourceVersion it saw per key (`None`
/// once deleted).
struct Watched {
    informer: SharedIndexInformer<ConfigMap>,
    seen: Arc<Mutex<BTreeMap<String, Option<String>>>>,
    _registration: ferrokube_informer::Registration,
}

fn watched(client: &Client) -> Watched {
    let informer = SharedIndexInformer::new(
        client.namespaced::<ConfigMap>(NAMESPACE),
        InformerConfig::default(),
    );
    let seen: Arc<Mutex<BTreeMap<String, Option<String>>>> = Arc::default();
    let key = |cm: &ConfigMap| cm.metadata.name.clone().unwrap_or_default();
    let rv = |cm: &ConfigMap| cm.metadata.resource_version.clone();
    let (a, u, d) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
    let registration = informer.add_event_handler(
        EventHandlerFuncs::default()
            .on_add(move |cm, _| {
                a.lock().insert(key(&cm), rv(&cm));
            })
            .on_update(move |_, cm| {
                u.lock().insert(key(&cm), rv(&cm));
            })
            .on_delete(move |cm| {
                d.lock().insert(key(cm.object()), None);
            }),
    );
    Watched {
        informer,
        seen,
        _registration: registration,
    }
}

async fn throttled(_ctx: TestContext) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = throttled_control_plane().await?;
    let config = throttled_identity(&env).await?;
    let admin = Client::from_kube(env.client()?);
    let truth = admin.namespaced::<ConfigMap>(NAMESPACE);

    let writer_codes = Arc::new(Codes::default());
    let informer_codes = Arc::new(Codes::default());
    let controller_codes = Arc::new(Codes::default());
    let cancel = CancellationToken::new();

    // A controller mirroring data into an annotation.
    let manager = Manager::from_client(
        hammer_client(&config, &controller_codes)?,
        ManagerOptions::default()
            .bind_address(None)
            .cache(CacheOptions::default().namespaces([NAMESPACE])),
    );
    let reconciles = Arc::new(AtomicU64::new(0));
    let reconcile_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    Builder::new(&manager)
        .for_::<ConfigMap>()
        .options(ControllerOptions::default().max_concurrent_reconciles(4))
        .complete(Mirror {
            client: manager.client(),
            reconciles: Arc::clone(&reconciles),
            errors: Arc::clone(&reconcile_errors),
        })?;
    let manager_task = {
        let (m, c) = (manager.clone(), cancel.clone());
        tokio::spawn(async move { m.start(c).await })
    };
    // The writers.
    let written = Arc::new(Written::default());
    let writer_clients = (0..WRITER_CLIENTS)
        .map(|_| hammer_client(&config, &writer_codes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| {
            let api = writer_clients[id % WRITER_CLIENTS].namespaced::<ConfigMap>(NAMESPACE);
            tokio::spawn(writer(api, id, Arc::clone(&written)))
        })
        .collect();

    // Informers, each with a client of its own, started under load: their lists meet the
    // throttled server (watches are long-running requests, which it does not limit).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let informers = (0..INFORMERS)
        .map(|_| Ok(watched(&hammer_client(&config, &informer_codes)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs = Vec::new();
    for w in &informers {
        let (informer, cancel) = (w.informer.clone(), cancel.clone());
        runs.push(tokio::spawn(async move { informer.run(cancel).await }));
    }
    for w in &informers {
        ensure!(
            tokio::time::timeout(
                Duration::from_secs(60),
                w.informer.wait_for_cache_sync(&cancel)
            )
            .await
            .unwrap_or(false),
            "an informer did not sync under load"
        );
    }

    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(format!("writer task: {e}")),
        }
    }
    let load_took = load_started.elapsed();
    if !failures.is_empty() {
        cancel.cancel();
        let _ = manager_task.await;
        anyhow::bail!(
            "errors surfaced to the writers ({} of {WRITERS}): {failures:?}; writer requests {}",
            failures.len(),
            writer_codes.summary()
        );
    }

    // The controller converges: every remaining object mirrors its final data.
    let remaining = eventually(
        "every ConfigMap to be mirrored",
        Duration::from_secs(60),
        || {
            let truth = truth.clone();
            async move {
                let list = truth.list(&ListOptions::default()).await.ok()?;
                list.items
                    .iter()
                    .all(|cm| value(cm).is_some() && mirror(cm) == value(cm))
                    .then_some(list.items)
            }
        },
    )
    .await?;
    let expected = (WRITERS * OBJECTS_PER_WRITER) as u64 - written.deleted.load(Ordering::Relaxed);
    ensure!(
        remaining.len() as u64 == expected,
        "{} ConfigMaps remain, expected {expected}",
        remaining.len()
    );

    // Every informer's cache equals a fresh list; its handler saw every final state.
    let fresh = eventually(
        "the informers' caches and handlers to match a fresh list",
        Duration::from_secs(30),
        || {
            let truth = truth.clone();
            let informers = &informers;
            async move {
                let list = truth.list(&ListOptions::default()).await.ok()?;
                let fresh = versions(list.items.iter());
                informers
                    .iter()
                    .all(|w| {
                        let cached = w.informer.indexer().list();
                        let seen: BTreeMap<String, String> = w
                            .seen
                            .lock()
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                            .collect();
                        versions(cached.iter().map(|c| &**c)) == fresh && seen == fresh
                    })
                    .then_some(fresh)
            }
        },
    )
    .await?;

    cancel.cancel();
    for run in runs {
        run.await.context("an informer task")?;
    }
    manager_task
        .await
        .context("the manager task")?
        .context("the manager")?;
    let errors = reconcile_errors.lock().clone();

    let writer_429 = writer_codes.count("429");
    let informer_429 = informer_codes.count("429");
    let controller_429 = controller_codes.count("429");
    let total_429 = writer_429 + informer_429 + controller_429;
    println!(
        "CHAOS [throttling] faults injected: kube-apiserver --max-requests-inflight={MAX_INFLIGHT} \
         --max-mutating-requests-inflight={MAX_MUTATING_INFLIGHT}, priority and fairness off; \
         429 answers: {total_429} (writers {writer_429}, informers {informer_429}, controller {controller_429})"
    );
    println!(
        "CHAOS [throttling] requests: writers {} [{}], informers {} [{}], controller {} [{}]",
        writer_codes.total(),
        writer_codes.summary(),
        informer_codes.total(),
        informer_codes.summary(),
        controller_codes.total(),
        controller_codes.summary(),
    );
    println!(
        "CHAOS [throttling] {WRITERS} writers on {WRITER_CLIENTS} clients: {} operations, {} created, \
         {} deleted in {load_took:.1?}; errors surfaced: writers 0, reconciles {} of {}",
        written.operations.load(Ordering::Relaxed),
        written.created.load(Ordering::Relaxed),
        written.deleted.load(Ordering::Relaxed),
        errors.len(),
        reconciles.load(Ordering::Relaxed),
    );
    println!(
        "CHAOS [throttling] final comparison: {} ConfigMaps, all mirrored by the controller; \
         {INFORMERS} informer caches and their handlers equal a fresh list (keys and \
         resourceVersions); took {:.1?}",
        fresh.len(),
        started.elapsed()
    );
    ensure!(
        errors.is_empty(),
        "reconciles failed ({}): {errors:?}",
        errors.len()
    );
    ensure!(
        writer_429 > 0,
        "the writers never got a 429: the throttling was not exercised ({})",
        writer_codes.summary()
    );
    ensure!(
        writer_codes.count("<error>") == 0,
        "writer requests without an answer: {}",
        writer_codes.summary()
    );
    env.stop();
    Ok(())
}
