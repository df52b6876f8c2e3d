//! [`Informer`]: the cache's view of one type, over one informer per cached namespace (or one
//! for all), each storing full objects or compact JSON.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ferrokube_informer::compact::CompactInformer;
use ferrokube_informer::labels::Selector;
use ferrokube_informer::store::IndexFunc;
use ferrokube_informer::{Registration, ResourceEventHandler, SharedIndexInformer};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// A running informer's future, boxed.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One informer (full or compact), as the cache uses it.
pub(crate) trait Part<K>: Send + Sync {
    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>>;
    fn list(&self, selector: &Selector) -> Vec<Arc<K>>;
    fn list_namespaced(&self, namespace: &str, selector: &Selector) -> Vec<Arc<K>>;
    fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>, ferrokube_informer::Error>;
    fn add_index(&self, name: &str, f: IndexFunc<K>) -> Result<(), ferrokube_informer::Error>;
    fn has_index(&self, name: &str) -> bool;
    fn add_handler(&self, handler: Arc<dyn ResourceEventHandler<K>>) -> Registration;
    fn remove_handler(&self, registration: &Registration);
    fn has_synced(&self) -> bool;
    fn len(&self) -> usize;
    fn run(&self, cancel: CancellationToken) -> RunFuture;
}

/// Forwards to a shared handler (the informers take handlers by value).
struct Shared<K>(Arc<dyn ResourceEventHandler<K>>);

impl<K: Send + Sync + 'static> ResourceEventHandler<K> for Shared<K> {
    fn on_add(&self, object: Arc<K>, is_initial_list: bool) {
        self.0.on_add(object, is_initial_list);
    }
    fn on_update(&self, old: Arc<K>, new: Arc<K>) {
        self.0.on_update(old, new);
    }
    fn on_delete(&self, object: ferrokube_informer::delta_fifo::DeltaObject<K>) {
        self.0.on_delete(object);
    }
}

impl<K> Part<K> for SharedIndexInformer<K>
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
{
    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.indexer().get_by_namespace_name(namespace, name)
    }

    fn list(&self, selector: &Selector) -> Vec<Arc<K>> {
        let mut all = self.indexer().list();
        if !selector.is_empty() {
            all.retain(|o| selector.matches(o.meta().labels.as_ref()));
        }
        all
    }

    fn list_namespaced(&self, namespace: &str, selector: &Selector) -> Vec<Arc<K>> {
        let mut objects = self
            .indexer()
            .by_index(ferrokube_informer::store::NAMESPACE_INDEX, namespace)
            .unwrap_or_default();
        if !selector.is_empty() {
            objects.retain(|o| selector.matches(o.meta().labels.as_ref()));
        }
        objects
    }

    fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>, ferrokube_informer::Error> {
        self.indexer().by_index(index, value)
    }

    fn add_index(&self, name: &str, f: IndexFunc<K>) -> Result<(), ferrokube_informer::Error> {
        self.indexer().add_indexers([(name.to_owned(), f)])
    }

    fn has_index(&self, name: &str) -> bool {
        self.indexer().index_names().iter().any(|n| n == name)
    }

    fn add_handler(&self, handler: Arc<dyn ResourceEventHandler<K>>) -> Registration {
        self.add_event_handler(Shared(handler))
    }

    fn remove_handler(&self, registration: &Registration) {
        self.remove_event_handler(registration);
    }

    fn has_synced(&self) -> bool {
        SharedIndexInformer::has_synced(self)
    }

    fn len(&self) -> usize {
        self.indexer().len()
    }

    fn run(&self, cancel: CancellationToken) -> RunFuture {
        let informer = self.clone();
        Box::pin(async move { informer.run(cancel).await })
    }
}

