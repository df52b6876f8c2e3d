//! The manager's cache: one shared informer per type for every controller and reader
//! (controller-runtime's `pkg/cache`).
//!
//! Informers are created the first time a type is watched or read, and started at once if
//! the cache runs. Reads come from memory and hand out `Arc`s; a read of a type not cached
//! yet starts its informer and waits for it to sync (or fails, with
//! [`CacheOptions::fail_on_missing_informer`]). Field indexes registered with
//! [`Cache::index_field`] serve [`ListParams::field`] lookups.
//!
//! `PartialObjectMeta<K>` types are watched metadata-only (the API server sends
//! `PartialObjectMetadata`), for controllers that need only names, labels and owners.

mod informer;
mod options;
mod reader;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::{Api, Client};
use ferrokube_informer::SharedIndexInformer;
use futures::FutureExt;
use kube::Resource;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::informer::Part;
pub use self::informer::{HandlerRegistration, Informer};
use self::options::Settings;
pub use self::options::{ByObject, CacheOptions, DEFAULT_SYNC_PERIOD, SYNC_PERIOD_JITTER};
pub use self::reader::ListParams;

/// How often sync waits look again.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// The prefix of field index names (controller-runtime's `field:` indexes).
const FIELD_INDEX_PREFIX: &str = "field:";

/// The namespace part of a field index value that matches every namespace.
const ALL_NAMESPACES: &str = "__all_namespaces";

/// What can go wrong reading from or indexing the cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The type is not cached and the cache was told not to start informers on reads.
    #[error("{resource} is not cached (the cache fails reads of types without an informer)")]
    NotCached {
        /// `apiVersion/plural`.
        resource: String,
    },
    /// A read needed an informer to sync, but the cache is not running.
    #[error("cannot read {resource}: the cache is not started")]
    NotStarted {
        /// `apiVersion/plural`.
        resource: String,
    },
    /// The cache stopped (or the manager began shutting down) before the informer synced.
    #[error("cannot read {resource}: the cache stopped before it synced")]
    Stopped {
        /// `apiVersion/plural`.
        resource: String,
    },
    /// The namespace is outside the namespaces the cache watches.
    #[error("cannot read {resource} in namespace {namespace:?}: the cache does not watch it")]
    NamespaceNotCached {
        /// `apiVersion/plural`.
        resource: String,
        /// The namespace asked for.
        namespace: String,
    },
    /// A list asked for a field index nobody registered.
    #[error("no field index {field:?} for {resource}: register it with Cache::index_field")]
    NoIndex {
        /// `apiVersion/plural`.
        resource: String,
        /// The field.
        field: String,
    },
    /// A field index could not be added (e.g. it exists already).
    #[error("cannot add field index {field:?} for {resource}")]
    Index {
        /// `apiVersion/plural`.
        resource: String,
        /// The field.
        field: String,
        /// Why.
        #[source]
        source: ferrokube_informer::Error,
    },
    /// An informer panicked: its cache is stale, so the cache stops.
    #[error("the informer for {resource} panicked: {message}")]
    InformerPanicked {
        /// `apiVersion/plural`.
        resource: String,
        /// The panic's message.
        message: String,
    },
}

/// The bounds of a cached type: any typed, custom, dynamic or metadata-only resource.
pub trait CacheObject:
    Resource<DynamicType: Clone + Send + Sync + 'static> + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> CacheObject for K
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Clone + Send + Sync + 'static,
{
}

/// One informer of the cache, its type erased.
struct Entry {
    resource: Arc<str>,
    informer: Box<dyn Any + Send + Sync>,
    runs: Vec<Arc<dyn Fn(CancellationToken) -> informer::RunFuture + Send + Sync>>,
    synced: Box<dyn Fn() -> bool + Send + Sync>,
    started: bool,
}

struct Running {
    cancel: CancellationToken,
    runtime: tokio::runtime::Handle,
}

/// An informer's panic: the resource and the message.
type Panic = (Arc<str>, String);

