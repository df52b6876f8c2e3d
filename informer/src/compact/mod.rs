//! Compact store mode: objects are cached as compact JSON (without `managedFields`) and
//! decoded on read, with a small cache of recently decoded objects. Handlers still receive
//! decoded `Arc<T>`, once per event; listers and indexes work as with [`SharedIndexInformer`].
//!
//! For controllers that watch every Pod of a large cluster this keeps about the JSON size in
//! memory instead of the ten-times-larger decoded objects, at the cost of decoding on reads.
//!
//! ```no_run
//! use ferrokube_informer::compact::CompactInformer;
//! use ferrokube_informer::{EventHandlerFuncs, InformerConfig};
//! use k8s_openapi::api::core::v1::Pod;
//! # async fn demo(client: ferrokube_client::Client) {
//! let pods = CompactInformer::<Pod>::new(&client, None, InformerConfig::default());
//! let _reg = pods.add_event_handler(EventHandlerFuncs::default().on_add(|pod: std::sync::Arc<Pod>, _| {
//!     println!("{:?}", pod.metadata.name);
//! }));
//! # }
//! ```

mod cache;
mod object;

use std::sync::Arc;

use ferrokube_client::{Api, Client};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use self::cache::DecodeCache;
pub use self::object::Compact;
use crate::delta_fifo::DeltaObject;
use crate::error::Error;
use crate::key::{DeletedFinalStateUnknown, object_key};
use crate::labels::Selector;
use crate::shared::{InformerConfig, Registration, ResourceEventHandler, SharedIndexInformer};
use crate::store::{IndexFunc, Indexer, NAMESPACE_INDEX};

/// How many decoded objects are kept for reuse.
const DECODE_CACHE: usize = 256;

/// A [`SharedIndexInformer`] that stores [`Compact`] objects.
pub struct CompactInformer<T> {
    informer: SharedIndexInformer<Compact<T>>,
    cache: Arc<DecodeCache<T>>,
}

impl<T> Clone for CompactInformer<T> {
    fn clone(&self) -> Self {
        Self {
            informer: self.informer.clone(),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<T> CompactInformer<T>
where
    T: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    /// A compact informer for `T` in `namespace` (all namespaces when `None`).
    pub fn new(
        client: &Client,
        namespace: Option<&str>,
        config: InformerConfig<Compact<T>>,
    ) -> Self {
        let api = Api::<Compact<T>>::new(client.clone(), namespace, &());
        Self {
            informer: SharedIndexInformer::new(api, config.keep_managed_fields(false)),
            cache: Arc::new(DecodeCache::new(DECODE_CACHE)),
        }
    }

    /// The underlying informer over [`Compact`] objects.
    pub fn compact(&self) -> &SharedIndexInformer<Compact<T>> {
        &self.informer
    }

    /// Runs until `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken) {
        self.informer.run(cancel).await;
    }

    /// True once the initial list is cached.
    pub fn has_synced(&self) -> bool {
        self.informer.has_synced()
    }

    /// Waits for the initial list; false if `cancel` fired first.
    pub async fn wait_for_cache_sync(&self, cancel: &CancellationToken) -> bool {
        self.informer.wait_for_cache_sync(cancel).await
    }

    /// Adds a handler of decoded objects (each object is decoded once per event, whatever
    /// the number of handlers, through the decode cache).
    pub fn add_event_handler(&self, handler: impl ResourceEventHandler<T>) -> Registration {
        self.informer.add_event_handler(Decoding {
            handler,
            cache: Arc::clone(&self.cache),
        })
    }

    /// Removes a handler.
    pub fn remove_event_handler(&self, registration: &Registration) {
        self.informer.remove_event_handler(registration);
    }

    /// A lister that decodes on read.
    pub fn lister(&self) -> CompactLister<T> {
        CompactLister {
            indexer: self.informer.indexer().clone(),
            cache: Arc::clone(&self.cache),
        }
    }

    /// Adds named indexers over decoded objects (each object is decoded when indexed).
    pub fn add_indexers<N: Into<String>>(
        &self,
        indexers: impl IntoIterator<Item = (N, IndexFunc<T>)>,
    ) -> Result<(), Error> {
        let wrapped = indexers.into_iter().map(|(name, f)| {
            let f: IndexFunc<Compact<T>> = Arc::new(move |c: &Compact<T>| match c.decode() {
                Ok(object) => f(&object),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot decode a cached object for indexing");
                    Vec::new()
                }
            });
            (name, f)
        });
        self.informer.indexer().add_indexers(wrapped)
    }
}

