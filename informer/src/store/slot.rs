//! How one object is held in the store's map.
//!
//! The store only ever goes through [`Slot::new`] and [`Slot::load`], so another
//! representation (e.g. a compact mode holding each object as JSON bytes, decoded on read)
//! can be added as a variant without touching the public [`Indexer`](super::Indexer) API.

use std::sync::Arc;

/// One stored object.
pub(super) enum Slot<K> {
    /// The object itself, shared with every reader (never deep-copied).
    Shared(Arc<K>),
}

impl<K> Slot<K> {
    /// Holds `obj`.
    pub(super) fn new(obj: Arc<K>) -> Self {
        Self::Shared(obj)
    }

    /// The object, as readers get it.
    pub(super) fn load(&self) -> Arc<K> {
        match self {
            Self::Shared(obj) => Arc::clone(obj),
        }
    }
}