struct Inner {
    client: Client,
    options: CacheOptions,
    informers: Mutex<HashMap<(TypeId, String), Entry>>,
    running: Mutex<Option<Running>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    panics: mpsc::UnboundedSender<Panic>,
    panic_rx: Mutex<Option<mpsc::UnboundedReceiver<Panic>>>,
    /// Cancelled when reads must stop waiting for informers to sync (shutdown).
    reads_stop: CancellationToken,
}

/// The manager's informer cache: one informer per type, shared by every controller and by
/// the [`CachedClient`](crate::CachedClient). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let informers = self.inner.informers.lock();
        f.debug_struct("Cache")
            .field("namespaces", &self.inner.options.namespaces)
            .field(
                "informers",
                &informers.values().map(|e| &*e.resource).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// `apiVersion/plural` of `K`, with ` (metadata)` for metadata-only types.
fn resource_name<K: Resource>(dt: &K::DynamicType) -> String {
    let base = format!("{}/{}", K::api_version(dt), K::plural(dt));
    if is_metadata_only::<K>() {
        base + " (metadata)"
    } else {
        base
    }
}

/// Whether `K` is listed and watched metadata-only (kube's `PartialObjectMeta<_>`).
pub(crate) fn is_metadata_only<K: Resource>() -> bool {
    K::metadata_api()
}

/// Whether `K` is cluster-scoped, when its type says (`None` for dynamic types).
pub(crate) fn is_cluster_scoped<K: Resource>() -> Option<bool> {
    let scope = std::any::type_name::<K::Scope>();
    if scope == std::any::type_name::<k8s_openapi::ClusterResourceScope>() {
        Some(true)
    } else if scope == std::any::type_name::<k8s_openapi::NamespaceResourceScope>() {
        Some(false)
    } else {
        None
    }
}

fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + rand::random::<f64>() * SYNC_PERIOD_JITTER)
}

// === impl Cache ===

