//! [`Lister`]: typed, read-only access to an informer's cache (client-go's generated
//! listers). Reads hand out `Arc`s, never copies.

use std::sync::Arc;

use crate::labels::Selector;
use crate::store::{Indexer, NAMESPACE_INDEX};

/// Lists and gets objects from an informer's cache.
#[doc(alias = "GenericLister")]
pub struct Lister<K> {
    indexer: Indexer<K>,
}

impl<K> Clone for Lister<K> {
    fn clone(&self) -> Self {
        Self {
            indexer: self.indexer.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Lister<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lister").finish_non_exhaustive()
    }
}

impl<K: kube::Resource + 'static> Lister<K> {
    /// A lister over `indexer`.
    pub fn new(indexer: Indexer<K>) -> Self {
        Self { indexer }
    }

    /// Every cached object whose labels match `selector`.
    pub fn list(&self, selector: &Selector) -> Vec<Arc<K>> {
        let mut all = self.indexer.list();
        if !selector.is_empty() {
            all.retain(|o| selector.matches(o.meta().labels.as_ref()));
        }
        all
    }

    /// The cached object `namespace/name` (`namespace` `None` for cluster-scoped objects).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.indexer.get_by_namespace_name(namespace, name)
    }

    /// Objects in one namespace whose labels match `selector` (uses the namespace index).
    pub fn list_namespaced(&self, namespace: &str, selector: &Selector) -> Vec<Arc<K>> {
        let mut found = self
            .indexer
            .by_index(NAMESPACE_INDEX, namespace)
            .unwrap_or_default();
        if !selector.is_empty() {
            found.retain(|o| selector.matches(o.meta().labels.as_ref()));
        }
        found
    }

    /// The underlying indexer, for index queries.
    pub fn indexer(&self) -> &Indexer<K> {
        &self.indexer
    }
}