impl<K> Part<K> for CompactInformer<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.lister().get(namespace, name)
    }

    fn list(&self, selector: &Selector) -> Vec<Arc<K>> {
        self.lister().list(selector)
    }

    fn list_namespaced(&self, namespace: &str, selector: &Selector) -> Vec<Arc<K>> {
        self.lister().list_namespaced(namespace, selector)
    }

    fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>, ferrokube_informer::Error> {
        self.lister().by_index(index, value)
    }

    fn add_index(&self, name: &str, f: IndexFunc<K>) -> Result<(), ferrokube_informer::Error> {
        self.add_indexers([(name.to_owned(), f)])
    }

    fn has_index(&self, name: &str) -> bool {
        self.compact()
            .indexer()
            .index_names()
            .iter()
            .any(|n| n == name)
    }

    fn add_handler(&self, handler: Arc<dyn ResourceEventHandler<K>>) -> Registration {
        self.add_event_handler(Shared(handler))
    }

    fn remove_handler(&self, registration: &Registration) {
        self.remove_event_handler(registration);
    }

    fn has_synced(&self) -> bool {
        CompactInformer::has_synced(self)
    }

    fn len(&self) -> usize {
        self.lister().len()
    }

    fn run(&self, cancel: CancellationToken) -> RunFuture {
        let informer = self.clone();
        Box::pin(async move { informer.run(cancel).await })
    }
}

/// One underlying informer and the namespace it watches (`None`: all).
pub(crate) type NamespacedPart<K> = (Option<String>, Arc<dyn Part<K>>);

/// The cache's informer for one type: one underlying informer per cached namespace (one for
/// all namespaces, or for a cluster-scoped type). Cheap to clone.
///
/// Reads hand out `Arc`s of the cached objects, never copies.
pub struct Informer<K> {
    pub(crate) resource: Arc<str>,
    pub(crate) parts: Arc<[NamespacedPart<K>]>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            resource: Arc::clone(&self.resource),
            parts: Arc::clone(&self.parts),
        }
    }
}

impl<K> std::fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("resource", &self.resource)
            .field(
                "namespaces",
                &self.parts.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A handler's registration on every part of an [`Informer`].
#[derive(Clone, Debug)]
#[must_use = "keep the registration to remove the handler or check has_synced"]
pub struct HandlerRegistration {
    registrations: Vec<Registration>,
}

impl HandlerRegistration {
    /// True once the informers have synced and the handler has seen the initial contents.
    pub fn has_synced(&self) -> bool {
        self.registrations.iter().all(Registration::has_synced)
    }
}

impl<K: Resource + 'static> Informer<K> {
    /// The resource this informer caches (`apiVersion/plural`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// True once every underlying informer has synced.
    pub fn has_synced(&self) -> bool {
        self.parts.iter().all(|(_, p)| p.has_synced())
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|(_, p)| p.len()).sum()
    }

    /// Whether the cache holds no object of this type.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached object `namespace/name`, read synchronously (for event handlers and map
    /// functions: no sync wait, so check [`has_synced`](Self::has_synced) where it matters).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.part_for(namespace)?.get(namespace, name)
    }

    /// The cached objects whose labels match `selector`, in `namespace` or everywhere;
    /// read synchronously, like [`get`](Self::get).
    pub fn list(&self, namespace: Option<&str>, selector: &Selector) -> Vec<Arc<K>> {
        match namespace {
            Some(ns) => self
                .part_for(Some(ns))
                .map(|p| p.list_namespaced(ns, selector))
                .unwrap_or_default(),
            None => self
                .parts
                .iter()
                .flat_map(|(_, p)| p.list(selector))
                .collect(),
        }
    }

    /// Adds an event handler to every underlying informer; handlers added after the informer
    /// started first get the cached objects as initial adds.
    pub fn add_event_handler(&self, handler: impl ResourceEventHandler<K>) -> HandlerRegistration {
        let handler: Arc<dyn ResourceEventHandler<K>> = Arc::new(handler);
        HandlerRegistration {
            registrations: self
                .parts
                .iter()
                .map(|(_, p)| p.add_handler(Arc::clone(&handler)))
                .collect(),
        }
    }

    /// Removes a handler added with [`add_event_handler`](Self::add_event_handler).
    pub fn remove_event_handler(&self, registration: &HandlerRegistration) {
        for ((_, part), r) in self.parts.iter().zip(&registration.registrations) {
            part.remove_handler(r);
        }
    }

    /// The part that holds `namespace`, if this informer caches it.
    pub(crate) fn part_for(&self, namespace: Option<&str>) -> Option<&Arc<dyn Part<K>>> {
        self.parts.iter().find_map(|(ns, p)| match (ns, namespace) {
            (None, _) => Some(p),
            (Some(cached), Some(ns)) if cached == ns => Some(p),
            _ => None,
        })
    }
}
