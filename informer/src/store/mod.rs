//! The thread-safe, indexed object cache informers fill and listers read (client-go's
//! `ThreadSafeStore`, `Store` and `Indexer`).
//!
//! Objects are held as [`Arc<K>`] under their [`object_key`] and are never deep-copied:
//! every read hands out clones of the same `Arc`. Named index functions map an object to
//! index values; [`Indexer::by_index`] then finds objects by value. The
//! [`NAMESPACE_INDEX`] is always present.
//!
//! ```
//! use std::sync::Arc;
//! use ferrokube_informer::store::{Indexer, IndexFunc, NAMESPACE_INDEX};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::ResourceExt;
//!
//! let by_app: IndexFunc<ConfigMap> =
//!     Arc::new(|cm: &ConfigMap| cm.labels().get("app").cloned().into_iter().collect());
//! let indexer = Indexer::<ConfigMap>::with_indexers([("by-app", by_app)])?;
//!
//! let mut cm = ConfigMap::default();
//! cm.metadata.namespace = Some("default".into());
//! cm.metadata.name = Some("settings".into());
//! cm.labels_mut().insert("app".into(), "web".into());
//! indexer.add(Arc::new(cm));
//!
//! assert_eq!(indexer.index_keys("by-app", "web")?, ["default/settings"]);
//! assert_eq!(indexer.by_index(NAMESPACE_INDEX, "default")?.len(), 1);
//! assert!(indexer.get("default/settings").is_some());
//! # Ok::<(), ferrokube_informer::Error>(())
//! ```

mod index;
mod slot;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use parking_lot::RwLock;

use self::index::Indices;
use self::slot::Slot;
use crate::error::Error;
use crate::key::{namespace_name_key, object_key};

/// Maps an object to its values in one index (client-go's `IndexFunc`).
///
/// It runs under the store's write lock: it must be quick, must not panic and must not call
/// back into the store. It should be a pure function of the object.
pub type IndexFunc<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// The name of the built-in index by namespace (client-go's `NamespaceIndex`); a
/// cluster-scoped object is indexed under `""`, as client-go's `MetaNamespaceIndexFunc` does.
#[doc(alias = "NamespaceIndex")]
pub const NAMESPACE_INDEX: &str = "namespace";

/// A thread-safe, indexed cache of `Arc<K>` keyed `namespace/name`.
///
/// Cloning is cheap and every clone shares the same cache, so the informer and its listers
/// can hold one each. Reads take a shared lock, writes an exclusive one; neither is ever
/// held across an `.await`.
#[doc(alias = "ThreadSafeStore")]
#[doc(alias = "Store")]
#[doc(alias = "cache")]
pub struct Indexer<K> {
    inner: Arc<RwLock<Inner<K>>>,
}

struct Inner<K> {
    items: HashMap<Arc<str>, Slot<K>>,
    indices: Indices<K>,
}

// === impl Indexer ===