impl Cache {
    /// A cache reading through `client` (not started: see [`start`](Self::start)).
    pub fn new(client: Client, options: CacheOptions) -> Self {
        let (panics, panic_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                client,
                options,
                informers: Mutex::new(HashMap::new()),
                running: Mutex::new(None),
                tasks: Mutex::new(Vec::new()),
                panics,
                panic_rx: Mutex::new(Some(panic_rx)),
                reads_stop: CancellationToken::new(),
            }),
        }
    }

    /// The client informers list and watch with.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The cache's informer for `K`, created (and started, if the cache runs) on first use.
    pub fn informer<K>(&self) -> Informer<K>
    where
        K: CacheObject,
        K::DynamicType: Default,
    {
        self.informer_with(&K::DynamicType::default(), None)
    }

    /// The cache's informer for a dynamic type: `namespaced` says the resource's scope
    /// (discovery's [`ResourceInfo`](ferrokube_client::ResourceInfo) knows it).
    pub fn dynamic_informer(
        &self,
        resource: &kube::core::ApiResource,
        namespaced: bool,
    ) -> Informer<kube::core::DynamicObject> {
        self.informer_with(resource, Some(!namespaced))
    }

    /// The informer for `K` with its dynamic type; `cluster_scoped` overrides what the type
    /// says about its scope.
    pub fn informer_with<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
        cluster_scoped: Option<bool>,
    ) -> Informer<K> {
        let resource = resource_name::<K>(dt);
        let key = (TypeId::of::<K>(), resource.clone());
        let mut informers = self.inner.informers.lock();
        if let Some(existing) = informers
            .get(&key)
            .and_then(|e| e.informer.downcast_ref::<Informer<K>>())
        {
            return existing.clone();
        }
        let informer = self.create::<K>(dt, resource, cluster_scoped);
        let mut entry = Entry {
            resource: Arc::clone(&informer.resource),
            informer: Box::new(informer.clone()),
            runs: informer
                .parts
                .iter()
                .map(|(_, p)| {
                    let p = Arc::clone(p);
                    Arc::new(move |cancel| p.run(cancel))
                        as Arc<dyn Fn(CancellationToken) -> informer::RunFuture + Send + Sync>
                })
                .collect(),
            synced: {
                let i = informer.clone();
                Box::new(move || i.has_synced())
            },
            started: false,
        };
        if let Some(running) = &*self.inner.running.lock() {
            self.spawn(&mut entry, running);
        }
        informers.insert(key, entry);
        informer
    }

    fn create<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
        resource: String,
        cluster_scoped: Option<bool>,
    ) -> Informer<K> {
        let options = &self.inner.options;
        let by_object = options.for_type::<K>();
        let settings = Settings {
            resync: options.sync_period.map(jittered),
            label_selector: by_object.and_then(|b| b.label_selector.clone()),
            field_selector: by_object.and_then(|b| b.field_selector.clone()),
            initial_list: options.initial_list,
            metadata_only: is_metadata_only::<K>(),
        };
        let cluster_scoped = cluster_scoped
            .or_else(is_cluster_scoped::<K>)
            .unwrap_or(false);
        let namespaces: Vec<Option<String>> = match by_object.and_then(|b| b.namespaces.clone()) {
            _ if cluster_scoped => vec![None],
            Some(ns) if !ns.is_empty() => ns.into_iter().map(Some).collect(),
            _ if options.namespaces.is_empty() => vec![None],
            _ => options.namespaces.iter().cloned().map(Some).collect(),
        };
        let client = &self.inner.client;
        let parts = namespaces
            .into_iter()
            .map(|ns| {
                let part: Arc<dyn Part<K>> = match by_object.and_then(|b| b.compact.as_ref()) {
                    Some(factory) => factory(client, ns.as_deref(), &settings),
                    None => {
                        let mut config = settings.config::<K>();
                        if let Some(t) = by_object.and_then(|b| b.transform.clone()) {
                            config = config.transform(t);
                        }
                        let api = Api::<K>::new(client.clone(), ns.as_deref(), dt);
                        Arc::new(SharedIndexInformer::new(api, config))
                    }
                };
                (ns, part)
            })
            .collect();
        Informer {
            resource: resource.into(),
            parts,
        }
    }

    fn spawn(&self, entry: &mut Entry, running: &Running) {
        entry.started = true;
        let mut tasks = self.inner.tasks.lock();
        for run in &entry.runs {
            let future = AssertUnwindSafe(run(running.cancel.child_token())).catch_unwind();
            let panics = self.inner.panics.clone();
            let resource = Arc::clone(&entry.resource);
            tasks.push(running.runtime.spawn(async move {
                if let Err(payload) = future.await {
                    let _ = panics.send((resource, crate::controller::panic_message(&*payload)));
                }
            }));
        }
    }

    /// Runs every informer (those created later start at once) until `cancel` fires, then
    /// stops them and waits for them to end.
    ///
    /// # Errors
    ///
    /// [`Error::InformerPanicked`] if an informer panicked: its cache would be stale, so the
    /// whole cache stops. A cache runs once; a second call returns at once.
    pub async fn start(&self, cancel: CancellationToken) -> Result<(), Error> {
        let Some(mut panics) = self.inner.panic_rx.lock().take() else {
            tracing::warn!("the cache was started twice");
            return Ok(());
        };
        let stop = cancel.child_token();
        {
            let mut informers = self.inner.informers.lock();
            let mut running = self.inner.running.lock();
            let r = running.insert(Running {
                cancel: stop.clone(),
                runtime: tokio::runtime::Handle::current(),
            });
            for entry in informers.values_mut().filter(|e| !e.started) {
                self.spawn(entry, r);
            }
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => Ok(()),
            Some((resource, message)) = panics.recv() => Err(Error::InformerPanicked {
                resource: resource.to_string(),
                message,
            }),
        };
        {
            // Informers created from now on are not started: the cache has stopped.
            let _informers = self.inner.informers.lock();
            *self.inner.running.lock() = None;
        }
        stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        result
    }

    /// Whether the cache is running (started and not stopped).
    pub fn is_started(&self) -> bool {
        self.inner.running.lock().is_some()
    }

    /// True when every informer created so far has synced.
    pub fn has_synced(&self) -> bool {
        self.inner.informers.lock().values().all(|e| (e.synced)())
    }

    /// Waits until every informer created so far has synced; false if `cancel` fired first.
    pub async fn wait_for_cache_sync(&self, cancel: &CancellationToken) -> bool {
        loop {
            if self.has_synced() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(SYNC_POLL) => {}
                _ = cancel.cancelled() => return self.has_synced(),
            }
        }
    }

    /// Makes every read that waits for an informer to sync (now or later) fail with
    /// [`Error::Stopped`] instead: the manager calls it when it shuts down, so a reconcile
    /// blocked on a type that never syncs (e.g. its list is forbidden) ends and lets the
    /// shutdown go on. Synced reads keep working.
    pub fn stop_waiting_reads(&self) {
        self.inner.reads_stop.cancel();
    }

    /// Waits until `informer` has synced: errors if the cache is not running or stops first.
    pub async fn wait_for_informer<K: Resource + 'static>(
        &self,
        informer: &Informer<K>,
    ) -> Result<(), Error> {
        if informer.has_synced() {
            return Ok(());
        }
        let Some(cancel) = self.inner.running.lock().as_ref().map(|r| r.cancel.clone()) else {
            return Err(Error::NotStarted {
                resource: informer.resource().to_owned(),
            });
        };
        loop {
            if informer.has_synced() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(SYNC_POLL) => {}
                _ = cancel.cancelled() => return Err(Error::Stopped {
                    resource: informer.resource().to_owned(),
                }),
                _ = self.inner.reads_stop.cancelled() => return Err(Error::Stopped {
                    resource: informer.resource().to_owned(),
                }),
            }
        }
    }
}