/// Reads a compact cache as decoded objects.
pub struct CompactLister<T> {
    indexer: Indexer<Compact<T>>,
    cache: Arc<DecodeCache<T>>,
}

impl<T> Clone for CompactLister<T> {
    fn clone(&self) -> Self {
        Self {
            indexer: self.indexer.clone(),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<T> CompactLister<T>
where
    T: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    fn decode(&self, c: &Compact<T>) -> Option<Arc<T>> {
        decode_cached(&self.cache, c)
    }

    /// `namespace/name`, decoded.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<T>> {
        let compact = self.indexer.get_by_namespace_name(namespace, name)?;
        self.decode(&compact)
    }

    /// Every object whose labels match `selector` (selected before decoding).
    pub fn list(&self, selector: &Selector) -> Vec<Arc<T>> {
        self.indexer
            .list()
            .iter()
            .filter(|c| selector.matches(c.meta().labels.as_ref()))
            .filter_map(|c| self.decode(c))
            .collect()
    }

    /// Objects in one namespace whose labels match `selector`.
    pub fn list_namespaced(&self, namespace: &str, selector: &Selector) -> Vec<Arc<T>> {
        self.by_index(NAMESPACE_INDEX, namespace)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| selector.matches(o.meta().labels.as_ref()))
            .collect()
    }

    /// Objects whose index `name` has `value`, decoded.
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<Arc<T>>, Error> {
        Ok(self
            .indexer
            .by_index(name, value)?
            .iter()
            .filter_map(|c| self.decode(c))
            .collect())
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.indexer.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.indexer.is_empty()
    }
}

fn decode_cached<T>(cache: &DecodeCache<T>, c: &Compact<T>) -> Option<Arc<T>>
where
    T: Resource<DynamicType = ()> + DeserializeOwned,
{
    let rv = c.meta().resource_version.as_deref().unwrap_or("");
    match cache.get_or_decode(&object_key(c), rv, || c.decode()) {
        Ok(object) => Some(object),
        Err(e) => {
            // Compact objects were validated when they were decoded from the server.
            tracing::error!(key = %object_key(c), error = %e, "cannot decode a cached object");
            None
        }
    }
}

/// Adapts a handler of `T` to compact notifications.
struct Decoding<H, T> {
    handler: H,
    cache: Arc<DecodeCache<T>>,
}

impl<H, T> ResourceEventHandler<Compact<T>> for Decoding<H, T>
where
    H: ResourceEventHandler<T>,
    T: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    fn on_add(&self, object: Arc<Compact<T>>, is_initial_list: bool) {
        if let Some(o) = decode_cached(&self.cache, &object) {
            self.handler.on_add(o, is_initial_list);
        }
    }

    fn on_update(&self, old: Arc<Compact<T>>, new: Arc<Compact<T>>) {
        if let (Some(old), Some(new)) = (
            decode_cached(&self.cache, &old),
            decode_cached(&self.cache, &new),
        ) {
            self.handler.on_update(old, new);
        }
    }

    fn on_delete(&self, object: DeltaObject<Compact<T>>) {
        let decoded = match &object {
            DeltaObject::Object(o) => decode_cached(&self.cache, o).map(DeltaObject::Object),
            DeltaObject::DeletedFinalStateUnknown(t) => {
                decode_cached(&self.cache, &t.obj).map(|o| {
                    DeltaObject::DeletedFinalStateUnknown(DeletedFinalStateUnknown::new(
                        t.key.clone(),
                        o,
                    ))
                })
            }
        };
        if let Some(o) = decoded {
            self.handler.on_delete(o);
        }
    }
}