impl<K: kube::Resource + 'static> Indexer<K> {
    /// An empty store with only the [`NAMESPACE_INDEX`].
    #[doc(alias = "NewIndexer")]
    #[doc(alias = "NewStore")]
    pub fn new() -> Self {
        let by_namespace: IndexFunc<K> =
            Arc::new(|obj: &K| vec![obj.meta().namespace.clone().unwrap_or_default()]);
        Self {
            inner: Arc::new(RwLock::new(Inner {
                items: HashMap::new(),
                indices: Indices::new([(NAMESPACE_INDEX.to_owned(), by_namespace)]),
            })),
        }
    }

    /// An empty store with the [`NAMESPACE_INDEX`] and `indexers`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexConflict`] if a name is given twice or is [`NAMESPACE_INDEX`].
    pub fn with_indexers<I, N>(indexers: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (N, IndexFunc<K>)>,
        N: Into<String>,
    {
        let store = Self::new();
        store.add_indexers(indexers)?;
        Ok(store)
    }

    /// Inserts or replaces `obj` under its key and updates the indices; returns the object
    /// it replaced.
    pub fn add(&self, obj: Arc<K>) -> Option<Arc<K>> {
        let key = object_key(&*obj);
        self.inner.write().upsert(&key, obj)
    }

    /// The same as [`add`](Self::add): an upsert.
    pub fn update(&self, obj: Arc<K>) -> Option<Arc<K>> {
        self.add(obj)
    }

    /// Removes the object under `key` from the store and the indices; returns it.
    pub fn delete(&self, key: &str) -> Option<Arc<K>> {
        self.inner.write().remove(key)
    }

    /// The object under `key`.
    #[doc(alias = "GetByKey")]
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner.read().items.get(key).map(Slot::load)
    }

    /// The object named `name` in `namespace` (`None`: cluster-scoped).
    pub fn get_by_namespace_name(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get(&namespace_name_key(namespace, name))
    }

    /// Whether an object is stored under `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.inner.read().items.contains_key(key)
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.read().items.values().map(Slot::load).collect()
    }

    /// Every key, in no particular order.
    pub fn list_keys(&self) -> Vec<String> {
        self.inner
            .read()
            .items
            .keys()
            .map(|k| String::from(&**k))
            .collect()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.inner.read().items.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.read().items.is_empty()
    }

    /// Replaces the whole contents with `items` and rebuilds every index. When two items
    /// share a key, the later one wins.
    pub fn replace(&self, items: impl IntoIterator<Item = Arc<K>>) {
        let mut map = HashMap::new();
        for obj in items {
            map.insert(Arc::<str>::from(object_key(&*obj)), Slot::new(obj));
        }
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        inner.items = map;
        inner.indices.clear();
        for (key, slot) in &inner.items {
            inner.indices.update(key, None, Some(&slot.load()));
        }
    }

    /// The objects whose values in index `index_name` include `value`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexNotFound`] if there is no such index.
    #[doc(alias = "ByIndex")]
    pub fn by_index(&self, index_name: &str, value: &str) -> Result<Vec<Arc<K>>, Error> {
        let inner = self.inner.read();
        let keys = inner.indices.keys_by_value(index_name, value)?;
        Ok(keys.map(|keys| inner.load_all(keys)).unwrap_or_default())
    }

    /// The keys of the objects whose values in index `index_name` include `value`, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::IndexNotFound`] if there is no such index.
    #[doc(alias = "IndexKeys")]
    pub fn index_keys(&self, index_name: &str, value: &str) -> Result<Vec<String>, Error> {
        let inner = self.inner.read();
        let mut keys: Vec<String> = inner
            .indices
            .keys_by_value(index_name, value)?
            .map(|keys| keys.iter().map(|k| String::from(&**k)).collect())
            .unwrap_or_default();
        drop(inner);
        keys.sort_unstable();
        Ok(keys)
    }

    /// The values present in index `index_name`, in no particular order (empty when there
    /// is no such index, as in client-go).
    #[doc(alias = "ListIndexFuncValues")]
    pub fn list_index_values(&self, index_name: &str) -> Vec<String> {
        self.inner.read().indices.values(index_name)
    }

    /// The objects that share at least one value of index `index_name` with `obj`
    /// (`obj` itself need not be stored).
    ///
    /// # Errors
    ///
    /// [`Error::IndexNotFound`] if there is no such index.
    #[doc(alias = "Index")]
    pub fn index(&self, index_name: &str, obj: &K) -> Result<Vec<Arc<K>>, Error> {
        let inner = self.inner.read();
        let keys = inner.indices.keys_matching(index_name, obj)?;
        Ok(inner.load_all(&keys))
    }

    /// Registers more index functions and indexes the objects already stored with them.
    /// Unlike client-go this is allowed at any time, also after the informer started.
    ///
    /// All or nothing: on error no function is added.
    ///
    /// # Errors
    ///
    /// [`Error::IndexConflict`] if a name is already registered or given twice.
    #[doc(alias = "AddIndexers")]
    pub fn add_indexers<I, N>(&self, indexers: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (N, IndexFunc<K>)>,
        N: Into<String>,
    {
        let funcs: Vec<(String, IndexFunc<K>)> =
            indexers.into_iter().map(|(n, f)| (n.into(), f)).collect();
        let mut inner = self.inner.write();
        let mut seen = HashSet::with_capacity(funcs.len());
        for (name, _) in &funcs {
            if inner.indices.contains(name) || !seen.insert(name.as_str()) {
                return Err(Error::IndexConflict { name: name.clone() });
            }
        }
        let inner = &mut *inner;
        let items = inner.items.iter().map(|(k, slot)| (k, slot.load()));
        inner.indices.insert_funcs(funcs, items);
        Ok(())
    }

    /// The names of the registered indices, [`NAMESPACE_INDEX`] included.
    #[doc(alias = "GetIndexers")]
    pub fn index_names(&self) -> Vec<String> {
        self.inner.read().indices.names()
    }
}

impl<K: kube::Resource + 'static> Default for Indexer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Clone for Indexer<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for Indexer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        let mut names = inner.indices.names();
        names.sort_unstable();
        f.debug_struct("Indexer")
            .field("len", &inner.items.len())
            .field("indices", &names)
            .finish()
    }
}

// === impl Inner ===

impl<K> Inner<K> {
    fn upsert(&mut self, key: &str, obj: Arc<K>) -> Option<Arc<K>> {
        // Reuse the key already shared with the index sets, if any.
        let key: Arc<str> = match self.items.get_key_value(key) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(key),
        };
        let old = self
            .items
            .insert(Arc::clone(&key), Slot::new(Arc::clone(&obj)))
            .map(|slot| slot.load());
        self.indices.update(&key, old.as_deref(), Some(&obj));
        old
    }

    fn remove(&mut self, key: &str) -> Option<Arc<K>> {
        let (key, slot) = self.items.remove_entry(key)?;
        let old = slot.load();
        self.indices.update(&key, Some(&old), None);
        Some(old)
    }

    fn load_all(&self, keys: &HashSet<Arc<str>>) -> Vec<Arc<K>> {
        keys.iter()
            .filter_map(|k| self.items.get(k).map(Slot::load))
            .collect()
    }
}