/// A cache whose client points at a closed port: no informer of it ever syncs (tests).
#[cfg(test)]
pub(crate) fn unreachable_cache() -> Cache {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URL"));
    let client = kube::Client::try_from(config).expect("a client");
    Cache::new(Client::from_kube(client), CacheOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::core::{DynamicObject, PartialObjectMeta};

    #[test]
    fn metadata_only_types_are_recognised() {
        assert!(is_metadata_only::<PartialObjectMeta<ConfigMap>>());
        assert!(!is_metadata_only::<ConfigMap>());
        assert!(!is_metadata_only::<DynamicObject>());
    }

    #[test]
    fn scopes_come_from_the_type() {
        assert_eq!(is_cluster_scoped::<Namespace>(), Some(true));
        assert_eq!(is_cluster_scoped::<ConfigMap>(), Some(false));
        assert_eq!(is_cluster_scoped::<DynamicObject>(), None);
    }

    /// A read waiting for an informer that cannot sync (no server) ends when the manager
    /// stops waiting reads.
    #[tokio::test(start_paused = true)]
    async fn waiting_reads_end_when_told_to_stop() {
        let cache = unreachable_cache();
        let cancel = CancellationToken::new();
        let running = tokio::spawn({
            let cache = cache.clone();
            let cancel = cancel.clone();
            async move { cache.start(cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get::<ConfigMap>(Some("ns"), "cm").await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !read.is_finished(),
            "the read waits for the informer to sync"
        );
        cache.stop_waiting_reads();
        let outcome = tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .expect("the read ended")
            .expect("no panic");
        assert!(matches!(outcome, Err(Error::Stopped { .. })), "{outcome:?}");
        cancel.cancel();
        running.await.expect("no panic").expect("a clean stop");
    }

    #[test]
    fn sync_periods_are_jittered_by_at_most_ten_percent() {
        for _ in 0..100 {
            let p = jittered(DEFAULT_SYNC_PERIOD);
            assert!(p >= DEFAULT_SYNC_PERIOD && p <= DEFAULT_SYNC_PERIOD.mul_f64(1.1));
        }
    }
}
