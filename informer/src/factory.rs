//! [`SharedInformerFactory`]: one informer per type and scope, shared by everyone who asks
//! (client-go's `informers.SharedInformerFactory`, with dynamic and metadata-only informers).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::Client;
use kube::Resource;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::decode::Transform;
use crate::lister::Lister;
use crate::reflector::InitialList;
use crate::shared::{InformerConfig, SharedIndexInformer};

/// What makes two informers the same: the type, and for dynamic ones the resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct InformerKey {
    type_id: TypeId,
    resource: Option<String>,
}

/// An informer with its type erased, so the factory can start and watch them all.
trait Erased: Send + Sync {
    fn has_synced(&self) -> bool;
    fn run(&self, cancel: CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    fn as_any(&self) -> &dyn Any;
}

impl<K> Erased for SharedIndexInformer<K>
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
{
    fn has_synced(&self) -> bool {
        SharedIndexInformer::has_synced(self)
    }

    fn run(&self, cancel: CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let informer = self.clone();
        Box::pin(async move { informer.run(cancel).await })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Entry {
    name: String,
    informer: Arc<dyn Erased>,
    started: bool,
}

/// Creates informers on demand, one per type (and resource, for dynamic ones), all with the
/// factory's scope and options; [`start`](Self::start) runs those not yet running.
pub struct SharedInformerFactory {
    client: Client,
    namespace: Option<String>,
    resync: Option<Duration>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    keep_managed_fields: bool,
    initial_list: InitialList,
    transforms: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    informers: Mutex<HashMap<InformerKey, Entry>>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SharedInformerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInformerFactory")
            .field("namespace", &self.namespace)
            .field("resync", &self.resync)
            .field("informers", &self.informers.lock().len())
            .finish_non_exhaustive()
    }
}

impl SharedInformerFactory {
    /// A factory for all namespaces, with `resync` as every handler's default resync period.
    pub fn new(client: Client, resync: Option<Duration>) -> Self {
        Self {
            client,
            namespace: None,
            resync,
            label_selector: None,
            field_selector: None,
            keep_managed_fields: false,
            initial_list: InitialList::Paged,
            transforms: HashMap::new(),
            informers: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Only this namespace (client-go's `WithNamespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects matching this label selector (client-go's `WithTweakListOptions`).
    #[must_use]
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Only objects matching this field selector.
    #[must_use]
    pub fn field_selector(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Keep `managedFields` (stripped by default).
    #[must_use]
    pub fn keep_managed_fields(mut self, keep: bool) -> Self {
        self.keep_managed_fields = keep;
        self
    }

    /// Paged (default) or streaming initial lists.
    #[must_use]
    pub fn initial_list(mut self, mode: InitialList) -> Self {
        self.initial_list = mode;
        self
    }

    /// A transform for informers of `K` (client-go's `WithTransform`, typed).
    #[must_use]
    pub fn transform<K: 'static>(mut self, transform: Transform<K>) -> Self {
        self.transforms
            .insert(TypeId::of::<K>(), Box::new(transform));
        self
    }

    fn config<K: 'static>(&self) -> InformerConfig<K> {
        let mut config = InformerConfig::default()
            .resync_period(self.resync)
            .keep_managed_fields(self.keep_managed_fields)
            .initial_list(self.initial_list);
        if let Some(s) = &self.label_selector {
            config = config.label_selector(s.clone());
        }
        if let Some(s) = &self.field_selector {
            config = config.field_selector(s.clone());
        }
        if let Some(t) = self
            .transforms
            .get(&TypeId::of::<K>())
            .and_then(|t| t.downcast_ref::<Transform<K>>())
        {
            config = config.transform(Arc::clone(t));
        }
        config
    }

    fn get_or_create<K>(
        &self,
        key: InformerKey,
        name: String,
        create: impl FnOnce() -> SharedIndexInformer<K>,
    ) -> SharedIndexInformer<K>
    where
        K: Resource + DeserializeOwned + Send + Sync + 'static,
    {
        let mut informers = self.informers.lock();
        if let Some(existing) = informers
            .get(&key)
            .and_then(|e| e.informer.as_any().downcast_ref::<SharedIndexInformer<K>>())
        {
            return existing.clone();
        }
        let informer = create();
        informers.insert(
            key,
            Entry {
                name,
                informer: Arc::new(informer.clone()),
                started: false,
            },
        );
        informer
    }

    /// The shared informer for `K` (created on first use).
    pub fn informer_for<K>(&self) -> SharedIndexInformer<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
    {
        let key = InformerKey {
            type_id: TypeId::of::<K>(),
            resource: None,
        };
        let name = format!("{}.{}", K::plural(&()), K::group(&()));
        self.get_or_create(key, name, || {
            let api =
                ferrokube_client::Api::new(self.client.clone(), self.namespace.as_deref(), &());
            SharedIndexInformer::new(api, self.config())
        })
    }

    /// A lister over the shared informer for `K`.
    pub fn lister_for<K>(&self) -> Lister<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
    {
        Lister::new(self.informer_for::<K>().indexer().clone())
    }

    /// A metadata-only informer for `K`: the server sends `PartialObjectMetadata`, so only
    /// names, labels, annotations, owners… are kept.
    pub fn metadata_informer_for<K>(&self) -> SharedIndexInformer<PartialObjectMeta<K>>
    where
        K: Resource<DynamicType = ()> + Send + Sync + 'static,
    {
        let key = InformerKey {
            type_id: TypeId::of::<PartialObjectMeta<K>>(),
            resource: None,
        };
        let name = format!("{}.{} (metadata)", K::plural(&()), K::group(&()));
        self.get_or_create(key, name, || {
            let api =
                ferrokube_client::Api::new(self.client.clone(), self.namespace.as_deref(), &());
            SharedIndexInformer::new(api, self.config().metadata_only(true))
        })
    }

    /// A dynamic informer for any resource (e.g. from discovery).
    pub fn dynamic_informer(&self, resource: &ApiResource) -> SharedIndexInformer<DynamicObject> {
        let id = format!("{}/{}", resource.api_version, resource.plural);
        let key = InformerKey {
            type_id: TypeId::of::<DynamicObject>(),
            resource: Some(id.clone()),
        };
        self.get_or_create(key, id, || {
            let api = ferrokube_client::Api::new(
                self.client.clone(),
                self.namespace.as_deref(),
                resource,
            );
            SharedIndexInformer::new(api, self.config())
        })
    }

    /// Starts every informer created so far that is not running yet (call again after
    /// asking for more).
    pub fn start(&self) {
        let mut informers = self.informers.lock();
        let mut tasks = self.tasks.lock();
        for entry in informers.values_mut().filter(|e| !e.started) {
            entry.started = true;
            tasks.push(tokio::spawn(entry.informer.run(self.cancel.child_token())));
        }
    }

    /// Waits until every started informer has synced or `cancel` fires; returns each
    /// informer's name and whether it synced.
    pub async fn wait_for_cache_sync(&self, cancel: &CancellationToken) -> BTreeMap<String, bool> {
        let started: Vec<_> = self
            .informers
            .lock()
            .values()
            .filter(|e| e.started)
            .map(|e| (e.name.clone(), Arc::clone(&e.informer)))
            .collect();
        loop {
            let all = started.iter().all(|(_, i)| i.has_synced());
            if all || cancel.is_cancelled() {
                return started
                    .iter()
                    .map(|(n, i)| (n.clone(), i.has_synced()))
                    .collect();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// Stops every informer and waits for them to end.
    ///
    /// # Panics
    ///
    /// With the first panic of an informer (which ended it: see
    /// [`SharedIndexInformer::run`]), once every informer has ended.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        let mut panic = None;
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                panic.get_or_insert(e.into_panic());
            }
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Drop for SharedInformerFactory {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
